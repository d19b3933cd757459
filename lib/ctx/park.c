/* lib/ctx/park.c: per-thread waiter records and the spin-then-park wait (see park.h for the protocol).
 *
 * Design notes.
 * - Ordering (Dekker): the owner stores sleeping=1, then reads the token; the signaller stores the token,
 *   then reads sleeping. Both sides are seq_cst, so at least one sees the other: either the owner sees the
 *   token and does not sleep, or the signaller sees sleeping and bumps the word the owner sleeps on (so a
 *   futex_wait with the old value fails with EAGAIN) and wakes the owner's bit.
 * - A cancel does the same with the context's error and the SLEEPERS bit of the context's wake word
 *   (ctx.c: store err, then fetch_add the word and wake all if SLEEPERS was set).
 * - Records are never freed (type-stable); a thread's record returns to a free stack when the thread
 *   exits. A late signaller can therefore only cause a spurious wake-up, never touch freed memory.
 */
#include <pthread.h>
#include <string.h>

#include "common/internal.h"
#include "ctx/park.h"

static pthread_mutex_t free_mu = PTHREAD_MUTEX_INITIALIZER;
static weft__waiter *free_list;
static uint32_t next_bit;
static pthread_key_t self_key;
static pthread_once_t self_once = PTHREAD_ONCE_INIT;
static _Thread_local weft__waiter *self;
_Thread_local void (*weft__park_hook)(void);

/* Records for threads whose first blocking call meets an allocation failure: blocking must not fail for
 * want of a few dozen bytes. Static, so type-stable like the others; recycled through free_list too. */
#define RESERVE 256
static struct {
  _Alignas(WEFT__CACHELINE) weft__waiter w;
} reserve[RESERVE];
static unsigned reserve_used; /* under free_mu */

static void waiter_recycle(void *p) {
  weft__waiter *w = p;
  pthread_mutex_lock(&free_mu);
  w->next_free = free_list;
  free_list = w;
  pthread_mutex_unlock(&free_mu);
}

static void self_key_init(void) { WEFT__ASSERT(pthread_key_create(&self_key, waiter_recycle) == 0); }

weft__waiter *weft__waiter_self(void) {
  if (WEFT__LIKELY(self != NULL)) return self;
  pthread_once(&self_once, self_key_init);
  pthread_mutex_lock(&free_mu);
  weft__waiter *w = free_list;
  if (w != NULL) {
    free_list = w->next_free;
  } else {
    w = aligned_alloc(WEFT__CACHELINE, WEFT__CACHELINE * ((sizeof *w + WEFT__CACHELINE - 1) / WEFT__CACHELINE));
    if (w == NULL && reserve_used < RESERVE) w = &reserve[reserve_used++].w; /* out of memory */
    /* Past the reserve, a thread's first blocking call cannot proceed: that many threads each met an
     * allocation failure on their first block, with none of their records recycled yet. */
    WEFT__ASSERT(w != NULL);
    memset(w, 0, sizeof *w);
    w->bit = 1u << (next_bit++ & 31u);
  }
  pthread_mutex_unlock(&free_mu);
  w->next_free = NULL;
  self = w;
  pthread_setspecific(self_key, w);
  return w;
}

void weft__waiter_arm(weft__waiter *w, const weft_ctx *ctx) {
  _Atomic uint32_t *word = ctx ? weft__ctx_wake_word(ctx) : NULL;
  if (word == NULL) word = &w->own_word;
  atomic_store_explicit(&w->word, word, memory_order_relaxed);
  atomic_store_explicit(&w->sleeping, 0, memory_order_relaxed);
  atomic_store_explicit(&w->token, 0, memory_order_release);
}

int weft__waiter_wait(weft__waiter *w, const weft_ctx *ctx, int64_t deadline) {
  _Atomic uint32_t *word = atomic_load_explicit(&w->word, memory_order_relaxed);
  uint32_t tok;
  int err;
  /* Spin briefly: a hand-off between running threads costs well under a microsecond, parking ~14 us. */
  for (int i = 0; i < WEFT__SPIN_ITERS; i++) {
    if ((tok = atomic_load_explicit(&w->token, memory_order_acquire)) != 0) return (int)tok;
    if ((i & 127) == 127) sched_yield(); /* a runnable thread on this core may be the one we wait for */
    if ((i & 63) == 63) {
      if (ctx && (err = weft_ctx_err(ctx)) != 0) goto ctx_done;
      if (deadline != WEFT_FOREVER && weft_now() >= deadline) goto timed_out;
    }
    weft__cpu_relax();
  }
  if (weft__park_hook != NULL) weft__park_hook();
  for (;;) {
    atomic_store(&w->sleeping, 1);
    uint32_t v = atomic_fetch_or(word, WEFT__WORD_SLEEPERS) | WEFT__WORD_SLEEPERS;
    if ((tok = atomic_load(&w->token)) != 0) break;
    if (ctx && (err = weft_ctx_err(ctx)) != 0) {
      atomic_store_explicit(&w->sleeping, 0, memory_order_relaxed);
      goto ctx_done;
    }
    int r = weft__futex_wait(word, v, deadline, w->bit);
    atomic_store_explicit(&w->sleeping, 0, memory_order_relaxed);
    if ((tok = atomic_load_explicit(&w->token, memory_order_acquire)) != 0) return (int)tok;
    /* Woken by a cancel: leave before the loop's fetch_or on the wake word, which every thread woken by
     * the same cancel would otherwise take in turn. */
    if (ctx && (err = weft_ctx_err(ctx)) != 0) goto ctx_done;
    if (r == -ETIMEDOUT) goto timed_out;
  }
  atomic_store_explicit(&w->sleeping, 0, memory_order_relaxed);
  return (int)tok;
ctx_done:
  /* A signal that raced with the cancellation wins: the operation completed. */
  if ((tok = atomic_load_explicit(&w->token, memory_order_acquire)) != 0) return (int)tok;
  return err;
timed_out:
  if ((tok = atomic_load_explicit(&w->token, memory_order_acquire)) != 0) return (int)tok;
  if (ctx && (err = weft_ctx_err(ctx)) != 0) return err;
  return WEFT_ETIMEDOUT;
}

bool weft__waiter_signal(weft__waiter *w, uint32_t token) {
  uint32_t zero = 0;
  _Atomic uint32_t *word = atomic_load_explicit(&w->word, memory_order_relaxed);
  uint32_t bit = w->bit;
  if (!atomic_compare_exchange_strong(&w->token, &zero, token)) return false;
  if (atomic_load(&w->sleeping)) {
    atomic_fetch_add(word, WEFT__WORD_STEP);
    weft__futex_wake(word, INT_MAX, bit);
  }
  return true;
}
