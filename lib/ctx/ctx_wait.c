/* lib/ctx/ctx_wait.c: waiting on a context — blocking wait, sleep, the pollable fd, and after-funcs.
 *
 * Design notes (after-funcs).
 * - A registration is a cbnode plus state, shared by the context's list (or, once the context is done,
 *   the callback queue) and the caller's handle. It holds a reference to the context while pending.
 * - Whoever moves `state` away from PENDING owns the context reference: the callback thread (PENDING ->
 *   RUNNING, runs fn, releases) or weft_after_stop (PENDING -> STOPPED, unlinks the node if still on the
 *   context's list, releases). Only one can, so stop may be called any number of times. The node itself
 *   is freed when both the queue side and the handle (weft_after_free) are done with it (`nrefs`).
 * - On a context that can never be cancelled there is nothing to register: with no handle the call does
 *   nothing; with one, the record stands alone (no context, no queue side, no callback thread), only so
 *   that stop can report true once.
 * - Callbacks run on one callback thread, in the order their contexts were cancelled, never with a weft
 *   lock held. The thread is started on first registration so that cancel never has to start a thread.
 */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>

#include "ctx/ctx_impl.h"

int weft_ctx_wait_until(weft_ctx *ctx, int64_t deadline) {
  if (ctx == NULL) return WEFT_EINVAL;
  int err = weft_ctx_err(ctx);
  if (err != 0) return err;
  weft__waiter *w = weft__waiter_self();
  weft__waiter_arm(w, ctx);
  return weft__waiter_wait(w, ctx, deadline); /* nobody signals w: ctx error or timeout */
}

int weft_ctx_wait_for(weft_ctx *ctx, int64_t timeout) {
  return weft_ctx_wait_until(ctx, weft_deadline_in(timeout));
}

int weft_ctx_sleep(weft_ctx *ctx, int64_t duration) {
  if (ctx == NULL) return WEFT_EINVAL;
  int err = weft_ctx_err(ctx);
  if (err != 0 || duration <= 0) return err;
  int rc = weft_ctx_wait_until(ctx, weft_deadline_in(duration));
  return rc == WEFT_ETIMEDOUT ? 0 : rc;
}

/* ---- the pollable fd ----------------------------------------------------------------------------- */

static pthread_once_t never_once = PTHREAD_ONCE_INIT;
static int never_fd = -1;
static void never_init(void) { never_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

int weft_ctx_fd(weft_ctx *ctx) {
  if (ctx == NULL) return WEFT_EINVAL;
  weft_ctx *s = weft__src(ctx);
  if (s->kind == WEFT__K_ROOT) {
    pthread_once(&never_once, never_init);
    return never_fd >= 0 ? never_fd : WEFT_ESYS;
  }
  weft__lock(s);
  weft__ext *e = weft__ext_get(s);
  if (e == NULL) {
    weft__unlock(s);
    return WEFT_ENOMEM;
  }
  if (e->efd < 0) {
    int fd = eventfd(atomic_load(&s->err) != 0 ? 1 : 0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) {
      weft__unlock(s);
      return WEFT_ESYS;
    }
    e->efd = fd;
  }
  int fd = e->efd;
  weft__unlock(s);
  return fd;
}

/* ---- after-funcs --------------------------------------------------------------------------------- */

enum { AF_PENDING, AF_RUNNING, AF_STOPPED, AF_DONE };

struct weft_after {
  weft__cbnode node; /* first: the callback thread turns a cbnode back into its weft_after */
  void (*fn)(void *);
  void *arg;
  _Atomic int state;
  _Atomic int nrefs;
};

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  weft__cbnode *head, **tail;
  int started; /* 1 running, -1 failed to start */
} Q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, &Q.head, 0};

static void after_unref(weft_after *a) {
  if (atomic_fetch_sub(&a->nrefs, 1) == 1) free(a);
}

static void *callback_main(void *arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&Q.mu);
    while (Q.head == NULL) pthread_cond_wait(&Q.cv, &Q.mu);
    weft__cbnode *list = Q.head;
    Q.head = NULL;
    Q.tail = &Q.head;
    pthread_mutex_unlock(&Q.mu);
    while (list) {
      weft_after *a = (weft_after *)list;
      list = list->next;
      int expect = AF_PENDING;
      if (atomic_compare_exchange_strong(&a->state, &expect, AF_RUNNING)) {
        a->fn(a->arg);
        weft_ctx *owner = a->node.owner;
        atomic_store(&a->state, AF_DONE);
        weft_ctx_release(owner);
      }
      after_unref(a);
    }
  }
  return NULL;
}

