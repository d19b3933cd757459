/* weft-run --collect: the results of a batch, printed and logged as a local run would.
 *
 * The results stream is read from its start through an ordered consumer of the NATS client's own
 * (ephemeral, no acks: reading changes nothing on the server, so collecting twice gives the same
 * output). A job's result may be there more than once (its worker died after publishing it and before
 * its ack, beyond the duplicate window, ...): the first result of each job number counts, the others are
 * counted as duplicates and dropped, so the joblog gets one line per job. The batch marker says how many
 * jobs there are; the collector ends once it holds a result for each, or on Ctrl-C/SIGTERM (saying which
 * are missing). With -k outputs are printed in job order: a result that comes early waits for those
 * before it (memory: the results waiting, at most the batch). */
#define _GNU_SOURCE
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "dist.h"

static const int STOP_SIGNALS[3] = {SIGINT, SIGTERM, SIGHUP};

typedef struct seen {
  uint8_t *bits;
  wr_job **wait;  /* -k: results waiting for their turn, by seq */
  size_t cap;     /* entries in wait; bits cover the same */
} seen;

static bool grow(seen *s, uint64_t seq, bool keep) {
  if (seq < s->cap) return true;
  size_t nc = s->cap ? s->cap : 1024;
  while (nc <= seq) {
    if (nc > SIZE_MAX / 4) return false;
    nc *= 2;
  }
  uint8_t *b = realloc(s->bits, nc / 8 + 1);
  if (!b) return false;
  memset(b + (s->cap ? s->cap / 8 + 1 : 0), 0, nc / 8 + 1 - (s->cap ? s->cap / 8 + 1 : 0));
  s->bits = b;
  if (keep) {
    wr_job **w = realloc(s->wait, nc * sizeof *w);
    if (!w) return false;
    memset(w + s->cap, 0, (nc - s->cap) * sizeof *w);
    s->wait = w;
  }
  s->cap = nc;
  return true;
}

static void emit(wr_app *a, wr_job *j, const uint64_t trunc[2]) {
  wr_print_job(a, j);
  for (int k = 0; k < 2; k++)
    if (trunc[k])
      wr_msg("job %" PRIu64 ": its %s was cut by the worker at %zu of its %" PRIu64 " bytes", j->seq,
             k ? "error output" : "output", (size_t)WR_RESULT_OUT_MAX, trunc[k]);
}

