/* tests/test_pipeline.c: pipeline semantics — the classic pipelines, stage kinds, ordering, bad input.
 * Cancellation, drain, deadlines and memory bounds are in test_pipeline_cancel.c; merge/tee in
 * test_pipeline_pump.c; stress in test_pipeline_stress.c. No timing thresholds: causality and order only. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline_test_util.h"
#include "weft_test.h"

/* ---- small stage functions on int64 items --------------------------------------------------------- */

typedef struct range {
  int64_t from, to; /* inclusive */
} range;

static int src_range(weft_ctx *ctx, weft_emitter *em, void *arg) {
  const range *r = arg;
  for (int64_t i = r->from; i <= r->to; i++) {
    int rc = weft_pipeline_emit(em, &i);
    if (rc != 0) return rc;
  }
  return 0;
}

static int map_square(weft_ctx *ctx, const void *in, void *out, void *arg) {
  int64_t v = *(const int64_t *)in;
  *(int64_t *)out = v * v;
  return 0;
}

static int map_add10(weft_ctx *ctx, const void *in, void *out, void *arg) {
  *(int64_t *)out = *(const int64_t *)in + 10;
  return 0;
}

static int keep_even(weft_ctx *ctx, const void *item, void *arg) { return *(const int64_t *)item % 2 == 0; }

/* A sink that appends to an array (one sink worker: no lock needed; with more, the mutex). */
typedef struct collect {
  pthread_mutex_t mu;
  int64_t *v;
  size_t n, cap;
} collect;

static void collect_init(collect *c, size_t cap) {
  pthread_mutex_init(&c->mu, NULL);
  c->v = calloc(cap, sizeof *c->v);
  c->n = 0;
  c->cap = cap;
}

static int sink_collect(weft_ctx *ctx, const void *item, void *arg) {
  collect *c = arg;
  pthread_mutex_lock(&c->mu);
  cr_assert(c->n < c->cap, "sink got more items than expected");
  c->v[c->n++] = *(const int64_t *)item;
  pthread_mutex_unlock(&c->mu);
  return 0;
}

static int cmp64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static weft_stage_opts opts_src(void) {
  weft_stage_opts o = WEFT_STAGE_OPTS_INIT;
  o.item_size = sizeof(int64_t);
  return o;
}

static weft_stage_opts opts_w(size_t workers) {
  weft_stage_opts o = WEFT_STAGE_OPTS_INIT;
  o.workers = workers;
  return o;
}

/* Sleeps a pseudo-random 0..max_us, deterministic per value. */
static void jitter(int64_t v, int max_us) {
  uint64_t x = (uint64_t)v * 0x9E3779B97F4A7C15ull;
  x ^= x >> 29;
  struct timespec ts = {0, (long)(x % (uint64_t)(max_us + 1)) * 1000};
  nanosleep(&ts, NULL);
}

/* ---- the classic pipelines ------------------------------------------------------------------------- */

WEFT_TEST(pipeline, square_add_ten_keep_even) {
  weft_ctx *ctx;
  weft_cancel *cancel = NULL;
  cr_assert_eq(weft_ctx_with_timeout(weft_background(), WEFT_SEC(3), &ctx, &cancel), 0);
  weft_pipeline *p;
  cr_assert_eq(weft_pipeline_create(NULL, &p), 0);
  range r = {1, 10};
  collect c;
  collect_init(&c, 16);
  weft_stage_opts o = opts_src();
  cr_assert_eq(weft_pipeline_source(p, &o, src_range, &r), 0);
  cr_assert_eq(weft_pipeline_map(p, NULL, map_square, NULL), 0);
  cr_assert_eq(weft_pipeline_map(p, NULL, map_add10, NULL), 0);
  cr_assert_eq(weft_pipeline_filter(p, NULL, keep_even, NULL), 0);
  cr_assert_eq(weft_pipeline_sink(p, NULL, sink_collect, &c), 0);
  weft_pipeline_report rep;
  cr_assert_eq(weft_pipeline_run(p, ctx, &rep), 0);
  cr_assert_eq(rep.err, 0);
  cr_assert_eq(rep.stage, -1);
  /* i*i + 10 is even exactly when i is even: 14, 26, 46, 74, 110 */
  int64_t want[] = {14, 26, 46, 74, 110};
  qsort(c.v, c.n, sizeof *c.v, cmp64);
  cr_assert_eq(c.n, 5);
  for (size_t i = 0; i < 5; i++) cr_assert_eq(c.v[i], want[i]);
  weft_stage_stats s;
  cr_assert_eq(weft_pipeline_stats(p, 3, &s), 0);
  cr_assert_eq(s.kind, WEFT_STAGE_FILTER);
  cr_assert_eq(s.items_in, 10);
  cr_assert_eq(s.items_out, 5);
  cr_assert_eq(s.dropped, 5);
  cr_assert(s.done);
  cr_assert_eq(weft_pipeline_destroy(p), 0);
  weft_ctx_end(cancel);
  free(c.v);
}

