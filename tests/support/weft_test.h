/* tests/support/weft_test.h: what every test file includes.
 *
 * WEFT_TEST gives every test a timeout (Criterion 2.4.1 ignores its global --timeout option), so a
 * hang fails one test instead of stalling CI. Stress tests read their sizes from the environment through
 * weft_test_env(), so `WEFT_STRESS_THREADS=16 WEFT_STRESS_ITERS=1000000 ./test_x` scales them up. */
#ifndef WEFT_TEST_H
#define WEFT_TEST_H

#include <criterion/criterion.h>
#include <stdlib.h>
#include <weft/weft.h>

#define WEFT_TEST_TIMEOUT 120.0
#define WEFT_TEST(suite, name, ...) Test(suite, name, .timeout = WEFT_TEST_TIMEOUT, ##__VA_ARGS__)

static inline long weft_test_env(const char *name, long dflt) {
  const char *s = getenv(name);
  if (s == NULL || *s == '\0') return dflt;
  char *end;
  long v = strtol(s, &end, 10);
  return (*end == '\0' && v > 0) ? v : dflt;
}

/* A small PRNG for tests (xorshift32; seed must not be 0, any other value works). Use it, not rand_r():
 * in TSan builds rand_r() is replaced by tsan_rand_r.c for Criterion's sake and returns multiples of 256. */
static inline unsigned weft_test_rand(unsigned *s) {
  unsigned x = *s ? *s : 0x9e3779b9u;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  *s = x;
  return x >> 1;
}

/* Sanitizer builds run several times slower; stress defaults shrink by this factor there. */
#ifdef WEFT_SANITIZER
#define WEFT_TEST_SCALE 4
#else
#define WEFT_TEST_SCALE 1
#endif

#endif
