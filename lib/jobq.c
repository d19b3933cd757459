/* lib/jobq.c: the job queue — per-worker lanes fed by any number of submitters (the only file of the pool
 * that calls Concurrency Kit).
 *
 * Design notes.
 *
 * Shape, and the figures that chose it (this machine, 2 vCPU, 1 submitter, jobs that add 1 to an atomic,
 * best of 5 runs of 1,000,000 jobs; the harness modelled pool_tiny):
 *   - one shared ck_ring MPMC, 2 spinning workers ...................................... 373-385 ns/job
 *   - ck_ring SPSC per worker, 1 worker: ck's enqueue reloads the consumer's head on every push, so every
 *     push misses on a line the consumer just wrote ................................... 150-180 ns/job
 *   - our lane (below), 1 worker, batch 16: no lock 11.8, + producer spinlock 13.2, + the Dekker fence
 *     for parked workers 15.5, + consumers claiming with CAS (stealable) 15.8 ns/job; batch 1: 20.2
 *   - our lane, 2 workers that steal on every idle probe ................................. 156-188 ns/job
 *     (thieves keep pulling the victim's head and tail lines); stealing only every 64th idle probe: 40 ns
 * The whole pool (pool_tiny, W=2, 1 submitter, best of 3): 100 ns/job with an mfence per push and idle
 * workers yielding every 64th probe; 90 with membarrier instead of the fence; 30-38 ns with a yield on every
 * idle probe (the machine has 2 cores for 3 threads: idle spinning starved the submitter).
 * So: one lane per worker (Go's per-P run queue), a ring whose indices are cached on each side so a push
 * or a pop touches the other side's line only when the cached value says full or empty, consumers that
 * claim a batch with one compare-and-swap, and thieves that probe rarely.
 *
 * ck variants used: ck_pr (load/store/CAS/fences on the indices: a plain mov on x86 for the loads and
 * stores, lock cmpxchg for the claim), ck_spinlock_fas (the per-lane producer lock: one xchg on a line only
 * producers touch; uncontended with one submitter), ck_backoff (contended producer lock). ck_ring itself is
 * not used: its SP enqueue reads c_head every time (the 150 ns row above) and it has no batch claim.
 *
 * A lane is single-producer at a time (the producer lock) and multi-consumer (owner and thieves CAS the
 * head). Indices are 64-bit and never wrap in practice, so tail is also "jobs ever pushed" on that lane.
 * Slots are read before the CAS that claims them; a producer writes slot i only after head passed i, so a
 * consumer whose CAS fails may have read a slot being overwritten, and throws that copy away.
 *
 * Who wakes whom. A worker with nothing to do spins (own lane every probe, siblings every 8th, a
 * sched_yield on every probe so a submitter sharing the core runs: see IDLE_PROBES), then parks through
 * park.c: it stores state=PARKED, increments nparked, re-checks every lane and `closed`, then sleeps. A
 * producer stores the tail, then loads nparked (one read-mostly line): 0 means every worker is awake and
 * will find the job. Otherwise (slow path) it wakes the lane's owner if that one is parked, or another
 * parked worker if the owner is busy running a job (so a job queued behind a long one is stolen). The
 * Dekker on (tail, nparked) needs a store-load order on both sides; it is made asymmetric: instead of an
 * mfence after every push (it drains the store buffer while consumers hold the tail line: half the
 * samples of a ~100 ns/job run in perf), the parking worker calls membarrier(MEMBARRIER_CMD_PRIVATE_
 * EXPEDITED) (0.4 us here, next to a ~14 us park), which runs a full barrier on every running thread of the
 * process before the re-check; without membarrier the producer falls back to the fence. close() stores
 * `closed`, takes every producer lock once, fences, then signals every parked worker; a parking worker's
 * locked increment orders its PARKED store before its read of `closed`.
 *
 * ThreadSanitizer does not see ck_pr's inline assembly, so the functions touching lanes are not
 * instrumented (WEFT__NO_TSAN) and the hand-off is described to TSan explicitly: a release on the lane
 * before a push publishes the tail, an acquire on it after a pop claimed a job. Everything the submitter
 * wrote before submitting thus happens-before the job in TSan's eyes, as it does on the hardware.
 */
#include <ck_backoff.h>
#include <ck_pr.h>
#include <ck_spinlock.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>

#include "internal.h"
#include "jobq.h"

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

