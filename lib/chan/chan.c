/* lib/chan/chan.c: channels — the ring, the wait queues, close, capacity-0 hand-off, queries.
 * Blocking send / recv and select are in chan_wait.c, timer channels in chan_timer.c.
 *
 * Design notes.
 *
 * Shape. A buffered channel (capacity > 0) is a bounded MPMC ring with a sequence word per slot (Vyukov):
 * a producer claims position p by CAS on the tail, copies the element in and publishes the slot by storing
 * its sequence; a consumer claims by CAS on the head, copies out, and frees the slot for position p + cap.
 * An uncontended send or receive is one CAS on its own side's line plus loads and one store on the slot's
 * line: no lock, no fence beyond the CAS, no syscall (Go's channels take a lock per operation; a mutex and
 * condition variable queue costs several times this ring). A capacity-0 channel has no
 * ring: it is Go's design — a mutex, a queue of waiting senders and one of waiting receivers, and direct
 * hand-off from one thread's element to the other's buffer.
 *
 * Who wakes whom, without touching a lock on the fast path. The wait queues sit under `mu` and are used
 * only by threads that block. Whether anyone is queued is mirrored into the very words the fast path
 * already CASes: bit RWAIT in the tail word (receivers queued: producers must wake one), bit SWAIT in the
 * head word (senders queued: consumers must wake one). A blocking receiver, under mu, queues its entry and
 * sets RWAIT with fetch_or on the tail, which returns the tail position t; it then reads the head h.
 *   - If t > h, an element is claimed (published or being published): not safe to sleep, retry.
 *   - If t == h, the ring was empty at the fetch_or; every producer that claims a position later does its
 *     CAS on the tail after the fetch_or in the word's modification order, so its CAS sees RWAIT (a CAS
 *     against a value without the bit fails) and it wakes a receiver after publishing.
 * Senders are symmetric (fetch_or SWAIT on the head, then t - h < cap means room is being made). RWAIT and
 * SWAIT change only under mu and mirror exactly "the queue is non-empty", so a bit is never cleared while
 * a waiter still depends on it. No extra atomic, fence or shared line is added to the fast path: the bits
 * ride in words it owns already. The closed state is bit CLOSED in the tail word, so close is linearised
 * against every send: a send whose CAS succeeded is in the ring, every later CAS fails and sees CLOSED, and
 * receivers report WEFT_ECLOSED only once head == tail with CLOSED set.
 *
 * Claims. A blocked operation (one send / recv, or a select over many channels) has one chan_op on its
 * stack with a `done` word, and one chan_entry per case in the queues. Whoever completes or wakes the
 * operation first claims it with a CAS on `done` (0 -> kind | case+1), always under the lock of the queue
 * the entry is in, and signals the owner's park.c waiter after unlocking. Kinds: HANDOFF (capacity 0: the
 * element has moved), HINT (a buffered channel gained an element / room, or was closed: retry that case),
 * SELF (the owner gave up: ready after all, cancelled, timed out). Because a claim is made under the
 * queue's lock and the owner takes each lock to unqueue its entries, once the owner has unqueued
 * everything nobody can claim it any more. A waiter that finds itself claimed by someone else waits for
 * the token (the claimer is between unlock and signal), so a hand-off that raced with a cancel wins, as
 * park.c prescribes. One claim per wake-up means one wake per element: a producer pops entries until one
 * claims; entries whose op was claimed elsewhere are dropped from the queue on the way.
 *
 * Nothing is lost. A woken (hinted) waiter retries its hinted case first, even when its context ended
 * meanwhile, so an element announced to it is either taken by it or was taken by someone else; the
 * announcement is never dropped with an element still waiting and another receiver asleep.
 *
 * Lock order. Only one channel lock is ever held at a time (a select queues itself one channel after the
 * other; the claim protocol, not a global lock order, makes it atomic). chan_timer.c's timer lock may be
 * held when taking a channel lock, never the reverse.
 *
 * Spinning. A blocking call first retries the ring briefly (no lock, no writes while it is empty or full),
 * then queues and lets park.c spin on its token before parking on the context's wake word; cancelling the
 * context wakes every thread parked under it with one futex wake-all.
 *
 * Reservations (reserve.h). A pool reserves room for a completion at submit and sends it when the job
 * ends, from a worker that must never wait. `resv` counts reservations not yet used. A reservation is taken
 * by CAS on resv from r to r + 1 only when r + (tail - head) < cap, with resv read before head and head
 * before tail (so the length read is never below the truth at the resv read). The length can grow between
 * the reads and the CAS only by a reserved send, which decrements resv after its send, so either the CAS
 * fails (it decremented) or that element is counted twice (in r and the length): never too few. Receivers
 * only make room. Hence, as long as nothing but reserved sends fills the channel, reservations + buffered
 * <= cap, and a reserved send always finds its slot free, except for the instant a receiver that claimed
 * the oldest element takes to copy it out: the send waits for that (it sees head advanced) and only for
 * that. The double count must not make a reservation fail when there is room (a pool would refuse a
 * submit with WEFT_EFULL although its completion channel is not full): a reserved send counts itself in
 * `rsending` from before its send until after its resv decrement, and a reservation that finds the
 * channel full says so only if no reserved send was in that window (rsending read 0) and resv had not
 * moved since it was read; otherwise it waits out those few instructions and looks again. An element
 * seen in the length whose sender had not yet decremented resv when resv was read has its sender inside
 * the window when rsending is read (its increment precedes the publish seen), or past it, and then resv
 * moved.
 *
 * Descriptor (weft_chan_fd). An eventfd made on first use, readable exactly while a receive would not
 * block: the element at the head is published, or the channel is closed. Channels without one pay
 * nothing: attaching it sets bit FD in the tail word and in the head word, which the fast path already
 * tests together with RWAIT / SWAIT (one mask, same branch). With the bits set, every send and receive
 * calls fd_update() after its operation. fd_update() recomputes readiness from the ring under fd_mu and
 * writes or reads the eventfd only on a change (fd_set mirrors its counter, 0 or 1): the last update
 * after any change sees that change, so the descriptor ends in the ring's state, never stuck readable
 * after a drain and never missing an element. A sender skips the lock when fd_set is already true
 * (the common case while a loop is behind): it published, fenced, and read fd_set; an update that clears
 * fd_set stores false, fences, then re-reads readiness, so one of the two sees the other (Dekker) and the
 * element is never left unsignalled. Senders whose CAS preceded the bits may not have published yet when
 * the descriptor is attached; weft_chan_fd() waits for those few before its first update. Capacity-0
 * channels have no buffer to be readable for: weft_chan_fd() refuses them.
 *
 * What each of these choices is worth was measured with weft-bench (bench/README.md): the pre-queue spin's
 * backoff (chan_wait.c) for chan_spsc; checking for close only every 32nd retry (the check reads the tail,
 * which every send writes) and re-polling small rings after every pause for chan_pingpong.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "chan/chan_impl.h"
#include "chan/reserve.h"

/* ---- construction ------------------------------------------------------------------------------- */

