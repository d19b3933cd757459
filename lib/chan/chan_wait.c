/* lib/chan/chan_wait.c: blocking send / recv and select (the protocol is described at the top of chan.c).
 *
 * One loop serves a single blocking send or receive (a select of one case) and a select of many:
 *   1. try every enabled case once, in a random order (Go's pollorder: a uniform shuffle, drawn once per
 *      call, so every ready case is equally likely to be tried first whatever the others; a random start
 *      with a random coprime stride is not uniform: the strides are not equally likely, and a ready case
 *      is then found first more often after some neighbours than others);
 *   2. if none fired: return for a non-blocking select; return the context's error or the timeout; spin a
 *      little (buffered channels only);
 *   3. queue one entry per case on its channel (one lock at a time); if some case turned out ready while
 *      queuing, do not sleep; else park in park.c under the context;
 *   4. settle the round: claim our own op (SELF) unless a counterpart claimed it first — then wait for its
 *      token — and unqueue every entry. A HANDOFF claim means the capacity-0 case completed; a HINT claim
 *      names a case to retry first; then back to 1, unless the context ended or the deadline passed (a
 *      hinted case is still retried once then, so an element announced to us is never dropped).
 */
#include <sched.h>
#include <stdlib.h>

#include "chan/chan_impl.h"

/* Pre-queue spin of a blocking send / recv: retries of the ring, at most CHAN_SPIN_BACKOFF pauses apart,
 * a few times the price of one park and wake-up in all. The backoff matters as much as the length: a
 * consumer that re-polls an empty ring after every pause trails one slot behind the producer and pulls
 * each slot's line over per element; polling less often lets the producer fill whole lines first. A ring
 * of fewer than 8 slots has no lines to fill: its receiver re-polls after every pause, which is what a
 * round trip through capacity-1 channels needs (bench/README.md has the figures). */
#define CHAN_SPIN_ITERS 256
#define CHAN_SPIN_BACKOFF 4
/* A sender that found the ring full resumes once this many bytes of slots past the tail are free (at most
 * a quarter of the ring), not at the first free slot: a producer taking each slot the moment the consumer
 * frees it writes into the line the consumer is reading, and both then pay a transfer per element. */
#define CHAN_RUN_BYTES 1024
/* Rounds of step 1 a select over buffered channels spins before queuing. */
#define SELECT_SPIN_ROUNDS 64
/* Selects up to this many cases keep their queue entries on the stack. */
#define SELECT_STACK_CASES 16

static _Thread_local uint64_t rng_state;

static uint64_t rng_next(void) {
  uint64_t x = rng_state;
  if (WEFT__UNLIKELY(x == 0)) x = ((uint64_t)(uintptr_t)&rng_state ^ (uint64_t)weft_now()) | 1;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  rng_state = x;
  return x * UINT64_C(0x2545F4914F6CDD1D);
}

/* A uniform draw in [0, m) from the high 32 bits (Lemire's multiply-shift, as Go's fastrandn: the bias is
 * below m / 2^32). */
static inline uint32_t rng_below(uint32_t m) { return (uint32_t)(((rng_next() >> 32) * (uint64_t)m) >> 32); }

/* Fills ord[0..n) with a uniformly random permutation of 0..n-1 (the inside-out Fisher-Yates shuffle, as
 * Go's selectgo builds its pollorder). */
static void order_init(uint32_t *ord, size_t n) {
  if (n == 0) return;
  ord[0] = 0;
  for (size_t i = 1; i < n; i++) {
    uint32_t j = rng_below((uint32_t)i + 1);
    ord[i] = ord[j];
    ord[j] = (uint32_t)i;
  }
}

static inline bool case_fire(weft_select_case *c) {
  int r = chan__try(c->chan, c->op == WEFT_SELECT_SEND, c->elem);
  if (r != 0 && r != WEFT_ECLOSED) return false;
  c->err = r;
  return true;
}

/* The loop described above. Returns the fired case's index or a negative code. `ents` has n entries (may
 * be NULL when nonblock); `ord` has room for n indices (n >= 1). */
