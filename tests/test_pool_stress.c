/* Accounting stress: T submitters x N jobs, random failures, a mix of plain jobs and jobs with records
 * (futures, submitter contexts, timeouts), and a shutdown at a random moment (cancel or drain). Checked
 * with a per-job counter array: every accepted job ran exactly once or was discarded exactly once, never
 * both, no job ran after its discard, and the report's sum equals the number submitted.
 * Sizes: WEFT_STRESS_THREADS (submitters, default 4: with the 3 workers, more threads than cores),
 * WEFT_STRESS_ITERS (jobs per submitter), WEFT_STRESS_ROUNDS; WEFT_SEED replays a run (each test prints
 * the seed it used). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "weft_test.h"

typedef struct job_state {
  _Atomic uint8_t ran, discarded, accepted;
} job_state;

static job_state *jobs;
static _Atomic int after_discard;
static weft_pool *pool;
static weft_ctx *sub_ctx;
static weft_cancel *sub_cancel;

static int stress_job(weft_ctx *ctx, void *arg) {
  (void)ctx;
  size_t id = (size_t)(uintptr_t)arg;
  if (atomic_load(&jobs[id].discarded)) atomic_fetch_add(&after_discard, 1);
  atomic_fetch_add(&jobs[id].ran, 1);
  /* About one in 128 blocks in a weft wait long enough to park, so its worker hands the jobs it took
   * with it back to the queue (pool.c, hand_back) while others are submitted, run and discarded. */
  if ((id * 40503u) % 128 == 0) {
    int rc = weft_ctx_sleep(ctx, WEFT_MS(1));
    if (rc != 0) return rc;
  }
  return (id * 2654435761u) % 7 == 0 ? -100 : 0; /* about one in seven fails */
}

static void stress_discard(void *arg, void *darg) {
  (void)darg;
  size_t id = (size_t)(uintptr_t)arg;
  atomic_fetch_add(&jobs[id].discarded, 1);
}

typedef struct sub {
  size_t first, n;
  unsigned seed;
  pthread_t th;
} sub;

static void *submitter(void *a) {
  sub *s = a;
  for (size_t i = 0; i < s->n; i++) {
    size_t id = s->first + i;
    int kind = (int)(weft_test_rand(&s->seed) % 8), rc;
    void *arg = (void *)(uintptr_t)id;
    if (kind == 0) {
      rc = weft_pool_try_submit(pool, stress_job, arg);
      if (rc == WEFT_EFULL) continue;
    } else if (kind == 1) {
      weft_future *f;
      weft_job_opts o = WEFT_JOB_OPTS_INIT;
      o.run_ctx = sub_ctx;
      o.timeout = WEFT_SEC(60);
      rc = weft_pool_submit_opts(pool, sub_ctx, stress_job, arg, &o, &f);
      if (rc == 0) weft_future_release(f);
    } else {
      rc = weft_pool_submit(pool, NULL, stress_job, arg);
    }
    if (rc == WEFT_ESTOPPED) break;
    cr_assert_eq(rc, 0, "submit: %s", weft_err_name(rc));
    atomic_store(&jobs[id].accepted, 1);
  }
  return NULL;
}

/* The seed from WEFT_SEED, else `dflt`; printed, so a failing run can be replayed. */
static unsigned stress_seed(const char *test, unsigned dflt) {
  const char *e = getenv("WEFT_SEED");
  unsigned seed = e && *e ? (unsigned)strtoul(e, NULL, 10) : dflt;
  fprintf(stderr, "%s: WEFT_SEED=%u\n", test, seed);
  return seed;
}

