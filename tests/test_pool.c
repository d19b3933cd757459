/* Pool semantics: a small pool of timed jobs, futures, try/blocking submit, jobs submitting jobs, wait-all, contexts,
 * stats and bad input. Stress and shutdown modes are in test_pool_stress.c / test_pool_shutdown.c. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

#include "weft_test.h"

static int sleep_job(weft_ctx *ctx, void *arg) { return weft_ctx_sleep(ctx, *(int64_t *)arg); }
static int noop_job(weft_ctx *ctx, void *arg) {
  (void)ctx;
  if (arg) atomic_fetch_add((_Atomic int *)arg, 1);
  return 0;
}

/* 3 workers, a queue of 10, a 5 s pool context; jobs of 500 ms, 1 s, 2 s, 4 s and 300 ms
 * submitted 100 ms apart; shutdown (cancel) at about 3 s. Jobs 1, 2, 3 and 5 finish; job 4 (running
 * 500 ms..4.5 s) is cancelled while running. Asserted by causality: 1, 2, 3, 5 are awaited before the
 * shutdown, and job 4 is checked still pending right before it. */
WEFT_TEST(pool, jobs_under_a_pool_deadline_finish_or_are_canceled) {
  weft_ctx *pctx;
  weft_cancel *pcancel = NULL;
  cr_assert_eq(weft_ctx_with_timeout(weft_background(), WEFT_SEC(5), &pctx, &pcancel), 0);
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 3;
  o.queue_cap = 10;
  o.parent = pctx;
  weft_pool *p;
  cr_assert_eq(weft_pool_create(&o, &p), 0);
  static int64_t durs[5] = {WEFT_MS(500), WEFT_SEC(1), WEFT_SEC(2), WEFT_SEC(4), WEFT_MS(300)};
  weft_future *f[5];
  int64_t t0 = weft_now();
  for (int i = 0; i < 5; i++) {
    cr_assert_eq(weft_pool_submit_opts(p, NULL, sleep_job, &durs[i], NULL, &f[i]), 0);
    weft_ctx_sleep(weft_background(), WEFT_MS(100));
  }
  int rc;
  int done_first[] = {0, 1, 2, 4};
  for (int k = 0; k < 4; k++) {
    cr_assert_eq(weft_future_wait(f[done_first[k]], NULL, &rc), 0);
    cr_assert_eq(rc, 0, "job %d: %s", done_first[k] + 1, weft_err_name(rc));
  }
  int64_t now = weft_now();
  if (now < t0 + WEFT_SEC(3)) weft_ctx_sleep(weft_background(), t0 + WEFT_SEC(3) - now);
  cr_assert(!weft_future_done(f[3]), "the 4 s job cannot have finished at 3 s");
  weft_pool_report rep;
  cr_assert_eq(weft_pool_shutdown(p, WEFT_POOL_CANCEL, WEFT_FOREVER, &rep), 0);
  cr_assert_eq(weft_future_wait(f[3], NULL, &rc), 0);
  cr_assert_eq(rc, WEFT_ECANCELED);
  cr_assert_eq(rep.submitted, 5);
  cr_assert_eq(rep.completed, 4);
  cr_assert_eq(rep.canceled_while_running, 1);
  cr_assert_eq(rep.failed + rep.canceled_before_start + rep.still_running, 0);
  for (int i = 0; i < 5; i++) weft_future_release(f[i]);
  weft_pool_destroy(p, NULL);
  weft_ctx_end(pcancel);
}

static int gate_job(weft_ctx *ctx, void *arg) {
  _Atomic int *g = arg;
  atomic_store(&g[0], 1); /* started */
  while (!atomic_load(&g[1])) {
    if (weft_ctx_err(ctx)) return weft_ctx_err(ctx);
    usleep(200);
  }
  return 0;
}

