/* pipelines/pipeline_run.c: one run of a pipeline — wiring, threads, the first error, cleanup.
 *
 * Design notes.
 *
 * Wiring. Edge i is the bounded channel into stage nsrc + i; every source feeds edge 0. A channel element is
 * a burst (pl_hdr + up to kmax items), so one channel operation moves many items; an edge's capacity in
 * items (out_capacity) is rounded up to whole bursts. Each edge counts its sending threads; the last one to
 * finish closes the channel, which is how end of input travels down the line: a worker that finds its
 * input closed and drained has seen every item, hands on what it holds, and finishes.
 *
 * Threads. Every source and every stage worker is a thread of its own, created here with all signals
 * blocked; the sink's first worker runs on the calling thread. All are joined before the run returns.
 *
 * The first error. A stage function that fails calls weft__pl_fail(): under the pipeline's lock the first
 * error of a live run is recorded with its stage, then the run's context is cancelled with the error as
 * cause. Every blocking call inside the run takes that context — channel sends and receives, the reorder
 * window's waits (woken by an after-func on the context), stage functions' own waits — so every thread
 * returns promptly. Errors seen after the context is done are consequences, not causes, and are not
 * recorded. A worker that stops for any reason but the normal end of its input marks the run aborted;
 * a run that was not aborted returns 0 even if the caller's context ended just after the last item.
 *
 * Nothing leaks. Workers release what they hold when they stop early (weft__pl_release_items). After every
 * thread is joined, this file releases what is left: reorder windows (pipeline_order.c) and channels, whose
 * release hook walks the bursts still buffered. No thread is running then, so no item can be released
 * twice, and every item is in exactly one of those places.
 *
 * Drain. weft_pipeline_drain() sets `draining` and cancels the sources' context (a child of the run's):
 * sources stop, but the items they emitted are sent under the run's context, which drain does not touch,
 * so everything emitted goes through. */
#include <signal.h>

#include "pipeline_impl.h"

void weft__pl_release_items(pl_edge *e, unsigned char *buf, uint32_t from, uint32_t to, pl_wstats *ws) {
  if (to <= from) return;
  if (e->release != NULL)
    for (uint32_t i = from; i < to; i++) e->release(PL_ITEM(buf, e->isz, i), e->release_arg);
  if (ws != NULL) pl_add(&ws->released, to - from);
}

/* Channel release hook: a burst still buffered when the run's channels are destroyed. Counted on the
 * receiving stage's first worker (no thread is running by then). */
static void edge_release(void *elem, void *arg) {
  pl_edge *e = arg;
  const pl_hdr *h = elem;
  weft__pl_release_items(e, elem, 0, h->n, &e->to->ws[0]);
}

void weft__pl_fail(pl_run *run, pl_stage *st, int err) {
  weft_pipeline *p = run->pl;
  pthread_mutex_lock(&p->mu);
  bool first = p->err == 0 && weft_ctx_err(run->ctx) == 0;
  if (first) {
    p->err = err;
    p->err_stage = st ? (long)st->index : -1;
  }
  pthread_mutex_unlock(&p->mu);
  if (first) weft_ctx_cancel_cause(run->ctx, err);
}

/* Waiting inside a run. A run has more threads than this machine has cores as a rule (a source, N workers
 * per stage, a sink), and the thread a waiter waits for is often runnable but not running. Spinning on a
 * pause instruction would hold the core it needs; parking costs ~14 us per round trip (NOTES.md). So a
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
  return send ? weft_chan_send(ctx, ch, buf) : weft_chan_recv(ctx, ch, buf);
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
  if (rc == 0) pl_add(&w->ws->out, n);
  else weft__pl_release_items(e, buf, 0, n - (buf == w->outb ? w->keep_last : 0), w->ws);
  h->n = 0;
  return rc;
}

/* After-func on the run's context: wakes workers waiting in reorder windows. */
static void waker(void *arg) {
  pl_run *run = arg;
  weft_pipeline *p = run->pl;
  for (size_t i = 0; i < p->nstages; i++)
    if (p->stages[i]->order != NULL) weft__pl_order_wake(p->stages[i]);
  atomic_store_explicit(&run->waker_done, 1, memory_order_release);
}

static void *zalloc_aligned(size_t n) {
  n = (n + PL_CACHELINE - 1) / PL_CACHELINE * PL_CACHELINE;
  void *q = aligned_alloc(PL_CACHELINE, n ? n : PL_CACHELINE);
  if (q != NULL) memset(q, 0, n ? n : PL_CACHELINE);
  return q;
}