int weft__chan_new(const weft_chan_opts *o, weft_chan **out) {
  if (o->elem_size == 0) return WEFT_EINVAL;
  size_t stride = 0, bytes = 0;
  if (__builtin_add_overflow(o->elem_size, (size_t)8 + 7, &stride)) return WEFT_EINVAL;
  stride &= ~(size_t)7;
  if (__builtin_mul_overflow(stride, o->capacity, &bytes) || bytes > (size_t)PTRDIFF_MAX / 2 ||
      o->capacity > (SIZE_MAX >> 3))
    return WEFT_EINVAL;
  weft_chan *ch = aligned_alloc(WEFT__CACHELINE, sizeof *ch);
  if (ch == NULL) return WEFT_ENOMEM;
  memset(ch, 0, sizeof *ch);
  if (o->capacity > 0) {
    size_t rounded = (bytes + WEFT__CACHELINE - 1) & ~(size_t)(WEFT__CACHELINE - 1);
    ch->slots = aligned_alloc(WEFT__CACHELINE, rounded);
    if (ch->slots == NULL) goto fail_slots;
    for (size_t i = 0; i < o->capacity; i++)
      atomic_init(chan__seq(ch->slots + i * stride), 2 * (uint64_t)i); /* slot i is free for position i */
  }
  ch->cap = o->capacity;
  ch->elem_size = o->elem_size;
  ch->stride = stride;
  ch->pow2 = o->capacity > 0 && (o->capacity & (o->capacity - 1)) == 0;
  ch->mask = ch->pow2 ? (uint64_t)o->capacity - 1 : 0;
  ch->discard = o->discard;
  ch->discard_arg = o->discard_arg;
  WEFT__ASSERT(pthread_mutex_init(&ch->mu, NULL) == 0);
  WEFT__ASSERT(pthread_mutex_init(&ch->fd_mu, NULL) == 0);
  atomic_init(&ch->efd, -1);
  atomic_init(&ch->fd_set, false);
  atomic_init(&ch->tail, 0);
  atomic_init(&ch->head, 0);
  atomic_init(&ch->closed0, 0);
  atomic_init(&ch->refs, 1);
  *out = ch;
  return 0;
fail_slots:
  free(ch);
  return WEFT_ENOMEM;
}