WEFT_TEST(pipeline, fan_out_fan_in_squares) {
  const int64_t n = 2000;
  weft_pipeline *p;
  cr_assert_eq(weft_pipeline_create(NULL, &p), 0);
  range r = {1, n};
  collect c;
  collect_init(&c, (size_t)n);
  weft_stage_opts o = opts_src();
  cr_assert_eq(weft_pipeline_source(p, &o, src_range, &r), 0);
  o = opts_w(3);
  cr_assert_eq(weft_pipeline_map(p, &o, map_square, NULL), 0);
  cr_assert_eq(weft_pipeline_sink(p, NULL, sink_collect, &c), 0);
  cr_assert_eq(weft_pipeline_run(p, weft_background(), NULL), 0);
  cr_assert_eq(c.n, (size_t)n);
  qsort(c.v, c.n, sizeof *c.v, cmp64);
  for (int64_t i = 1; i <= n; i++) cr_assert_eq(c.v[i - 1], i * i, "item %ld", (long)i);
  weft_stage_stats s;
  cr_assert_eq(weft_pipeline_stats(p, 1, &s), 0);
  cr_assert_eq(s.workers, 3);
  cr_assert_eq(s.items_in, (uint64_t)n);
  cr_assert_eq(s.items_out, (uint64_t)n);
  cr_assert_eq(s.queue_depth, 0);
  weft_pipeline_destroy(p);
  free(c.v);
}

/* ---- ordering ------------------------------------------------------------------------------------- */

static int map_jitter(weft_ctx *ctx, const void *in, void *out, void *arg) {
  int64_t v = *(const int64_t *)in;
  jitter(v, *(const int *)arg);
  *(int64_t *)out = v;
  return 0;
}

static void run_order(bool ordered, size_t workers, size_t window, size_t burst, int64_t n, collect *c) {
  weft_pipeline *p;
  cr_assert_eq(weft_pipeline_create(NULL, &p), 0);
  range r = {0, n - 1};
  static int max_us = 300;
  collect_init(c, (size_t)n);
  weft_stage_opts o = opts_src();
  o.burst = burst;
  cr_assert_eq(weft_pipeline_source(p, &o, src_range, &r), 0);
  o = opts_w(workers);
  o.ordered = ordered;
  o.reorder_window = window;
  o.burst = burst;
  cr_assert_eq(weft_pipeline_map(p, &o, map_jitter, &max_us), 0);
  cr_assert_eq(weft_pipeline_sink(p, NULL, sink_collect, c), 0);
  cr_assert_eq(weft_pipeline_run(p, weft_background(), NULL), 0);
  cr_assert_eq(c->n, (size_t)n);
  weft_pipeline_destroy(p);
}

WEFT_TEST(pipeline, ordered_output_equals_input_order) {
  size_t windows[] = {1, 2, 16};
  size_t bursts[] = {1, 3, 0};
  for (size_t wi = 0; wi < 3; wi++)
    for (size_t bi = 0; bi < 3; bi++) {
      collect c;
      run_order(true, 4, windows[wi], bursts[bi], 600, &c);
      for (size_t i = 0; i < c.n; i++)
        cr_assert_eq(c.v[i], (int64_t)i, "window %zu burst %zu: position %zu holds %ld", windows[wi], bursts[bi],
                     i, (long)c.v[i]);
      free(c.v);
    }
}

/* An ordered stage with one-item bursts: while item 0 is slow, the other worker goes on through the items
 * after it until the reorder window is full (and not one item more), then the order is restored. Item 0
 * waits (up to 20 s, far beyond any scheduling delay) until `window` items after it have been processed. */
typedef struct slow_head {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int64_t done_after; /* items after 0 whose function returned */
  int64_t seen_by_head; /* what item 0 saw when it went on */
  int64_t window;
} slow_head;

static int map_slow_head(weft_ctx *ctx, const void *in, void *out, void *arg) {
  slow_head *h = arg;
  int64_t v = *(const int64_t *)in;
  pthread_mutex_lock(&h->mu);
  if (v == 0) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    while (h->done_after < h->window && pthread_cond_timedwait(&h->cv, &h->mu, &until) == 0) {
    }
    /* give the other worker every chance to go past the window (it must not) */
    pthread_mutex_unlock(&h->mu);
    struct timespec pause = {0, 50 * 1000 * 1000};
    nanosleep(&pause, NULL);
    pthread_mutex_lock(&h->mu);
    h->seen_by_head = h->done_after;
  } else {
    h->done_after++;
    pthread_cond_broadcast(&h->cv);
  }
  pthread_mutex_unlock(&h->mu);
  *(int64_t *)out = v;
  return 0;
}

