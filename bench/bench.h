/* bench/bench.h: the weft-bench workload registry (bench/README.md, "Workloads").
 *
 * Each bench_*.c file registers its workloads from a constructor with WEFT_BENCH(name, fn). A workload
 * function runs one repetition, checks its result, and fills a bench_result; it returns 0, or non-zero
 * when the check failed (then no figure is printed and weft-bench exits 1). main.c runs every workload
 * three times and prints the best repetition as `NAME ns_per_op=<float> ops=<int> [key=value ...]`. */
#ifndef WEFT_BENCH_H
#define WEFT_BENCH_H

#include <stdint.h>
#include <stdio.h>

typedef struct bench_result {
  double ns_per_op; /* lower is better; the best repetition is the one with the lowest */
  long ops;
  char extra[256];  /* optional " key=value key=value" appended to the line */
} bench_result;

typedef int (*bench_fn)(bench_result *r);

void bench_register(const char *name, bench_fn fn, int order);
int64_t bench_now_ns(void);

#define WEFT_BENCH(name, fn, order)                                             \
  __attribute__((constructor)) static void bench_reg_##name(void) {           \
    bench_register(#name, fn, order);                                          \
  }

#define BENCH_CHECK(cond)                                                         \
  do {                                                                            \
    if (!(cond)) {                                                                \
      fprintf(stderr, "bench check failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      return 1;                                                                   \
    }                                                                             \
  } while (0)

#endif
