/* weft/pipeline.h: pipelines — a source, stages and a sink wired with bounded channels, run under a context.
 *
 *     weft_pipeline *p;
 *     weft_pipeline_create(NULL, &p);
 *     weft_stage_opts o = WEFT_STAGE_OPTS_INIT;
 *     o.item_size = sizeof(int64_t);
 *     weft_pipeline_source(p, &o, numbers, NULL);           // emits int64_t items
 *     o = (weft_stage_opts)WEFT_STAGE_OPTS_INIT;
 *     o.workers = 4;                                          // fan-out: 4 threads; their outputs fan in
 *     weft_pipeline_map(p, &o, square, NULL);
 *     weft_pipeline_sink(p, NULL, collect, &sum);
 *     weft_pipeline_report rep;
 *     int rc = weft_pipeline_run(p, ctx, &rep);               // 0, or the first error and rep.stage
 *     weft_pipeline_destroy(p);
 *
 * Shape. A pipeline is one or more sources, any number of stages, and one sink, in a line: stage k reads
 * what stage k-1 emits; the outputs of several sources merge into the first stage's input. Every
 * connection is a bounded weft channel, so a slow stage slows everything upstream of it (backpressure) and
 * the memory a run uses is fixed by the options, whatever the number of items (weft_pipeline_bound()).
 * For other topologies, weft_chan_merge() and weft_chan_tee() (weft/pump.h) work on any channels.
 *
 * Threads. weft_pipeline_run() runs each source on a thread of its own, each stage on `workers` threads
 * (fan-out; their outputs fan in to one channel), and the sink's first worker on the calling thread; it
 * creates them and joins them all before it returns. Pipelines do not use the job pool. The threads block
 * every signal (as every thread weft creates), so signal contexts keep working.
 *
 * Items. Every stage's output items have one fixed size (`item_size`) and are copied by value, as channel
 * elements are. Items that are pointers to resources ("pointer items": item_size == sizeof(void *)) name a
 * `discard` hook, and then this rule holds and is enforced by the runtime:
 *
 *     Every item is delivered downstream exactly once or discarded exactly once — never both, never
 *     neither — including when the run fails, is cancelled, hits its deadline, or is drained.
 *
 * Who owns an item when:
 *   - A source owns what it creates until weft_pipeline_emit() returns 0; from then on the pipeline does.
 *     When emit fails the item was not emitted and is still the caller's.
 *   - A stage or sink function owns its input item from the call on *if it returns 0* (map, flat_map,
 *     batch, sink: the input is consumed — turned into output, passed on through emit, kept, or freed by
 *     the function itself). If it returns an error, it must not have freed or emitted the input; the
 *     pipeline discards it. A filter never owns its input: kept items pass on, dropped ones (and the
 *     input of a filter that fails) are discarded by the pipeline.
 *   - Items inside the pipeline when a run stops early (in channels, in bursts held by workers, in reorder
 *     windows, in partial batches) are discarded by the pipeline before weft_pipeline_run() returns, on the
 *     calling thread or a worker thread, never concurrently for the same item.
 * Without a discard hook, items are plain values and "discarded" means dropped (and counted in stats).
 *
 * Bursts. Inside the pipeline items travel in bursts (several items per channel element), which is how a
 * run moves millions of items per second: a worker fills an output burst as its function emits, and sends
 * it when it is full or when the worker's input is momentarily empty (so no item waits while a worker
 * idles). The burst size adapts to the receiving stage: stages whose function takes long get small bursts
 * (down to one item), so that their workers share the work; cheap stages get large ones (up to
 * `burst`). A source's partial burst is sent when it is full, when the source calls weft_pipeline_flush(),
 * and when the source returns — a source that produces items slowly and wants each one handled at once
 * calls weft_pipeline_flush() after emitting, or sets `burst` to 1.
 *
 * Ordering. A stage with `ordered` set emits its outputs in the order of its inputs, whatever the order
 * its workers finish in: finished bursts that are ahead of the oldest unfinished one wait in a reorder
 * window of `reorder_window` bursts; when the window is full, workers wait (so a slow item holds back at
 * most the window, never unbounded memory). An unordered stage emits as items finish. A stage with one
 * worker always keeps order. The input order of the first stage is the emit order of a single source.
 *
 * Errors and cancellation. The run derives a context from the caller's; stage functions receive it and
 * should pass it to whatever blocks. The first stage function to return an error cancels that context
 * with the error as cause: every worker stops promptly, including those blocked on full or empty channels
 * or in a reorder window, and the run returns that error with the stage's index in the report. If the
 * caller's context ends (cancel, deadline), the run returns its error (WEFT_ECANCELED / WEFT_EDEADLINE)
 * with stage -1. weft_pipeline_drain() stops the sources and lets everything already emitted finish.
 *
 * Errors common to every function: WEFT_EINVAL for NULL or invalid arguments, WEFT_ENOMEM, WEFT_ESTATE for
 * a call the pipeline's state does not allow (adding a stage after the sink or after a run, running twice).
 * A call that fails changes nothing and never calls the function it was given.
 *
 * Thread safety: build a pipeline (create, add stages) from one thread. weft_pipeline_run() may run on any
 * thread, once (or weft_pipeline_start() from any thread, once: the run goes on on a thread of its own).
 * weft_pipeline_drain(), weft_pipeline_stats(), weft_pipeline_stage_count() and
 * weft_pipeline_bound() may be called from any thread at any time between create and destroy, also while
 * the run is in progress. weft_pipeline_destroy() must not race with any other call. */
