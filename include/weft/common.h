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

/* Returns the current CLOCK_MONOTONIC time in nanoseconds. Thread safety: any thread. */
WEFT_API int64_t weft_now(void);

/* Returns the deadline `d` nanoseconds from now, saturating at WEFT_FOREVER (d == WEFT_FOREVER gives
 * WEFT_FOREVER; a negative d gives a deadline already in the past). Thread safety: any thread. */
WEFT_API int64_t weft_deadline_in(int64_t d);

#ifdef __cplusplus
}
#endif
#endif
