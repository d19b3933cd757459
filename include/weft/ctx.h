/* weft/ctx.h: contexts — Go's context package in C.
 *
 * A context carries a cancellation signal, an optional deadline and request-scoped values across API
 * boundaries and threads. Contexts form a tree: cancelling one cancels every context derived from it.
 *
 * The right to cancel. As Go's WithCancel returns a context and a separate CancelFunc, every derivation
 * that can be cancelled (with_cancel, with_deadline, with_timeout, their _cause forms, with_parents and
 * with_signals) stores two handles: the context (weft_ctx *), which is what you hand to callees — jobs,
 * stage functions, group functions and anything you call receive only that — and the right to cancel it
 * (weft_cancel *), which stays with the creator. weft_ctx_cancel(), weft_ctx_cancel_cause() and
 * weft_ctx_end() take a weft_cancel *, so a callee holding the context cannot cancel its caller's work
 * by mistake. "The function receiving a cancelation signal is usually not the one that sends the signal."
 * Both handles name one object: the cancel handle holds no reference of its own and costs nothing; it is
 * valid while a reference to its context is held.
 *
 * Ownership. Contexts are reference-counted. Every weft_ctx_with_*() call returns a new context holding one
 * reference that belongs to the caller; the child holds a reference to its parent, so a parent lives at
 * least as long as its children. A parent does *not* keep its children alive: when the last reference to a
 * derived context is released, the context is detached from its parent and its timer is disarmed, so a
 * context that is released without being cancelled never grows its parent. The roots (weft_background(),
 * weft_todo()) are static; retaining and releasing them is allowed and does nothing.
 *
 * The common Go pattern `ctx, cancel := context.WithTimeout(parent, d); defer cancel()` is:
 *
 *     weft_ctx *ctx;
 *     weft_cancel *cancel;
 *     int rc = weft_ctx_with_timeout(parent, WEFT_MS(250), &ctx, &cancel);
 *     if (rc != 0) return rc;
 *     ... use ctx ...
 *     weft_ctx_end(cancel);       // cancel + release: one call at the end
 *
 * Thread safety: every function here may be called from any thread, concurrently, on the same context,
 * provided the caller holds a reference for the duration of the call. This is the one rule C adds to Go's
 * model: a thread that uses a context (waits on it, cancels it, derives from it) must own a reference for
 * as long as it does — retain before handing the context to another thread and let that thread release
 * it — or be joined before the owner's last release. Cancelling from a watcher thread while the owner
 * ends the same context is fine when the watcher holds its own reference.
 *
 * Errors: derivations return WEFT_EINVAL for a NULL parent or out pointer (and the outs are set to NULL),
 * WEFT_ENOMEM when memory runs out. A derivation from an already-done parent succeeds and returns a child
 * that is already done with the parent's error and cause, as in Go. */
#ifndef WEFT_CTX_H
#define WEFT_CTX_H

#include <stdio.h>

#include "common.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_ctx weft_ctx;
/* The right to cancel one context (Go's CancelFunc). Not a context: it cannot be waited on or derived from. */
typedef struct weft_cancel weft_cancel;

/* ---- roots -------------------------------------------------------------------------------------- */

/* Returns the background root: never cancelled, no deadline, no values. Static; never NULL. */
WEFT_API weft_ctx *weft_background(void);
/* Returns the placeholder root (Go's to-do context): like background, for code that has not yet been
 * given a context; a separate root so that such places can be found. */
WEFT_API weft_ctx *weft_todo(void);

/* ---- derivations (each returns 0 and stores a new context with one reference in *out, and the right to
 * cancel it in *cancel) ---------------------------------------------------------------------------- */

/* A child cancelled through *cancel or when the parent is done. */
WEFT_API int weft_ctx_with_cancel(weft_ctx *parent, weft_ctx **out, weft_cancel **cancel);

/* A child that also ends at `deadline` (absolute, CLOCK_MONOTONIC ns) with WEFT_EDEADLINE. The effective
 * deadline is min(deadline, parent's deadline); when the parent's deadline comes first no timer is armed.
 * A deadline already past gives a child that is already done with WEFT_EDEADLINE. */
WEFT_API int weft_ctx_with_deadline(weft_ctx *parent, int64_t deadline, weft_ctx **out, weft_cancel **cancel);
/* weft_ctx_with_deadline(parent, weft_deadline_in(timeout), ...). A negative timeout is already expired. */
WEFT_API int weft_ctx_with_timeout(weft_ctx *parent, int64_t timeout, weft_ctx **out, weft_cancel **cancel);
/* As above, but when the deadline fires the context's cause is `cause` instead of WEFT_EDEADLINE
 * (weft_ctx_err() still says WEFT_EDEADLINE). `cause` must be negative (WEFT_EINVAL otherwise). */