#ifndef WEFT_PIPELINE_H
#define WEFT_PIPELINE_H

#include "chan.h"
#include "common.h"
#include "ctx.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_pipeline weft_pipeline;
/* What a source, flat-map or batch function emits through. Valid only during the call it was given to. */
typedef struct weft_emitter weft_emitter;

/* ---- stage functions ------------------------------------------------------------------------------
 * Every function gets the run's context (done once the run is cancelled, failed, or past its deadline)
 * and the `arg` given with it. Return 0, or a negative error code (a WEFT_E* code or one of your own) to
 * fail the run. Items are passed as pointers to item_size bytes, valid during the call only, aligned for
 * any object of that size (as an array element would be); for pointer items, `*(void *const *)in` is the
 * pointer. A function may be called from several threads at once when its stage has several workers. */

/* Emits items through weft_pipeline_emit(em, ...) until it has no more, then returns 0. It should return
 * when emit fails (WEFT_ESTOPPED after a drain; the run's error once it is cancelled) or ctx is done,
 * returning that code or 0 (both count as a normal end after a drain). */
typedef int (*weft_source_fn)(weft_ctx *ctx, weft_emitter *em, void *arg);
/* One item in, one out: reads *in, writes the output item to *out (item_size bytes of the stage). */
typedef int (*weft_map_fn)(weft_ctx *ctx, const void *in, void *out, void *arg);
/* Returns 1 to keep the item (passed on unchanged), 0 to drop it (the pipeline discards it), or an error. */
typedef int (*weft_filter_fn)(weft_ctx *ctx, const void *item, void *arg);
/* One item in, 0..n out through weft_pipeline_emit(em, ...). */
typedef int (*weft_flat_map_fn)(weft_ctx *ctx, const void *in, weft_emitter *em, void *arg);
/* A group of 1..batch_count items (contiguous, item after item) in, 0..n out through emit. */
typedef int (*weft_batch_fn)(weft_ctx *ctx, const void *items, size_t n, weft_emitter *em, void *arg);
/* Consumes one item. */
typedef int (*weft_sink_fn)(weft_ctx *ctx, const void *item, void *arg);

/* ---- creation ------------------------------------------------------------------------------------- */

typedef struct weft_pipeline_opts {
  const char *name; /* for messages; copied. NULL: "pipeline" */
} weft_pipeline_opts;
#define WEFT_PIPELINE_OPTS_INIT {NULL}

/* Creates an empty pipeline in *out (NULL opts: defaults). Returns 0, WEFT_EINVAL (out NULL; *out is set
 * to NULL otherwise on error), WEFT_ENOMEM. The caller owns it and frees it with weft_pipeline_destroy().
 * Thread safety: any thread. */
WEFT_API int weft_pipeline_create(const weft_pipeline_opts *opts, weft_pipeline **out);

/* Frees the pipeline, its stage names and statistics. Returns 0; WEFT_EINVAL for NULL; WEFT_EBUSY
 * (freeing nothing) while a run is in progress. After weft_pipeline_start() it joins the run's thread if
 * weft_pipeline_join() did not (so never from the run's on_done). Thread safety: no other call on p during or
 * after it. */