static int sel_run(weft_ctx *ctx, int64_t deadline, weft_select_case *cases, size_t n, chan_entry *ents,
                   uint32_t *ord, bool nonblock, int spin) {
  order_init(ord, n);
  long hint = -1;
  unsigned rounds = 0;
  for (;;) {
    if (hint >= 0 && case_fire(&cases[hint])) return (int)hint;
    hint = -1;
    for (size_t k = 0; k < n; k++) {
      size_t i = ord[k];
      if (cases[i].chan && case_fire(&cases[i])) return (int)i;
    }
    if (nonblock) return WEFT_EEMPTY;
    int rc;
    if (ctx && (rc = weft_ctx_err(ctx)) != 0) return rc;
    if (deadline != WEFT_FOREVER && ((spin & 15) == 0 || spin <= 0) && weft_now() >= deadline)
      return WEFT_ETIMEDOUT;
    if (spin > 0) {
      spin--;
      weft__cpu_relax();
      continue;
    }
    if (rounds > 0) { /* the last round found a case ready that did not fire: one being completed */
      if (rounds > 64) sched_yield(); else weft__cpu_relax();
    }

    chan_op op;
    op.w = weft__waiter_self();
    atomic_init(&op.done, 0);
    weft__waiter_arm(op.w, ctx);
    size_t kq = 0;
    bool ready = false;
    while (kq < n && !ready) {
      size_t i = ord[kq++];
      if (cases[i].chan == NULL) continue;
      chan_entry *e = &ents[i];
      e->op = &op;
      e->elem = cases[i].elem;
      e->idx = (uint32_t)i;
      e->linked = false;
      ready = weft__chan_enqueue(cases[i].chan, e, cases[i].op == WEFT_SELECT_SEND);
      if (atomic_load_explicit(&op.done, memory_order_relaxed) != 0) break; /* claimed already */
    }
    int wrc = 0;
    if (!ready) wrc = weft__waiter_wait(op.w, ctx, deadline);

    uint32_t d = 0;
    if (atomic_compare_exchange_strong(&op.done, &d, CLAIM_SELF)) {
      d = CLAIM_SELF;
    } else if (weft__waiter_token(op.w) == 0) {
      /* Claimed by a counterpart that is between its unlock and its signal: the token is imminent. */
      (void)weft__waiter_wait(op.w, NULL, WEFT_FOREVER);
    }
    for (size_t k = 0; k < kq; k++) {
      size_t i = ord[k];
      if (cases[i].chan) weft__chan_dequeue(cases[i].chan, &ents[i], cases[i].op == WEFT_SELECT_SEND);
    }
    if (CLAIM_KIND(d) == CLAIM_HANDOFF) {
      cases[CLAIM_IDX(d)].err = 0;
      return (int)CLAIM_IDX(d);
    }
    if (CLAIM_KIND(d) == CLAIM_HINT) hint = (long)CLAIM_IDX(d);
    if (wrc < 0) { /* the context ended or the deadline passed */
      if (hint >= 0 && case_fire(&cases[hint])) return (int)hint;
      return wrc;
    }
    rounds = (CLAIM_KIND(d) == CLAIM_SELF && ready) ? rounds + 1 : 0;
  }
}

/* ---- single send / recv ------------------------------------------------------------------------- */

static int chan_block(weft_ctx *ctx, int64_t deadline, weft_chan *ch, bool send, void *elem) {
  weft_select_case c = {ch, send ? WEFT_SELECT_SEND : WEFT_SELECT_RECV, elem, 0};
  chan_entry e;
  uint32_t ord;
  int r = sel_run(ctx, deadline, &c, 1, &e, &ord, false, 0);
  return r < 0 ? r : c.err;
}

static int chan_send(weft_ctx *ctx, weft_chan *ch, const void *elem, int64_t deadline) {
  if (WEFT__LIKELY(ch->cap > 0)) {
    int r = chan__ring_send(ch, elem);
    if (WEFT__LIKELY(r != WEFT_EFULL)) return r;
    uint64_t run = ch->pow2 ? CHAN_RUN_BYTES / ch->stride : 0;
    if (run > ch->cap / 4) run = ch->cap / 4;
    for (int i = 1, backoff = 1; i <= CHAN_SPIN_ITERS; i++) {
      weft__cpu_relax();
      if ((i & 31) == 0) { /* now and then: the context, the deadline, and a try whatever the run */
        if (ctx && (r = weft_ctx_err(ctx)) != 0) return r;
        if (deadline != WEFT_FOREVER && weft_now() >= deadline) return WEFT_ETIMEDOUT;
      } else if (run >= 2) {
        /* Wait for a run of free slots (the slot `run` past the tail free), polled every few pauses. */
        for (int k = 1; k < backoff; k++) weft__cpu_relax();
        if (backoff < CHAN_SPIN_BACKOFF) backoff *= 2;
        uint64_t p = CHAN_T_POS(atomic_load_explicit(&ch->tail, memory_order_relaxed)) + run;
        if (atomic_load_explicit(chan__seq(chan__slot(ch, p)), memory_order_relaxed) != 2 * p) continue;
      }
      if ((r = chan__ring_send(ch, elem)) != WEFT_EFULL) return r; /* sent, or closed */
    }
  }
  return chan_block(ctx, deadline, ch, true, (void *)elem);
}