WEFT_API int weft_ctx_with_deadline_cause(weft_ctx *parent, int64_t deadline, int cause, weft_ctx **out,
                                          weft_cancel **cancel);
WEFT_API int weft_ctx_with_timeout_cause(weft_ctx *parent, int64_t timeout, int cause, weft_ctx **out,
                                         weft_cancel **cancel);

/* A child carrying `value` under `key`. The key is the address of a unique object of the caller's (a
 * static variable), so keys of different modules never collide; NULL gives WEFT_EINVAL. If `dtor` is not
 * NULL it is called with `value` exactly once, when the context is freed — or before returning, if the call
 * fails, so ownership of `value` always passes to the call. The child shares its parent's cancellation and
 * deadline and has no cancel of its own (as in Go); end it with weft_ctx_release(). */
WEFT_API int weft_ctx_with_value(weft_ctx *parent, const void *key, void *value, void (*dtor)(void *),
                                 weft_ctx **out);

/* A child that keeps the parent's values but is never cancelled and has no deadline (Go's WithoutCancel).
 * Use it for work that must outlive the request, such as a confirmation sent after the response. End it
 * with weft_ctx_release(). */
WEFT_API int weft_ctx_without_cancel(weft_ctx *parent, weft_ctx **out);

/* A child of several parents: done as soon as any parent is done (with that parent's error and cause), its
 * deadline is the earliest of the parents', and values are looked up in each parent in the order given.
 * It is registered with each parent; no thread is used. n must be 1..64 (WEFT_EINVAL otherwise, or when an
 * entry is NULL). The child holds a reference to each parent; *cancel cancels the child alone. */
WEFT_API int weft_ctx_with_parents(weft_ctx *const *parents, size_t n, weft_ctx **out, weft_cancel **cancel);

/* ---- cancellation -------------------------------------------------------------------------------- */

/* Cancels the context `cancel` belongs to with WEFT_ECANCELED, and every context derived from it;
 * disarms their timers, wakes every thread waiting on them and schedules their after-funcs; the context
 * is unlinked from its parent. Returns 0, also when it was already done (cancel is idempotent; the first
 * error and cause stay); WEFT_EINVAL for NULL. The caller must hold a reference to the context. */
WEFT_API int weft_ctx_cancel(weft_cancel *cancel);
/* As weft_ctx_cancel(), recording `cause` (a negative code of the caller's) as weft_ctx_cause(). A cause of
 * 0 means WEFT_ECANCELED. WEFT_EINVAL for a positive cause. */
WEFT_API int weft_ctx_cancel_cause(weft_cancel *cancel, int cause);

/* Cancel and release the creator's reference: the `defer cancel()` of Go, one call at the end. NULL is a
 * no-op. Afterwards both handles are gone (unless the context was retained elsewhere). */
WEFT_API void weft_ctx_end(weft_cancel *cancel);

/* Adds a reference and returns ctx (NULL gives NULL). */
WEFT_API weft_ctx *weft_ctx_retain(weft_ctx *ctx);
/* Drops a reference; the last one detaches the context from its parent, disarms its timer, runs the value
 * destructor and frees it. NULL is a no-op. Releasing (or ending) more often than retained is a bug. It is
 * reported, and the process aborted, as long as the freed context's memory has not been reused for another
 * context; once it has, the extra release drops a reference of that context's owner. To catch every case,
 * run with WEFT_DEBUG_REFS=1 in the environment (read once, before the first context is made): released
 * contexts are then poisoned and never reused — memory grows with every context made — and any later
 * release, end or retain of one reports it (which call, which context, of what kind) and aborts. */
WEFT_API void weft_ctx_release(weft_ctx *ctx);

/* ---- state -------------------------------------------------------------------------------------- */

/* Returns 0 while the context is live, WEFT_ECANCELED once cancelled, WEFT_EDEADLINE once its deadline
 * passed. One atomic load on a live context: cheap enough for any loop. NULL gives WEFT_EINVAL.
 * Order: once a context is seen done, every context derived from it is seen done; and a context ended by
 * an ancestor's cancel or deadline is never seen done while that ancestor is seen live (as in Go), so
 * "my context is done: was it the parent?" can be asked of the parent. While a cancel is being published
 * through a subtree, a call on a context of it waits for that walk (microseconds). */
