/* bench/main.c: weft-bench [WORKLOAD ...] — runs the named workloads (all when none is named), best of
 * three repetitions each, one line per workload on stdout. A helper thread runs before anything is
 * measured so glibc's single-thread shortcuts do not flatter the figures (glibc takes single-thread shortcuts in its locks and malloc until a second thread exists). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define BENCH_MAX 64
static struct {
  const char *name;
  bench_fn fn;
  int order;
} benches[BENCH_MAX];
static int nbenches;

void bench_register(const char *name, bench_fn fn, int order) {
  if (nbenches == BENCH_MAX) abort();
  benches[nbenches].name = name;
  benches[nbenches].fn = fn;
  benches[nbenches].order = order;
  nbenches++;
}

int64_t bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static pthread_mutex_t helper_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t helper_cv = PTHREAD_COND_INITIALIZER;
static int helper_stop;
static void *helper(void *arg) {
  (void)arg;
  pthread_mutex_lock(&helper_mu);
  while (!helper_stop) pthread_cond_wait(&helper_cv, &helper_mu);
  pthread_mutex_unlock(&helper_mu);
  return NULL;
}

static int cmp_order(const void *a, const void *b) {
  const int oa = ((const int *)a)[0], ob = ((const int *)b)[0];
  return (benches[oa].order > benches[ob].order) - (benches[oa].order < benches[ob].order);
}

static int run_one(int i) {
  bench_result best = {0}, r;
  int reps = 3;
  const char *s = getenv("WEFT_BENCH_REPS");
  if (s && atoi(s) > 0) reps = atoi(s);
  for (int rep = 0; rep < reps; rep++) {
    memset(&r, 0, sizeof r);
    if (benches[i].fn(&r) != 0) {
      fprintf(stderr, "%s: check failed, no figure\n", benches[i].name);
      return 1;
    }
    if (rep == 0 || r.ns_per_op < best.ns_per_op) best = r;
  }
  printf("%s ns_per_op=%.1f ops=%ld%s\n", benches[i].name, best.ns_per_op, best.ops, best.extra);
  fflush(stdout);
  return 0;
}

int main(int argc, char **argv) {
  pthread_t th;
  pthread_create(&th, NULL, helper, NULL);
  int idx[BENCH_MAX];
  for (int i = 0; i < nbenches; i++) idx[i] = i;
  qsort(idx, (size_t)nbenches, sizeof idx[0], cmp_order);
  int rc = 0;
  if (argc <= 1) {
    for (int k = 0; k < nbenches; k++) rc |= run_one(idx[k]);
  } else {
    for (int a = 1; a < argc; a++) {
      int found = 0;
      for (int i = 0; i < nbenches; i++)
        if (strcmp(benches[i].name, argv[a]) == 0) {
          rc |= run_one(i);
          found = 1;
        }
      if (!found) {
        fprintf(stderr, "weft-bench: unknown workload '%s'; known:", argv[a]);
        for (int k = 0; k < nbenches; k++) fprintf(stderr, " %s", benches[idx[k]].name);
        fprintf(stderr, "\n");
        rc = 2;
      }
    }
  }
  pthread_mutex_lock(&helper_mu);
  helper_stop = 1;
  pthread_cond_broadcast(&helper_cv);
  pthread_mutex_unlock(&helper_mu);
  pthread_join(th, NULL);
  return rc;
}
