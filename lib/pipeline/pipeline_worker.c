/* lib/pipeline/pipeline_worker.c: what a pipeline thread does — sources, item stages, batch stages, sinks —
 * and the emitter.
 *
 * Design notes.
 *
 * A worker holds at most one input burst (inb: items before in_pos are consumed, the rest are still the
 * pipeline's), one output burst being filled (outb), and for batch stages one partial group. Each of those
 * is discarded by the worker itself if it stops early, so at every moment an item has exactly one holder.
 *
 * Hand-off. An unordered worker sends outb when it holds `target` items, and also when its input is
 * momentarily empty (a try-receive fails) before it blocks: so an item never waits in a burst while its
 * worker idles, and under load bursts fill up. `target` is the receiving stage's `hint`, the number of
 * items worth one PL_BURST_TARGET_NS of its work, which each receiving worker re-estimates from the time
 * its function took per item (two clock reads per burst, never per item). An ordered worker hands every
 * input burst's outputs to the reorder window (pipeline_order.c) instead.
 *
 * Per item, the hot loop does: one load of the context's state (so a cancelled run stops within one item),
 * the function call, and a copy of the item into outb. No lock, no system call, no allocation: those happen
 * per burst (channel operations), per group (a batch stage's deadline context), or never. */
#include "pipeline/pipeline_impl.h"

static inline uint32_t target_for(const pl_stage *st) {
  const pl_edge *e = st->out;
  if (st->order != NULL) return (uint32_t)e->kmax; /* ordered: one chunk per input burst when it fits */
  uint32_t h = atomic_load_explicit(&e->to->hint, memory_order_relaxed);
  return h < e->kmax ? h : (uint32_t)e->kmax;
}

/* Hands over outb: to the next stage, or (ordered stage, mid-burst) to the reorder window in turn. */
int weft__pl_flush(pl_worker *w) {
  pl_stage *st = w->st;
  int rc = st->order != NULL ? weft__pl_order_chunk(w) : weft__pl_send(w, w->outb);
  w->target = target_for(st);
  return rc;
}

int weft_pipeline_emit(weft_emitter *em, const void *item) {
  if (em == NULL || item == NULL || em->w == NULL) return WEFT_EINVAL;
  pl_worker *w = em->w;
  pl_stage *st = w->st;
  if (st->kind == WEFT_STAGE_SOURCE && atomic_load_explicit(&st->pl->draining, memory_order_relaxed))
    return WEFT_ESTOPPED;
  int err = weft_ctx_err(w->run->ctx);
  if (err != 0) return err;
  pl_hdr *h = (pl_hdr *)(void *)w->outb;
  memcpy(PL_ITEM(w->outb, st->out_size, h->n), item, st->out_size);
  if (++h->n < w->target) return 0;
  /* The burst is full. If handing it over fails, the send discards the items emitted before this one,
   * and this one stays the caller's (its copy in outb is dropped, not discarded). */
  w->keep_last = 1;
  int rc = weft__pl_flush(w);
  w->keep_last = 0;
  return rc;
}

int weft_pipeline_flush(weft_emitter *em) {
  if (em == NULL || em->w == NULL) return WEFT_EINVAL;
  pl_worker *w = em->w;
  if (((pl_hdr *)(void *)w->outb)->n == 0) return 0;
  return weft__pl_flush(w);
}

/* Updates the worker's estimate of ns per item and, if it changed the stage's preferred burst, the hint. */
static void measure(pl_worker *w, int64_t t0, int64_t t1, uint32_t n) {
  int64_t dt = t1 - t0;
  atomic_store_explicit(&w->ws->busy, atomic_load_explicit(&w->ws->busy, memory_order_relaxed) + dt,
                        memory_order_relaxed);
  if (n == 0) return;
  int64_t per = dt / n;
  /* Falls at once, rises slowly: a burst during which the worker was preempted looks expensive, and one such
   * burst must not shrink the bursts of a cheap stage; a truly expensive stage still gets there in a few. */
  w->est_ns = (w->est_ns == 0 || per < w->est_ns) ? per + 1 : (7 * w->est_ns + per) / 8 + 1;
  pl_stage *st = w->st;
  int64_t want = PL_BURST_TARGET_NS / w->est_ns;
  if (want > (int64_t)st->in->kmax) want = (int64_t)st->in->kmax;
  if (want < 1) want = 1;
  if (atomic_load_explicit(&st->hint, memory_order_relaxed) != (uint32_t)want)
    atomic_store_explicit(&st->hint, (uint32_t)want, memory_order_relaxed);
}

/* An ordered stage's output burst that filled up with the input burst's last item goes to the reorder
 * window with the deposit that follows at once; flushing it as a mid-burst chunk would wait for this
 * burst's turn, so a worker would stop behind a slow one instead of filling the window (with one-item
 * bursts, every item would). */
