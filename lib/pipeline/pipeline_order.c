/* lib/pipeline/pipeline_order.c: the reorder window of an ordered stage with several workers.
 *
 * Design notes.
 *
 * Sequence numbers. Each input burst of an ordered stage has a seq: stamped by the sender when the edge is
 * serial (one sending thread at a time, in seq order: a single source, a one-worker stage, an ordered
 * stage's flusher), so channel order is seq order and the stage restores exactly its input order; stamped
 * on receipt otherwise (several unordered senders: their order is arbitrary anyway).
 *
 * The window. `window` slots each hold the complete output of one input burst; slot s % window belongs to
 * seq s. `next` is the oldest seq whose output has not gone downstream. A worker that finished seq s waits
 * while s - next >= window (the window is full: a slow burst holds back at most `window` finished ones),
 * then copies its output into the slot. Whoever finds no flusher becomes the flusher: it sends the ready
 * slots from `next` on, coalescing consecutive ones into one burst, with the lock dropped during each send;
 * one flusher at a time keeps the sends in order. A worker whose output overflows one burst mid-input
 * (flat_map) waits for its turn (next == s, no flusher) and sends that chunk itself.
 *
 * No deadlock. With a serial input, the burst `next` was received before any later one (FIFO channel), so it
 * is in some worker's hands; that worker never waits for the window (s == next) and the flusher only waits
 * on the downstream channel, which drains independently. With seqs stamped on receipt, `next` was stamped
 * by a worker that holds it. Cancellation wakes every waiter: an after-func on the run's context broadcasts
 * the condition variable under the lock, and waiters check the context under the lock before waiting.
 *
 * Lock order: the window's mutex is never held across a channel operation or a stage function. */
#include "pipeline/pipeline_impl.h"

int weft__pl_order_new(pl_stage *st, size_t window) {
  pl_order *o = calloc(1, sizeof *o);
  if (o == NULL) return WEFT_ENOMEM;
  size_t bsz = st->out->bsz;
  if (window > SIZE_MAX / bsz) {
    free(o);
    return WEFT_ENOMEM;
  }
  o->slots = aligned_alloc(WEFT__CACHELINE, (window * bsz + WEFT__CACHELINE - 1) / WEFT__CACHELINE * WEFT__CACHELINE);
  o->ready = calloc(window, sizeof *o->ready);
  if (o->slots == NULL || o->ready == NULL) {
    free(o->slots);
    free(o->ready);
    free(o);
    return WEFT_ENOMEM;
  }
  WEFT__ASSERT(pthread_mutex_init(&o->mu, NULL) == 0);
  WEFT__ASSERT(pthread_cond_init(&o->cv, NULL) == 0);
  o->window = window;
  st->order = o;
  return 0;
}

/* Frees the window, discarding outputs that never went downstream (no thread is running). */
void weft__pl_order_free(pl_stage *st) {
  pl_order *o = st->order;
  if (o == NULL) return;
  for (size_t k = 0; k < o->window; k++)
    if (o->ready[k]) {
      unsigned char *slot = o->slots + k * st->out->bsz;
      weft__pl_discard_items(st->out, slot, 0, ((pl_hdr *)(void *)slot)->n, &st->ws[0]);
    }
  pthread_mutex_destroy(&o->mu);
  pthread_cond_destroy(&o->cv);
  free(o->slots);
  free(o->ready);
  free(o);
  st->order = NULL;
}

void weft__pl_order_wake(pl_stage *st) {
  pl_order *o = st->order;
  pthread_mutex_lock(&o->mu);
  pthread_cond_broadcast(&o->cv);
  pthread_mutex_unlock(&o->mu);
}

/* Releases the worker's unsent output after the run was stopped (emit's item stays the caller's). */
static int give_up(pl_worker *w, pl_order *o, int err) {
  pthread_mutex_unlock(&o->mu);
  pl_hdr *oh = (pl_hdr *)(void *)w->outb;
  weft__pl_discard_items(w->st->out, w->outb, 0, oh->n - w->keep_last, w->ws);
  oh->n = 0;
  return err;
}

/* Called with the lock held and flushing false; sends ready slots in order; returns with the lock dropped. */
static int flush_locked(pl_worker *w, pl_order *o) {
  pl_edge *e = w->st->out;
  pl_hdr *oh = (pl_hdr *)(void *)w->outb; /* empty: its items were just deposited */
  int rc = 0;
  o->flushing = true;
  for (;;) {
    size_t k = o->next % o->window;
    if (!o->ready[k]) break;
    while (o->ready[k]) { /* coalesce consecutive finished bursts while they fit in one */
      const unsigned char *slot = o->slots + k * e->bsz;
      uint32_t n = ((const pl_hdr *)(const void *)slot)->n;
      if (oh->n + n > e->kmax) break;
      memcpy(PL_ITEM(w->outb, e->isz, oh->n), PL_ITEM(slot, e->isz, 0), (size_t)n * e->isz);
      oh->n += n;
      o->ready[k] = false;
      o->next++;
      k = o->next % o->window;
    }
    pthread_cond_broadcast(&o->cv); /* the window moved */
    if (oh->n == 0) continue;
    pthread_mutex_unlock(&o->mu);
    rc = weft__pl_send(w, w->outb);
    pthread_mutex_lock(&o->mu);
    if (rc != 0) break;
  }
  o->flushing = false;
  pthread_cond_broadcast(&o->cv);
  pthread_mutex_unlock(&o->mu);
  return rc;
}

int weft__pl_order_deposit(pl_worker *w) {
  pl_stage *st = w->st;
  pl_order *o = st->order;
  pl_edge *e = st->out;
  weft_ctx *ctx = w->run->ctx;
  const uint64_t s = w->cur_seq;
  pthread_mutex_lock(&o->mu);
  while (s - o->next >= o->window) {
    int err = weft_ctx_err(ctx);
    if (err != 0) return give_up(w, o, err);
    pthread_cond_wait(&o->cv, &o->mu);
  }
  size_t k = s % o->window;
  pl_hdr *oh = (pl_hdr *)(void *)w->outb;
  memcpy(o->slots + k * e->bsz, w->outb, PL_HDR + (size_t)oh->n * e->isz);
  o->ready[k] = true;
  oh->n = 0;
  if (o->flushing) { /* the flusher will find it */
    pthread_mutex_unlock(&o->mu);
    return 0;
  }
  return flush_locked(w, o);
}

int weft__pl_order_chunk(pl_worker *w) {
  pl_order *o = w->st->order;
  weft_ctx *ctx = w->run->ctx;
  pthread_mutex_lock(&o->mu);
  while (o->next != w->cur_seq || o->flushing) {
    int err = weft_ctx_err(ctx);
    if (err != 0) return give_up(w, o, err);
    pthread_cond_wait(&o->cv, &o->mu);
  }
  o->flushing = true;
  pthread_mutex_unlock(&o->mu);
  int rc = weft__pl_send(w, w->outb);
  pthread_mutex_lock(&o->mu);
  o->flushing = false;
  pthread_cond_broadcast(&o->cv);
  pthread_mutex_unlock(&o->mu);
  return rc;
}