WEFT_API int weft_ctx_err(const weft_ctx *ctx);
/* true once weft_ctx_err() is non-zero. */
WEFT_API bool weft_ctx_done(const weft_ctx *ctx);
/* Returns the cause: 0 while live; the cause given to weft_ctx_cancel_cause() or a *_cause deadline; else
 * the same as weft_ctx_err(). For a signal context, WEFT_SIGNAL_CAUSE(signo). NULL gives WEFT_EINVAL. */
WEFT_API int weft_ctx_cause(const weft_ctx *ctx);
/* Returns the effective deadline, or WEFT_FOREVER when there is none (also for NULL). */
WEFT_API int64_t weft_ctx_deadline(const weft_ctx *ctx);

/* Returns the value stored under `key` in ctx or its nearest ancestor that has one (shadowing as in Go),
 * or NULL when none has it. The value stays owned by the context that stored it and is valid while the
 * caller holds a reference to ctx. */
WEFT_API void *weft_ctx_value(const weft_ctx *ctx, const void *key);
/* As weft_ctx_value(), telling a stored NULL apart from a missing key: returns true and sets *value
 * (when value is not NULL) if found. */
WEFT_API bool weft_ctx_lookup(const weft_ctx *ctx, const void *key, void **value);

/* ---- waiting ------------------------------------------------------------------------------------ */

/* Blocks until ctx is done or `deadline` (absolute; WEFT_FOREVER for none) passes. Spins briefly, then
 * parks. Returns the context's error (WEFT_ECANCELED / WEFT_EDEADLINE) once done, WEFT_ETIMEDOUT when the
 * deadline passed first, WEFT_EINVAL for NULL. */
WEFT_API int weft_ctx_wait_until(weft_ctx *ctx, int64_t deadline);
/* As weft_ctx_wait_until(ctx, weft_deadline_in(timeout)): waits at most `timeout` ns (WEFT_FOREVER: no
 * limit; WEFT_NOWAIT or less: only looks). (0.1's weft_ctx_wait took a deadline; it is gone rather than
 * changed, so that old calls fail to build instead of waiting for the wrong time.) */
WEFT_API int weft_ctx_wait_for(weft_ctx *ctx, int64_t timeout);

/* Sleeps for `duration` ns unless ctx ends first. Returns 0 after the full sleep, else the context's error.
 * A duration <= 0 returns at once (0, or the error if ctx is already done). */
WEFT_API int weft_ctx_sleep(weft_ctx *ctx, int64_t duration);

/* Returns a file descriptor that becomes readable (POLLIN) once ctx is done, for poll/epoll loops; an
 * eventfd created on first use and shared by later calls. The fd belongs to the context's cancellation
 * source: do not close or read it; it stays valid while the caller holds a reference to ctx. A context
 * that can never be cancelled returns an fd that never becomes readable. Negative weft code on error
 * (WEFT_EINVAL, WEFT_ESYS when eventfd fails).
 * The limit: each cancellation source asked for costs one eventfd (about 1.5-2.5 us to make, one kernel
 * object, one descriptor) for its life, so a server with thousands of in-flight requests runs into the
 * process's descriptor limit (often 1024) and the poll set grows with it. For many contexts, watch them
 * all on one descriptor with a weft_watcher (below). */
WEFT_API int weft_ctx_fd(weft_ctx *ctx);

/* ---- many contexts on one descriptor: watchers ----------------------------------------------------- */

/* A watcher reports the end of any number of contexts through one descriptor and a queue, so an event
 * loop with 100k in-flight requests polls one fd instead of 100k. Each watched context gets an after-func
 * (weft_ctx_after_func: no descriptor, a small allocation) that, once the context is done, appends an
 * event {tag, err, cause} to the watcher's queue on weft's callback thread; the descriptor is readable
 * (level-triggered) while events are queued. Each watch is reported exactly once, unless removed first.
 * Thread safety: every call from any thread, except weft_watcher_destroy() (no other call may race it). */
typedef struct weft_watcher weft_watcher;
typedef struct weft_watch weft_watch;

struct weft_watch_event {
  void *tag; /* as given to weft_watcher_add */
  int err;   /* the context's error when it ended: WEFT_ECANCELED or WEFT_EDEADLINE */
  int cause; /* its cause (weft_ctx_cause): e.g. a cancel-cause code or WEFT_SIGNAL_CAUSE(signo) */
};