WEFT_API int weft_pipeline_destroy(weft_pipeline *p);

/* ---- stages --------------------------------------------------------------------------------------- */

/* The largest values the stage options accept; beyond them, WEFT_EINVAL. They keep every size derived from
 * them (bursts in bytes, channel slots, reorder windows, batch groups) far from wrapping. */
#define WEFT_STAGE_MAX_WORKERS 4096
#define WEFT_STAGE_MAX_WINDOW ((size_t)1 << 20)
#define WEFT_STAGE_MAX_CAPACITY ((size_t)1 << 30)
#define WEFT_STAGE_MAX_ITEM_SIZE ((size_t)1 << 30)
#define WEFT_STAGE_MAX_BURST ((size_t)1 << 20)
#define WEFT_STAGE_MAX_BATCH ((size_t)1 << 24)

typedef struct weft_stage_opts {
  const char *name;      /* for reports and stats (copied). NULL: "source", "stage 2", "sink", ... */
  size_t workers;        /* threads running the function (fan-out); 1 to WEFT_STAGE_MAX_WORKERS */
  bool ordered;          /* emit outputs in input order (map, filter, flat_map) */
  size_t reorder_window; /* ordered stages: bursts that may finish ahead of the oldest unfinished; 1 to
                          * WEFT_STAGE_MAX_WINDOW */
  size_t out_capacity;   /* items buffered between this stage and the next (rounded up to whole bursts); 1 to
                          * WEFT_STAGE_MAX_CAPACITY. A run whose buffers cannot be allocated returns
                          * WEFT_ENOMEM (or WEFT_EINVAL when a channel's bytes would pass PTRDIFF_MAX / 2). */
  size_t item_size;      /* bytes per output item, at most WEFT_STAGE_MAX_ITEM_SIZE. Sources: required (> 0).
                          * map, flat_map, batch: 0 means "same item type as the input" (same size and
                          * discard hook). Filter: must be 0. */
  weft_discard_fn discard; /* for pointer items this stage outputs: receives every item the pipeline
                          * will not deliver; NULL: plain values (or, with item_size 0, the input's hook).
                          * May run on any of the run's threads; must not call into the pipeline. */
  void *discard_arg;
  size_t burst;          /* most items per hand-off to the next stage, at most WEFT_STAGE_MAX_BURST; 0: automatic
                          * (up to 128, fewer for items over 64 bytes, at most out_capacity / 2); 1: no bursts */
  size_t batch_count;    /* batch stages: most items per group, 1 to WEFT_STAGE_MAX_BATCH */
  int64_t batch_time;    /* batch stages: a group is handed over at most this many ns after its first
                          * item arrived (WEFT_FOREVER: only when full or at end of input) */
} weft_stage_opts;
#define WEFT_STAGE_OPTS_INIT {NULL, 1, false, 16, 256, 0, NULL, NULL, 0, 64, WEFT_FOREVER}

/* Each of these adds a stage after the ones already added and returns 0, or WEFT_EINVAL (p or fn NULL,
 * a size outside the range its option states (the WEFT_STAGE_MAX_* bounds), a missing or invalid
 * item_size,
 * ordered on a source, a batch stage or a sink, batch_count 0, batch_time <= 0), WEFT_ESTATE (added after
 * the sink or after a run started; a source after a stage; a stage before any source), WEFT_ENOMEM.
 * NULL opts means WEFT_STAGE_OPTS_INIT. fn and arg must stay valid until the run returns.
 * Thread safety: the building thread only (see the top). */

/* A source: fn runs once on a thread of its own (workers must be 1). Several sources may be added before
 * the first stage; their outputs merge (same item_size required; order between them unspecified). */
WEFT_API int weft_pipeline_source(weft_pipeline *p, const weft_stage_opts *opts, weft_source_fn fn, void *arg);
WEFT_API int weft_pipeline_map(weft_pipeline *p, const weft_stage_opts *opts, weft_map_fn fn, void *arg);
WEFT_API int weft_pipeline_filter(weft_pipeline *p, const weft_stage_opts *opts, weft_filter_fn fn, void *arg);
WEFT_API int weft_pipeline_flat_map(weft_pipeline *p, const weft_stage_opts *opts, weft_flat_map_fn fn,
                                    void *arg);
/* Groups items by count (batch_count) and time (batch_time) and calls fn once per group; a partial group
 * is handed over at end of input too. Each worker groups the items it receives on its own. */
