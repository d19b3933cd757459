/* lib/jobs/jobq.c: the job queue — per-worker lanes without locks, fed by any number of submitters (the only
 * file of the pool that calls Concurrency Kit).
 *
 * Design notes.
 *
 * Shape. One lane per worker (Go's per-P run queue), each a bounded ring with a sequence word per slot
 * (Vyukov's, as lib/chan/chan.c uses): producers claim a position with one CAS on the lane's tail and
 * publish by storing the slot's sequence; consumers (the owner, and thieves that probe rarely) claim a run
 * of published slots with one CAS on the head. Nobody polls a word the other side writes on every
 * operation: a single shared ring, ck_ring's SPSC ring (its enqueue reloads the consumer's head on every
 * push), and thieves probing on every idle turn were each several times slower (bench/README.md, "How the
 * job queue's shape was measured", has the figures).
 *
 * Keeping slot lines out of each other's way. A push's stores that miss wait in the store buffer, and the
 * next push's locked CAS waits for them to drain: every slot line the submitter has to fetch back from a
 * worker costs it a whole cross-core round trip. Two habits caused such misses, and each has its remedy:
 * (a) a worker that keeps up with the submitter would claim one or two jobs at a time, reading each slot
 * line while the submitter is still writing it; so a worker that has just run a batch claims only a full
 * batch (WEFT__JOBQ_BATCH, 16), testing for one by reading the batch's last slot first; if it is not there,
 * it yields once and then takes whatever is published, so a lone job still starts after one idle probe. The
 * test reads only the consumers' copy of the capacity (ccap), never the producers' line. A yield rather than
 * a spin of pauses: a pause's length varies between processors, a yield's purpose does not. (b) A freed line
 * would stay in the worker's cache until the submitter came round the ring; so a push prefetches for
 * writing the slot PREFETCH_AHEAD (128) positions ahead, a line the workers finished with long ago.
 *
 * Concurrency Kit. This file is the pool's one user of ck, and uses ck_pr only (load/store/CAS/or/fences:
 * a plain mov on x86 for the loads and stores, lock cmpxchg for the claims, lock or for close), because
 * ck_pr states each operation's ordering and compiles to the instruction meant on every target ck supports.
 * ck_ring itself is not used: its SP enqueue reads c_head on every push, its MP variants put the CAS on the
 * line the consumers poll, and it has no batch claim.
 *
 * A lane is multi-producer and multi-consumer without a lock. A slot's sequence word is 2p while the slot is
 * free for position p and 2p + 1 once the job of position p is in it. A producer CASes the tail from p only
 * when slot p says free for p; a consumer CASes the head from h to h + k only over k slots that say
 * published, then copies them and frees each one for position + ring size. The slots between a claim and
 * its free store belong to that consumer alone, so no copy is ever thrown away. The tail word is
 * position << 1 | CLOSED; positions are 64-bit and never wrap in practice, so tail is also "jobs ever
 * pushed" on that lane. A logical capacity below the ring's size (queue_cap not a power of two per lane) is
 * kept with a cached head next to the tail, refreshed only when the lane looks full.
 *
 * Who wakes whom. A worker with nothing to do spins (own lane every probe, siblings every 8th, a
 * sched_yield on every probe so a submitter sharing the core runs: see IDLE_PROBES), then parks through
 * park.c: it stores state=PARKED, increments nparked, re-checks every lane and `closed`, then sleeps. A
 * producer publishes its slot, then loads nparked (one read-mostly line): 0 means every worker is awake and
 * will find the job. Otherwise (slow path) it wakes the lane's owner if that one is parked, or another
 * parked worker if the owner is busy running a job (so a job queued behind a long one is stolen). The
 * Dekker on (slot, nparked) needs a store-load order on both sides; it is made asymmetric: instead of an
 * mfence after every push (it drains the store buffer while consumers hold the tail line: half the
 * samples of a ~100 ns/job run in perf), the parking worker calls membarrier(MEMBARRIER_CMD_PRIVATE_
 * EXPEDITED) (cheap next to the park it precedes), which runs a full barrier on every running thread of the
 * process before the re-check (which counts a claimed, not yet published position as work); without
 * membarrier the producer falls back to the fence. close() stores `closed`, sets CLOSED in every tail (so
 * every later push fails), waits for the pushes that claimed a position before it to publish, fences, then
 * signals every parked worker; a parking worker's locked increment orders its PARKED store before its read
 * of `closed`.
 *
 * ThreadSanitizer does not see ck_pr's inline assembly, so the functions touching lanes are not
 * instrumented (WEFT__NO_TSAN) and the hand-off is described to TSan explicitly: a release on the lane
 * before a push publishes its slot, an acquire on it after a claim. Everything the submitter wrote before
 * submitting thus happens-before the job in TSan's eyes, as it does on the hardware. What TSan does not
 * check here is the lane protocol itself (the CAS claims and sequence words); the stress tests
 * (tests/test_pool_stress.c) check its invariants instead: nothing lost, nothing run twice.
 */
