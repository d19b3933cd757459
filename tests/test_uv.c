/* The libuv adapter (weft/uv.h): job results on the loop thread with their class, per-job cancel, close
 * with jobs in flight, context watches, signal contexts, bad input. Each test runs its own loop on the
 * test's thread; "the loop thread" below is that thread. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <uv.h>
#include <weft/uv.h>

#include "loop_test_jobs.h"
#include "weft_test.h"

static weft_pool *pool;
static uv_loop_t loop;

static void setup(void) {
  loop_thread = pthread_self();
  cr_assert_eq(uv_loop_init(&loop), 0);
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 2;
  o.queue_cap = 64;
  cr_assert_eq(weft_pool_create(&o, &pool), 0);
}

/* Runs the loop dry and closes it: every handle must be closed by then (uv_loop_close says EBUSY). */
static void teardown(void) {
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(uv_loop_close(&loop), 0, "a handle was left open");
  weft_pool_destroy(pool, NULL);
  pool = NULL;
}

TestSuite(uv, .init = setup, .fini = teardown);

/* ---- jobs ---------------------------------------------------------------------------------------- */

static int job_block_until_flag(weft_ctx *ctx, void *arg) {
  atomic_int *flag = arg;
  atomic_fetch_add(&started, 1);
  while (!atomic_load(flag)) weft_ctx_sleep(weft_background(), WEFT_MS(1));
  return 0;
}