int weft_chan_create_opts(const weft_chan_opts *opts, weft_chan **out) {
  if (out == NULL) return WEFT_EINVAL;
  *out = NULL;
  if (opts == NULL) return WEFT_EINVAL;
  return weft__chan_new(opts, out);
}

int weft_chan_create(size_t elem_size, size_t capacity, weft_chan **out) {
  weft_chan_opts o = WEFT_CHAN_OPTS_INIT;
  o.elem_size = elem_size;
  o.capacity = capacity;
  return weft_chan_create_opts(&o, out);
}

static void chan_free(weft_chan *ch) {
  if (ch->timer) weft__chan_timer_free(ch->timer);
  if (ch->cap > 0 && ch->discard) {
    uint64_t h = CHAN_H_POS(atomic_load(&ch->head)), t = CHAN_T_POS(atomic_load(&ch->tail));
    for (uint64_t p = h; p != t; p++) {
      unsigned char *s = chan__slot(ch, p);
      if (atomic_load(chan__seq(s)) == 2 * p + 1) ch->discard(s + 8, ch->discard_arg);
    }
  }
  pthread_mutex_destroy(&ch->mu);
  pthread_mutex_destroy(&ch->fd_mu);
  int fd = atomic_load(&ch->efd);
  if (fd >= 0) close(fd);
  free(ch->slots);
  free(ch);
}

void weft__chan_unref(weft_chan *ch) {
  if (atomic_fetch_sub_explicit(&ch->refs, 1, memory_order_acq_rel) == 1) chan_free(ch);
}

int weft_chan_destroy(weft_chan *ch) {
  if (ch == NULL) return WEFT_EINVAL;
  pthread_mutex_lock(&ch->mu);
  bool busy = ch->recvq.head != NULL || ch->sendq.head != NULL;
  pthread_mutex_unlock(&ch->mu);
  if (busy) return WEFT_EBUSY;
  if (ch->timer) weft__chan_timer_stop(ch->timer);
  weft__chan_unref(ch);
  return 0;
}

/* ---- wait queues (under mu) --------------------------------------------------------------------- */

static void q_push(chan_queue *q, chan_entry *e) {
  e->next = NULL;
  e->prev = q->tail;
  if (q->tail) q->tail->next = e; else q->head = e;
  q->tail = e;
  e->linked = true;
}

static void q_unlink(chan_queue *q, chan_entry *e) {
  if (e->prev) e->prev->next = e->next; else q->head = e->next;
  if (e->next) e->next->prev = e->prev; else q->tail = e->prev;
  e->next = e->prev = NULL;
  e->linked = false;
}

/* Pops entries until one whose operation this call claims with `kind`; returns it (unlinked) or NULL.
 * Entries of operations already claimed elsewhere are dropped on the way. */
static chan_entry *q_claim(chan_queue *q, uint32_t kind) {
  while (q->head) {
    chan_entry *e = q->head;
    q_unlink(q, e);
    uint32_t zero = 0;
    if (atomic_compare_exchange_strong(&e->op->done, &zero, kind | (e->idx + 1))) return e;
  }
  return NULL;
}

/* Is there an entry that a claim could take, other than entries of `self`? */
static bool q_has_open(const chan_queue *q, const chan_op *self) {
  for (const chan_entry *e = q->head; e; e = e->next)
    if (e->op != self && atomic_load_explicit(&e->op->done, memory_order_relaxed) == 0) return true;
  return false;
}

/* Keeps the waiter bits equal to "that queue is non-empty" (call under mu after changing a queue). */
static void sync_bits(weft_chan *ch) {
  if (ch->cap == 0) return;
  if (ch->recvq.head == NULL && (atomic_load_explicit(&ch->tail, memory_order_relaxed) & CHAN_T_RWAIT))
    atomic_fetch_and(&ch->tail, ~CHAN_T_RWAIT);
  if (ch->sendq.head == NULL && (atomic_load_explicit(&ch->head, memory_order_relaxed) & CHAN_H_SWAIT))
    atomic_fetch_and(&ch->head, ~CHAN_H_SWAIT);
}

