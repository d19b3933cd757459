/* Stress of the libuv adapter: many jobs through two adapters sharing one loop and one pool, a window of
 * jobs in flight refilled from the result callbacks, random per-job cancels from the loop, and a pool
 * shutdown (cancel mode) from another thread while completions stream in. Checked per job: its result
 * callback ran exactly once, on the loop thread, with a class that matches what the job did; and the
 * adapters' counts add up with the pool's report.
 * Sizes: WEFT_STRESS_THREADS (pool workers, default 3: with the loop thread and the shutdown thread, more
 * threads than cores), WEFT_STRESS_ITERS (jobs), WEFT_SEED replays a run. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <uv.h>
#include <weft/uv.h>

#include "weft_test.h"

typedef struct job {
  _Atomic int ran, calls;
  int rc;
  weft_job_state state;
  bool cancel_sent, accepted;
  weft_uv_job *handle;
  size_t id;
} job;

static job *jobs;
static size_t njobs, next_job, delivered, window;
static weft_uv *ads[2];
static weft_pool *pool;
static pthread_t loop_thread;
static unsigned seed;
static bool stopped; /* the pool refused with ESTOPPED: submit no more */
static _Atomic int off_loop;
static size_t *live; /* ids of jobs in flight with a handle, for random cancels */
static size_t nlive;

static int stress_job(weft_ctx *ctx, void *arg) {
  job *j = arg;
  atomic_fetch_add(&j->ran, 1);
  switch (j->id % 5) {
  case 0: return -77;                                   /* fails */
  case 1: return weft_ctx_sleep(ctx, WEFT_US(50));       /* short work that stops when cancelled */
  case 2: return weft_ctx_sleep(ctx, WEFT_US(500));
  default: return 0;
  }
}

static void submit_more(void);

static void on_result(void *job_arg, int job_rc, weft_job_state state, void *cb_arg) {
  job *j = job_arg;
  cr_assert_eq(cb_arg, (void *)j);
  if (!pthread_equal(pthread_self(), loop_thread)) atomic_fetch_add(&off_loop, 1);
  int calls = atomic_fetch_add(&j->calls, 1) + 1;
  cr_assert_eq(calls, 1, "job %zu delivered twice", j->id);
  j->rc = job_rc;
  j->state = state;
  delivered++;
  window--;
  if (j->handle != NULL) {
    for (size_t i = 0; i < nlive; i++)
      if (live[i] == j->id) {
        live[i] = live[--nlive];
        break;
      }
    j->handle = NULL;
  }
  /* now and then cancel a random job still in flight */
  if (nlive > 0 && weft_test_rand(&seed) % 8 == 0) {
    job *v = &jobs[live[weft_test_rand(&seed) % nlive]];
    int rc = weft_uv_job_cancel(v->handle);
    cr_assert(rc == 0 || rc == WEFT_ESTATE, "%s", weft_err_name(rc));
    if (rc == 0) v->cancel_sent = true;
  }
  submit_more();
}

static void submit_more(void) {
  while (!stopped && next_job < njobs && window < 256) {
    job *j = &jobs[next_job];
    j->id = next_job;
    bool with_handle = weft_test_rand(&seed) % 2;
    int rc = weft_uv_submit(ads[next_job % 2], pool, NULL, stress_job, j, on_result, j,
                            with_handle ? &j->handle : NULL);
    if (rc == WEFT_EFULL) return; /* a later result refills */
    if (rc == WEFT_ESTOPPED) {
      stopped = true;
      return;
    }
    cr_assert_eq(rc, 0, "%s", weft_err_name(rc));
    j->accepted = true;
    if (with_handle) live[nlive++] = j->id;
    next_job++;
    window++;
  }
}

static void *shutdown_later(void *arg) {
  weft_pool_report *rep = arg;
  while (atomic_load(&jobs[njobs / 2].calls) == 0) weft_ctx_sleep(weft_background(), WEFT_US(200));
  cr_assert_eq(weft_pool_shutdown(pool, WEFT_POOL_CANCEL, WEFT_FOREVER, rep), 0);
  return NULL;
}

/* A timer keeps the loop turning while nothing is in flight but jobs remain (every submit refused). */
static void kick(uv_timer_t *t) {
  submit_more();
  if (stopped || next_job == njobs) uv_close((uv_handle_t *)t, NULL);
}

static int closes;
static void on_closed(weft_uv *u, void *arg) { closes++; }