Test(uv, init_einval, .timeout = WEFT_TEST_TIMEOUT) {
  weft_uv *u = (weft_uv *)1;
  cr_assert_eq(weft_uv_init(NULL, &u), WEFT_EINVAL);
  cr_assert_null(u);
  cr_assert_eq(weft_uv_init(&loop, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_uv_close(NULL, false, NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_uv_report(NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_uv_job_cancel(NULL), WEFT_EINVAL);
}

static int closed_calls;
static long closed_at; /* `delivered` when the close callback ran */
static void on_closed(weft_uv *u, void *arg) {
  cr_assert(pthread_equal(pthread_self(), loop_thread));
  closed_calls++;
  closed_at = delivered;
  if (arg != NULL) *(weft_uv **)arg = NULL;
}

Test(uv, submit_einval, .timeout = WEFT_TEST_TIMEOUT) {
  weft_uv *u;
  cr_assert_eq(weft_uv_init(&loop, &u), 0);
  result r = {0};
  weft_uv_job *j = (weft_uv_job *)1;
  cr_assert_eq(weft_uv_submit(NULL, pool, NULL, job_ok, &r, on_result, &r, &j), WEFT_EINVAL);
  cr_assert_null(j);
  cr_assert_eq(weft_uv_submit(u, NULL, NULL, job_ok, &r, on_result, &r, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_uv_submit(u, pool, NULL, NULL, &r, on_result, &r, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_uv_submit(u, pool, NULL, job_ok, &r, NULL, &r, NULL), WEFT_EINVAL);
  weft_pool_report rep;
  cr_assert_eq(weft_uv_report(u, &rep), 0);
  cr_assert_eq(rep.submitted, 0);
  uv_run(&loop, UV_RUN_DEFAULT); /* an idle adapter does not keep the loop alive: this returns */
  cr_assert_eq(weft_uv_close(u, false, on_closed, NULL), 0);
  cr_assert_eq(weft_uv_close(u, false, on_closed, NULL), WEFT_ESTATE, "a second close is refused");
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(closed_calls, 1);
  cr_assert_eq(atomic_load(&r.calls), 0, "a refused submit never calls back");
}

Test(uv, results_on_loop_thread_with_their_class, .timeout = WEFT_TEST_TIMEOUT) {
  enum { N = 200 };
  weft_uv *u;
  cr_assert_eq(weft_uv_init(&loop, &u), 0);
  static result rs[N];
  for (int i = 0; i < N; i++) {
    weft_uv_job *j = NULL;
    int rc = weft_uv_submit(u, pool, NULL, i % 3 == 0 ? job_fail : job_ok, &rs[i], on_result, &rs[i],
                            i % 2 ? &j : NULL);
    while (rc == WEFT_EFULL) { /* 64 queued at most: let results come back */
      uv_run(&loop, UV_RUN_ONCE);
      rc = weft_uv_submit(u, pool, NULL, i % 3 == 0 ? job_fail : job_ok, &rs[i], on_result, &rs[i], NULL);
    }
    cr_assert_eq(rc, 0, "%s", weft_err_name(rc));
  }
  uv_run(&loop, UV_RUN_DEFAULT); /* the adapter keeps the loop alive until every result came */
  for (int i = 0; i < N; i++) {
    cr_assert_eq(atomic_load(&rs[i].calls), 1, "job %d: %d callbacks", i, atomic_load(&rs[i].calls));
    cr_assert(rs[i].on_loop);
    if (i % 3 == 0) {
      cr_assert_eq(rs[i].state, WEFT_JOB_FAILED);
      cr_assert_eq(rs[i].rc, JOB_FAIL_RC);
    } else {
      cr_assert_eq(rs[i].state, WEFT_JOB_COMPLETED);
      cr_assert_eq(rs[i].rc, 0);
    }
  }
  weft_pool_report rep;
  weft_uv_report(u, &rep);
  cr_assert_eq(rep.submitted, N);
  cr_assert_eq(rep.completed + rep.failed, N);
  cr_assert_eq(rep.failed, (N + 2) / 3);
  cr_assert_eq(rep.still_running, 0);
  cr_assert_eq(weft_uv_close(u, false, on_closed, NULL), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(closed_calls, 1);
}

/* ---- cancel -------------------------------------------------------------------------------------- */

static weft_uv_job *cancel_target;
static void cancel_when_started(uv_timer_t *t) {
  if (atomic_load(&started) == 0) return;
  uv_timer_stop(t);
  cr_assert_eq(weft_uv_job_cancel(cancel_target), 0);
  cr_assert_eq(weft_uv_job_cancel(cancel_target), 0, "a second cancel is fine");
  uv_close((uv_handle_t *)t, NULL);
}

Test(uv, cancel_while_running, .timeout = WEFT_TEST_TIMEOUT) {
  weft_uv *u;
  cr_assert_eq(weft_uv_init(&loop, &u), 0);
  result r = {0};
  cr_assert_eq(weft_uv_submit(u, pool, NULL, job_wait_ctx, &r, on_result, &r, &cancel_target), 0);
  cr_assert_not_null(cancel_target);
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  uv_timer_start(&t, cancel_when_started, 1, 1);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(atomic_load(&r.calls), 1);
  cr_assert_eq(r.state, WEFT_JOB_CANCELED_WHILE_RUNNING);
  cr_assert_eq(r.rc, WEFT_ECANCELED, "the job saw its context cancelled: %s", weft_err_name(r.rc));
  weft_pool_report rep;
  weft_uv_report(u, &rep);
  cr_assert_eq(rep.canceled_while_running, 1);
  weft_uv_close(u, false, NULL, NULL);
}

Test(uv, cancel_before_start, .timeout = WEFT_TEST_TIMEOUT) {
  weft_uv *u;
  cr_assert_eq(weft_uv_init(&loop, &u), 0);
  atomic_int release = 0;
  /* occupy both workers, so the next job stays queued */
  cr_assert_eq(weft_pool_submit(pool, NULL, job_block_until_flag, &release), 0);
  cr_assert_eq(weft_pool_submit(pool, NULL, job_block_until_flag, &release), 0);
  while (atomic_load(&started) < 2) weft_ctx_sleep(weft_background(), WEFT_MS(1));
  result r = {0};
  weft_uv_job *j;
  weft_ctx *req;
  weft_cancel *req_cancel;
  cr_assert_eq(weft_ctx_with_timeout(weft_background(), WEFT_SEC(60), &req, &req_cancel), 0);
  cr_assert_eq(weft_uv_submit(u, pool, req, job_ok, &r, on_result, &r, &j), 0);
  cr_assert_eq(weft_uv_job_cancel(j), 0);
  atomic_store(&release, 1);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(atomic_load(&r.calls), 1);
  cr_assert_eq(atomic_load(&r.ran), 0, "a job cancelled before it started never runs");
  cr_assert_eq(r.state, WEFT_JOB_CANCELED_BEFORE_START);
  cr_assert_eq(r.rc, WEFT_ECANCELED);
  cr_assert_eq(weft_ctx_err(req), 0, "the per-job cancel does not reach the request's context");
  weft_ctx_end(req_cancel);
  weft_uv_close(u, false, NULL, NULL);
}

Test(uv, request_context_reaches_the_job, .timeout = WEFT_TEST_TIMEOUT) {
  weft_uv *u;
  cr_assert_eq(weft_uv_init(&loop, &u), 0);
  result r = {0};
  weft_ctx *req;
  weft_cancel *req_cancel;
  cr_assert_eq(weft_ctx_with_timeout(weft_background(), WEFT_MS(20), &req, &req_cancel), 0);
  cr_assert_eq(weft_uv_submit(u, pool, req, job_wait_ctx, &r, on_result, &r, NULL), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(atomic_load(&r.calls), 1);
  /* the request's own deadline, not a cancel of the adapter's: the pool's class, failed; or, on a slow
   * runtime where the deadline came before a worker took the job, canceled before start */
  if (atomic_load(&r.ran))
    cr_assert_eq(r.state, WEFT_JOB_FAILED, "state %d", r.state);
  else
    cr_assert_eq(r.state, WEFT_JOB_CANCELED_BEFORE_START, "state %d", r.state);
  cr_assert_eq(r.rc, WEFT_EDEADLINE);
  weft_ctx_end(req_cancel);
  weft_uv_close(u, false, NULL, NULL);
}

static void cancel_after_end_cb(void *job_arg, int job_rc, weft_job_state state, void *cb_arg) {
  on_result(job_arg, job_rc, state, cb_arg);
}

Test(uv, cancel_after_end_is_estate, .timeout = WEFT_TEST_TIMEOUT) {
  weft_uv *u;
  cr_assert_eq(weft_uv_init(&loop, &u), 0);
  result r = {0};
  weft_uv_job *j;
  cr_assert_eq(weft_uv_submit(u, pool, NULL, job_ok, &r, cancel_after_end_cb, &r, &j), 0);
  /* once wait_all returned, every on_done returned: the job ended, its result not delivered yet */
  cr_assert_eq(weft_pool_wait_all(pool, NULL), 0);
  cr_assert_eq(weft_uv_job_cancel(j), WEFT_ESTATE);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(r.state, WEFT_JOB_COMPLETED, "a cancel after the end changes nothing");
  weft_uv_close(u, false, NULL, NULL);
}

/* ---- callbacks that submit, full queues, a pool shut down ---------------------------------------- */

static weft_uv *chain_u;
static int chain_left, chain_done;
static void chain_cb(void *job_arg, int job_rc, weft_job_state state, void *cb_arg) {
  cr_assert(pthread_equal(pthread_self(), loop_thread));
  cr_assert_eq(state, WEFT_JOB_COMPLETED);
  chain_done++;
  if (--chain_left > 0) cr_assert_eq(weft_uv_submit(chain_u, pool, NULL, job_ok, job_arg, chain_cb, NULL, NULL), 0);
}

Test(uv, callback_submits_more_work, .timeout = WEFT_TEST_TIMEOUT) {
  cr_assert_eq(weft_uv_init(&loop, &chain_u), 0);
  result r = {0};
  chain_left = 500;
  cr_assert_eq(weft_uv_submit(chain_u, pool, NULL, job_ok, &r, chain_cb, NULL, NULL), 0);
  uv_run(&loop, UV_RUN_DEFAULT); /* the loop stays alive through the chain */
  cr_assert_eq(chain_done, 500);
  weft_pool_report rep;
  weft_uv_report(chain_u, &rep);
  cr_assert_eq(rep.submitted, 500);
  cr_assert_eq(rep.completed, 500);
  weft_uv_close(chain_u, false, NULL, NULL);
}

Test(uv, full_queue_and_stopped_pool, .timeout = WEFT_TEST_TIMEOUT) {
  weft_pool *small;
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 1;
  o.queue_cap = 1;
  cr_assert_eq(weft_pool_create(&o, &small), 0);
  weft_uv *u;
  cr_assert_eq(weft_uv_init(&loop, &u), 0);
  atomic_int release = 0;
  cr_assert_eq(weft_pool_submit(small, NULL, job_block_until_flag, &release), 0);
  while (atomic_load(&started) < 1) weft_ctx_sleep(weft_background(), WEFT_MS(1));
  result a = {0}, b = {0};
  cr_assert_eq(weft_uv_submit(u, small, NULL, job_ok, &a, on_result, &a, NULL), 0);
  weft_uv_job *j = (weft_uv_job *)1;
  cr_assert_eq(weft_uv_submit(u, small, NULL, job_ok, &b, on_result, &b, &j), WEFT_EFULL);
  cr_assert_null(j);
  atomic_store(&release, 1);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(atomic_load(&a.calls), 1);
  cr_assert_eq(atomic_load(&b.calls), 0, "a refused submit never calls back");
  weft_pool_shutdown(small, WEFT_POOL_DRAIN, WEFT_FOREVER, NULL);
  cr_assert_eq(weft_uv_submit(u, small, NULL, job_ok, &b, on_result, &b, NULL), WEFT_ESTOPPED);
  weft_pool_report rep;
  weft_uv_report(u, &rep);
  cr_assert_eq(rep.submitted, 1, "refused submits are not counted");
  weft_uv_close(u, false, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  weft_pool_destroy(small, NULL);
}

/* The pool's shutdown classes reach the loop: the running job canceled while running, the queued ones
 * canceled before start (their on_done runs on the thread calling shutdown: here, the loop's). */
Test(uv, pool_shutdown_classes_reach_the_loop, .timeout = WEFT_TEST_TIMEOUT) {
  weft_pool *one;
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 1;
  cr_assert_eq(weft_pool_create(&o, &one), 0);
  weft_uv *u;
  cr_assert_eq(weft_uv_init(&loop, &u), 0);
  result rs[4] = {{0}};
  for (int i = 0; i < 4; i++) cr_assert_eq(weft_uv_submit(u, one, NULL, job_wait_ctx, &rs[i], on_result, &rs[i], NULL), 0);
  while (atomic_load(&started) < 1) weft_ctx_sleep(weft_background(), WEFT_MS(1));
  weft_pool_report prep;
  cr_assert_eq(weft_pool_shutdown(one, WEFT_POOL_CANCEL, WEFT_FOREVER, &prep), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  int before = 0, during = 0;
  for (int i = 0; i < 4; i++) {
    cr_assert_eq(atomic_load(&rs[i].calls), 1);
    before += rs[i].state == WEFT_JOB_CANCELED_BEFORE_START;
    during += rs[i].state == WEFT_JOB_CANCELED_WHILE_RUNNING;
  }
  cr_assert_eq(during, (int)prep.canceled_while_running);
  cr_assert_eq(before, (int)prep.canceled_before_start);
  cr_assert_eq(before + during, 4);
  weft_uv_close(u, false, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  weft_pool_destroy(one, NULL);
}

/* ---- close ---------------------------------------------------------------------------------------- */

static void stop_loop(uv_timer_t *t) {
  if (atomic_load(&started) < 2) return;
  uv_close((uv_handle_t *)t, NULL);
  uv_stop(t->loop);
}

/* The loop stops while jobs are in flight; the program closes the adapter with cancel and runs the loop
 * once more: every result comes, exactly once, before the close callback, and nothing after it. */
Test(uv, loop_stops_with_jobs_in_flight, .timeout = WEFT_TEST_TIMEOUT) {
  enum { N = 8 };
  weft_uv *u;
  cr_assert_eq(weft_uv_init(&loop, &u), 0);
  result rs[N] = {{0}};
  weft_uv_job *js[N];
  for (int i = 0; i < N; i++)
    cr_assert_eq(weft_uv_submit(u, pool, NULL, job_wait_ctx, &rs[i], on_result, &rs[i], &js[i]), 0);
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  uv_timer_start(&t, stop_loop, 1, 1);
  uv_run(&loop, UV_RUN_DEFAULT);
  weft_pool_report rep;
  weft_uv_report(u, &rep);
  cr_assert_eq(rep.still_running, N, "the loop stopped with every job in flight");
  weft_uv *alive = u;
  cr_assert_eq(weft_uv_close(u, true, on_closed, &alive), 0);
  cr_assert_eq(weft_uv_submit(u, pool, NULL, job_ok, &rs[0], on_result, &rs[0], NULL), WEFT_ESTOPPED);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_null(alive, "the close callback ran");
  cr_assert_eq(closed_calls, 1);
  cr_assert_eq(closed_at, N, "every result came before the close callback");
  for (int i = 0; i < N; i++) {
    cr_assert_eq(atomic_load(&rs[i].calls), 1);
    cr_assert(rs[i].state == WEFT_JOB_CANCELED_WHILE_RUNNING || rs[i].state == WEFT_JOB_CANCELED_BEFORE_START,
              "job %d: state %d", i, rs[i].state);
  }
  weft_pool_wait_all(pool, NULL);
  cr_assert_eq(delivered, N, "nothing runs after the close");
}

static weft_uv *closing_u;
static void close_from_cb(void *job_arg, int job_rc, weft_job_state state, void *cb_arg) {
  on_result(job_arg, job_rc, state, cb_arg);
  if (delivered == 1) cr_assert_eq(weft_uv_close(closing_u, true, on_closed, NULL), 0);
}

Test(uv, close_from_a_result_callback, .timeout = WEFT_TEST_TIMEOUT) {
  enum { N = 6 };
  cr_assert_eq(weft_uv_init(&loop, &closing_u), 0);
  result rs[N] = {{0}};
  weft_uv_job *j;
  cr_assert_eq(weft_uv_submit(closing_u, pool, NULL, job_ok, &rs[0], close_from_cb, &rs[0], NULL), 0);
  for (int i = 1; i < N; i++)
    cr_assert_eq(weft_uv_submit(closing_u, pool, NULL, job_wait_ctx, &rs[i], close_from_cb, &rs[i], &j), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(closed_calls, 1);
  cr_assert_eq(closed_at, N);
  for (int i = 0; i < N; i++) cr_assert_eq(atomic_load(&rs[i].calls), 1);
}

Test(uv, close_from_the_last_result_callback, .timeout = WEFT_TEST_TIMEOUT) {
  cr_assert_eq(weft_uv_init(&loop, &closing_u), 0);
  result r = {0};
  cr_assert_eq(weft_uv_submit(closing_u, pool, NULL, job_ok, &r, close_from_cb, &r, NULL), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(closed_calls, 1);
  cr_assert_eq(atomic_load(&r.calls), 1);
}

/* ---- watches -------------------------------------------------------------------------------------- */

typedef struct watched {
  int calls, err;
  bool on_loop;
  bool close_in_cb;
} watched;

static void on_watch(weft_uv_watch *w, int err, void *arg) {
  watched *x = arg;
  x->calls++;
  x->err = err;
  x->on_loop = pthread_equal(pthread_self(), loop_thread);
  if (x->close_in_cb) weft_uv_watch_close(w);
}

static void *cancel_later(void *arg) {
  weft_ctx_sleep(weft_background(), WEFT_MS(5));
  weft_ctx_cancel(arg);
  return NULL;
}

Test(uv, watch_fires_once_on_the_loop_thread, .timeout = WEFT_TEST_TIMEOUT) {
  weft_ctx *ctx, *val;
  weft_cancel *cancel;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &ctx, &cancel), 0);
  static int key;
  cr_assert_eq(weft_ctx_with_value(ctx, &key, NULL, NULL, &val), 0);
  watched a = {.close_in_cb = true}, b = {.close_in_cb = true};
  weft_uv_watch *wa, *wb;
  cr_assert_eq(weft_uv_watch_start(&loop, ctx, on_watch, &a, &wa), 0);
  /* a value context shares its parent's cancellation source, hence its eventfd */
  cr_assert_eq(weft_uv_watch_start(&loop, val, on_watch, &b, &wb), 0);
  weft_ctx_release(val); /* the watch holds its own reference */
  pthread_t th;
  pthread_create(&th, NULL, cancel_later, cancel);
  uv_run(&loop, UV_RUN_DEFAULT); /* the active watches keep the loop alive until they fired */
  pthread_join(th, NULL);
  cr_assert_eq(a.calls, 1);
  cr_assert_eq(b.calls, 1);
  cr_assert_eq(a.err, WEFT_ECANCELED);
  cr_assert(a.on_loop && b.on_loop);
  weft_ctx_end(cancel);
}

Test(uv, watch_already_done_and_closed_later, .timeout = WEFT_TEST_TIMEOUT) {
  weft_ctx *ctx;
  weft_cancel *cancel;
  cr_assert_eq(weft_ctx_with_timeout(weft_background(), -1, &ctx, &cancel), 0);
  watched a = {0};
  weft_uv_watch *w;
  cr_assert_eq(weft_uv_watch_start(&loop, ctx, on_watch, &a, &w), 0);
  weft_ctx_end(cancel);
  uv_run(&loop, UV_RUN_DEFAULT); /* fired, then inactive: the loop returns */
  cr_assert_eq(a.calls, 1);
  cr_assert_eq(a.err, WEFT_EDEADLINE);
  weft_uv_watch_close(w);
}

Test(uv, watch_closed_before_it_fires_never_calls, .timeout = WEFT_TEST_TIMEOUT) {
  weft_ctx *ctx;
  weft_cancel *cancel;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &ctx, &cancel), 0);
  watched a = {0}, bg = {0};
  weft_uv_watch *w, *wbg;
  cr_assert_eq(weft_uv_watch_start(&loop, ctx, on_watch, &a, &w), 0);
  cr_assert_eq(weft_uv_watch_start(&loop, weft_background(), on_watch, &bg, &wbg), 0);
  weft_ctx_cancel(cancel);
  weft_uv_watch_close(w); /* closed before the loop saw it */
  weft_uv_watch_close(wbg);
  weft_ctx_end(cancel);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(a.calls, 0);
  cr_assert_eq(bg.calls, 0);
  weft_uv_watch_close(NULL);
}

Test(uv, watch_einval, .timeout = WEFT_TEST_TIMEOUT) {
  watched a = {0};
  weft_uv_watch *w = (weft_uv_watch *)1;
  cr_assert_eq(weft_uv_watch_start(NULL, weft_background(), on_watch, &a, &w), WEFT_EINVAL);
  cr_assert_null(w);
  cr_assert_eq(weft_uv_watch_start(&loop, NULL, on_watch, &a, &w), WEFT_EINVAL);
  cr_assert_eq(weft_uv_watch_start(&loop, weft_background(), NULL, &a, &w), WEFT_EINVAL);
  cr_assert_eq(weft_uv_watch_start(&loop, weft_background(), on_watch, &a, NULL), WEFT_EINVAL);
}

/* ---- signals -------------------------------------------------------------------------------------- */

static void raise_usr1(uv_timer_t *t) {
  uv_close((uv_handle_t *)t, NULL);
  raise(SIGUSR1);
}

Test(uv, signal_cancels_its_context_on_the_loop, .timeout = WEFT_TEST_TIMEOUT) {
  weft_ctx *ctx;
  weft_uv_signal *s;
  cr_assert_eq(weft_uv_signal_ctx(&loop, weft_background(), SIGUSR1, &ctx, &s), 0);
  watched a = {.close_in_cb = true};
  weft_uv_watch *w;
  cr_assert_eq(weft_uv_watch_start(&loop, ctx, on_watch, &a, &w), 0);
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  uv_timer_start(&t, raise_usr1, 1, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(a.calls, 1);
  cr_assert_eq(weft_ctx_err(ctx), WEFT_ECANCELED);
  cr_assert_eq(weft_ctx_cause(ctx), WEFT_SIGNAL_CAUSE(SIGUSR1));
  weft_uv_signal_stop(s);
  weft_ctx_release(ctx);
}

Test(uv, signal_stop_cancels_and_einval, .timeout = WEFT_TEST_TIMEOUT) {
  weft_ctx *ctx = (weft_ctx *)1;
  weft_uv_signal *s = (weft_uv_signal *)1;
  cr_assert_eq(weft_uv_signal_ctx(&loop, weft_background(), 0, &ctx, &s), WEFT_EINVAL);
  cr_assert_null(ctx);
  cr_assert_null(s);
  cr_assert_eq(weft_uv_signal_ctx(&loop, weft_background(), 4096, &ctx, &s), WEFT_EINVAL);
  cr_assert_eq(weft_uv_signal_ctx(NULL, weft_background(), SIGUSR2, &ctx, &s), WEFT_EINVAL);
  cr_assert_eq(weft_uv_signal_ctx(&loop, NULL, SIGUSR2, &ctx, &s), WEFT_EINVAL);
  cr_assert_eq(weft_uv_signal_ctx(&loop, weft_background(), SIGUSR2, &ctx, &s), 0);
  uv_run(&loop, UV_RUN_DEFAULT); /* the signal watcher does not keep the loop alive */
  cr_assert_eq(weft_ctx_err(ctx), 0);
  weft_uv_signal_stop(s);
  cr_assert_eq(weft_ctx_err(ctx), WEFT_ECANCELED, "stop cancels, as Go's stop function");
  weft_ctx_release(ctx);
  weft_uv_signal_stop(NULL);
}
