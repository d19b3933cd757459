/* Allocation failure: every allocation weft makes can fail, and every call must then return WEFT_ENOMEM (or
 * succeed) with nothing leaked, never crash. This binary is linked with --wrap for malloc, calloc, realloc
 * and aligned_alloc (tests/CMakeLists.txt), so the allocations of the library's objects go through the
 * wrappers of support/wrap_alloc.h, which fail every allocation from the k-th on while armed. Each test
 * sweeps k from 0 until the operation succeeds, so each allocation site fails once. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "weft_test.h"

#include "wrap_alloc.h"

#define SWEEP_MAX 400

static int dtor_calls;
static void count_dtor(void *p) {
  (void)p;
  dtor_calls++;
}
static const char key;

WEFT_TEST(nomem, contexts) {
  weft_ctx *a, *b;
  weft_cancel *b_cancel = NULL;
  weft_cancel *a_cancel = NULL;
  /* the parents are made first, unarmed */
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &a, &a_cancel), 0);
  cr_assert_eq(weft_ctx_with_timeout(weft_background(), WEFT_SEC(60), &b, &b_cancel), 0);
  size_t live = weft_ctx_live_count();
  long k;
  for (k = 0; k < SWEEP_MAX; k++) {
    weft_ctx *v = NULL, *m = NULL, *t = NULL;
    weft_cancel *m_cancel = NULL;
    weft_cancel *t_cancel = NULL;
    dtor_calls = 0;
    arm(k);
    int r1 = weft_ctx_with_value(a, &key, "v", count_dtor, &v);
    weft_ctx *ps[] = {a, b, v ? v : a};
    int r2 = weft_ctx_with_parents(ps, 3, &m, &m_cancel);
    int r3 = weft_ctx_with_timeout(m ? m : a, WEFT_SEC(30), &t, &t_cancel);
    int r4 = t ? weft_ctx_after_func(t, count_dtor, NULL, NULL) : WEFT_ENOMEM;
    int r5 = t ? weft_ctx_fd(t) : WEFT_ENOMEM;
    disarm();
    int rs[] = {r1, r2, r3, r4};
    for (int i = 0; i < 4; i++) cr_assert(rs[i] == 0 || rs[i] == WEFT_ENOMEM, "k=%ld call %d: %d", k, i, rs[i]);
    cr_assert(r5 >= 0 || r5 == WEFT_ENOMEM);
    if (r1 != 0) cr_assert_eq(dtor_calls, 1, "a failed with_value still frees its value");
    if (r1 != 0) cr_assert_null(v);
    if (r2 != 0) cr_assert_null(m);
    weft_ctx_end(t_cancel);
    weft_ctx_end(m_cancel);
    weft_ctx_release(v);
    for (int i = 0; i < 5000 && weft_ctx_live_count() != live; i++) weft_ctx_sleep(weft_background(), WEFT_MS(1));
    cr_assert_eq(weft_ctx_live_count(), live, "k=%ld: nothing left behind", k);
    if (r1 == 0 && r2 == 0 && r3 == 0 && r4 == 0 && r5 >= 0) break;
  }
  cr_assert_lt(k, SWEEP_MAX, "the sweep reached success");
  cr_log_info("contexts: %ld allocation sites failed on the way", k);
  cr_assert_gt(k, 0, "some allocation failed on the way");
  weft_ctx_end(a_cancel);
  weft_ctx_end(b_cancel);
}

WEFT_TEST(nomem, channels) {
  long k;
  for (k = 0; k < SWEEP_MAX; k++) {
    weft_chan *ch = NULL, *t = NULL;
    arm(k);
    int r1 = weft_chan_create(sizeof(int), 16, &ch);
    int r2 = weft_chan_after(WEFT_SEC(60), &t);
    disarm();
    cr_assert(r1 == 0 || r1 == WEFT_ENOMEM, "k=%ld: %d", k, r1);
    cr_assert(r2 == 0 || r2 == WEFT_ENOMEM, "k=%ld: %d", k, r2);
    if (r1 == 0) {
      int v = 5, w = 0;
      cr_assert_eq(weft_chan_try_send(ch, &v), 0);
      cr_assert_eq(weft_chan_try_recv(ch, &w), 0);
      cr_assert_eq(w, 5);
      cr_assert_eq(weft_chan_destroy(ch), 0);
    } else {
      cr_assert_null(ch);
    }
    if (r2 == 0) cr_assert_eq(weft_chan_destroy(t), 0);
    if (r1 == 0 && r2 == 0) break;
  }
  cr_assert_lt(k, SWEEP_MAX);
}

