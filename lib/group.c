/* lib/group.c: error groups (Go's errgroup) on threads of their own; see weft/group.h for why.
 *
 * Design notes. go() takes a slot of the limit semaphore (when there is a limit), then starts a thread
 * that runs fn and gives the slot back. The first non-zero result is kept under `mu` and cancels the
 * group's context with it as the cause. Threads are joined by wait(): their handles are kept in a growing
 * array under `mu`. wait() joins them in order until none is left (functions may call go() meanwhile),
 * then sets `closed` under `mu`, after which go() fails with WEFT_ESTATE. */
#include <pthread.h>
#include <string.h>

#include "internal.h"

typedef struct go_arg {
  weft_group *g;
  weft_job_fn fn;
  void *arg;
} go_arg;

struct weft_group {
  weft_ctx *ctx;
  weft_sem *sem; /* NULL: no limit */
  pthread_mutex_t mu;
  pthread_t *threads;
  size_t nthreads, cap;
  int first_err;
  bool closed, waited;
};

int weft_group_create(weft_ctx *parent, size_t limit, weft_group **out) {
  if (out == NULL) return WEFT_EINVAL;
  *out = NULL;
  if (limit > (size_t)INT64_MAX) return WEFT_EINVAL; /* the limit is a semaphore's int64_t size */
  weft_group *g = calloc(1, sizeof *g);
  if (g == NULL) return WEFT_ENOMEM;
  int rc = weft_ctx_with_cancel(parent ? parent : weft_background(), &g->ctx);
  if (rc != 0) goto fail1;
  if (limit > 0 && (rc = weft_sem_create((int64_t)limit, &g->sem)) != 0) goto fail2;
  WEFT__ASSERT(pthread_mutex_init(&g->mu, NULL) == 0);
  *out = g;
  return 0;
fail2:
  weft_ctx_end(g->ctx);
fail1:
  free(g);
  return rc;
}

weft_ctx *weft_group_ctx(weft_group *g) { return g ? g->ctx : NULL; }

static void *go_main(void *a) {
  go_arg ga = *(go_arg *)a;
  free(a);
  weft_group *g = ga.g;
  int rc = ga.fn(g->ctx, ga.arg);
  if (rc != 0) {
    pthread_mutex_lock(&g->mu);
    bool first = g->first_err == 0;
    if (first) g->first_err = rc;
    pthread_mutex_unlock(&g->mu);
    if (first) weft_ctx_cancel_cause(g->ctx, rc < 0 ? rc : WEFT_ECANCELED);
  }
  if (g->sem) weft_sem_release(g->sem, 1);
  return NULL;
}

static int go(weft_group *g, weft_job_fn fn, void *arg, bool nowait) {
  if (g == NULL || fn == NULL) return WEFT_EINVAL;
  if (g->sem) {
    int rc = nowait ? weft_sem_try_acquire(g->sem, 1) : weft_sem_acquire(g->sem, NULL, 1);
    if (rc != 0) return rc;
  }
  int rc = WEFT_ESYS;
  go_arg *ga = malloc(sizeof *ga);
  pthread_mutex_lock(&g->mu);
  if (g->closed) {
    rc = WEFT_ESTATE;
    goto fail;
  }
  if (ga == NULL) {
    rc = WEFT_ENOMEM;
    goto fail;
  }
  if (g->nthreads == g->cap) {
    size_t nc = g->cap ? g->cap * 2 : 8;
    pthread_t *t = realloc(g->threads, nc * sizeof *t);
    if (t == NULL) {
      rc = WEFT_ENOMEM;
      goto fail;
    }
    g->threads = t;
    g->cap = nc;
  }
  *ga = (go_arg){g, fn, arg};
  if (weft__runtime_thread(&g->threads[g->nthreads], go_main, ga) != 0) goto fail;
  g->nthreads++;
  pthread_mutex_unlock(&g->mu);
  return 0;
fail:
  pthread_mutex_unlock(&g->mu);
  free(ga);
  if (g->sem) weft_sem_release(g->sem, 1);
  return rc;
}

int weft_group_go(weft_group *g, weft_job_fn fn, void *arg) { return go(g, fn, arg, false); }
int weft_group_try_go(weft_group *g, weft_job_fn fn, void *arg) { return go(g, fn, arg, true); }

int weft_group_wait(weft_group *g) {
  if (g == NULL) return WEFT_EINVAL;
  /* Group functions may still call go() while we join: keep joining until none is left, then close. */
  for (size_t i = 0;; i++) {
    pthread_mutex_lock(&g->mu);
    if (g->closed || i == g->nthreads) {
      bool first = !g->closed;
      g->closed = true;
      pthread_mutex_unlock(&g->mu);
      if (first) weft_ctx_cancel(g->ctx);
      break;
    }
    pthread_t t = g->threads[i];
    pthread_mutex_unlock(&g->mu);
    WEFT__ASSERT(pthread_join(t, NULL) == 0);
  }
  pthread_mutex_lock(&g->mu);
  int rc = g->first_err;
  pthread_mutex_unlock(&g->mu);
  return rc;
}

void weft_group_destroy(weft_group *g) {
  if (g == NULL) return;
  weft_group_wait(g);
  weft_ctx_end(g->ctx);
  weft_sem_destroy(g->sem);
  free(g->threads);
  pthread_mutex_destroy(&g->mu);
  free(g);
}
