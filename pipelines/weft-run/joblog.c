/* weft-run: the joblog, in GNU parallel's tab-separated format:
 *
 *   Seq  Host  Starttime  JobRuntime  Send  Receive  Exitval  Signal  Command
 *
 * Host is ":" (this machine), or the worker's host name for a job collected from a stream (--collect).
 * A line is written when its job ends, with one write() on a descriptor opened
 * with O_APPEND: a weft-run killed at any moment (SIGKILL included) leaves only whole lines of finished
 * jobs, and --resume finds exactly those. A tab, newline or backslash inside the command is written as
 * \t, \n, \\ so that every job stays one line.
 *
 * --resume reads the log back: a job whose number appears is skipped; with --resume-failed only those with
 * a line saying Exitval 0 and Signal 0. The entries are sorted by number once and then walked alongside the
 * input, which comes in increasing job number. A job's command is compared with the log's (unless the
 * command uses {%}, which changes between runs): a log written for another command is refused. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "weft-run.h"

#define HEADER "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n"

typedef struct entry {
  uint64_t seq;
  uint64_t hash; /* of the command as logged */
  bool ok;       /* some line of this job says it succeeded */
} entry;

struct wr_joblog {
  int fd;
  const char *path;
  entry *e;
  size_t n, at;
  int resume;
};

static uint64_t hash_bytes(const char *p, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
  return h;
}

/* The command as the log spells it. Returns a malloc'd string (NULL: out of memory). */
static char *escaped(const char *cmd, size_t len, size_t *outlen) {
  char *o = malloc(len * 2 + 1);
  if (!o) return NULL;
  size_t k = 0;
  for (size_t i = 0; i < len; i++) {
    char c = cmd[i];
    if (c == '\n') o[k++] = '\\', o[k++] = 'n';
    else if (c == '\t') o[k++] = '\\', o[k++] = 't';
    else if (c == '\\') o[k++] = '\\', o[k++] = '\\';
    else o[k++] = c;
  }
  o[k] = '\0';
  *outlen = k;
  return o;
}

