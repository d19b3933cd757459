/* lib/pipeline/pipeline_edge.c: moving bursts over a run's channels — send, receive, discard.
 *
 * The bottom of the pipeline layer: the worker, the reorder window and the run call down into this file,
 * and it calls only the public channel and context API. */
#include "pipeline/pipeline_impl.h"

void weft__pl_discard_items(pl_edge *e, unsigned char *buf, uint32_t from, uint32_t to, pl_wstats *ws) {
  if (to <= from) return;
  if (e->discard != NULL)
    for (uint32_t i = from; i < to; i++) e->discard(PL_ITEM(buf, e->isz, i), e->discard_arg);
  if (ws != NULL) weft__owned_add(&ws->discarded, to - from, memory_order_relaxed);
}

/* Waiting inside a run. A run is assumed to have more threads than the machine has cores (a source, N
 * workers per stage, a sink), so the thread a waiter waits for is often runnable but not running. Spinning
 * on a pause instruction would hold the core it needs, and parking costs a futex round trip, far dearer
 * than a hand-off between running threads. So a
 * waiter first yields the core a few times, retrying between yields, and only then blocks in the channel
 * call (which spins briefly and parks). How many yields is learnt per worker: the budget doubles (up to
 * PL_YIELDS) when a wait ended while yielding, and halves (down to 1) when it had to block anyway — so
 * cheap stages hand bursts over without parking, while stages that wait on slow work (a directory walk,
 * a disk) do not burn the CPU in yields. */
static int pl_wait(weft_ctx *ctx, weft_chan *ch, void *buf, bool send, uint32_t *budget) {
  const int busy = send ? WEFT_EFULL : WEFT_EEMPTY;
  int rc = send ? weft_chan_try_send(ch, buf) : weft_chan_try_recv(ch, buf);
  if (rc != busy) return rc;
  uint32_t b = *budget ? *budget : 1;
  for (uint32_t i = 0; i < b; i++) {
    if ((rc = weft_ctx_err(ctx)) != 0) return rc;
    sched_yield();
    rc = send ? weft_chan_try_send(ch, buf) : weft_chan_try_recv(ch, buf);
    if (rc != busy) {
      *budget = 2 * b < PL_YIELDS ? 2 * b : PL_YIELDS;
      return rc;
    }
  }
  *budget = b / 2 ? b / 2 : 1;
  return send ? weft_chan_send(ch, ctx, buf) : weft_chan_recv(ch, ctx, buf);
}

int weft__pl_chan_send(weft_ctx *ctx, weft_chan *ch, const void *buf, uint32_t *budget) {
  return pl_wait(ctx, ch, (void *)buf, true, budget);
}

int weft__pl_chan_recv(weft_ctx *ctx, weft_chan *ch, void *buf, uint32_t *budget) {
  return pl_wait(ctx, ch, buf, false, budget);
}

int weft__pl_send(pl_worker *w, unsigned char *buf) {
  pl_edge *e = w->st->out;
  pl_hdr *h = (pl_hdr *)(void *)buf;
  uint32_t n = h->n;
  if (n == 0) return 0;
  if (e->serial) h->seq = atomic_fetch_add_explicit(&e->send_seq, 1, memory_order_relaxed);
  int rc = weft__pl_chan_send(w->run->ctx, e->ch, buf, &w->ysend);
  if (rc == 0) weft__owned_add(&w->ws->out, n, memory_order_relaxed);
  else weft__pl_discard_items(e, buf, 0, n - (buf == w->outb ? w->keep_last : 0), w->ws);
  h->n = 0;
  return rc;
}
