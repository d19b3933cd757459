/* weft-run across machines: the streams, the records, and --submit (see dist.h for the layout).
 *
 * --submit reads the inputs exactly as a local run does and builds each command line with the same
 * template and quoting code, so that a job runs on a worker as it would have run here. Its message id
 * is derived from the job's number and its command line: submitting the same inputs again (after a
 * crash half-way, or twice by mistake) stores nothing twice within the streams' duplicate window, and
 * a different command for the same number is a different job. The batch marker goes last, so a
 * collector that has seen it knows how many results to wait for. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dist.h"

const char *wr_dist_err(int rc) {
  if (rc == WEFT_JS_ENATS && weft_js_last_error()[0]) return weft_js_last_error();
  return weft_js_strerror(rc);
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}
#define FNV_INIT 0xcbf29ce484222325ull

static bool stream_name_ok(const char *s, size_t n) {
  if (n == 0 || n > 100) return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
      return false;
  }
  return true;
}

int wr_dist_open(wr_app *a, wr_dist *d) {
  memset(d, 0, sizeof *d);
  const char *url = a->o.url, *hp = url + 7; /* after nats:// (checked by the options) */
  const char *slash = strchr(hp, '/');
  if (!slash || slash == hp || !stream_name_ok(slash + 1, strlen(slash + 1))) {
    wr_msg("%s: expected nats://HOST:PORT/STREAM, STREAM made of letters, digits, _ and - (at most 100)", url);
    return -1;
  }
  snprintf(d->server, sizeof d->server, "nats://%.*s", (int)(slash - hp), hp);
  snprintf(d->stream, sizeof d->stream, "%s", slash + 1);
  snprintf(d->results, sizeof d->results, "%s_RESULTS", d->stream);
  snprintf(d->subj_job, sizeof d->subj_job, "%s.job", d->stream);
  snprintf(d->subj_result, sizeof d->subj_result, "%s.result", d->results);
  snprintf(d->subj_batch, sizeof d->subj_batch, "%s.batch", d->results);
  weft_js_opts jo = WEFT_JS_OPTS_INIT;
  jo.url = d->server;
  jo.name = a->o.mode == WR_SUBMIT ? "weft-run submit" : a->o.mode == WR_WORKER ? "weft-run worker" : "weft-run collect";
  int rc = weft_js_connect(&jo, &d->js);
  if (rc != 0) {
    wr_msg("%s: cannot connect: %s", d->server, wr_dist_err(rc));
    return -1;
  }
  weft_js_stream_opts so = WEFT_JS_STREAM_OPTS_INIT;
  so.name = d->stream;
  so.work_queue = true;
  so.duplicate_window = WR_DUP_WINDOW;
  if ((rc = weft_js_stream_ensure(d->js, &so)) == 0) {
    so = (weft_js_stream_opts)WEFT_JS_STREAM_OPTS_INIT;
    so.name = d->results;
    so.duplicate_window = WR_DUP_WINDOW;
    rc = weft_js_stream_ensure(d->js, &so);
  }
  if (rc != 0) {
    wr_msg("%s: cannot create the streams %s and %s: %s", d->server, d->stream, d->results, wr_dist_err(rc));
    wr_dist_close(d);
    return -1;
  }
  return 0;
}

void wr_dist_close(wr_dist *d) {
  if (d->js) weft_js_close(d->js);
  d->js = NULL;
}

/* ---- records ------------------------------------------------------------------------------------ */

wr_job *wr_dist_job_new(uint64_t seq, size_t nargs, const char *const *args, const size_t *lens, const char *cmd,
                        size_t cmdlen, const char *host, size_t hostlen) {
  size_t bytes = sizeof(wr_job) + nargs * (sizeof(char *) + sizeof(size_t)) + hostlen + 1;
  for (size_t k = 0; k < nargs; k++) bytes += lens[k] + 1;
  wr_job *j = calloc(1, bytes);
  char *c = malloc(cmdlen + 1);
  if (!j || !c) { free(j); free(c); return NULL; }
  j->seq = seq, j->nargs = nargs;
  j->args = (char **)(j + 1);
  j->lens = (size_t *)(j->args + nargs);
  char *p = (char *)(j->lens + nargs);
  for (size_t k = 0; k < nargs; k++) {
    memcpy(p, args[k], lens[k]);
    p[lens[k]] = '\0';
    j->args[k] = p, j->lens[k] = lens[k];
    p += lens[k] + 1;
  }
  if (host) {
    memcpy(p, host, hostlen);
    p[hostlen] = '\0';
    j->host = p;
  }
  memcpy(c, cmd, cmdlen);
  c[cmdlen] = '\0';
  j->cmd = c, j->cmdlen = cmdlen;
  wr_hold_init(&j->out);
  wr_hold_init(&j->err);
  return j;
}