static inline bool deposit_next(const pl_worker *w, uint32_t i) { return w->st->order != NULL && i + 1 == w->in_n; }

/* Runs the stage function over the items of inb from in_pos on. Returns 0, or the error that stopped it
 * (the item that failed is not consumed: in_pos stays on it). */
static int process(pl_worker *w) {
  pl_stage *st = w->st;
  weft_ctx *ctx = w->run->ctx;
  const size_t isz = st->in_size, osz = st->out_size;
  unsigned char *inb = w->inb;
  pl_hdr *oh = w->outb ? (pl_hdr *)(void *)w->outb : NULL;
  for (uint32_t i = w->in_pos; i < w->in_n; i++) {
    int err = weft_ctx_err(ctx);
    if (err != 0) return err;
    const void *item = PL_ITEM(inb, isz, i);
    int rc;
    switch (st->kind) {
    case WEFT_STAGE_MAP:
      rc = st->fn.map(ctx, item, PL_ITEM(w->outb, osz, oh->n), st->arg);
      if (rc >= 0) {
        w->in_pos = i + 1;
        if (++oh->n >= w->target && !deposit_next(w, i) && (rc = weft__pl_flush(w)) != 0) return rc;
        continue;
      }
      break;
    case WEFT_STAGE_FILTER:
      rc = st->fn.filter(ctx, item, st->arg);
      if (rc > 0) {
        memcpy(PL_ITEM(w->outb, osz, oh->n), item, osz);
        w->in_pos = i + 1;
        if (++oh->n >= w->target && !deposit_next(w, i) && (rc = weft__pl_flush(w)) != 0) return rc;
        continue;
      }
      if (rc == 0) {
        w->in_pos = i + 1;
        weft__pl_discard_items(st->in, inb, i, i + 1, NULL);
        weft__owned_add(&w->ws->dropped, 1, memory_order_relaxed);
        continue;
      }
      break;
    case WEFT_STAGE_FLAT_MAP:
      rc = st->fn.flat_map(ctx, item, &w->em, st->arg);
      if (rc >= 0) {
        w->in_pos = i + 1;
        continue;
      }
      break;
    default: /* sink */
      rc = st->fn.sink(ctx, item, st->arg);
      if (rc >= 0) {
        w->in_pos = i + 1;
        weft__owned_add(&w->ws->out, 1, memory_order_relaxed);
        continue;
      }
      break;
    }
    /* The function failed (an error after the run was stopped is a consequence, not recorded). */
    weft__owned_add(&w->ws->errors, 1, memory_order_relaxed);
    weft__pl_fail(w->run, st, rc);
    return rc;
  }
  return 0;
}

/* Receives the next input burst into inb: without blocking if one is there; otherwise, first hands over
 * what this worker holds (nothing should wait while its worker idles), then blocks under `ctx`. */
static int next_burst(pl_worker *w, weft_ctx *ctx) {
  pl_stage *st = w->st;
  w->in_n = w->in_pos = 0;
  int rc = weft_chan_try_recv(st->in->ch, w->inb);
  if (rc == WEFT_EEMPTY) {
    if (w->outb != NULL && st->order == NULL && ((pl_hdr *)(void *)w->outb)->n > 0) {
      rc = weft__pl_flush(w);
      if (rc != 0) return rc;
    }
    rc = weft__pl_chan_recv(ctx, st->in->ch, w->inb, &w->yrecv);
  }
  if (rc != 0) return rc;
  const pl_hdr *h = (const pl_hdr *)(const void *)w->inb;
  w->in_n = h->n;
  if (st->order != NULL)
    w->cur_seq = st->in->serial ? h->seq : atomic_fetch_add_explicit(&st->recv_seq, 1, memory_order_relaxed);
  weft__owned_add(&w->ws->in, h->n, memory_order_relaxed);
  return 0;
}

static int run_items(pl_worker *w) {
  pl_stage *st = w->st;
  weft_ctx *ctx = w->run->ctx;
  for (;;) {
    int rc = next_burst(w, ctx);
    if (rc == WEFT_ECLOSED) return 0; /* end of input: every item upstream has been seen */
    if (rc != 0) return rc;
    int64_t t0 = weft_now();
    rc = process(w);
    measure(w, t0, weft_now(), w->in_n);
    if (rc != 0) return rc;
    if (st->order != NULL && (rc = weft__pl_order_deposit(w)) != 0) return rc;
  }
}