WEFT_TEST(pipeline, ordered_one_item_bursts_fill_the_window_behind_a_slow_item) {
  size_t windows[] = {1, 4, 9};
  for (size_t wi = 0; wi < 3; wi++) {
    weft_pipeline *p;
    cr_assert_eq(weft_pipeline_create(NULL, &p), 0);
    range r = {0, 40};
    slow_head h = {.window = (int64_t)windows[wi]};
    pthread_mutex_init(&h.mu, NULL);
    pthread_cond_init(&h.cv, NULL);
    collect c;
    collect_init(&c, 41);
    weft_stage_opts o = opts_src();
    o.burst = 1;
    cr_assert_eq(weft_pipeline_source(p, &o, src_range, &r), 0);
    o = opts_w(2);
    o.ordered = true;
    o.reorder_window = windows[wi];
    o.burst = 1;
    cr_assert_eq(weft_pipeline_map(p, &o, map_slow_head, &h), 0);
    cr_assert_eq(weft_pipeline_sink(p, NULL, sink_collect, &c), 0);
    cr_assert_eq(weft_pipeline_run(p, weft_background(), NULL), 0);
    /* item 0 held its slot, the other worker finished exactly `window` items after it */
    cr_assert_eq(h.seen_by_head, (int64_t)windows[wi], "window %zu: %ld items went on behind the slow one",
                 windows[wi], (long)h.seen_by_head);
    cr_assert_eq(c.n, 41);
    for (size_t i = 0; i < c.n; i++) cr_assert_eq(c.v[i], (int64_t)i, "window %zu: position %zu", windows[wi], i);
    free(c.v);
    weft_pipeline_destroy(p);
  }
}

WEFT_TEST(pipeline, unordered_output_is_a_permutation) {
  collect c;
  run_order(false, 4, 16, 1, 600, &c);
  qsort(c.v, c.n, sizeof *c.v, cmp64);
  for (size_t i = 0; i < c.n; i++) cr_assert_eq(c.v[i], (int64_t)i);
  free(c.v);
}

/* Ordered flat_map whose outputs overflow a burst (item i emits i % 150 copies of i), and an ordered
 * filter after it: the output is exactly the expected sequence. */
static int fm_copies(weft_ctx *ctx, const void *in, weft_emitter *em, void *arg) {
  int64_t v = *(const int64_t *)in;
  if (v % 7 == 3) jitter(v, 200);
  for (int64_t k = 0; k < v % 150; k++) {
    int rc = weft_pipeline_emit(em, &v);
    if (rc != 0) return rc;
  }
  return 0;
}

static int keep_not_mult5(weft_ctx *ctx, const void *item, void *arg) {
  int64_t v = *(const int64_t *)item;
  if (v % 11 == 0) jitter(v, 100);
  return v % 5 != 0;
}

WEFT_TEST(pipeline, ordered_flat_map_and_filter_keep_order) {
  const int64_t n = 400;
  size_t expect_n = 0;
  for (int64_t i = 0; i < n; i++)
    if (i % 5 != 0) expect_n += (size_t)(i % 150);
  weft_pipeline *p;
  cr_assert_eq(weft_pipeline_create(NULL, &p), 0);
  range r = {0, n - 1};
  collect c;
  collect_init(&c, expect_n);
  weft_stage_opts o = opts_src();
  cr_assert_eq(weft_pipeline_source(p, &o, src_range, &r), 0);
  o = opts_w(3);
  o.ordered = true;
  o.reorder_window = 4;
  cr_assert_eq(weft_pipeline_flat_map(p, &o, fm_copies, NULL), 0);
  cr_assert_eq(weft_pipeline_filter(p, &o, keep_not_mult5, NULL), 0);
  cr_assert_eq(weft_pipeline_sink(p, NULL, sink_collect, &c), 0);
  cr_assert_eq(weft_pipeline_run(p, NULL, NULL), 0);
  cr_assert_eq(c.n, expect_n);
  size_t k = 0;
  for (int64_t i = 0; i < n; i++)
    if (i % 5 != 0)
      for (int64_t j = 0; j < i % 150; j++, k++) cr_assert_eq(c.v[k], i, "position %zu", k);
  weft_pipeline_destroy(p);
  free(c.v);
}

/* ---- flat_map and batch --------------------------------------------------------------------------- */

static int fm_zero_to_three(weft_ctx *ctx, const void *in, weft_emitter *em, void *arg) {
  int64_t v = *(const int64_t *)in;
  for (int64_t k = 0; k < v % 4; k++) {
    int64_t out = v * 10 + k;
    int rc = weft_pipeline_emit(em, &out);
    if (rc != 0) return rc;
  }
  return 0;
}

WEFT_TEST(pipeline, flat_map_zero_to_n_outputs) {
  const int64_t n = 1000;
  weft_pipeline *p;
  cr_assert_eq(weft_pipeline_create(NULL, &p), 0);
  range r = {0, n - 1};
  collect c;
  collect_init(&c, 2000);
  weft_stage_opts o = opts_src();
  cr_assert_eq(weft_pipeline_source(p, &o, src_range, &r), 0);
  o = opts_w(2);
  cr_assert_eq(weft_pipeline_flat_map(p, &o, fm_zero_to_three, NULL), 0);
  cr_assert_eq(weft_pipeline_sink(p, NULL, sink_collect, &c), 0);
  cr_assert_eq(weft_pipeline_run(p, NULL, NULL), 0);
  qsort(c.v, c.n, sizeof *c.v, cmp64);
  size_t k = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < i % 4; j++) {
      cr_assert(k < c.n);
      cr_assert_eq(c.v[k++], i * 10 + j);
    }
  cr_assert_eq(k, c.n);
  weft_stage_stats s;
  weft_pipeline_stats(p, 1, &s);
  cr_assert_eq(s.items_in, (uint64_t)n);
  cr_assert_eq(s.items_out, (uint64_t)c.n);
  weft_pipeline_destroy(p);
  free(c.v);
}