static int chan_recv(weft_ctx *ctx, weft_chan *ch, void *elem, int64_t deadline) {
  if (WEFT__LIKELY(ch->cap > 0)) {
    if (WEFT__LIKELY(chan__ring_recv(ch, elem) == 0)) return 0;
    int r, backoff = 1, maxb = ch->cap >= 8 ? CHAN_SPIN_BACKOFF : 1;
    for (int i = 1; i <= CHAN_SPIN_ITERS; i++) {
      /* Only loads of the slot while empty. Close is checked now and then, not on the first retries: it
       * reads the tail, the line every send writes (a round trip across cores costs an extra transfer). */
      if ((i & 31) == 0) {
        if (chan__ring_drained(ch)) return chan__ring_recv(ch, elem) == 0 ? 0 : WEFT_ECLOSED;
        if (ctx && (r = weft_ctx_err(ctx)) != 0) return r;
        if (deadline != WEFT_FOREVER && weft_now() >= deadline) return WEFT_ETIMEDOUT;
      }
      for (int k = 0; k < backoff; k++) weft__cpu_relax();
      if (backoff < maxb) backoff *= 2;
      if (chan__ring_recv(ch, elem) == 0) return 0;
    }
  }
  return chan_block(ctx, deadline, ch, false, elem);
}

int weft_chan_send(weft_chan *ch, weft_ctx *ctx, const void *elem) {
  if (ch == NULL || elem == NULL) return WEFT_EINVAL;
  int r;
  if (ctx && (r = weft_ctx_err(ctx)) != 0) return r;
  return chan_send(ctx, ch, elem, WEFT_FOREVER);
}

int weft_chan_recv(weft_chan *ch, weft_ctx *ctx, void *elem) {
  if (ch == NULL || elem == NULL) return WEFT_EINVAL;
  int r;
  if (ctx && (r = weft_ctx_err(ctx)) != 0) return r;
  return chan_recv(ctx, ch, elem, WEFT_FOREVER);
}

int weft_chan_send_until(weft_chan *ch, const void *elem, int64_t deadline) {
  if (ch == NULL || elem == NULL) return WEFT_EINVAL;
  return chan_send(NULL, ch, elem, deadline);
}

int weft_chan_recv_until(weft_chan *ch, void *elem, int64_t deadline) {
  if (ch == NULL || elem == NULL) return WEFT_EINVAL;
  return chan_recv(NULL, ch, elem, deadline);
}

/* ---- select ------------------------------------------------------------------------------------- */

/* Validates the cases, clears their err fields, and says whether every enabled case is buffered. */
static int sel_check(weft_select_case *cases, size_t n, bool *all_ring) {
  if (n > 0 && cases == NULL) return WEFT_EINVAL;
  if (n > CHAN_MAX_CASES) return WEFT_EINVAL;
  *all_ring = true;
  for (size_t i = 0; i < n; i++) {
    weft_select_case *c = &cases[i];
    c->err = 0;
    if (c->chan == NULL) continue;
    if (c->op != WEFT_SELECT_RECV && c->op != WEFT_SELECT_SEND) return WEFT_EINVAL;
    if (c->op == WEFT_SELECT_SEND && c->elem == NULL) return WEFT_EINVAL;
    if (c->chan->cap == 0) *all_ring = false;
  }
  return 0;
}

static int sel_blocking(weft_ctx *ctx, int64_t deadline, weft_select_case *cases, size_t n) {
  bool all_ring;
  int r = sel_check(cases, n, &all_ring);
  if (r != 0) return r;
  if (ctx && (r = weft_ctx_err(ctx)) != 0) return r;
  chan_entry stack_ents[SELECT_STACK_CASES];
  uint32_t stack_ord[SELECT_STACK_CASES];
  chan_entry *ents = stack_ents;
  uint32_t *ord = stack_ord;
  if (n > SELECT_STACK_CASES) { /* one block: the entries, then the order (n <= CHAN_MAX_CASES: no wrap) */
    if ((ents = malloc(n * (sizeof *ents + sizeof *ord))) == NULL) return WEFT_ENOMEM;
    ord = (uint32_t *)(void *)(ents + n);
  }
  r = sel_run(ctx, deadline, cases, n, ents, ord, false, all_ring ? SELECT_SPIN_ROUNDS : 0);
  if (ents != stack_ents) free(ents);
  return r;
}

int weft_select(weft_ctx *ctx, weft_select_case *cases, size_t n) {
  return sel_blocking(ctx, WEFT_FOREVER, cases, n);
}

int weft_select_until(weft_select_case *cases, size_t n, int64_t deadline) {
  return sel_blocking(NULL, deadline, cases, n);
}

int weft_try_select(weft_select_case *cases, size_t n) {
  bool all_ring;
  int r = sel_check(cases, n, &all_ring);
  if (r != 0) return r;
  uint32_t stack_ord[SELECT_STACK_CASES];
  uint32_t *ord = stack_ord;
  if (n > SELECT_STACK_CASES && (ord = malloc(n * sizeof *ord)) == NULL) return WEFT_ENOMEM;
  r = sel_run(NULL, WEFT_NOWAIT, cases, n, NULL, ord, true, 0);
  if (ord != stack_ord) free(ord);
  return r;
}
