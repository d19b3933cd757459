/* bench/bench_loop.c: loop_offload and loop_offload_64 — offloading from a libuv loop thread: weft's
 * libuv adapter (weft_uv_submit) against libuv's own threadpool (uv_queue_work), side by side in one run.
 * Built when the libuv adapter is (bench/CMakeLists.txt).
 *
 * loop_offload: one op = one round trip: the loop thread submits a job (it adds 1 to a counter), a worker
 *   runs it, its completion callback runs on the loop thread and submits the next one. ns_per_op is
 *   weft's; uv_queue_work_ns is libuv's doing the same (work_cb adds 1, after_work_cb queues the next);
 *   weft_cancelable_ns is weft's with a per-job cancel handle (one context derivation per job, which
 *   uv_queue_work cannot offer: uv_cancel only stops work that has not started). ratio = uv / weft
 *   (above 1: weft is faster).
 * loop_offload_64: the same with 64 jobs in flight (each completion submits one more); one op = one job.
 * Both sides use 2 worker threads (UV_THREADPOOL_SIZE=2, set before libuv's pool starts; the pool of
 * weft has 2 workers). Each call runs every side three times, interleaved, and keeps each side's best.
 * Checked: every job ran, every completion came, on the loop thread, the counter equals the jobs. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <weft/uv.h>

#include "bench.h"

enum { RT_JOBS = 4000, WIN_JOBS = 100000, INNER_REPS = 3 };

static _Atomic long counter;
static long remaining, completions;
static int bad_thread;
static pthread_t loop_thread;
static weft_uv *U;
static weft_pool *P;
static uv_loop_t *L;
static bool cancelable;

static int add_job(weft_ctx *ctx, void *arg) {
  atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed);
  return 0;
}

static void weft_next(void);
static void weft_done(void *job_arg, int job_rc, weft_job_state state, void *cb_arg) {
  if (!pthread_equal(pthread_self(), loop_thread) || state != WEFT_JOB_COMPLETED) bad_thread++;
  completions++;
  weft_next();
}
static void weft_next(void) {
  if (remaining == 0) return;
  remaining--;
  weft_uv_job *j;
  if (weft_uv_submit(U, P, NULL, add_job, NULL, weft_done, NULL, cancelable ? &j : NULL) != 0) bad_thread++;
}

static void uv_work(uv_work_t *w) { atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed); }
static void uv_next(void);
static void uv_after(uv_work_t *w, int status) {
  if (!pthread_equal(pthread_self(), loop_thread) || status != 0) bad_thread++;
  completions++;
  free(w);
  uv_next();
}
static void uv_next(void) {
  if (remaining == 0) return;
  remaining--;
  uv_work_t *w = malloc(sizeof *w);
  if (w == NULL || uv_queue_work(L, w, uv_work, uv_after) != 0) bad_thread++;
}

/* Runs `jobs` jobs with `win` in flight on one side; returns ns per job, or -1 if a check failed. */
static double run_side(int side, long jobs, long win) {
  atomic_store(&counter, 0);
  remaining = jobs;
  completions = 0;
  bad_thread = 0;
  cancelable = side == 2;
  int64_t t0 = bench_now_ns();
  for (long i = 0; i < win; i++) side == 0 ? uv_next() : weft_next();
  uv_run(L, UV_RUN_DEFAULT);
  int64_t t1 = bench_now_ns();
  if (bad_thread != 0 || completions != jobs || atomic_load(&counter) != jobs) return -1;
  return (double)(t1 - t0) / (double)jobs;
}

static int run_workload(bench_result *r, long jobs, long win) {
  setenv("UV_THREADPOOL_SIZE", "2", 1); /* read once, when libuv's pool starts */
  loop_thread = pthread_self();
  uv_loop_t loop;
  BENCH_CHECK(uv_loop_init(&loop) == 0);
  L = &loop;
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 2;
  BENCH_CHECK(weft_pool_create(&o, &P) == 0);
  BENCH_CHECK(weft_uv_init(&loop, &U) == 0);
  double best[3] = {0, 0, 0};
  for (int rep = 0; rep < INNER_REPS; rep++)
    for (int side = 0; side < 3; side++) {
      double ns = run_side(side, jobs, win);
      BENCH_CHECK(ns > 0);
      if (rep == 0 || ns < best[side]) best[side] = ns;
    }
  weft_pool_report rep;
  weft_uv_report(U, &rep);
  BENCH_CHECK(rep.completed == (uint64_t)(2 * INNER_REPS * jobs) && rep.still_running == 0);
  BENCH_CHECK(weft_uv_close(U, false, NULL, NULL) == 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  BENCH_CHECK(uv_loop_close(&loop) == 0);
  weft_pool_destroy(P, NULL);
  r->ops = jobs;
  r->ns_per_op = best[1];
  snprintf(r->extra, sizeof r->extra, " uv_queue_work_ns=%.1f weft_cancelable_ns=%.1f ratio=%.2f in_flight=%ld",
           best[0], best[2], best[0] / best[1], win);
  return 0;
}

static int bench_loop_offload(bench_result *r) { return run_workload(r, RT_JOBS, 1); }
static int bench_loop_offload_64(bench_result *r) { return run_workload(r, WIN_JOBS, 64); }

WEFT_BENCH(loop_offload, bench_loop_offload, 110)
WEFT_BENCH(loop_offload_64, bench_loop_offload_64, 111)
