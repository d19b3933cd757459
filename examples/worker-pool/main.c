/* worker-pool: the Go guides' 3-worker pool, then a daemon that drains it on SIGTERM and proves that no
 * job was lost.
 *
 * Go's seeds start 3 goroutines reading a jobs channel, each job run under a context; a full queue means
 * "job dropped - queue full"; SIGTERM (signal.NotifyContext) stops the producer, closes the channel and
 * waits for the workers with a deadline. weft's pool (pool.h) does the plumbing: a lock-free queue, workers
 * that run each job under a context, futures for results, try-submit that says "full", a blocking submit
 * bounded by a context (backpressure instead of dropping), and a shutdown that drains within a grace period
 * and hands every job it could not run back to the caller, then reports the counts.
 *
 * Part 1 (always): 3 workers, a queue of 6; 12 jobs offered with try-submit (some are refused: "queue
 *   full"), the refused ones resubmitted with a blocking submit; each job's result read from its future.
 * Part 2 (the daemon): a producer submits a job every 10 ms (each 40-120 ms of work, every 13th fails) until
 *   SIGTERM; then the pool drains with a grace period (--grace-ms, default 2000). Jobs still queued when the
 *   grace period ends are handed back through the discard callback. The program keeps its own ledger of
 *   every job and checks it against the pool's report: each job ended exactly once, nothing lost.
 *
 *   worker-pool [--grace-ms MS] [--no-daemon]
 * Send SIGTERM (or press Ctrl-C) to stop the daemon; a second signal exits at once. Exits 0 when part 1
 * got every result and part 2's ledger matches the report. In the tests, tests/expect.sh --sigterm sends the
 * SIGTERM. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <weft/weft.h>

#define JOB_BAD_INPUT (-2000) /* a job's own error code */

/* Workers are the pool's threads: number them as they first show up, for the log. */
static atomic_int worker_seq;
static _Thread_local int worker_no;
static int worker_id(void) {
  if (worker_no == 0) worker_no = atomic_fetch_add(&worker_seq, 1) + 1;
  return worker_no;
}

/* ---- part 1: the 3-worker pool ---------------------------------------------------------------------- */

typedef struct square_job {
  int n;
  int result;
} square_job;

static int square(weft_ctx *ctx, void *arg) {
  square_job *j = arg;
  int rc = weft_ctx_sleep(ctx, WEFT_MS(20)); /* some work that stops if the pool is cancelled */
  if (rc != 0) return rc;
  j->result = j->n * j->n;
  printf("  worker %d: job %2d -> %3d\n", worker_id(), j->n, j->result);
  return 0;
}

static int part1(void) {
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 3;
  o.queue_cap = 6;
  weft_pool *pool;
  if (weft_pool_create(&o, &pool) != 0) return 0;
  enum { N = 12 };
  square_job jobs[N];
  weft_future *fut[N];
  int refused = 0;
  printf("part 1: %zu workers, room for %zu queued jobs; 12 jobs offered at once\n", weft_pool_workers(pool),
         weft_pool_capacity(pool));
  for (int i = 0; i < N; i++) {
    jobs[i] = (square_job){i + 1, 0};
    weft_job_opts jo = WEFT_JOB_OPTS_INIT;
    jo.nowait = true; /* try-submit: never blocks */
    int rc = weft_pool_submit_opts(pool, NULL, square, &jobs[i], &jo, &fut[i]);
    if (rc == WEFT_EFULL) {
      printf("  job %2d: queue full (Go's seed would drop it); submitting it again, waiting for room\n", i + 1);
      refused++;
      jo.nowait = false; /* the blocking submit: backpressure instead of loss */
      rc = weft_pool_submit_opts(pool, NULL, square, &jobs[i], &jo, &fut[i]);
    }
    if (rc != 0) {
      printf("  job %2d: %s\n", i + 1, weft_strerror(rc));
      fut[i] = NULL;
    }
  }
  int ok = 1, sum = 0;
  for (int i = 0; i < N; i++) {
    int job_rc = -1;
    if (fut[i] == NULL || weft_future_wait(fut[i], NULL, &job_rc) != 0 || job_rc != 0) ok = 0;
    sum += jobs[i].result;
    weft_future_release(fut[i]);
  }
  weft_pool_report rep;
  weft_pool_destroy(pool, &rep);
  printf("  results read from the futures: sum of squares 1..12 = %d (expected 650); %d refused at first, "
         "%llu completed\n", sum, refused, (unsigned long long)rep.completed);
  return ok && sum == 650 && rep.completed == N;
}

/* ---- part 2: the daemon ------------------------------------------------------------------------------ */

enum { QUEUED, RUNNING, COMPLETED, FAILED, CANCELED, RETURNED, NSTATES };
static const char *const state_names[NSTATES] = {"queued", "running", "completed", "failed",
                                                 "canceled while running", "handed back unrun"};

typedef struct job {
  int id;
  int64_t work;
  atomic_int state;
  atomic_int endings; /* how many times this job ended: must be exactly 1 */
} job;

static void job_end(job *j, int state) {
  atomic_store(&j->state, state);
  atomic_fetch_add(&j->endings, 1);
}

static int work(weft_ctx *ctx, void *arg) {
  job *j = arg;
  atomic_store(&j->state, RUNNING);
  int rc = weft_ctx_sleep(ctx, j->work);
  if (rc != 0) {
    job_end(j, CANCELED);
    return rc;
  }
  if (j->id % 13 == 0) {
    job_end(j, FAILED);
    return JOB_BAD_INPUT;
  }
  job_end(j, COMPLETED);
  return 0;
}

/* The pool hands back every job it will never run: here we only record it; a real daemon would write it
 * to a spool to run after the restart. */
