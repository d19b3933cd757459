/* tests/test_pipeline_cancel.c: the first error, deadlines, external cancel, drain, and bounded memory.
 * Items are tracked pointers (pipeline_test_util.h): after every run, each emitted item was delivered or
 * released exactly once. Sources are endless, so a run can only return if stopping works. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline_test_util.h"
#include "weft_test.h"

#define ERR_STAGE (-1000)

typedef struct env {
  tracker *t;
  weft_pipeline *p;
  uint32_t limit;          /* the source stops after this many (a safety net: the tests expect a stop first) */
  uint32_t fail_at;        /* the middle stage fails on this id (UINT32_MAX: never) */
  uint32_t drain_after;    /* the sink drains the pipeline after this many deliveries (0: never) */
  int sink_sleep_us;       /* the sink's work per item */
  _Atomic uint32_t calls[4]; /* calls into source emit loop / stage 1 / stage 2 / sink */
  _Atomic uint32_t sink_seen;
  _Atomic uint32_t max_before_k; /* the largest id delivered */
  _Atomic size_t max_depth;      /* largest queue depth seen through stats during the run */
} env;

static void sleep_us(int us) {
  struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
  nanosleep(&ts, NULL);
}

static int src_endless(weft_ctx *ctx, weft_emitter *em, void *arg) {
  env *e = arg;
  for (uint32_t i = 0; i < e->limit; i++) {
    atomic_fetch_add(&e->calls[0], 1);
    titem *it = ti_new(i, i);
    int rc = weft_pipeline_emit(em, &it);
    if (rc != 0) {
      free(it); /* never emitted: still ours, and not counted anywhere */
      return rc;
    }
    ti_emitted(e->t);
  }
  return 0;
}

static int stage_pass(weft_ctx *ctx, const void *in, void *out, void *arg) {
  env *e = arg;
  atomic_fetch_add(&e->calls[1], 1);
  memcpy(out, in, sizeof(titem *));
  return 0;
}

static int stage_fail_at(weft_ctx *ctx, const void *in, void *out, void *arg) {
  env *e = arg;
  atomic_fetch_add(&e->calls[2], 1);
  titem *it = *(titem *const *)in;
  if (it->id == e->fail_at) return ERR_STAGE; /* the input stays the pipeline's: it releases it */
  *(titem **)out = it;
  return 0;
}

static int sink_track(weft_ctx *ctx, const void *item, void *arg) {
  env *e = arg;
  atomic_fetch_add(&e->calls[3], 1);
  titem *it = *(titem *const *)item;
  uint32_t id = it->id, m = atomic_load(&e->max_before_k);
  while (id > m && !atomic_compare_exchange_weak(&e->max_before_k, &m, id)) {
  }
  if (e->sink_sleep_us) sleep_us(e->sink_sleep_us);
  ti_end(e->t, it, e->t->delivered);
  uint32_t seen = atomic_fetch_add(&e->sink_seen, 1) + 1;
  if (e->drain_after != 0 && seen == e->drain_after) cr_assert_eq(weft_pipeline_drain(e->p), 0);
  if (seen % 64 == 0) { /* stats are readable while running */
    weft_stage_stats s;
    for (size_t i = 1; i < weft_pipeline_stage_count(e->p); i++) {
      cr_assert_eq(weft_pipeline_stats(e->p, i, &s), 0);
      size_t d = atomic_load(&e->max_depth);
      if (s.queue_depth > d) atomic_store(&e->max_depth, s.queue_depth);
    }
  }
  return 0;
}

/* A test's environment: a tracker of every item and an empty pipeline. */
static env *env_new(void) {
  env *e = calloc(1, sizeof *e);
  e->t = tracker_new(1u << 22);
  e->limit = (1u << 22) - 1;
  e->fail_at = UINT32_MAX;
  cr_assert_eq(weft_pipeline_create(NULL, &e->p), 0);
  return e;
}

/* The options of a source of tracked pointer items. */
static weft_stage_opts tracked_source(env *e, size_t cap) {
  weft_stage_opts o = WEFT_STAGE_OPTS_INIT;
  o.item_size = sizeof(titem *);
  o.discard = ti_release;
  o.discard_arg = e->t;
  o.out_capacity = cap;
  return o;
}

