/* lib/chan/chan_impl.h: the channel layout and the pieces chan.c, chan_wait.c and chan_timer.c share.
 * The design notes are at the top of lib/chan/chan.c (not API). */
#ifndef WEFT_CHAN_IMPL_H
#define WEFT_CHAN_IMPL_H

#include <pthread.h>
#include <string.h>

#include "common/internal.h"
#include "ctx/park.h"
#include "weft/chan.h"

/* The tail word (producers' side): position << 3 | FD | CLOSED | RWAIT. */
#define CHAN_T_RWAIT UINT64_C(1)  /* receivers are queued: a producer must wake one after publishing */
#define CHAN_T_CLOSED UINT64_C(2) /* closed: a producer's CAS on the tail fails and sees this */
#define CHAN_T_FD UINT64_C(4)     /* a descriptor is attached (weft_chan_fd): a producer updates it */
#define CHAN_T_STEP UINT64_C(8)
#define CHAN_T_POS(t) ((t) >> 3)
/* The head word (consumers' side): position << 2 | FD | SWAIT. */
#define CHAN_H_SWAIT UINT64_C(1) /* senders are queued: a consumer must wake one after freeing a slot */
#define CHAN_H_FD UINT64_C(2)    /* a descriptor is attached: a consumer updates it */
#define CHAN_H_STEP UINT64_C(4)
#define CHAN_H_POS(h) ((h) >> 2)

/* Claims written into chan_op.done: the kind in the top two bits, the case index + 1 below. */
#define CLAIM_HANDOFF (UINT32_C(1) << 30) /* capacity 0: the element moved to / from this case's elem */
#define CLAIM_HINT (UINT32_C(2) << 30)    /* the case's channel changed (item, room or close): retry it */
#define CLAIM_SELF (UINT32_C(3) << 30)    /* the waiter itself closed the operation (ready, cancel, timeout) */
#define CLAIM_KIND(d) ((d) & (UINT32_C(3) << 30))
#define CLAIM_IDX(d) (((d) & ~(UINT32_C(3) << 30)) - 1u)
#define CHAN_MAX_CASES (UINT32_C(1) << 24)

/* One blocking operation: a select, or a single send / recv past its spin. Lives on the blocked thread's
 * stack. `done` is claimed exactly once per round, always under the lock of the channel whose queue the
 * claiming entry is in (or by the owner itself); the claimer signals `w` after dropping that lock. */
typedef struct chan_op {
  weft__waiter *w;
  _Atomic uint32_t done;
} chan_op;

/* One case of an operation queued on one channel (intrusive, doubly linked). */
typedef struct chan_entry {
  struct chan_entry *next, *prev;
  chan_op *op;
  void *elem;   /* capacity 0: the sender's element or the receiver's buffer (NULL: discard) */
  uint32_t idx; /* the case index, reported in the claim */
  bool linked;  /* in a queue; guarded by the channel's lock */
} chan_entry;

typedef struct chan_queue {
  chan_entry *head, *tail;
} chan_queue;

struct chan_timer;

struct weft_chan {
  /* Producers' line. */
  _Alignas(WEFT__CACHELINE) _Atomic uint64_t tail;
  /* Consumers' line. */
  _Alignas(WEFT__CACHELINE) _Atomic uint64_t head;
  /* Read-only after creation: both sides read it, nobody writes it, so it never bounces. */
  _Alignas(WEFT__CACHELINE) size_t cap;
  size_t elem_size;
  size_t stride;  /* bytes per slot: an 8-byte sequence word, then the element, rounded up to 8 */
  uint64_t mask;  /* cap - 1 when cap is a power of two (pow2) */
  bool pow2;      /* else index by division (a few ns more; capacities like 7 are allowed) */
  unsigned char *slots;
  weft_discard_fn discard;
  void *discard_arg;
  struct chan_timer *timer; /* non-NULL for timer channels */
  /* The slow path: wait queues, capacity-0 state, counters; touched only when someone blocks. */
  _Alignas(WEFT__CACHELINE) pthread_mutex_t mu;
  chan_queue recvq, sendq;
  uint64_t send_waits, recv_waits; /* under mu */
  uint64_t sends0, recvs0;         /* capacity 0 only; under mu */
  _Atomic uint32_t closed0;        /* capacity 0 only; written under mu */
  _Atomic uint32_t refs;           /* the user's reference + one per armed timer callback + one per
                                    * reserved completion (weft__chan_reserve) */
  _Atomic uint64_t resv;           /* completions reserved by a pool and not yet sent (reserve.h) */
  _Atomic uint64_t rsending;       /* reserved sends between their first attempt and their resv decrement */
  /* The readiness descriptor (weft_chan_fd), made on first use; see "Descriptor" in chan.c. */
  pthread_mutex_t fd_mu;
  _Atomic int efd;     /* the eventfd, or -1 */
  _Atomic bool fd_set; /* the eventfd is readable (its counter is 1); written under fd_mu */
};

static inline void chan__copy(void *dst, const void *src, size_t n) {
  switch (n) { /* fixed sizes compile to plain moves */
    case 4: memcpy(dst, src, 4); return;
    case 8: memcpy(dst, src, 8); return;
    case 16: memcpy(dst, src, 16); return;
    default: memcpy(dst, src, n); return;
  }
}

/* The channel's slot for ring position p. */
static inline unsigned char *chan__slot(const weft_chan *ch, uint64_t p) {
  uint64_t i = WEFT__LIKELY(ch->pow2) ? (p & ch->mask) : (p % ch->cap);
  return ch->slots + i * ch->stride;
}
static inline _Atomic uint64_t *chan__seq(unsigned char *slot) { return (_Atomic uint64_t *)(void *)slot; }