/* Idle spinning: probes before parking. Each probe yields the core: with a submitter and two workers on
 * two cores, a worker spinning on pause instructions starves the submitter (pool_tiny 90-160 ns/job with a
 * yield every 16-64 probes, 30-40 ns/job with one every probe). 1024 probes last ~0.3-1 ms. */
#ifndef IDLE_PROBES
#define IDLE_PROBES 1024
#endif
#ifndef STEAL_EVERY
#define STEAL_EVERY 8
#endif
#ifndef YIELD_EVERY
#define YIELD_EVERY 1
#endif

typedef struct lane {
  /* consumers: head is CAS'd by the owner and by thieves; otail is the owner's cached tail; cbuf and
   * cmask are the consumers' copy of the ring's shape (read-only) */
  uint64_t head __attribute__((aligned(CL)));
  uint64_t otail;
  weft__jslot *cbuf;
  uint64_t cmask;
  /* published by the producer, read by consumers */
  uint64_t tail __attribute__((aligned(CL)));
  /* producer-private (under plock), with the producer's own copy of the ring's shape: a push reads no
   * line a consumer writes unless the lane looks full (a shared copy next to otail cost a miss per push) */
  ck_spinlock_fas_t plock __attribute__((aligned(CL)));
  uint64_t ptail;  /* the producer's copy of tail */
  uint64_t chead;  /* the producer's cached head: re-read only when the lane looks full */
  weft__jslot *pbuf;
  uint64_t pmask, cap; /* cap: logical capacity (<= pmask + 1) */
  /* the owner's idle state: written on idle transitions, read by producers only on the slow path */
  uint32_t state __attribute__((aligned(CL))); /* LANE_* */
  weft__waiter *waiter;                         /* the owner's park record */
} lane;

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
  uint64_t per = (cap + nlanes - 1) / nlanes, sz = 2;
  while (sz < per) sz <<= 1;
  q->cap = (size_t)(per * nlanes);
  for (unsigned i = 0; i < nlanes; i++) {
    lane *l = &q->lanes[i];
    ck_spinlock_fas_init(&l->plock);
    l->cap = per;
    l->pmask = l->cmask = sz - 1;
    l->state = LANE_SPINNING;
    l->pbuf = l->cbuf = calloc(sz, sizeof(weft__jslot));
    if (l->pbuf == NULL) goto fail2;
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

/* Pushes onto l (producer lock held). */
WEFT__NO_TSAN static bool lane_put(lane *l, const weft__jslot *s) {
  uint64_t t = l->ptail;
  if (t - l->chead >= l->cap) {
    l->chead = ck_pr_load_64(&l->head);
    if (t - l->chead >= l->cap) return false;
  }
  /* Field by field: the caller just wrote *s that way, and one 16-byte load of two fresh 8-byte stores
   * misses store forwarding (a stall that was a quarter of a push). */
  weft__jslot *d = &l->pbuf[t & l->pmask];
  d->fn = s->fn;
  d->arg = s->arg;
  TSAN_RELEASE(l);
  ck_pr_fence_store();
  ck_pr_store_64(&l->tail, t + 1);
  l->ptail = t + 1;
  return true;
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
  /* First pass: only lanes whose producer lock is free; second pass: wait for each lock. */
  for (int pass = 0; pass < 2; pass++) {
    for (unsigned i = 0; i < n; i++) {
      unsigned li = start + i < n ? start + i : start + i - n;
      lane *l = &q->lanes[li];
      if (pass == 0) {
        if (!ck_spinlock_fas_trylock(&l->plock)) continue;
      } else {
        ck_backoff_t bo = CK_BACKOFF_INITIALIZER;
        while (!ck_spinlock_fas_trylock(&l->plock)) ck_backoff_eb(&bo);
      }
      if (ck_pr_load_32(&q->closed)) {
        ck_spinlock_fas_unlock(&l->plock);
        return WEFT_ESTOPPED;
      }
      bool ok = lane_put(l, s);
      ck_spinlock_fas_unlock(&l->plock);
      if (ok) {
        /* Dekker with a parking worker: the tail store before the nparked load. With membarrier the
         * parking worker forces that order on us, so a compiler barrier is enough here. */
        if (q->asym)
          ck_pr_barrier();
        else
          ck_pr_fence_memory();
        if (WEFT__UNLIKELY(ck_pr_load_32(&q->nparked) != 0)) wake_for(q, li);
        return 0;
      }
    }
  }
  return ck_pr_load_32(&q->closed) ? WEFT_ESTOPPED : WEFT_EFULL;
}

/* ---- consumers ---------------------------------------------------------------------------------- */

/* Claims up to max jobs from l: at most half of what is there (rounded up), so thieves find work left
 * behind a long job. `owner` says whether the caller may use (and refresh) the owner's cached tail. */
WEFT__NO_TSAN static unsigned lane_claim(lane *l, weft__jslot *out, unsigned max, bool owner) {
  for (;;) {
    uint64_t h = ck_pr_load_64(&l->head);
    uint64_t t = owner ? l->otail : 0;
    if (!owner || t <= h) {
      ck_pr_fence_load();
      t = ck_pr_load_64(&l->tail);
      if (owner) l->otail = t;
      if (t <= h) return 0;
    }
    ck_pr_fence_load();
    uint64_t avail = t - h, k = (avail + 1) / 2;
    if (k > max) k = max;
    for (uint64_t i = 0; i < k; i++) out[i] = l->cbuf[(h + i) & l->cmask];
    ck_pr_fence_store_atomic();
    if (ck_pr_cas_64(&l->head, h, h + k)) {
      TSAN_ACQUIRE(l);
      return (unsigned)k;
    }
    ck_pr_stall();
  }
}

WEFT__NO_TSAN static unsigned steal(weft__jobq *q, unsigned self, weft__jslot *out, unsigned max) {
  unsigned n = q->nlanes;
  for (unsigned i = 1; i < n; i++) {
    lane *l = &q->lanes[(self + i) % n];
    if (ck_pr_load_64(&l->tail) == ck_pr_load_64(&l->head)) continue; /* probe without claiming */
    unsigned k = lane_claim(l, out, max, false);
    if (k) return k;
  }
  return 0;
}

WEFT__NO_TSAN static bool all_empty(weft__jobq *q) {
  for (unsigned i = 0; i < q->nlanes; i++)
    if (ck_pr_load_64(&q->lanes[i].tail) != ck_pr_load_64(&q->lanes[i].head)) return false;
  return true;
}

WEFT__NO_TSAN unsigned weft__jobq_get(weft__jobq *q, unsigned self, weft__jslot *out, unsigned max) {
  lane *me = &q->lanes[self];
  unsigned k = lane_claim(me, out, max, true);
  if (WEFT__LIKELY(k)) return k;
  ck_pr_store_32(&me->state, LANE_SPINNING);
  for (unsigned probe = 1;; probe++) {
    if ((k = lane_claim(me, out, max, true)) != 0) break;
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
    probe = work ? IDLE_PROBES / 2 : 0;
  }
  ck_pr_store_32(&me->state, LANE_RUNNING);
  return k;
}

WEFT__NO_TSAN unsigned weft__jobq_take(weft__jobq *q, weft__jslot *out, unsigned max) {
  for (unsigned i = 0; i < q->nlanes; i++) {
    unsigned k = lane_claim(&q->lanes[i], out, max, false);
    if (k) return k;
  }
  return 0;
}

WEFT__NO_TSAN void weft__jobq_close(weft__jobq *q) {
  /* Taking each producer lock once orders this close after every push already in progress. */
  ck_pr_store_32(&q->closed, 1);
  for (unsigned i = 0; i < q->nlanes; i++) {
    ck_spinlock_fas_lock(&q->lanes[i].plock);
    ck_spinlock_fas_unlock(&q->lanes[i].plock);
  }
  ck_pr_fence_memory();
  for (unsigned i = 0; i < q->nlanes; i++) {
    lane *l = &q->lanes[i];
    if (ck_pr_load_32(&l->state) == LANE_PARKED) lane_wake(l);
  }
}

WEFT__NO_TSAN uint64_t weft__jobq_pushed(weft__jobq *q) {
  uint64_t s = 0;
  for (unsigned i = 0; i < q->nlanes; i++) s += ck_pr_load_64(&q->lanes[i].tail);
  return s;
}

WEFT__NO_TSAN uint64_t weft__jobq_queued(weft__jobq *q) {
  uint64_t s = 0;
  for (unsigned i = 0; i < q->nlanes; i++) {
    uint64_t h = ck_pr_load_64(&q->lanes[i].head);
    uint64_t t = ck_pr_load_64(&q->lanes[i].tail);
    s += t > h ? t - h : 0;
  }
  return s;
}
