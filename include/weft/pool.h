/* weft/pool.h: a pool of worker threads fed by a lock-free job queue.
 *
 * A job is a function `int fn(weft_ctx *ctx, void *arg)` (weft_job_fn) run once on a worker thread. It
 * gets its context only: it can observe, derive from and pass on the pool's context, never cancel it. It
 * returns 0 for
 * success or a negative code of its own. `ctx` is the job's context: the pool's context (a child of
 * opts.parent that shutdown cancels), joined with the submitter's context and limited by a per-job timeout
 * when those were asked for. A job without either runs directly under the pool's context and costs no
 * context derivation. A job should return soon after weft_ctx_err(ctx) becomes non-zero.
 *
 * Ownership of a job's argument. The pool never frees or touches `arg`. When a submit call fails, fn is
 * never called and `arg` stays the caller's. When it succeeds, exactly one of these happens, exactly once:
 * fn(ctx, arg) runs, or — the job ended unrun (its context ended before it started, its context could not
 * be allocated when it was to start, or shutdown in cancel mode or past its grace deadline) — opts.discard(arg, opts.discard_arg) is called (when set), so the
 * caller can free or requeue it. fn is never called for a discarded job, before or after the discard.
 *
 * Every submitted job ends exactly once in one of four classes, by what happened to it (the rules are
 * next to weft_pool_report): completed, failed, canceled before start, canceled while running.
 * weft_pool_shutdown() reports these counts; their sum plus the jobs still running equals the number
 * submitted.
 *
 * Jobs submitting jobs. A job may submit to its own pool. When the queue is full, a blocking submit made
 * from one of this pool's workers does not wait (every worker could be waiting, and nothing would drain the
 * queue): it runs the job inline on the calling worker instead (the caller-runs policy), under the context
 * the job would have had. It counts as submitted and ends as any other job. try-submit still says full.
 *
 * Thread safety: every function may be called from any thread, including from jobs, unless said otherwise.
 * Several pools may live in one process; the pool keeps no global state and uses no signals. */
#ifndef WEFT_POOL_H
#define WEFT_POOL_H

#include "chan.h"
#include "common.h"
#include "ctx.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_pool weft_pool;
typedef struct weft_future weft_future;

/* ---- creation ----------------------------------------------------------------------------------- */

typedef struct weft_pool_opts {
  size_t workers;      /* worker threads; 0 = the number of online CPUs. More than WEFT_POOL_MAX_WORKERS
                        * (1024): WEFT_EINVAL */
  size_t queue_cap;    /* jobs queued (not yet started) at most, in all: exactly this many (jobs a worker
                        * has claimed but not started are not queued); 1 to WEFT_POOL_MAX_QUEUE (2^22),
                        * else WEFT_EINVAL */
  weft_ctx *parent;    /* the pool's context derives from it (NULL = weft_background()); the pool holds a
                        * reference. Once it is done, jobs that have not started are discarded. */
  int64_t job_timeout; /* default per-job timeout, counted from the job's start; WEFT_FOREVER = none */
  weft_discard_fn discard; /* receives the arg of every job that ends unrun (after its on_done), and of a
                        * job that ran whose completion was undeliverable (see completion channels);
                        * NULL: none. Runs on a worker
                        * or on the thread calling shutdown/destroy; it must not block for long and must
                        * not call weft_pool_shutdown/destroy on this pool. */
  void *discard_arg;
  int64_t settle;      /* drain mode: how long shutdown still waits for running jobs to return after the
                        * grace period ran out and it cancelled them (>= 0; default 100 ms) */
} weft_pool_opts;

#define WEFT_POOL_DEFAULT_QUEUE 1024
#define WEFT_POOL_MAX_WORKERS 1024
#define WEFT_POOL_MAX_QUEUE ((size_t)1 << 22) /* the queue's slots take 32 bytes a job */
#define WEFT_POOL_OPTS_INIT {0, WEFT_POOL_DEFAULT_QUEUE, NULL, WEFT_FOREVER, NULL, NULL, WEFT_MS(100)}

