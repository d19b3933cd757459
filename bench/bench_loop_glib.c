/* bench/bench_loop_glib.c: loop_offload_glib — offloading from a GLib main context: weft's GLib adapter
 * (weft_glib_submit) against GLib's GThreadPool, side by side in one run. Built when the GLib adapter is.
 *
 * One op = one round trip: the thread iterating the GMainContext submits a job (it adds 1 to a counter), a
 * worker runs it, its result reaches the main context's thread, which submits the next. GThreadPool has
 * no way back to a main context of its own: its task hands the result over with g_main_context_invoke
 * (a GSource per result), as GLib programs do. ns_per_op is weft's; gthreadpool_ns is GLib's; ratio =
 * GLib / weft. 2 worker threads on both sides; three interleaved runs per call, each side's best kept.
 * Checked: every job ran and every completion came on the main context's thread. */
#include <pthread.h>
#include <stdatomic.h>
#include <weft/glib.h>

#include "bench.h"

enum { RT_JOBS = 4000, INNER_REPS = 3 };

static _Atomic long counter;
static long remaining, completions;
static int bad;
static pthread_t main_thread;
static GMainContext *MC;
static weft_glib *G;
static weft_pool *P;
static GThreadPool *TP;

static int add_job(weft_ctx *ctx, void *arg) {
  atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed);
  return 0;
}

static void weft_next(void);
static void weft_done(void *job_arg, int job_rc, weft_job_state state, void *cb_arg) {
  if (!pthread_equal(pthread_self(), main_thread) || state != WEFT_JOB_COMPLETED) bad++;
  completions++;
  weft_next();
}
static void weft_next(void) {
  if (remaining == 0) return;
  remaining--;
  if (weft_glib_submit(G, P, NULL, add_job, NULL, weft_done, NULL, NULL) != 0) bad++;
}

static void gtp_next(void);
static gboolean gtp_done(gpointer data) {
  if (!pthread_equal(pthread_self(), main_thread)) bad++;
  completions++;
  gtp_next();
  return G_SOURCE_REMOVE;
}
static void gtp_task(gpointer data, gpointer user_data) {
  atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed);
  g_main_context_invoke(MC, gtp_done, NULL);
}
static void gtp_next(void) {
  if (remaining == 0) return;
  remaining--;
  if (!g_thread_pool_push(TP, GINT_TO_POINTER(1), NULL)) bad++;
}

static double run_side(int side) {
  atomic_store(&counter, 0);
  remaining = RT_JOBS;
  completions = 0;
  bad = 0;
  int64_t t0 = bench_now_ns();
  side == 0 ? gtp_next() : weft_next();
  while (completions < RT_JOBS && bad == 0) g_main_context_iteration(MC, TRUE);
  int64_t t1 = bench_now_ns();
  if (bad != 0 || atomic_load(&counter) != RT_JOBS) return -1;
  return (double)(t1 - t0) / RT_JOBS;
}

static int bench_loop_offload_glib(bench_result *r) {
  main_thread = pthread_self();
  MC = g_main_context_new();
  g_main_context_push_thread_default(MC);
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 2;
  BENCH_CHECK(weft_pool_create(&o, &P) == 0);
  BENCH_CHECK(weft_glib_new(MC, &G) == 0);
  TP = g_thread_pool_new(gtp_task, NULL, 2, FALSE, NULL);
  BENCH_CHECK(TP != NULL);
  double best[2] = {0, 0};
  for (int rep = 0; rep < INNER_REPS; rep++)
    for (int side = 0; side < 2; side++) {
      double ns = run_side(side);
      BENCH_CHECK(ns > 0);
      if (rep == 0 || ns < best[side]) best[side] = ns;
    }
  g_thread_pool_free(TP, FALSE, TRUE);
  int closed = 0;
  BENCH_CHECK(weft_glib_close(G, false, NULL, NULL) == 0);
  for (int i = 0; i < 100 && !closed; i++) closed = !g_main_context_iteration(MC, FALSE);
  while (g_main_context_iteration(MC, FALSE)) {
  }
  weft_pool_destroy(P, NULL);
  g_main_context_pop_thread_default(MC);
  g_main_context_unref(MC);
  r->ops = RT_JOBS;
  r->ns_per_op = best[1];
  snprintf(r->extra, sizeof r->extra, " gthreadpool_ns=%.1f ratio=%.2f", best[0], best[0] / best[1]);
  return 0;
}

WEFT_BENCH(loop_offload_glib, bench_loop_offload_glib, 112)