/* Reads `n` decimal fields of the first line into v (as signed 64-bit; doubles through their text).
 * Returns the offset past the line, or 0 if it is malformed. */
static size_t header(const char *p, size_t len, const char *magic, long long *v, size_t n, double *dv, size_t nd,
                     const size_t *dpos) {
  const char *nl = memchr(p, '\n', len < 4096 ? len : 4096);
  size_t ml = strlen(magic);
  if (!nl || (size_t)(nl - p) <= ml || memcmp(p, magic, ml) != 0 || p[ml] != ' ') return 0;
  char line[4096];
  memcpy(line, p, (size_t)(nl - p));
  line[nl - p] = '\0';
  char *s = line + ml, *end;
  size_t di = 0;
  for (size_t k = 0; k < n; k++) {
    if (*s != ' ') return 0;
    s++;
    errno = 0;
    if (di < nd && dpos[di] == k) {
      dv[di++] = strtod(s, &end);
      v[k] = 0;
    } else {
      v[k] = strtoll(s, &end, 10);
    }
    if (errno || end == s) return 0;
    s = end;
  }
  if (*s) return 0;
  return (size_t)(nl - p) + 1;
}

#define MAX_ARGS 256 /* input sources of one job; a line of at most 4096 bytes holds fewer */

wr_job *wr_dist_job_decode(const char *p, size_t n, bool *bad) {
  *bad = true;
  long long v[5 + MAX_ARGS];
  /* version SEQ TIMEOUT NARGS CMDLEN: the count of LENs is known only from NARGS, so read in two steps */
  const char *nl = memchr(p, '\n', n < 4096 ? n : 4096);
  if (!nl) return NULL;
  size_t fields = 0;
  for (const char *s = p; s < nl; s++) fields += *s == ' ';
  if (fields < 5 || fields > 5 + MAX_ARGS) return NULL;
  size_t off = header(p, n, "weft-run-job", v, fields, NULL, 0, NULL);
  if (!off || v[0] != 1 || v[1] <= 0 || v[3] < 0 || (size_t)v[3] != fields - 5 || v[4] < 0) return NULL;
  size_t nargs = (size_t)v[3], need = (size_t)v[4];
  size_t lens[MAX_ARGS];
  const char *args[MAX_ARGS];
  for (size_t k = 0; k < nargs; k++) {
    if (v[5 + k] < 0) return NULL;
    lens[k] = (size_t)v[5 + k];
    need += lens[k];
  }
  if (need != n - off) return NULL;
  const char *cmd = p + off, *q = cmd + v[4];
  for (size_t k = 0; k < nargs; k++) args[k] = q, q += lens[k];
  *bad = false;
  wr_job *j = wr_dist_job_new((uint64_t)v[1], nargs, args, lens, cmd, (size_t)v[4], NULL, 0);
  if (j) j->timeout = v[2] > 0 ? v[2] : 0; /* none of its own: the worker's --timeout, if any */
  return j;
}

static char *job_encode(uint64_t seq, int64_t timeout, char *const *args, const size_t *lens, size_t nargs,
                        const char *cmd, size_t cmdlen, size_t *n) {
  size_t cap = 64 + nargs * 22, body = cmdlen;
  for (size_t k = 0; k < nargs; k++) body += lens[k];
  char *b = malloc(cap + body);
  if (!b) return NULL;
  int h = snprintf(b, cap, "weft-run-job 1 %" PRIu64 " %lld %zu %zu", seq,
                   (long long)(timeout == WEFT_FOREVER ? -1 : timeout), nargs, cmdlen);
  size_t o = (size_t)h;
  for (size_t k = 0; k < nargs; k++) o += (size_t)snprintf(b + o, cap - o, " %zu", lens[k]);
  b[o++] = '\n';
  memcpy(b + o, cmd, cmdlen), o += cmdlen;
  for (size_t k = 0; k < nargs; k++) memcpy(b + o, args[k], lens[k]), o += lens[k];
  *n = o;
  return b;
}

