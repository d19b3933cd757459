/* bench/bench_ctx.c: ctx_cancel, ctx_timeout, ctx_value, tree_cancel, ctx_memory
 * (definitions in bench/README.md, "Workloads"). */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <weft/weft.h>

#include "bench.h"

/* ctx_cancel and ctx_timeout: derive a child of a cancellable parent (with a 1 h timeout when
 * `timeout`), then cancel and release it. The live count proves every child was freed (and, for
 * ctx_timeout, that no timer kept one). */
static int derive_and_end(bench_result *r, bool timeout) {
  enum { N = 1000000 };
  weft_ctx *parent;
  weft_cancel *parent_cancel = NULL;
  BENCH_CHECK(weft_ctx_with_cancel(weft_background(), &parent, &parent_cancel) == 0);
  int64_t t0 = bench_now_ns();
  for (int i = 0; i < N; i++) {
    weft_ctx *c;
    weft_cancel *c_cancel = NULL;
    int rc = timeout ? weft_ctx_with_timeout(parent, WEFT_SEC(3600), &c, &c_cancel) : weft_ctx_with_cancel(parent, &c, &c_cancel);
    if (rc != 0) return 1;
    weft_ctx_end(c_cancel);
  }
  int64_t t1 = bench_now_ns();
  BENCH_CHECK(weft_ctx_live_count() == 1);
  weft_ctx_end(parent_cancel);
  r->ns_per_op = (double)(t1 - t0) / N;
  r->ops = N;
  return 0;
}

static int b_ctx_cancel(bench_result *r) { return derive_and_end(r, false); }
WEFT_BENCH(ctx_cancel, b_ctx_cancel, 10)

static int b_ctx_timeout(bench_result *r) { return derive_and_end(r, true); }
WEFT_BENCH(ctx_timeout, b_ctx_timeout, 11)

static const char value_keys[9];

static int b_ctx_value(bench_result *r) {
  enum { N = 10000000 };
  weft_ctx *chain[9];
  weft_ctx *p = weft_background();
  BENCH_CHECK(weft_ctx_with_value(p, &value_keys[0], (void *)&value_keys[0], NULL, &chain[0]) == 0);
  for (int i = 1; i < 9; i++)
    BENCH_CHECK(weft_ctx_with_value(chain[i - 1], &value_keys[i], NULL, NULL, &chain[i]) == 0);
  /* the key is stored 8 value layers above the context we look it up from */
  weft_ctx *ctx = chain[8];
  long hits = 0;
  int64_t t0 = bench_now_ns();
  for (int i = 0; i < N; i++) {
    void *v = weft_ctx_value(ctx, &value_keys[0]);
    __asm__ __volatile__("" : : "r"(v) : "memory");
    hits += v == (void *)&value_keys[0];
  }
  int64_t t1 = bench_now_ns();
  BENCH_CHECK(hits == N);
  for (int i = 8; i >= 0; i--) weft_ctx_release(chain[i]);
  r->ns_per_op = (double)(t1 - t0) / N;
  r->ops = N;
  return 0;
}
WEFT_BENCH(ctx_value, b_ctx_value, 12)

static int b_tree_cancel(bench_result *r) {
  enum { KIDS = 1000, GRAND = 100, NODES = KIDS * GRAND };
  weft_ctx *root;
  weft_cancel *root_cancel = NULL;
  weft_cancel *unused; /* the tree is cancelled from its root and released node by node */
  weft_ctx **kids = malloc(KIDS * sizeof *kids), **grand = malloc(NODES * sizeof *grand);
  BENCH_CHECK(kids && grand);
  BENCH_CHECK(weft_ctx_with_cancel(weft_background(), &root, &root_cancel) == 0);
  for (int i = 0; i < KIDS; i++) {
    BENCH_CHECK(weft_ctx_with_cancel(root, &kids[i], &unused) == 0);
    for (int j = 0; j < GRAND; j++) BENCH_CHECK(weft_ctx_with_cancel(kids[i], &grand[i * GRAND + j], &unused) == 0);
  }
  int64_t t0 = bench_now_ns();
  weft_ctx_cancel(root_cancel);
  long done = 0;
  for (int i = 0; i < NODES; i++) done += weft_ctx_done(grand[i]);
  for (int i = 0; i < KIDS; i++) done += weft_ctx_done(kids[i]);
  int64_t t1 = bench_now_ns();
  BENCH_CHECK(done == NODES + KIDS);
  for (int i = 0; i < NODES; i++) weft_ctx_release(grand[i]);
  for (int i = 0; i < KIDS; i++) weft_ctx_release(kids[i]);
  weft_ctx_release(root);
  BENCH_CHECK(weft_ctx_live_count() == 0);
  free(kids);
  free(grand);
  r->ns_per_op = (double)(t1 - t0) / NODES;
  r->ops = NODES;
  return 0;
}
WEFT_BENCH(tree_cancel, b_tree_cancel, 13)

static long rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, res = 0;
  if (f == NULL) return -1;
  if (fscanf(f, "%ld %ld", &size, &res) != 2) res = -1;
  fclose(f);
  return res * sysconf(_SC_PAGESIZE);
}

static int b_ctx_memory(bench_result *r) {
  enum { N = 1000000 };
  weft_ctx *parent;
  weft_cancel *parent_cancel = NULL;
  BENCH_CHECK(weft_ctx_with_cancel(weft_background(), &parent, &parent_cancel) == 0);
  weft_cancel *unused; /* released, not cancelled: the timers are disarmed by the release */
  weft_ctx **all = malloc(N * sizeof *all);
  BENCH_CHECK(all != NULL);
  /* Touch the benchmark's own array before measuring (a memset of zeros may be folded into calloc). */
  for (int i = 0; i < N; i++) ((weft_ctx *volatile *)all)[i] = parent;
  long before = rss_bytes();
  int64_t t0 = bench_now_ns();
  for (int i = 0; i < N; i++) BENCH_CHECK(weft_ctx_with_timeout(parent, WEFT_SEC(3600), &all[i], &unused) == 0);
  int64_t t1 = bench_now_ns();
  long after = rss_bytes();
  BENCH_CHECK(weft_ctx_live_count() == (size_t)N + 1);
  /* Freed contexts are kept for reuse, so only the first repetition in a process grows the RSS: that is
   * the figure reported (ctx_memory runs first among the workloads for the same reason). */
  static double first_per = -1;
  if (first_per < 0) first_per = (double)(after - before) / N;
  double per = first_per;
  weft_ctx_cancel(parent_cancel);
  for (int i = 0; i < N; i++) BENCH_CHECK(weft_ctx_err(all[i]) == WEFT_ECANCELED);
  for (int i = 0; i < N; i++) weft_ctx_release(all[i]);
  weft_ctx_release(parent);
  free(all);
  r->ns_per_op = (double)(t1 - t0) / N;
  r->ops = N;
  snprintf(r->extra, sizeof r->extra, " bytes_per_ctx=%.1f", per);
  return 0;
}
WEFT_BENCH(ctx_memory, b_ctx_memory, 0)
