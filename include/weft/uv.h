/* weft/uv.h: the libuv adapter (library libweft-uv, CMake target weft::uv, pkg-config weft-uv).
 *
 * Built when libuv's development package is found. Not included by <weft/weft.h>: include it after <uv.h>.
 *
 * What it gives a libuv program:
 *   - weft_uv: offload jobs to a weft pool and get each job's result as a callback on the loop thread,
 *     with its terminal state (completed, failed, canceled before start, canceled while running), exactly
 *     once per job. Jobs can be cancelled while they run (libuv's uv_cancel only stops work that has not
 *     started). Completions travel through a lock-free queue drained on the loop when one eventfd, polled by
 *     a uv_poll_t, is readable: wakes coalesce (as uv_async_send's do), the queue does not, so no
 *     completion is lost or merged. (Not uv_async_t: lib/uv/uv.c says why.)
 *   - weft_uv_watch: a callback on the loop thread once a weft context is done (its weft_ctx_fd polled
 *     with a uv_poll_t).
 *   - weft_uv_signal_ctx: a weft context cancelled on the loop thread when a signal arrives (a uv_signal_t:
 *     libuv owns the process's signal handling in a libuv program, so use this rather than
 *     weft_ctx_with_signals there).
 *
 * Threads. Every call here is made on the loop's thread (as most of libuv's), unless said otherwise, and
 * every callback runs there, from uv_run(). Jobs run on the pool's workers.
 *
 * Closing follows libuv: handles are closed with a call that takes effect at once (no callback of yours
 * runs after it, except the close callback it takes) and memory is freed from the loop, so run the loop
 * until the close is finished before uv_loop_close(). */
#ifndef WEFT_UV_H
#define WEFT_UV_H

#include <uv.h>

#include "ctx.h"
#include "pool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- job results on the loop ------------------------------------------------------------------- */

typedef struct weft_uv weft_uv;
typedef struct weft_uv_job weft_uv_job;

/* A job's result, on the loop thread: its arg as given at submit, its result code (as weft_future_wait's
 * job_rc: 0 only when completed) and its terminal state, never WEFT_JOB_PENDING. It may submit more work,
 * cancel other jobs and close the adapter; it must not block. */
typedef void (*weft_uv_result_fn)(void *job_arg, int job_rc, weft_job_state state, void *cb_arg);
typedef void (*weft_uv_close_fn)(weft_uv *u, void *arg);

/* Binds an adapter to `loop`: one eventfd and its uv_poll_t, which keeps the loop alive only while jobs are
 * in flight (as libuv's own work requests do). Returns 0 and stores it in *out; WEFT_EINVAL (NULL argument),
 * WEFT_ENOMEM, WEFT_ESYS (eventfd or uv_poll failed). On error *out is NULL. Close it with weft_uv_close().
 * Several adapters may share a loop and a pool; one adapter may feed several pools. */
WEFT_API int weft_uv_init(uv_loop_t *loop, weft_uv **out);

/* Submits fn(arg) to pool `p` without blocking the loop. The job runs under the pool's context joined with
 * `ctx` when not NULL (the request's context: its cancel or deadline reaches the running job). When the job
 * ended, in whatever way, cb(arg, job_rc, state, cb_arg) runs on the loop thread, exactly once.
 * With `job` non-NULL the job gets a context of its own (a child of ctx, or of the background; one
 * derivation) and *job receives a handle for weft_uv_job_cancel(), valid until cb has been called (do not
 * use it from cb on). Returns 0; WEFT_EINVAL (NULL u, p, fn or cb); WEFT_ESTOPPED (the adapter is closing,
 * or the pool shut down); WEFT_EFULL (the pool's queue is full: retry later, e.g. from a result callback);
 * WEFT_ENOMEM. On error cb is never called, *job is NULL and arg stays the caller's.
 * Ownership of arg: the pool's rules (pool.h); cb receives it for every job, also one that ended unrun, so
 * free it in cb. If the pool also has a discard callback, that callback receives the arg of a job that
 * ended unrun after cb was queued, and may run before cb: free arg in one of the two places, not both. */
WEFT_API int weft_uv_submit(weft_uv *u, weft_pool *p, weft_ctx *ctx, weft_job_fn fn, void *arg,
                            weft_uv_result_fn cb, void *cb_arg, weft_uv_job **job);

