/* Allocation failure in the libuv adapter: every call that allocates returns WEFT_ENOMEM (or succeeds) with
 * nothing leaked and no callback run, whichever allocation fails. This binary is linked with --wrap for
 * malloc and friends (tests/CMakeLists.txt), so the adapter's and libweft's allocations (both linked
 * statically) go through the wrappers of support/wrap_alloc.h; libuv's, a shared library, do not. Each test
 * sweeps k and fails the k-th allocation alone until the call succeeds. */
#include <stdatomic.h>
#include <stdlib.h>
#include <uv.h>
#include <weft/uv.h>

#include "weft_test.h"

#include "wrap_alloc.h"

static int calls;
static void on_result(void *job_arg, int job_rc, weft_job_state state, void *cb_arg) { calls++; }
static int job_ok(weft_ctx *ctx, void *arg) { return 0; }
static void on_watch(weft_uv_watch *w, int err, void *arg) { calls++; }

WEFT_TEST(uv_nomem, init_submit_watch_signal) {
  uv_loop_t loop;
  cr_assert_eq(uv_loop_init(&loop), 0);
  weft_pool *pool;
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 1;
  cr_assert_eq(weft_pool_create(&o, &pool), 0);
  weft_ctx *parent;
  weft_cancel *pcancel;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &parent, &pcancel), 0);

  int swept = 0;
  for (long k = 0;; k++) { /* weft_uv_init */
    weft_uv *u;
    arm_one(k);
    int rc = weft_uv_init(&loop, &u);
    long f = disarm();
    if (rc == 0) {
      weft_uv_close(u, false, NULL, NULL);
      uv_run(&loop, UV_RUN_DEFAULT);
      if (f == 0) break;
      continue;
    }
    cr_assert_eq(rc, WEFT_ENOMEM, "k=%ld: %s", k, weft_err_name(rc));
    cr_assert_null(u);
    swept++;
  }
  weft_uv *u;
  cr_assert_eq(weft_uv_init(&loop, &u), 0);
  int expected_calls = 0;
  for (long k = 0;; k++) { /* weft_uv_submit with a handle: the record, the job's context, the pool's */
    weft_uv_job *j;
    arm_one(k);
    int rc = weft_uv_submit(u, pool, parent, job_ok, NULL, on_result, NULL, &j);
    long f = disarm();
    if (rc == 0) {
      expected_calls++;
      uv_run(&loop, UV_RUN_DEFAULT);
      cr_assert_eq(calls, expected_calls);
      if (f == 0) break;
      continue;
    }
    cr_assert_eq(rc, WEFT_ENOMEM, "k=%ld: %s", k, weft_err_name(rc));
    cr_assert_null(j);
    swept++;
  }
  weft_uv_close(u, false, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(calls, expected_calls, "a failed submit never calls back");

  calls = 0;
  for (long k = 0;; k++) { /* weft_uv_watch_start (the context's eventfd record included) */
    weft_ctx *c;
    weft_cancel *cc;
    cr_assert_eq(weft_ctx_with_cancel(parent, &c, &cc), 0);
    weft_uv_watch *w;
    arm_one(k);
    int rc = weft_uv_watch_start(&loop, c, on_watch, NULL, &w);
    long f = disarm();
    if (rc == 0) {
      weft_ctx_cancel(cc);
      uv_run(&loop, UV_RUN_DEFAULT);
      cr_assert_eq(calls, 1);
      calls = 0;
      weft_uv_watch_close(w);
      uv_run(&loop, UV_RUN_DEFAULT);
      weft_ctx_end(cc);
      if (f == 0) break;
      continue;
    }
    cr_assert_eq(rc, WEFT_ENOMEM, "k=%ld: %s", k, weft_err_name(rc));
    cr_assert_null(w);
    weft_ctx_end(cc);
    swept++;
  }
  for (long k = 0;; k++) { /* weft_uv_signal_ctx */
    weft_ctx *c;
    weft_uv_signal *s;
    arm_one(k);
    int rc = weft_uv_signal_ctx(&loop, parent, SIGUSR1, &c, &s);
    long f = disarm();
    if (rc == 0) {
      weft_uv_signal_stop(s);
      weft_ctx_release(c);
      uv_run(&loop, UV_RUN_DEFAULT);
      if (f == 0) break;
      continue;
    }
    cr_assert_eq(rc, WEFT_ENOMEM, "k=%ld: %s", k, weft_err_name(rc));
    cr_assert_null(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    swept++;
  }
  cr_assert_gt(swept, 4, "allocation sites were reached");
  cr_assert_eq(calls, 0);
  cr_assert_eq(uv_loop_close(&loop), 0);
  weft_ctx_end(pcancel);
  weft_pool_destroy(pool, NULL);
}
