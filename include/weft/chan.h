/* weft/chan.h: bounded channels, select and timer channels — Go's channels in C, context-aware.
 *
 * A channel carries elements of one fixed size, copied in on send and out on receive. Its capacity is
 * fixed at creation; capacity 0 is a rendezvous (Go's unbuffered channel): a send completes only when a
 * receiver has taken the element.
 *
 * Blocking calls take the channel first, then a context (NULL means weft_background(): never cancelled),
 * and block until they
 * complete, the channel is closed, or the context ends. If the context is already done when a call
 * starts, the call returns its error without touching the channel. A call that would block spins
 * briefly, then parks; cancelling the context wakes every thread blocked under it.
 *
 * Ownership of elements. weft copies elements by value (elem_size bytes, as memcpy). A send that returns
 * 0 has copied the element into the channel (or straight into a receiver); on any error the element was
 * not sent and stays the caller's. A receive that returns 0 has written one element to the caller's
 * buffer; on any error the buffer is untouched. Elements that are pointers to resources are the
 * application's to manage; an optional discard hook (weft_chan_opts.discard) hands back elements still
 * buffered when the channel is destroyed, so nothing is lost silently.
 *
 * Errors: WEFT_EINVAL (NULL channel or element pointer, element size 0, sizes that overflow),
 * WEFT_ENOMEM, WEFT_ECLOSED, WEFT_EFULL / WEFT_EEMPTY (a try-operation would block), WEFT_ECANCELED /
 * WEFT_EDEADLINE (the context ended), WEFT_ETIMEDOUT (an _until deadline passed).
 *
 * Thread safety: every function may be called from any thread, concurrently on the same channel, except
 * weft_chan_destroy(), which must not race with any other use of that channel. */
#ifndef WEFT_CHAN_H
#define WEFT_CHAN_H

#include "common.h"
#include "ctx.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_chan weft_chan;

/* ---- creation and destruction --------------------------------------------------------------------- */

typedef struct weft_chan_opts {
  size_t elem_size; /* bytes per element; must be > 0 */
  size_t capacity;  /* elements buffered; 0 = rendezvous. At most such that the buffer, capacity slots of
                     * elem_size rounded up to 8 plus 8 bytes each, stays within PTRDIFF_MAX / 2 bytes */
  /* Optional: called once for every element still buffered when the channel is destroyed, in FIFO
   * order, on the destroying thread, with a pointer to the element (valid during the call only). */
  weft_discard_fn discard;
  void *discard_arg;
} weft_chan_opts;
/* weft_chan_opts o = WEFT_CHAN_OPTS_INIT; o.elem_size = sizeof(item); o.capacity = 64; */
#define WEFT_CHAN_OPTS_INIT {0, 0, NULL, NULL}

/* Creates a channel of `capacity` elements of `elem_size` bytes and stores it in *out. Returns 0,
 * WEFT_EINVAL (out NULL, elem_size 0, a buffer over the bound given at weft_chan_opts.capacity; *out is
 * set to NULL when out is not NULL), WEFT_ENOMEM. The caller owns the channel and frees it with
 * weft_chan_destroy(). */
WEFT_API int weft_chan_create(size_t elem_size, size_t capacity, weft_chan **out);
/* As weft_chan_create(), with options (NULL opts gives WEFT_EINVAL). */
WEFT_API int weft_chan_create_opts(const weft_chan_opts *opts, weft_chan **out);

/* Destroys the channel. Elements still buffered are passed to the discard hook if one was given, else
 * dropped. A timer channel's timer is stopped. Returns 0; WEFT_EINVAL for NULL; WEFT_EBUSY, freeing
 * nothing, when a thread is blocked on the channel (a bug of the caller's, reported rather than
 * crashed on). Thread safety: no other thread may use the channel during or after the call. */
WEFT_API int weft_chan_destroy(weft_chan *ch);

/* ---- send and receive ----------------------------------------------------------------------------- */

/* Sends a copy of *elem, blocking while the channel is full (for capacity 0: until a receiver takes the
 * element). Returns 0 once sent; WEFT_ECLOSED if the channel is or becomes closed first;
 * WEFT_ECANCELED / WEFT_EDEADLINE if ctx ends first (also when it was done on entry); WEFT_EINVAL.
 * On error the element was not sent. Thread safety: any thread. */
WEFT_API int weft_chan_send(weft_chan *ch, weft_ctx *ctx, const void *elem);