/* Cancels one job's context (the per-request cancel): a job not started yet ends unrun (canceled before
 * start); a running job sees its context done and should return soon; its result then says canceled while
 * running (the pool's own report counts it with the submitter's context: failed, or completed if it
 * returned 0). Returns 0 (also when already cancelled); WEFT_ESTATE when the job had already ended (its
 * result is on its way: the state is what happened); WEFT_EINVAL for NULL. */
WEFT_API int weft_uv_job_cancel(weft_uv_job *job);

/* Counts of the jobs this adapter carried, by class (as weft_pool_report): submitted, and of them, those
 * whose callback ran — completed, failed, canceled_before_start, canceled_while_running — and those still
 * in flight (still_running: callback not run yet). timed_out and undelivered are not tracked (0). Loop thread.
 * Returns 0, WEFT_EINVAL. */
WEFT_API int weft_uv_report(const weft_uv *u, weft_pool_report *rep);

/* Closes the adapter: from now on submits return WEFT_ESTOPPED. With `cancel`, every job in flight that
 * has a handle (weft_uv_submit with `job`) is cancelled. The result callback of every job in flight still
 * runs, exactly once, as the jobs end; then the poll handle is closed and close_cb(u, arg) (may be NULL)
 * runs, last: nothing of the adapter runs after it and u is freed when it returns. The loop must be run
 * until then (it stays alive while jobs are in flight). Returns 0, WEFT_EINVAL (NULL u), WEFT_ESTATE
 * (already closing). */
WEFT_API int weft_uv_close(weft_uv *u, bool cancel, weft_uv_close_fn close_cb, void *arg);

/* ---- watching a context ------------------------------------------------------------------------ */

typedef struct weft_uv_watch weft_uv_watch;
/* Runs once, on the loop thread, once the context is done; err is weft_ctx_err(ctx). */
typedef void (*weft_uv_watch_fn)(weft_uv_watch *w, int err, void *arg);

/* Watches ctx on `loop`: cb(w, err, arg) runs once, on the loop thread, after ctx is done (at once in the
 * next loop iteration if it already is). The watch holds a reference to ctx until closed; as any active
 * libuv handle, it keeps the loop alive until it fired or was closed. Cost: the
 * context's eventfd (weft_ctx_fd: made on first use, one per cancellation source, about 1.5 us) plus one
 * dup of it per watch, so that several watches of one context can share a loop; for many thousands of
 * requests, let the job results (weft_uv_submit) carry each request's end, or watch the contexts with
 * one weft_watcher (ctx.h) and poll its single descriptor (weft_watcher_fd) with a uv_poll_t.
 * Returns 0 and stores the watch in *out; WEFT_EINVAL (NULL argument), WEFT_ENOMEM, WEFT_ESYS (eventfd,
 * dup or uv_poll failed). On error *out is NULL and cb never runs. */
WEFT_API int weft_uv_watch_start(uv_loop_t *loop, weft_ctx *ctx, weft_uv_watch_fn cb, void *arg,
                                 weft_uv_watch **out);
/* Stops and closes the watch: cb does not run after this call (it may be called from cb). Its memory, the
 * dup'd descriptor and the context reference are given back from the loop (uv_close). NULL is a no-op.
 * Call it exactly once per watch. */
WEFT_API void weft_uv_watch_close(weft_uv_watch *w);

/* ---- a signal that cancels a context ------------------------------------------------------------ */

typedef struct weft_uv_signal weft_uv_signal;
/* A child of `parent` cancelled on the loop thread when signal `signum` arrives (libuv's uv_signal_t), with
 * cause WEFT_SIGNAL_CAUSE(signum) — Go's signal.NotifyContext for a libuv program. *out receives the context
 * with one reference of the caller's (release it with weft_ctx_release), *sig the watcher. The watcher does
 * not keep the loop alive. Later arrivals of the signal do nothing more (the default action, e.g.
 * terminating, stays off until the watcher is stopped). Returns 0; WEFT_EINVAL (NULL argument, or a signal
 * libuv refuses), WEFT_ENOMEM, WEFT_ESYS. On error the outs are NULL. */
WEFT_API int weft_uv_signal_ctx(uv_loop_t *loop, weft_ctx *parent, int signum, weft_ctx **out,
                                weft_uv_signal **sig);
/* Stops watching and cancels the context (as Go's stop function does); the watcher's memory and its own
 * context reference are given back from the loop. NULL is a no-op; call it once per watcher. */
WEFT_API void weft_uv_signal_stop(weft_uv_signal *sig);

#ifdef __cplusplus
}
#endif
#endif
