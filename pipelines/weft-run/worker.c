/* weft-run --worker: runs jobs from a stream's durable consumer, N at a time, as a local run would.
 *
 * The run is a weft pipeline:  fetch (weft_js_pipeline_source)  ->  run (N workers, the sink).
 * The consumer holds at most N messages (max_in_flight = -j), so this worker fetches a job only when one
 * of its slots is free: no job waits here behind a slow one while another machine idles.
 *
 * A job runs under its message's context (weft_js_msg_ctx): a child of the kill context (ended by a
 * second signal, --halt now, the worker's --deadline), whose deadline is the earliest of the worker's
 * and the Weft-Deadline header's. wr_job_run spawns and watches it exactly as in a local run (its
 * --timeout is the one the job carries, --retries and --term-grace the worker's); while that context
 * lives the module keeps the message's lease (InProgress), so a job longer than AckWait is not handed
 * to another worker.
 *
 * Every message ends in exactly one of:
 *   - a result published (id "r" + the job's id, so a job run again after a crash stores one result),
 *     then the message finished: Ack, or Term when its header's deadline is what stopped it;
 *   - handed back (weft_js_finish with WEFT_ESTOPPED: Nak without delay) when this worker stopped it or
 *     never started it (second signal, --halt now, its own --deadline, a drain): another worker runs it;
 *   - publishing the result failed: finished as a failure, so the server delivers it again later;
 *   - not a job record: Term (it can never run).
 * Ctrl-C/SIGTERM once drains (fetch no more, finish and publish the running jobs); twice kills the running
 * jobs (SIGTERM, SIGKILL after the grace) and hands them back. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dist.h"

#define CAUSE_HALT (-1001)


typedef struct worker {
  wr_app *a;
  wr_dist *d;
  weft_js_consumer *c;
  char host[256];
  atomic_uint_fast64_t handed_back, bad, publish_failed;
} worker;

static double now_epoch(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run_one(weft_ctx *ctx, const void *item, void *arg) {
  (void)ctx;
  worker *w = arg;
  wr_app *a = w->a;
  weft_js_msg *m = *(weft_js_msg *const *)item;
  size_t len;
  const char *data = weft_js_msg_data(m, &len);
  bool bad;
  wr_job *j = wr_dist_job_decode(data, len, &bad);
  if (!j) {
    if (bad) {
      wr_msg("message %s is not a weft-run job: dropped (Term)", weft_js_msg_id(m));
      atomic_fetch_add(&w->bad, 1);
      weft_js_finish(m, WEFT_JS_EPERMANENT, NULL);
    } else { /* out of memory: another worker (or this one, later) takes it */
      atomic_fetch_add(&w->handed_back, 1);
      weft_js_finish(m, WEFT_ESTOPPED, NULL);
    }
    return 0;
  }
  weft_ctx *mctx = weft_js_msg_ctx(m);
  if (atomic_load(&a->stopping) || weft_ctx_done(a->kill_ctx)) { /* drained before it started */
    atomic_fetch_add(&w->handed_back, 1);
    weft_js_finish(m, WEFT_ESTOPPED, NULL);
    wr_job_free(j);
    return 0;
  }
  if (weft_ctx_done(mctx)) {
    /* its header's deadline passed before it could start (a late delivery): a result that says so */
    j->cls = WR_TIMED_OUT, j->exitval = -1, j->signo = 0, j->start = now_epoch();
    static const char why[] = "weft-run: the job's deadline passed before it started\n";
    wr_hold_add(&j->err, why, sizeof why - 1);
  } else {
    wr_job_run(a, j, mctx);
  }
  /* stopped by this worker (not by its own timeout or its header's deadline): another worker runs it */
  if (j->cls == WR_KILLED || (j->cls == WR_TIMED_OUT && weft_ctx_err(a->kill_ctx) != 0)) {
    atomic_fetch_add(&w->handed_back, 1);
    weft_js_finish(m, WEFT_ESTOPPED, NULL);
    wr_job_free(j);
    return 0;
  }
  size_t rl;
  char *rec = wr_dist_result_encode(j, w->host, &rl);
  char id[96];
  snprintf(id, sizeof id, "r%s", weft_js_msg_id(m));
  int rc = rec ? weft_js_publish(w->d->js, NULL, w->d->subj_result, rec, rl, id, NULL) : WEFT_ENOMEM;
  free(rec);
  if (rc != 0) {
    wr_msg("job %" PRIu64 ": publishing its result failed: %s; the server will deliver it again", j->seq,
           wr_dist_err(rc));
    atomic_fetch_add(&w->publish_failed, 1);
    weft_js_finish(m, rc, NULL);
    wr_job_free(j);
    return 0;
  }
  /* its header's deadline ended it: Term (expired), nobody should run it again; else Ack */
  weft_js_finish(m, weft_ctx_done(mctx) ? weft_ctx_err(mctx) : 0, NULL);
  if (a->log && wr_joblog_write(a->log, j) != 0 && !atomic_exchange(&a->input_failed, true))
    wr_msg("%s: writing the joblog failed", a->o.joblog);
  wr_job_finished(a, j);
  wr_job_free(j);
  return 0;
}