/* source -> pass (workers) -> fail_at (workers, ordered?) -> sink */
static env *make(size_t workers, bool ordered, size_t cap) {
  env *e = env_new();
  weft_stage_opts o = tracked_source(e, cap);
  cr_assert_eq(weft_pipeline_source(e->p, &o, src_endless, e), 0);
  o = (weft_stage_opts)WEFT_STAGE_OPTS_INIT;
  o.workers = workers;
  o.out_capacity = cap;
  o.ordered = ordered;
  o.reorder_window = 2;
  cr_assert_eq(weft_pipeline_map(e->p, &o, stage_pass, e), 0);
  o.name = "middle";
  cr_assert_eq(weft_pipeline_map(e->p, &o, stage_fail_at, e), 0);
  cr_assert_eq(weft_pipeline_sink(e->p, NULL, sink_track, e), 0);
  return e;
}

static void finish(env *e) {
  uint64_t d, r;
  cr_assert_eq(tracker_violations(e->t, &d, &r), 0, "every item delivered or released exactly once");
  cr_assert_eq(atomic_load(&e->t->inflight), 0);
  /* Nothing keeps running after the run returned: every stage is done and no call happens any more. */
  for (size_t i = 0; i < weft_pipeline_stage_count(e->p); i++) {
    weft_stage_stats s;
    cr_assert_eq(weft_pipeline_stats(e->p, i, &s), 0);
    cr_assert(s.done, "stage %zu still running", i);
  }
  uint32_t before[4];
  for (int i = 0; i < 4; i++) before[i] = atomic_load(&e->calls[i]);
  sleep_us(20000);
  for (int i = 0; i < 4; i++) cr_assert_eq(atomic_load(&e->calls[i]), before[i], "stage %d ran after the run", i);
  weft_pipeline_destroy(e->p);
  tracker_free(e->t);
  free(e);
}

static void error_at_k(size_t workers, bool ordered) {
  env *e = make(workers, ordered, 64);
  e->fail_at = 5000;
  weft_pipeline_report rep;
  int rc = weft_pipeline_run(e->p, weft_background(), &rep);
  cr_assert_eq(rc, ERR_STAGE);
  cr_assert_eq(rep.err, ERR_STAGE);
  cr_assert_eq(rep.stage, 2, "the middle stage raised it");
  cr_assert_str_eq(rep.stage_name, "middle");
  cr_assert_eq(rep.cause, ERR_STAGE, "the run's context was cancelled with the error as cause");
  cr_assert_lt(atomic_load(&e->t->emitted), e->limit, "the source was stopped");
  cr_assert_eq(atomic_load(&e->t->delivered[5000]), 0);
  cr_assert_eq(atomic_load(&e->t->released[5000]), 1, "the failed item was released");
  if (workers == 1 || ordered) {
    /* In order: what reached the sink is a prefix of the items before k (the rest of them were inside
     * when the run was cancelled, and were released). */
    uint32_t d = 0;
    while (d < 5000 && atomic_load(&e->t->delivered[d]) == 1) d++;
    for (uint32_t i = d; i < e->t->cap; i++) cr_assert_eq(atomic_load(&e->t->delivered[i]), 0, "item %u", i);
    if (d > 0) cr_assert_eq(atomic_load(&e->max_before_k), d - 1);
  } else {
    for (uint32_t i = 5000; i < e->t->cap; i++)
      if (atomic_load(&e->t->delivered[i])) cr_assert_neq(i, 5000u);
  }
  weft_stage_stats s;
  weft_pipeline_stats(e->p, 2, &s);
  cr_assert_eq(s.errors, 1);
  finish(e);
}

WEFT_TEST(pipeline_cancel, error_in_middle_stage_one_worker) { error_at_k(1, false); }
WEFT_TEST(pipeline_cancel, error_in_middle_stage_ordered) { error_at_k(3, true); }
WEFT_TEST(pipeline_cancel, error_in_middle_stage_unordered) { error_at_k(3, false); }

static int src_fails(weft_ctx *ctx, weft_emitter *em, void *arg) {
  int rc = src_endless(ctx, em, arg);
  return rc == 0 ? -77 : rc;
}

