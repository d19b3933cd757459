/* lib/uv/uv.c: the libuv adapter (weft/uv.h).
 *
 * Design notes.
 * - Job results: a completion hub (adapt/hub.c) whose wake is a write to the adapter's eventfd, which a
 *   uv_poll_t watches; its callback reads the eventfd (clearing it) and then drains the hub on the loop
 *   thread. A wake coalesces with others; the hub's queue is what carries each completion, so nothing is
 *   lost (hub.c says why; a push whose write comes after the loop's read leaves the eventfd readable, and
 *   the next callback finds the stack empty or not: both are fine).
 * - Why not uv_async_send: it marks the handle busy around its write, and the loop thread, woken by the
 *   write, spins and then yields until the sender clears the mark. When the woken loop thread shares a core
 *   with the sender — a pool worker that goes on spinning for its next job — that handshake costs several
 *   microseconds per wake (loop_offload, same processes alternating: 17-30 us per round trip with
 *   uv_async_send, 9-12 us with the eventfd; bench/README.md). `signaled` keeps uv_async_send's one good
 *   trait, one write per loop turn however many completions come. uv_queue_work's own workers do not mind:
 *   they park at once.
 * - The poll handle is referenced only while jobs are in flight, so an idle adapter does not keep the loop
 *   alive and a loop with work in flight does not exit under it (libuv's uv_queue_work requests behave the
 *   same).
 * - Close: the hub stops accepting; when the last job in flight has been delivered and no worker is still
 *   inside its write (hub.c, senders), the poll handle is uv_close'd; its close callback closes the eventfd,
 *   runs the user's close callback and frees the adapter. `finishing` makes that happen once, also when the
 *   close is requested from a result callback while the drain that called it is still running.
 * - Watches dup the context's eventfd: uv_poll_init refuses a descriptor the loop already polls
 *   (UV_EEXIST), and contexts derived without a cancellation source of their own share their parent's fd,
 *   so two watches of related contexts would otherwise collide. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "adapt/hub.h"
#include "weft/uv.h"

struct weft_uv {
  weft__hub hub;
  uv_loop_t *loop;
  uv_poll_t poll; /* on efd */
  int efd;
  _Atomic int signaled; /* efd was written since the loop last cleared this: further wakes need not */
  bool refd;
  bool finishing;
  weft_uv_close_fn close_cb;
  void *close_arg;
};