/* Calls the batch function on the group; on success the group's items are consumed. */
static int call_group(pl_worker *w) {
  pl_stage *st = w->st;
  if (w->gn == 0) return 0;
  int64_t t0 = weft_now();
  int rc = st->fn.batch(w->run->ctx, w->group, w->gn, &w->em, st->arg);
  measure(w, t0, weft_now(), (uint32_t)w->gn);
  if (rc < 0) {
    weft__owned_add(&w->ws->errors, 1, memory_order_relaxed);
    weft__pl_fail(w->run, st, rc);
    return rc;
  }
  w->gn = 0;
  return 0;
}

static int run_batch(pl_worker *w) {
  pl_stage *st = w->st;
  weft_ctx *ctx = w->run->ctx;
  weft_ctx *gctx = NULL; /* the group's deadline, while a group is open and batch_time is finite */
  weft_cancel *gcancel = NULL;
  const size_t isz = st->in_size;
  int rc = 0;
  for (;;) {
    while (w->in_pos < w->in_n) {
      if ((rc = weft_ctx_err(ctx)) != 0) goto out;
      memcpy(w->group + w->gn * isz, PL_ITEM(w->inb, isz, w->in_pos), isz);
      w->in_pos++;
      if (++w->gn == 1 && st->o.batch_time != WEFT_FOREVER &&
          (rc = weft_ctx_with_timeout(ctx, st->o.batch_time, &gctx, &gcancel)) != 0) {
        weft__pl_fail(w->run, st, rc);
        goto out;
      }
      if (w->gn == st->o.batch_count) {
        weft_ctx_end(gcancel);
        gctx = NULL;
        gcancel = NULL;
        if ((rc = call_group(w)) != 0) goto out;
      }
    }
    rc = next_burst(w, gctx ? gctx : ctx);
    if (rc == WEFT_ECLOSED) { /* end of input: the partial group goes too */
      rc = call_group(w);
      goto out;
    }
    if (rc == WEFT_EDEADLINE && gctx != NULL && weft_ctx_err(ctx) == 0) { /* the group's time is up */
      weft_ctx_end(gcancel);
      gctx = NULL;
      gcancel = NULL;
      if ((rc = call_group(w)) != 0) goto out;
      continue;
    }
    if (rc != 0) goto out;
  }
out:
  weft_ctx_end(gcancel);
  return rc;
}

static int run_source(pl_worker *w) {
  pl_stage *st = w->st;
  pl_run *run = w->run;
  w->target = target_for(st);
  int rc = st->fn.source(run->src_ctx, &w->em, st->arg);
  if (rc < 0) {
    bool drained = atomic_load(&st->pl->draining) != 0;
    if (drained && weft_ctx_err(run->ctx) == 0 && (rc == WEFT_ESTOPPED || rc == WEFT_ECANCELED))
      rc = 0; /* stopped by the drain: a normal end */
    else {
      weft__owned_add(&w->ws->errors, 1, memory_order_relaxed);
      weft__pl_fail(run, st, rc);
    }
  }
  if (rc >= 0) rc = weft_ctx_err(run->ctx); /* returned 0 from a cancelled run: not a normal end */
  return rc;
}

void *weft__pl_worker_main(void *arg) {
  pl_worker *w = arg;
  pl_stage *st = w->st;
  if (st->out != NULL) w->target = target_for(st);
  int rc;
  switch (st->kind) {
  case WEFT_STAGE_SOURCE: rc = run_source(w); break;
  case WEFT_STAGE_BATCH: rc = run_batch(w); break;
  default: rc = run_items(w); break;
  }
  /* What this worker still holds: hand it on after a normal end, discard it otherwise. */
  if (rc == 0 && w->outb != NULL && st->order == NULL) rc = weft__pl_send(w, w->outb);
  if (rc != 0) {
    atomic_store(&w->run->aborted, 1);
    if (w->in_n > w->in_pos) weft__pl_discard_items(st->in, w->inb, w->in_pos, w->in_n, w->ws);
    if (w->outb != NULL) {
      pl_hdr *oh = (pl_hdr *)(void *)w->outb;
      weft__pl_discard_items(st->out, w->outb, 0, oh->n, w->ws);
      oh->n = 0;
    }
    if (w->gn > 0) { /* a partial group: items laid out without a header */
      pl_edge *e = st->in;
      if (e->discard != NULL)
        for (size_t i = 0; i < w->gn; i++) e->discard(w->group + i * e->isz, e->discard_arg);
      weft__owned_add(&w->ws->discarded, w->gn, memory_order_relaxed);
    }
  }
  w->in_n = w->in_pos = 0;
  w->gn = 0;
  atomic_store_explicit(&w->ws->done, 1, memory_order_release);
  atomic_fetch_sub(&st->live, 1);
  if (st->out != NULL && atomic_fetch_sub(&st->out->senders, 1) == 1) weft_chan_close(st->out->ch);
  return NULL;
}