WEFT_TEST(uv_stress, completions_exactly_once_on_the_loop_thread) {
  long workers = weft_test_env("WEFT_STRESS_THREADS", 3);
  njobs = (size_t)weft_test_env("WEFT_STRESS_ITERS", 40000 / WEFT_TEST_SCALE);
  const char *e = getenv("WEFT_SEED");
  seed = e != NULL ? (unsigned)strtoul(e, NULL, 10) : (unsigned)time(NULL);
  printf("uv_stress: seed %u (WEFT_SEED replays), %ld workers, %zu jobs\n", seed, workers, njobs);
  jobs = calloc(njobs, sizeof *jobs);
  live = calloc(njobs, sizeof *live);
  loop_thread = pthread_self();
  uv_loop_t loop;
  cr_assert_eq(uv_loop_init(&loop), 0);
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = (size_t)workers;
  o.queue_cap = 128; /* smaller than the window: submits meet a full queue */
  cr_assert_eq(weft_pool_create(&o, &pool), 0);
  cr_assert_eq(weft_uv_init(&loop, &ads[0]), 0);
  cr_assert_eq(weft_uv_init(&loop, &ads[1]), 0);
  weft_pool_report prep = {0};
  pthread_t th;
  pthread_create(&th, NULL, shutdown_later, &prep);
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  uv_timer_start(&t, kick, 0, 1);
  uv_run(&loop, UV_RUN_DEFAULT);
  pthread_join(th, NULL);
  cr_assert_eq(atomic_load(&off_loop), 0, "a result was delivered off the loop thread");

  size_t accepted = 0, ran = 0;
  for (size_t i = 0; i < njobs; i++) {
    job *j = &jobs[i];
    if (!j->accepted) {
      cr_assert_eq(atomic_load(&j->calls), 0);
      continue;
    }
    accepted++;
    cr_assert_eq(atomic_load(&j->calls), 1, "job %zu: %d results", i, atomic_load(&j->calls));
    int r = atomic_load(&j->ran);
    cr_assert_leq(r, 1, "job %zu ran %d times", i, r);
    ran += (size_t)r;
    switch (j->state) {
    case WEFT_JOB_CANCELED_BEFORE_START: cr_assert_eq(r, 0, "job %zu ran, yet canceled before start", i); break;
    case WEFT_JOB_COMPLETED: cr_assert(r == 1 && j->rc == 0 && !j->cancel_sent, "job %zu", i); break;
    case WEFT_JOB_FAILED: cr_assert(r == 1 && j->rc != 0 && !j->cancel_sent, "job %zu", i); break;
    case WEFT_JOB_CANCELED_WHILE_RUNNING: cr_assert(r == 1 && j->rc != 0, "job %zu", i); break;
    default: cr_assert_fail("job %zu: state %d", i, j->state);
    }
    if (j->state == WEFT_JOB_FAILED && i % 5 == 0) cr_assert_eq(j->rc, -77);
  }
  weft_pool_report a, b;
  weft_uv_report(ads[0], &a);
  weft_uv_report(ads[1], &b);
  cr_assert_eq(a.submitted + b.submitted, accepted);
  cr_assert_eq(a.still_running + b.still_running, 0);
  cr_assert_eq(a.completed + a.failed + a.canceled_before_start + a.canceled_while_running, a.submitted);
  cr_assert_eq(b.completed + b.failed + b.canceled_before_start + b.canceled_while_running, b.submitted);
  /* the pool's report, taken by shutdown once every job ended, sees the same jobs; the adapter moves
   * the jobs it cancelled while they ran from completed/failed to canceled while running */
  cr_assert_eq(prep.submitted, accepted);
  cr_assert_eq(prep.canceled_before_start, a.canceled_before_start + b.canceled_before_start);
  cr_assert_eq(prep.completed + prep.failed + prep.canceled_while_running,
               a.completed + a.failed + a.canceled_while_running + b.completed + b.failed + b.canceled_while_running);
  cr_assert_eq(ran, prep.completed + prep.failed + prep.canceled_while_running);
  printf("uv_stress: %zu accepted, %zu ran; completed %lu failed %lu canceled before start %lu while running %lu\n",
         accepted, ran, (unsigned long)(a.completed + b.completed), (unsigned long)(a.failed + b.failed),
         (unsigned long)(a.canceled_before_start + b.canceled_before_start),
         (unsigned long)(a.canceled_while_running + b.canceled_while_running));
  weft_uv_close(ads[0], false, on_closed, NULL);
  weft_uv_close(ads[1], true, on_closed, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(closes, 2);
  cr_assert_eq(uv_loop_close(&loop), 0);
  weft_pool_destroy(pool, NULL);
  free(jobs);
  free(live);
}