WEFT_TEST(pool, try_submit_full_and_blocking_submit_deadline) {
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 1;
  o.queue_cap = 2;
  weft_pool *p;
  cr_assert_eq(weft_pool_create(&o, &p), 0);
  cr_assert_eq(weft_pool_capacity(p), 2);
  _Atomic int gate[2] = {0, 0}, count = 0;
  cr_assert_eq(weft_pool_submit(p, NULL, gate_job, gate), 0);
  while (!atomic_load(&gate[0])) usleep(100);
  cr_assert_eq(weft_pool_try_submit(p, noop_job, &count), 0);
  cr_assert_eq(weft_pool_try_submit(p, noop_job, &count), 0);
  cr_assert_eq(weft_pool_try_submit(p, noop_job, &count), WEFT_EFULL);
  weft_job_opts jo = WEFT_JOB_OPTS_INIT;
  jo.nowait = true;
  cr_assert_eq(weft_pool_submit_opts(p, NULL, noop_job, &count, &jo, NULL), WEFT_EFULL);
  weft_ctx *c;
  weft_cancel *c_cancel = NULL;
  cr_assert_eq(weft_ctx_with_timeout(weft_background(), WEFT_MS(50), &c, &c_cancel), 0);
  cr_assert_eq(weft_pool_submit(p, c, noop_job, &count), WEFT_EDEADLINE);
  weft_ctx_end(c_cancel);
  struct weft_pool_stats st;
  cr_assert_eq(weft_pool_stats(p, &st), 0);
  cr_assert_eq(st.queued, 2);
  cr_assert_eq(st.running, 1);
  atomic_store(&gate[1], 1);
  cr_assert_eq(weft_pool_submit(p, NULL, noop_job, &count), 0); /* waits for room, then queues */
  cr_assert_eq(weft_pool_wait_all(p, NULL), 0);
  cr_assert_eq(atomic_load(&count), 3);
  weft_pool_report rep;
  weft_pool_destroy(p, &rep);
  cr_assert_eq(rep.submitted, 4);
  cr_assert_eq(rep.completed, 4);
}

static int ret_job(weft_ctx *ctx, void *arg) {
  (void)ctx;
  return (int)(intptr_t)arg;
}

WEFT_TEST(pool, future_returns_result_and_wait_honours_ctx) {
  weft_pool *p;
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 2;
  cr_assert_eq(weft_pool_create(&o, &p), 0);
  weft_future *f;
  int rc = 1;
  cr_assert_eq(weft_pool_submit_opts(p, NULL, ret_job, (void *)(intptr_t)-42, NULL, &f), 0);
  cr_assert_eq(weft_future_wait(f, NULL, &rc), 0);
  cr_assert_eq(rc, -42);
  cr_assert(weft_future_done(f));
  weft_future_release(f);

  _Atomic int gate[2] = {0, 0};
  cr_assert_eq(weft_pool_submit_opts(p, NULL, gate_job, gate, NULL, &f), 0);
  weft_ctx *c;
  weft_cancel *c_cancel = NULL;
  cr_assert_eq(weft_ctx_with_timeout(weft_background(), WEFT_MS(20), &c, &c_cancel), 0);
  cr_assert_eq(weft_future_wait(f, c, &rc), WEFT_EDEADLINE);
  weft_ctx_end(c_cancel);
  atomic_store(&gate[1], 1);
  cr_assert_eq(weft_future_wait(f, NULL, &rc), 0);
  cr_assert_eq(rc, 0);
  weft_future_release(f);
  weft_pool_report rep;
  weft_pool_destroy(p, &rep);
  cr_assert_eq(rep.completed, 1);
  cr_assert_eq(rep.failed, 1);
}

/* A job may submit to its own full pool: the submit runs the job inline instead of deadlocking. */
static weft_pool *spawn_pool;
static int spawner(weft_ctx *ctx, void *arg) {
  for (int i = 0; i < 50; i++)
    if (weft_pool_submit(spawn_pool, ctx, noop_job, arg) != 0) return -1;
  return 0;
}