WEFT_API int weft_pipeline_batch(weft_pipeline *p, const weft_stage_opts *opts, weft_batch_fn fn, void *arg);
/* The sink: the last stage. Its first worker runs on the thread that calls weft_pipeline_run(). */
WEFT_API int weft_pipeline_sink(weft_pipeline *p, const weft_stage_opts *opts, weft_sink_fn fn, void *arg);

/* ---- emitting ------------------------------------------------------------------------------------- */

/* Emits a copy of *item downstream (item_size bytes of the emitting stage). Usually returns at once (the
 * item joins the current burst); blocks while the next stage's input is full. Returns 0 (the pipeline
 * owns the item); WEFT_ESTOPPED (a source after weft_pipeline_drain()), WEFT_ECANCELED / WEFT_EDEADLINE /
 * another code (the run is stopping) — on error the item was not emitted and is still the caller's;
 * WEFT_EINVAL. Thread safety: only inside the function the emitter was given to, on its thread. */
WEFT_API int weft_pipeline_emit(weft_emitter *em, const void *item);
/* Sends the items emitted so far without waiting for the burst to fill. Returns 0, or the error of emit
 * (then those items were discarded by the pipeline — they had been emitted). Same thread rule as emit. */
WEFT_API int weft_pipeline_flush(weft_emitter *em);

/* ---- running -------------------------------------------------------------------------------------- */

typedef struct weft_pipeline_report {
  int err;                /* the run's result (as returned) */
  int cause;              /* the run context's cause, when it ended (e.g. WEFT_SIGNAL_CAUSE(SIGINT)); else 0 */
  long stage;             /* index of the stage whose function raised err (sources count: 0..); -1 if none */
  const char *stage_name; /* that stage's name (valid until destroy), or NULL */
  bool drained;           /* weft_pipeline_drain() stopped the sources before they were done */
  uint64_t discarded;      /* items the pipeline discarded (filter drops not counted) */
  int64_t elapsed_ns;     /* wall time of the run */
} weft_pipeline_report;

/* Runs the pipeline under ctx (NULL: weft_background()) until every item has gone through, the first error,
 * or ctx's end; returns when every thread of the run has been joined and every item still inside has been
 * discarded. Returns 0 (also after a drain); the first error a stage function returned (report->stage says
 * which); WEFT_ECANCELED / WEFT_EDEADLINE when ctx ended first; WEFT_EINVAL (p NULL, no source or no sink);
 * WEFT_ESTATE (already run, or running); WEFT_ENOMEM / WEFT_ESYS (setup failed: nothing was run — or, if a
 * thread could not be started, the run was cancelled and cleaned up). report may be NULL.
 * Thread safety: any thread, once per pipeline. */
WEFT_API int weft_pipeline_run(weft_pipeline *p, weft_ctx *ctx, weft_pipeline_report *report);

/* ---- runs started without blocking (event loops) --------------------------------------------------- */

/* Called once when a started run ended, on the run's own thread, after every stage thread was joined and
 * every item left inside was discarded, with the run's report (valid during the call only: copy what you
 * need, or read it again with weft_pipeline_join()). It may read stats, post to a loop, send on a channel;
 * it must not call weft_pipeline_join() (WEFT_EBUSY) or weft_pipeline_destroy() on this pipeline. */
typedef void (*weft_pipeline_done_fn)(weft_pipeline *p, const weft_pipeline_report *report, void *arg);

/* Starts the run as weft_pipeline_run(p, ctx, ...) would, on a thread of its own (it runs the sink's first
 * worker, as the calling thread does in weft_pipeline_run: no extra thread), and returns at once. The end
 * of the run is signalled three ways, in this order, once: on_done(p, report, done_arg) (when not NULL)
 * returns; then weft_pipeline_fd() turns readable and weft_pipeline_done() true; then
 * weft_pipeline_join() returns. Cancel the run through ctx (the caller keeps its cancel right; the run
 * holds a reference to ctx until it ended) or stop it gently with weft_pipeline_drain(); read progress
 * with weft_pipeline_stats() from any thread meanwhile. Returns 0 (on_done will run exactly once);
 * WEFT_EINVAL (p NULL, no source or no sink); WEFT_ESTATE (already run or running, or a started run not
 * joined yet); WEFT_ENOMEM / WEFT_ESYS (nothing started, on_done is not called). A failure while setting
 * the run up (WEFT_ENOMEM) is reported as the run's result, as weft_pipeline_run returns it; the pipeline
 * may then be started again after weft_pipeline_join(). Thread safety: any thread, once per pipeline. */