void weft__chan_wake(weft_chan *ch, bool senders) {
  pthread_mutex_lock(&ch->mu);
  chan_entry *e = q_claim(senders ? &ch->sendq : &ch->recvq, CLAIM_HINT);
  weft__waiter *w = e ? e->op->w : NULL;
  sync_bits(ch);
  pthread_mutex_unlock(&ch->mu);
  if (w) weft__waiter_signal(w, 1);
}

/* ---- the readiness descriptor (see "Descriptor" above) ------------------------------------------ */

/* A receive would not block: the element at the head is published, or the channel is closed. */
static bool fd_ready(weft_chan *ch) {
  if (atomic_load(&ch->tail) & CHAN_T_CLOSED) return true;
  uint64_t p = CHAN_H_POS(atomic_load(&ch->head));
  return atomic_load(chan__seq(chan__slot(ch, p))) == 2 * p + 1;
}

static void efd_write(int fd) {
  uint64_t one = 1;
  while (write(fd, &one, sizeof one) < 0 && errno == EINTR) {
  }
}
static void efd_read(int fd) {
  uint64_t v;
  while (read(fd, &v, sizeof v) < 0 && errno == EINTR) {
  }
}

/* Under fd_mu: brings the eventfd to the ring's state. */
static void fd_update_locked(weft_chan *ch) {
  int fd = atomic_load_explicit(&ch->efd, memory_order_relaxed);
  if (atomic_load_explicit(&ch->fd_set, memory_order_relaxed)) {
    if (fd_ready(ch)) return;
    atomic_store(&ch->fd_set, false);
    efd_read(fd);
    atomic_thread_fence(memory_order_seq_cst); /* Dekker with a sender that skipped: see the notes */
    if (!fd_ready(ch)) return;
  } else if (!fd_ready(ch)) {
    return;
  }
  efd_write(fd);
  atomic_store(&ch->fd_set, true);
}

static void fd_update(weft_chan *ch) {
  pthread_mutex_lock(&ch->fd_mu);
  fd_update_locked(ch);
  pthread_mutex_unlock(&ch->fd_mu);
}

void weft__chan_after_send(weft_chan *ch, uint64_t t) {
  if (t & CHAN_T_RWAIT) weft__chan_wake(ch, false);
  if (t & CHAN_T_FD) {
    atomic_thread_fence(memory_order_seq_cst); /* our publish before the read of fd_set */
    if (!atomic_load(&ch->fd_set)) fd_update(ch);
  }
}

void weft__chan_after_recv(weft_chan *ch, uint64_t h) {
  if (h & CHAN_H_SWAIT) weft__chan_wake(ch, true);
  if (h & CHAN_H_FD) fd_update(ch);
}

int weft_chan_fd(weft_chan *ch) {
  if (ch == NULL || ch->cap == 0) return WEFT_EINVAL;
  int fd = atomic_load_explicit(&ch->efd, memory_order_acquire);
  if (fd >= 0) return fd;
  pthread_mutex_lock(&ch->fd_mu);
  fd = atomic_load(&ch->efd);
  if (fd < 0) {
    fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) {
      int e = errno;
      pthread_mutex_unlock(&ch->fd_mu);
      return e == ENOMEM ? WEFT_ENOMEM : WEFT_ESYS;
    }
    atomic_store(&ch->efd, fd);
    atomic_fetch_or(&ch->head, CHAN_H_FD);
    uint64_t t = CHAN_T_POS(atomic_fetch_or(&ch->tail, CHAN_T_FD));
    /* Senders that claimed a position before the bit do not update the descriptor: wait until each has
     * published (or its element was taken already), then take the state once. */
    for (uint64_t p = CHAN_H_POS(atomic_load(&ch->head)); (int64_t)(t - p) > 0; p++)
      for (unsigned i = 0; atomic_load(chan__seq(chan__slot(ch, p))) == 2 * p; i++)
        if (i % 16 == 15) sched_yield(); else weft__cpu_relax();
    fd_update_locked(ch);
  }
  pthread_mutex_unlock(&ch->fd_mu);
  return fd;
}