/* Creates a pool and starts its workers. `opts` NULL means WEFT_POOL_OPTS_INIT. Returns 0 and stores the
 * pool in *out; WEFT_EINVAL (NULL out, queue_cap 0 or > WEFT_POOL_MAX_QUEUE, workers > WEFT_POOL_MAX_WORKERS,
 * job_timeout <= 0, settle < 0), WEFT_ENOMEM, WEFT_ESYS (a thread could not be started); on error *out is
 * NULL and nothing is left running. */
WEFT_API int weft_pool_create(const weft_pool_opts *opts, weft_pool **out);

/* The pool's context (borrowed: valid until weft_pool_destroy). Cancelled by shutdown; a job's context is
 * this one or a descendant. NULL for a NULL pool. */
WEFT_API weft_ctx *weft_pool_ctx(weft_pool *p);
/* Worker count and total queue capacity (opts.queue_cap, exactly). 0 for NULL. */
WEFT_API size_t weft_pool_workers(const weft_pool *p);
WEFT_API size_t weft_pool_capacity(const weft_pool *p);

/* ---- submitting --------------------------------------------------------------------------------- */

/* Queues fn(arg), waiting for room while the queue is full. `ctx` (NULL = wait without limit) bounds only
 * the wait: the job itself runs under the pool's context. Returns 0 (queued, or run inline — see above),
 * WEFT_EINVAL (NULL pool or fn), WEFT_ESTOPPED (shutdown began, also while waiting), or ctx's error
 * (WEFT_ECANCELED / WEFT_EDEADLINE) when ctx ended before there was room. Lock-free when there is room. */
WEFT_API int weft_pool_submit(weft_pool *p, weft_ctx *ctx, weft_job_fn fn, void *arg);

/* Queues fn(arg) if there is room now. Returns 0, WEFT_EFULL (the queue is full: the caller may drop the
 * job or retry), WEFT_EINVAL, WEFT_ESTOPPED. Never blocks. */
WEFT_API int weft_pool_try_submit(weft_pool *p, weft_job_fn fn, void *arg);

/* ---- completions --------------------------------------------------------------------------------- */

/* How a job ended: the classes of weft_pool_report, by the same rules. */
typedef enum weft_job_state {
  WEFT_JOB_PENDING = 0,            /* not ended yet */
  WEFT_JOB_COMPLETED,              /* fn returned 0 (and shutdown did not cancel it while it ran) */
  WEFT_JOB_FAILED,                 /* fn returned non-zero (its own timeout included) */
  WEFT_JOB_CANCELED_BEFORE_START,  /* fn never ran; the arg went to opts.discard after on_done */
  WEFT_JOB_CANCELED_WHILE_RUNNING  /* fn was running when shutdown cancelled the pool's context */
} weft_job_state;

/* A completion callback (weft_job_opts.on_done). It runs exactly once per job submitted with it (never
 * for a submit that failed), after the job ended in any class, with the job's arg, its result code (as
 * weft_future_wait()'s job_rc), its class and the done_arg given with it. It runs on the thread that ended
 * the job: the worker that ran or discarded it, the submitting thread when a full queue made a worker run
 * the job inline (caller-runs), or the thread running weft_pool_shutdown()/weft_pool_destroy() for jobs
 * they discard. It runs under no weft lock, so it may submit more work (from a worker: to this pool too;
 * from the shutdown thread submits return WEFT_ESTOPPED), touch channels and contexts; it must not block
 * for long (it holds up a worker) and must not call weft_pool_shutdown/destroy on this pool.
 * For a job that ends unrun, on_done runs first, then the pool's discard hook, so arg is still valid
 * inside on_done. Order for every job: on_done, the discard hook (unrun only), the future becomes done,
 * the completion is sent to done_chan; only then the job counts as ended for weft_pool_wait_all() and
 * shutdown, so once those return every on_done has returned and every completion is in its channel. */
typedef void (*weft_done_fn)(void *job_arg, int job_rc, weft_job_state state, void *done_arg);

