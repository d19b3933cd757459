/* lib/adapt/hub.c: job completions carried from the threads that end jobs to one loop thread.
 *
 * Design notes.
 * - One record per job (weft__hreq), allocated and freed on the loop thread (a small free list, no
 *   atomics). The pool calls on_done exactly once per job, on the thread that ended it; on_done fills the
 *   record and pushes it on the hub's stack with one compare-and-swap (a Treiber stack: lock-free, any
 *   number of producers). The loop thread takes the whole stack with one exchange and reverses it, so
 *   completions from one thread are delivered in the order they were pushed.
 * - Wake-ups. The loop's wake (an eventfd write for libuv, g_main_context_wakeup) coalesces: several calls
 *   may give one callback. Nothing is lost because the stack, not the wake, is the record of what is
 *   pending: a producer pushes first and wakes second, and every wake is followed by a drain that takes the
 *   whole stack after it. Only the producer whose push found the stack empty wakes: a push onto a non-empty
 *   stack lands above a bottom record whose producer wakes after its own push, so the drain that follows
 *   that wake, or an earlier one that began after this push, takes it; a drain that took the stack before
 *   this push left it empty, and then this push finds it empty and wakes. This saves a wake per completion
 *   while the loop is behind. Nothing is merged: each record is one job.
 * - Lifetime. A producer still uses the hub after its push (to call wake). `senders` counts producers
 *   between their increment (before the push) and their decrement (after the wake). The hub may be freed
 *   once every submitted job's record has been drained (inflight == 0) and senders is 0: each job's on_done
 *   is the last thing any thread does for it, and a record is only drained after its push, so a producer
 *   that pushed the last record is counted in senders until it is done. The wait for senders is a short
 *   spin: the window is a store and a wake call that never blocks.
 * - Cancel against end. A job's `phase` goes from 0 to CANCELED (weft__hub_cancel, loop thread) or to
 *   ENDED (on_done) with one exchange each; the first wins. A job the pool reports as completed or failed
 *   whose cancel won is reported canceled while running: its request was cancelled while it ran (the pool
 *   itself classes that as failed or completed, since only its shutdown makes "canceled while running").
 *   This mirrors the pool's own rule for shutdown: what counts is whether the cancel came before the
 *   job's end was recorded.
 * - Only the loop thread touches the in-flight list, the counters, the free list and `closing`. */
#include "adapt/hub.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

enum { PHASE_LIVE = 0, PHASE_CANCELED = 1, PHASE_ENDED = 2 };
enum { FREE_MAX = 256 };

void weft__hub_init(weft__hub *h, void (*wake)(void *), void *wake_arg) {
  atomic_init(&h->head, NULL);
  atomic_init(&h->senders, 0);
  h->wake = wake;
  h->wake_arg = wake_arg;
  h->live.live_prev = h->live.live_next = &h->live;
  h->inflight = 0;
  h->free = NULL;
  h->nfree = 0;
  h->closing = false;
  h->submitted = h->completed = h->failed = h->canceled_before_start = h->canceled_while_running = 0;
}

static void on_done(void *job_arg, int job_rc, weft_job_state state, void *done_arg) {
  weft__hreq *r = done_arg;
  weft__hub *h = r->hub;
  r->arg = job_arg;
  r->rc = job_rc;
  r->state = state;
  atomic_fetch_add_explicit(&h->senders, 1, memory_order_seq_cst);
  /* ENDED tells a later cancel that it came too late; a CANCELED already there stays, for the drain. */
  int expect = PHASE_LIVE;
  atomic_compare_exchange_strong_explicit(&r->phase, &expect, PHASE_ENDED, memory_order_acq_rel,
                                          memory_order_acquire);
  weft__hreq *old = atomic_load_explicit(&h->head, memory_order_relaxed);
  do {
    r->next = old;
  } while (!atomic_compare_exchange_weak_explicit(&h->head, &old, r, memory_order_seq_cst,
                                                  memory_order_relaxed));
  /* r may be drained and freed from here on: only h is used. Only the push that found the stack empty
   * wakes the loop (see the design notes). */
  if (old == NULL) h->wake(h->wake_arg);
  atomic_fetch_sub_explicit(&h->senders, 1, memory_order_release);
}

static weft__hreq *rec_get(weft__hub *h) {
  weft__hreq *r = h->free;
  if (r != NULL) {
    h->free = r->next;
    h->nfree--;
    return r;
  }
  return malloc(sizeof *r);
}

static void rec_put(weft__hub *h, weft__hreq *r) {
  if (h->nfree >= FREE_MAX) {
    free(r);
    return;
  }
  r->next = h->free;
  h->free = r;
  h->nfree++;
}

