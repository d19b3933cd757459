/* weft/sem.h: a context-aware weighted semaphore (Go's x/sync/semaphore).
 *
 * Thread safety: every function may be called from any thread, except weft_sem_destroy(). */
#ifndef WEFT_SEM_H
#define WEFT_SEM_H

#include "common.h"
#include "ctx.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_sem weft_sem;

/* Creates a semaphore with `size` units, all free. Returns 0, WEFT_EINVAL (size <= 0 or NULL out),
 * WEFT_ENOMEM. */
WEFT_API int weft_sem_create(int64_t size, weft_sem **out);
/* Frees it. No thread may be waiting on it or use it afterwards. NULL is a no-op. */
WEFT_API void weft_sem_destroy(weft_sem *s);

/* Acquires n units, blocking until they are free or ctx (NULL = no limit) is done. Waiters are served in
 * FIFO order: a large request at the head is not starved by later small ones, which wait behind it (as
 * in Go). Returns 0 (holding n units), ctx's error (holding nothing; if ctx is already done at the call and
 * the units are free, the acquire still succeeds, as in Go), WEFT_EINVAL (NULL s, n <= 0, or n > size
 * with a NULL ctx — it could never succeed; with a ctx, n > size waits for the ctx as Go does). */
WEFT_API int weft_sem_acquire(weft_sem *s, weft_ctx *ctx, int64_t n);
/* Acquires n units if they are free now and nobody is waiting. Returns 0, WEFT_EFULL, WEFT_EINVAL. */
WEFT_API int weft_sem_try_acquire(weft_sem *s, int64_t n);
/* Releases n units and wakes the waiters that now fit, in FIFO order. Returns 0, or WEFT_EINVAL (NULL s,
 * n <= 0, or releasing more than held — the semaphore is unchanged then). */
WEFT_API int weft_sem_release(weft_sem *s, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