/* What a completion channel (weft_job_opts.done_chan) receives, one per job. */
struct weft_completion {
  void *arg;            /* the job's arg: with a done_chan, free it when the completion is received */
  int rc;               /* the job's result, as weft_future_wait()'s job_rc */
  weft_job_state state; /* its class, never WEFT_JOB_PENDING */
  void *done_arg;       /* weft_job_opts.done_arg */
};

/* Completion channels. A done_chan collects the completions of many jobs (of one pool or several) on one
 * channel, so an event loop waits on one descriptor (weft_chan_fd()) and drains completions in a batch.
 *   - It must be a buffered channel (capacity >= 1) of elem_size == sizeof(struct weft_completion), else
 *     the submit returns WEFT_EINVAL.
 *   - Room is reserved at submit: a submit with a done_chan succeeds only while fewer completions are
 *     outstanding (reserved by accepted jobs that have not ended, plus buffered and not yet received) than
 *     the channel's capacity; otherwise it returns WEFT_EFULL at once, even for a blocking submit. It
 *     cannot wait: the room is made by whoever receives the completions, typically the loop thread that
 *     is submitting, so waiting would deadlock it. Drain the channel, then submit again. So a worker never
 *     waits to deliver a completion, and no completion is ever dropped or merged with another.
 *   - A closed done_chan is refused at submit (WEFT_ECLOSED).
 *   - The pool holds a reference to the channel for each outstanding completion: weft_chan_destroy() may
 *     run while jobs are still in flight (the channel is freed once the last completion was sent; those
 *     completions go to the channel's discard hook, as any element left in a destroyed channel).
 *   - Two misuses make a completion undeliverable: closing the channel while completions are outstanding,
 *     and sending elements of the application's own on it (they take reserved room). Such a completion is
 *     not sent; it is counted in weft_pool_report.undelivered and, for a job that ran, its arg goes to the
 *     pool's discard hook (a job that ended unrun gave its arg to the hook already), so nothing is lost
 *     silently and nothing blocks. Use a done_chan for completions only, and close it (if at all) once
 *     weft_pool_shutdown() returned. */

typedef struct weft_job_opts {
  weft_ctx *run_ctx; /* a context the job also runs under, or NULL: the job's context is done when either
                    * the pool's context or this one is done (Go's request context carried into the job).
                    * It does not bound the wait for room (the submit's ctx does). The pool holds a
                    * reference to it until the job ends. */
  int64_t timeout; /* per-job timeout counted from the job's start: 0 = the pool's default,
                    * WEFT_FOREVER = none, > 0 a duration; negative is WEFT_EINVAL */
  bool nowait;     /* true: return WEFT_EFULL at once instead of waiting for room */
  weft_done_fn on_done; /* completion callback, run once when the job ended (see weft_done_fn); NULL: none */
  void *done_arg;       /* passed to on_done and stored in the completion */
  weft_chan *done_chan; /* completion channel (see above); NULL: none */
} weft_job_opts;
#define WEFT_JOB_OPTS_INIT {NULL, 0, false, NULL, NULL, NULL}

/* The general submit: as weft_pool_submit(p, ctx, fn, arg) — `ctx` (NULL: no limit) bounds only the wait
 * for room — or try-submit with o->nowait, with the options above (`o` NULL = WEFT_JOB_OPTS_INIT) and, when
 * `future` is not NULL, a handle stored in *future on success (NULL on error) through which the caller
 * waits for this job and reads its result; the caller must release it with weft_future_release(), before
 * weft_pool_destroy(). Returns as weft_pool_submit(), plus WEFT_EFULL with nowait, WEFT_ENOMEM when a job
 * record cannot be allocated. With o->on_done or o->done_chan, the completion is delivered exactly once for
 * every job accepted, and never for a failed submit; a done_chan adds WEFT_EINVAL (capacity 0, wrong
 * elem_size), WEFT_ECLOSED (it is closed) and WEFT_EFULL (its room is all reserved: see above). */
