/* lib/common/owned.h: counters with one writer, and the cache line (not API).
 *
 * A counter that only its owner thread writes (a worker's tallies, a per-thread cache's counts) and any
 * thread may read needs no atomic read-modify-write: the owner loads, adds and stores, and readers see
 * some value it stored. This is the one spelling of that increment. */
#ifndef WEFT_OWNED_H
#define WEFT_OWNED_H

#include <stdatomic.h>
#include <stdint.h>

#define WEFT__CACHELINE 64

static inline void weft__owned_add(_Atomic uint64_t *c, uint64_t n, memory_order order) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, order);
}

#endif
