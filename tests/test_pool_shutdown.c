/* Shutdown: a graceful-shutdown daemon (SIGTERM cancels the root context; drain runs every
 * queued job, cancel hands every queued job back), and a job that ignores cancellation. */
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

#include "weft_test.h"

#define QUEUED 10

static _Atomic int ran[QUEUED + 1], discarded[QUEUED + 1];

static int blocker(weft_ctx *ctx, void *arg) {
  _Atomic int *gate = arg; /* [0] started, [1] may finish */
  atomic_store(&gate[0], 1);
  while (!atomic_load(&gate[1]))
    if (weft_ctx_sleep(ctx, WEFT_MS(1)) != 0) return weft_ctx_err(ctx);
  return 0;
}

static int count_job(weft_ctx *ctx, void *arg) {
  (void)ctx;
  int id = (int)(intptr_t)arg;
  if (atomic_load(&discarded[id])) return -99; /* never after its discard */
  atomic_fetch_add(&ran[id], 1);
  return 0;
}

static void on_discard(void *arg, void *darg) {
  (void)darg;
  int id = (int)(intptr_t)arg;
  atomic_fetch_add(&discarded[id], 1);
}

/* The daemon: a root context cancelled by SIGTERM (weft_ctx_with_signals, a sigwait thread inside weft);
 * the main loop waits for the root, then shuts the pool down in `mode`. */
static void daemon_run(weft_pool_mode mode) {
  for (int i = 0; i <= QUEUED; i++) atomic_store(&ran[i], 0), atomic_store(&discarded[i], 0);
  weft_ctx *root;
  weft_cancel *root_cancel = NULL;
  int sig = SIGTERM;
  /* Created before the pool, so the pool's workers inherit the blocked signal mask. */
  cr_assert_eq(weft_ctx_with_signals(weft_background(), &sig, 1, false, &root, &root_cancel), 0);
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 1;
  o.queue_cap = 16;
  o.discard = on_discard;
  weft_pool *p;
  cr_assert_eq(weft_pool_create(&o, &p), 0);
  _Atomic int gate[2] = {0, 0};
  cr_assert_eq(weft_pool_submit(p, root, blocker, gate), 0);
  while (!atomic_load(&gate[0])) usleep(100);
  for (int i = 1; i <= QUEUED; i++) cr_assert_eq(weft_pool_submit(p, root, count_job, (void *)(intptr_t)i), 0);

  cr_assert_eq(kill(getpid(), SIGTERM), 0);
  cr_assert_eq(weft_ctx_wait_until(root, WEFT_FOREVER), WEFT_ECANCELED);
  cr_assert_eq(weft_cause_signal(weft_ctx_cause(root)), SIGTERM);

  if (mode == WEFT_POOL_DRAIN) atomic_store(&gate[1], 1);
  weft_pool_report rep;
  cr_assert_eq(weft_pool_shutdown(p, mode, WEFT_FOREVER, &rep), 0);
  cr_assert_eq(rep.submitted, QUEUED + 1);
  cr_assert_eq(rep.still_running, 0);
  cr_assert_eq(rep.completed + rep.failed + rep.canceled_before_start + rep.canceled_while_running, rep.submitted);
  for (int i = 1; i <= QUEUED; i++) {
    if (mode == WEFT_POOL_DRAIN) {
      cr_assert_eq(atomic_load(&ran[i]), 1, "drain: job %d ran %d times", i, atomic_load(&ran[i]));
      cr_assert_eq(atomic_load(&discarded[i]), 0);
    } else {
      cr_assert_eq(atomic_load(&ran[i]), 0, "cancel: job %d ran", i);
      cr_assert_eq(atomic_load(&discarded[i]), 1, "cancel: job %d discarded %d times", i, atomic_load(&discarded[i]));
    }
  }
  if (mode == WEFT_POOL_DRAIN) {
    cr_assert_eq(rep.completed, QUEUED + 1);
  } else {
    cr_assert_eq(rep.canceled_before_start, QUEUED);
    cr_assert_eq(rep.canceled_while_running, 1);
  }
  weft_pool_destroy(p, NULL);
  weft_ctx_end(root_cancel);
}

WEFT_TEST(pool_shutdown, sigterm_daemon_drain_runs_every_queued_job) { daemon_run(WEFT_POOL_DRAIN); }
WEFT_TEST(pool_shutdown, sigterm_daemon_cancel_hands_back_every_queued_job) { daemon_run(WEFT_POOL_CANCEL); }