WEFT_API int weft_pool_submit_opts(weft_pool *p, weft_ctx *ctx, weft_job_fn fn, void *arg,
                                   const weft_job_opts *o, weft_future **future);

/* Waits until the job ended, or ctx (NULL = no limit) ends first. Returns 0 once the job ended and then
 * stores its result in *job_rc (when not NULL), by the job's class (see weft_pool_report):
 *   completed: 0 — and only a completed job gives 0;
 *   failed (timed out included): fn's non-zero return value;
 *   canceled while running: fn's return value if non-zero, else WEFT_ECANCELED;
 *   canceled before start: the error of the context that ended it before it started (WEFT_ECANCELED /
 *     WEFT_EDEADLINE), or WEFT_ENOMEM when the job's context could not be made.
 * Returns ctx's error if ctx ended first, WEFT_EINVAL for NULL f. Several threads may wait on one
 * future. */
WEFT_API int weft_future_wait(weft_future *f, weft_ctx *ctx, int *job_rc);
/* true once the job ended (no wait). false for NULL. */
WEFT_API bool weft_future_done(const weft_future *f);
/* The job's class once it ended; WEFT_JOB_PENDING until then, and for NULL. Never blocks. */
WEFT_API weft_job_state weft_future_state(const weft_future *f);
/* Gives the handle back; the job is not affected. NULL is a no-op. Call exactly once per handle, and not
 * while another thread waits on it. A second release of a handle aborts with a message, as a double
 * weft_ctx_release() does (it cannot be told apart once the pool gave the job's record to another future). */
WEFT_API void weft_future_release(weft_future *f);

/* Waits until every job submitted before the call has ended (as sync.WaitGroup: under continuous
 * concurrent submission it may also wait for jobs submitted during the call). ctx (NULL = no limit) bounds
 * the wait. Returns 0, ctx's error, WEFT_EINVAL for NULL p, or WEFT_EBUSY when called from one of this
 * pool's workers (it would wait for itself). Afterwards the effects of those jobs are visible. */
WEFT_API int weft_pool_wait_all(weft_pool *p, weft_ctx *ctx);

/* ---- shutdown ----------------------------------------------------------------------------------- */

typedef enum weft_pool_mode {
  WEFT_POOL_DRAIN = 0, /* stop accepting; run everything queued, within the grace period */
  WEFT_POOL_CANCEL = 1 /* stop accepting; cancel running jobs; discard every queued job unrun */
} weft_pool_mode;

/* How a job is classed, by what happened to it:
 *   canceled while running: fn was running when shutdown cancelled the pool's context (it returned after
 *     that), whatever fn returned — 0 included — and whatever else had ended its context before;
 *   completed: otherwise, fn returned 0 (also when its context had ended: by its timeout, the submitter's
 *     context or the pool's parent — shutdown did not cancel it);
 *   failed: otherwise, fn returned non-zero — its own timeout, the submitter's context and the pool's
 *     parent ending count here, as do errors of fn's own while its context was live;
 *     timed_out counts those of them whose context was ended by the job's own deadline (the per-job
 *     timeout, when it came before every deadline of the pool's and the submitter's contexts);
 *   canceled before start: fn never ran; the arg went to the discard callback (its context ended before it
 *     started — shutdown in cancel mode or past its grace, the pool's parent, the submitter's context — or
 *     could not be made).
 * A drain within its grace cancels nothing: jobs it runs are completed or failed. */
typedef struct weft_pool_report {
  uint64_t submitted;              /* jobs accepted (queued or run inline) */
  uint64_t completed;              /* fn returned 0, and shutdown did not cancel it while it ran */
  uint64_t failed;                 /* fn returned non-zero, and shutdown did not cancel it while it ran */
  uint64_t canceled_before_start;  /* never run; the arg went to the discard callback */
  uint64_t canceled_while_running; /* running when shutdown cancelled the pool's context */
  uint64_t still_running;          /* not ended when the report was taken (see shutdown): running, or
                                    * among the few (at most 16) a worker had taken from the queue before
                                    * starting a job that ignores cancellation; those are discarded once
                                    * it returns, and the final report counts them */
  uint64_t timed_out;              /* among failed: ended by the job's own deadline (see above) */
  uint64_t undelivered;            /* completions a done_chan could not take (closed, or its room taken
                                    * by sends of the application's own): see the completion channels */
} weft_pool_report;