WEFT_TEST(pipeline_cancel, error_in_source_and_in_sink) {
  /* a source that fails after 1000 items */
  env *e = env_new();
  e->limit = 1000;
  weft_stage_opts o = tracked_source(e, 256);
  cr_assert_eq(weft_pipeline_source(e->p, &o, src_fails, e), 0);
  cr_assert_eq(weft_pipeline_sink(e->p, NULL, sink_track, e), 0);
  weft_pipeline_report rep;
  cr_assert_eq(weft_pipeline_run(e->p, NULL, &rep), -77);
  cr_assert_eq(rep.stage, 0);
  cr_assert_str_eq(rep.stage_name, "source");
  finish(e);
}

static int sink_fail(weft_ctx *ctx, const void *item, void *arg) {
  env *e = arg;
  titem *it = *(titem *const *)item;
  if (it->id == 300) return -55; /* not consumed: the pipeline releases it */
  ti_end(e->t, it, e->t->delivered);
  return 0;
}

WEFT_TEST(pipeline_cancel, error_in_sink) {
  env *e = calloc(1, sizeof *e);
  e->t = tracker_new(1u << 22);
  e->limit = (1u << 22) - 1;
  cr_assert_eq(weft_pipeline_create(NULL, &e->p), 0);
  weft_stage_opts o = WEFT_STAGE_OPTS_INIT;
  o.item_size = sizeof(titem *);
  o.discard = ti_release;
  o.discard_arg = e->t;
  cr_assert_eq(weft_pipeline_source(e->p, &o, src_endless, e), 0);
  o = (weft_stage_opts)WEFT_STAGE_OPTS_INIT;
  o.workers = 2;
  cr_assert_eq(weft_pipeline_map(e->p, &o, stage_pass, e), 0);
  cr_assert_eq(weft_pipeline_sink(e->p, NULL, sink_fail, e), 0);
  weft_pipeline_report rep;
  cr_assert_eq(weft_pipeline_run(e->p, NULL, &rep), -55);
  cr_assert_eq(rep.stage, 2);
  cr_assert_eq(atomic_load(&e->t->released[300]), 1);
  finish(e);
}

WEFT_TEST(pipeline_cancel, deadline_fires_mid_run) {
  /* The deadline must come while items flow. Under a slow runtime (a sanitizer on a busy machine) the
   * first items may reach the sink later than a short deadline: then the run is repeated with a longer
   * one, so the test asserts the order of events, not a speed. */
  for (int64_t d = WEFT_MS(100);; d *= 2) {
    env *e = make(2, true, 64);
    e->sink_sleep_us = 20; /* so the run cannot finish the 4M items before the deadline */
    weft_ctx *ctx;
    weft_cancel *cancel = NULL;
    cr_assert_eq(weft_ctx_with_timeout(weft_background(), d, &ctx, &cancel), 0);
    weft_pipeline_report rep;
    cr_assert_eq(weft_pipeline_run(e->p, ctx, &rep), WEFT_EDEADLINE);
    cr_assert_eq(rep.stage, -1, "no stage raised it: the context ended");
    cr_assert_eq(rep.cause, WEFT_EDEADLINE);
    weft_ctx_end(cancel);
    bool mid_run = atomic_load(&e->sink_seen) > 0;
    if (mid_run) cr_assert_gt(rep.discarded, 0, "items inside were discarded");
    finish(e);
    if (mid_run) break;
    cr_assert_lt(d, WEFT_SEC(30), "no item reached the sink within %lld ms", (long long)(d / 1000000));
  }
}

/* An external cancel while workers are blocked: the sink blocks in a context-aware sleep until cancelled,
 * so every other worker is blocked on a full channel or in the reorder window. */
typedef struct canceller {
  weft_cancel *cancel; /* the test hands this thread the right to cancel the run's context */
  env *e;
} canceller;

static void *cancel_when_full(void *arg) {
  canceller *c = arg;
  /* Wait until the sink is blocked and items queue before it; the pause after only gives the upstream
   * workers time to block too (the test holds whether or not they all did). */
  for (;;) {
    weft_stage_stats s;
    weft_pipeline_stats(c->e->p, 3, &s);
    if (atomic_load(&c->e->sink_seen) > 0 && s.queue_depth >= 1) break;
    sleep_us(1000);
  }
  sleep_us(50000);
  weft_ctx_cancel(c->cancel);
  return NULL;
}