static _Atomic int stubborn_release;
static int stubborn(weft_ctx *ctx, void *arg) {
  (void)arg;
  atomic_store(&ran[0], 1);
  while (!atomic_load(&stubborn_release)) usleep(500); /* ignores ctx on purpose */
  return weft_ctx_err(ctx) ? -1 : 0;
}

/* Drain with a grace period: a job ignoring cancellation outlives it; shutdown returns after the grace
 * deadline, reports it still running and discards what was queued behind it; destroy joins it. */
WEFT_TEST(pool_shutdown, drain_grace_reports_job_ignoring_cancellation) {
  for (int i = 0; i <= QUEUED; i++) atomic_store(&ran[i], 0), atomic_store(&discarded[i], 0);
  atomic_store(&stubborn_release, 0);
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 1;
  o.discard = on_discard;
  weft_pool *p;
  cr_assert_eq(weft_pool_create(&o, &p), 0);
  cr_assert_eq(weft_pool_submit(p, NULL, stubborn, NULL), 0);
  while (!atomic_load(&ran[0])) usleep(100);
  for (int i = 1; i <= 3; i++) cr_assert_eq(weft_pool_submit(p, NULL, count_job, (void *)(intptr_t)i), 0);
  int64_t t0 = weft_now();
  weft_pool_report rep;
  cr_assert_eq(weft_pool_shutdown(p, WEFT_POOL_DRAIN, WEFT_MS(100), &rep), WEFT_ETIMEDOUT,
               "the grace ran out with a job still running");
  cr_assert(weft_now() - t0 >= WEFT_MS(100), "returned before the grace deadline");
  cr_assert(weft_ctx_done(weft_pool_ctx(p)), "the pool's context is cancelled after the grace period");
  cr_assert_eq(rep.submitted, 4);
  cr_assert_eq(rep.still_running, 1);
  cr_assert_eq(rep.canceled_before_start, 3);
  for (int i = 1; i <= 3; i++) cr_assert_eq(atomic_load(&discarded[i]), 1);
  atomic_store(&stubborn_release, 1);
  weft_pool_report fin;
  weft_pool_destroy(p, &fin);
  cr_assert_eq(fin.still_running, 0);
  cr_assert_eq(fin.canceled_while_running, 1);
  cr_assert_eq(fin.canceled_before_start, 3);
}

/* Cancel mode with a grace period reports the same job still running, then destroy joins it. */
WEFT_TEST(pool_shutdown, cancel_grace_reports_job_ignoring_cancellation) {
  atomic_store(&stubborn_release, 0);
  atomic_store(&ran[0], 0);
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 2;
  weft_pool *p;
  cr_assert_eq(weft_pool_create(&o, &p), 0);
  cr_assert_eq(weft_pool_submit(p, NULL, stubborn, NULL), 0);
  while (!atomic_load(&ran[0])) usleep(100);
  weft_pool_report rep;
  cr_assert_eq(weft_pool_shutdown(p, WEFT_POOL_CANCEL, WEFT_MS(20), &rep), WEFT_ETIMEDOUT);
  cr_assert_eq(rep.still_running, 1);
  atomic_store(&stubborn_release, 1);
  weft_pool_report fin;
  weft_pool_destroy(p, &fin);
  cr_assert_eq(fin.canceled_while_running, 1);
}

/* A pool whose parent context ends discards what has not started. */
WEFT_TEST(pool_shutdown, parent_done_discards_unstarted_jobs) {
  for (int i = 0; i <= QUEUED; i++) atomic_store(&ran[i], 0), atomic_store(&discarded[i], 0);
  weft_ctx *parent;
  weft_cancel *parent_cancel = NULL;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &parent, &parent_cancel), 0);
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 1;
  o.parent = parent;
  o.discard = on_discard;
  weft_pool *p;
  cr_assert_eq(weft_pool_create(&o, &p), 0);
  _Atomic int gate[2] = {0, 0};
  cr_assert_eq(weft_pool_submit(p, NULL, blocker, gate), 0);
  while (!atomic_load(&gate[0])) usleep(100);
  for (int i = 1; i <= 5; i++) cr_assert_eq(weft_pool_submit(p, NULL, count_job, (void *)(intptr_t)i), 0);
  weft_ctx_cancel(parent_cancel);
  cr_assert_eq(weft_pool_wait_all(p, NULL), 0);
  for (int i = 1; i <= 5; i++) cr_assert_eq(atomic_load(&discarded[i]) + atomic_load(&ran[i]), 1);
  for (int i = 1; i <= 5; i++) cr_assert_eq(atomic_load(&discarded[i]), 1);
  weft_pool_report rep;
  weft_pool_destroy(p, &rep);
  cr_assert_eq(rep.canceled_before_start, 5);
  cr_assert_eq(rep.failed, 1, "the pool's parent ended the running job: failed, not cancelled by shutdown");
  cr_assert_eq(rep.canceled_while_running, 0);
  cr_assert_eq(rep.timed_out, 0);
  weft_ctx_end(parent_cancel);
}