WEFT_TEST(pool, job_submitting_to_its_full_pool_does_not_deadlock) {
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 1;
  o.queue_cap = 1;
  cr_assert_eq(weft_pool_create(&o, &spawn_pool), 0);
  _Atomic int count = 0;
  cr_assert_eq(weft_pool_submit(spawn_pool, NULL, spawner, &count), 0);
  cr_assert_eq(weft_pool_submit(spawn_pool, NULL, spawner, &count), 0);
  cr_assert_eq(weft_pool_wait_all(spawn_pool, NULL), 0);
  cr_assert_eq(atomic_load(&count), 100);
  weft_pool_report rep;
  weft_pool_destroy(spawn_pool, &rep);
  cr_assert_eq(rep.submitted, 102);
  cr_assert_eq(rep.completed, 102);
}

static int ctx_job(weft_ctx *ctx, void *arg) {
  (void)arg;
  return weft_ctx_wait_until(ctx, WEFT_FOREVER);
}

static _Atomic int joined_started;
static int started_ctx_job(weft_ctx *ctx, void *arg) {
  atomic_store(&joined_started, 1);
  return weft_ctx_wait_until(ctx, WEFT_FOREVER);
}

WEFT_TEST(pool, job_context_joins_submitter_ctx_and_timeout) {
  weft_pool *p;
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 2;
  cr_assert_eq(weft_pool_create(&o, &p), 0);
  weft_ctx *sub;
  weft_cancel *sub_cancel = NULL;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &sub, &sub_cancel), 0);
  weft_job_opts jo = WEFT_JOB_OPTS_INIT;
  jo.run_ctx = sub;
  weft_future *f1, *f2, *f3;
  cr_assert_eq(weft_pool_submit_opts(p, sub, started_ctx_job, NULL, &jo, &f1), 0);
  weft_job_opts jt = WEFT_JOB_OPTS_INIT;
  jt.timeout = WEFT_MS(20);
  cr_assert_eq(weft_pool_submit_opts(p, NULL, ctx_job, NULL, &jt, &f2), 0);
  int rc;
  cr_assert_eq(weft_future_wait(f2, NULL, &rc), 0);
  cr_assert_eq(rc, WEFT_EDEADLINE);
  while (!atomic_load(&joined_started)) usleep(200); /* the submitter's cancel must find it running */
  weft_ctx_cancel(sub_cancel);
  cr_assert_eq(weft_future_wait(f1, NULL, &rc), 0);
  cr_assert_eq(rc, WEFT_ECANCELED);
  /* A job whose submitter context is done before it starts never runs: it is discarded. */
  _Atomic int ran = 0;
  cr_assert_eq(weft_pool_submit_opts(p, NULL, noop_job, &ran, &jo, &f3), 0);
  cr_assert_eq(weft_future_wait(f3, NULL, &rc), 0);
  cr_assert_eq(rc, WEFT_ECANCELED);
  cr_assert_eq(atomic_load(&ran), 0);
  weft_future_release(f3);
  weft_future_release(f1);
  weft_future_release(f2);
  weft_ctx_end(sub_cancel);
  weft_pool_report rep;
  weft_pool_destroy(p, &rep);
  /* Its own timeout and the submitter's context ended them, not shutdown: both failed. On a loaded host the
   * second job's own 20 ms can pass before a worker starts it (the timeout is armed when the worker takes
   * the job): then it was discarded, canceled before start, with the same WEFT_EDEADLINE. */
  bool f2_ran = rep.canceled_before_start == 1;
  cr_assert_eq(rep.failed, f2_ran ? 2 : 1);
  cr_assert_eq(rep.timed_out, f2_ran ? 1 : 0);
  cr_assert_eq(rep.canceled_while_running, 0);
  cr_assert_eq(rep.canceled_before_start, f2_ran ? 1 : 2);
  cr_assert_eq(rep.submitted, 3);
}

/* A job that waits for jobs submitted after it. A worker takes several queued jobs at once; when the job
 * it runs blocks, the ones it took and has not started must go back to the queue for an idle worker
 * (pool.c, hand_back), or the wait never ends although a worker is free. Both workers are first held by
 * gate jobs, so the waiter and the eight signallers are queued together (alternating between the two
 * workers' queues) and each worker takes its share at once when the gates open. */
