/* lib/ctx/ctx_watch.c: watchers — the end of many contexts reported through one descriptor and a queue.
 *
 * Design notes.
 * - Why. weft_ctx_fd() costs an eventfd per cancellation source; 100k in-flight requests would need 100k
 *   descriptors (past the usual limit of 1024) and a poll set as large. A watcher needs one descriptor:
 *   each watch is an after-func (no descriptor; the context keeps a list of them) whose callback, on weft's
 *   callback thread, moves the watch's node from the `armed` list to the tail of the `queue` and makes the
 *   eventfd readable when the queue was empty. weft_watcher_take() pops from the head and makes the eventfd
 *   unreadable when the queue becomes empty. Both happen under `mu`, with `queued` mirroring "queue
 *   non-empty" into the eventfd's counter (0 or 1), so the descriptor is level-triggered and exact.
 * - Exactly once. A node is in exactly one place: armed (registered, not fired), queued (fired, not
 *   taken), or freed. The callback runs at most once (after-func), remove frees only a node whose
 *   after-func it stopped (weft_after_stop returned true: the callback will never run), take frees only a
 *   node it popped. remove calls weft_after_stop under `mu`: the callback may be waiting for `mu` then,
 *   but weft_after_stop never waits for a running callback, and the callback holds no weft lock while it
 *   waits, so there is no cycle.
 * - The node reads the context's error and cause in the callback, while the after-func's reference keeps
 *   the context alive; it keeps no reference after that.
 * - Destroy stops every armed node it can; a node whose callback is already running (stop returned false)
 *   is waited for until it reached the queue, then everything queued is freed.
 * - Lock order: mu, then (inside weft_after_stop) the context's locks. The callback takes mu alone.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/internal.h"
#include "weft/ctx.h"

struct weft_watch {
  weft_watcher *w;
  weft_ctx *ctx; /* borrowed from the after-func's reference; read only in the callback */
  void *tag;
  weft_after *after;
  int err, cause;
  bool fired;                    /* under w->mu */
  struct weft_watch *prev, *next; /* armed: doubly linked; queue: next only */
};

struct weft_watcher {
  pthread_mutex_t mu;
  int efd;
  weft_watch armed;               /* sentinel of the armed list */
  weft_watch *qhead, **qtail;     /* fired, not taken, FIFO */
  size_t narmed, nqueued;         /* under mu */
};

static void efd_write(int fd) {
  uint64_t one = 1;
  while (write(fd, &one, sizeof one) < 0 && errno == EINTR) {
  }
}
static void efd_read(int fd) {
  uint64_t v;
  while (read(fd, &v, sizeof v) < 0 && errno == EINTR) {
  }
}

static void armed_unlink(weft_watcher *w, weft_watch *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->prev = n->next = NULL;
  w->narmed--;
}

static void node_free(weft_watch *n) {
  weft_after_free(n->after);
  free(n);
}

int weft_watcher_create(weft_watcher **out) {
  if (out == NULL) return WEFT_EINVAL;
  *out = NULL;
  weft_watcher *w = calloc(1, sizeof *w);
  if (w == NULL) return WEFT_ENOMEM;
  w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (w->efd < 0) {
    int e = errno;
    free(w);
    return e == ENOMEM ? WEFT_ENOMEM : WEFT_ESYS;
  }
  WEFT__ASSERT(pthread_mutex_init(&w->mu, NULL) == 0);
  w->armed.next = w->armed.prev = &w->armed;
  w->qtail = &w->qhead;
  *out = w;
  return 0;
}

/* The after-func: the context is done. */
static void watch_fired(void *arg) {
  weft_watch *n = arg;
  weft_watcher *w = n->w;
  n->err = weft_ctx_err(n->ctx);
  n->cause = weft_ctx_cause(n->ctx);
  n->ctx = NULL;
  pthread_mutex_lock(&w->mu);
  armed_unlink(w, n);
  n->fired = true;
  n->next = NULL;
  *w->qtail = n;
  w->qtail = &n->next;
  if (w->nqueued++ == 0) efd_write(w->efd);
  pthread_mutex_unlock(&w->mu);
}

