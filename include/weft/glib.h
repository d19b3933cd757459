/* weft/glib.h: the GLib adapter (library libweft-glib, CMake target weft::glib, pkg-config weft-glib).
 *
 * Built when GLib's development package (glib-2.0 and gio-2.0) is found. Not included by <weft/weft.h>.
 *
 * What it gives a GLib program:
 *   - weft_glib: offload jobs to a weft pool and get each job's result as a callback on the thread that
 *     runs a GMainContext, with its terminal state (completed, failed, canceled before start, canceled
 *     while running), exactly once per job; jobs can be cancelled while they run. Completions travel
 *     through a lock-free queue that a GSource of the adapter drains; g_main_context_wakeup coalesces,
 *     the queue does not, so nothing is lost or merged.
 *   - weft_glib_ctx_source_new: a GSource that dispatches once a weft context is done.
 *   - GCancellable and weft contexts bridged both ways: a weft context cancelled by a GCancellable
 *     (weft_glib_ctx_with_cancellable), and a GCancellable cancelled by a weft context
 *     (weft_glib_cancel_when_done).
 *
 * Threads. "The context's thread" below is the thread that iterates the GMainContext given to
 * weft_glib_new (g_main_loop_run / g_main_context_iteration); the weft_glib_* job calls are made on it,
 * and result callbacks run there. The GSource and GCancellable calls may be made from any thread. */
#ifndef WEFT_GLIB_H
#define WEFT_GLIB_H

#include <gio/gio.h>

#include "ctx.h"
#include "pool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- job results on a GMainContext -------------------------------------------------------------- */

typedef struct weft_glib weft_glib;
typedef struct weft_glib_job weft_glib_job;

/* A job's result, on the context's thread: its arg as given at submit, its result code (as
 * weft_future_wait's job_rc: 0 only when completed) and its terminal state, never WEFT_JOB_PENDING. It may
 * submit more work, cancel other jobs and close the adapter; it must not block. */
typedef void (*weft_glib_result_fn)(void *job_arg, int job_rc, weft_job_state state, void *cb_arg);
typedef void (*weft_glib_close_fn)(weft_glib *g, void *arg);

/* Makes an adapter that delivers results on `mc` (NULL: the global default main context): it attaches a
 * GSource to mc and holds a reference to mc until closed. Returns 0 and stores it in *out; WEFT_EINVAL
 * (NULL out), WEFT_ENOMEM. On error *out is NULL. Close it with weft_glib_close(). */
WEFT_API int weft_glib_new(GMainContext *mc, weft_glib **out);

/* As weft_uv_submit (weft/uv.h), on the context's thread: submits fn(arg) to pool `p` without blocking,
 * under the pool's context joined with `ctx` when not NULL; cb(arg, job_rc, state, cb_arg) runs exactly once
 * on the context's thread when the job ended. With `job` non-NULL the job gets a context of its own and
 * *job a handle for weft_glib_job_cancel(), valid until cb has been called. Returns 0; WEFT_EINVAL (NULL g,
 * p, fn or cb); WEFT_ESTOPPED (closing, or the pool shut down); WEFT_EFULL (the pool's queue is full);
 * WEFT_ENOMEM. On error cb is never called and arg stays the caller's; else cb receives arg (free it there;
 * see weft_uv_submit about a pool's discard callback). */
WEFT_API int weft_glib_submit(weft_glib *g, weft_pool *p, weft_ctx *ctx, weft_job_fn fn, void *arg,
                              weft_glib_result_fn cb, void *cb_arg, weft_glib_job **job);
/* Cancels one job's context. A running job's result then says canceled while running (the pool's report
 * counts it as failed or completed, as any submitter's context ending). Returns 0 (also when already
 * cancelled), WEFT_ESTATE (the job already ended: its result is on its way), WEFT_EINVAL for NULL. */
