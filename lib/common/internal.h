/* lib/common/internal.h: helpers shared by the runtime's files (not API). */
#ifndef WEFT_INTERNAL_H
#define WEFT_INTERNAL_H

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/assert.h"
#include "common/owned.h"
#include "common/thread.h"
#include "weft/common.h"
#include "weft/ctx.h"
#include "weft/error.h"

#define WEFT__CONTAINER_OF(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* One pause instruction, for spin loops. */
static inline void weft__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* A full memory barrier (store-load order included). On x86-64 a locked add to the stack, which costs
 * less than mfence (the Linux kernel's smp_mb() does the same); ThreadSanitizer builds keep the C11 fence
 * it understands. */
static inline void weft__full_fence(void) {
#if defined(__x86_64__) && !defined(WEFT_TSAN)
  __asm__ __volatile__("lock; addl $0,-4(%%rsp)" ::: "memory", "cc");
#else
  atomic_thread_fence(memory_order_seq_cst);
#endif
}

/* A test-and-test-and-set spinlock for critical sections of a few dozen instructions. Written with C11
 * atomics rather than ck_spinlock because ck_pr's inline assembly is invisible to ThreadSanitizer, which
 * would then report every access the lock protects as a race. 4 bytes, zero-initialised = unlocked. */
typedef struct weft__spin {
  _Atomic uint32_t locked;
} weft__spin;
static inline void weft__spin_lock(weft__spin *l) {
  for (;;) {
    if (!atomic_exchange_explicit(&l->locked, 1, memory_order_acquire)) return;
    unsigned n = 0;
    while (atomic_load_explicit(&l->locked, memory_order_relaxed)) {
      weft__cpu_relax();
      if (++n == 1000) { /* the holder was likely preempted: let it run */
        n = 0;
        sched_yield();
      }
    }
  }
}
static inline void weft__spin_unlock(weft__spin *l) { atomic_store_explicit(&l->locked, 0, memory_order_release); }

/* Futex wrappers on a 32-bit word (process-private). wait returns 0 when woken, or -errno (EAGAIN when the
 * word no longer held `val`, ETIMEDOUT, EINTR). `deadline` is absolute CLOCK_MONOTONIC ns or WEFT_FOREVER. */
int weft__futex_wait(_Atomic uint32_t *word, uint32_t val, int64_t deadline, uint32_t bitset);
void weft__futex_wake(_Atomic uint32_t *word, int n, uint32_t bitset);


/* How long a blocked thread spins before it parks, in pause iterations: about the price of one park and
 * wake-up (a futex round trip), so that spinning never costs more than the parking it tries to avoid, with
 * a sched_yield every 128 so that a runnable thread on the same core (often the one being waited for) gets
 * to run. Longer spins without yields made many blocked threads delay one another on few cores
 * (cancel_latency; bench/README.md). */
#define WEFT__SPIN_ITERS 600

#endif
