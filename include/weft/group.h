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
 * first function returning non-zero (and by weft_group_wait). `limit` bounds how many functions run at
 * once (0 = no limit). Returns 0, WEFT_EINVAL (NULL out, limit over INT64_MAX), WEFT_ENOMEM. */
WEFT_API int weft_group_create(weft_ctx *parent, size_t limit, weft_group **out);

/* The group's context (borrowed; valid until weft_group_destroy). Pass it to what the functions call. */
WEFT_API weft_ctx *weft_group_ctx(weft_group *g);

/* Runs fn(group ctx, arg) on a new thread, first waiting while `limit` functions are running. Returns 0
 * (fn will run exactly once), WEFT_EINVAL (NULL g or fn), WEFT_ESTATE (weft_group_wait already returned),
 * WEFT_ESYS (no thread could be started; fn is never called and arg stays the caller's). The first
 * non-zero return of any fn is kept and cancels the group's context with that code as its cause. */
WEFT_API int weft_group_go(weft_group *g, weft_job_fn fn, void *arg);
/* As weft_group_go(), but returns WEFT_EFULL at once instead of waiting when `limit` functions run. */
WEFT_API int weft_group_try_go(weft_group *g, weft_job_fn fn, void *arg);

/* Waits for every function started with go/try_go, cancels the group's context, and returns the first
 * non-zero result (0 if all returned 0). Call it once, from a thread that is not running a group
 * function; afterwards go returns WEFT_ESTATE. A second call returns the same result at once. */
WEFT_API int weft_group_wait(weft_group *g);

/* Waits as weft_group_wait() if that was not called, then frees the group. NULL is a no-op. */
WEFT_API void weft_group_destroy(weft_group *g);

#ifdef __cplusplus
}
#endif
#endif