static int by_seq(const void *x, const void *y) {
  const entry *a = x, *b = y;
  return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int read_log(wr_joblog *l, FILE *f) {
  char *line = NULL;
  size_t cap = 0, cape = 0;
  ssize_t len;
  size_t lineno = 0;
  while ((len = getline(&line, &cap, f)) > 0) {
    lineno++;
    if (line[len - 1] == '\n') line[--len] = '\0';
    if (lineno == 1 && !strncmp(line, "Seq\t", 4)) continue;
    if (len == 0) continue;
    /* Seq Host Starttime JobRuntime Send Receive Exitval Signal Command */
    char *field[9];
    char *p = line;
    int nf = 0;
    for (; nf < 8; nf++) {
      field[nf] = p;
      char *tab = strchr(p, '\t');
      if (!tab) break;
      *tab = '\0';
      p = tab + 1;
    }
    if (nf < 8) {
      wr_msg("%s: line %zu is not a joblog line (expected 9 tab-separated fields: Seq Host Starttime "
             "JobRuntime Send Receive Exitval Signal Command)", l->path, lineno);
      free(line);
      return -1;
    }
    field[8] = p;
    char *end;
    errno = 0;
    unsigned long long seq = strtoull(field[0], &end, 10);
    long long ev = strtoll(field[6], NULL, 10);
    long long sig = strtoll(field[7], NULL, 10);
    if (errno || *end || seq == 0) {
      wr_msg("%s: line %zu: \"%s\" is not a job number", l->path, lineno, field[0]);
      free(line);
      return -1;
    }
    if (l->n == cape) {
      size_t nc = cape ? cape * 2 : 1024;
      entry *ne = realloc(l->e, nc * sizeof *ne);
      if (!ne) { wr_msg("out of memory reading %s", l->path); free(line); return -1; }
      l->e = ne, cape = nc;
    }
    l->e[l->n++] = (entry){.seq = seq, .hash = hash_bytes(field[8], strlen(field[8])), .ok = ev == 0 && sig == 0};
  }
  free(line);
  if (ferror(f)) { wr_msg("%s: read error: %s", l->path, strerror(errno)); return -1; }
  qsort(l->e, l->n, sizeof *l->e, by_seq);
  /* one entry per job: ok if any of its lines is */
  size_t k = 0;
  for (size_t i = 0; i < l->n; i++) {
    if (k && l->e[k - 1].seq == l->e[i].seq) {
      l->e[k - 1].ok |= l->e[i].ok;
      if (l->e[i].ok) l->e[k - 1].hash = l->e[i].hash;
    } else {
      l->e[k++] = l->e[i];
    }
  }
  l->n = k;
  return 0;
}

int wr_joblog_open(const wr_opts *o, wr_joblog **out) {
  *out = NULL;
  if (!o->joblog) return 0;
  wr_joblog *l = calloc(1, sizeof *l);
  if (!l) { wr_msg("out of memory"); return -1; }
  l->path = o->joblog, l->resume = o->resume, l->fd = -1;
  if (o->resume) {
    FILE *f = fopen(o->joblog, "re");
    if (f) {
      int rc = read_log(l, f);
      fclose(f);
      if (rc != 0) goto fail;
    } else if (errno != ENOENT) {
      wr_msg("%s: cannot read the joblog: %s", o->joblog, strerror(errno));
      goto fail;
    }
  }
  int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY | (o->resume ? 0 : O_TRUNC);
  if (!strcmp(o->joblog, "-")) /* GNU parallel's --joblog -: the log on stdout */
    l->fd = o->resume ? -1 : fcntl(1, F_DUPFD_CLOEXEC, 3);
  else
    l->fd = open(o->joblog, flags, 0644);
  if (l->fd < 0 && o->resume && !strcmp(o->joblog, "-")) { wr_msg("--resume needs a joblog file, not -"); goto fail; }
  if (l->fd < 0) { wr_msg("%s: cannot write the joblog: %s", o->joblog, strerror(errno)); goto fail; }
  struct stat st;
  if (fstat(l->fd, &st) == 0 && ((S_ISREG(st.st_mode) && st.st_size == 0) || !strcmp(o->joblog, "-")) &&
      write(l->fd, HEADER, sizeof HEADER - 1) != (ssize_t)(sizeof HEADER - 1)) {
    wr_msg("%s: cannot write the joblog: %s", o->joblog, strerror(errno));
    goto fail;
  }
  *out = l;
  return 0;
fail:
  wr_joblog_close(l);
  return -1;
}

int wr_joblog_write(wr_joblog *l, const wr_job *j) {
  if (!l) return 0;
  size_t cl;
  char *cmd = escaped(j->cmd ? j->cmd : "", j->cmd ? j->cmdlen : 0, &cl);
  if (!cmd) return -1;
  const char *host = j->host && *j->host ? j->host : ":";
  size_t cap = cl + strlen(host) + 200;
  char *line = malloc(cap);
  if (!line) { free(cmd); return -1; }
  int n = snprintf(line, cap, "%" PRIu64 "\t%s\t%.3f\t%10.3f\t0\t%" PRIu64 "\t%d\t%d\t%s\n", j->seq, host,
                   j->start, j->runtime, j->received, j->exitval, j->signo, cmd);
  free(cmd);
  int rc = 0;
  if (n < 0 || (size_t)n >= cap) rc = -1;
  else
    for (size_t off = 0; off < (size_t)n;) {
      ssize_t w = write(l->fd, line + off, (size_t)n - off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) { rc = -1; break; }
      off += (size_t)w;
    }
  free(line);
  return rc;
}

bool wr_joblog_skip(wr_joblog *l, uint64_t seq, const char *cmd, size_t cmdlen, bool check_cmd, bool *differs) {
  *differs = false;
  if (!l || !l->resume) return false;
  while (l->at < l->n && l->e[l->at].seq < seq) l->at++;
  if (l->at >= l->n || l->e[l->at].seq != seq) return false;
  const entry *e = &l->e[l->at];
  if (check_cmd) {
    size_t el;
    char *esc = escaped(cmd, cmdlen, &el);
    if (esc && hash_bytes(esc, el) != e->hash) *differs = true;
    free(esc);
  }
  return l->resume == 2 ? e->ok : true;
}

void wr_joblog_close(wr_joblog *l) {
  if (!l) return;
  if (l->fd >= 0) close(l->fd);
  free(l->e);
  free(l);
}