static weft_sem *hb_gate, *hb_started, *hb_signals;
static int hb_gate_job(weft_ctx *ctx, void *arg) {
  (void)arg;
  weft_sem_release(hb_started, 1);
  return weft_sem_acquire(hb_gate, ctx, 1);
}
static int hb_waiter_job(weft_ctx *ctx, void *arg) {
  (void)arg;
  return weft_sem_acquire(hb_signals, ctx, 8);
}
static int hb_signal_job(weft_ctx *ctx, void *arg) {
  (void)ctx;
  (void)arg;
  return weft_sem_release(hb_signals, 1);
}

WEFT_TEST(pool, job_waiting_for_later_jobs_gets_them_run_by_idle_worker) {
  cr_assert_eq(weft_sem_create(2, &hb_gate), 0);
  cr_assert_eq(weft_sem_create(2, &hb_started), 0);
  cr_assert_eq(weft_sem_create(8, &hb_signals), 0);
  cr_assert_eq(weft_sem_try_acquire(hb_gate, 2), 0); /* every semaphore starts empty */
  cr_assert_eq(weft_sem_try_acquire(hb_started, 2), 0);
  cr_assert_eq(weft_sem_try_acquire(hb_signals, 8), 0);
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 2;
  o.queue_cap = 64;
  weft_pool *p;
  cr_assert_eq(weft_pool_create(&o, &p), 0);
  weft_ctx *limit;
  weft_cancel *limit_cancel = NULL;
  cr_assert_eq(weft_ctx_with_timeout(weft_background(), WEFT_SEC(20), &limit, &limit_cancel), 0);
  for (int i = 0; i < 2; i++) cr_assert_eq(weft_pool_submit(p, NULL, hb_gate_job, NULL), 0);
  cr_assert_eq(weft_sem_acquire(hb_started, limit, 2), 0); /* both workers are inside a gate job */
  cr_assert_eq(weft_pool_submit(p, NULL, hb_waiter_job, NULL), 0);
  for (int i = 0; i < 8; i++) cr_assert_eq(weft_pool_submit(p, NULL, hb_signal_job, NULL), 0);
  cr_assert_eq(weft_sem_release(hb_gate, 2), 0);
  cr_assert_eq(weft_pool_wait_all(p, limit), 0, "the waiter still waits for signallers its worker holds");
  weft_pool_report rep;
  weft_pool_destroy(p, &rep);
  cr_assert_eq(rep.submitted, 11);
  cr_assert_eq(rep.completed, 11);
  weft_ctx_end(limit_cancel);
  weft_sem_destroy(hb_gate);
  weft_sem_destroy(hb_started);
  weft_sem_destroy(hb_signals);
}

WEFT_TEST(pool, default_job_timeout_applies) {
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 1;
  o.job_timeout = WEFT_MS(10);
  weft_pool *p;
  cr_assert_eq(weft_pool_create(&o, &p), 0);
  weft_future *f;
  int rc;
  cr_assert_eq(weft_pool_submit_opts(p, NULL, ctx_job, NULL, NULL, &f), 0);
  cr_assert_eq(weft_future_wait(f, NULL, &rc), 0);
  cr_assert_eq(rc, WEFT_EDEADLINE);
  weft_future_release(f);
  cr_assert_eq(weft_pool_submit(p, NULL, ctx_job, NULL), 0);
  cr_assert_eq(weft_pool_wait_all(p, NULL), 0);
  weft_pool_destroy(p, NULL);
}

WEFT_TEST(pool, wait_all_and_stats) {
  weft_pool *p;
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 3;
  o.queue_cap = 64;
  cr_assert_eq(weft_pool_create(&o, &p), 0);
  _Atomic int count = 0;
  for (int i = 0; i < 1000; i++) cr_assert_eq(weft_pool_submit(p, NULL, noop_job, &count), 0);
  for (int i = 0; i < 10; i++) cr_assert_eq(weft_pool_submit(p, NULL, ret_job, (void *)(intptr_t)-1), 0);
  cr_assert_eq(weft_pool_wait_all(p, NULL), 0);
  cr_assert_eq(atomic_load(&count), 1000);
  struct weft_pool_stats st;
  cr_assert_eq(weft_pool_stats(p, &st), 0);
  cr_assert_eq(st.submitted, 1010);
  cr_assert_eq(st.completed, 1000);
  cr_assert_eq(st.failed, 10);
  cr_assert_eq(st.queued, 0);
  cr_assert_eq(st.running, 0);
  cr_assert(st.samples > 0);
  cr_assert(st.wait_p50 > 0 && st.wait_p50 <= st.wait_p99);
  cr_assert(st.run_p50 > 0 && st.run_p50 <= st.run_p99);
  weft_pool_destroy(p, NULL);
}

