/* lib/pipeline/pipeline.c: building a pipeline (options, validation), statistics, drain, destroy. */
#include <stdio.h>

#include "pipeline/pipeline_impl.h"

size_t weft__pl_kmax(size_t isz, size_t burst, size_t capacity) {
  if (burst != 0) return burst;
  /* Automatic: up to PL_BURST_MAX items and PL_BURST_BYTES, and at most a quarter of the capacity, so the
   * channel has room for PL_MIN_SLOTS bursts: when bursts shrink to one item (an expensive receiver),
   * the edge still buffers several. */
  size_t k = PL_BURST_BYTES / isz;
  if (k > PL_BURST_MAX) k = PL_BURST_MAX;
  if (k > capacity / PL_MIN_SLOTS) k = capacity / PL_MIN_SLOTS;
  return k == 0 ? 1 : k;
}

int weft_pipeline_create(const weft_pipeline_opts *opts, weft_pipeline **out) {
  if (out == NULL) return WEFT_EINVAL;
  *out = NULL;
  weft_pipeline *p = calloc(1, sizeof *p);
  if (p == NULL) return WEFT_ENOMEM;
  p->name = strdup(opts && opts->name ? opts->name : "pipeline");
  if (p->name == NULL) {
    free(p);
    return WEFT_ENOMEM;
  }
  WEFT__ASSERT(pthread_mutex_init(&p->mu, NULL) == 0);
  p->err_stage = -1;
  *out = p;
  return 0;
}

static void stage_free(pl_stage *st) {
  if (st == NULL) return;
  free(st->name);
  free(st->ws);
  free(st);
}

int weft_pipeline_destroy(weft_pipeline *p) {
  if (p == NULL) return WEFT_EINVAL;
  pthread_mutex_lock(&p->mu);
  int state = p->state;
  pthread_mutex_unlock(&p->mu);
  if (state == PL_RUNNING) return WEFT_EBUSY;
  weft__pl_async_free(p); /* a started run's thread, joined if nobody did */
  for (size_t i = 0; i < p->nstages; i++) stage_free(p->stages[i]);
  free(p->stages);
  free(p->name);
  pthread_mutex_destroy(&p->mu);
  free(p);
  return 0;
}

/* Checks the options of a stage of `kind` against the pipeline so far. */
static int check(const weft_pipeline *p, int kind, const weft_stage_opts *o) {
  if (o->workers == 0 || o->workers > WEFT_STAGE_MAX_WORKERS) return WEFT_EINVAL;
  if (o->item_size > WEFT_STAGE_MAX_ITEM_SIZE || o->burst > WEFT_STAGE_MAX_BURST) return WEFT_EINVAL;
  if (kind != WEFT_STAGE_SINK && (o->out_capacity == 0 || o->out_capacity > WEFT_STAGE_MAX_CAPACITY))
    return WEFT_EINVAL;
  if (o->ordered) {
    if (kind != WEFT_STAGE_MAP && kind != WEFT_STAGE_FILTER && kind != WEFT_STAGE_FLAT_MAP) return WEFT_EINVAL;
    if (o->reorder_window == 0 || o->reorder_window > WEFT_STAGE_MAX_WINDOW) return WEFT_EINVAL;
  }
  if (kind == WEFT_STAGE_SOURCE) {
    if (o->item_size == 0 || o->workers != 1) return WEFT_EINVAL;
    if (p->nsrc > 0) { /* sources merge into one edge: same item type */
      const pl_stage *s0 = p->stages[0];
      if (s0->out_size != o->item_size || s0->out_discard != o->discard || s0->out_discard_arg != o->discard_arg)
        return WEFT_EINVAL;
    }
  }
  if (kind == WEFT_STAGE_FILTER && (o->item_size != 0 || o->discard != NULL)) return WEFT_EINVAL;
  if (kind == WEFT_STAGE_SINK && (o->item_size != 0 || o->discard != NULL)) return WEFT_EINVAL;
  if (kind == WEFT_STAGE_BATCH && (o->batch_count == 0 || o->batch_count > WEFT_STAGE_MAX_BATCH || o->batch_time <= 0))
    return WEFT_EINVAL;
  return 0;
}

static const char *kind_name(int kind) {
  switch (kind) {
  case WEFT_STAGE_SOURCE: return "source";
  case WEFT_STAGE_MAP: return "map";
  case WEFT_STAGE_FILTER: return "filter";
  case WEFT_STAGE_FLAT_MAP: return "flat_map";
  case WEFT_STAGE_BATCH: return "batch";
  default: return "sink";
  }
}