/* Batches. A worker takes up to 16 queued jobs from its queue at once (a full batch when that many are
 * queued: fewer claims, and the submitter's cache lines left alone), then runs them in order. While it runs
 * one, the others wait behind it, except that when the running job blocks in a weft wait (a future, a
 * channel, a semaphore, weft_ctx_sleep/wait, a submit to another full pool) past a brief spin, they go back
 * to the queue for other workers. A job that is merely long, or blocks outside weft, keeps them: submit such
 * jobs to a pool of their own if others must not wait behind them. See also still_running. */

/* Stops the pool from accepting work (submits return WEFT_ESTOPPED from now on, including blocked ones)
 * and ends the queued and running jobs:
 *   WEFT_POOL_DRAIN: every queued job still runs. If `grace` (a duration; WEFT_FOREVER = none) passes
 *     first, the pool's context is cancelled, the jobs still queued are discarded, and shutdown waits up
 *     to opts.settle more for running jobs to return.
 *   WEFT_POOL_CANCEL: the pool's context is cancelled at once (running jobs see it), every queued job is
 *     discarded unrun, and shutdown waits up to `grace` for running jobs to return.
 * Jobs that have not returned by then (they ignore cancellation) are reported as still_running; shutdown
 * returns without them and weft_pool_destroy() joins them. Fills *rep when not NULL; the invariant
 * completed + failed + canceled_before_start + canceled_while_running + still_running == submitted holds.
 * Returns 0 when every job ended; WEFT_ETIMEDOUT when the wait ran out with jobs still running (the
 * report counts them in still_running; destroy joins them); WEFT_EINVAL (NULL p, bad mode, negative
 * grace); WEFT_ESTATE (shutdown already ran: nothing is done and *rep is left alone); WEFT_EBUSY (called
 * from one of this pool's workers: it would wait for itself). Thread safety: once per pool, from a thread
 * that is not a worker. */
WEFT_API int weft_pool_shutdown(weft_pool *p, weft_pool_mode mode, int64_t grace, weft_pool_report *rep);

/* Destroys the pool: if shutdown has not run, first does weft_pool_shutdown(p, WEFT_POOL_CANCEL,
 * WEFT_FOREVER, ...); then joins every worker (waiting for jobs that ignore cancellation) and frees the
 * pool. Fills *final (when not NULL) with the final report, in which still_running is 0. NULL p is a
 * no-op. The pool must not be used afterwards (a later submit is a use after free, as with free()).
 * Thread safety: once, from a thread that is not one of the pool's workers, after every other call on the
 * pool returned and every future was released. */
WEFT_API void weft_pool_destroy(weft_pool *p, weft_pool_report *final);

/* ---- stats -------------------------------------------------------------------------------------- */

struct weft_pool_stats {
  uint64_t submitted, queued, running, completed, failed, canceled; /* canceled: both kinds */
  /* Latency in ns, from power-of-two histograms over a sample of the jobs (one in 64 per submitting
   * thread, the first always): each figure is the upper bound of its bucket (so up to 2x high). 0 when
   * nothing was sampled. */
  int64_t wait_p50, wait_p90, wait_p99; /* queue wait: submit to start */
  int64_t run_p50, run_p90, run_p99;    /* run time: start to return */
  uint64_t samples;
};

/* Fills *st with a snapshot (each counter exact at some instant during the call; summed from per-worker
 * counters, so it costs the workers nothing). As POSIX stat(), the type is a struct tag of the function's
 * name. Returns 0, WEFT_EINVAL. */
WEFT_API int weft_pool_stats(weft_pool *p, struct weft_pool_stats *st);

#ifdef __cplusplus
}
#endif
#endif
