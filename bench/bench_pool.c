/* bench/bench_pool.c: pool_tiny (bench/README.md, "Workloads") and its 4-submitter variant.
 *
 * pool_tiny: a pool of W = 2 workers; one submitter submits 1,000,000 jobs that each add 1 to an atomic
 * counter, then waits for all; op = one job; checked: the counter equals the job count. pool_tiny_4sub:
 * the same 1,000,000 jobs submitted by 4 threads (250,000 each). The pool is created before the clock
 * starts and destroyed after it stops, as Go's reference keeps its goroutines running. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <weft/weft.h>

#include "bench.h"

#define POOL_JOBS 1000000L

/* The jobs' counter and each submitter's arguments sit on lines of their own, and a submitter's loop
 * uses locals (see bench_chan.c's spsc): the figure measures the pool, not a line two threads share by
 * accident. */
static _Alignas(64) _Atomic long counter;

static int add_one(weft_ctx *ctx, void *arg) {
  (void)ctx;
  (void)arg;
  atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed);
  return 0;
}

typedef struct sub_arg {
  _Alignas(64) weft_pool *pool;
  long n;
  int rc;
} sub_arg;

static void *submitter(void *a) {
  sub_arg *s = a;
  weft_pool *pool = s->pool;
  const long n = s->n;
  int rc = 0;
  for (long i = 0; i < n && rc == 0; i++) rc = weft_pool_submit(pool, NULL, add_one, NULL);
  s->rc = rc;
  return NULL;
}

static int run_pool(bench_result *r, int nsub) {
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 2;
  weft_pool *p;
  BENCH_CHECK(weft_pool_create(&o, &p) == 0);
  atomic_store(&counter, 0);
  static sub_arg args[4];
  pthread_t th[4];
  int64_t t0 = bench_now_ns();
  if (nsub == 1) {
    args[0] = (sub_arg){p, POOL_JOBS, 0};
    submitter(&args[0]);
  } else {
    for (int i = 0; i < nsub; i++) {
      args[i] = (sub_arg){p, POOL_JOBS / nsub, 0};
      pthread_create(&th[i], NULL, submitter, &args[i]);
    }
    for (int i = 0; i < nsub; i++) pthread_join(th[i], NULL);
  }
  int wrc = weft_pool_wait_all(p, NULL);
  int64_t t1 = bench_now_ns();
  weft_pool_report rep;
  weft_pool_destroy(p, &rep);
  for (int i = 0; i < nsub; i++) BENCH_CHECK(args[i].rc == 0);
  BENCH_CHECK(wrc == 0);
  if (atomic_load(&counter) != POOL_JOBS) fprintf(stderr, "counter %ld sub %lu comp %lu cbs %lu\n", atomic_load(&counter), (unsigned long)rep.submitted, (unsigned long)rep.completed, (unsigned long)rep.canceled_before_start);
  BENCH_CHECK(atomic_load(&counter) == POOL_JOBS);
  BENCH_CHECK(rep.submitted == (uint64_t)POOL_JOBS && rep.completed == (uint64_t)POOL_JOBS);
  r->ns_per_op = (double)(t1 - t0) / (double)POOL_JOBS;
  r->ops = POOL_JOBS;
  snprintf(r->extra, sizeof r->extra, " workers=2 submitters=%d", nsub);
  return 0;
}

static int pool_tiny(bench_result *r) { return run_pool(r, 1); }
static int pool_tiny_4sub(bench_result *r) { return run_pool(r, 4); }

WEFT_BENCH(pool_tiny, pool_tiny, 70)
WEFT_BENCH(pool_tiny_4sub, pool_tiny_4sub, 71)