/* Up to `max` bytes of what h holds, into dst; returns how many. */
static size_t hold_copy(const wr_hold *h, char *dst, size_t max) {
  if (h->fd < 0) {
    size_t n = h->len < max ? h->len : max;
    if (n) memcpy(dst, h->mem, n); /* nothing held: mem may be NULL */
    return n;
  }
  size_t got = 0;
  while (got < max) {
    ssize_t r = pread(h->fd, dst + got, max - got, (off_t)got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  return got;
}

char *wr_dist_result_encode(const wr_job *j, const char *host, size_t *n) {
  size_t outlen = j->out.total < WR_RESULT_OUT_MAX ? (size_t)j->out.total : WR_RESULT_OUT_MAX;
  size_t errlen = j->err.total < WR_RESULT_OUT_MAX ? (size_t)j->err.total : WR_RESULT_OUT_MAX;
  char *outs = malloc(outlen + errlen + 1);
  if (!outs) return NULL;
  /* read first: a spill file may hold less than its total said (a failed write) */
  size_t ol = hold_copy(&j->out, outs, outlen), el = hold_copy(&j->err, outs + ol, errlen);
  size_t hostlen = strlen(host);
  size_t cap = 256 + j->nargs * 22, body = hostlen + j->cmdlen + ol + el;
  for (size_t k = 0; k < j->nargs; k++) body += j->lens[k];
  char *b = malloc(cap + body);
  if (!b) { free(outs); return NULL; }
  int h = snprintf(b, cap, "weft-run-result 1 %" PRIu64 " %d %d %d %.6f %.6f %" PRIu64 " %" PRIu64 " %" PRIu64
                   " %zu %zu %zu %zu %zu", j->seq, (int)j->cls, j->exitval, j->signo, j->start, j->runtime,
                   j->received, j->out.total, j->err.total, hostlen, j->cmdlen, j->nargs, ol, el);
  size_t o = (size_t)h;
  for (size_t k = 0; k < j->nargs; k++) o += (size_t)snprintf(b + o, cap - o, " %zu", j->lens[k]);
  b[o++] = '\n';
  memcpy(b + o, host, hostlen), o += hostlen;
  memcpy(b + o, j->cmd, j->cmdlen), o += j->cmdlen;
  for (size_t k = 0; k < j->nargs; k++) memcpy(b + o, j->args[k], j->lens[k]), o += j->lens[k];
  memcpy(b + o, outs, ol + el), o += ol + el;
  free(outs);
  *n = o;
  return b;
}

wr_job *wr_dist_result_decode(const char *p, size_t n, uint64_t trunc[2], bool *bad) {
  *bad = true;
  const char *nl = memchr(p, '\n', n < 4096 ? n : 4096);
  if (!nl) return NULL;
  size_t fields = 0;
  for (const char *s = p; s < nl; s++) fields += *s == ' ';
  enum { VER, SEQ, CLS, EXITV, SIG, START, RUNTIME, RECV, OUTT, ERRT, HOSTL, CMDL, NARGS, OUTL, ERRL, NFIX };
  if (fields < NFIX || fields > NFIX + MAX_ARGS) return NULL;
  long long v[NFIX + MAX_ARGS];
  double dv[2];
  size_t dpos[2] = {START, RUNTIME};
  size_t off = header(p, n, "weft-run-result", v, fields, dv, 2, dpos);
  if (!off || v[VER] != 1 || v[SEQ] <= 0 || v[CLS] < 0 || v[CLS] >= WR_NCLASS || v[NARGS] < 0 ||
      (size_t)v[NARGS] != fields - NFIX || v[HOSTL] < 0 || v[CMDL] < 0 || v[OUTL] < 0 || v[ERRL] < 0 ||
      v[OUTT] < v[OUTL] || v[ERRT] < v[ERRL])
    return NULL;
  size_t nargs = (size_t)v[NARGS], need = (size_t)v[HOSTL] + (size_t)v[CMDL] + (size_t)v[OUTL] + (size_t)v[ERRL];
  size_t lens[MAX_ARGS];
  const char *args[MAX_ARGS];
  for (size_t k = 0; k < nargs; k++) {
    if (v[NFIX + k] < 0) return NULL;
    lens[k] = (size_t)v[NFIX + k];
    need += lens[k];
  }
  if (need != n - off) return NULL;
  const char *host = p + off, *cmd = host + v[HOSTL], *q = cmd + v[CMDL];
  for (size_t k = 0; k < nargs; k++) args[k] = q, q += lens[k];
  *bad = false;
  wr_job *j = wr_dist_job_new((uint64_t)v[SEQ], nargs, args, lens, cmd, (size_t)v[CMDL], host, (size_t)v[HOSTL]);
  if (!j) return NULL;
  j->cls = (enum wr_class)v[CLS], j->exitval = (int)v[EXITV], j->signo = (int)v[SIG];
  j->start = dv[0], j->runtime = dv[1], j->received = (uint64_t)v[RECV];
  wr_hold_add(&j->out, q, (size_t)v[OUTL]);
  wr_hold_add(&j->err, q + v[OUTL], (size_t)v[ERRL]);
  trunc[0] = v[OUTT] > v[OUTL] ? (uint64_t)v[OUTT] : 0;
  trunc[1] = v[ERRT] > v[ERRL] ? (uint64_t)v[ERRT] : 0;
  return j;
}

/* ---- --submit ----------------------------------------------------------------------------------- */

static int submit_main(wr_app *a, wr_dist *d) {
  if (wr_template_parse(&a->o, &a->tmpl) != 0 || wr_input_open(&a->o, &a->in) != 0) return WR_EXIT_ERROR;
  if (wr_template_uses_slot(a->tmpl)) {
    wr_msg("--submit: {%%} (the job slot) is known only on the worker that runs the job; a submitted command "
           "cannot use it");
    return WR_EXIT_ERROR;
  }
  if (a->o.joblog) {
    wr_msg("--submit: --joblog belongs to --collect (or to a worker: the jobs it ran)");
    return WR_EXIT_ERROR;
  }
  if (a->o.nsrc > 64) {
    wr_msg("--submit: at most 64 input sources (a job's record lists their lengths on one line)");
    return WR_EXIT_ERROR;
  }
  if (!a->o.dry_run && wr_dist_open(a, d) != 0) return WR_EXIT_ERROR;
  weft_ctx *dctx = NULL;
  weft_cancel *dcancel = NULL;
  if (a->o.deadline != WEFT_FOREVER && weft_ctx_with_timeout(weft_background(), a->o.deadline, &dctx, &dcancel) != 0) {
    wr_msg("out of memory");
    return WR_EXIT_ERROR;
  }
  uint64_t seq = 0, published = 0, dups = 0, batch = FNV_INIT;
  int status = 0;
  for (;;) {
    char **args;
    size_t *lens;
    int r = wr_input_next(a->in, -1, &args, &lens);
    if (r == 0) break;
    if (r < 0) { status = WR_EXIT_ERROR; break; }
    seq++;
    size_t cmdlen, len;
    char *cmd = wr_command_line(a->tmpl, seq, 0, args, lens, a->o.nsrc, &cmdlen);
    char *rec = cmd ? job_encode(seq, a->o.timeout, args, lens, a->o.nsrc, cmd, cmdlen, &len) : NULL;
    if (!rec) {
      free(cmd);
      wr_msg("out of memory at job %" PRIu64, seq);
      status = WR_EXIT_ERROR;
      break;
    }
    if (a->o.dry_run) { /* the commands that would be submitted, nothing published */
      bool ok = fwrite(cmd, 1, cmdlen, stdout) == cmdlen && putchar('\n') != EOF;
      free(rec);
      free(cmd);
      if (!ok) { status = WR_EXIT_ERROR; break; }
      continue;
    }
    char id[64];
    snprintf(id, sizeof id, "j%" PRIu64 "-%016" PRIx64, seq, fnv1a(FNV_INIT, cmd, cmdlen));
    batch = fnv1a(batch, id, strlen(id));
    bool dup = false;
    int rc = weft_js_publish(d->js, dctx, d->subj_job, rec, len, id, &dup);
    free(rec);
    free(cmd);
    if (rc != 0) {
      wr_msg("job %" PRIu64 ": publishing to %s failed: %s (submitting again is safe: what is stored is not "
             "stored twice)", seq, d->stream, wr_dist_err(rc));
      status = WR_EXIT_ERROR;
      break;
    }
    if (dup) dups++;
    else published++;
  }
  if (a->o.dry_run) {
    if (fflush(stdout) != 0) status = WR_EXIT_ERROR;
    if (dcancel) weft_ctx_end(dcancel);
    return status;
  }
  if (status == 0) {
    char rec[64], id[64];
    int len = snprintf(rec, sizeof rec, "weft-run-batch 1 %" PRIu64 "\n", seq);
    snprintf(id, sizeof id, "b%" PRIu64 "-%016" PRIx64, seq, batch);
    int rc = weft_js_publish(d->js, NULL, d->subj_batch, rec, (size_t)len, id, NULL);
    if (rc != 0) {
      wr_msg("publishing the batch marker failed: %s (submit again: nothing is stored twice)", wr_dist_err(rc));
      status = WR_EXIT_ERROR;
    }
  }
  wr_msg("%s: %" PRIu64 " jobs: %" PRIu64 " published, %" PRIu64 " duplicates (already in the stream)%s",
         d->stream, seq, published, dups, status ? "; stopped by the error above" : "");
  if (dcancel) weft_ctx_end(dcancel);
  return status;
}

int wr_dist_main(wr_app *a) {
  wr_dist d;
  memset(&d, 0, sizeof d);
  int status;
  if (a->o.mode == WR_SUBMIT) status = submit_main(a, &d);
  else if (wr_dist_open(a, &d) != 0) status = WR_EXIT_ERROR;
  else if (a->o.mode == WR_WORKER) status = wr_worker_main(a, &d);
  else status = wr_collect_main(a, &d);
  wr_dist_close(&d);
  wr_input_close(a->in);
  wr_template_free(a->tmpl);
  a->in = NULL, a->tmpl = NULL;
  return status;
}