static void uv_wake(void *arg) {
  weft_uv *u = arg;
  if (atomic_exchange_explicit(&u->signaled, 1, memory_order_seq_cst)) return;
  uint64_t one = 1;
  /* Cannot fail but for a counter at its maximum, which leaves it readable anyway. */
  while (write(u->efd, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

static void sync_ref(weft_uv *u) {
  bool want = u->hub.inflight != 0 && !u->finishing;
  if (want == u->refd) return;
  u->refd = want;
  if (want)
    uv_ref((uv_handle_t *)&u->poll);
  else
    uv_unref((uv_handle_t *)&u->poll);
}

static void on_poll_closed(uv_handle_t *h) {
  weft_uv *u = h->data;
  close(u->efd);
  weft__hub_destroy(&u->hub);
  if (u->close_cb != NULL) u->close_cb(u, u->close_arg);
  free(u);
}

static void finish_close(weft_uv *u) {
  if (u->finishing) return;
  u->finishing = true;
  sync_ref(u);
  uv_close((uv_handle_t *)&u->poll, on_poll_closed);
}

static void on_poll(uv_poll_t *p, int status, int events) {
  weft_uv *u = p->data;
  if (u->finishing) return;
  uint64_t n;
  while (read(u->efd, &n, sizeof n) < 0 && errno == EINTR) { /* clears it; EAGAIN: already clear */
  }
  /* Cleared before the drain: a producer that finds it set pushed before this store, so before the drain's
   * exchange (both in the single total order of seq_cst operations), and the drain takes its record. */
  atomic_store_explicit(&u->signaled, 0, memory_order_seq_cst);
  bool done = weft__hub_drain(&u->hub);
  sync_ref(u);
  if (done) finish_close(u);
}

int weft_uv_init(uv_loop_t *loop, weft_uv **out) {
  if (out != NULL) *out = NULL;
  if (loop == NULL || out == NULL) return WEFT_EINVAL;
  weft_uv *u = calloc(1, sizeof *u);
  if (u == NULL) return WEFT_ENOMEM;
  weft__hub_init(&u->hub, uv_wake, u);
  u->loop = loop;
  u->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (u->efd < 0) {
    free(u);
    return WEFT_ESYS;
  }
  if (uv_poll_init(loop, &u->poll, u->efd) != 0) {
    close(u->efd);
    free(u);
    return WEFT_ESYS;
  }
  u->poll.data = u;
  if (uv_poll_start(&u->poll, UV_READABLE, on_poll) != 0) {
    u->finishing = true; /* registered with the loop: only uv_close gives it back */
    uv_close((uv_handle_t *)&u->poll, on_poll_closed);
    return WEFT_ESYS;
  }
  uv_unref((uv_handle_t *)&u->poll);
  *out = u;
  return 0;
}

int weft_uv_submit(weft_uv *u, weft_pool *p, weft_ctx *ctx, weft_job_fn fn, void *arg, weft_uv_result_fn cb,
                   void *cb_arg, weft_uv_job **job) {
  if (job != NULL) *job = NULL;
  if (u == NULL) return WEFT_EINVAL;
  weft__hreq *r;
  int rc = weft__hub_submit(&u->hub, p, ctx, fn, arg, cb, cb_arg, job != NULL ? &r : NULL);
  if (rc != 0) return rc;
  if (job != NULL) *job = (weft_uv_job *)r;
  sync_ref(u);
  return 0;
}

int weft_uv_job_cancel(weft_uv_job *job) { return weft__hub_cancel((weft__hreq *)job); }

int weft_uv_report(const weft_uv *u, weft_pool_report *rep) {
  if (u == NULL || rep == NULL) return WEFT_EINVAL;
  weft__hub_report(&u->hub, rep);
  return 0;
}

int weft_uv_close(weft_uv *u, bool cancel, weft_uv_close_fn close_cb, void *arg) {
  if (u == NULL) return WEFT_EINVAL;
  if (u->hub.closing) return WEFT_ESTATE;
  u->close_cb = close_cb;
  u->close_arg = arg;
  if (weft__hub_close(&u->hub, cancel)) finish_close(u);
  return 0;
}

/* ---- watches ------------------------------------------------------------------------------------ */

struct weft_uv_watch {
  uv_poll_t poll;
  weft_ctx *ctx;
  int fd; /* our dup of the context's eventfd */
  weft_uv_watch_fn cb;
  void *arg;
  bool closed;
};

static void on_watch_closed(uv_handle_t *h) {
  weft_uv_watch *w = h->data;
  close(w->fd);
  weft_ctx_release(w->ctx);
  free(w);
}

static void on_watch_poll(uv_poll_t *h, int status, int events) {
  (void)events;
  weft_uv_watch *w = h->data;
  if (w->closed) return;
  int err = weft_ctx_err(w->ctx);
  if (status == 0 && err == 0) return; /* not done: the eventfd is only readable once it is */
  uv_poll_stop(h);
  w->cb(w, status == 0 ? err : WEFT_ESYS, w->arg);
}

int weft_uv_watch_start(uv_loop_t *loop, weft_ctx *ctx, weft_uv_watch_fn cb, void *arg, weft_uv_watch **out) {
  if (out != NULL) *out = NULL;
  if (loop == NULL || ctx == NULL || cb == NULL || out == NULL) return WEFT_EINVAL;
  int fd = weft_ctx_fd(ctx);
  if (fd < 0) return fd;
  weft_uv_watch *w = calloc(1, sizeof *w);
  if (w == NULL) return WEFT_ENOMEM;
  w->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (w->fd < 0) {
    free(w);
    return WEFT_ESYS;
  }
  if (uv_poll_init(loop, &w->poll, w->fd) != 0) {
    close(w->fd);
    free(w);
    return WEFT_ESYS;
  }
  w->poll.data = w;
  w->ctx = weft_ctx_retain(ctx);
  w->cb = cb;
  w->arg = arg;
  if (uv_poll_start(&w->poll, UV_READABLE, on_watch_poll) != 0) {
    /* the handle is registered with the loop: it can only go through uv_close */
    w->closed = true;
    uv_close((uv_handle_t *)&w->poll, on_watch_closed);
    return WEFT_ESYS;
  }
  *out = w;
  return 0;
}

void weft_uv_watch_close(weft_uv_watch *w) {
  if (w == NULL || w->closed) return;
  w->closed = true;
  uv_close((uv_handle_t *)&w->poll, on_watch_closed);
}

/* ---- signals ------------------------------------------------------------------------------------ */

struct weft_uv_signal {
  uv_signal_t sig;
  weft_ctx *ctx;
  weft_cancel *cancel; /* the right to cancel ctx: the watcher's alone */
  bool stopped;
};

static void on_signal_closed(uv_handle_t *h) {
  weft_uv_signal *s = h->data;
  weft_ctx_end(s->cancel);
  free(s);
}

static void on_signal(uv_signal_t *h, int signum) {
  weft_uv_signal *s = h->data;
  weft_ctx_cancel_cause(s->cancel, WEFT_SIGNAL_CAUSE(signum));
}

int weft_uv_signal_ctx(uv_loop_t *loop, weft_ctx *parent, int signum, weft_ctx **out, weft_uv_signal **sig) {
  if (out != NULL) *out = NULL;
  if (sig != NULL) *sig = NULL;
  if (loop == NULL || parent == NULL || out == NULL || sig == NULL || signum <= 0) return WEFT_EINVAL;
  weft_uv_signal *s = calloc(1, sizeof *s);
  if (s == NULL) return WEFT_ENOMEM;
  int rc = weft_ctx_with_cancel(parent, &s->ctx, &s->cancel);
  if (rc != 0) {
    free(s);
    return rc;
  }
  if (uv_signal_init(loop, &s->sig) != 0) {
    weft_ctx_end(s->cancel);
    free(s);
    return WEFT_ESYS;
  }
  s->sig.data = s;
  uv_unref((uv_handle_t *)&s->sig);
  int urc = uv_signal_start(&s->sig, on_signal, signum);
  if (urc != 0) {
    s->stopped = true;
    uv_close((uv_handle_t *)&s->sig, on_signal_closed);
    return urc == UV_EINVAL ? WEFT_EINVAL : WEFT_ESYS;
  }
  *out = weft_ctx_retain(s->ctx);
  *sig = s;
  return 0;
}

void weft_uv_signal_stop(weft_uv_signal *s) {
  if (s == NULL || s->stopped) return;
  s->stopped = true;
  weft_ctx_cancel(s->cancel);
  uv_close((uv_handle_t *)&s->sig, on_signal_closed);
}
