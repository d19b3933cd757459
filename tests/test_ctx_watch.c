/* Watchers: the end of many contexts through one descriptor and a queue. Events carry tag, error and
 * cause; the descriptor is level-triggered; remove before and after firing; contexts done already or never
 * cancellable; bad input; destroy with watches armed and events queued (nothing leaks: ASan); and 100k
 * contexts ended by cancel, by their parents, by deadlines, some removed, drained by a poll loop on
 * another thread: each reported exactly once, a removed one never. */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "weft_test.h"

static bool readable(int fd, int ms) {
  struct pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, ms) == 1;
}

static int tags[8];

WEFT_TEST(ctx_watch, events_tag_err_cause_and_level) {
  size_t live = weft_ctx_live_count();
  weft_watcher *w;
  cr_assert_eq(weft_watcher_create(&w), 0);
  int fd = weft_watcher_fd(w);
  cr_assert_geq(fd, 0);
  weft_ctx *a, *b, *c;
  weft_cancel *ka, *kb, *kc;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &a, &ka), 0);
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &c, &kc), 0);
  cr_assert_eq(weft_watcher_add(w, a, &tags[0], NULL), 0);
  cr_assert_eq(weft_watcher_add(w, c, &tags[2], NULL), 0);
  cr_assert_eq(weft_watcher_pending(w), 2);
  cr_assert(!readable(fd, 0));
  weft_ctx_cancel_cause(ka, -4242);
  cr_assert(readable(fd, 10000));
  cr_assert(readable(fd, 0), "level: stays readable until taken");
  struct weft_watch_event ev[4];
  cr_assert_eq(weft_watcher_take(w, ev, 4), 1);
  cr_assert_eq(ev[0].tag, &tags[0]);
  cr_assert_eq(ev[0].err, WEFT_ECANCELED);
  cr_assert_eq(ev[0].cause, -4242);
  cr_assert(!readable(fd, 0), "taken: not readable");
  cr_assert_eq(weft_ctx_with_timeout(weft_background(), WEFT_MS(5), &b, &kb), 0);
  cr_assert_eq(weft_watcher_add(w, b, &tags[1], NULL), 0);
  cr_assert(readable(fd, 10000), "b's deadline comes");
  cr_assert_eq(weft_watcher_take(w, &ev[1], 3), 1);
  cr_assert_eq(ev[1].tag, &tags[1]);
  cr_assert_eq(ev[1].err, WEFT_EDEADLINE);
  cr_assert(!readable(fd, 0), "taken: not readable");
  cr_assert_eq(weft_watcher_take(w, ev, 4), 0);
  cr_assert_eq(weft_watcher_pending(w), 1);
  weft_ctx_end(ka);
  weft_ctx_end(kb);
  weft_ctx_end(kc); /* c: cancel and release; its event is queued */
  cr_assert(readable(fd, 10000));
  cr_assert_eq(weft_watcher_take(w, ev, 4), 1);
  cr_assert_eq(ev[0].tag, &tags[2]);
  cr_assert_eq(weft_watcher_pending(w), 0);
  weft_watcher_destroy(w);
  for (int i = 0; i < 5000 && weft_ctx_live_count() != live; i++) usleep(1000);
  cr_assert_eq(weft_ctx_live_count(), live, "the watches hold no context after firing");
}

WEFT_TEST(ctx_watch, done_already_and_never_cancellable) {
  weft_watcher *w;
  cr_assert_eq(weft_watcher_create(&w), 0);
  weft_ctx *a;
  weft_cancel *ka;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &a, &ka), 0);
  weft_ctx_cancel(ka);
  cr_assert_eq(weft_watcher_add(w, a, &tags[0], NULL), 0);
  cr_assert_eq(weft_watcher_add(w, weft_background(), &tags[1], NULL), 0);
  cr_assert(readable(weft_watcher_fd(w), 10000));
  struct weft_watch_event ev[2];
  cr_assert_eq(weft_watcher_take(w, ev, 2), 1);
  cr_assert_eq(ev[0].tag, &tags[0]);
  cr_assert_eq(weft_watcher_pending(w), 1, "the background context stays watched, never reported");
  weft_ctx_end(ka);
  weft_watcher_destroy(w);
}

