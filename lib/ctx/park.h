/* lib/ctx/park.h: how a weft thread blocks (not API).
 *
 * Every blocking operation (channel send/recv/select, pool submit on a full queue, an idle worker, a
 * context wait) blocks the same way: the thread takes its own waiter record, publishes it where the thread
 * that will complete the operation can find it (a channel's wait queue, a pool's idle list), then calls
 * weft__waiter_wait(). The completing thread calls weft__waiter_signal() with a non-zero token.
 *
 * Cancellation reaches every blocked thread in one system call. A thread blocked under a cancellable
 * context sleeps on that context's wake word (a futex word in the context's cancellation source) with a
 * per-thread bit of FUTEX_WAIT_BITSET; cancelling the context wakes every sleeper on the word at once,
 * the floor for "cancel wakes N threads" (a futex wake-all; bench/README.md, cancel_latency). A signaller targeting one thread bumps the word and
 * wakes only that thread's bit. A thread blocked under a context that can never be cancelled sleeps on
 * its own word.
 *
 * Waiter records are per thread and type-stable: they are never freed, only recycled when a thread exits,
 * so a signaller may touch a record (and a context's wake word — contexts are type-stable too) after the
 * waiter has already returned; the worst that can happen is a spurious wake-up, which every waiter
 * tolerates by re-checking its condition.
 *
 * Protocol for users:
 *   w = weft__waiter_self(); weft__waiter_arm(w, ctx);
 *   publish w (under your lock), unlock;
 *   rc = weft__waiter_wait(w, ctx, deadline);   // >0: the token given to signal; <0: ctx error / timeout
 *   if (rc < 0) { lock; if still published, unpublish; else the signal raced in: take its token with
 *                 weft__waiter_token(w) and honour it; unlock; }
 */
#ifndef WEFT_PARK_H
#define WEFT_PARK_H

#include <stdatomic.h>
#include <stdint.h>

#include "weft/ctx.h"

typedef struct weft__waiter {
  _Atomic uint32_t token;   /* 0 while waiting; set once by the signaller */
  _Atomic uint32_t sleeping; /* 1 while the owner may be in futex_wait */
  _Atomic uint32_t own_word; /* where the owner sleeps when its context cannot be cancelled */
  uint32_t bit;              /* this record's FUTEX bitset bit */
  _Atomic(_Atomic uint32_t *) word; /* the futex word the owner sleeps on for the current operation */
  void *user;                /* free for the blocking operation's own use (e.g. its queue entry) */
  struct weft__waiter *next_free;
} weft__waiter;

/* The calling thread's waiter record (allocated on first use, recycled at thread exit). Never NULL: when
 * the allocation fails, a record comes from a static reserve of 256. */
weft__waiter *weft__waiter_self(void);

/* Prepares w for one blocking operation under ctx (NULL or a root means: cannot be cancelled). */
void weft__waiter_arm(weft__waiter *w, const weft_ctx *ctx);

/* Waits until signalled, ctx is done, or `deadline` passes (absolute ns, WEFT_FOREVER for none): spins
 * briefly, then parks. Returns the token (> 0) if signalled — a signal wins over cancellation when both
 * happened — otherwise the context's error or WEFT_ETIMEDOUT. */
int weft__waiter_wait(weft__waiter *w, const weft_ctx *ctx, int64_t deadline);

/* Signals w with `token` (> 0) if nobody signalled it since it was armed; returns true if this call did.
 * Any thread; lock-free; a system call only when the owner is parked. */
bool weft__waiter_signal(weft__waiter *w, uint32_t token);

/* The token w was signalled with, 0 if none yet. */
static inline uint32_t weft__waiter_token(weft__waiter *w) {
  return atomic_load_explicit(&w->token, memory_order_acquire);
}

/* Called by weft__waiter_wait() on this thread when a wait outlasts its spin, just before the thread
 * sleeps; NULL for none. A pool worker sets it so that the jobs it has taken but not started go back to
 * the queue when the job it runs blocks (pool.c). */
extern _Thread_local void (*weft__park_hook)(void);

/* The futex word threads blocked under ctx sleep on (NULL when ctx can never be cancelled); used by the
 * context code to wake them all on cancel. Defined in ctx.c. */
_Atomic uint32_t *weft__ctx_wake_word(const weft_ctx *ctx);

/* Bit 0 of a context's wake word: set by a thread about to sleep on it, so cancel knows a wake is needed. */
#define WEFT__WORD_SLEEPERS 1u
#define WEFT__WORD_STEP 2u

#endif