static int add(weft_pipeline *p, int kind, const weft_stage_opts *opts, void (*fn)(void), void *arg) {
  static const weft_stage_opts dflt = WEFT_STAGE_OPTS_INIT;
  if (p == NULL || fn == NULL) return WEFT_EINVAL;
  const weft_stage_opts *o = opts ? opts : &dflt;
  pthread_mutex_lock(&p->mu);
  int state = p->state;
  pthread_mutex_unlock(&p->mu);
  if (state != PL_BUILDING || p->has_sink) return WEFT_ESTATE;
  if (kind == WEFT_STAGE_SOURCE && p->nstages != p->nsrc) return WEFT_ESTATE;
  if (kind != WEFT_STAGE_SOURCE && p->nsrc == 0) return WEFT_ESTATE;
  int rc = check(p, kind, o);
  if (rc != 0) return rc;

  if (p->nstages == p->cap) {
    size_t ncap = p->cap ? 2 * p->cap : 8;
    pl_stage **ns = realloc(p->stages, ncap * sizeof *ns);
    if (ns == NULL) return WEFT_ENOMEM;
    p->stages = ns;
    p->cap = ncap;
  }
  pl_stage *st = aligned_alloc(WEFT__CACHELINE, (sizeof *st + WEFT__CACHELINE - 1) / WEFT__CACHELINE * WEFT__CACHELINE);
  if (st == NULL) return WEFT_ENOMEM;
  memset(st, 0, sizeof *st);
  char buf[48];
  if (o->name == NULL) {
    if (kind == WEFT_STAGE_SOURCE || kind == WEFT_STAGE_SINK)
      snprintf(buf, sizeof buf, "%s", kind_name(kind));
    else
      snprintf(buf, sizeof buf, "%s %zu", kind_name(kind), p->nstages);
  }
  st->name = strdup(o->name ? o->name : buf);
  size_t wsb = o->workers * sizeof(pl_wstats);
  st->ws = aligned_alloc(WEFT__CACHELINE, wsb);
  if (st->name == NULL || st->ws == NULL) {
    stage_free(st);
    return WEFT_ENOMEM;
  }
  memset(st->ws, 0, wsb);
  st->pl = p;
  st->index = p->nstages;
  st->kind = kind;
  st->o = *o;
  st->o.name = st->name;
  st->fn.any = fn;
  st->arg = arg;
  if (kind == WEFT_STAGE_SOURCE) {
    st->out_size = o->item_size;
    st->out_discard = o->discard;
    st->out_discard_arg = o->discard_arg;
  } else {
    const pl_stage *prev = p->stages[p->nstages - 1];
    st->in_size = prev->out_size;
    if (kind == WEFT_STAGE_SINK) {
      st->out_size = 0;
    } else if (o->item_size == 0) { /* same item type as the input */
      st->out_size = st->in_size;
      st->out_discard = o->discard ? o->discard : prev->out_discard;
      st->out_discard_arg = o->discard ? o->discard_arg : prev->out_discard_arg;
    } else {
      st->out_size = o->item_size;
      st->out_discard = o->discard;
      st->out_discard_arg = o->discard_arg;
    }
  }
  p->stages[p->nstages++] = st;
  if (kind == WEFT_STAGE_SOURCE) p->nsrc++;
  if (kind == WEFT_STAGE_SINK) p->has_sink = true;
  return 0;
}

int weft_pipeline_source(weft_pipeline *p, const weft_stage_opts *o, weft_source_fn fn, void *arg) {
  return add(p, WEFT_STAGE_SOURCE, o, (void (*)(void))fn, arg);
}
int weft_pipeline_map(weft_pipeline *p, const weft_stage_opts *o, weft_map_fn fn, void *arg) {
  return add(p, WEFT_STAGE_MAP, o, (void (*)(void))fn, arg);
}
int weft_pipeline_filter(weft_pipeline *p, const weft_stage_opts *o, weft_filter_fn fn, void *arg) {
  return add(p, WEFT_STAGE_FILTER, o, (void (*)(void))fn, arg);
}
int weft_pipeline_flat_map(weft_pipeline *p, const weft_stage_opts *o, weft_flat_map_fn fn, void *arg) {
  return add(p, WEFT_STAGE_FLAT_MAP, o, (void (*)(void))fn, arg);
}
int weft_pipeline_batch(weft_pipeline *p, const weft_stage_opts *o, weft_batch_fn fn, void *arg) {
  return add(p, WEFT_STAGE_BATCH, o, (void (*)(void))fn, arg);
}
int weft_pipeline_sink(weft_pipeline *p, const weft_stage_opts *o, weft_sink_fn fn, void *arg) {
  return add(p, WEFT_STAGE_SINK, o, (void (*)(void))fn, arg);
}