/* ---- signals, --idle ---------------------------------------------------------------------------- */

static void on_kill_ctx(void *arg) {
  wr_app *a = arg;
  if (weft_ctx_err(a->kill_ctx) == WEFT_EDEADLINE) wr_msg("the --deadline passed: stopping, running jobs go back");
  wr_stop(a, false, 0);
}

typedef struct idle {
  worker *w;
  weft_ctx *ctx;
  weft_cancel *cancel;
  pthread_t t;
  bool on;
} idle;

/* --idle: stops the worker (a drain) once no job has been held for that long. */
static void *idle_thread(void *arg) {
  idle *p = arg;
  wr_app *a = p->w->a;
  uint64_t last = UINT64_MAX;
  int64_t since = weft_now();
  while (weft_ctx_wait_for(p->ctx, WEFT_MS(50)) == WEFT_ETIMEDOUT) {
    weft_js_report r;
    if (weft_js_consumer_report(p->w->c, &r) != 0) continue;
    if (r.fetched != last || r.in_flight) last = r.fetched, since = weft_now();
    else if (weft_now() - since >= a->o.idle) {
      wr_msg("no job for %.3g s: stopping", (double)a->o.idle / 1e9);
      wr_stop(a, false, 0);
      break;
    }
  }
  return NULL;
}