int wr_collect_main(wr_app *a, wr_dist *d) {
  int status = WR_EXIT_ERROR;
  natsConnection *nc = NULL;
  jsCtx *js = NULL;
  natsSubscription *sub = NULL;
  weft_ctx *sc = NULL;
  weft_cancel *sk = NULL;
  seen s = {0};
  uint64_t total = 0, got = 0, dups = 0, next = 1, badrec = 0;
  bool total_known = false;
  if (wr_joblog_open(&a->o, &a->log) != 0) return WR_EXIT_ERROR;
  natsStatus ns = natsConnection_ConnectTo(&nc, d->server);
  if (ns == NATS_OK) ns = natsConnection_JetStream(&js, nc, NULL);
  jsSubOptions so;
  jsErrCode jerr = 0;
  if (ns == NATS_OK) ns = jsSubOptions_Init(&so);
  if (ns == NATS_OK) {
    so.Stream = d->results;
    so.Ordered = true;
    char subj[160];
    snprintf(subj, sizeof subj, "%s.>", d->results);
    ns = js_SubscribeSync(&sub, js, subj, NULL, &so, &jerr);
  }
  if (ns != NATS_OK) {
    wr_msg("%s: cannot read %s: %s", d->server, d->results, nats_GetLastError(NULL));
    goto out;
  }
  if (weft_ctx_with_signals(weft_background(), STOP_SIGNALS, 3, true, &sc, &sk) != 0) {
    wr_msg("setting up the signal handling failed");
    goto out;
  }
  bool failed = false;
  while (!(total_known && got >= total)) {
    if (weft_ctx_done(sc)) break;
    natsMsg *m = NULL;
    ns = natsSubscription_NextMsg(&m, sub, 200);
    if (ns == NATS_TIMEOUT) continue;
    if (ns != NATS_OK) {
      if (ns == NATS_CONNECTION_CLOSED || ns == NATS_INVALID_SUBSCRIPTION) {
        wr_msg("%s: reading the results failed: %s", d->server, natsStatus_GetText(ns));
        failed = true;
        break;
      }
      continue; /* a gap the ordered consumer repairs itself, a slow consumer: keep reading */
    }
    const char *subject = natsMsg_GetSubject(m);
    const char *data = natsMsg_GetData(m);
    size_t len = (size_t)natsMsg_GetDataLength(m);
    if (!strcmp(subject, d->subj_batch)) {
      unsigned long long n;
      char tail;
      char buf[64];
      size_t l = len < sizeof buf - 1 ? len : sizeof buf - 1;
      memcpy(buf, data ? data : "", l);
      buf[l] = '\0';
      if (sscanf(buf, "weft-run-batch 1 %llu%c", &n, &tail) == 2 && tail == '\n') {
        if (total_known && n != total)
          wr_msg("%s holds batches of %" PRIu64 " and %llu jobs: waiting for %llu (one batch per stream)",
                 d->results, total, n, n);
        total = n, total_known = true;
      } else {
        badrec++;
      }
      natsMsg_Destroy(m);
      continue;
    }
    uint64_t trunc[2];
    bool bad;
    wr_job *j = wr_dist_result_decode(data ? data : "", len, trunc, &bad);
    natsMsg_Destroy(m);
    if (!j) {
      if (bad) badrec++;
      else { wr_msg("out of memory"); failed = true; break; }
      continue;
    }
    if (!grow(&s, j->seq, a->o.keep_order)) { wr_msg("out of memory"); wr_job_free(j); failed = true; break; }
    if (s.bits[j->seq / 8] & (1u << (j->seq % 8))) { /* a second result of the same job */
      dups++;
      wr_job_free(j);
      continue;
    }
    s.bits[j->seq / 8] |= (uint8_t)(1u << (j->seq % 8));
    got++;
    atomic_fetch_add(&a->count[j->cls], 1);
    if (a->log && wr_joblog_write(a->log, j) != 0) {
      wr_msg("%s: writing the joblog failed", a->o.joblog);
      failed = true;
    }
    if (!a->o.keep_order) {
      emit(a, j, trunc);
      wr_job_free(j);
    } else {
      /* the truncation note is printed from the job's own record when its turn comes */
      if (trunc[0] || trunc[1]) {
        static const char cut[] = "weft-run: this job's output was cut by its worker (see --help: Across machines)\n";
        wr_hold_add(&j->err, cut, sizeof cut - 1);
      }
      s.wait[j->seq] = j;
      for (; next < s.cap && s.wait[next]; next++) {
        uint64_t none[2] = {0, 0};
        emit(a, s.wait[next], none);
        wr_job_free(s.wait[next]);
        s.wait[next] = NULL;
      }
    }
    if (atomic_load(&a->output_failed)) { failed = true; break; }
  }
  if (a->o.keep_order) /* stopped early: what waits goes out in order, gaps and all */
    for (size_t k = 0; k < s.cap; k++)
      if (s.wait[k]) {
        uint64_t none[2] = {0, 0};
        emit(a, s.wait[k], none);
        wr_job_free(s.wait[k]);
        s.wait[k] = NULL;
      }
  int signo = weft_ctx_done(sc) ? weft_cause_signal(weft_ctx_cause(sc)) : 0;
  uint64_t c[WR_NCLASS];
  for (int k = 0; k < WR_NCLASS; k++) c[k] = atomic_load(&a->count[k]);
  uint64_t missing = total_known && total > got ? total - got : 0;
  char extra[160] = "";
  if (dups || badrec)
    snprintf(extra, sizeof extra, "; %" PRIu64 " duplicate results dropped, %" PRIu64 " unreadable records", dups,
             badrec);
  wr_msg("%s: %" PRIu64 " results: %" PRIu64 " done, %" PRIu64 " failed, %" PRIu64 " timed out, %" PRIu64
         " killed%s%s", d->results, got, c[WR_DONE], c[WR_FAILED], c[WR_TIMED_OUT], c[WR_KILLED], extra,
         signo ? " - stopped by a signal" : "");
  if (!total_known && (signo || failed)) {
    wr_msg("no batch marker in %s yet: the submit has not finished, so the number of jobs is not known", d->results);
  } else if (missing) {
    char list[512];
    size_t o = 0, shown = 0;
    for (uint64_t q = 1; q <= total && shown < 20; q++)
      if (q >= s.cap || !(s.bits[q / 8] & (1u << (q % 8)))) {
        o += (size_t)snprintf(list + o, sizeof list - o, " %" PRIu64, q);
        shown++;
      }
    wr_msg("%" PRIu64 " of %" PRIu64 " jobs have no result yet:%s%s", missing, total, list,
           missing > shown ? " ..." : "");
  }
  uint64_t bad = c[WR_FAILED] + c[WR_TIMED_OUT] + c[WR_KILLED] + missing;
  if (failed) status = WR_EXIT_ERROR;
  else if (signo) status = 128 + signo;
  else status = bad > 100 ? 101 : (int)bad;
out:
  if (sk) weft_ctx_end(sk);
  if (sub) natsSubscription_Destroy(sub);
  if (js) jsCtx_Destroy(js);
  if (nc) natsConnection_Destroy(nc);
  for (size_t k = 0; k < s.cap && s.wait; k++) wr_job_free(s.wait[k]);
  free(s.wait);
  free(s.bits);
  wr_joblog_close(a->log);
  a->log = NULL;
  return status;
}
