/* wrap_alloc.h: failing allocation for the test binaries linked with -Wl,--wrap for malloc, calloc,
 * realloc and aligned_alloc (tests/CMakeLists.txt: test_nomem, test_uv_nomem). Include it in one file of
 * the binary: it defines the __wrap_ functions. Statically linked code (libweft, the adapters) allocates
 * through them; shared libraries (libuv, GLib, Criterion) do not. */
#ifndef WEFT_WRAP_ALLOC_H
#define WEFT_WRAP_ALLOC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);

static _Atomic long budget = -1; /* < 0: unlimited; otherwise allocations left before they fail */
static _Atomic long failures;
static _Atomic long only_one = -1; /* >= 0: allocations left before the one that fails (the others pass) */

static inline bool allow(void) {
  long o = atomic_load(&only_one);
  while (o >= 0) {
    if (atomic_compare_exchange_weak(&only_one, &o, o - 1)) {
      if (o != 0) return true;
      atomic_fetch_add(&failures, 1);
      return false;
    }
  }
  long b = atomic_load(&budget);
  while (b >= 0) {
    if (b == 0) {
      atomic_fetch_add(&failures, 1);
      return false;
    }
    if (atomic_compare_exchange_weak(&budget, &b, b - 1)) return true;
  }
  return true;
}
void *__wrap_malloc(size_t n) { return allow() ? __real_malloc(n) : NULL; }
void *__wrap_calloc(size_t n, size_t m) { return allow() ? __real_calloc(n, m) : NULL; }
void *__wrap_realloc(void *p, size_t n) { return allow() ? __real_realloc(p, n) : NULL; }
void *__wrap_aligned_alloc(size_t a, size_t n) { return allow() ? __real_aligned_alloc(a, n) : NULL; }

static inline void arm(long k) {
  atomic_store(&failures, 0);
  atomic_store(&budget, k);
}
/* Fails the k-th allocation alone: the calls after a failed one still get memory, as in a real shortage
 * that comes and goes, which reaches cleanup paths a failure of everything from k on does not. */
static inline void arm_one(long k) {
  atomic_store(&failures, 0);
  atomic_store(&only_one, k);
}
/* Stops failing; returns how many allocations failed since the last arm. */
static inline long disarm(void) {
  atomic_store(&budget, -1);
  atomic_store(&only_one, -1);
  return atomic_load(&failures);
}

#endif