/* The settle time after a drain's grace is an option: with 0, shutdown returns as soon as the grace ran out
 * and it cancelled, without waiting for the job that ignores cancellation. */
WEFT_TEST(pool_shutdown, drain_settle_is_an_option) {
  atomic_store(&stubborn_release, 0);
  atomic_store(&ran[0], 0);
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.settle = -1;
  weft_pool *p;
  cr_assert_eq(weft_pool_create(&o, &p), WEFT_EINVAL, "a negative settle time is refused");
  o.workers = 1;
  o.settle = 0;
  cr_assert_eq(weft_pool_create(&o, &p), 0);
  cr_assert_eq(weft_pool_submit(p, NULL, stubborn, NULL), 0);
  while (!atomic_load(&ran[0])) usleep(100);
  weft_pool_report rep;
  cr_assert_eq(weft_pool_shutdown(p, WEFT_POOL_DRAIN, WEFT_MS(10), &rep), WEFT_ETIMEDOUT);
  cr_assert_eq(rep.still_running, 1, "shutdown did not wait for the job: it is still running");
  cr_assert(weft_ctx_done(weft_pool_ctx(p)));
  atomic_store(&stubborn_release, 1);
  weft_pool_report fin;
  weft_pool_destroy(p, &fin);
  cr_assert_eq(fin.still_running, 0);
  cr_assert_eq(fin.submitted, 1);
}

static _Atomic int from_worker_rc = 1;
static int shutdown_own_pool(weft_ctx *ctx, void *arg) {
  atomic_store(&from_worker_rc, weft_pool_shutdown(arg, WEFT_POOL_DRAIN, WEFT_FOREVER, NULL));
  return 0;
}

/* A shutdown called from one of the pool's own workers would wait for itself: WEFT_EBUSY, told apart from a
 * second shutdown (WEFT_ESTATE), and the pool goes on working. */
WEFT_TEST(pool_shutdown, from_a_worker_is_busy_and_twice_is_state) {
  weft_pool *p;
  cr_assert_eq(weft_pool_create(NULL, &p), 0);
  weft_future *f;
  cr_assert_eq(weft_pool_submit_opts(p, NULL, shutdown_own_pool, p, NULL, &f), 0);
  cr_assert_eq(weft_future_wait(f, NULL, NULL), 0);
  weft_future_release(f);
  cr_assert_eq(atomic_load(&from_worker_rc), WEFT_EBUSY);
  cr_assert_eq(weft_pool_submit(p, NULL, shutdown_own_pool, p), 0, "still accepting work");
  weft_pool_report rep;
  cr_assert_eq(weft_pool_shutdown(p, WEFT_POOL_DRAIN, WEFT_FOREVER, &rep), 0, "every job ended in time");
  cr_assert_eq(rep.submitted, 2);
  rep.submitted = 99;
  cr_assert_eq(weft_pool_shutdown(p, WEFT_POOL_DRAIN, WEFT_FOREVER, &rep), WEFT_ESTATE);
  cr_assert_eq(rep.submitted, 99, "a refused shutdown leaves the report alone");
  weft_pool_destroy(p, NULL);
}

/* ---- report classes: by what happened to the job ----------------------------------------------- */

/* Waits for its context to end, then returns 0 anyway (it ignores why it was cancelled). */
static int returns_zero_when_done(weft_ctx *ctx, void *arg) {
  atomic_store((_Atomic int *)arg, 1);
  weft_ctx_wait_until(ctx, WEFT_FOREVER);
  return 0;
}
/* Waits for its context to end and returns its error. */
static int returns_err_when_done(weft_ctx *ctx, void *arg) {
  if (arg) atomic_store((_Atomic int *)arg, 1);
  return weft_ctx_wait_until(ctx, WEFT_FOREVER);
}