void weft__chan_wake(weft_chan *ch, bool senders);
/* After a send (t: the tail the CAS succeeded on) or a receive (h: the head) that found a flag set. */
void weft__chan_after_send(weft_chan *ch, uint64_t t);
void weft__chan_after_recv(weft_chan *ch, uint64_t h);

/* Buffered channels (cap > 0). A slot's sequence word is 2p when free for position p and 2p + 1 once
 * published at p, so the two states never coincide, whatever the capacity (Vyukov's scheme needs
 * capacity >= 2 for that; this encoding allows 1). */
static inline int chan__ring_send(weft_chan *ch, const void *elem) {
  uint64_t t = atomic_load_explicit(&ch->tail, memory_order_relaxed);
  for (;;) {
    if (t & CHAN_T_CLOSED) return WEFT_ECLOSED;
    uint64_t p = CHAN_T_POS(t);
    unsigned char *s = chan__slot(ch, p);
    int64_t dif = (int64_t)(atomic_load_explicit(chan__seq(s), memory_order_acquire) - 2 * p);
    if (dif == 0) {
      if (atomic_compare_exchange_weak_explicit(&ch->tail, &t, t + CHAN_T_STEP, memory_order_relaxed,
                                                memory_order_relaxed)) {
        chan__copy(s + 8, elem, ch->elem_size);
        atomic_store_explicit(chan__seq(s), 2 * p + 1, memory_order_release);
        if (WEFT__UNLIKELY(t & (CHAN_T_RWAIT | CHAN_T_FD))) weft__chan_after_send(ch, t);
        return 0;
      }
    } else if (dif < 0) {
      return WEFT_EFULL; /* the slot still holds the element of position p - cap */
    } else {
      t = atomic_load_explicit(&ch->tail, memory_order_relaxed);
    }
  }
}

/* Returns 0 or WEFT_EEMPTY (which includes "closed and drained": see chan__ring_drained()). */
static inline int chan__ring_recv(weft_chan *ch, void *elem) {
  uint64_t h = atomic_load_explicit(&ch->head, memory_order_relaxed);
  for (;;) {
    uint64_t p = CHAN_H_POS(h);
    unsigned char *s = chan__slot(ch, p);
    int64_t dif = (int64_t)(atomic_load_explicit(chan__seq(s), memory_order_acquire) - (2 * p + 1));
    if (dif == 0) {
      if (atomic_compare_exchange_weak_explicit(&ch->head, &h, h + CHAN_H_STEP, memory_order_relaxed,
                                                memory_order_relaxed)) {
        if (elem) chan__copy(elem, s + 8, ch->elem_size);
        atomic_store_explicit(chan__seq(s), 2 * (p + ch->cap), memory_order_release);
        if (WEFT__UNLIKELY(h & (CHAN_H_SWAIT | CHAN_H_FD))) weft__chan_after_recv(ch, h);
        return 0;
      }
    } else if (dif < 0) {
      return WEFT_EEMPTY;
    } else {
      h = atomic_load_explicit(&ch->head, memory_order_relaxed);
    }
  }
}

/* True when a buffered channel is closed and every element sent has been claimed by a receiver. */
static inline bool chan__ring_drained(weft_chan *ch) {
  uint64_t t = atomic_load_explicit(&ch->tail, memory_order_acquire);
  if (!(t & CHAN_T_CLOSED)) return false;
  uint64_t h = atomic_load_explicit(&ch->head, memory_order_acquire);
  return CHAN_H_POS(h) == CHAN_T_POS(t);
}

/* Capacity 0: hand-off with a queued counterpart under the lock. Return 0, WEFT_EFULL / WEFT_EEMPTY,
 * WEFT_ECLOSED. */
int weft__chan_try_send0(weft_chan *ch, const void *elem);
int weft__chan_try_recv0(weft_chan *ch, void *elem);

/* Non-blocking attempt of one case: 0 or WEFT_ECLOSED when the case fired, WEFT_EFULL / WEFT_EEMPTY when
 * it would block. */
static inline int chan__try(weft_chan *ch, bool send, void *elem) {
  if (ch->cap == 0) return send ? weft__chan_try_send0(ch, elem) : weft__chan_try_recv0(ch, elem);
  if (send) return chan__ring_send(ch, elem);
  if (chan__ring_recv(ch, elem) == 0) return 0;
  return chan__ring_drained(ch) ? WEFT_ECLOSED : WEFT_EEMPTY;
}

/* Queues e (its op, elem and idx set) on ch for a send or a receive and reports whether the case is
 * ready after all (an element, room, a counterpart not of e->op, or close), in which case the caller must
 * not sleep. */
bool weft__chan_enqueue(weft_chan *ch, chan_entry *e, bool send);
/* Removes e from ch's queue if it is still there. */
void weft__chan_dequeue(weft_chan *ch, chan_entry *e, bool send);

/* Reference counting (timer channels hold one while their callback is armed). */
void weft__chan_unref(weft_chan *ch);
/* Allocates a channel without any validation beyond the sizes (shared by the constructors). */
int weft__chan_new(const weft_chan_opts *o, weft_chan **out);
/* Stops a timer channel's timer (chan_timer.c). */
void weft__chan_timer_stop(struct chan_timer *t);
void weft__chan_timer_free(struct chan_timer *t);

#endif