/* Receives the oldest element into *elem, blocking while the channel is empty. After close, receives
 * keep returning buffered elements, then WEFT_ECLOSED. Returns 0; WEFT_ECLOSED; WEFT_ECANCELED /
 * WEFT_EDEADLINE if ctx ends first (no element is consumed); WEFT_EINVAL. Thread safety: any thread. */
WEFT_API int weft_chan_recv(weft_chan *ch, weft_ctx *ctx, void *elem);

/* As send / recv without a context, giving up at `deadline` (absolute CLOCK_MONOTONIC ns; WEFT_FOREVER
 * for none; a deadline already past makes one non-blocking attempt) with WEFT_ETIMEDOUT. */
WEFT_API int weft_chan_send_until(weft_chan *ch, const void *elem, int64_t deadline);
WEFT_API int weft_chan_recv_until(weft_chan *ch, void *elem, int64_t deadline);

/* Never block. try_send returns 0, WEFT_EFULL (no room; for capacity 0: no receiver waiting),
 * WEFT_ECLOSED, WEFT_EINVAL. try_recv returns 0, WEFT_EEMPTY (nothing buffered; for capacity 0: no
 * sender waiting), WEFT_ECLOSED (closed and drained), WEFT_EINVAL. A send or receive that another
 * thread is in the middle of may be reported as full / empty. Lock-free on buffered channels. */
WEFT_API int weft_chan_try_send(weft_chan *ch, const void *elem);
WEFT_API int weft_chan_try_recv(weft_chan *ch, void *elem);

/* Closes the channel: no more sends (they return WEFT_ECLOSED); every blocked sender and receiver wakes;
 * receivers drain what is buffered, then get WEFT_ECLOSED. Returns 0; WEFT_ECLOSED if it was already
 * closed (a second close is an error, never a crash); WEFT_EINVAL for NULL. Thread safety: any thread. */
WEFT_API int weft_chan_close(weft_chan *ch);

/* ---- a descriptor for event loops ---------------------------------------------------------------- */

/* Returns a file descriptor that is readable (POLLIN / EPOLLIN, level-triggered) exactly while a receive
 * would not block: an element is buffered, or the channel is closed (and, once drained, it stays
 * readable, as a receive then returns WEFT_ECLOSED at once). It stops being readable when a receive takes
 * the last element. So an event loop polls it and, when readable, drains with weft_chan_try_recv() until
 * WEFT_EEMPTY (or WEFT_ECLOSED); with epoll, register it level-triggered (the default); with EPOLLET,
 * drain until WEFT_EEMPTY on every event. Readiness may briefly trail the ring (a wake-up that finds
 * WEFT_EEMPTY is possible while another thread receives concurrently), never stick: once the channel is
 * empty and no operation is in progress, the descriptor is not readable.
 * Created on first use (an eventfd): a channel that never asks pays nothing on its send and receive path;
 * once it exists, each send and receive also updates it (a lock, and a system call only when readiness
 * changes: a loop that drains in batches sees about one write and one read per batch).
 * The descriptor is owned by the channel: do not read, write or close it; it stays the same for the
 * channel's life and is closed by weft_chan_destroy() (remove it from your poll set first: afterwards the
 * number may be reused by another open).
 * Returns the descriptor (>= 0); WEFT_EINVAL (NULL, or a capacity-0 channel: a rendezvous never buffers,
 * so there is no element to be readable for), WEFT_ESYS (eventfd failed: descriptor limit), WEFT_ENOMEM.
 * Thread safety: any thread; every call returns the same descriptor. */
WEFT_API int weft_chan_fd(weft_chan *ch);

/* ---- queries (snapshots: may be stale by the time they return; 0 / false for NULL) ---------------- */

WEFT_API size_t weft_chan_len(const weft_chan *ch);       /* elements buffered now */
WEFT_API size_t weft_chan_cap(const weft_chan *ch);       /* the capacity given at creation */
WEFT_API size_t weft_chan_elem_size(const weft_chan *ch); /* bytes per element */
WEFT_API bool weft_chan_closed(const weft_chan *ch);      /* true once weft_chan_close() was called */

/* Counters since creation. On buffered channels sends and recvs are read off the ring's own positions, so
 * keeping them costs nothing; the wait counters are kept on the blocking path only. */