static void run_free(pl_run *run) {
  if (run == NULL) return;
  weft_pipeline *p = run->pl;
  for (size_t i = 0; i < run->nworkers; i++) {
    free(run->workers[i].inb);
    free(run->workers[i].outb);
    free(run->workers[i].group);
  }
  free(run->workers);
  for (size_t i = 0; i < p->nstages; i++) weft__pl_order_free(p->stages[i]);
  for (size_t i = 0; i < run->nedges; i++)
    if (run->edges[i].ch != NULL) weft_chan_destroy(run->edges[i].ch);
  free(run->edges);
  for (size_t i = 0; i < p->nstages; i++) p->stages[i]->in = p->stages[i]->out = NULL;
  weft_ctx_end(run->src_ctx);
  weft_ctx_end(run->ctx);
  free(run);
}

/* Builds the edges, workers and reorder windows. */
static int run_setup(pl_run *run) {
  weft_pipeline *p = run->pl;
  size_t nedges = p->nstages - p->nsrc;
  run->edges = calloc(nedges, sizeof *run->edges);
  if (run->edges == NULL) return WEFT_ENOMEM;
  run->nedges = nedges; /* only now: run_free() walks edges[0..nedges) */
  for (size_t i = 0; i < run->nedges; i++) {
    pl_edge *e = &run->edges[i];
    pl_stage *up = p->stages[i == 0 ? 0 : p->nsrc + i - 1];
    pl_stage *to = p->stages[p->nsrc + i];
    e->isz = up->out_size;
    e->kmax = weft__pl_kmax(e->isz, up->o.burst, up->o.out_capacity);
    e->bsz = PL_HDR + e->kmax * e->isz;
    e->slots = (up->o.out_capacity + e->kmax - 1) / e->kmax;
    e->release = up->out_release;
    e->release_arg = up->out_release_arg;
    e->to = to;
    e->serial = i == 0 ? p->nsrc == 1 : up->o.workers == 1 || up->o.ordered;
    atomic_init(&e->send_seq, 0);
    atomic_init(&e->senders, i == 0 ? p->nsrc : up->o.workers);
    weft_chan_opts co = WEFT_CHAN_OPTS_INIT;
    co.elem_size = e->bsz;
    co.capacity = e->slots;
    co.release = edge_release;
    co.release_arg = e;
    int rc = weft_chan_create_opts(&co, &e->ch);
    if (rc != 0) return rc;
    to->in = e;
    if (i == 0)
      for (size_t s = 0; s < p->nsrc; s++) p->stages[s]->out = e;
    else
      up->out = e;
  }
  size_t nworkers = 0;
  for (size_t i = 0; i < p->nstages; i++) nworkers += p->stages[i]->o.workers;
  run->workers = calloc(nworkers, sizeof *run->workers);
  if (run->workers == NULL) return WEFT_ENOMEM;
  run->nworkers = nworkers; /* only now: run_free() walks workers[0..nworkers) */
  size_t k = 0;
  for (size_t i = 0; i < p->nstages; i++) {
    pl_stage *st = p->stages[i];
    atomic_init(&st->hint, 1);
    atomic_init(&st->recv_seq, 0);
    atomic_init(&st->live, st->o.workers);
    st->workers = &run->workers[k];
    for (size_t j = 0; j < st->o.workers; j++) { /* stats may be read concurrently: atomic stores */
      pl_wstats *s = &st->ws[j];
      atomic_store(&s->in, 0);
      atomic_store(&s->out, 0);
      atomic_store(&s->dropped, 0);
      atomic_store(&s->released, 0);
      atomic_store(&s->errors, 0);
      atomic_store(&s->busy, 0);
      atomic_store(&s->done, 0);
    }
    if (st->o.ordered && st->o.workers > 1) {
      int rc = weft__pl_order_new(st, st->o.reorder_window);
      if (rc != 0) return rc;
    }
    for (size_t j = 0; j < st->o.workers; j++, k++) {
      pl_worker *w = &run->workers[k];
      w->st = st;
      w->run = run;
      w->id = j;
      w->ws = &st->ws[j];
      w->em.w = w;
      if (st->in != NULL && (w->inb = zalloc_aligned(st->in->bsz)) == NULL) return WEFT_ENOMEM;
      if (st->out != NULL && (w->outb = zalloc_aligned(st->out->bsz)) == NULL) return WEFT_ENOMEM;
      if (st->kind == WEFT_STAGE_BATCH && (w->group = zalloc_aligned(st->o.batch_count * st->in_size)) == NULL)
        return WEFT_ENOMEM;
    }
  }
  return 0;
}

