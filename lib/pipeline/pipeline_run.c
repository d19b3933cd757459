/* lib/pipeline/pipeline_run.c: one run of a pipeline — wiring, threads, the first error, cleanup.
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
 * The first error. A stage function that fails calls weft__pl_fail() (pipeline.c): under the pipeline's lock the first
 * error of a live run is recorded with its stage, then the run's context is cancelled with the error as
 * cause. Every blocking call inside the run takes that context — channel sends and receives, the reorder
 * window's waits (woken by an after-func on the context), stage functions' own waits — so every thread
 * returns promptly. Errors seen after the context is done are consequences, not causes, and are not
 * recorded. A worker that stops for any reason but the normal end of its input marks the run aborted;
 * a run that was not aborted returns 0 even if the caller's context ended just after the last item.
 *
 * Nothing leaks. Workers discard what they hold when they stop early (weft__pl_discard_items, in
 * pipeline_edge.c). After every
 * thread is joined, this file discards what is left: reorder windows (pipeline_order.c) and channels, whose
 * discard hook walks the bursts still buffered. No thread is running then, so no item can be discarded
 * twice, and every item is in exactly one of those places.
 *
 * Started runs (weft_pipeline_start). The run is the same; it runs on a thread of its own (the "runner",
 * which also runs the sink's first worker, as the caller's thread does for weft_pipeline_run), so it costs
 * no more threads than a blocking run. start claims the pipeline (state RUNNING) before it returns, so
 * its errors are synchronous and a second run cannot begin. When the run returned, the runner stores the
 * report, calls on_done, and only then cancels `done` (a context of the start's own): that is what makes
 * the descriptor (weft_ctx_fd of `done`) readable and wakes joiners, so whoever sees the end can join and
 * destroy at once; the runner touches nothing after the cancel, and join or destroy joins its thread.
 *
 * Drain. weft_pipeline_drain() sets `draining` and cancels the sources' context (a child of the run's):
 * sources stop, but the items they emitted are sent under the run's context, which drain does not touch,
 * so everything emitted goes through. */
#include <signal.h>

#include "pipeline/pipeline_impl.h"

/* Channel discard hook: a burst still buffered when the run's channels are destroyed. Counted on the
 * receiving stage's first worker (no thread is running by then). */