struct weft_chan_stats {
  uint64_t sends;      /* elements sent (try, blocking and select alike) */
  uint64_t recvs;      /* elements received */
  uint64_t send_waits; /* times a sender had to park (queued as a waiter) */
  uint64_t recv_waits; /* times a receiver had to park */
};
/* Fills *out (as POSIX stat() fills a struct stat: the type is a struct tag of the function's name).
 * Returns 0, or WEFT_EINVAL for NULL arguments. Thread safety: any thread. */
WEFT_API int weft_chan_stats(const weft_chan *ch, struct weft_chan_stats *out);

/* ---- select --------------------------------------------------------------------------------------- */

typedef enum weft_select_op { WEFT_SELECT_RECV = 1, WEFT_SELECT_SEND = 2 } weft_select_op;

typedef struct weft_select_case {
  weft_chan *chan;   /* NULL: a disabled case, which never fires (Go's nil channel) */
  weft_select_op op; /* WEFT_SELECT_RECV or WEFT_SELECT_SEND */
  void *elem;      /* send: the element to copy in; recv: where to store it (NULL: discard it) */
  int err;         /* out, for the fired case: 0, or WEFT_ECLOSED (recv: closed and drained; send: closed) */
} weft_select_case;
#define WEFT_RECV_CASE(ch, p) ((weft_select_case){(ch), WEFT_SELECT_RECV, (void *)(p), 0})
#define WEFT_SEND_CASE(ch, p) ((weft_select_case){(ch), WEFT_SELECT_SEND, (void *)(p), 0})

/* Waits until one of the n cases can proceed, performs exactly that one and returns its index (>= 0);
 * cases[i].err says whether it completed (0) or found its channel closed (WEFT_ECLOSED; a closed channel
 * makes its case ready, as in Go). Among several ready cases one is chosen uniformly at random (as Go's
 * select: each call polls the cases in a fresh random order), so an always-ready case cannot starve
 * another. Elements of the cases that did not fire are untouched (not sent, buffers not written). Returns
 * WEFT_ECANCELED / WEFT_EDEADLINE when ctx ends first (also when done on entry); WEFT_EINVAL (cases NULL
 * with n > 0, n over 2^24, a bad op, a send case with a NULL elem); WEFT_ENOMEM (n > 16 needs a small
 * allocation). With no enabled case it waits for ctx alone. Thread safety: any thread; the same
 * channel may appear in several cases. */
WEFT_API int weft_select(weft_ctx *ctx, weft_select_case *cases, size_t n);
/* As weft_select() without a context, giving up at `deadline` with WEFT_ETIMEDOUT. */
WEFT_API int weft_select_until(weft_select_case *cases, size_t n, int64_t deadline);
/* Select with a default: never blocks; returns the fired index, or WEFT_EEMPTY when no case is ready; the
 * errors of weft_select() otherwise (WEFT_ENOMEM: n > 16 needs a small allocation for the poll order). */
WEFT_API int weft_try_select(weft_select_case *cases, size_t n);

/* ---- timer channels ------------------------------------------------------------------------------- */

/* Creates a channel (capacity 1, element int64_t) that receives weft_now() once, `duration` ns from now
 * (Go's time.After / time.NewTimer). The channel is never closed. A duration <= 0 fires at once. Timers run
 * on weft's timer thread (shared with context deadlines; no thread per timer). Returns 0, WEFT_EINVAL
 * (out NULL; duration WEFT_FOREVER), WEFT_ENOMEM. The caller destroys the channel with weft_chan_destroy(),
 * which also stops the timer. */
WEFT_API int weft_chan_after(int64_t duration, weft_chan **out);

/* Creates a ticker channel (capacity 1, element int64_t) that receives weft_now() every `period` ns (Go's
 * time.NewTicker). Ticks are dropped while the previous one is still unread, and a late tick does not
 * make later ones come early. Returns 0, WEFT_EINVAL (out NULL, period <= 0 or WEFT_FOREVER),
 * WEFT_ENOMEM. Destroy with weft_chan_destroy(). If re-arming a tick runs out of memory the ticker stops
 * and closes its channel: a reader receives the last tick sent, if unread, then WEFT_ECLOSED, so it never
 * waits forever for a tick that will not come. */
WEFT_API int weft_chan_tick(int64_t period, weft_chan **out);

/* Stops a timer or ticker channel: no value is sent after this call returns; a value already sent stays
 * readable. Returns 0 (also when already stopped or fired), WEFT_EINVAL for NULL or a channel that is not a
 * timer channel. Thread safety: any thread. */
WEFT_API int weft_chan_timer_stop(weft_chan *ch);

#ifdef __cplusplus
}
#endif
#endif
