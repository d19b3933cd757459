/* tests/test_pipeline_stress.c: every item exactly once, across worker counts, capacities, bursts, order,
 * with and without a failure in the middle.
 *
 *   WEFT_STRESS_THREADS=W   largest worker count per stage tried (default 5: more threads than cores)
 *   WEFT_STRESS_CAP=C       an extra capacity to try besides 1, 7 and 256
 *   WEFT_STRESS_ITEMS=N     items per run (default 20000, divided by WEFT_TEST_SCALE under sanitizers)
 *
 * Pipeline: source (tracked pointers) -> map (value++) -> filter (drops ids = 3 mod 4) -> flat_map (ids
 * = 1 mod 5: the function frees the item and emits nothing; others pass on) -> sink. */
#include <stdlib.h>

#include "pipeline_test_util.h"
#include "weft_test.h"

typedef struct st_env {
  tracker *t;
  uint32_t n;
  uint32_t fail_at;
} st_env;

static int s_src(weft_ctx *ctx, weft_emitter *em, void *arg) {
  st_env *e = arg;
  for (uint32_t i = 0; i < e->n; i++) {
    titem *it = ti_new(i, i);
    int rc = weft_pipeline_emit(em, &it);
    if (rc != 0) {
      free(it);
      return rc;
    }
    ti_emitted(e->t);
  }
  return 0;
}

static int s_map(weft_ctx *ctx, const void *in, void *out, void *arg) {
  st_env *e = arg;
  titem *it = *(titem *const *)in;
  if (it->id == e->fail_at) return -999;
  it->value++;
  *(titem **)out = it;
  return 0;
}

static int s_filter(weft_ctx *ctx, const void *item, void *arg) { return (*(titem *const *)item)->id % 4 != 3; }

static int s_flat(weft_ctx *ctx, const void *in, weft_emitter *em, void *arg) {
  st_env *e = arg;
  titem *it = *(titem *const *)in;
  if (it->id % 5 == 1) {
    ti_end(e->t, it, e->t->freed); /* consumed by the function */
    return 0;
  }
  int rc = weft_pipeline_emit(em, &it);
  if (rc != 0) { /* not emitted, so still ours: this function consumes it (frees it) and succeeds */
    ti_end(e->t, it, e->t->freed);
    return 0;
  }
  return 0;
}

static int s_sink(weft_ctx *ctx, const void *item, void *arg) {
  st_env *e = arg;
  titem *it = *(titem *const *)item;
  cr_assert_eq(it->value, (int64_t)it->id + 1);
  ti_end(e->t, it, e->t->delivered);
  return 0;
}

static void one_run(size_t workers, size_t cap, size_t burst, bool ordered, uint32_t n, uint32_t fail_at) {
  st_env e = {tracker_new(n), n, fail_at};
  weft_pipeline *p;
  cr_assert_eq(weft_pipeline_create(NULL, &p), 0);
  weft_stage_opts o = WEFT_STAGE_OPTS_INIT;
  o.item_size = sizeof(titem *);
  o.discard = ti_release;
  o.discard_arg = e.t;
  o.out_capacity = cap;
  o.burst = burst;
  cr_assert_eq(weft_pipeline_source(p, &o, s_src, &e), 0);
  o = (weft_stage_opts)WEFT_STAGE_OPTS_INIT;
  o.workers = workers;
  o.out_capacity = cap;
  o.burst = burst;
  o.ordered = ordered;
  o.reorder_window = 3;
  cr_assert_eq(weft_pipeline_map(p, &o, s_map, &e), 0);
  cr_assert_eq(weft_pipeline_filter(p, &o, s_filter, &e), 0);
  cr_assert_eq(weft_pipeline_flat_map(p, &o, s_flat, &e), 0);
  o.ordered = false;
  o.workers = workers > 1 ? 2 : 1;
  cr_assert_eq(weft_pipeline_sink(p, &o, s_sink, &e), 0);
  size_t bound = weft_pipeline_bound(p);
  weft_pipeline_report rep;
  int rc = weft_pipeline_run(p, NULL, &rep);
  uint64_t d, r;
  size_t bad = tracker_violations(e.t, &d, &r);
  if (bad != 0)
    cr_assert_fail("workers %zu cap %zu burst %zu ordered %d fail_at %u: %zu items not ended exactly once", workers, cap,
             burst, ordered, fail_at, bad);
  cr_assert_leq((size_t)atomic_load(&e.t->max_inflight), bound);
  if (fail_at == UINT32_MAX) {
    cr_assert_eq(rc, 0);
    cr_assert_eq(atomic_load(&e.t->emitted), n);
    uint64_t want = 0;
    for (uint32_t i = 0; i < n; i++) want += i % 4 != 3 && i % 5 != 1;
    cr_assert_eq(d, want, "workers %zu cap %zu burst %zu ordered %d", workers, cap, burst, ordered);
  } else {
    cr_assert_eq(rc, -999);
    cr_assert_eq(rep.stage, 1);
  }
  weft_pipeline_destroy(p);
  tracker_free(e.t);
}

WEFT_TEST(pipeline_stress, every_item_exactly_once) {
  size_t wmax = (size_t)weft_test_env("WEFT_STRESS_THREADS", 5);
  size_t extra_cap = (size_t)weft_test_env("WEFT_STRESS_CAP", 64);
  uint32_t n = (uint32_t)weft_test_env("WEFT_STRESS_ITEMS", 20000 / WEFT_TEST_SCALE);
  size_t caps[] = {1, 7, 256, extra_cap};
  size_t workers[] = {1, 2, wmax};
  size_t bursts[] = {0, 1};
  for (size_t wi = 0; wi < 3; wi++)
    for (size_t ci = 0; ci < 4; ci++)
      for (size_t bi = 0; bi < 2; bi++)
        for (int ord = 0; ord < 2; ord++) one_run(workers[wi], caps[ci], bursts[bi], ord, n, UINT32_MAX);
}

WEFT_TEST(pipeline_stress, failure_mid_run_every_item_exactly_once) {
  size_t wmax = (size_t)weft_test_env("WEFT_STRESS_THREADS", 5);
  uint32_t n = (uint32_t)weft_test_env("WEFT_STRESS_ITEMS", 20000 / WEFT_TEST_SCALE);
  srand(42);
  for (int round = 0; round < 24; round++) {
    size_t w = 1 + (size_t)rand() % wmax;
    size_t cap = (size_t[]){1, 7, 64, 256}[rand() % 4];
    uint32_t fail_at = (uint32_t)rand() % n;
    one_run(w, cap, (size_t)(rand() % 2), rand() % 2, n, fail_at);
  }
}