/* Shutdown cancelled two running jobs that then returned 0 (a plain job and one with a future): both are
 * canceled while running, not completed, and the future says WEFT_ECANCELED; one that returned its error
 * is canceled while running too. */
WEFT_TEST(pool_shutdown, class_canceled_while_running_whatever_returned) {
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 3;
  weft_pool *p;
  cr_assert_eq(weft_pool_create(&o, &p), 0);
  _Atomic int s1 = 0, s2 = 0, s3 = 0;
  weft_future *f2, *f3;
  cr_assert_eq(weft_pool_submit(p, NULL, returns_zero_when_done, &s1), 0);
  cr_assert_eq(weft_pool_submit_opts(p, NULL, returns_zero_when_done, &s2, NULL, &f2), 0);
  cr_assert_eq(weft_pool_submit_opts(p, NULL, returns_err_when_done, &s3, NULL, &f3), 0);
  while (!atomic_load(&s1) || !atomic_load(&s2) || !atomic_load(&s3)) usleep(100);
  weft_pool_report rep;
  cr_assert_eq(weft_pool_shutdown(p, WEFT_POOL_CANCEL, WEFT_FOREVER, &rep), 0);
  cr_assert_eq(rep.submitted, 3);
  cr_assert_eq(rep.canceled_while_running, 3);
  cr_assert_eq(rep.completed + rep.failed + rep.timed_out + rep.canceled_before_start + rep.still_running, 0);
  int rc = 99;
  cr_assert_eq(weft_future_wait(f2, NULL, &rc), 0);
  cr_assert_eq(rc, WEFT_ECANCELED, "a future never reports 0 for a job that did not complete");
  cr_assert_eq(weft_future_wait(f3, NULL, &rc), 0);
  cr_assert_eq(rc, WEFT_ECANCELED);
  weft_future_release(f2);
  weft_future_release(f3);
  weft_pool_destroy(p, NULL);
}

/* A job's own timeout ends it: failed and timed out when it returns the error, completed when it returns
 * 0. A deadline of the pool's parent that comes first is not the job's own: failed, not timed out. */
WEFT_TEST(pool_shutdown, class_own_timeout_fails_and_counts_timed_out) {
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 2;
  weft_pool *p;
  cr_assert_eq(weft_pool_create(&o, &p), 0);
  weft_job_opts jo = WEFT_JOB_OPTS_INIT;
  jo.timeout = WEFT_MS(10);
  weft_future *f1, *f2;
  _Atomic int s1 = 0, s2 = 0;
  cr_assert_eq(weft_pool_submit_opts(p, NULL, returns_err_when_done, &s1, &jo, &f1), 0);
  cr_assert_eq(weft_pool_submit_opts(p, NULL, returns_zero_when_done, &s2, &jo, &f2), 0);
  int rc1 = 99, rc2 = 99;
  cr_assert_eq(weft_future_wait(f1, NULL, &rc1), 0);
  cr_assert_eq(weft_future_wait(f2, NULL, &rc2), 0);
  weft_future_release(f1);
  weft_future_release(f2);
  /* A job whose own timeout ran out between its context being made and its start (a very slow runtime)
   * is discarded with WEFT_EDEADLINE, as any job whose context ended before it started: the classes are
   * checked for the jobs that ran. */
  bool ran1 = atomic_load(&s1) != 0, ran2 = atomic_load(&s2) != 0;
  cr_assert_eq(rc1, WEFT_EDEADLINE);
  cr_assert_eq(rc2, ran2 ? 0 : WEFT_EDEADLINE);
  weft_pool_report rep;
  cr_assert_eq(weft_pool_shutdown(p, WEFT_POOL_CANCEL, WEFT_FOREVER, &rep), 0);
  cr_assert_eq(rep.failed, ran1 ? 1u : 0u);
  cr_assert_eq(rep.timed_out, ran1 ? 1u : 0u);
  cr_assert_eq(rep.completed, ran2 ? 1u : 0u);
  cr_assert_eq(rep.canceled_before_start, (ran1 ? 0u : 1u) + (ran2 ? 0u : 1u));
  cr_assert_eq(rep.canceled_while_running, 0);
  weft_pool_destroy(p, NULL);
  int rc = 99;

  weft_ctx *parent;
  weft_cancel *parent_cancel = NULL;
  cr_assert_eq(weft_ctx_with_timeout(weft_background(), WEFT_MS(200), &parent, &parent_cancel), 0);
  o.parent = parent;
  cr_assert_eq(weft_pool_create(&o, &p), 0);
  jo.timeout = WEFT_SEC(100);
  _Atomic int s3 = 0;
  cr_assert_eq(weft_pool_submit_opts(p, NULL, returns_err_when_done, &s3, &jo, &f1), 0);
  cr_assert_eq(weft_future_wait(f1, NULL, &rc), 0);
  cr_assert_eq(rc, WEFT_EDEADLINE);
  weft_future_release(f1);
  weft_pool_destroy(p, &rep);
  /* The job ran unless the parent's deadline passed before a worker started it (a very slow start). */
  bool job_ran = atomic_load(&s3) != 0;
  cr_assert_eq(rep.failed, job_ran ? 1u : 0u, "the pool's parent ended it: failed");
  cr_assert_eq(rep.canceled_before_start, job_ran ? 0u : 1u);
  cr_assert_eq(rep.timed_out, 0, "the deadline was the parent's, not the job's own");
  cr_assert_eq(rep.completed + rep.canceled_while_running, 0);
  weft_ctx_end(parent_cancel);
}