WEFT_API int weft_pipeline_start(weft_pipeline *p, weft_ctx *ctx, weft_pipeline_done_fn on_done, void *done_arg);

/* A descriptor that turns readable (POLLIN, and stays so) once the started run ended and its on_done
 * returned: put it in a poll/epoll set, then call weft_pipeline_join() (it returns at once). Owned by the
 * pipeline: do not read or close it; valid until weft_pipeline_destroy() (or a new weft_pipeline_start()
 * after a run whose setup failed). Returns it (>= 0), WEFT_EINVAL (NULL), WEFT_ESTATE (no run was
 * started), WEFT_ESYS. Thread safety: any thread. */
WEFT_API int weft_pipeline_fd(weft_pipeline *p);

/* true once the started run ended and its on_done returned (never blocks); false for NULL or no start. */
WEFT_API bool weft_pipeline_done(weft_pipeline *p);

/* Waits until the started run ended (ctx, NULL = no limit, bounds the wait only: the run goes on), then
 * fills *report (when not NULL) and returns the run's result, as weft_pipeline_run() does. It may be
 * called again and gives the same result. Returns ctx's error when ctx ended first; WEFT_EINVAL (NULL p);
 * WEFT_ESTATE (no run was started); WEFT_EBUSY (called from the run's on_done); WEFT_ENOMEM (a bounded
 * wait could not be set up). weft_pipeline_destroy() after a started run joins it if nobody did.
 * Thread safety: any thread. */
WEFT_API int weft_pipeline_join(weft_pipeline *p, weft_ctx *ctx, weft_pipeline_report *report);

/* Stops the sources (their emit returns WEFT_ESTOPPED and their context is cancelled) and lets every item
 * already emitted go through the stages to the sink; the run then returns 0 with report.drained set.
 * Before the run starts it makes the coming run start drained. Returns 0; WEFT_EINVAL; WEFT_ESTATE once
 * the run has returned. Idempotent. Thread safety: any thread, and from a weft_ctx_after_func() callback. */
WEFT_API int weft_pipeline_drain(weft_pipeline *p);

/* ---- statistics ----------------------------------------------------------------------------------- */

typedef enum weft_stage_kind {
  WEFT_STAGE_SOURCE = 1,
  WEFT_STAGE_MAP = 2,
  WEFT_STAGE_FILTER = 3,
  WEFT_STAGE_FLAT_MAP = 4,
  WEFT_STAGE_BATCH = 5,
  WEFT_STAGE_SINK = 6
} weft_stage_kind;

typedef struct weft_stage_stats {
  const char *name;     /* valid until destroy */
  weft_stage_kind kind;
  size_t workers;
  uint64_t items_in;    /* items received (a source: 0) */
  uint64_t items_out;   /* items handed to the next stage (a sink: items consumed) */
  uint64_t dropped;     /* filter: items dropped */
  uint64_t discarded;    /* items discarded because of an error or a stop */
  uint64_t errors;      /* times the function returned an error */
  int64_t busy_ns;      /* time spent in the function, summed over workers */
  size_t queue_depth;   /* items waiting in this stage's input (0 for a source) */
  bool done;            /* every worker of the stage has finished */
} weft_stage_stats;

/* Fills *out for stage `index` (0-based, in the order added). Counters are updated per burst, so a reading
 * during a run is a consistent-enough snapshot for a progress line, exact after the run. Returns 0,
 * WEFT_EINVAL (NULL, index out of range). Thread safety: any thread, also during the run. */
WEFT_API int weft_pipeline_stats(weft_pipeline *p, size_t index, weft_stage_stats *out);
/* The number of stages added, sources and sink included (0 for NULL). Thread safety: any thread. */
WEFT_API size_t weft_pipeline_stage_count(const weft_pipeline *p);
/* An upper bound of the number of items inside a run at any time (emitted and neither consumed by the sink
 * nor discarded): channel capacities, bursts in workers' hands, reorder windows and partial groups,
 * from the options. 0 for NULL. Thread safety: any thread. */
WEFT_API size_t weft_pipeline_bound(const weft_pipeline *p);

#ifdef __cplusplus
}
#endif
#endif
