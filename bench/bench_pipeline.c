/* bench/bench_pipeline.c: pipeline3 (bench/README.md, "Workloads").
 *
 * pipeline3: a source emits int64 1..N -> stage square (W = 2 workers) -> stage add 10 (W = 2 workers) ->
 * a sink sums; every channel between stages holds 256 items; unordered; op = one item; N = 1,000,000.
 * The check: the sink saw N items summing N(N+1)(2N+1)/6 + 10N.
 *
 * weft moves items between stages in bursts (pipeline.h, "Bursts"); the capacity of 256 items per
 * connection is the same as Go's buffered channels of 256, counted in items. */
#include <stdlib.h>

#include <weft/weft.h>

#include "bench.h"

#define P3_ITEMS 1000000
#define P3_WORKERS 2
#define P3_CAP 256

static int p3_source(weft_ctx *ctx, weft_emitter *em, void *arg) {
  int64_t n = *(const int64_t *)arg;
  for (int64_t i = 1; i <= n; i++) {
    int rc = weft_pipeline_emit(em, &i);
    if (rc != 0) return rc;
  }
  return 0;
}

static int p3_square(weft_ctx *ctx, const void *in, void *out, void *arg) {
  int64_t v = *(const int64_t *)in;
  *(int64_t *)out = v * v;
  return 0;
}

static int p3_add10(weft_ctx *ctx, const void *in, void *out, void *arg) {
  *(int64_t *)out = *(const int64_t *)in + 10;
  return 0;
}

typedef struct p3_sum {
  int64_t sum, count;
} p3_sum;

static int p3_sink(weft_ctx *ctx, const void *item, void *arg) {
  p3_sum *s = arg;
  s->sum += *(const int64_t *)item;
  s->count++;
  return 0;
}

static int bench_pipeline3(bench_result *r) {
  int64_t n = P3_ITEMS;
  const char *env = getenv("WEFT_BENCH_P3_ITEMS");
  if (env && atol(env) > 0) n = atol(env);
  p3_sum sum = {0, 0};
  weft_pipeline *p;
  BENCH_CHECK(weft_pipeline_create(NULL, &p) == 0);
  weft_stage_opts o = WEFT_STAGE_OPTS_INIT;
  o.item_size = sizeof(int64_t);
  o.out_capacity = P3_CAP;
  BENCH_CHECK(weft_pipeline_source(p, &o, p3_source, &n) == 0);
  o = (weft_stage_opts)WEFT_STAGE_OPTS_INIT;
  o.workers = P3_WORKERS;
  o.out_capacity = P3_CAP;
  BENCH_CHECK(weft_pipeline_map(p, &o, p3_square, NULL) == 0);
  BENCH_CHECK(weft_pipeline_map(p, &o, p3_add10, NULL) == 0);
  BENCH_CHECK(weft_pipeline_sink(p, NULL, p3_sink, &sum) == 0);
  int64_t t0 = bench_now_ns();
  int rc = weft_pipeline_run(p, weft_background(), NULL);
  int64_t el = bench_now_ns() - t0;
  weft_pipeline_destroy(p);
  BENCH_CHECK(rc == 0);
  int64_t want = n * (n + 1) * (2 * n + 1) / 6 + 10 * n;
  BENCH_CHECK(sum.count == n && sum.sum == want);
  r->ops = (long)n;
  r->ns_per_op = (double)el / (double)n;
  return 0;
}

WEFT_BENCH(pipeline3, bench_pipeline3, 80)
