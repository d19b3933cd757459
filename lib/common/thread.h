/* lib/common/thread.h: the one runtime service the pipeline layer uses beyond the public API (not API).
 *
 * The pipeline layer is built on the public channels and contexts; it includes this header instead of
 * common/internal.h, so that its files cannot reach futexes, spinlocks or the context core by accident. */
#ifndef WEFT_THREAD_H
#define WEFT_THREAD_H

#include <pthread.h>

/* Starts a thread of weft's own (timer, callbacks, signals, pool workers, group functions, pipeline
 * stages, pumps) with every signal blocked, so the process's signals go to the application's threads.
 * Returns 0 or WEFT_ESYS. */
int weft__runtime_thread(pthread_t *th, void *(*fn)(void *), void *arg);

#endif
