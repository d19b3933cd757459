/* weft/common.h: the export macro and the units of time shared by every module.
 *
 * Time in weft is an int64_t count of nanoseconds. A *duration* (timeout, sleep) is relative; a *deadline*
 * is absolute on CLOCK_MONOTONIC, as returned by weft_now(). */
#ifndef WEFT_COMMON_H
#define WEFT_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(WEFT_STATIC)
#define WEFT_API
#elif defined(WEFT_BUILDING)
#define WEFT_API __attribute__((visibility("default")))
#else
#define WEFT_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define WEFT_NS(n) ((int64_t)(n))
#define WEFT_US(n) ((int64_t)(n) * INT64_C(1000))
#define WEFT_MS(n) ((int64_t)(n) * INT64_C(1000000))
#define WEFT_SEC(n) ((int64_t)(n) * INT64_C(1000000000))

/* As a deadline: none ("wait forever"). As a duration: infinite. */
#define WEFT_FOREVER INT64_MAX
/* As a duration: do not wait at all (poll). As a deadline, any value <= weft_now() means the same. */
#define WEFT_NOWAIT INT64_C(0)

/* A context (weft/ctx.h). Declared here so that the function types below need no other header. */
typedef struct weft_ctx weft_ctx;

/* A job, a group function or anything else weft runs for you: it gets a context (observe it, derive from
 * it, pass it on; it carries no right to cancel) and the argument given with it, and returns 0 for success
 * or a negative error code (a WEFT_E* code or one of its own). */
typedef int (*weft_job_fn)(weft_ctx *ctx, void *arg);

/* Hands back an item weft will not deliver (a channel element left when the channel is destroyed, a
 * pipeline item dropped on a stop, an element a merge or tee could not pass on, the argument of a job
 * that ends unrun), with the `arg` registered beside the hook: typically the item is freed or requeued.
 * It runs on a thread of weft's or on the caller's, must not block for long, and must not call back into
 * the object that calls it. */
typedef void (*weft_discard_fn)(void *item, void *arg);

/* Returns the current CLOCK_MONOTONIC time in nanoseconds. Thread safety: any thread. */
WEFT_API int64_t weft_now(void);

/* Returns the deadline `d` nanoseconds from now, saturating at WEFT_FOREVER (d == WEFT_FOREVER gives
 * WEFT_FOREVER; a negative d gives a deadline already in the past). Thread safety: any thread. */
WEFT_API int64_t weft_deadline_in(int64_t d);

#ifdef __cplusplus
}
#endif
#endif
