/* lib/adapt/hub.h: the completion hub shared by the event-loop adapters (libuv, GLib). Not API.
 *
 * A hub turns the pool's on_done callbacks, which run on worker threads (or on the thread that discarded a
 * job), into result callbacks on one loop thread. Each adapter embeds a hub and gives it a wake function
 * (uv_async_send, g_main_context_wakeup); the loop thread calls weft__hub_drain() when woken. See hub.c's
 * design notes for the invariants. */
#ifndef WEFT_ADAPT_HUB_H
#define WEFT_ADAPT_HUB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "weft/ctx.h"
#include "weft/pool.h"

typedef void (*weft__hub_result_fn)(void *job_arg, int job_rc, weft_job_state state, void *cb_arg);

typedef struct weft__hreq weft__hreq;
struct weft__hreq {
  weft__hreq *next;             /* link in the hub's completion stack, then in a drained batch */
  weft__hreq *live_prev, *live_next; /* the hub's list of jobs in flight (loop thread only) */
  struct weft__hub *hub;
  void *arg;                    /* the job's arg, as given at submit */
  int rc;                       /* set by on_done */
  weft_job_state state;         /* set by on_done */
  weft__hub_result_fn cb;
  void *cb_arg;
  weft_ctx *ctx;                /* the job's own cancellable context (a reference), or NULL */
  weft_cancel *cancel;          /* the right to cancel ctx */
  _Atomic int phase;            /* 0 in flight; PHASE_CANCELED or PHASE_ENDED, whichever came first */
};

typedef struct weft__hub {
  /* shared with the threads that end jobs */
  _Atomic(weft__hreq *) head; /* completions not yet drained (a stack: newest first) */
  _Atomic long senders;       /* threads between their push and the end of their wake call */
  void (*wake)(void *wake_arg);
  void *wake_arg;
  /* loop thread only */
  weft__hreq live;            /* sentinel of the in-flight list */
  size_t inflight;            /* submitted, result callback not run yet */
  weft__hreq *free;           /* spare records */
  size_t nfree;
  bool closing;
  uint64_t submitted, completed, failed, canceled_before_start, canceled_while_running;
} weft__hub;

void weft__hub_init(weft__hub *h, void (*wake)(void *), void *wake_arg);
/* Submits fn(arg) to p without blocking; the result comes to cb on the loop thread. `ctx` (NULL: none) is
 * the context the job also runs under. With `handle` non-NULL, the job gets a cancellable context of its
 * own (a child of ctx, or of the background) and *handle receives its record, valid until cb returned.
 * Returns 0, WEFT_EINVAL, WEFT_ESTOPPED (hub closing, or pool shut down), WEFT_EFULL, WEFT_ENOMEM. */
int weft__hub_submit(weft__hub *h, weft_pool *p, weft_ctx *ctx, weft_job_fn fn, void *arg,
                     weft__hub_result_fn cb, void *cb_arg, weft__hreq **handle);
/* Cancels one job's context; 0, or WEFT_ESTATE when the job already ended (its result is on its way). */
int weft__hub_cancel(weft__hreq *r);
/* Delivers every completion pushed so far. Returns true when the hub is closing and nothing is in flight
 * any more: the caller then finishes its close (no thread touches the hub afterwards). */
bool weft__hub_drain(weft__hub *h);
/* Starts closing: submits return WEFT_ESTOPPED; with cancel, every job that has a context of its own is
 * cancelled. Returns true when nothing is in flight (finish the close now). */
bool weft__hub_close(weft__hub *h, bool cancel);
/* Frees the spare records. Call once nothing is in flight and no thread can reach the hub. */
void weft__hub_destroy(weft__hub *h);
void weft__hub_report(const weft__hub *h, weft_pool_report *rep);

#endif