WEFT_TEST(ctx_watch, remove_before_and_after_firing) {
  weft_watcher *w;
  cr_assert_eq(weft_watcher_create(&w), 0);
  weft_ctx *a, *b;
  weft_cancel *ka, *kb;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &a, &ka), 0);
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &b, &kb), 0);
  weft_watch *ha, *hb;
  cr_assert_eq(weft_watcher_add(w, a, &tags[0], &ha), 0);
  cr_assert_eq(weft_watcher_add(w, b, &tags[1], &hb), 0);
  cr_assert_eq(weft_watcher_remove(w, ha), 0, "removed before firing");
  weft_ctx_cancel(ka);
  weft_ctx_cancel(kb);
  cr_assert(readable(weft_watcher_fd(w), 10000));
  usleep(20000); /* a's event would have arrived by now too, were it coming */
  cr_assert_eq(weft_watcher_remove(w, hb), WEFT_ESTATE, "fired: too late to remove");
  struct weft_watch_event ev[4];
  cr_assert_eq(weft_watcher_take(w, ev, 4), 1, "only b is reported");
  cr_assert_eq(ev[0].tag, &tags[1]);
  cr_assert_eq(weft_watcher_pending(w), 0);
  weft_ctx_end(ka);
  weft_ctx_end(kb);
  weft_watcher_destroy(w);
}