/* The pool's parent cancelled: the running jobs that return an error fail (a plain one and one with a
 * future, which reports the job's error), one that returns 0 completes; shutdown afterwards cancels
 * nothing more. */
WEFT_TEST(pool_shutdown, class_parent_cancel_fails) {
  weft_ctx *parent;
  weft_cancel *parent_cancel = NULL;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &parent, &parent_cancel), 0);
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 3;
  o.parent = parent;
  weft_pool *p;
  cr_assert_eq(weft_pool_create(&o, &p), 0);
  _Atomic int s1 = 0, s2 = 0, s3 = 0;
  weft_future *f2;
  cr_assert_eq(weft_pool_submit(p, NULL, returns_err_when_done, &s1), 0);
  cr_assert_eq(weft_pool_submit_opts(p, NULL, returns_err_when_done, &s2, NULL, &f2), 0);
  cr_assert_eq(weft_pool_submit(p, NULL, returns_zero_when_done, &s3), 0);
  while (!atomic_load(&s1) || !atomic_load(&s2) || !atomic_load(&s3)) usleep(100);
  weft_ctx_cancel(parent_cancel);
  int rc = 99;
  cr_assert_eq(weft_future_wait(f2, NULL, &rc), 0);
  cr_assert_eq(rc, WEFT_ECANCELED);
  weft_future_release(f2);
  cr_assert_eq(weft_pool_wait_all(p, NULL), 0);
  weft_pool_report rep;
  cr_assert_eq(weft_pool_shutdown(p, WEFT_POOL_CANCEL, WEFT_FOREVER, &rep), 0);
  cr_assert_eq(rep.failed, 2);
  cr_assert_eq(rep.completed, 1);
  cr_assert_eq(rep.timed_out + rep.canceled_while_running + rep.canceled_before_start, 0);
  weft_pool_destroy(p, NULL);
  weft_ctx_end(parent_cancel);
}

/* A drain within its grace cancels nothing: a job's own error is failed, not canceled. */
static int fails_now(weft_ctx *ctx, void *arg) {
  (void)ctx;
  (void)arg;
  return -55;
}
WEFT_TEST(pool_shutdown, class_drain_error_is_failed) {
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 1;
  weft_pool *p;
  cr_assert_eq(weft_pool_create(&o, &p), 0);
  _Atomic int gate[2] = {0, 1};
  for (int i = 0; i < 4; i++) cr_assert_eq(weft_pool_submit(p, NULL, fails_now, NULL), 0);
  cr_assert_eq(weft_pool_submit(p, NULL, blocker, gate), 0);
  weft_pool_report rep;
  cr_assert_eq(weft_pool_shutdown(p, WEFT_POOL_DRAIN, WEFT_FOREVER, &rep), 0);
  cr_assert_eq(rep.failed, 4);
  cr_assert_eq(rep.completed, 1);
  cr_assert_eq(rep.canceled_while_running + rep.canceled_before_start + rep.timed_out, 0);
  weft_pool_destroy(p, NULL);
}
