/* weft/group.h: error groups (Go's errgroup).
 *
 * Where group functions run. Each weft_group_go() runs its function on a thread of its own (joined by
 * weft_group_wait), as errgroup runs each function in its own goroutine. Group functions commonly block on
 * one another (a producer and its consumers, pipeline stages), which a fixed-size pool could deadlock; for
 * many tiny independent tasks use a weft_pool instead, since a thread is far dearer to start than a job.
 *
 * Thread safety: every function may be called from any thread (weft_group_go from inside a group
 * function too), except where said otherwise. */
#ifndef WEFT_GROUP_H
#define WEFT_GROUP_H

#include "common.h"
#include "ctx.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- error group -------------------------------------------------------------------------------- */

typedef struct weft_group weft_group;

/* Creates a group whose context derives from `parent` (NULL = weft_background()) and is cancelled by the
 * first function returning non-zero or by the first weft_group_wait() to return, whichever comes first (as
 * Go's WithContext). `limit` bounds how many functions are active at once (0 = no limit here; see
 * weft_group_set_limit() for a limit of 0). Returns 0, WEFT_EINVAL (NULL out, limit over INT64_MAX),
 * WEFT_ENOMEM. */
WEFT_API int weft_group_create(weft_ctx *parent, size_t limit, weft_group **out);

/* The group's context (borrowed; valid until weft_group_destroy). Pass it to what the functions call. */
WEFT_API weft_ctx *weft_group_ctx(weft_group *g);

/* Runs fn(group ctx, arg) on a new thread, first waiting while the limit's count of functions is active
 * (a function is active from the moment go reserves its place until it returns). Returns 0 (fn will run
 * exactly once), WEFT_EINVAL (NULL g or fn), WEFT_EFULL (the limit is 0: nothing can ever start, so go
 * returns at once where Go's Go would block forever), WEFT_ENOMEM, WEFT_ESYS (no thread could be
 * started). On an error fn is never called and arg stays the caller's. The first non-zero return of any
 * fn is kept for good and cancels the group's context with that code as its cause (a positive code:
 * WEFT_ECANCELED). The group may be used again after weft_group_wait(), as Go's: go still runs fn, under
 * the group's context, which that wait cancelled. */
WEFT_API int weft_group_go(weft_group *g, weft_job_fn fn, void *arg);
/* As weft_group_go(), but never waits: returns WEFT_EFULL at once (fn not called) when the limit's count
 * of functions is active (Go's TryGo returning false). */
WEFT_API int weft_group_try_go(weft_group *g, weft_job_fn fn, void *arg);

/* Waits for every function started with go/try_go (including those they start meanwhile), cancels the
 * group's context, and returns the first non-zero result any function of the group ever returned (0 if
 * none did), as Go's Wait. It may be called again, also after more go calls, and from several threads
 * at once; each call waits for the functions started before it returns. Never call it from a group
 * function (it would wait for itself). */
WEFT_API int weft_group_wait(weft_group *g);

/* Waits as weft_group_wait(), then frees the group. NULL is a no-op. No other call on g may be under way. */
WEFT_API void weft_group_destroy(weft_group *g);

/* Sets the limit on active functions, as Go's SetLimit: n > 0 bounds them, n < 0 removes the limit, and
 * n == 0 lets none start (go and try_go then return WEFT_EFULL). Returns 0, WEFT_EINVAL (NULL g), or
 * WEFT_EBUSY (n >= 0 while a function is active; the limit is unchanged — Go panics there). Removing the
 * limit is allowed at any time, and wakes go calls waiting for a place. */
WEFT_API int weft_group_set_limit(weft_group *g, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