int weft_watcher_add(weft_watcher *w, weft_ctx *ctx, void *tag, weft_watch **handle) {
  if (handle != NULL) *handle = NULL;
  if (w == NULL || ctx == NULL) return WEFT_EINVAL;
  weft_watch *n = calloc(1, sizeof *n);
  if (n == NULL) return WEFT_ENOMEM;
  n->w = w;
  n->ctx = ctx;
  n->tag = tag;
  /* Linked before registering: the callback may run at once (ctx done already) and unlinks it. */
  pthread_mutex_lock(&w->mu);
  n->next = &w->armed;
  n->prev = w->armed.prev;
  n->prev->next = n;
  w->armed.prev = n;
  w->narmed++;
  /* Registered under mu, so the callback (which takes mu) cannot free or move the node before n->after
   * is stored. */
  int rc = weft_ctx_after_func(ctx, watch_fired, n, &n->after);
  if (rc != 0) armed_unlink(w, n);
  pthread_mutex_unlock(&w->mu);
  if (rc != 0) {
    free(n);
    return rc;
  }
  if (handle != NULL) *handle = n;
  return 0;
}

int weft_watcher_remove(weft_watcher *w, weft_watch *n) {
  if (w == NULL || n == NULL || n->w != w) return WEFT_EINVAL;
  pthread_mutex_lock(&w->mu);
  bool stopped = !n->fired && weft_after_stop(n->after);
  if (stopped) armed_unlink(w, n);
  pthread_mutex_unlock(&w->mu);
  if (!stopped) return WEFT_ESTATE; /* fired, or firing: its event comes through take */
  node_free(n);
  return 0;
}

int weft_watcher_take(weft_watcher *w, struct weft_watch_event *out, size_t max) {
  if (w == NULL || (out == NULL && max > 0)) return WEFT_EINVAL;
  if (max > INT_MAX) max = INT_MAX;
  weft_watch *got = NULL;
  size_t k = 0;
  pthread_mutex_lock(&w->mu);
  while (k < max && w->qhead != NULL) {
    weft_watch *n = w->qhead;
    w->qhead = n->next;
    out[k++] = (struct weft_watch_event){n->tag, n->err, n->cause};
    n->next = got; /* freed after unlocking */
    got = n;
  }
  if (w->qhead == NULL) w->qtail = &w->qhead;
  if (k > 0) {
    w->nqueued -= k;
    if (w->nqueued == 0) efd_read(w->efd);
  }
  pthread_mutex_unlock(&w->mu);
  while (got != NULL) {
    weft_watch *n = got;
    got = n->next;
    node_free(n);
  }
  return (int)k;
}

int weft_watcher_fd(weft_watcher *w) { return w == NULL ? WEFT_EINVAL : w->efd; }

size_t weft_watcher_pending(weft_watcher *w) {
  if (w == NULL) return 0;
  pthread_mutex_lock(&w->mu);
  size_t n = w->narmed + w->nqueued;
  pthread_mutex_unlock(&w->mu);
  return n;
}

void weft_watcher_destroy(weft_watcher *w) {
  if (w == NULL) return;
  weft_watch *stopped = NULL;
  pthread_mutex_lock(&w->mu);
  for (weft_watch *n = w->armed.next, *next; n != &w->armed; n = next) {
    next = n->next;
    if (weft_after_stop(n->after)) {
      armed_unlink(w, n);
      n->next = stopped;
      stopped = n;
    }
  }
  /* What is left armed is firing right now: wait until each callback has queued its node. */
  while (w->narmed > 0) {
    pthread_mutex_unlock(&w->mu);
    sched_yield();
    pthread_mutex_lock(&w->mu);
  }
  weft_watch *q = w->qhead;
  w->qhead = NULL;
  pthread_mutex_unlock(&w->mu);
  while (stopped != NULL) {
    weft_watch *n = stopped;
    stopped = n->next;
    node_free(n);
  }
  while (q != NULL) {
    weft_watch *n = q;
    q = n->next;
    node_free(n);
  }
  close(w->efd);
  pthread_mutex_destroy(&w->mu);
  free(w);
}