static void stress_round(unsigned seed, weft_pool_mode mode) {
  size_t T = (size_t)weft_test_env("WEFT_STRESS_THREADS", 4);
  size_t N = (size_t)weft_test_env("WEFT_STRESS_ITERS", 40000 / WEFT_TEST_SCALE);
  jobs = calloc(T * N, sizeof *jobs);
  cr_assert_not_null(jobs);
  atomic_store(&after_discard, 0);
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &sub_ctx, &sub_cancel), 0);
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 3;
  o.queue_cap = 64;
  o.discard = stress_discard;
  cr_assert_eq(weft_pool_create(&o, &pool), 0);
  sub *subs = calloc(T, sizeof *subs);
  for (size_t t = 0; t < T; t++) {
    subs[t] = (sub){t * N, N, seed + (unsigned)t, 0};
    pthread_create(&subs[t].th, NULL, submitter, &subs[t]);
  }
  usleep((useconds_t)(weft_test_rand(&seed) % 60000)); /* shut down at a random moment */
  weft_pool_report rep;
  cr_assert_eq(weft_pool_shutdown(pool, mode, WEFT_FOREVER, &rep), 0);
  for (size_t t = 0; t < T; t++) pthread_join(subs[t].th, NULL);
  cr_assert_eq(rep.completed + rep.failed + rep.canceled_before_start + rep.canceled_while_running +
                   rep.still_running,
               rep.submitted);
  weft_pool_report fin;
  weft_pool_destroy(pool, &fin);
  uint64_t accepted = 0, ran = 0, disc = 0, ran_fail = 0;
  for (size_t id = 0; id < T * N; id++) {
    int a = atomic_load(&jobs[id].accepted), r = atomic_load(&jobs[id].ran), d = atomic_load(&jobs[id].discarded);
    accepted += (uint64_t)a;
    ran += (uint64_t)r;
    disc += (uint64_t)d;
    if (r && (id * 2654435761u) % 7 == 0) ran_fail++;
    if (a)
      cr_assert_eq(r + d, 1, "job %zu: ran %d, discarded %d", id, r, d);
    else
      cr_assert_eq(r + d, 0, "job %zu was refused but ran %d / discarded %d", id, r, d);
  }
  cr_assert_eq(atomic_load(&after_discard), 0, "a job ran after its discard");
  cr_assert_eq(fin.submitted, accepted);
  cr_assert_eq(rep.submitted, accepted);
  cr_assert_eq(fin.still_running, 0);
  cr_assert_eq(fin.completed + fin.failed + fin.canceled_while_running, ran);
  cr_assert_eq(fin.canceled_before_start, disc);
  cr_assert_eq(fin.timed_out, 0);
  /* A job that returned an error is failed or canceled while running, never completed; one that returned
   * 0 is completed or canceled while running. */
  cr_assert_leq(fin.failed, ran_fail, "seed %u", seed);
  cr_assert_leq(fin.completed, ran - ran_fail, "seed %u", seed);
  if (mode == WEFT_POOL_DRAIN) {
    cr_assert_eq(disc, 0, "drain without a grace deadline discards nothing");
    /* Nothing was cancelled: each job's class is what it returned. */
    cr_assert_eq(fin.canceled_while_running, 0);
    cr_assert_eq(fin.failed, ran_fail, "failed %lu, jobs that returned an error %lu (seed %u)",
                 (unsigned long)fin.failed, (unsigned long)ran_fail, seed);
  }
  free(subs);
  free(jobs);
  weft_ctx_end(sub_cancel);
}

WEFT_TEST(pool_stress, accounting_with_random_cancel) {
  unsigned seed = stress_seed("accounting_with_random_cancel", (unsigned)weft_now());
  long rounds = weft_test_env("WEFT_STRESS_ROUNDS", 6);
  for (long r = 0; r < rounds; r++) stress_round(seed + (unsigned)r * 977u, WEFT_POOL_CANCEL);
}

WEFT_TEST(pool_stress, accounting_with_random_drain) {
  unsigned seed = stress_seed("accounting_with_random_drain", (unsigned)weft_now() ^ 0x5bd1e995u);
  long rounds = weft_test_env("WEFT_STRESS_ROUNDS", 6);
  for (long r = 0; r < rounds; r++) stress_round(seed + (unsigned)r * 131u, WEFT_POOL_DRAIN);
}

/* Many short-lived pools with more workers than cores: creation, parking, wake-ups and teardown races. */
static _Atomic int many_n;
static int many_job(weft_ctx *ctx, void *arg) {
  (void)ctx;
  (void)arg;
  atomic_fetch_add(&many_n, 1);
  return 0;
}

WEFT_TEST(pool_stress, create_submit_destroy_many) {
  long rounds = weft_test_env("WEFT_STRESS_ROUNDS", 6) * 10;
  for (long r = 0; r < rounds; r++) {
    weft_pool_opts o = WEFT_POOL_OPTS_INIT;
    o.workers = 6;
    o.queue_cap = 8;
    weft_pool *p;
    cr_assert_eq(weft_pool_create(&o, &p), 0);
    atomic_store(&many_n, 0);
    for (int i = 0; i < 100; i++) cr_assert_eq(weft_pool_submit(p, NULL, many_job, NULL), 0);
    if (r % 2) usleep(2000); /* let the workers park, so the next submits must wake them */
    for (int i = 0; i < 100; i++) cr_assert_eq(weft_pool_submit(p, NULL, many_job, NULL), 0);
    weft_pool_report rep;
    cr_assert_eq(weft_pool_shutdown(p, WEFT_POOL_DRAIN, WEFT_FOREVER, &rep), 0);
    cr_assert_eq(atomic_load(&many_n), 200);
    cr_assert_eq(rep.completed, 200);
    weft_pool_destroy(p, NULL);
  }
}

/* Job records recycled across threads: records end on workers (on_done jobs, futures released early) and
 * on submitters (futures released after their wait) and go back through the pool's lock-free freed stack
 * while other submitters take them. A record handed out while still referenced would show: a future would
 * report another job's result, or a job would run twice or never. T submitters x N jobs; each job returns
 * a code derived from its id, checked through its future when one is kept. */
enum { REC_WINDOW = 16 };
static _Atomic uint8_t *rec_ran;
static _Atomic uint64_t rec_done_calls;