int wr_worker_main(wr_app *a, wr_dist *d) {
  static worker wk;
  worker *w = &wk;
  w->a = a, w->d = d;
  if (gethostname(w->host, sizeof w->host - 1) != 0 || !w->host[0]) snprintf(w->host, sizeof w->host, "?");
  for (char *p = w->host; *p; p++)
    if (*p == '\t' || *p == '\n') *p = ' ';
  int status = WR_EXIT_ERROR;
  a->devnull = -1;
  wr_signals s = {0};
  idle id = {.w = w};
  weft_after *kill_after = NULL;
  a->slots = calloc(a->o.jobs / 64 + 1, sizeof *a->slots);
  a->devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (!a->slots || a->devnull < 0) { wr_msg("setting up failed: %s", a->slots ? strerror(errno) : "out of memory"); goto out; }

  if (wr_joblog_open(&a->o, &a->log) != 0) goto out; /* --joblog: this worker's own jobs */
  weft_js_consumer_opts co = WEFT_JS_CONSUMER_OPTS_INIT;
  co.stream = d->stream;
  co.durable = WR_DURABLE;
  co.ack_wait = a->o.ack_wait;
  co.max_deliver = WR_MAX_DELIVER;
  co.max_in_flight = a->o.jobs;
  int rc = weft_js_consumer_open(d->js, &co, &w->c);
  if (rc != 0) {
    wr_msg("%s: cannot open the consumer %s on %s: %s", d->server, WR_DURABLE, d->stream, wr_dist_err(rc));
    goto out;
  }
  if ((a->o.deadline != WEFT_FOREVER
           ? weft_ctx_with_timeout(weft_background(), a->o.deadline, &a->kill_ctx, &a->kill_cancel)
           : weft_ctx_with_cancel(weft_background(), &a->kill_ctx, &a->kill_cancel)) != 0 ||
      wr_signals_start(&s, a, "%s: fetching no more jobs, finishing the %llu running (again to stop them and hand them back)",
                       "%s again: stopping the %llu running jobs and handing them back") != 0) {
    wr_msg("setting up failed (out of memory, or the signal handling)");
    goto out;
  }
  weft_pipeline_opts po = {.name = WR_NAME " worker"};
  if (weft_pipeline_create(&po, &a->p) != 0) { wr_msg("setting up failed: out of memory"); goto out; }
  weft_stage_opts o = WEFT_STAGE_OPTS_INIT;
  o.name = "fetch";
  o.out_capacity = 1;
  o.burst = 1;
  rc = weft_js_pipeline_source(a->p, &o, w->c, a->kill_ctx);
  o = (weft_stage_opts)WEFT_STAGE_OPTS_INIT;
  o.name = "run";
  o.workers = a->o.jobs;
  o.burst = 1;
  if (rc == 0) rc = weft_pipeline_sink(a->p, &o, run_one, w);
  if (rc != 0) { wr_msg("setting up the pipeline failed: %s", weft_strerror(rc)); goto out; }
  /* the kill context's end (the worker's --deadline, a second signal, --halt now) also stops fetching */
  if (weft_ctx_after_func(a->kill_ctx, on_kill_ctx, a, &kill_after) != 0) kill_after = NULL;
  if (a->o.idle != WEFT_FOREVER && weft_ctx_with_cancel(weft_background(), &id.ctx, &id.cancel) == 0) {
    id.on = pthread_create(&id.t, NULL, idle_thread, &id) == 0;
    if (!id.on) weft_ctx_end(id.cancel);
  }
  a->started_ns = weft_now();
  weft_pipeline_report rep;
  rc = weft_pipeline_run(a->p, NULL, &rep);
  if (id.on) {
    weft_ctx_cancel(id.cancel);
    pthread_join(id.t, NULL);
    weft_ctx_end(id.cancel);
  }
  if (rc != 0) wr_msg("the run failed: %s", weft_strerror(rc));
  weft_js_report r;
  weft_js_consumer_report(w->c, &r);
  uint64_t c[WR_NCLASS];
  for (int k = 0; k < WR_NCLASS; k++) c[k] = atomic_load(&a->count[k]);
  wr_msg("worker %s: %llu done, %llu failed, %llu timed out, %llu handed back; queue: %llu fetched = %llu acked + "
         "%llu retried + %llu dead + %llu expired + %llu returned + %llu lapsed + %llu unsent + %llu in flight; "
         "%llu redelivered, %llu heartbeats",
         w->host, (unsigned long long)c[WR_DONE], (unsigned long long)c[WR_FAILED],
         (unsigned long long)c[WR_TIMED_OUT], (unsigned long long)atomic_load(&w->handed_back),
         (unsigned long long)r.fetched, (unsigned long long)r.completed, (unsigned long long)r.retried,
         (unsigned long long)r.dead, (unsigned long long)r.expired, (unsigned long long)r.returned,
         (unsigned long long)r.lapsed, (unsigned long long)r.unsent, (unsigned long long)r.in_flight,
         (unsigned long long)r.redelivered, (unsigned long long)r.heartbeats);
  int signo = atomic_load(&a->stop_signal);
  uint64_t bad = c[WR_FAILED] + c[WR_TIMED_OUT] + c[WR_KILLED];
  if (rc != 0 || atomic_load(&a->input_failed)) status = WR_EXIT_ERROR;
  else if (signo) status = 128 + signo;
  else if (a->halted) status = a->halt_status;
  else status = bad > 100 ? 101 : (int)bad;
out:
  if (s.a) wr_signals_stop(&s);
  if (kill_after) weft_after_stop(kill_after), weft_after_free(kill_after);
  if (a->p) weft_pipeline_destroy(a->p);
  a->p = NULL;
  if (w->c) weft_js_consumer_close(w->c);
  w->c = NULL;
  if (a->kill_cancel) weft_ctx_end(a->kill_cancel);
  if (a->devnull >= 0) close(a->devnull);
  free(a->slots);
  wr_joblog_close(a->log);
  a->log = NULL;
  return status;
}
