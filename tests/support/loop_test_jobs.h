/* loop_test_jobs.h: the jobs and the result callback the event-loop adapter tests (test_uv.c,
 * test_glib.c) share. Its statics belong to the file that includes it: that file's setup records the
 * loop's thread in `loop_thread`; `delivered` counts results (Criterion runs each test in a process of
 * its own, so every test starts from zero). */
#ifndef WEFT_LOOP_TEST_JOBS_H
#define WEFT_LOOP_TEST_JOBS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "weft_test.h"

#define JOB_FAIL_RC (-4242) /* what job_fail returns */

static pthread_t loop_thread; /* the thread that runs the loop (set by each test's setup) */
static long delivered;        /* result callbacks so far, on the loop thread */
static atomic_int started;    /* job_wait_ctx jobs that began */

typedef struct result {
  _Atomic int calls;  /* result callbacks for this job */
  _Atomic int ran;    /* the job ran */
  int rc;
  weft_job_state state;
  bool on_loop;
  long seq; /* order of delivery */
} result;

/* The result callback: the job's arg is its result, which the callback receives too. */
static void on_result(void *job_arg, int job_rc, weft_job_state state, void *cb_arg) {
  result *r = cb_arg;
  cr_assert_eq(job_arg, (void *)r, "the job's arg comes back");
  atomic_fetch_add(&r->calls, 1);
  r->rc = job_rc;
  r->state = state;
  r->on_loop = pthread_equal(pthread_self(), loop_thread);
  r->seq = delivered++;
}

static int job_ok(weft_ctx *ctx, void *arg) {
  (void)ctx;
  atomic_store(&((result *)arg)->ran, 1);
  return 0;
}

static int job_fail(weft_ctx *ctx, void *arg) {
  (void)ctx;
  atomic_store(&((result *)arg)->ran, 1);
  return JOB_FAIL_RC;
}

/* Waits (up to 30 s) for its context: returns the context's error (-1 if it never came). */
static int job_wait_ctx(weft_ctx *ctx, void *arg) {
  atomic_store(&((result *)arg)->ran, 1);
  atomic_fetch_add(&started, 1);
  int rc = weft_ctx_wait_for(ctx, WEFT_SEC(30));
  return rc == WEFT_ETIMEDOUT ? -1 : rc;
}

#endif