bool weft__chan_enqueue(weft_chan *ch, chan_entry *e, bool send) {
  bool ready;
  pthread_mutex_lock(&ch->mu);
  q_push(send ? &ch->sendq : &ch->recvq, e);
  if (ch->cap == 0) {
    ready = atomic_load_explicit(&ch->closed0, memory_order_relaxed) ||
            q_has_open(send ? &ch->recvq : &ch->sendq, e->op);
  } else if (send) {
    uint64_t h = atomic_fetch_or(&ch->head, CHAN_H_SWAIT);
    uint64_t t = atomic_load(&ch->tail);
    ready = (t & CHAN_T_CLOSED) || (int64_t)(CHAN_T_POS(t) - CHAN_H_POS(h)) < (int64_t)ch->cap;
  } else {
    uint64_t t = atomic_fetch_or(&ch->tail, CHAN_T_RWAIT);
    uint64_t h = atomic_load(&ch->head);
    ready = (t & CHAN_T_CLOSED) || CHAN_T_POS(t) != CHAN_H_POS(h);
  }
  if (!ready) {
    if (send) ch->send_waits++; else ch->recv_waits++;
  }
  pthread_mutex_unlock(&ch->mu);
  return ready;
}

void weft__chan_dequeue(weft_chan *ch, chan_entry *e, bool send) {
  pthread_mutex_lock(&ch->mu);
  if (e->linked) {
    q_unlink(send ? &ch->sendq : &ch->recvq, e);
    sync_bits(ch);
  }
  pthread_mutex_unlock(&ch->mu);
}

/* ---- capacity 0 --------------------------------------------------------------------------------- */

int weft__chan_try_send0(weft_chan *ch, const void *elem) {
  pthread_mutex_lock(&ch->mu);
  if (atomic_load_explicit(&ch->closed0, memory_order_relaxed)) {
    pthread_mutex_unlock(&ch->mu);
    return WEFT_ECLOSED;
  }
  chan_entry *e = q_claim(&ch->recvq, CLAIM_HANDOFF);
  if (e) ch->sends0++, ch->recvs0++;
  pthread_mutex_unlock(&ch->mu);
  if (e == NULL) return WEFT_EFULL;
  /* The receiver is claimed and waits for the token: its buffer stays valid until we signal. */
  if (e->elem) chan__copy(e->elem, elem, ch->elem_size);
  weft__waiter_signal(e->op->w, 1);
  return 0;
}

int weft__chan_try_recv0(weft_chan *ch, void *elem) {
  pthread_mutex_lock(&ch->mu);
  chan_entry *e = q_claim(&ch->sendq, CLAIM_HANDOFF);
  if (e) ch->sends0++, ch->recvs0++;
  bool closed = atomic_load_explicit(&ch->closed0, memory_order_relaxed);
  pthread_mutex_unlock(&ch->mu);
  if (e == NULL) return closed ? WEFT_ECLOSED : WEFT_EEMPTY;
  if (elem) chan__copy(elem, e->elem, ch->elem_size);
  weft__waiter_signal(e->op->w, 1);
  return 0;
}

/* ---- non-blocking operations, close ------------------------------------------------------------- */

int weft_chan_try_send(weft_chan *ch, const void *elem) {
  if (ch == NULL || elem == NULL) return WEFT_EINVAL;
  return chan__try(ch, true, (void *)elem);
}

int weft_chan_try_recv(weft_chan *ch, void *elem) {
  if (ch == NULL || elem == NULL) return WEFT_EINVAL;
  return chan__try(ch, false, elem);
}

int weft_chan_close(weft_chan *ch) {
  if (ch == NULL) return WEFT_EINVAL;
  pthread_mutex_lock(&ch->mu);
  bool was, has_fd = false;
  if (ch->cap == 0) {
    was = atomic_exchange(&ch->closed0, 1) != 0;
  } else {
    uint64_t old = atomic_fetch_or(&ch->tail, CHAN_T_CLOSED);
    was = (old & CHAN_T_CLOSED) != 0;
    has_fd = (old & CHAN_T_FD) != 0;
  }
  if (was) {
    pthread_mutex_unlock(&ch->mu);
    return WEFT_ECLOSED;
  }
  /* Claim every queued operation; chain the claimed entries through `next` (they are unlinked now and
   * ours until signalled) and signal them after unlocking. */
  chan_entry *woken = NULL, *e;
  while ((e = q_claim(&ch->recvq, CLAIM_HINT)) != NULL) e->next = woken, woken = e;
  while ((e = q_claim(&ch->sendq, CLAIM_HINT)) != NULL) e->next = woken, woken = e;
  sync_bits(ch);
  pthread_mutex_unlock(&ch->mu);
  while (woken) {
    e = woken;
    woken = e->next; /* read before the signal: the entry may vanish right after it */
    weft__waiter_signal(e->op->w, 1);
  }
  if (has_fd) fd_update(ch); /* closed: readable from now on */
  return 0;
}