int weft_pipeline_run(weft_pipeline *p, weft_ctx *ctx, weft_pipeline_report *report) {
  if (report != NULL) {
    memset(report, 0, sizeof *report);
    report->stage = -1;
  }
  if (p == NULL) return WEFT_EINVAL;
  pthread_mutex_lock(&p->mu);
  int rc = p->state != PL_BUILDING ? WEFT_ESTATE : (p->nsrc == 0 || !p->has_sink) ? WEFT_EINVAL : 0;
  if (rc == 0) p->state = PL_RUNNING;
  pthread_mutex_unlock(&p->mu);
  if (rc != 0) {
    if (report != NULL) report->err = rc;
    return rc;
  }
  int64_t t0 = weft_now();
  pl_run *run = calloc(1, sizeof *run);
  if (run == NULL) {
    rc = WEFT_ENOMEM;
    goto setup_failed;
  }
  run->pl = p;
  rc = weft_ctx_with_cancel(ctx ? ctx : weft_background(), &run->ctx);
  if (rc == 0) rc = run_setup(run);
  if (rc == 0) rc = weft_ctx_with_cancel(run->ctx, &run->src_ctx);
  bool ordered = false;
  for (size_t i = 0; i < p->nstages; i++) ordered = ordered || p->stages[i]->order != NULL;
  if (rc == 0 && ordered) rc = weft_ctx_after_func(run->ctx, waker, run, &run->waker);
  if (rc != 0) goto setup_failed;

  pthread_mutex_lock(&p->mu);
  p->run = run;
  p->err = 0;
  p->err_stage = -1;
  if (atomic_load(&p->draining)) weft_ctx_cancel_cause(run->src_ctx, WEFT_ESTOPPED);
  pthread_mutex_unlock(&p->mu);

  /* Every worker but the sink's first on a thread of its own; the sink's first on this one. */
  pl_worker *mine = p->stages[p->nstages - 1]->workers;
  for (size_t i = 0; i < run->nworkers; i++) {
    pl_worker *w = &run->workers[i];
    if (w == mine) continue;
    if (weft__runtime_thread(&w->th, weft__pl_worker_main, w) == 0) {
      w->started = true;
    } else {
      weft__pl_fail(run, NULL, WEFT_ESYS);
      w->started = true; /* run it here instead: it sees the cancelled context and only winds down */
      weft__pl_worker_main(w);
      w->started = false;
    }
  }
  weft__pl_worker_main(mine);
  for (size_t i = 0; i < run->nworkers; i++)
    if (run->workers[i].started) pthread_join(run->workers[i].th, NULL);
  if (run->waker != NULL && !weft_after_stop(run->waker))
    while (!atomic_load_explicit(&run->waker_done, memory_order_acquire)) sched_yield();

  /* The result. */
  pthread_mutex_lock(&p->mu);
  int err = p->err;
  long stage = p->err_stage;
  bool drained = atomic_load(&p->draining) != 0;
  pthread_mutex_unlock(&p->mu);
  int cause = 0;
  if (err == 0 && atomic_load(&run->aborted)) {
    err = weft_ctx_err(run->ctx);
    if (err == 0) err = WEFT_ECANCELED; /* not reached: a worker aborts only on a done context */
    stage = -1;
  }
  if (weft_ctx_err(run->ctx) != 0) cause = weft_ctx_cause(run->ctx);

  pthread_mutex_lock(&p->mu);
  p->run = NULL;
  pthread_mutex_unlock(&p->mu);
  run_free(run); /* releases whatever is left in windows and channels */
  pthread_mutex_lock(&p->mu);
  p->state = PL_DONE;
  p->err = err;
  p->err_stage = stage;
  pthread_mutex_unlock(&p->mu);
  if (report != NULL) {
    report->err = err;
    report->cause = err != 0 ? cause : 0;
    report->stage = stage;
    report->stage_name = stage >= 0 ? p->stages[stage]->name : NULL;
    report->drained = drained;
    for (size_t i = 0; i < p->nstages; i++)
      for (size_t w = 0; w < p->stages[i]->o.workers; w++)
        report->released += atomic_load(&p->stages[i]->ws[w].released);
    report->elapsed_ns = weft_now() - t0;
  }
  return err;

setup_failed:
  if (run != NULL) run_free(run);
  pthread_mutex_lock(&p->mu);
  p->state = PL_BUILDING; /* nothing ran: the pipeline may be run again */
  pthread_mutex_unlock(&p->mu);
  if (report != NULL) report->err = rc;
  return rc;
}
