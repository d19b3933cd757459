/* lib/group.c: error groups (Go's errgroup) on threads of their own; see weft/group.h for why.
 *
 * Design notes. Everything shared is under `mu`. `active` counts functions from the moment go() reserves
 * their place under the limit until they return (Go's token in the semaphore channel); go() waits on
 * `slot` while active >= limit, and a returning function signals it. The first non-zero result is kept in
 * `first_err` for good, as Go's errOnce, and cancels the group's context with it as the cause. Threads are
 * joined by wait(): their handles are kept in a growing array; several waiters may run at once, so each
 * takes the next unjoined handle (`njoining`) and counts it in `njoined` once joined, and a waiter with
 * nothing left to join sleeps on `joined` until njoined == nthreads. Functions may call go() meanwhile,
 * which only appends. When every handle is joined and nobody joins, the array is reused from its start,
 * so a group used again after wait() does not grow without bound. */
#include <pthread.h>
#include <string.h>

#include "common/internal.h"
#include "weft/group.h"

typedef struct go_arg {
  weft_group *g;
  weft_job_fn fn;
  void *arg;
} go_arg;

struct weft_group {
  weft_ctx *ctx;
  weft_cancel *cancel; /* the group's alone: its functions get only ctx */
  pthread_mutex_t mu;
  pthread_cond_t slot;   /* active fell below the limit, or the limit changed */
  pthread_cond_t joined; /* njoined grew */
  int64_t limit;         /* < 0: no limit */
  size_t active;
  unsigned slot_waiters;
  pthread_t *threads;
  size_t nthreads, njoining, njoined, cap;
  int first_err;
};

int weft_group_create(weft_ctx *parent, size_t limit, weft_group **out) {
  if (out == NULL) return WEFT_EINVAL;
  *out = NULL;
  if (limit > (size_t)INT64_MAX) return WEFT_EINVAL;
  weft_group *g = calloc(1, sizeof *g);
  if (g == NULL) return WEFT_ENOMEM;
  int rc = weft_ctx_with_cancel(parent ? parent : weft_background(), &g->ctx, &g->cancel);
  if (rc != 0) {
    free(g);
    return rc;
  }
  g->limit = limit == 0 || limit > (size_t)INT64_MAX ? -1 : (int64_t)limit;
  WEFT__ASSERT(pthread_mutex_init(&g->mu, NULL) == 0);
  WEFT__ASSERT(pthread_cond_init(&g->slot, NULL) == 0);
  WEFT__ASSERT(pthread_cond_init(&g->joined, NULL) == 0);
  *out = g;
  return 0;
}

weft_ctx *weft_group_ctx(weft_group *g) { return g ? g->ctx : NULL; }

/* Gives a reserved place back; mu held. */
static void slot_put(weft_group *g) {
  g->active--;
  if (g->slot_waiters != 0) pthread_cond_signal(&g->slot);
}

static void *go_main(void *a) {
  go_arg ga = *(go_arg *)a;
  free(a);
  weft_group *g = ga.g;
  int rc = ga.fn(g->ctx, ga.arg);
  bool first = false;
  pthread_mutex_lock(&g->mu);
  if (rc != 0 && g->first_err == 0) {
    g->first_err = rc;
    first = true;
  }
  pthread_mutex_unlock(&g->mu);
  /* Cancel before the place is given back, as Go does: a wait() that returns has seen the cancel. */
  if (first) weft_ctx_cancel_cause(g->cancel, rc < 0 ? rc : WEFT_ECANCELED);
  pthread_mutex_lock(&g->mu);
  slot_put(g);
  pthread_mutex_unlock(&g->mu);
  return NULL;
}

static int go(weft_group *g, weft_job_fn fn, void *arg, bool nowait) {
  if (g == NULL || fn == NULL) return WEFT_EINVAL;
  go_arg *ga = malloc(sizeof *ga);
  if (ga == NULL) return WEFT_ENOMEM;
  int rc = 0;
  pthread_mutex_lock(&g->mu);
  /* A limit of 0 lets nothing start, ever: Go's Go would block forever; we say so instead. */
  while (g->limit >= 0 && g->active >= (uint64_t)g->limit) {
    if (nowait || g->limit == 0) {
      rc = WEFT_EFULL;
      goto fail;
    }
    g->slot_waiters++;
    pthread_cond_wait(&g->slot, &g->mu);
    g->slot_waiters--;
  }
  g->active++;
  if (g->nthreads == g->cap) {
    size_t nc = g->cap ? g->cap * 2 : 8;
    pthread_t *t = realloc(g->threads, nc * sizeof *t);
    if (t == NULL) {
      rc = WEFT_ENOMEM;
      goto fail_slot;
    }
    g->threads = t;
    g->cap = nc;
  }
  *ga = (go_arg){g, fn, arg};
  if ((rc = weft__runtime_thread(&g->threads[g->nthreads], go_main, ga)) != 0) goto fail_slot;
  g->nthreads++;
  pthread_mutex_unlock(&g->mu);
  return 0;
fail_slot:
  slot_put(g);
fail:
  pthread_mutex_unlock(&g->mu);
  free(ga);
  return rc;
}

int weft_group_go(weft_group *g, weft_job_fn fn, void *arg) { return go(g, fn, arg, false); }
int weft_group_try_go(weft_group *g, weft_job_fn fn, void *arg) { return go(g, fn, arg, true); }

int weft_group_wait(weft_group *g) {
  if (g == NULL) return WEFT_EINVAL;
  pthread_mutex_lock(&g->mu);
  /* Group functions may still call go() while we join: keep joining until every handle is joined. */
  while (g->njoined != g->nthreads) {
    if (g->njoining == g->nthreads) {
      pthread_cond_wait(&g->joined, &g->mu); /* another waiter joins the last ones */
      continue;
    }
    pthread_t t = g->threads[g->njoining++];
    pthread_mutex_unlock(&g->mu);
    WEFT__ASSERT(pthread_join(t, NULL) == 0);
    pthread_mutex_lock(&g->mu);
    g->njoined++;
    pthread_cond_broadcast(&g->joined);
  }
  g->nthreads = g->njoining = g->njoined = 0;
  int rc = g->first_err;
  pthread_mutex_unlock(&g->mu);
  weft_ctx_cancel(g->cancel); /* as Go's Wait: idempotent, the first error's cause stays */
  return rc;
}

void weft_group_destroy(weft_group *g) {
  if (g == NULL) return;
  weft_group_wait(g);
  weft_ctx_end(g->cancel);
  free(g->threads);
  pthread_cond_destroy(&g->joined);
  pthread_cond_destroy(&g->slot);
  pthread_mutex_destroy(&g->mu);
  free(g);
}

int weft_group_set_limit(weft_group *g, int64_t n) {
  if (g == NULL) return WEFT_EINVAL;
  pthread_mutex_lock(&g->mu);
  /* As Go: removing the limit is always allowed; setting one while functions are active is not. */
  int rc = n >= 0 && g->active != 0 ? WEFT_EBUSY : 0;
  if (rc == 0) {
    g->limit = n < 0 ? -1 : n;
    pthread_cond_broadcast(&g->slot);
  }
  pthread_mutex_unlock(&g->mu);
  return rc;
}