#include <ck_pr.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>

#include "common/internal.h"
#include "jobs/jobq.h"

#if defined(WEFT_TSAN)
#include <sanitizer/tsan_interface.h>
#define WEFT__NO_TSAN __attribute__((no_sanitize_thread, noinline))
#define TSAN_RELEASE(p) __tsan_release(p)
#define TSAN_ACQUIRE(p) __tsan_acquire(p)
#else
#define WEFT__NO_TSAN
#define TSAN_RELEASE(p) ((void)0)
#define TSAN_ACQUIRE(p) ((void)0)
#endif

#define CL WEFT__CACHELINE
enum { LANE_RUNNING = 0, LANE_SPINNING = 1, LANE_PARKED = 2 };

/* Idle spinning: probes before parking. Each probe yields the core, because a pool is assumed to have as
 * many threads as cores or more (its workers and the submitters): a worker spinning on pause instructions
 * would starve a submitter sharing its core (bench/README.md has the figures). 1024 probes last well under
 * a millisecond. */
#ifndef IDLE_PROBES
#define IDLE_PROBES 1024
#endif
#ifndef STEAL_EVERY
#define STEAL_EVERY 8
#endif
#ifndef YIELD_EVERY
#define YIELD_EVERY 1
#endif
/* A push prefetches, for writing, the slot this many positions ahead of its own (see the design notes). */
#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 128
#endif

/* A ring slot: the job and its sequence word. seq is 2p while the slot is free for position p, 2p + 1
 * once the job of position p is in it (the encoding chan.c uses). */
typedef struct vslot {
  uint64_t seq;
  weft_job_fn fn;
  void *arg;
  int64_t ts;
} vslot;

typedef struct lane {
  /* consumers: CAS'd by the owner and by thieves */
  uint64_t head __attribute__((aligned(CL)));
  vslot *cbuf; /* the consumers' copy of the ring's shape and logical capacity (the producers' line is
                * written by every push: a consumer reading it would pull it over on every claim) */
  uint64_t cmask, ccap;
  /* producers: position << 1 | CLOSED, CAS'd by every producer; the ring's shape, and a cached head
   * (a lower bound, refreshed only when the lane looks full) for a logical capacity below the ring's */
  uint64_t tail __attribute__((aligned(CL)));
  uint64_t chead;
  vslot *pbuf;
  uint64_t pmask, cap;
  uint64_t pfd; /* how far ahead of its slot a push prefetches (PREFETCH_AHEAD, less in small rings) */
  /* the owner's idle state: written on idle transitions, read by producers only on the slow path */
  uint32_t state __attribute__((aligned(CL))); /* LANE_* */
  weft__waiter *waiter;                         /* the owner's park record */
} lane;
#define T_CLOSED UINT64_C(1)

struct weft__jobq {
  unsigned nlanes;
  size_t cap;
  lane *lanes;
  uint32_t nparked __attribute__((aligned(CL))); /* read by every push: changes only on park/unpark */
  uint32_t closed;
  bool asym; /* membarrier available: pushes need no fence (asym_heavy() on the parking side) */
};

static _Thread_local unsigned tl_rr; /* per-thread round-robin hint, shared by every queue */

/* The asymmetric fence (see the design notes): registered once per process; false when the kernel (or a
 * seccomp filter) refuses, and then producers use a full fence after every push. */
