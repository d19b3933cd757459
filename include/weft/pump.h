/* weft/pump.h: merge and tee on any channels — Go's fan-in `merge(ctx, chans...)` and broadcast.
 *
 * Free functions for wiring topologies of your own out of channels. weft_chan_merge() and weft_chan_tee()
 * block the calling thread until done; weft_chan_merge_start() and weft_chan_tee_start() run one on a
 * thread of its own and weft_chan_pump_join() waits for it. All channels must have the same element size
 * (WEFT_EINVAL). The context comes first: these calls have no handle of their own. */
#ifndef WEFT_PUMP_H
#define WEFT_PUMP_H

#include "chan.h"
#include "common.h"
#include "ctx.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_pump_opts {
  bool keep_open;          /* false (default): close the output channel(s) when returning, whatever the reason */
  weft_discard_fn discard; /* called for an element received but not delivered because ctx ended (tee: once
                            * per output it was not sent to); NULL: dropped */
  void *discard_arg;
} weft_pump_opts;
#define WEFT_PUMP_OPTS_INIT {false, NULL, NULL}

/* Fan-in: moves every element of ins[0..n) to out, as they come (fair among ready inputs), until all of
 * ins are closed and drained, then closes out (unless keep_open). Returns 0; WEFT_ECANCELED /
 * WEFT_EDEADLINE when ctx ended first; WEFT_ECLOSED if out was closed by someone else (the element in hand
 * is discarded); WEFT_EINVAL (out or ins NULL, n 0 or over 64, a NULL entry, sizes differ); WEFT_ENOMEM.
 * opts may be NULL. Thread safety: any thread; other threads may use the channels meanwhile. */
WEFT_API int weft_chan_merge(weft_ctx *ctx, weft_chan *out, weft_chan *const *ins, size_t n,
                             const weft_pump_opts *opts);
/* Broadcast: sends a copy of every element of in to each of outs[0..n), in order, until in is closed and
 * drained, then closes the outs (unless keep_open). Each element reaches every output before the next is
 * read, so the slowest output sets the pace. For pointer items every output receives the same pointer:
 * share ownership (e.g. a reference count) accordingly. Returns and errors as weft_chan_merge() (an output
 * closed by someone else: WEFT_ECLOSED). */
WEFT_API int weft_chan_tee(weft_ctx *ctx, weft_chan *in, weft_chan *const *outs, size_t n,
                           const weft_pump_opts *opts);

/* A merge or tee running on a thread of its own. */
typedef struct weft_chan_pump weft_chan_pump;

/* Start weft_chan_merge(ctx, out, ins, n, opts) or weft_chan_tee(ctx, in, outs, n, opts) on a new thread
 * and store its handle in *pump. The arrays are copied; the channels and ctx (retained by the pump) must
 * outlive it. Return 0, the argument errors of those functions (then no thread is started), WEFT_ENOMEM,
 * WEFT_ESYS; on error *pump is NULL. The handle must be passed to weft_chan_pump_join() exactly once.
 * Thread safety: any thread. */
WEFT_API int weft_chan_merge_start(weft_ctx *ctx, weft_chan *out, weft_chan *const *ins, size_t n,
                                   const weft_pump_opts *opts, weft_chan_pump **pump);
WEFT_API int weft_chan_tee_start(weft_ctx *ctx, weft_chan *in, weft_chan *const *outs, size_t n,
                                 const weft_pump_opts *opts, weft_chan_pump **pump);
/* Waits for the pump's thread, frees the handle, and returns the function's result (WEFT_EINVAL for NULL).
 * Thread safety: any one thread, once per handle. */
WEFT_API int weft_chan_pump_join(weft_chan_pump *pump);

#ifdef __cplusplus
}
#endif
#endif