/* A batch function that emits one record per group: {first item, count}. */
typedef struct group_rec {
  int64_t first, n;
} group_rec;

typedef struct groups {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  group_rec g[256];
  size_t n;
} groups;

static int batch_record(weft_ctx *ctx, const void *items, size_t n, weft_emitter *em, void *arg) {
  const int64_t *v = items;
  for (size_t i = 1; i < n; i++) cr_assert_eq(v[i], v[0] + (int64_t)i, "a group holds consecutive items");
  group_rec g = {v[0], (int64_t)n};
  return weft_pipeline_emit(em, &g);
}

static int sink_groups(weft_ctx *ctx, const void *item, void *arg) {
  groups *gs = arg;
  pthread_mutex_lock(&gs->mu);
  gs->g[gs->n++] = *(const group_rec *)item;
  pthread_cond_broadcast(&gs->cv);
  pthread_mutex_unlock(&gs->mu);
  return 0;
}

static weft_pipeline *batch_pipeline(weft_source_fn src, void *src_arg, size_t count, int64_t time, groups *gs) {
  weft_pipeline *p;
  cr_assert_eq(weft_pipeline_create(NULL, &p), 0);
  weft_stage_opts o = opts_src();
  o.burst = 1;
  cr_assert_eq(weft_pipeline_source(p, &o, src, src_arg), 0);
  o = opts_w(1);
  o.batch_count = count;
  o.batch_time = time;
  o.item_size = sizeof(group_rec);
  cr_assert_eq(weft_pipeline_batch(p, &o, batch_record, NULL), 0);
  cr_assert_eq(weft_pipeline_sink(p, NULL, sink_groups, gs), 0);
  return p;
}

WEFT_TEST(pipeline, batch_by_count_and_at_end_of_input) {
  groups gs = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
  range r = {0, 94};
  weft_pipeline *p = batch_pipeline(src_range, &r, 10, WEFT_FOREVER, &gs);
  cr_assert_eq(weft_pipeline_run(p, NULL, NULL), 0);
  cr_assert_eq(gs.n, 10);
  for (size_t i = 0; i < 9; i++) {
    cr_assert_eq(gs.g[i].first, (int64_t)i * 10);
    cr_assert_eq(gs.g[i].n, 10);
  }
  cr_assert_eq(gs.g[9].first, 90);
  cr_assert_eq(gs.g[9].n, 5, "the partial group is handed over at end of input");
  weft_pipeline_destroy(p);
}

/* The source emits 3 items, then waits until the sink has seen a group: only the time limit can have
 * handed those 3 over. Then it emits 25 more and ends: two full groups of 10 and a partial one of 5. */
static int src_pause(weft_ctx *ctx, weft_emitter *em, void *arg) {
  groups *gs = arg;
  for (int64_t i = 0; i < 3; i++) {
    int rc = weft_pipeline_emit(em, &i);
    if (rc != 0) return rc;
  }
  int rc = weft_pipeline_flush(em);
  if (rc != 0) return rc;
  /* Waits under the run's context, as a source must: a run that fails (an allocation, say) never hands
   * a group over, and a wait blind to the context would hang it. */
  for (;;) {
    pthread_mutex_lock(&gs->mu);
    size_t seen = gs->n;
    pthread_mutex_unlock(&gs->mu);
    if (seen > 0) break;
    if ((rc = weft_ctx_sleep(ctx, WEFT_MS(1))) != 0) return rc;
  }
  for (int64_t i = 3; i < 28; i++)
    if ((rc = weft_pipeline_emit(em, &i)) != 0) return rc;
  return 0;
}

WEFT_TEST(pipeline, batch_by_time_limit) {
  groups gs = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
  weft_pipeline *p = batch_pipeline(src_pause, &gs, 10, WEFT_MS(20), &gs);
  cr_assert_eq(weft_pipeline_run(p, NULL, NULL), 0);
  cr_assert_geq(gs.n, 4);
  cr_assert_eq(gs.g[0].first, 0);
  cr_assert_eq(gs.g[0].n, 3, "the time limit handed over the first 3 items");
  int64_t total = 0, next = 0;
  for (size_t i = 0; i < gs.n; i++) {
    cr_assert_eq(gs.g[i].first, next);
    cr_assert_leq(gs.g[i].n, 10);
    next += gs.g[i].n;
    total += gs.g[i].n;
  }
  cr_assert_eq(total, 28);
  weft_pipeline_destroy(p);
}

/* ---- several sources ------------------------------------------------------------------------------ */