WEFT_TEST(pool, bad_input) {
  weft_pool *p = (weft_pool *)1;
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  cr_assert_eq(weft_pool_create(&o, NULL), WEFT_EINVAL);
  o.queue_cap = 0; /* zero queue capacity is invalid */
  cr_assert_eq(weft_pool_create(&o, &p), WEFT_EINVAL);
  cr_assert_null(p);
  o = (weft_pool_opts)WEFT_POOL_OPTS_INIT;
  o.workers = 5000;
  cr_assert_eq(weft_pool_create(&o, &p), WEFT_EINVAL);
  o = (weft_pool_opts)WEFT_POOL_OPTS_INIT;
  o.job_timeout = 0;
  cr_assert_eq(weft_pool_create(&o, &p), WEFT_EINVAL);
  o = (weft_pool_opts)WEFT_POOL_OPTS_INIT; /* workers 0 means one per online CPU */
  cr_assert_eq(weft_pool_create(&o, &p), 0);
  cr_assert_eq(weft_pool_workers(p), (size_t)sysconf(_SC_NPROCESSORS_ONLN));
  cr_assert_eq(weft_pool_submit(p, NULL, NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_pool_try_submit(p, NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_pool_submit(NULL, NULL, noop_job, NULL), WEFT_EINVAL);
  weft_job_opts jo = WEFT_JOB_OPTS_INIT;
  jo.timeout = -1;
  cr_assert_eq(weft_pool_submit_opts(p, NULL, noop_job, NULL, &jo, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_pool_shutdown(p, (weft_pool_mode)7, 0, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_pool_shutdown(p, WEFT_POOL_DRAIN, -1, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_future_wait(NULL, NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_pool_wait_all(NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_pool_stats(p, NULL), WEFT_EINVAL);
  weft_pool_report rep;
  cr_assert_eq(weft_pool_shutdown(p, WEFT_POOL_DRAIN, WEFT_FOREVER, &rep), 0);
  cr_assert_eq(rep.submitted, 0);
  /* After shutdown: stopped. (After destroy the handle is gone, as after free(); not testable.) */
  cr_assert_eq(weft_pool_submit(p, NULL, noop_job, NULL), WEFT_ESTOPPED);
  cr_assert_eq(weft_pool_try_submit(p, noop_job, NULL), WEFT_ESTOPPED);
  weft_future *f = (weft_future *)1;
  cr_assert_eq(weft_pool_submit_opts(p, NULL, noop_job, NULL, NULL, &f), WEFT_ESTOPPED);
  cr_assert_null(f);
  cr_assert_eq(weft_pool_shutdown(p, WEFT_POOL_DRAIN, WEFT_FOREVER, &rep), WEFT_ESTATE);
  weft_pool_destroy(p, &rep);
  cr_assert_eq(rep.submitted, 0);
  weft_pool_destroy(NULL, NULL);
}

/* Several pools in one process, used at once from several threads. */
static void *use_pool(void *arg) {
  weft_pool *p = arg;
  static _Atomic int sink;
  for (int i = 0; i < 2000; i++)
    if (weft_pool_submit(p, NULL, noop_job, &sink) != 0) return (void *)1;
  return weft_pool_wait_all(p, NULL) == 0 ? NULL : (void *)1;
}

WEFT_TEST(pool, several_pools_at_once) {
  weft_pool *p[3];
  pthread_t th[3];
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 2;
  o.queue_cap = 16;
  for (int i = 0; i < 3; i++) cr_assert_eq(weft_pool_create(&o, &p[i]), 0);
  for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, use_pool, p[i]);
  for (int i = 0; i < 3; i++) {
    void *r;
    pthread_join(th[i], &r);
    cr_assert_null(r);
  }
  for (int i = 0; i < 3; i++) {
    weft_pool_report rep;
    weft_pool_destroy(p[i], &rep);
    cr_assert_eq(rep.completed, 2000);
  }
}

/* The queue holds exactly queue_cap jobs, whatever the worker count (it was rounded up to a multiple of
 * the workers). Both workers are held in a job, so nothing is claimed while the queue fills. */
static _Atomic int held_running, held_open;
static int holding_job(weft_ctx *ctx, void *arg) {
  atomic_fetch_add(&held_running, 1);
  while (!atomic_load(&held_open)) usleep(200);
  return 0;
}

WEFT_TEST(pool, queue_capacity_is_exactly_what_was_asked) {
  static const size_t caps[] = {1, 2, 3, 5, 7, 33};
  for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
    atomic_store(&held_running, 0);
    atomic_store(&held_open, 0);
    weft_pool_opts o = WEFT_POOL_OPTS_INIT;
    o.workers = 2;
    o.queue_cap = caps[c];
    weft_pool *p;
    cr_assert_eq(weft_pool_create(&o, &p), 0);
    cr_assert_eq(weft_pool_capacity(p), caps[c]);
    for (int i = 0; i < 2; i++) {
      cr_assert_eq(weft_pool_submit(p, NULL, holding_job, NULL), 0);
      while (atomic_load(&held_running) != i + 1) usleep(200); /* one at a time: each worker takes one */
    }
    size_t accepted = 0;
    while (weft_pool_try_submit(p, noop_job, NULL) == 0) accepted++;
    cr_assert_eq(accepted, caps[c], "queue_cap %zu: %zu jobs queued", caps[c], accepted);
    atomic_store(&held_open, 1);
    weft_pool_report rep;
    cr_assert_eq(weft_pool_shutdown(p, WEFT_POOL_DRAIN, WEFT_FOREVER, &rep), 0);
    cr_assert_eq(rep.completed, caps[c] + 2);
    weft_pool_destroy(p, NULL);
  }
}

/* Sizes from users are range-checked: no wrap, no endless loop, no pool of capacity 0. */
WEFT_TEST(pool, huge_sizes_are_refused) {
  static const size_t bad[] = {((size_t)1 << 30) + 1, (size_t)1 << 60, ((size_t)1 << 62) + 1,
                               ((size_t)1 << 63) + 5, SIZE_MAX};
  for (size_t w = 1; w <= 3; w++)
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      weft_pool_opts o = WEFT_POOL_OPTS_INIT;
      o.workers = w;
      o.queue_cap = bad[i];
      weft_pool *p = (weft_pool *)1;
      cr_assert_eq(weft_pool_create(&o, &p), WEFT_EINVAL, "queue_cap %zu, %zu workers", bad[i], w);
      cr_assert_null(p);
    }
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = SIZE_MAX;
  weft_pool *p;
  cr_assert_eq(weft_pool_create(&o, &p), WEFT_EINVAL);
}

WEFT_TEST(pool, future_double_release_after_the_job_ended_aborts, .signal = SIGABRT) {
  weft_pool *p;
  cr_assert_eq(weft_pool_create(NULL, &p), 0);
  weft_future *f;
  cr_assert_eq(weft_pool_submit_opts(p, NULL, ret_job, NULL, NULL, &f), 0);
  cr_assert_eq(weft_future_wait(f, NULL, NULL), 0);
  weft_future_release(f);
  weft_future_release(f);
}

WEFT_TEST(pool, future_double_release_while_the_job_runs_aborts, .signal = SIGABRT) {
  /* The queue's reference keeps the record alive: the second release must not take it instead. */
  weft_pool *p;
  cr_assert_eq(weft_pool_create(NULL, &p), 0);
  _Atomic int gate[2] = {0, 0};
  weft_future *f;
  cr_assert_eq(weft_pool_submit_opts(p, NULL, gate_job, gate, NULL, &f), 0);
  weft_future_release(f);
  weft_future_release(f);
}

WEFT_TEST(pool, future_single_release_before_or_after_the_end) {
  weft_pool *p;
  cr_assert_eq(weft_pool_create(NULL, &p), 0);
  _Atomic int gate[2] = {0, 0};
  weft_future *f, *g;
  cr_assert_eq(weft_pool_submit_opts(p, NULL, gate_job, gate, NULL, &f), 0);
  weft_future_release(f); /* before the job ended: the job runs on */
  cr_assert_eq(weft_pool_submit_opts(p, NULL, ret_job, (void *)(intptr_t)7, NULL, &g), 0);
  int rc = 0;
  cr_assert_eq(weft_future_wait(g, NULL, &rc), 0);
  cr_assert_eq(rc, 7);
  weft_future_release(g); /* after */
  atomic_store(&gate[1], 1);
  weft_pool_report rep;
  cr_assert_eq(weft_pool_shutdown(p, WEFT_POOL_DRAIN, WEFT_FOREVER, &rep), 0);
  cr_assert_eq(rep.completed + rep.failed, 2, "both ran");
  weft_pool_destroy(p, NULL);
}

/* Sizes from users are range-checked: a queue capacity or worker count beyond its documented maximum is
 * WEFT_EINVAL, never a wrapped size (queue_cap near SIZE_MAX once looped forever, wrapped into a buffer
 * overrun or made a pool of capacity 0, depending on the worker count). */
WEFT_TEST(pool, create_size_limits_einval) {
  static const size_t bad_caps[] = {0,
                                    WEFT_POOL_MAX_QUEUE + 1,
                                    (size_t)1 << 60,
                                    ((size_t)1 << 62) + 1,
                                    ((size_t)1 << 63) + 5,
                                    SIZE_MAX - 1,
                                    SIZE_MAX};
  for (size_t w = 1; w <= 3; w++)
    for (size_t i = 0; i < sizeof bad_caps / sizeof *bad_caps; i++) {
      weft_pool_opts o = WEFT_POOL_OPTS_INIT;
      o.workers = w;
      o.queue_cap = bad_caps[i];
      weft_pool *p = (weft_pool *)&o;
      cr_assert_eq(weft_pool_create(&o, &p), WEFT_EINVAL, "workers %zu, queue_cap %zu", w, bad_caps[i]);
      cr_assert_null(p);
    }
  static const size_t bad_workers[] = {WEFT_POOL_MAX_WORKERS + 1, (size_t)1 << 32, SIZE_MAX};
  for (size_t i = 0; i < sizeof bad_workers / sizeof *bad_workers; i++) {
    weft_pool_opts o = WEFT_POOL_OPTS_INIT;
    o.workers = bad_workers[i];
    weft_pool *p;
    cr_assert_eq(weft_pool_create(&o, &p), WEFT_EINVAL, "workers %zu", bad_workers[i]);
    cr_assert_null(p);
  }
  /* The edges that are allowed: 1, and the maximum with worker counts that round it up. */
  static const size_t good_caps[] = {1, 2, WEFT_POOL_MAX_QUEUE - 1, WEFT_POOL_MAX_QUEUE};
  for (size_t w = 1; w <= 3; w++)
    for (size_t i = 0; i < sizeof good_caps / sizeof *good_caps; i++) {
      weft_pool_opts o = WEFT_POOL_OPTS_INIT;
      o.workers = w;
      o.queue_cap = good_caps[i];
      weft_pool *p;
      int rc = weft_pool_create(&o, &p);
      cr_assert(rc == 0 || rc == WEFT_ENOMEM, "workers %zu, queue_cap %zu: %d", w, good_caps[i], rc);
      if (rc != 0) continue;
      size_t cap = weft_pool_capacity(p);
      cr_assert(cap >= good_caps[i] && cap < good_caps[i] + w, "capacity %zu for %zu", cap, good_caps[i]);
      static _Atomic int sink;
      cr_assert_eq(weft_pool_submit(p, NULL, noop_job, &sink), 0);
      cr_assert_eq(weft_pool_wait_all(p, NULL), 0);
      weft_pool_report rep;
      weft_pool_destroy(p, &rep);
      cr_assert_eq(rep.completed, 1);
    }
}