WEFT_TEST(ctx_watch, bad_input) {
  cr_assert_eq(weft_watcher_create(NULL), WEFT_EINVAL);
  weft_watcher *w;
  cr_assert_eq(weft_watcher_create(&w), 0);
  weft_watch *h = (weft_watch *)&h;
  cr_assert_eq(weft_watcher_add(NULL, weft_background(), NULL, &h), WEFT_EINVAL);
  cr_assert_null(h);
  cr_assert_eq(weft_watcher_add(w, NULL, NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_watcher_remove(w, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_watcher_remove(NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_watcher_take(NULL, NULL, 0), WEFT_EINVAL);
  cr_assert_eq(weft_watcher_take(w, NULL, 1), WEFT_EINVAL);
  cr_assert_eq(weft_watcher_take(w, NULL, 0), 0);
  cr_assert_eq(weft_watcher_fd(NULL), WEFT_EINVAL);
  cr_assert_eq(weft_watcher_pending(NULL), 0);
  weft_watcher_destroy(NULL);
  weft_watcher_destroy(w);
}

/* Destroy with watches armed (their contexts live on, released by destroy's stop) and events queued. */
WEFT_TEST(ctx_watch, destroy_with_armed_and_queued) {
  size_t live = weft_ctx_live_count();
  weft_watcher *w;
  cr_assert_eq(weft_watcher_create(&w), 0);
  weft_ctx *c[6];
  weft_cancel *k[6];
  for (int i = 0; i < 6; i++) {
    cr_assert_eq(weft_ctx_with_cancel(weft_background(), &c[i], &k[i]), 0);
    cr_assert_eq(weft_watcher_add(w, c[i], &tags[i], NULL), 0);
  }
  for (int i = 0; i < 3; i++) weft_ctx_cancel(k[i]);
  cr_assert(readable(weft_watcher_fd(w), 10000));
  usleep(20000); /* (pending counts armed and queued alike: 6 either way) */
  cr_assert_eq(weft_watcher_pending(w), 6);
  weft_watcher_destroy(w);
  for (int i = 0; i < 6; i++) weft_ctx_end(k[i]);
  for (int i = 0; i < 5000 && weft_ctx_live_count() != live; i++) usleep(1000);
  cr_assert_eq(weft_ctx_live_count(), live);
}

/* ---- 100k contexts --------------------------------------------------------------------------------- */

enum { HOW_CANCEL, HOW_PARENT, HOW_DEADLINE, HOW_REMOVE };

typedef struct req {
  weft_ctx *ctx;
  weft_cancel *k;
  weft_watch *h;
  int how;
  _Atomic int reported;
  _Atomic int removed; /* remove returned 0 */
  _Atomic int err;
} req;

static req *reqs;
static size_t nreq;
static weft_watcher *watcher;
static _Atomic int loop_stop;

static void *loop_main(void *arg) {
  uint64_t *batches = arg;
  int fd = weft_watcher_fd(watcher);
  struct weft_watch_event ev[256];
  while (!atomic_load(&loop_stop)) {
    if (!readable(fd, 20)) continue;
    int n = weft_watcher_take(watcher, ev, 256);
    cr_assert_geq(n, 0);
    (*batches)++;
    for (int i = 0; i < n; i++) {
      req *r = ev[i].tag;
      cr_assert_eq(atomic_fetch_add(&r->reported, 1), 0, "request %td reported twice", r - reqs);
      atomic_store(&r->err, ev[i].err);
    }
  }
  return NULL;
}

typedef struct canceller {
  size_t from, step;
  pthread_t th;
} canceller;

static void *cancel_main(void *arg) {
  canceller *c = arg;
  for (size_t i = c->from; i < nreq; i += c->step) {
    req *r = &reqs[i];
    if (r->how == HOW_CANCEL) weft_ctx_cancel_cause(r->k, -1000);
    if (r->how == HOW_REMOVE) {
      int rc = weft_watcher_remove(watcher, r->h);
      cr_assert(rc == 0 || rc == WEFT_ESTATE);
      if (rc == 0) atomic_store(&r->removed, 1);
      weft_ctx_cancel(r->k); /* after the remove: its event must not come */
    }
  }
  return NULL;
}

WEFT_TEST(ctx_watch, hundred_thousand_contexts_one_descriptor) {
  size_t live = weft_ctx_live_count();
  nreq = (size_t)weft_test_env("WEFT_STRESS_ITERS", 100000 / WEFT_TEST_SCALE);
  enum { NPARENTS = 64 };
  reqs = calloc(nreq, sizeof *reqs);
  cr_assert_not_null(reqs);
  weft_ctx *parent[NPARENTS];
  weft_cancel *pk[NPARENTS];
  for (int i = 0; i < NPARENTS; i++) cr_assert_eq(weft_ctx_with_cancel(weft_background(), &parent[i], &pk[i]), 0);
  cr_assert_eq(weft_watcher_create(&watcher), 0);
  atomic_store(&loop_stop, 0);
  uint64_t batches = 0;
  pthread_t loop;
  cr_assert_eq(pthread_create(&loop, NULL, loop_main, &batches), 0);
  unsigned seed = 12345;
  for (size_t i = 0; i < nreq; i++) {
    req *r = &reqs[i];
    r->how = (int)(weft_test_rand(&seed) % 4);
    weft_ctx *par = parent[i % NPARENTS];
    if (r->how == HOW_DEADLINE)
      cr_assert_eq(weft_ctx_with_timeout(par, WEFT_MS(1 + weft_test_rand(&seed) % 50), &r->ctx, &r->k), 0);
    else
      cr_assert_eq(weft_ctx_with_cancel(par, &r->ctx, &r->k), 0);
    cr_assert_eq(weft_watcher_add(watcher, r->ctx, r, r->how == HOW_REMOVE ? &r->h : NULL), 0);
  }
  canceller cs[2];
  for (int i = 0; i < 2; i++) {
    cs[i] = (canceller){(size_t)i, 2, 0};
    cr_assert_eq(pthread_create(&cs[i].th, NULL, cancel_main, &cs[i]), 0);
  }
  for (int i = 0; i < 2; i++) pthread_join(cs[i].th, NULL);
  /* The parents end everything else: HOW_PARENT, and deadlines not reached yet. */
  for (int i = 0; i < NPARENTS; i++) weft_ctx_cancel(pk[i]);
  for (int i = 0; i < 60000 && weft_watcher_pending(watcher) > 0; i++) usleep(1000);
  cr_assert_eq(weft_watcher_pending(watcher), 0, "every watch fired or was removed, and was taken");
  atomic_store(&loop_stop, 1);
  pthread_join(loop, NULL);
  size_t removed = 0, by[4] = {0}, deadline = 0;
  for (size_t i = 0; i < nreq; i++) {
    req *r = &reqs[i];
    int rep = atomic_load(&r->reported), rem = atomic_load(&r->removed), err = atomic_load(&r->err);
    removed += (size_t)rem;
    cr_assert_eq(rep + rem, 1, "request %zu (how %d): reported %d, removed %d", i, r->how, rep, rem);
    if (rep) {
      by[r->how]++;
      cr_assert(err == WEFT_ECANCELED || err == WEFT_EDEADLINE);
      if (r->how == HOW_CANCEL || r->how == HOW_PARENT) cr_assert_eq(err, WEFT_ECANCELED);
      deadline += err == WEFT_EDEADLINE;
    }
    weft_ctx_end(r->k);
  }
  cr_assert(!readable(weft_watcher_fd(watcher), 0), "all taken: not readable");
  fprintf(stderr, "watch: %zu contexts, %zu removed in time, %zu ended by their deadline, %llu batches\n", nreq,
          removed, deadline, (unsigned long long)batches);
  weft_watcher_destroy(watcher);
  for (int i = 0; i < NPARENTS; i++) weft_ctx_end(pk[i]);
  free(reqs);
  for (int i = 0; i < 10000 && weft_ctx_live_count() != live; i++) usleep(1000);
  cr_assert_eq(weft_ctx_live_count(), live, "no context left behind");
}
