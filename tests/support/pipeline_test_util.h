/* tests/support/pipeline_test_util.h: tracked pointer items for the pipeline tests.
 *
 * A tracked item is a malloc'd record with an id. Every way an item can end is counted per id: delivered
 * (the sink consumed it), released (the pipeline's release hook), or freed by a stage function. After a
 * run, every id ever emitted must have ended exactly once — the rule of pipeline.h, checked per item. */
#ifndef PIPELINE_TEST_UTIL_H
#define PIPELINE_TEST_UTIL_H

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft/weft.h>

#define TI_MAGIC 0x5eedf00du

typedef struct titem {
  uint32_t magic;
  uint32_t id;
  int64_t value;
} titem;

typedef struct tracker {
  size_t cap;
  _Atomic uint32_t *delivered;
  _Atomic uint32_t *released;
  _Atomic uint32_t *freed;   /* by a stage function */
  _Atomic uint64_t emitted;  /* ids 0..emitted-1 were emitted successfully */
  _Atomic int64_t inflight;  /* emitted, not yet ended */
  _Atomic int64_t max_inflight;
} tracker;

static inline tracker *tracker_new(size_t cap) {
  tracker *t = calloc(1, sizeof *t);
  t->cap = cap;
  t->delivered = calloc(cap, sizeof *t->delivered);
  t->released = calloc(cap, sizeof *t->released);
  t->freed = calloc(cap, sizeof *t->freed);
  return t;
}

static inline void tracker_free(tracker *t) {
  free((void *)t->delivered);
  free((void *)t->released);
  free((void *)t->freed);
  free(t);
}

static inline titem *ti_new(uint32_t id, int64_t value) {
  titem *it = malloc(sizeof *it);
  it->magic = TI_MAGIC;
  it->id = id;
  it->value = value;
  return it;
}

static inline void ti_end(tracker *t, titem *it, _Atomic uint32_t *counter) {
  if (it->magic != TI_MAGIC) {
    fprintf(stderr, "tracked item freed twice or corrupted (id %u)\n", it->id);
    abort();
  }
  atomic_fetch_add(&counter[it->id], 1);
  atomic_fetch_sub(&t->inflight, 1);
  it->magic = 0;
  free(it);
}

/* The release hook: arg is the tracker; item points at a titem pointer. */
static inline void ti_release(void *item, void *arg) {
  tracker *t = arg;
  ti_end(t, *(titem **)item, t->released);
}

/* Call after a successful emit of id. */
static inline void ti_emitted(tracker *t) {
  atomic_fetch_add(&t->emitted, 1);
  int64_t now = atomic_fetch_add(&t->inflight, 1) + 1;
  int64_t m = atomic_load(&t->max_inflight);
  while (now > m && !atomic_compare_exchange_weak(&t->max_inflight, &m, now)) {
  }
}

/* Every emitted id ended exactly once, none beyond; returns the number of violations (and prints some). */
static inline size_t tracker_violations(tracker *t, uint64_t *delivered, uint64_t *released) {
  size_t bad = 0;
  uint64_t d = 0, r = 0;
  uint64_t n = atomic_load(&t->emitted);
  for (uint64_t i = 0; i < t->cap; i++) {
    uint32_t a = atomic_load(&t->delivered[i]), b = atomic_load(&t->released[i]), c = atomic_load(&t->freed[i]);
    d += a;
    r += b;
    uint32_t want = i < n ? 1 : 0;
    if (a + b + c != want) {
      if (bad < 5)
        fprintf(stderr, "item %lu: delivered %u released %u freed %u (want %u in all)\n", (unsigned long)i, a, b,
                c, want);
      bad++;
    }
  }
  if (delivered) *delivered = d;
  if (released) *released = r;
  return bad;
}

#endif