WEFT_TEST(pipeline, several_sources_merge) {
  weft_pipeline *p;
  cr_assert_eq(weft_pipeline_create(NULL, &p), 0);
  range r1 = {0, 499}, r2 = {500, 999}, r3 = {1000, 1499};
  collect c;
  collect_init(&c, 1500);
  weft_stage_opts o = opts_src();
  cr_assert_eq(weft_pipeline_source(p, &o, src_range, &r1), 0);
  cr_assert_eq(weft_pipeline_source(p, &o, src_range, &r2), 0);
  cr_assert_eq(weft_pipeline_source(p, &o, src_range, &r3), 0);
  o = opts_w(2);
  o.ordered = true; /* receive-side sequencing: works with several senders too */
  cr_assert_eq(weft_pipeline_map(p, &o, map_add10, NULL), 0);
  cr_assert_eq(weft_pipeline_sink(p, NULL, sink_collect, &c), 0);
  cr_assert_eq(weft_pipeline_run(p, NULL, NULL), 0);
  cr_assert_eq(c.n, 1500);
  /* Each source's items keep their relative order through a one-worker... not guaranteed here with two
   * unordered senders; the set is exact. */
  qsort(c.v, c.n, sizeof *c.v, cmp64);
  for (size_t i = 0; i < 1500; i++) cr_assert_eq(c.v[i], (int64_t)i + 10);
  weft_pipeline_destroy(p);
  free(c.v);
}

/* ---- pointer items: delivered or released, exactly once ------------------------------------------- */

typedef struct ptr_src {
  tracker *t;
  uint32_t n;
} ptr_src;

static int src_ptrs(weft_ctx *ctx, weft_emitter *em, void *arg) {
  ptr_src *s = arg;
  for (uint32_t i = 0; i < s->n; i++) {
    titem *it = ti_new(i, i);
    int rc = weft_pipeline_emit(em, &it);
    if (rc != 0) {
      ti_end(s->t, it, s->t->freed); /* still ours: emit failed */
      atomic_fetch_add(&s->t->inflight, 1); /* ti_end counted it down; it was never up */
      return rc;
    }
    ti_emitted(s->t);
  }
  return 0;
}

static int ptr_inc(weft_ctx *ctx, const void *in, void *out, void *arg) {
  titem *it = *(titem *const *)in;
  it->value++;
  *(titem **)out = it;
  return 0;
}

static int ptr_keep_odd_id(weft_ctx *ctx, const void *item, void *arg) { return (*(titem *const *)item)->id % 2; }

static int ptr_sink(weft_ctx *ctx, const void *item, void *arg) {
  tracker *t = arg;
  titem *it = *(titem *const *)item;
  cr_assert_eq(it->value, (int64_t)it->id + 1);
  ti_end(t, it, t->delivered);
  return 0;
}

WEFT_TEST(pipeline, pointer_items_filter_releases_dropped) {
  tracker *t = tracker_new(5000);
  ptr_src s = {t, 5000};
  weft_pipeline *p;
  cr_assert_eq(weft_pipeline_create(NULL, &p), 0);
  weft_stage_opts o = WEFT_STAGE_OPTS_INIT;
  o.item_size = sizeof(titem *);
  o.discard = ti_release;
  o.discard_arg = t;
  cr_assert_eq(weft_pipeline_source(p, &o, src_ptrs, &s), 0);
  o = opts_w(2);
  cr_assert_eq(weft_pipeline_map(p, &o, ptr_inc, NULL), 0);
  cr_assert_eq(weft_pipeline_filter(p, &o, ptr_keep_odd_id, NULL), 0);
  cr_assert_eq(weft_pipeline_sink(p, NULL, ptr_sink, t), 0);
  weft_pipeline_report rep;
  cr_assert_eq(weft_pipeline_run(p, NULL, &rep), 0);
  uint64_t d, r;
  cr_assert_eq(tracker_violations(t, &d, &r), 0);
  cr_assert_eq(d, 2500);
  cr_assert_eq(r, 2500, "dropped items are released by the pipeline");
  for (uint32_t i = 0; i < 5000; i++) cr_assert_eq(atomic_load(&t->delivered[i]), i % 2);
  cr_assert_eq(rep.discarded, 0, "filter drops are not counted as released by a stop");
  weft_pipeline_destroy(p);
  tracker_free(t);
}

/* ---- bad input ------------------------------------------------------------------------------------ */

static int sink_nop(weft_ctx *ctx, const void *item, void *arg) { return 0; }