/* Creates a watcher (and its descriptor). Returns 0, WEFT_EINVAL (out NULL), WEFT_ENOMEM, WEFT_ESYS. */
WEFT_API int weft_watcher_create(weft_watcher **out);

/* Watches ctx: once it is done (also if it is done already), one event with `tag` is queued. The watch
 * holds a reference to ctx until it fired or was removed. A context that can never be cancelled is never
 * reported. `handle` (may be NULL) receives a handle for weft_watcher_remove(), valid until the watch's
 * event was taken or weft_watcher_remove() returned 0. Returns 0, WEFT_EINVAL (NULL w or ctx),
 * WEFT_ENOMEM, WEFT_ESYS (the callback thread could not be started); on error nothing is watched. */
WEFT_API int weft_watcher_add(weft_watcher *w, weft_ctx *ctx, void *tag, weft_watch **handle);

/* Stops a watch. Returns 0 when it was removed before firing (no event will come; the handle is freed);
 * WEFT_ESTATE when it fired already (its event is queued or about to be: take it as usual; the handle
 * stays valid until then); WEFT_EINVAL for NULL. Never blocks on the callback. */
WEFT_API int weft_watcher_remove(weft_watcher *w, weft_watch *handle);

/* Takes up to `max` queued events into out[], oldest first, and returns how many (0 when none is queued;
 * WEFT_EINVAL for NULL w, or NULL out with max > 0; max is capped at INT_MAX). The descriptor stops being
 * readable when the queue becomes empty. Never blocks. */
WEFT_API int weft_watcher_take(weft_watcher *w, struct weft_watch_event *out, size_t max);

/* The descriptor: readable (POLLIN, level-triggered) while events are queued. Owned by the watcher: do
 * not read or close it; valid until weft_watcher_destroy(). WEFT_EINVAL for NULL. */
WEFT_API int weft_watcher_fd(weft_watcher *w);

/* Watches not yet fired plus events not yet taken (0 for NULL): 0 means nothing more will be reported. */
WEFT_API size_t weft_watcher_pending(weft_watcher *w);

/* Destroys the watcher: removes every watch that has not fired (dropping its context reference), waits
 * for the callbacks already running to finish, drops the events not taken (tags are the caller's), and
 * closes the descriptor. NULL is a no-op. */
WEFT_API void weft_watcher_destroy(weft_watcher *w);

typedef struct weft_after weft_after;

/* Arranges for fn(arg) to run once after ctx is done (Go's context.AfterFunc). fn runs on weft's callback
 * thread (one per process, started on first use), never on the cancelling thread and never while a weft
 * lock is held. It may call any weft function, but blocking in it delays the other callbacks. If ctx is
 * already done, fn is scheduled at once. The registration keeps ctx alive until fn has run or been stopped.
 * Any context is accepted: on one that can never be cancelled (a root, a without-cancel context, a value
 * context above them) fn never runs and no thread is started, and the handle's first stop returns true.
 * If `handle` is not NULL it receives a handle owned by the caller, who must free it with weft_after_free()
 * once done with it (after any weft_after_stop() calls); with a NULL handle the callback cannot be stopped
 * and nothing is left to free. Returns 0, WEFT_EINVAL (NULL ctx or fn), WEFT_ENOMEM, WEFT_ESYS (the
 * callback thread could not be started). On error fn is never called and *handle is set to NULL.
 * Thread safety: any thread. */
WEFT_API int weft_ctx_after_func(weft_ctx *ctx, void (*fn)(void *arg), void *arg, weft_after **handle);

/* Stops the callback if it has not started (Go's stop). Returns true if this call stopped it (fn will never
 * run and the context reference it held is dropped), false if fn already ran or is running, or if an
 * earlier stop stopped it: it may be called any number of times, and only one call ever returns true. It
 * does not wait for a running fn. The handle stays valid until weft_after_free(). NULL returns false.
 * Thread safety: any thread, concurrently with other stops on the same handle, and from fn itself. */
WEFT_API bool weft_after_stop(weft_after *handle);

/* Frees the caller's handle. It does not stop the callback (as dropping Go's stop function does not): a
 * pending fn still runs when the context is done, and the library frees its own part of the registration
 * once fn has run or been stopped, whichever order the two happen in. Call it exactly once per handle;
 * the handle must not be used after it. NULL is a no-op. Thread safety: any thread, from fn too, but not
 * concurrently with a weft_after_stop() on the same handle. */
