/* lib/jobs/jobq.h: the pool's job queue (not API). The only user is lib/pool.c; lib/jobq.c is the only file
 * that talks to Concurrency Kit for it. See jobq.c's design notes for the shape and the figures behind it. */
#ifndef WEFT_JOBQ_H
#define WEFT_JOBQ_H

#include <stdbool.h>
#include <stdint.h>

#include "ctx/park.h"
#include "weft/pool.h"

typedef struct weft__job weft__job; /* a job record (pool.c): only jobs that need one have one */

/* One queued job, copied in and out by value. A job that needs more than fn and arg (a future, a context,
 * a timeout) is queued as {marker, record}: see pool.c. ts is the submit time of a job sampled for the
 * latency stats, else 0. */
typedef struct weft__jslot {
  weft_job_fn fn;
  void *arg;
  int64_t ts;
} weft__jslot;

typedef struct weft__jobq weft__jobq;

/* The most jobs one weft__jobq_get() hands a worker at a time. */
#define WEFT__JOBQ_BATCH 16

/* Creates a queue of `nlanes` lanes (one per worker) holding exactly `cap` jobs in all (split as evenly as
 * it goes). cap is at most WEFT_POOL_MAX_QUEUE (the caller checks). Returns 0, WEFT_ENOMEM. */
int weft__jobq_create(weft__jobq **out, unsigned nlanes, size_t cap);
/* Frees the queue. No thread may use it any more. */
void weft__jobq_destroy(weft__jobq *q);
/* Worker `self` announces its waiter record (call once, from the worker thread, before weft__jobq_get). */
void weft__jobq_attach(weft__jobq *q, unsigned self, weft__waiter *w);

/* Producer side: queues *s on some lane (round-robin from a per-thread hint, skipping full lanes)
 * and wakes a parked worker when one is needed. Returns 0, WEFT_EFULL when every lane is full, or
 * WEFT_ESTOPPED once weft__jobq_close() has run. Any thread, any number at once; no lock (one CAS on the
 * lane's tail). */
int weft__jobq_push(weft__jobq *q, const weft__jslot *s);

/* Consumer side for worker `self`: returns up to `max` jobs into out[], taken from its own lane or stolen
 * from a sibling's. Blocks (spins, yields, then parks) while there is nothing to do. Returns 0 only once
 * the queue is closed and empty: the worker should exit. */
unsigned weft__jobq_get(weft__jobq *q, unsigned self, weft__jslot *out, unsigned max);

/* Takes up to `max` queued jobs from any lane without blocking (used by shutdown to discard). */
unsigned weft__jobq_take(weft__jobq *q, weft__jslot *out, unsigned max);

/* Closes the queue: once this returns, every weft__jobq_push() returns WEFT_ESTOPPED; parked workers are
 * woken so they can drain and exit. Idempotent. */
void weft__jobq_close(weft__jobq *q);

/* Counters (racy snapshots, each exact at some instant): jobs ever pushed; jobs queued and not yet taken. */
uint64_t weft__jobq_pushed(weft__jobq *q);
uint64_t weft__jobq_queued(weft__jobq *q);
size_t weft__jobq_capacity(const weft__jobq *q);

#endif