static int callbacks_start(void) {
  pthread_mutex_lock(&Q.mu);
  if (Q.started == 0) {
    pthread_t th;
    Q.started = weft__runtime_thread(&th, callback_main, NULL) == 0 ? 1 : -1;
    if (Q.started == 1) pthread_detach(th);
  }
  int ok = Q.started == 1;
  pthread_mutex_unlock(&Q.mu);
  return ok ? 0 : WEFT_ESYS;
}

void weft__after_fire(weft__cbnode *list) {
  /* `list` is in reverse order of collection; queue it in collection order. */
  weft__cbnode *rev = NULL;
  while (list) {
    weft__cbnode *n = list;
    list = n->next;
    n->next = rev;
    rev = n;
  }
  pthread_mutex_lock(&Q.mu);
  *Q.tail = rev;
  while (*Q.tail) Q.tail = &(*Q.tail)->next;
  pthread_cond_signal(&Q.cv);
  pthread_mutex_unlock(&Q.mu);
}

int weft_ctx_after_func(weft_ctx *ctx, void (*fn)(void *), void *arg, weft_after **handle) {
  if (handle) *handle = NULL;
  if (ctx == NULL || fn == NULL) return WEFT_EINVAL;
  weft_ctx *s = weft__src(ctx);
  if (s->kind == WEFT__K_ROOT) { /* never done: fn never runs */
    if (handle == NULL) return 0;
    weft_after *a = calloc(1, sizeof *a);
    if (a == NULL) return WEFT_ENOMEM;
    a->fn = fn;
    a->arg = arg;
    a->node.type = WEFT__CB_AFTER;
    atomic_store(&a->state, AF_PENDING);
    atomic_store(&a->nrefs, 1);
    *handle = a;
    return 0;
  }
  int rc = callbacks_start();
  if (rc != 0) return rc;
  weft_after *a = calloc(1, sizeof *a);
  if (a == NULL) return WEFT_ENOMEM;
  a->fn = fn;
  a->arg = arg;
  a->node.type = WEFT__CB_AFTER;
  a->node.owner = weft_ctx_retain(s);
  atomic_store(&a->state, AF_PENDING);
  atomic_store(&a->nrefs, handle ? 2 : 1);
  weft__lock(s);
  weft__ext *e = weft__ext_get(s);
  if (e == NULL) {
    weft__unlock(s);
    weft_ctx_release(s);
    free(a);
    return WEFT_ENOMEM;
  }
  bool done = atomic_load(&s->err) != 0;
  if (!done) {
    a->node.next = e->cbs;
    if (a->node.next) a->node.next->pprev = &a->node.next;
    e->cbs = &a->node;
    a->node.pprev = &e->cbs;
  }
  weft__unlock(s);
  if (done) {
    a->node.next = NULL;
    weft__after_fire(&a->node);
  }
  if (handle) *handle = a;
  return 0;
}

bool weft_after_stop(weft_after *a) {
  if (a == NULL) return false;
  int expect = AF_PENDING;
  bool stopped = atomic_compare_exchange_strong(&a->state, &expect, AF_STOPPED);
  if (stopped && a->node.owner != NULL) {
    weft_ctx *s = a->node.owner;
    bool unlinked = false;
    weft__lock(s);
    if (a->node.pprev != NULL) { /* still on the context's list: the queue side never saw it */
      *a->node.pprev = a->node.next;
      if (a->node.next) a->node.next->pprev = a->node.pprev;
      a->node.pprev = NULL;
      unlinked = true;
    }
    weft__unlock(s);
    if (unlinked) after_unref(a);
    weft_ctx_release(s);
  }
  return stopped;
}

void weft_after_free(weft_after *a) {
  if (a != NULL) after_unref(a);
}

void weft__ext_free(weft__ext *e) {
  if (e->efd >= 0) close(e->efd);
  free(e->parents);
  free(e->regs);
  free(e);
}