static void edge_discard(void *elem, void *arg) {
  pl_edge *e = arg;
  const pl_hdr *h = elem;
  weft__pl_discard_items(e, elem, 0, h->n, &e->to->ws[0]);
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
  n = (n + WEFT__CACHELINE - 1) / WEFT__CACHELINE * WEFT__CACHELINE;
  void *q = aligned_alloc(WEFT__CACHELINE, n ? n : WEFT__CACHELINE);
  if (q != NULL) memset(q, 0, n ? n : WEFT__CACHELINE);
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
  weft_ctx_end(run->src_cancel);
  weft_ctx_end(run->cancel);
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
    e->discard = up->out_discard;
    e->discard_arg = up->out_discard_arg;
    e->to = to;
    e->serial = i == 0 ? p->nsrc == 1 : up->o.workers == 1 || up->o.ordered;
    atomic_init(&e->send_seq, 0);
    atomic_init(&e->senders, i == 0 ? p->nsrc : up->o.workers);
    weft_chan_opts co = WEFT_CHAN_OPTS_INIT;
    co.elem_size = e->bsz;
    co.capacity = e->slots;
    co.discard = edge_discard;
    co.discard_arg = e;
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
      atomic_store(&s->discarded, 0);
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

typedef struct pl_async {
  weft_pipeline *pl;
  weft_ctx *ctx; /* the run's parent (a reference), or NULL */
  weft_pipeline_done_fn on_done;
  void *done_arg;
  weft_pipeline_report rep;
  int rc;
  weft_ctx *done;      /* cancelled when the run ended and on_done returned */
  weft_cancel *done_k;
  pthread_t th;
  bool joined; /* under the pipeline's mu */
} pl_async;

/* Claims the pipeline for a run: 0, WEFT_ESTATE (run, running, or a started run not joined yet),
 * WEFT_EINVAL (no source or no sink). */
static int claim(weft_pipeline *p) {
  pthread_mutex_lock(&p->mu);
  int rc = p->state != PL_BUILDING || (p->async != NULL && !p->async->joined) ? WEFT_ESTATE
           : (p->nsrc == 0 || !p->has_sink)                                  ? WEFT_EINVAL
                                                                             : 0;
  if (rc == 0) p->state = PL_RUNNING;
  pthread_mutex_unlock(&p->mu);
  return rc;
}

static int run_claimed(weft_pipeline *p, weft_ctx *ctx, weft_pipeline_report *report);

int weft_pipeline_run(weft_pipeline *p, weft_ctx *ctx, weft_pipeline_report *report) {
  if (report != NULL) {
    memset(report, 0, sizeof *report);
    report->stage = -1;
  }
  if (p == NULL) return WEFT_EINVAL;
  int rc = claim(p);
  if (rc != 0) {
    if (report != NULL) report->err = rc;
    return rc;
  }
  return run_claimed(p, ctx, report);
}

/* The run, once claimed (state RUNNING). report is zeroed by the caller. */
static int run_claimed(weft_pipeline *p, weft_ctx *ctx, weft_pipeline_report *report) {
  int rc;
  int64_t t0 = weft_now();
  pl_run *run = calloc(1, sizeof *run);
  if (run == NULL) {
    rc = WEFT_ENOMEM;
    goto setup_failed;
  }
  run->pl = p;
  rc = weft_ctx_with_cancel(ctx ? ctx : weft_background(), &run->ctx, &run->cancel);
  if (rc == 0) rc = run_setup(run);
  if (rc == 0) rc = weft_ctx_with_cancel(run->ctx, &run->src_ctx, &run->src_cancel);
  bool ordered = false;
  for (size_t i = 0; i < p->nstages; i++) ordered = ordered || p->stages[i]->order != NULL;
  if (rc == 0 && ordered) rc = weft_ctx_after_func(run->ctx, waker, run, &run->waker);
  if (rc != 0) goto setup_failed;

  pthread_mutex_lock(&p->mu);
  p->run = run;
  p->err = 0;
  p->err_stage = -1;
  if (atomic_load(&p->draining)) weft_ctx_cancel_cause(run->src_cancel, WEFT_ESTOPPED);
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
  weft_after_free(run->waker);
  run->waker = NULL;

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
  run_free(run); /* discards whatever is left in windows and channels */
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
        report->discarded += atomic_load(&p->stages[i]->ws[w].discarded);
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

/* ---- runs started without blocking (weft_pipeline_start) ---------------------------------------- */


static _Thread_local weft_pipeline *tl_runner; /* the pipeline whose runner this thread is */

static void *runner_main(void *arg) {
  pl_async *a = arg;
  tl_runner = a->pl;
  a->rc = run_claimed(a->pl, a->ctx, &a->rep);
  weft_ctx_release(a->ctx);
  a->ctx = NULL;
  if (a->on_done != NULL) a->on_done(a->pl, &a->rep, a->done_arg);
  tl_runner = NULL;
  weft_ctx_cancel(a->done_k); /* the last touch: join or destroy may free everything after it */
  return NULL;
}

static void async_free(pl_async *a) {
  if (a == NULL) return;
  weft_ctx_end(a->done_k);
  free(a);
}

void weft__pl_async_free(weft_pipeline *p) {
  pl_async *a = p->async;
  if (a == NULL) return;
  WEFT__ASSERT(tl_runner != p); /* destroy from on_done would join its own thread */
  pthread_mutex_lock(&p->mu);
  bool join = !a->joined;
  a->joined = true;
  pthread_mutex_unlock(&p->mu);
  if (join) WEFT__ASSERT(pthread_join(a->th, NULL) == 0);
  pthread_mutex_lock(&p->mu);
  p->async = NULL;
  pthread_mutex_unlock(&p->mu);
  async_free(a);
}

int weft_pipeline_start(weft_pipeline *p, weft_ctx *ctx, weft_pipeline_done_fn on_done, void *done_arg) {
  if (p == NULL) return WEFT_EINVAL;
  int rc = claim(p);
  if (rc != 0) return rc;
  pl_async *a = calloc(1, sizeof *a);
  if (a == NULL) {
    rc = WEFT_ENOMEM;
    goto fail;
  }
  a->pl = p;
  a->on_done = on_done;
  a->done_arg = done_arg;
  a->rep.stage = -1;
  if ((rc = weft_ctx_with_cancel(weft_background(), &a->done, &a->done_k)) != 0) goto fail;
  a->ctx = weft_ctx_retain(ctx);
  /* A run set up after a failed one (WEFT_ENOMEM at setup leaves the pipeline runnable): the old state
   * goes, its thread was joined (claim() refuses while it is not). */
  pthread_mutex_lock(&p->mu);
  pl_async *old = p->async;
  p->async = a;
  pthread_mutex_unlock(&p->mu);
  if (weft__runtime_thread(&a->th, runner_main, a) != 0) {
    pthread_mutex_lock(&p->mu);
    p->async = old;
    pthread_mutex_unlock(&p->mu);
    weft_ctx_release(a->ctx);
    rc = WEFT_ESYS;
    goto fail;
  }
  async_free(old);
  return 0;
fail:
  async_free(a);
  pthread_mutex_lock(&p->mu);
  p->state = PL_BUILDING; /* nothing ran */
  pthread_mutex_unlock(&p->mu);
  return rc;
}

static pl_async *started(weft_pipeline *p) {
  pthread_mutex_lock(&p->mu);
  pl_async *a = p->async;
  pthread_mutex_unlock(&p->mu);
  return a;
}

int weft_pipeline_fd(weft_pipeline *p) {
  if (p == NULL) return WEFT_EINVAL;
  pl_async *a = started(p);
  return a == NULL ? WEFT_ESTATE : weft_ctx_fd(a->done);
}

bool weft_pipeline_done(weft_pipeline *p) {
  pl_async *a = p ? started(p) : NULL;
  return a != NULL && weft_ctx_err(a->done) != 0;
}

int weft_pipeline_join(weft_pipeline *p, weft_ctx *ctx, weft_pipeline_report *report) {
  if (p == NULL) return WEFT_EINVAL;
  pl_async *a = started(p);
  if (a == NULL) return WEFT_ESTATE;
  if (tl_runner == p) return WEFT_EBUSY;
  if (weft_ctx_err(a->done) == 0) {
    if (ctx == NULL) {
      (void)weft_ctx_wait_until(a->done, WEFT_FOREVER);
    } else {
      /* Wait for whichever ends first: the run, or the caller's patience. */
      weft_ctx *either;
      weft_cancel *either_k;
      weft_ctx *ps[2] = {a->done, ctx};
      int rc = weft_ctx_with_parents(ps, 2, &either, &either_k);
      if (rc != 0) return rc;
      (void)weft_ctx_wait_until(either, WEFT_FOREVER);
      weft_ctx_end(either_k);
      if (weft_ctx_err(a->done) == 0) return weft_ctx_err(ctx);
    }
  }
  pthread_mutex_lock(&p->mu);
  bool join = !a->joined;
  a->joined = true;
  pthread_mutex_unlock(&p->mu);
  if (join) WEFT__ASSERT(pthread_join(a->th, NULL) == 0);
  /* After a setup failure the pipeline is runnable again (claim() saw BUILDING); a later start replaces a. */
  if (report != NULL) *report = a->rep;
  return a->rc;
}