static int rec_code(size_t id) { return (int)(id % 1000) + 1; }
static int rec_job(weft_ctx *ctx, void *arg) {
  (void)ctx;
  size_t id = (size_t)(uintptr_t)arg;
  atomic_fetch_add(&rec_ran[id], 1);
  return rec_code(id);
}
static void rec_on_done(void *arg, int rc, weft_job_state st, void *darg) {
  (void)darg;
  size_t id = (size_t)(uintptr_t)arg;
  if (rc == rec_code(id) && st == WEFT_JOB_FAILED) atomic_fetch_add(&rec_done_calls, 1);
}

typedef struct rec_sub {
  size_t first, n;
  unsigned seed;
  pthread_t th;
  size_t wrong;   /* futures that reported another job's code */
  size_t with_cb; /* jobs submitted with on_done */
} rec_sub;

static void *rec_submitter(void *a) {
  rec_sub *s = a;
  weft_future *win[REC_WINDOW] = {0};
  size_t win_id[REC_WINDOW] = {0};
  for (size_t i = 0; i < s->n; i++) {
    size_t id = s->first + i, w = i % REC_WINDOW;
    if (win[w]) { /* the oldest kept future: wait, check, release (on this thread) */
      int rc = -1;
      cr_assert_eq(weft_future_wait(win[w], NULL, &rc), 0);
      if (rc != rec_code(win_id[w])) s->wrong++;
      weft_future_release(win[w]);
      win[w] = NULL;
    }
    weft_job_opts o = WEFT_JOB_OPTS_INIT;
    void *arg = (void *)(uintptr_t)id;
    weft_future *f = NULL;
    switch (weft_test_rand(&s->seed) % 3) {
    case 0: /* kept: released here after its wait */
      cr_assert_eq(weft_pool_submit_opts(pool, NULL, rec_job, arg, &o, &f), 0);
      win[w] = f, win_id[w] = id;
      break;
    case 1: /* released at once: the worker that ends the job frees the record */
      cr_assert_eq(weft_pool_submit_opts(pool, NULL, rec_job, arg, &o, &f), 0);
      weft_future_release(f);
      break;
    default: /* no future: on_done, the worker frees the record */
      o.on_done = rec_on_done;
      cr_assert_eq(weft_pool_submit_opts(pool, NULL, rec_job, arg, &o, NULL), 0);
      s->with_cb++;
      break;
    }
  }
  for (size_t w = 0; w < REC_WINDOW; w++)
    if (win[w]) {
      int rc = -1;
      cr_assert_eq(weft_future_wait(win[w], NULL, &rc), 0);
      if (rc != rec_code(win_id[w])) s->wrong++;
      weft_future_release(win[w]);
    }
  return NULL;
}

WEFT_TEST(pool_stress, job_records_recycled_across_threads) {
  unsigned seed = stress_seed("job_records_recycled_across_threads", (unsigned)weft_now() ^ 0x27d4eb2fu);
  size_t T = (size_t)weft_test_env("WEFT_STRESS_THREADS", 4);
  size_t N = (size_t)weft_test_env("WEFT_STRESS_ITERS", 40000 / WEFT_TEST_SCALE);
  rec_ran = calloc(T * N, sizeof *rec_ran);
  cr_assert_not_null(rec_ran);
  atomic_store(&rec_done_calls, 0);
  weft_pool_opts po = WEFT_POOL_OPTS_INIT;
  po.workers = 3;
  po.queue_cap = 64;
  cr_assert_eq(weft_pool_create(&po, &pool), 0);
  rec_sub *subs = calloc(T, sizeof *subs);
  for (size_t t = 0; t < T; t++) {
    subs[t] = (rec_sub){.first = t * N, .n = N, .seed = seed + (unsigned)t};
    pthread_create(&subs[t].th, NULL, rec_submitter, &subs[t]);
  }
  size_t wrong = 0, with_cb = 0;
  for (size_t t = 0; t < T; t++) {
    pthread_join(subs[t].th, NULL);
    wrong += subs[t].wrong;
    with_cb += subs[t].with_cb;
  }
  weft_pool_report rep;
  cr_assert_eq(weft_pool_shutdown(pool, WEFT_POOL_DRAIN, WEFT_FOREVER, &rep), 0);
  weft_pool_destroy(pool, NULL);
  cr_assert_eq(wrong, 0, "%zu futures reported another job's result (seed %u)", wrong, seed);
  size_t twice = 0, never = 0;
  for (size_t id = 0; id < T * N; id++) {
    uint8_t r = atomic_load(&rec_ran[id]);
    twice += r > 1;
    never += r == 0;
  }
  cr_assert_eq(twice + never, 0, "%zu jobs ran twice, %zu never (seed %u)", twice, never, seed);
  cr_assert_eq(rep.submitted, T * N);
  cr_assert_eq(rep.failed, T * N, "every job returned its code: failed, each once");
  cr_assert_eq(atomic_load(&rec_done_calls), with_cb, "on_done ran once per job that had one, with its code");
  cr_assert_gt(with_cb, 0);
  free(subs);
  free((void *)rec_ran);
}