static _Atomic int ran;
static int job(weft_ctx *ctx, void *arg) {
  (void)ctx;
  (void)arg;
  atomic_fetch_add(&ran, 1);
  return 0;
}

WEFT_TEST(nomem, pool_group_sem) {
  long k;
  for (k = 0; k < SWEEP_MAX; k++) {
    weft_pool *p = NULL;
    weft_group *g = NULL;
    weft_sem *s = NULL;
    weft_pool_opts o = WEFT_POOL_OPTS_INIT;
    o.workers = 2;
    o.queue_cap = 8;
    atomic_store(&ran, 0);
    arm(k);
    int r1 = weft_pool_create(&o, &p);
    int r2 = weft_group_create(NULL, 2, &g);
    int r3 = weft_sem_create(3, &s);
    weft_future *f = NULL;
    weft_job_opts jo = WEFT_JOB_OPTS_INIT;
    jo.timeout = WEFT_SEC(10); /* a job record and a derived context: more allocation sites */
    int r4 = p ? weft_pool_submit_opts(p, NULL, job, NULL, &jo, &f) : WEFT_ENOMEM;
    disarm();
    int rs[] = {r1, r2, r3, r4};
    for (int i = 0; i < 4; i++) cr_assert(rs[i] == 0 || rs[i] == WEFT_ENOMEM, "k=%ld call %d: %d", k, i, rs[i]);
    if (r4 == 0) {
      int jrc = -1;
      cr_assert_eq(weft_future_wait(f, NULL, &jrc), 0);
      cr_assert_eq(jrc, 0);
      weft_future_release(f);
      cr_assert_eq(atomic_load(&ran), 1, "a submitted job runs exactly once");
    } else {
      cr_assert_eq(atomic_load(&ran), 0, "a failed submit never runs the job");
    }
    weft_pool_report rep;
    if (p) {
      weft_pool_destroy(p, &rep);
      cr_assert_eq(rep.submitted, r4 == 0 ? 1u : 0u);
    }
    weft_group_destroy(g);
    weft_sem_destroy(s);
    if (r1 == 0 && r2 == 0 && r3 == 0 && r4 == 0) break;
  }
  cr_assert_lt(k, SWEEP_MAX);
  cr_assert_eq(weft_ctx_live_count(), 0);
}

/* A submit with a completion channel and callback whose job record cannot be allocated returns
 * WEFT_ENOMEM, calls nothing, and gives the channel's reserved room back (the channel of 1 takes the next
 * submit). */
static _Atomic int nomem_done_calls;
static void nomem_done(void *arg, int rc, weft_job_state st, void *darg) {
  (void)arg;
  (void)rc;
  (void)st;
  (void)darg;
  atomic_fetch_add(&nomem_done_calls, 1);
}