WEFT_API int weft_glib_job_cancel(weft_glib_job *job);
/* Counts by class, as weft_uv_report. Returns 0, WEFT_EINVAL. */
WEFT_API int weft_glib_report(const weft_glib *g, weft_pool_report *rep);
/* Closes the adapter: submits return WEFT_ESTOPPED from now on; with `cancel`, jobs in flight that have a
 * handle are cancelled. Every result callback still runs, exactly once; then, on the context's thread in a
 * later iteration, close_cb(g, arg) (may be NULL) runs, last: the GSource is destroyed, the reference to
 * the GMainContext dropped, and g freed when close_cb returns. Keep iterating the context until then.
 * Returns 0, WEFT_EINVAL (NULL g), WEFT_ESTATE (already closing). */
WEFT_API int weft_glib_close(weft_glib *g, bool cancel, weft_glib_close_fn close_cb, void *arg);

/* ---- a GSource for a context -------------------------------------------------------------------- */

/* The callback of a weft_glib_ctx_source_new() source (cast it with G_SOURCE_FUNC for
 * g_source_set_callback): err is weft_ctx_err(ctx). Return G_SOURCE_REMOVE (the usual case) or
 * G_SOURCE_CONTINUE; since a done context stays done, CONTINUE dispatches again at every iteration. */
typedef gboolean (*weft_glib_ctx_fn)(weft_ctx *ctx, int err, gpointer user_data);

/* A new GSource (one reference of the caller's) that becomes ready once ctx is done: it polls the
 * context's eventfd (weft_ctx_fd: one per cancellation source, made on first use). It holds a reference to
 * ctx until finalized. Attach it with g_source_attach and set its callback with g_source_set_callback.
 * Returns NULL for a NULL ctx or when the eventfd cannot be made. Thread safety: any thread. */
WEFT_API GSource *weft_glib_ctx_source_new(weft_ctx *ctx);

/* ---- GCancellable <-> weft context --------------------------------------------------------------- */

typedef struct weft_glib_link weft_glib_link;

/* A child of `parent` that is cancelled (WEFT_ECANCELED) when `c` is cancelled — at once if it already is.
 * The cancel runs on the thread that cancels c (GLib's rule for "cancelled" handlers). *out receives the
 * context with one reference of the caller's (release it with weft_ctx_release), *link the connection,
 * which holds its own references to c and to the context. Returns 0; WEFT_EINVAL (a NULL argument or c not
 * a GCancellable), WEFT_ENOMEM. On error the outs are NULL. Thread safety: any thread. */
WEFT_API int weft_glib_ctx_with_cancellable(weft_ctx *parent, GCancellable *c, weft_ctx **out,
                                            weft_glib_link **link);

/* Cancels `c` once ctx is done (at once if it already is). g_cancellable_cancel is called on weft's
 * callback thread (weft_ctx_after_func), so c's "cancelled" handlers run there. The link holds a reference
 * to c until the cancel ran or the link was freed, and the registration one to ctx. Returns 0; WEFT_EINVAL,
 * WEFT_ENOMEM, WEFT_ESYS (the callback thread could not be started). On error *link is NULL and c is never
 * cancelled by this call. Thread safety: any thread. */
WEFT_API int weft_glib_cancel_when_done(weft_ctx *ctx, GCancellable *c, weft_glib_link **link);

/* Disconnects and frees a link; NULL is a no-op; call it once per link. For a ctx_with_cancellable link, it
 * disconnects from c (never call it from a "cancelled" handler of the same GCancellable: GLib's disconnect
 * waits for running handlers), cancels the context (as weft_ctx_end ends a derivation; the caller's reference
 * then sees it cancelled) and drops the link's references; a cancel of c racing with the free on another
 * thread may still run the link's handler once (GLib 2.74 allows it), which then cancels the already
 * cancelled context: harmless, the handler's data lives until GLib lets it go. For a cancel_when_done link, c
 * is not cancelled after this call returns unless the cancel had already started (then it completes on weft's
 * thread); its references are dropped. Thread safety: any thread. */
WEFT_API void weft_glib_link_free(weft_glib_link *link);

#ifdef __cplusplus
}
#endif
#endif