static pthread_once_t asym_once = PTHREAD_ONCE_INIT;
static bool asym_ok;
static void asym_init(void) {
  long q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  asym_ok = q > 0 && (q & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
            syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}
/* The heavy side: every thread of the process that is running passes a full barrier before this returns. */
static void asym_heavy(const weft__jobq *q) {
  if (q->asym && syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0) return;
  ck_pr_fence_memory();
}

int weft__jobq_create(weft__jobq **out, unsigned nlanes, size_t cap) {
  *out = NULL;
  weft__jobq *q = aligned_alloc(CL, (sizeof *q + CL - 1) / CL * CL);
  if (q == NULL) goto fail0;
  memset(q, 0, sizeof *q);
  q->nlanes = nlanes;
  pthread_once(&asym_once, asym_init);
  q->asym = asym_ok;
  q->lanes = aligned_alloc(CL, sizeof(lane) * nlanes);
  if (q->lanes == NULL) goto fail1;
  memset(q->lanes, 0, sizeof(lane) * nlanes);
  /* Exactly cap in all: the first cap % nlanes lanes hold one more than the others (a lane of capacity 0
   * is never pushed to; its worker steals). */
  uint64_t base = cap / nlanes, extra = cap % nlanes, sz = 2;
  while (sz < base + (extra != 0)) sz <<= 1;
  q->cap = cap;
  for (unsigned i = 0; i < nlanes; i++) {
    lane *l = &q->lanes[i];
    l->cap = l->ccap = base + (i < extra);
    l->pmask = l->cmask = sz - 1;
    l->pfd = sz >= 4 * PREFETCH_AHEAD ? PREFETCH_AHEAD : sz / 4;
    l->state = LANE_SPINNING;
    l->pbuf = l->cbuf = aligned_alloc(CL, sz * sizeof(vslot));
    if (l->pbuf == NULL) goto fail2;
    for (uint64_t j = 0; j < sz; j++) l->pbuf[j] = (vslot){2 * j, NULL, NULL, 0};
  }
  *out = q;
  return 0;
fail2:
  for (unsigned i = 0; i < nlanes; i++) free(q->lanes[i].pbuf);
  free(q->lanes);
fail1:
  free(q);
fail0:
  return WEFT_ENOMEM;
}

void weft__jobq_destroy(weft__jobq *q) {
  if (q == NULL) return;
  for (unsigned i = 0; i < q->nlanes; i++) free(q->lanes[i].pbuf);
  free(q->lanes);
  free(q);
}

WEFT__NO_TSAN void weft__jobq_attach(weft__jobq *q, unsigned self, weft__waiter *w) {
  TSAN_RELEASE(&q->lanes[self].waiter); /* the record's initialisation happens-before any signal */
  ck_pr_store_ptr(&q->lanes[self].waiter, w);
}

/* Signals the owner of l if it attached (any thread). */
WEFT__NO_TSAN static bool lane_wake(lane *l) {
  weft__waiter *w = ck_pr_load_ptr(&l->waiter);
  if (w == NULL) return false;
  TSAN_ACQUIRE(&l->waiter);
  return weft__waiter_signal(w, 1);
}

size_t weft__jobq_capacity(const weft__jobq *q) { return q->cap; }

/* ---- producer ----------------------------------------------------------------------------------- */

/* Pushes onto l. Returns 0, WEFT_EFULL or WEFT_ESTOPPED. */
WEFT__NO_TSAN static int lane_put(lane *l, const weft__jslot *s) {
  uint64_t t = ck_pr_load_64(&l->tail);
  for (;;) {
    if (t & T_CLOSED) return WEFT_ESTOPPED;
    uint64_t p = t >> 1;
    if (l->cap <= l->pmask && p - ck_pr_load_64(&l->chead) >= l->cap) { /* cap below the ring's size */
      uint64_t h = ck_pr_load_64(&l->head);
      if (p - h >= l->cap) return WEFT_EFULL;
      ck_pr_store_64(&l->chead, h);
    }
    vslot *v = &l->pbuf[p & l->pmask];
    /* Own the line a later push will write before it is needed: the store then hits, and the locked CAS
     * of that push does not wait for it to drain (see the design notes). */
    __builtin_prefetch(&l->pbuf[(p + l->pfd) & l->pmask], 1);
    int64_t dif = (int64_t)(ck_pr_load_64(&v->seq) - 2 * p);
    if (dif == 0) {
      if (ck_pr_cas_64_value(&l->tail, t, t + 2, &t)) {
        ck_pr_fence_acquire(); /* the slot's last reader (its free store, seen above) is done with it */
        v->fn = s->fn;
        v->arg = s->arg;
        v->ts = s->ts;
        TSAN_RELEASE(l);
        ck_pr_fence_store();
        ck_pr_store_64(&v->seq, 2 * p + 1);
        return 0;
      }
    } else if (dif < 0) {
      return WEFT_EFULL; /* the job of position p - ring size is still being taken */
    } else {
      t = ck_pr_load_64(&l->tail);
    }
  }
}

/* Slow path of a push: some worker is parked. Wake the lane's owner if it is the one parked; else, if the
 * owner is busy running a job (not spinning, so not about to look), wake any parked worker to steal. */
WEFT__NO_TSAN static void wake_for(weft__jobq *q, unsigned li) {
  lane *l = &q->lanes[li];
  uint32_t st = ck_pr_load_32(&l->state);
  if (st == LANE_PARKED) {
    lane_wake(l);
    return;
  }
  if (st == LANE_SPINNING) return;
  for (unsigned i = 1; i < q->nlanes; i++) {
    lane *o = &q->lanes[(li + i) % q->nlanes];
    if (ck_pr_load_32(&o->state) == LANE_PARKED && lane_wake(o)) return;
  }
}

WEFT__NO_TSAN int weft__jobq_push(weft__jobq *q, const weft__jslot *s) {
  /* Round robin without a division (a div was 7% of a push in perf). */
  unsigned n = q->nlanes, start = tl_rr < n ? tl_rr : 0;
  tl_rr = start + 1 < n ? start + 1 : 0;
  for (unsigned i = 0; i < n; i++) {
    unsigned li = start + i < n ? start + i : start + i - n;
    int rc = lane_put(&q->lanes[li], s);
    if (rc == WEFT_EFULL) continue;
    if (rc != 0) return rc;
    /* Dekker with a parking worker: the seq store before the nparked load. With membarrier the parking
     * worker forces that order on us, so a compiler barrier is enough here. */
    if (q->asym)
      ck_pr_barrier();
    else
      ck_pr_fence_memory();
    if (WEFT__UNLIKELY(ck_pr_load_32(&q->nparked) != 0)) wake_for(q, li);
    return 0;
  }
  return ck_pr_load_32(&q->closed) ? WEFT_ESTOPPED : WEFT_EFULL;
}

/* ---- consumers ---------------------------------------------------------------------------------- */

/* Claims up to max published jobs from l, in order, with one CAS on the head, then frees their slots;
 * claims nothing unless at least min (>= 1) are published, and then looks first at the last slot of
 * those min, so that a producer still filling the lines before it is not disturbed. A thief (owner false)
 * takes at most half of what is queued (rounded up), so work stays behind a long job for others too. */
WEFT__NO_TSAN static unsigned lane_claim(lane *l, weft__jslot *out, unsigned max, bool owner, uint64_t min) {
  for (;;) {
    uint64_t h = ck_pr_load_64(&l->head), lim = max;
    if (!owner) {
      uint64_t t = ck_pr_load_64(&l->tail) >> 1;
      if (t <= h) return 0;
      if ((t - h + 1) / 2 < lim) lim = (t - h + 1) / 2;
    }
    if (min > 1 && ck_pr_load_64(&l->cbuf[(h + min - 1) & l->cmask].seq) != 2 * (h + min - 1) + 1) return 0;
    uint64_t k = 0;
    while (k < lim && ck_pr_load_64(&l->cbuf[(h + k) & l->cmask].seq) == 2 * (h + k) + 1) k++;
    if (k < min) return 0;
    if (!ck_pr_cas_64(&l->head, h, h + k)) {
      ck_pr_stall();
      continue;
    }
    /* The k slots are ours until freed: no producer writes them before their seq says so. */
    ck_pr_fence_load();
    TSAN_ACQUIRE(l);
    for (uint64_t i = 0; i < k; i++) {
      vslot *v = &l->cbuf[(h + i) & l->cmask];
      out[i].fn = v->fn;
      out[i].arg = v->arg;
      out[i].ts = v->ts;
      ck_pr_fence_release(); /* the copy is done before the slot is handed back (loads before a store) */
      ck_pr_store_64(&v->seq, 2 * (h + i + l->cmask + 1));
    }
    return (unsigned)k;
  }
}

WEFT__NO_TSAN static unsigned steal(weft__jobq *q, unsigned self, weft__jslot *out, unsigned max) {
  unsigned n = q->nlanes;
  for (unsigned i = 1; i < n; i++) {
    lane *l = &q->lanes[(self + i) % n];
    if ((ck_pr_load_64(&l->tail) >> 1) == ck_pr_load_64(&l->head)) continue; /* probe without claiming */
    unsigned k = lane_claim(l, out, max, false, 1);
    if (k) return k;
  }
  return 0;
}

WEFT__NO_TSAN static bool all_empty(weft__jobq *q) {
  for (unsigned i = 0; i < q->nlanes; i++)
    if ((ck_pr_load_64(&q->lanes[i].tail) >> 1) != ck_pr_load_64(&q->lanes[i].head)) return false;
  return true;
}

WEFT__NO_TSAN unsigned weft__jobq_get(weft__jobq *q, unsigned self, weft__jslot *out, unsigned max) {
  lane *me = &q->lanes[self];
  /* A full batch, or nothing yet: a worker that keeps up with its producer would otherwise take one or
   * two jobs at a time, reading every line while it is being written (see the design notes). */
  unsigned k = lane_claim(me, out, max, true, max < me->ccap ? max : me->ccap);
  if (WEFT__LIKELY(k)) return k;
  ck_pr_store_32(&me->state, LANE_SPINNING);
  /* Probe 1 only checks for close and yields, giving the producer time to get ahead; from probe 2 on,
   * whatever is published is taken. */
  for (unsigned probe = 1;; probe++) {
    if (probe > 1 && (k = lane_claim(me, out, max, true, 1)) != 0) break;
    if (probe % STEAL_EVERY == 0 && (k = steal(q, self, out, max)) != 0) break;
    if (ck_pr_load_32(&q->closed) && all_empty(q)) return 0;
    if (probe < IDLE_PROBES) {
      if (probe % YIELD_EVERY == 0)
        sched_yield();
      else
        weft__cpu_relax();
      continue;
    }
    /* Park. */
    weft__waiter *w = me->waiter;
    weft__waiter_arm(w, NULL);
    ck_pr_store_32(&me->state, LANE_PARKED);
    ck_pr_inc_32(&q->nparked);
    asym_heavy(q); /* every producer's earlier tail store is visible to the re-check below */
    bool work = !all_empty(q) || ck_pr_load_32(&q->closed);
    if (!work) weft__waiter_wait(w, NULL, WEFT_FOREVER);
    ck_pr_dec_32(&q->nparked);
    ck_pr_store_32(&me->state, LANE_SPINNING);
    probe = work ? IDLE_PROBES / 2 : 1;
  }
  ck_pr_store_32(&me->state, LANE_RUNNING);
  return k;
}

WEFT__NO_TSAN unsigned weft__jobq_take(weft__jobq *q, weft__jslot *out, unsigned max) {
  for (unsigned i = 0; i < q->nlanes; i++) {
    unsigned k = lane_claim(&q->lanes[i], out, max, false, 1);
    if (k) return k;
  }
  return 0;
}

WEFT__NO_TSAN void weft__jobq_close(weft__jobq *q) {
  ck_pr_store_32(&q->closed, 1);
  for (unsigned i = 0; i < q->nlanes; i++) {
    lane *l = &q->lanes[i];
    ck_pr_or_64(&l->tail, T_CLOSED); /* every later CAS of a producer fails and sees it */
    /* A push whose CAS came first may still be writing its slot: wait until it is published, so that
     * whoever drains the queue after close() finds every job accepted. */
    uint64_t t = ck_pr_load_64(&l->tail) >> 1, h = ck_pr_load_64(&l->head);
    for (uint64_t p = h; p < t; p++)
      while (ck_pr_load_64(&l->cbuf[p & l->cmask].seq) == 2 * p) sched_yield();
  }
  ck_pr_fence_memory();
  for (unsigned i = 0; i < q->nlanes; i++) {
    lane *l = &q->lanes[i];
    if (ck_pr_load_32(&l->state) == LANE_PARKED) lane_wake(l);
  }
}

WEFT__NO_TSAN uint64_t weft__jobq_pushed(weft__jobq *q) {
  uint64_t s = 0;
  for (unsigned i = 0; i < q->nlanes; i++) s += ck_pr_load_64(&q->lanes[i].tail) >> 1;
  return s;
}

WEFT__NO_TSAN uint64_t weft__jobq_queued(weft__jobq *q) {
  uint64_t s = 0;
  for (unsigned i = 0; i < q->nlanes; i++) {
    uint64_t h = ck_pr_load_64(&q->lanes[i].head);
    uint64_t t = ck_pr_load_64(&q->lanes[i].tail) >> 1;
    s += t > h ? t - h : 0;
  }
  return s;
}