WEFT_TEST(nomem, pool_completion_reservation_given_back) {
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 1;
  o.queue_cap = 4;
  weft_pool *p;
  cr_assert_eq(weft_pool_create(&o, &p), 0);
  weft_chan *dc;
  cr_assert_eq(weft_chan_create(sizeof(struct weft_completion), 1, &dc), 0);
  weft_job_opts jo = WEFT_JOB_OPTS_INIT;
  jo.on_done = nomem_done;
  jo.done_chan = dc;
  atomic_store(&ran, 0);
  atomic_store(&nomem_done_calls, 0);
  long k;
  int r = WEFT_ENOMEM;
  for (k = 0; k < SWEEP_MAX && r != 0; k++) {
    arm(k);
    r = weft_pool_submit_opts(p, NULL, job, NULL, &jo, NULL);
    disarm();
    cr_assert(r == 0 || r == WEFT_ENOMEM, "k=%ld: %d", k, r);
    if (r != 0) {
      cr_assert_eq(atomic_load(&nomem_done_calls), 0);
      cr_assert_eq(weft_chan_len(dc), 0);
    }
  }
  cr_assert_gt(k, 1, "the record's allocation failed on the way");
  cr_assert_eq(weft_pool_wait_all(p, NULL), 0);
  cr_assert_eq(atomic_load(&ran), 1);
  cr_assert_eq(atomic_load(&nomem_done_calls), 1);
  struct weft_completion c;
  cr_assert_eq(weft_chan_try_recv(dc, &c), 0);
  cr_assert_eq(c.state, WEFT_JOB_COMPLETED);
  cr_assert_eq(weft_chan_try_recv(dc, &c), WEFT_EEMPTY, "exactly one completion, the failed submits sent none");
  weft_pool_report rep;
  weft_pool_destroy(p, &rep);
  cr_assert_eq(rep.submitted, 1);
  weft_chan_destroy(dc);
}

static int src(weft_ctx *ctx, weft_emitter *em, void *arg) {
  (void)ctx;
  (void)arg;
  for (int64_t i = 1; i <= 100; i++) {
    int rc = weft_pipeline_emit(em, &i);
    if (rc != 0) return rc;
  }
  return 0;
}
static int sq(weft_ctx *ctx, const void *in, void *out, void *arg) {
  (void)ctx;
  (void)arg;
  *(int64_t *)out = *(const int64_t *)in * *(const int64_t *)in;
  return 0;
}
static int sum(weft_ctx *ctx, const void *item, void *arg) {
  (void)ctx;
  *(int64_t *)arg += *(const int64_t *)item;
  return 0;
}

WEFT_TEST(nomem, pipelines) {
  long k;
  for (k = 0; k < SWEEP_MAX; k++) {
    weft_pipeline *p = NULL;
    int64_t total = 0;
    arm(k);
    int rc = weft_pipeline_create(NULL, &p);
    weft_stage_opts o = WEFT_STAGE_OPTS_INIT;
    o.item_size = sizeof(int64_t);
    if (rc == 0) rc = weft_pipeline_source(p, &o, src, NULL);
    weft_stage_opts m = WEFT_STAGE_OPTS_INIT;
    m.workers = 2;
    if (rc == 0) rc = weft_pipeline_map(p, &m, sq, NULL);
    if (rc == 0) rc = weft_pipeline_sink(p, NULL, sum, &total);
    weft_pipeline_report rep;
    if (rc == 0) rc = weft_pipeline_run(p, NULL, &rep);
    disarm();
    cr_assert(rc == 0 || rc == WEFT_ENOMEM, "k=%ld: %d (%s)", k, rc, weft_strerror(rc));
    if (rc == 0) cr_assert_eq(total, 338350, "the right sum once it runs");
    if (p) cr_assert_eq(weft_pipeline_destroy(p), 0);
    if (rc == 0) break;
  }
  cr_assert_lt(k, SWEEP_MAX);
  cr_assert_eq(weft_ctx_live_count(), 0);
}

/* A started run: each allocation of start and of the run fails alone in turn. start returns 0 or
 * WEFT_ENOMEM (then nothing runs and the pipeline can start again); a run whose setup failed reports
 * WEFT_ENOMEM through join, and the pipeline can start again too. */
static _Atomic int start_done_calls;
static void start_done(weft_pipeline *p, const weft_pipeline_report *rep, void *arg) {
  (void)p;
  (void)rep;
  (void)arg;
  atomic_fetch_add(&start_done_calls, 1);
}