static void returned(void *arg, void *discard_arg) {
  atomic_fetch_add((atomic_int *)discard_arg, 1);
  job_end(arg, RETURNED);
}

#define MAX_JOBS 4096
static job ledger[MAX_JOBS];

typedef struct producer_arg {
  weft_pool *pool;
  weft_ctx *stop;
  int submitted;
} producer_arg;

static void *producer(void *arg) {
  producer_arg *p = arg;
  unsigned seed = 42;
  while (weft_ctx_err(p->stop) == 0 && p->submitted < MAX_JOBS) {
    job *j = &ledger[p->submitted];
    j->id = p->submitted + 1;
    j->work = WEFT_MS(40 + rand_r(&seed) % 81);
    /* Blocks while the queue is full (backpressure); gives up only when SIGTERM arrives. */
    int rc = weft_pool_submit(p->pool, p->stop, work, j);
    if (rc != 0) break; /* not submitted: stays ours, not counted */
    p->submitted++;
    weft_ctx_sleep(p->stop, WEFT_MS(10));
  }
  return NULL;
}

static int part2(weft_ctx *stop, int64_t grace) {
  atomic_int returned_count;
  atomic_init(&returned_count, 0);
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 3;
  o.queue_cap = 12;
  o.discard = returned;
  o.discard_arg = &returned_count;
  weft_pool *pool;
  if (weft_pool_create(&o, &pool) != 0) return 0;
  producer_arg pa = {pool, stop, 0};
  pthread_t th;
  if (pthread_create(&th, NULL, producer, &pa) != 0) return 0;
  printf("part 2: daemon running (pid %d): 3 workers, a job every 10 ms; send SIGTERM to stop\n", (int)getpid());

  weft_ctx_wait_until(stop, WEFT_FOREVER); /* the daemon's main loop has nothing else to do */
  int64_t t = weft_now();
  pthread_join(th, NULL); /* the producer stopped at the signal */
  struct weft_pool_stats st;
  weft_pool_stats(pool, &st);
  printf("SIGTERM: producer stopped after %d jobs; %llu queued, %llu running; draining with a %.2f s grace\n",
         pa.submitted, (unsigned long long)st.queued, (unsigned long long)st.running, (double)grace / 1e9);
  weft_pool_report rep;
  /* 0 when every job ended; WEFT_ETIMEDOUT when some job was still running once the grace period and the
   * settle time after it ran out (none here: every job stops when its context is cancelled). */
  int src = weft_pool_shutdown(pool, WEFT_POOL_DRAIN, grace, &rep);
  printf("shutdown took %.0f ms: %s\n", (double)(weft_now() - t) / 1e6,
         src == 0 ? "every job ended" : src == WEFT_ETIMEDOUT ? "jobs still running (destroy joins them)"
                                                             : weft_strerror(src));
  weft_pool_report fin;
  weft_pool_destroy(pool, &fin); /* joins the workers */

  /* The report, and our own ledger: every job submitted ended exactly once. */
  int count[NSTATES] = {0}, bad = 0;
  for (int i = 0; i < pa.submitted; i++) {
    count[atomic_load(&ledger[i].state)]++;
    if (atomic_load(&ledger[i].endings) != 1) bad++;
  }
  printf("report: submitted %llu = completed %llu + failed %llu + canceled before start %llu + canceled while "
         "running %llu + still running %llu\n",
         (unsigned long long)fin.submitted, (unsigned long long)fin.completed, (unsigned long long)fin.failed,
         (unsigned long long)fin.canceled_before_start, (unsigned long long)fin.canceled_while_running,
         (unsigned long long)fin.still_running);
  printf("ledger:");
  for (int s = 0; s < NSTATES; s++) printf(" %s %d%s", state_names[s], count[s], s + 1 < NSTATES ? "," : "\n");
  int ok = bad == 0 && fin.submitted == (uint64_t)pa.submitted && count[QUEUED] == 0 && count[RUNNING] == 0 &&
           fin.completed == (uint64_t)count[COMPLETED] && fin.failed == (uint64_t)count[FAILED] &&
           fin.canceled_while_running == (uint64_t)count[CANCELED] &&
           fin.canceled_before_start == (uint64_t)count[RETURNED] &&
           count[RETURNED] == atomic_load(&returned_count) && fin.still_running == 0 && pa.submitted > 0;
  if (ok)
    printf("nothing lost: each of the %d jobs ended exactly once, and %d unrun job(s) came back to the daemon\n",
           pa.submitted, count[RETURNED]);
  else
    printf("LOST OR DOUBLED: %d job(s) did not end exactly once, or the ledger disagrees with the report\n", bad);
  return ok;
}

int main(int argc, char **argv) {
  int64_t grace = WEFT_MS(2000);
  bool daemon = true;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--grace-ms") == 0 && i + 1 < argc) grace = WEFT_MS(atoll(argv[++i]));
    else if (strcmp(argv[i], "--no-daemon") == 0) daemon = false;
    else if (strcmp(argv[i], "--fast") != 0) {
      fprintf(stderr, "usage: %s [--grace-ms MS] [--no-daemon]\n", argv[0]);
      return 2;
    }
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  /* signal.NotifyContext(background, SIGTERM, SIGINT), before any thread; a second signal exits. */
  weft_ctx *stop;
  weft_cancel *stop_cancel;
  if (weft_ctx_with_signals(weft_background(), NULL, 0, true, &stop, &stop_cancel) != 0) return 1;
  int ok = part1();
  if (daemon) ok = part2(stop, grace) && ok;
  weft_ctx_end(stop_cancel);
  printf("live contexts at the end: %zu\n", weft_ctx_live_count());
  ok = ok && weft_ctx_live_count() == 0;
  printf("%s\n", ok ? "OK: the pool lost nothing" : "FAILED");
  return ok ? 0 : 1;
}