int weft__hub_submit(weft__hub *h, weft_pool *p, weft_ctx *ctx, weft_job_fn fn, void *arg,
                     weft__hub_result_fn cb, void *cb_arg, weft__hreq **handle) {
  if (handle != NULL) *handle = NULL;
  if (h == NULL || p == NULL || fn == NULL || cb == NULL) return WEFT_EINVAL;
  if (h->closing) return WEFT_ESTOPPED;
  weft__hreq *r = rec_get(h);
  if (r == NULL) return WEFT_ENOMEM;
  r->next = NULL;
  r->hub = h;
  r->arg = arg;
  r->rc = 0;
  r->state = WEFT_JOB_PENDING;
  r->cb = cb;
  r->cb_arg = cb_arg;
  r->ctx = NULL;
  r->cancel = NULL;
  atomic_store_explicit(&r->phase, PHASE_LIVE, memory_order_relaxed);
  weft_job_opts o = WEFT_JOB_OPTS_INIT;
  o.run_ctx = ctx;
  o.nowait = true; /* never block the loop thread */
  o.on_done = on_done;
  o.done_arg = r;
  int rc;
  if (handle != NULL) {
    rc = weft_ctx_with_cancel(ctx != NULL ? ctx : weft_background(), &r->ctx, &r->cancel);
    if (rc != 0) goto fail;
    o.run_ctx = r->ctx;
  }
  rc = weft_pool_submit_opts(p, NULL, fn, arg, &o, NULL);
  if (rc != 0) goto fail;
  /* on_done may already have pushed r: it is drained on this thread, after this call returns. */
  r->live_prev = h->live.live_prev;
  r->live_next = &h->live;
  h->live.live_prev->live_next = r;
  h->live.live_prev = r;
  h->inflight++;
  h->submitted++;
  if (handle != NULL) *handle = r;
  return 0;
fail:
  weft_ctx_end(r->cancel);
  rec_put(h, r);
  return rc;
}

int weft__hub_cancel(weft__hreq *r) {
  if (r == NULL) return WEFT_EINVAL;
  int expect = PHASE_LIVE;
  if (!atomic_compare_exchange_strong_explicit(&r->phase, &expect, PHASE_CANCELED, memory_order_acq_rel,
                                               memory_order_acquire))
    return expect == PHASE_CANCELED ? 0 : WEFT_ESTATE;
  if (r->cancel != NULL) weft_ctx_cancel(r->cancel);
  return 0;
}

/* Waits out the producers still inside their wake call (a few instructions and one write). */
static void quiesce(weft__hub *h) {
  unsigned n = 0;
  while (atomic_load_explicit(&h->senders, memory_order_acquire) != 0)
    if (++n % 64 == 0) sched_yield();
}

bool weft__hub_drain(weft__hub *h) {
  weft__hreq *list = atomic_exchange_explicit(&h->head, NULL, memory_order_seq_cst), *fifo = NULL;
  while (list != NULL) { /* newest first: reverse into push order */
    weft__hreq *n = list->next;
    list->next = fifo;
    fifo = list;
    list = n;
  }
  while (fifo != NULL) {
    weft__hreq *r = fifo;
    fifo = r->next;
    r->live_prev->live_next = r->live_next;
    r->live_next->live_prev = r->live_prev;
    h->inflight--;
    weft_job_state st = r->state;
    int rc = r->rc;
    if ((st == WEFT_JOB_COMPLETED || st == WEFT_JOB_FAILED) &&
        atomic_load_explicit(&r->phase, memory_order_acquire) == PHASE_CANCELED) {
      st = WEFT_JOB_CANCELED_WHILE_RUNNING;
      if (rc == 0) rc = WEFT_ECANCELED;
    }
    switch (st) {
    case WEFT_JOB_COMPLETED: h->completed++; break;
    case WEFT_JOB_FAILED: h->failed++; break;
    case WEFT_JOB_CANCELED_BEFORE_START: h->canceled_before_start++; break;
    default: h->canceled_while_running++; break;
    }
    weft_ctx_end(r->cancel);
    r->cancel = NULL;
    r->ctx = NULL;
    /* The callback may submit (records come from the free list, the list above is private) or close. */
    r->cb(r->arg, rc, st, r->cb_arg);
    rec_put(h, r);
  }
  if (!h->closing || h->inflight != 0) return false;
  quiesce(h);
  return true;
}

bool weft__hub_close(weft__hub *h, bool cancel) {
  h->closing = true;
  if (cancel)
    for (weft__hreq *r = h->live.live_next; r != &h->live; r = r->live_next)
      if (r->cancel != NULL) (void)weft__hub_cancel(r);
  if (h->inflight != 0) return false;
  quiesce(h);
  return true;
}

void weft__hub_destroy(weft__hub *h) {
  while (h->free != NULL) {
    weft__hreq *r = h->free;
    h->free = r->next;
    free(r);
  }
  h->nfree = 0;
}

void weft__hub_report(const weft__hub *h, weft_pool_report *rep) {
  memset(rep, 0, sizeof *rep); /* fields the adapter does not track (timed_out, undelivered) are 0 */
  rep->submitted = h->submitted;
  rep->completed = h->completed;
  rep->failed = h->failed;
  rep->canceled_before_start = h->canceled_before_start;
  rep->canceled_while_running = h->canceled_while_running;
  rep->still_running = h->inflight;
}