WEFT_TEST(nomem, pipeline_start_each_allocation) {
  weft_pipeline *p;
  int64_t total = 0;
  cr_assert_eq(weft_pipeline_create(NULL, &p), 0);
  weft_stage_opts o = WEFT_STAGE_OPTS_INIT;
  o.item_size = sizeof(int64_t);
  cr_assert_eq(weft_pipeline_source(p, &o, src, NULL), 0);
  cr_assert_eq(weft_pipeline_sink(p, NULL, sum, &total), 0);
  long k, started = 0;
  int rc = WEFT_ENOMEM;
  for (k = 0; k < SWEEP_MAX && rc != 0; k++) {
    total = 0;
    arm_one(k);
    rc = weft_pipeline_start(p, NULL, start_done, NULL);
    if (rc == 0) {
      started++;
      rc = weft_pipeline_join(p, NULL, NULL);
    }
    disarm();
    cr_assert(rc == 0 || rc == WEFT_ENOMEM, "k=%ld: %s", k, weft_err_name(rc));
    cr_assert_eq(atomic_load(&start_done_calls), started, "on_done once per successful start");
  }
  cr_assert_eq(rc, 0);
  cr_assert_gt(k, 2, "allocations failed on the way");
  cr_assert_eq(total, 5050);
  cr_assert_eq(weft_pipeline_destroy(p), 0);
  cr_assert_eq(weft_ctx_live_count(), 0);
}

/* The callback thread frees the context whose last reference its after-func held; when that thread cannot
 * get a per-thread cache (its first allocation fails), the free must still be counted. */
static _Atomic int cb_returned;
static void cb_nothing(void *arg) { (void)arg; }
static void cb_mark(void *arg) {
  (void)arg;
  atomic_store(&cb_returned, 1);
}

WEFT_TEST(nomem, callback_thread_without_cache_counts_its_frees) {
  size_t live = weft_ctx_live_count();
  weft_ctx *p, *c, *d;
  weft_cancel *p_cancel = NULL;
  weft_cancel *c_cancel = NULL;
  weft_cancel *d_cancel = NULL;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &p, &p_cancel), 0);
  cr_assert_eq(weft_ctx_with_cancel(p, &c, &c_cancel), 0);
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &d, &d_cancel), 0);
  cr_assert_eq(weft_ctx_after_func(c, cb_nothing, NULL, NULL), 0); /* starts the callback thread */
  cr_assert_eq(weft_ctx_after_func(d, cb_mark, NULL, NULL), 0);
  weft_ctx_release(c); /* the registration now holds c's last reference */
  arm(0); /* cancel and the callback thread's work allocate nothing but that thread's cache */
  weft_ctx_cancel(p_cancel);
  weft_ctx_cancel(d_cancel);
  /* After cb_nothing the callback thread releases c: its first context operation, with no memory for a
   * cache. Callbacks run in order, so once cb_mark has run, c has been freed. */
  for (int i = 0; i < 100000 && !atomic_load(&cb_returned); i++) usleep(100);
  disarm();
  cr_assert(atomic_load(&cb_returned));
  cr_assert_geq(atomic_load(&failures), 1, "the callback thread's cache could not be made");
  weft_ctx_release(d);
  weft_ctx_end(p_cancel);
  /* d's last reference may be the callback thread's, dropped just after cb_mark returned */
  for (int i = 0; i < 5000 && weft_ctx_live_count() != live; i++) usleep(1000);
  cr_assert_eq(weft_ctx_live_count(), live, "nothing counted as live forever");
}

/* Each allocation of a run fails alone in turn (the edge array's failure crashed: the cleanup walked a
 * NULL array). */
