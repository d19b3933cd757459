/* examples/common/bag.h: what the two pipeline examples (pipeline, pipeline-by-hand) check their
 * results with: a small set of results compared as a set, since the order items arrive in depends on the
 * workers; and the wait for their stages to fill. Header-only; each example includes it once. */
#ifndef WEFT_EXAMPLES_BAG_H
#define WEFT_EXAMPLES_BAG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <weft/weft.h>

#define E_TOO_MANY (-6001) /* a sink got more items than it has room for */

static int cmp64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* A small set of results: the order items arrive in depends on the workers, so results compare as sets. */
typedef struct bag {
  int64_t v[64];
  size_t n;
} bag;

static int bag_add(bag *b, int64_t v) {
  if (b->n == sizeof b->v / sizeof b->v[0]) return E_TOO_MANY;
  b->v[b->n++] = v;
  return 0;
}

/* Sorts the bag, prints it as "{a, b, c}" after `label`, and says whether it equals want[0..m). */
static bool bag_check(bag *b, const char *label, const int64_t *want, size_t m) {
  qsort(b->v, b->n, sizeof b->v[0], cmp64);
  printf("  %s {", label);
  for (size_t i = 0; i < b->n; i++) printf("%s%lld", i ? ", " : "", (long long)b->v[i]);
  bool same = b->n == m;
  for (size_t i = 0; same && i < m; i++) same = b->v[i] == want[i];
  printf("}: %s\n", same ? "exactly the expected set" : "NOT the expected set");
  return same;
}

/* True when the bag holds `n` values, each a perfect square. */
static bool all_squares(const bag *b, size_t n) {
  bool ok = b->n == n;
  for (size_t i = 0; ok && i < b->n; i++) {
    int64_t root = 0;
    while (root * root < b->v[i]) root++;
    ok = root * root == b->v[i];
  }
  return ok;
}

static const int64_t want_even[] = {14, 26, 46, 74, 110}; /* i*i + 10 is even exactly when i is even */
enum { FAN_N = 12, FIRST = 5 };

/* Polls `full` every millisecond until it holds, for at most 10 s. Not a timing check: it waits for the
 * stages to fill every channel, which they must since the source never ends and nobody reads. */
static inline bool wait_until(bool (*full)(void *), void *arg) {
  int64_t give_up = weft_now() + WEFT_SEC(10);
  while (!full(arg)) {
    if (weft_now() > give_up) return false;
    weft_ctx_sleep(weft_background(), WEFT_MS(1));
  }
  return true;
}

enum { SMALL = 4 }; /* channel capacity in part 2, so that "full" comes quickly and is easy to see */

#endif