/* The first error of a live run, recorded under the pipeline's lock beside drain's state; the run's
 * context is then cancelled with it as cause (see pipeline_run.c). */
void weft__pl_fail(pl_run *run, pl_stage *st, int err) {
  weft_pipeline *p = run->pl;
  pthread_mutex_lock(&p->mu);
  bool first = p->err == 0 && weft_ctx_err(run->ctx) == 0;
  if (first) {
    p->err = err;
    p->err_stage = st ? (long)st->index : -1;
  }
  pthread_mutex_unlock(&p->mu);
  if (first) weft_ctx_cancel_cause(run->cancel, err);
}

int weft_pipeline_drain(weft_pipeline *p) {
  if (p == NULL) return WEFT_EINVAL;
  pthread_mutex_lock(&p->mu);
  int rc = 0;
  if (p->state == PL_DONE) {
    rc = WEFT_ESTATE;
  } else {
    atomic_store(&p->draining, 1);
    /* The run creates src_ctx under mu, after reading `draining`: one of the two sees the other. */
    if (p->run != NULL && p->run->src_cancel != NULL)
      weft_ctx_cancel_cause(p->run->src_cancel, WEFT_ESTOPPED);
  }
  pthread_mutex_unlock(&p->mu);
  return rc;
}

size_t weft_pipeline_stage_count(const weft_pipeline *p) { return p ? p->nstages : 0; }

static uint64_t sum_out(const pl_stage *st) {
  uint64_t v = 0;
  for (size_t w = 0; w < st->o.workers; w++) v += atomic_load_explicit(&st->ws[w].out, memory_order_relaxed);
  return v;
}

int weft_pipeline_stats(weft_pipeline *p, size_t index, weft_stage_stats *out) {
  if (p == NULL || out == NULL || index >= p->nstages) return WEFT_EINVAL;
  const pl_stage *st = p->stages[index];
  memset(out, 0, sizeof *out);
  out->name = st->name;
  out->kind = st->kind;
  out->workers = st->o.workers;
  bool done = true;
  for (size_t w = 0; w < st->o.workers; w++) {
    const pl_wstats *s = &st->ws[w];
    out->items_in += atomic_load_explicit(&s->in, memory_order_relaxed);
    out->items_out += atomic_load_explicit(&s->out, memory_order_relaxed);
    out->dropped += atomic_load_explicit(&s->dropped, memory_order_relaxed);
    out->discarded += atomic_load_explicit(&s->discarded, memory_order_relaxed);
    out->errors += atomic_load_explicit(&s->errors, memory_order_relaxed);
    out->busy_ns += atomic_load_explicit(&s->busy, memory_order_relaxed);
    done = done && atomic_load_explicit(&s->done, memory_order_acquire);
  }
  out->done = done;
  if (st->kind != WEFT_STAGE_SOURCE) {
    uint64_t up = 0;
    if (index == p->nsrc)
      for (size_t s = 0; s < p->nsrc; s++) up += sum_out(p->stages[s]);
    else
      up = sum_out(p->stages[index - 1]);
    /* Items discarded from the input channel after a stop were counted as discarded by this stage. */
    uint64_t gone = out->items_in;
    for (size_t w = 0; w < st->o.workers; w++)
      gone += atomic_load_explicit(&st->ws[w].discarded, memory_order_relaxed);
    out->queue_depth = up > out->items_in ? (size_t)(up - out->items_in) : 0;
    if (done) out->queue_depth = up > gone ? (size_t)(up - gone) : 0;
  }
  return 0;
}

size_t weft_pipeline_bound(const weft_pipeline *p) {
  if (p == NULL) return 0;
  size_t total = 0;
  for (size_t i = 0; i < p->nstages; i++) {
    const pl_stage *st = p->stages[i];
    size_t kin = 0, kout = 0;
    if (st->kind != WEFT_STAGE_SOURCE) {
      const pl_stage *up = p->stages[i - 1];
      kin = weft__pl_kmax(st->in_size, up->o.burst, up->o.out_capacity);
    }
    if (st->kind != WEFT_STAGE_SINK) {
      kout = weft__pl_kmax(st->out_size, st->o.burst, st->o.out_capacity);
      /* The channel after this stage (sources share one: count it once, with the first source). */
      if (st->kind != WEFT_STAGE_SOURCE || i == 0) {
        size_t slots = (st->o.out_capacity + kout - 1) / kout;
        total += slots * kout;
      }
    }
    size_t per_worker = kin + kout;
    if (st->kind == WEFT_STAGE_BATCH) per_worker += st->o.batch_count;
    total += st->o.workers * per_worker;
    if (st->o.ordered && st->o.workers > 1) total += st->o.reorder_window * kout;
  }
  return total;
}