WEFT_API void weft_after_free(weft_after *handle);

/* ---- signals ------------------------------------------------------------------------------------ */

/* The cause of a context cancelled by signal `signo`, and the way back (0 when `cause` is not one). */
#define WEFT_SIGNAL_CAUSE(signo) (-256 - (signo))
WEFT_API int weft_cause_signal(int cause);

/* A child of `parent` cancelled when one of the signals `sigs[0..n)` arrives (Go's signal.NotifyContext);
 * n == 0 means SIGINT and SIGTERM. The cause is WEFT_SIGNAL_CAUSE(signo); weft_ctx_err() says canceled.
 * While any signal context for a signal is live, weft installs a handler for it (SA_RESTART) that only
 * writes the signal number to a pipe — no lock, no allocation — and a weft thread reads the pipe and does
 * the cancelling; the previous disposition is restored when the last such context is ended (weft_ctx_end,
 * before it returns) or released. The kernel may deliver the signal to any thread that does not block it,
 * so do not block these signals in your threads (weft's own threads block every signal). A slow system
 * call of yours interrupted by the handler may return EINTR where SA_RESTART does not apply (poll,
 * nanosleep, ...). If `force_exit_on_second` is true, any of its signals arriving after the one that
 * cancelled the context exits the process at once with status 128+signo (from the handler, with _exit). SIGKILL,
 * SIGSTOP, the synchronous signals (SIGSEGV, SIGBUS, SIGFPE, SIGILL) and the numbers that cannot be
 * caught (0, negative, above SIGRTMAX, and those the C library keeps for itself below SIGRTMIN, 32 and 33
 * with glibc) are refused with WEFT_EINVAL, and so is an n larger than the number of signals. One arrival
 * cancels every signal context registered for it when it arrived, however many there are. Returns 0,
 * WEFT_EINVAL, WEFT_ENOMEM, WEFT_ESYS. */
WEFT_API int weft_ctx_with_signals(weft_ctx *parent, const int *sigs, size_t n, bool force_exit_on_second,
                                   weft_ctx **out, weft_cancel **cancel);

/* As weft_ctx_with_signals, but cancelled by the nth arrival of its signals counted from its creation
 * (nth >= 1; 1 is weft_ctx_with_signals; arrivals of different signals of the set add up). For escalation
 * — "Ctrl-C once drains, twice cancels, three times exits" — create every step up front, nth = 1 and
 * nth = 2 with force_exit_on_next: the second arrival then cannot be missed, however soon it follows the
 * first (a step created in the first one's callback would miss an arrival that came before it). With
 * force_exit_on_next, any of its signals arriving after the nth exits the process with 128+signo. Standard
 * signals sent while one of the same number is still pending merge in the kernel: they count once.
 * Returns 0, WEFT_EINVAL (as weft_ctx_with_signals, or nth == 0), WEFT_ENOMEM, WEFT_ESYS. */
WEFT_API int weft_ctx_with_signals_nth(weft_ctx *parent, const int *sigs, size_t n, unsigned nth,
                                       bool force_exit_on_next, weft_ctx **out, weft_cancel **cancel);

/* ---- debug aids --------------------------------------------------------------------------------- */

/* Returns the number of derived contexts alive in the process (roots not counted). */
WEFT_API size_t weft_ctx_live_count(void);

/* Writes the subtree under ctx to `out`, one line per context, indented by depth: kind, state (live,
 * canceled, deadline-exceeded), age (millisecond-coarse), deadline remaining, references. The children
 * shown are those linked for cancellation: a cancelled context leaves its parent's list at once, so it
 * no longer appears under its parent (dump it directly to see it). Value and without-cancel contexts
 * appear under the context they were derived from only when WEFT_LEAKS tracking is on. Returns 0, or
 * WEFT_EINVAL for NULL arguments. */
WEFT_API int weft_ctx_dump(weft_ctx *ctx, FILE *out);

/* Leak report. When the environment has WEFT_LEAKS=1 at the first derivation, weft records where each
 * context was created and, at exit, prints every context never released to stderr. These calls do the
 * same on demand: weft_ctx_leak_tracking() says whether tracking is on, weft_ctx_leak_report() writes the
 * contexts alive right now (kind, age, creator) and returns how many it wrote. */
WEFT_API bool weft_ctx_leak_tracking(void);
WEFT_API size_t weft_ctx_leak_report(FILE *out);

#ifdef __cplusplus
}
#endif
#endif