WEFT_TEST(pipeline, bad_input_einval_estate) {
  weft_pipeline *p;
  cr_assert_eq(weft_pipeline_create(NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_pipeline_create(NULL, &p), 0);
  weft_stage_opts o = opts_src();
  range r = {1, 5};

  /* a stage or a sink before any source */
  cr_assert_eq(weft_pipeline_map(p, NULL, map_square, NULL), WEFT_ESTATE);
  cr_assert_eq(weft_pipeline_sink(p, NULL, sink_nop, NULL), WEFT_ESTATE);
  /* NULL pipeline or function */
  cr_assert_eq(weft_pipeline_source(NULL, &o, src_range, &r), WEFT_EINVAL);
  cr_assert_eq(weft_pipeline_source(p, &o, NULL, &r), WEFT_EINVAL);
  /* zero sizes, zero workers */
  weft_stage_opts bad = opts_src();
  bad.item_size = 0;
  cr_assert_eq(weft_pipeline_source(p, &bad, src_range, &r), WEFT_EINVAL);
  bad = opts_src();
  bad.out_capacity = 0;
  cr_assert_eq(weft_pipeline_source(p, &bad, src_range, &r), WEFT_EINVAL);
  bad = opts_src();
  bad.workers = 2;
  cr_assert_eq(weft_pipeline_source(p, &bad, src_range, &r), WEFT_EINVAL, "a source runs on one thread");
  cr_assert_eq(weft_pipeline_source(p, NULL, src_range, &r), WEFT_EINVAL, "defaults have no item size");
  cr_assert_eq(weft_pipeline_run(p, NULL, NULL), WEFT_EINVAL, "no source, no sink");

  cr_assert_eq(weft_pipeline_source(p, &o, src_range, &r), 0);
  bad = opts_src();
  bad.item_size = 4;
  cr_assert_eq(weft_pipeline_source(p, &bad, src_range, &r), WEFT_EINVAL, "sources must agree on the item");
  bad = opts_w(0);
  cr_assert_eq(weft_pipeline_map(p, &bad, map_square, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_pipeline_map(p, NULL, NULL, NULL), WEFT_EINVAL);
  bad = opts_w(2);
  bad.ordered = true;
  bad.reorder_window = 0;
  cr_assert_eq(weft_pipeline_map(p, &bad, map_square, NULL), WEFT_EINVAL);
  bad = opts_w(1);
  bad.batch_count = 0;
  cr_assert_eq(weft_pipeline_batch(p, &bad, batch_record, NULL), WEFT_EINVAL);
  bad = opts_w(1);
  bad.batch_time = 0;
  cr_assert_eq(weft_pipeline_batch(p, &bad, batch_record, NULL), WEFT_EINVAL);
  bad = opts_w(1);
  bad.item_size = 4;
  cr_assert_eq(weft_pipeline_filter(p, &bad, keep_even, NULL), WEFT_EINVAL, "a filter keeps its input type");
  bad = opts_w(2);
  bad.ordered = true;
  cr_assert_eq(weft_pipeline_sink(p, &bad, sink_nop, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_pipeline_run(p, NULL, NULL), WEFT_EINVAL, "no sink yet");
  cr_assert_eq(weft_pipeline_stage_count(p), 1, "failed calls added nothing");

  cr_assert_eq(weft_pipeline_map(p, NULL, map_square, NULL), 0);
  cr_assert_eq(weft_pipeline_sink(p, NULL, sink_nop, NULL), 0);
  cr_assert_eq(weft_pipeline_map(p, NULL, map_square, NULL), WEFT_ESTATE, "after the sink");
  cr_assert_eq(weft_pipeline_sink(p, NULL, sink_nop, NULL), WEFT_ESTATE, "a second sink");

  weft_stage_stats s;
  cr_assert_eq(weft_pipeline_stats(p, 3, &s), WEFT_EINVAL);
  cr_assert_eq(weft_pipeline_stats(p, 0, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_pipeline_stats(NULL, 0, &s), WEFT_EINVAL);
  cr_assert_eq(weft_pipeline_emit(NULL, &r), WEFT_EINVAL);
  cr_assert_eq(weft_pipeline_flush(NULL), WEFT_EINVAL);
  cr_assert_eq(weft_pipeline_run(NULL, NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_pipeline_drain(NULL), WEFT_EINVAL);

  weft_pipeline_report rep;
  cr_assert_eq(weft_pipeline_run(p, NULL, &rep), 0);
  cr_assert_eq(weft_pipeline_run(p, NULL, &rep), WEFT_ESTATE, "run twice");
  cr_assert_eq(rep.err, WEFT_ESTATE);
  cr_assert_eq(weft_pipeline_map(p, NULL, map_square, NULL), WEFT_ESTATE, "add a stage after a run");
  cr_assert_eq(weft_pipeline_drain(p), WEFT_ESTATE, "drain after the run returned");
  cr_assert_eq(weft_pipeline_destroy(NULL), WEFT_EINVAL);
  cr_assert_eq(weft_pipeline_destroy(p), 0);
  cr_assert_eq(weft_pipeline_stage_count(NULL), 0);
  cr_assert_eq(weft_pipeline_bound(NULL), 0);
}

/* A bound that accounts for every place an item can be. */
WEFT_TEST(pipeline, bound_counts_capacities_bursts_and_windows) {
  weft_pipeline *p;
  cr_assert_eq(weft_pipeline_create(NULL, &p), 0);
  range r = {1, 5};
  weft_stage_opts o = opts_src();
  o.out_capacity = 100; /* bursts of 100 / 2 = 50 int64: 2 bursts = 100 */
  cr_assert_eq(weft_pipeline_source(p, &o, src_range, &r), 0);
  o = opts_w(3);
  o.ordered = true;
  o.reorder_window = 5;
  o.out_capacity = 64;
  o.burst = 10; /* 64 rounded up to 7 bursts of 10 = 70 */
  cr_assert_eq(weft_pipeline_map(p, &o, map_square, NULL), 0);
  cr_assert_eq(weft_pipeline_sink(p, NULL, sink_nop, NULL), 0);
  /* source: channel 100 + its burst 50; map: channel 70 + 3 workers x (50 in + 10 out) + window 5 x 10;
   * sink: 1 x 10 in */
  cr_assert_eq(weft_pipeline_bound(p), 100 + 50 + 70 + 3 * 60 + 5 * 10 + 10);
  weft_pipeline_destroy(p);
}

/* Sizes from users are range-checked: an out_capacity of SIZE_MAX wrapped to 0 when rounded up to whole
 * bursts. */
WEFT_TEST(pipeline, huge_sizes_are_refused) {
  weft_pipeline *p;
  cr_assert_eq(weft_pipeline_create(NULL, &p), 0);
  static const size_t bad[] = {((size_t)1 << 30) + 1, SIZE_MAX / 2, SIZE_MAX - 1, SIZE_MAX};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    weft_stage_opts o = WEFT_STAGE_OPTS_INIT;
    o.item_size = sizeof(int64_t);
    o.out_capacity = bad[i];
    cr_assert_eq(weft_pipeline_source(p, &o, NULL, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_pipeline_source(p, &o, (weft_source_fn)1, NULL), WEFT_EINVAL, "out_capacity %zu", bad[i]);
    o = (weft_stage_opts)WEFT_STAGE_OPTS_INIT;
    o.item_size = bad[i];
    cr_assert_eq(weft_pipeline_source(p, &o, (weft_source_fn)1, NULL), WEFT_EINVAL, "item_size %zu", bad[i]);
    o = (weft_stage_opts)WEFT_STAGE_OPTS_INIT;
    o.item_size = sizeof(int64_t);
    o.burst = bad[i];
    cr_assert_eq(weft_pipeline_source(p, &o, (weft_source_fn)1, NULL), WEFT_EINVAL, "burst %zu", bad[i]);
    o = (weft_stage_opts)WEFT_STAGE_OPTS_INIT;
    o.item_size = sizeof(int64_t);
    o.workers = bad[i];
    cr_assert_eq(weft_pipeline_source(p, &o, (weft_source_fn)1, NULL), WEFT_EINVAL, "workers %zu", bad[i]);
  }
  weft_stage_opts o = WEFT_STAGE_OPTS_INIT;
  o.item_size = sizeof(int64_t);
  o.out_capacity = (size_t)1 << 30; /* the largest allowed */
  cr_assert_eq(weft_pipeline_source(p, &o, (weft_source_fn)1, NULL), 0);
  static const size_t bad_map[] = {((size_t)1 << 20) + 1, SIZE_MAX};
  for (size_t i = 0; i < 2; i++) {
    o = (weft_stage_opts)WEFT_STAGE_OPTS_INIT;
    o.ordered = true;
    o.workers = 2;
    o.reorder_window = bad_map[i];
    cr_assert_eq(weft_pipeline_map(p, &o, (weft_map_fn)1, NULL), WEFT_EINVAL, "reorder_window %zu", bad_map[i]);
    o = (weft_stage_opts)WEFT_STAGE_OPTS_INIT;
    o.batch_count = SIZE_MAX - i;
    cr_assert_eq(weft_pipeline_batch(p, &o, (weft_batch_fn)1, NULL), WEFT_EINVAL, "batch_count");
  }
  weft_pipeline_destroy(p);
}

/* Adds a source (item int64_t) and then a stage of `kind` with options o; returns the stage's result. */
static int add_with(int kind, const weft_stage_opts *o) {
  weft_pipeline *p;
  cr_assert_eq(weft_pipeline_create(NULL, &p), 0);
  int rc;
  if (kind == WEFT_STAGE_SOURCE) {
    rc = weft_pipeline_source(p, o, src_range, NULL);
  } else {
    weft_stage_opts s = opts_src();
    cr_assert_eq(weft_pipeline_source(p, &s, src_range, NULL), 0);
    rc = kind == WEFT_STAGE_MAP ? weft_pipeline_map(p, o, map_square, NULL)
                                : weft_pipeline_batch(p, o, batch_record, NULL);
  }
  cr_assert_eq(weft_pipeline_destroy(p), 0);
  return rc;
}

/* Every size and count of the stage options is range-checked against its documented maximum: beyond it
 * WEFT_EINVAL, never a wrapped size (out_capacity SIZE_MAX once wrapped to a channel of capacity 0). */
WEFT_TEST(pipeline, stage_size_limits_einval) {
  static const size_t huge[] = {SIZE_MAX, SIZE_MAX - 1, ((size_t)1 << 63) + 5, (size_t)1 << 62};
  for (int kind = WEFT_STAGE_SOURCE; kind <= WEFT_STAGE_MAP; kind++) {
    weft_stage_opts o = kind == WEFT_STAGE_SOURCE ? opts_src() : (weft_stage_opts)WEFT_STAGE_OPTS_INIT;
    weft_stage_opts t = o;
    t.out_capacity = 0;
    cr_assert_eq(add_with(kind, &t), WEFT_EINVAL);
    t.out_capacity = WEFT_STAGE_MAX_CAPACITY + 1;
    cr_assert_eq(add_with(kind, &t), WEFT_EINVAL);
    for (size_t i = 0; i < sizeof huge / sizeof *huge; i++) {
      t.out_capacity = huge[i];
      cr_assert_eq(add_with(kind, &t), WEFT_EINVAL, "kind %d, out_capacity %zu", kind, huge[i]);
      t.out_capacity = 1;
      t.burst = huge[i];
      cr_assert_eq(add_with(kind, &t), WEFT_EINVAL, "burst %zu", huge[i]);
      t.burst = 0;
      t.item_size = huge[i];
      cr_assert_eq(add_with(kind, &t), WEFT_EINVAL, "item_size %zu", huge[i]);
      t = o;
    }
    t.out_capacity = 1;
    cr_assert_eq(add_with(kind, &t), 0);
    t.out_capacity = WEFT_STAGE_MAX_CAPACITY;
    cr_assert_eq(add_with(kind, &t), 0);
    t = o;
    t.burst = WEFT_STAGE_MAX_BURST;
    cr_assert_eq(add_with(kind, &t), 0);
    t.burst = WEFT_STAGE_MAX_BURST + 1;
    cr_assert_eq(add_with(kind, &t), WEFT_EINVAL);
    t = o;
    t.item_size = WEFT_STAGE_MAX_ITEM_SIZE;
    cr_assert_eq(add_with(kind, &t), 0);
    t.item_size = WEFT_STAGE_MAX_ITEM_SIZE + 1;
    cr_assert_eq(add_with(kind, &t), WEFT_EINVAL);
  }
  weft_stage_opts m = WEFT_STAGE_OPTS_INIT;
  static const size_t bad_workers[] = {0, WEFT_STAGE_MAX_WORKERS + 1, SIZE_MAX};
  for (size_t i = 0; i < sizeof bad_workers / sizeof *bad_workers; i++) {
    m.workers = bad_workers[i];
    cr_assert_eq(add_with(WEFT_STAGE_MAP, &m), WEFT_EINVAL, "workers %zu", bad_workers[i]);
  }
  m.workers = WEFT_STAGE_MAX_WORKERS;
  cr_assert_eq(add_with(WEFT_STAGE_MAP, &m), 0);
  m = (weft_stage_opts)WEFT_STAGE_OPTS_INIT;
  m.ordered = true;
  m.workers = 2;
  static const size_t bad_windows[] = {0, WEFT_STAGE_MAX_WINDOW + 1, SIZE_MAX};
  for (size_t i = 0; i < sizeof bad_windows / sizeof *bad_windows; i++) {
    m.reorder_window = bad_windows[i];
    cr_assert_eq(add_with(WEFT_STAGE_MAP, &m), WEFT_EINVAL, "reorder_window %zu", bad_windows[i]);
  }
  m.reorder_window = 1;
  cr_assert_eq(add_with(WEFT_STAGE_MAP, &m), 0);
  m.reorder_window = WEFT_STAGE_MAX_WINDOW;
  cr_assert_eq(add_with(WEFT_STAGE_MAP, &m), 0);
  weft_stage_opts b = WEFT_STAGE_OPTS_INIT;
  static const size_t bad_counts[] = {0, WEFT_STAGE_MAX_BATCH + 1, SIZE_MAX};
  for (size_t i = 0; i < sizeof bad_counts / sizeof *bad_counts; i++) {
    b.batch_count = bad_counts[i];
    cr_assert_eq(add_with(WEFT_STAGE_BATCH, &b), WEFT_EINVAL, "batch_count %zu", bad_counts[i]);
  }
  b.batch_count = 1;
  cr_assert_eq(add_with(WEFT_STAGE_BATCH, &b), 0);
  b.batch_count = WEFT_STAGE_MAX_BATCH;
  cr_assert_eq(add_with(WEFT_STAGE_BATCH, &b), 0);

  /* The smallest capacity runs, through every stage, with every item. */
  weft_pipeline *p;
  cr_assert_eq(weft_pipeline_create(NULL, &p), 0);
  range r = {1, 1000};
  weft_stage_opts s = opts_src();
  s.out_capacity = 1;
  cr_assert_eq(weft_pipeline_source(p, &s, src_range, &r), 0);
  weft_stage_opts q = WEFT_STAGE_OPTS_INIT;
  q.out_capacity = 1;
  q.workers = 2;
  cr_assert_eq(weft_pipeline_map(p, &q, map_add10, NULL), 0);
  collect c;
  collect_init(&c, 1000);
  cr_assert_eq(weft_pipeline_sink(p, NULL, sink_collect, &c), 0);
  cr_assert_eq(weft_pipeline_run(p, NULL, NULL), 0);
  cr_assert_eq(c.n, 1000);
  int64_t total = 0;
  for (size_t i = 0; i < c.n; i++) total += c.v[i];
  cr_assert_eq(total, 500500 + 10000);
  free(c.v);
  cr_assert_eq(weft_pipeline_destroy(p), 0);
}