WEFT_TEST(nomem, pipeline_run_each_allocation) {
  long k;
  int64_t total = 0;
  long enomem = 0;
  for (k = 0; k < SWEEP_MAX; k++) {
    weft_pipeline *p = NULL;
    total = 0;
    cr_assert_eq(weft_pipeline_create(NULL, &p), 0);
    weft_stage_opts o = WEFT_STAGE_OPTS_INIT;
    o.item_size = sizeof(int64_t);
    cr_assert_eq(weft_pipeline_source(p, &o, src, NULL), 0);
    weft_stage_opts m = WEFT_STAGE_OPTS_INIT;
    m.workers = 2;
    m.ordered = true; /* a reorder window: one more allocation site */
    cr_assert_eq(weft_pipeline_map(p, &m, sq, NULL), 0);
    cr_assert_eq(weft_pipeline_sink(p, NULL, sum, &total), 0);
    weft_pipeline_report rep;
    arm_one(k);
    int rc = weft_pipeline_run(p, NULL, &rep);
    disarm();
    long failed = atomic_load(&failures);
    cr_assert(rc == 0 || rc == WEFT_ENOMEM, "k=%ld: %d (%s)", k, rc, weft_strerror(rc));
    if (rc == 0) cr_assert_eq(total, 338350, "the right sum once it runs");
    if (rc == WEFT_ENOMEM) cr_assert_eq(rep.err, WEFT_ENOMEM);
    cr_assert_eq(weft_pipeline_destroy(p), 0);
    cr_assert_eq(weft_ctx_live_count(), 0, "k=%ld: nothing left behind", k);
    if (failed == 0) break; /* the run made fewer than k+1 allocations: every site was failed once */
    /* A setup allocation fails the run; one a running worker makes lazily (more of them when threads park
     * more, as under TSan) may be absorbed, and the run then delivers everything (checked above). */
    if (rc == WEFT_ENOMEM) enomem++;
    else cr_assert(k > 0, "the run's first allocation failing is reported");
  }
  cr_assert_lt(k, SWEEP_MAX);
  cr_assert_gt(enomem, 2, "the run allocates at several sites, each failure reported");
  cr_log_info("pipeline run: %ld allocation sites failed one by one", k);
}

static void *merge_reader(void *arg) {
  weft_chan *out = arg;
  int v;
  int rc;
  do /* a receive that could not allocate while the test fails allocations is retried */
    rc = weft_chan_recv(out, NULL, &v);
  while (rc == 0 || rc == WEFT_ENOMEM);
  return (void *)(intptr_t)rc;
}

WEFT_TEST(nomem, merge_tee_close_outputs) {
  for (int kind = 0; kind < 2; kind++) {
    weft_chan *a, *b;
    cr_assert_eq(weft_chan_create(sizeof(int), 1, &a), 0);
    cr_assert_eq(weft_chan_create(sizeof(int), 1, &b), 0);
    pthread_t th; /* a reader on the output, already waiting: it must see the channel closed */
    cr_assert_eq(pthread_create(&th, NULL, merge_reader, b), 0);
    weft_chan *bs[] = {b};
    arm(0);
    int rc = kind == 0 ? weft_chan_merge(NULL, b, (weft_chan *const[]){a}, 1, NULL) : weft_chan_tee(NULL, a, bs, 1, NULL);
    disarm();
    cr_assert_eq(rc, WEFT_ENOMEM, "kind %d: %d", kind, rc);
    cr_assert(weft_chan_closed(b), "kind %d: the output is closed", kind);
    void *res;
    pthread_join(th, &res);
    cr_assert_eq((int)(intptr_t)res, WEFT_ECLOSED, "kind %d: the reader woke on a closed channel", kind);
    cr_assert_eq(weft_chan_destroy(a), 0);
    cr_assert_eq(weft_chan_destroy(b), 0);
  }
}

WEFT_TEST(nomem, ticker_rearm_failure_closes) {
  weft_chan *t;
  cr_assert_eq(weft_chan_tick(WEFT_MS(5), &t), 0);
  weft_ctx *ctx;
  weft_cancel *cancel = NULL;
  cr_assert_eq(weft_ctx_with_timeout(weft_background(), WEFT_SEC(30), &ctx, &cancel), 0);
  arm(0); /* every allocation fails from now on, the callback thread's re-arm included */
  int64_t v;
  int rc;
  int ticks = 0;
  while ((rc = weft_chan_recv(t, ctx, &v)) == 0) ticks++;
  disarm();
  cr_assert_eq(rc, WEFT_ECLOSED, "the reader wakes on a closed ticker, not on its timeout: %d", rc);
  cr_assert_leq(ticks, 2, "the ticker stopped at the failed re-arm");
  cr_assert_gt(atomic_load(&failures), 0);
  cr_assert_eq(weft_chan_destroy(t), 0);
  weft_ctx_end(cancel);
}