static int sink_block(weft_ctx *ctx, const void *item, void *arg) {
  env *e = arg;
  atomic_fetch_add(&e->sink_seen, 1);
  int rc = weft_ctx_sleep(ctx, WEFT_SEC(3600)); /* returns the context's error once cancelled */
  if (rc != 0) return rc; /* not consumed: the pipeline releases the item */
  ti_end(e->t, *(titem *const *)item, e->t->delivered);
  return 0;
}

WEFT_TEST(pipeline_cancel, external_cancel_wakes_blocked_workers) {
  env *e = env_new();
  weft_stage_opts o = tracked_source(e, 64);
  cr_assert_eq(weft_pipeline_source(e->p, &o, src_endless, e), 0);
  o = (weft_stage_opts)WEFT_STAGE_OPTS_INIT;
  o.workers = 3;
  o.ordered = true;
  o.reorder_window = 1;
  o.out_capacity = 64;
  cr_assert_eq(weft_pipeline_map(e->p, &o, stage_pass, e), 0);
  cr_assert_eq(weft_pipeline_map(e->p, &o, stage_fail_at, e), 0);
  cr_assert_eq(weft_pipeline_sink(e->p, NULL, sink_block, e), 0);
  weft_ctx *ctx;
  weft_cancel *cancel = NULL;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &ctx, &cancel), 0);
  /* static: when an assertion below fails, the test returns while the thread still reads it */
  static canceller c;
  c = (canceller){cancel, e};
  pthread_t th;
  pthread_create(&th, NULL, cancel_when_full, &c);
  weft_pipeline_report rep;
  cr_assert_eq(weft_pipeline_run(e->p, ctx, &rep), WEFT_ECANCELED);
  cr_assert_eq(rep.stage, -1, "the sink's WEFT_ECANCELED is a consequence, not the cause");
  pthread_join(th, NULL);
  weft_ctx_end(cancel);
  finish(e);
}

WEFT_TEST(pipeline_cancel, drain_lets_in_flight_items_finish) {
  env *e = make(2, true, 64);
  e->drain_after = 3000;
  weft_pipeline_report rep;
  cr_assert_eq(weft_pipeline_run(e->p, NULL, &rep), 0);
  cr_assert(rep.drained);
  cr_assert_eq(rep.discarded, 0, "nothing emitted was dropped");
  uint64_t d, r;
  cr_assert_eq(tracker_violations(e->t, &d, &r), 0);
  cr_assert_eq(r, 0);
  cr_assert_eq(d, atomic_load(&e->t->emitted), "every emitted item reached the sink");
  cr_assert_geq(d, 3000);
  cr_assert_lt(d, e->limit, "the source stopped early");
  /* ordered stages: the delivered ids are exactly 0..d-1 */
  for (uint32_t i = 0; i < d; i++) cr_assert_eq(atomic_load(&e->t->delivered[i]), 1);
  finish(e);
}

WEFT_TEST(pipeline_cancel, drain_before_run_starts_drained) {
  env *e = make(1, false, 64);
  cr_assert_eq(weft_pipeline_drain(e->p), 0);
  cr_assert_eq(weft_pipeline_drain(e->p), 0, "idempotent");
  weft_pipeline_report rep;
  cr_assert_eq(weft_pipeline_run(e->p, NULL, &rep), 0);
  cr_assert(rep.drained);
  cr_assert_eq(atomic_load(&e->t->emitted), 0);
  finish(e);
}

/* A sink slower than the source: the number of items inside never exceeds weft_pipeline_bound(). */
WEFT_TEST(pipeline_cancel, slow_sink_keeps_memory_bounded) {
  size_t caps[] = {1, 16, 100};
  for (size_t ci = 0; ci < 3; ci++) {
    env *e = make(2, ci == 1, caps[ci]);
    e->sink_sleep_us = 50;
    e->drain_after = 1500;
    size_t bound = weft_pipeline_bound(e->p);
    weft_pipeline_report rep;
    cr_assert_eq(weft_pipeline_run(e->p, NULL, &rep), 0);
    int64_t maxin = atomic_load(&e->t->max_inflight);
    cr_assert_gt(maxin, 0);
    cr_assert_leq((size_t)maxin, bound, "capacity %zu: %ld items inside, bound %zu", caps[ci], (long)maxin, bound);
    cr_assert_leq(atomic_load(&e->max_depth), bound);
    finish(e);
  }
}