/* ---- queries ------------------------------------------------------------------------------------ */

size_t weft_chan_len(const weft_chan *ch) {
  if (ch == NULL || ch->cap == 0) return 0;
  uint64_t h = CHAN_H_POS(atomic_load_explicit(&ch->head, memory_order_acquire));
  uint64_t t = CHAN_T_POS(atomic_load_explicit(&ch->tail, memory_order_acquire));
  int64_t n = (int64_t)(t - h);
  if (n < 0) return 0;
  return (uint64_t)n > ch->cap ? ch->cap : (size_t)n;
}

size_t weft_chan_cap(const weft_chan *ch) { return ch ? ch->cap : 0; }
size_t weft_chan_elem_size(const weft_chan *ch) { return ch ? ch->elem_size : 0; }

bool weft_chan_closed(const weft_chan *ch) {
  if (ch == NULL) return false;
  if (ch->cap == 0) return atomic_load(&ch->closed0) != 0;
  return (atomic_load(&ch->tail) & CHAN_T_CLOSED) != 0;
}

int weft_chan_stats(const weft_chan *ch, struct weft_chan_stats *out) {
  if (ch == NULL || out == NULL) return WEFT_EINVAL;
  weft_chan *m = (weft_chan *)ch; /* the lock is not part of the channel's logical state */
  pthread_mutex_lock(&m->mu);
  if (ch->cap == 0) {
    out->sends = ch->sends0;
    out->recvs = ch->recvs0;
  } else {
    out->sends = CHAN_T_POS(atomic_load(&m->tail));
    out->recvs = CHAN_H_POS(atomic_load(&m->head));
  }
  out->send_waits = ch->send_waits;
  out->recv_waits = ch->recv_waits;
  pthread_mutex_unlock(&m->mu);
  return 0;
}

/* ---- reserved sends (reserve.h; see "Reservations" above) --------------------------------------- */

int weft__chan_reserve(weft_chan *ch) {
  uint64_t r = atomic_load(&ch->resv);
  for (unsigned i = 0;; i++) {
    uint64_t h = CHAN_H_POS(atomic_load(&ch->head));
    uint64_t t = atomic_load(&ch->tail);
    if (t & CHAN_T_CLOSED) return WEFT_ECLOSED;
    uint64_t len = CHAN_T_POS(t) - h;
    if (r < ch->cap && len < ch->cap - r) {
      if (atomic_compare_exchange_weak(&ch->resv, &r, r + 1)) break;
      continue;
    }
    /* Full, unless a reserved send was counted twice (see "Reservations"). */
    if (atomic_load(&ch->rsending) == 0) {
      uint64_t now = atomic_load(&ch->resv);
      if (now == r) return WEFT_EFULL;
      r = now;
      continue;
    }
    if (i % 8 == 7)
      sched_yield();
    else
      weft__cpu_relax();
    r = atomic_load(&ch->resv);
  }
  atomic_fetch_add(&ch->refs, 1);
  return 0;
}

void weft__chan_unreserve(weft_chan *ch) {
  atomic_fetch_sub(&ch->resv, 1);
  weft__chan_unref(ch);
}

int weft__chan_send_reserved(weft_chan *ch, const void *elem) {
  int rc;
  atomic_fetch_add(&ch->rsending, 1);
  for (unsigned i = 0;; i++) {
    if ((rc = chan__ring_send(ch, elem)) != WEFT_EFULL) break;
    /* Full by the slots: is a receiver still copying the oldest element out (head moved past it)? Then
     * room is a few instructions away. Otherwise the room was taken by sends without a reservation. */
    uint64_t t = CHAN_T_POS(atomic_load(&ch->tail)), h = CHAN_H_POS(atomic_load(&ch->head));
    if (t - h >= ch->cap) break;
    if (i % 8 == 7)
      sched_yield();
    else
      weft__cpu_relax();
  }
  atomic_fetch_sub(&ch->resv, 1);
  atomic_fetch_sub(&ch->rsending, 1);
  weft__chan_unref(ch);
  return rc;
}
