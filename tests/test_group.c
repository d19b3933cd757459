/* Error groups (Go's errgroup). The semaphore is in test_sem.c. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "weft_test.h"

static _Atomic int sibling_errs[8];

/* Blocks until the group's context is cancelled. */
static int blocked_sibling(weft_ctx *ctx, void *arg) {
  int rc = weft_ctx_wait_until(ctx, WEFT_FOREVER);
  atomic_store(&sibling_errs[(intptr_t)arg], rc);
  return rc;
}

static int failing(weft_ctx *ctx, void *arg) {
  weft_ctx_sleep(ctx, WEFT_MS(5));
  return (int)(intptr_t)arg;
}

WEFT_TEST(group, first_error_cancels_blocked_siblings) {
  weft_group *g;
  cr_assert_eq(weft_group_create(NULL, 0, &g), 0);
  for (intptr_t i = 0; i < 4; i++) cr_assert_eq(weft_group_go(g, blocked_sibling, (void *)i), 0);
  cr_assert_eq(weft_group_go(g, failing, (void *)(intptr_t)-1234), 0);
  cr_assert_eq(weft_group_wait(g), -1234);
  for (int i = 0; i < 4; i++) cr_assert_eq(atomic_load(&sibling_errs[i]), WEFT_ECANCELED);
  cr_assert_eq(weft_ctx_cause(weft_group_ctx(g)), -1234);
  cr_assert_eq(weft_group_wait(g), -1234); /* again: same result at once */
  cr_assert_eq(weft_group_go(g, failing, NULL), 0, "a group may be used again after wait, as Go's");
  cr_assert_eq(weft_group_wait(g), -1234, "and a later wait still returns the first error");
  weft_group_destroy(g);
}

/* Siblings blocked receiving from a channel nobody writes to, and one blocked sending to a full one. */
static weft_chan *empty_ch, *full_ch;
static _Atomic int recv_errs[4], started;
static int blocked_in_recv(weft_ctx *ctx, void *arg) {
  int v;
  atomic_fetch_add(&started, 1);
  int rc = weft_chan_recv(empty_ch, ctx, &v);
  atomic_store(&recv_errs[(intptr_t)arg], rc);
  return rc;
}
static int blocked_in_send(weft_ctx *ctx, void *arg) {
  int v = 7;
  atomic_fetch_add(&started, 1);
  int rc = weft_chan_send(full_ch, ctx, &v);
  atomic_store(&recv_errs[(intptr_t)arg], rc);
  return rc;
}
static int fail_after_siblings_block(weft_ctx *ctx, void *arg) {
  while (atomic_load(&started) < 4) weft_ctx_sleep(ctx, WEFT_MS(1));
  weft_ctx_sleep(ctx, WEFT_MS(20)); /* let them park: the cancel must reach parked threads */
  return (int)(intptr_t)arg;
}

WEFT_TEST(group, first_error_cancels_siblings_blocked_in_channels) {
  cr_assert_eq(weft_chan_create(sizeof(int), 4, &empty_ch), 0);
  cr_assert_eq(weft_chan_create(sizeof(int), 1, &full_ch), 0);
  int one = 1;
  cr_assert_eq(weft_chan_try_send(full_ch, &one), 0);
  atomic_store(&started, 0);
  weft_group *g;
  cr_assert_eq(weft_group_create(NULL, 0, &g), 0);
  for (intptr_t i = 0; i < 3; i++) cr_assert_eq(weft_group_go(g, blocked_in_recv, (void *)i), 0);
  cr_assert_eq(weft_group_go(g, blocked_in_send, (void *)(intptr_t)3), 0);
  cr_assert_eq(weft_group_go(g, fail_after_siblings_block, (void *)(intptr_t)-77), 0);
  cr_assert_eq(weft_group_wait(g), -77, "wait returns the first error");
  for (int i = 0; i < 4; i++) cr_assert_eq(atomic_load(&recv_errs[i]), WEFT_ECANCELED);
  cr_assert_eq(weft_chan_len(full_ch), 1, "the cancelled send did not deliver");
  cr_assert_eq(weft_chan_len(empty_ch), 0);
  weft_group_destroy(g);
  weft_chan_destroy(empty_ch);
  weft_chan_destroy(full_ch);
}

WEFT_TEST(group, all_succeed_and_parent_cancel_reaches_functions) {
  weft_group *g;
  cr_assert_eq(weft_group_create(weft_background(), 0, &g), 0);
  for (int i = 0; i < 5; i++) cr_assert_eq(weft_group_go(g, failing, (void *)(intptr_t)0), 0);
  cr_assert_eq(weft_group_wait(g), 0);
  cr_assert(weft_ctx_done(weft_group_ctx(g)), "wait cancels the group's context");
  weft_group_destroy(g);

  weft_ctx *parent;
  weft_cancel *parent_cancel = NULL;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &parent, &parent_cancel), 0);
  cr_assert_eq(weft_group_create(parent, 0, &g), 0);
  cr_assert_eq(weft_group_go(g, blocked_sibling, (void *)(intptr_t)5), 0);
  weft_ctx_cancel(parent_cancel);
  cr_assert_eq(weft_group_wait(g), WEFT_ECANCELED);
  weft_group_destroy(g);
  weft_ctx_end(parent_cancel);
}

static _Atomic int cur, maxc, started;
static int limited(weft_ctx *ctx, void *arg) {
  int c = atomic_fetch_add(&cur, 1) + 1;
  int m = atomic_load(&maxc);
  while (c > m && !atomic_compare_exchange_weak(&maxc, &m, c)) {
  }
  atomic_fetch_add(&started, 1);
  weft_ctx_sleep(ctx, WEFT_MS(1));
  if (arg) weft_ctx_sleep(ctx, WEFT_MS(30));
  atomic_fetch_sub(&cur, 1);
  return 0;
}

WEFT_TEST(group, limit_never_exceeded_and_try_go_full) {
  weft_group *g;
  cr_assert_eq(weft_group_create(NULL, 3, &g), 0);
  for (int i = 0; i < 40; i++) cr_assert_eq(weft_group_go(g, limited, NULL), 0);
  cr_assert_eq(weft_group_wait(g), 0);
  cr_assert(atomic_load(&maxc) <= 3, "max concurrent %d > limit 3", atomic_load(&maxc));
  cr_assert_eq(atomic_load(&started), 40);
  weft_group_destroy(g);

  cr_assert_eq(weft_group_create(NULL, 2, &g), 0);
  static _Atomic int gate;
  atomic_store(&gate, 0);
  cr_assert_eq(weft_group_try_go(g, limited, (void *)1), 0);
  cr_assert_eq(weft_group_try_go(g, limited, (void *)1), 0);
  cr_assert_eq(weft_group_try_go(g, limited, (void *)1), WEFT_EFULL); /* both slots taken: nothing ran */
  cr_assert_eq(weft_group_wait(g), 0);
  weft_group_destroy(g);
  cr_assert_eq(weft_group_go(NULL, limited, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_group_create(NULL, 0, NULL), WEFT_EINVAL);
}

WEFT_TEST(group, huge_limit_is_refused) {
  weft_group *g = (weft_group *)1;
  cr_assert_eq(weft_group_create(NULL, SIZE_MAX, &g), WEFT_EINVAL);
  cr_assert_null(g);
  cr_assert_eq(weft_group_create(NULL, (size_t)INT64_MAX + 1, &g), WEFT_EINVAL);
}

/* Counts are range-checked: a group limit beyond INT64_MAX (a semaphore's size) is WEFT_EINVAL; the
 * largest semaphore works at its edges without wrapping. */
WEFT_TEST(group, size_limits_einval) {
  weft_group *g = (weft_group *)1;
  cr_assert_eq(weft_group_create(NULL, SIZE_MAX, &g), WEFT_EINVAL);
  cr_assert_null(g);
  cr_assert_eq(weft_group_create(NULL, (size_t)INT64_MAX + 1, &g), WEFT_EINVAL);
  cr_assert_eq(weft_group_create(NULL, (size_t)INT64_MAX, &g), 0);
  cr_assert_eq(weft_group_wait(g), 0);
  weft_group_destroy(g);
  weft_sem *s;
  cr_assert_eq(weft_sem_create(0, &s), WEFT_EINVAL);
  cr_assert_eq(weft_sem_create(INT64_MIN, &s), WEFT_EINVAL);
  cr_assert_eq(weft_sem_create(INT64_MAX, &s), 0);
  cr_assert_eq(weft_sem_try_acquire(s, INT64_MAX), 0);
  cr_assert_eq(weft_sem_try_acquire(s, 1), WEFT_EFULL);
  cr_assert_eq(weft_sem_release(s, INT64_MAX), 0);
  cr_assert_eq(weft_sem_release(s, 1), WEFT_EINVAL, "releasing more than held");
  cr_assert_eq(weft_sem_try_acquire(s, 1), 0);
  cr_assert_eq(weft_sem_try_acquire(s, INT64_MAX), WEFT_EFULL);
  cr_assert_eq(weft_sem_try_acquire(s, INT64_MAX - 1), 0);
  cr_assert_eq(weft_sem_release(s, INT64_MAX), 0);
  weft_sem_destroy(s);
}

/* ---- error group: use after wait, SetLimit, TryGo (Go's errgroup) ------------------------------- */

static _Atomic int reuse_err_seen, reuse_runs;
static int note_ctx(weft_ctx *ctx, void *arg) {
  atomic_store(&reuse_err_seen, weft_ctx_err(ctx));
  atomic_fetch_add(&reuse_runs, 1);
  return (int)(intptr_t)arg;
}

WEFT_TEST(group, go_after_wait_runs_and_wait_returns_first_error) {
  weft_group *g;
  cr_assert_eq(weft_group_create(NULL, 0, &g), 0);
  cr_assert_eq(weft_group_go(g, note_ctx, (void *)(intptr_t)0), 0);
  cr_assert_eq(weft_group_wait(g), 0);
  cr_assert_eq(weft_ctx_cause(weft_group_ctx(g)), WEFT_ECANCELED, "the first wait cancelled the context");
  /* Go after Wait: runs, under the (cancelled) group context; its error is the group's first. */
  cr_assert_eq(weft_group_go(g, note_ctx, (void *)(intptr_t)-41), 0);
  cr_assert_eq(weft_group_try_go(g, note_ctx, (void *)(intptr_t)-42), 0);
  int rc = weft_group_wait(g);
  cr_assert(rc == -41 || rc == -42, "wait returns an error of the functions started after the first wait: %d", rc);
  cr_assert_eq(atomic_load(&reuse_runs), 3);
  cr_assert_eq(atomic_load(&reuse_err_seen), WEFT_ECANCELED);
  cr_assert_eq(weft_group_go(g, note_ctx, (void *)(intptr_t)-43), 0);
  cr_assert_eq(weft_group_wait(g), rc, "the first error is kept for good");
  cr_assert_eq(weft_group_wait(g), rc);
  cr_assert_eq(atomic_load(&reuse_runs), 4);
  weft_group_destroy(g);
}

static _Atomic int gate_open, running_now, ran_total;
static int gated(weft_ctx *ctx, void *arg) {
  (void)ctx;
  (void)arg;
  atomic_fetch_add(&running_now, 1);
  while (!atomic_load(&gate_open)) usleep(200);
  atomic_fetch_sub(&running_now, 1);
  atomic_fetch_add(&ran_total, 1);
  return 0;
}
static int quick(weft_ctx *ctx, void *arg) {
  (void)ctx;
  (void)arg;
  atomic_fetch_add(&ran_total, 1);
  return 0;
}

WEFT_TEST(group, set_limit_try_go_and_busy) {
  weft_group *g;
  cr_assert_eq(weft_group_set_limit(NULL, 1), WEFT_EINVAL);
  cr_assert_eq(weft_group_create(NULL, 0, &g), 0);
  cr_assert_eq(weft_group_set_limit(g, 2), 0);
  atomic_store(&gate_open, 0);
  cr_assert_eq(weft_group_try_go(g, gated, NULL), 0);
  cr_assert_eq(weft_group_go(g, gated, NULL), 0);
  cr_assert_eq(weft_group_try_go(g, quick, NULL), WEFT_EFULL, "two active: try_go must not start a third");
  cr_assert_eq(weft_group_set_limit(g, 3), WEFT_EBUSY, "a limit cannot change while functions are active");
  cr_assert_eq(weft_group_set_limit(g, 0), WEFT_EBUSY);
  cr_assert_eq(weft_group_try_go(g, quick, NULL), WEFT_EFULL, "the limit is unchanged after EBUSY");
  cr_assert_eq(weft_group_set_limit(g, -1), 0, "removing the limit is allowed at any time, as in Go");
  cr_assert_eq(weft_group_try_go(g, quick, NULL), 0);
  atomic_store(&gate_open, 1);
  cr_assert_eq(weft_group_wait(g), 0);
  cr_assert_eq(atomic_load(&ran_total), 3);
  /* Limit 0: nothing may start; go returns at once instead of blocking forever. */
  cr_assert_eq(weft_group_set_limit(g, 0), 0);
  cr_assert_eq(weft_group_try_go(g, quick, NULL), WEFT_EFULL);
  cr_assert_eq(weft_group_go(g, quick, NULL), WEFT_EFULL);
  cr_assert_eq(weft_group_set_limit(g, 1), 0);
  cr_assert_eq(weft_group_go(g, quick, NULL), 0);
  cr_assert_eq(weft_group_go(g, quick, NULL), 0); /* waits for the first to return */
  cr_assert_eq(weft_group_wait(g), 0);
  cr_assert_eq(atomic_load(&ran_total), 5);
  weft_group_destroy(g);
}

static weft_group *lim_g;
static _Atomic int blocked_go_rc = 99;
static void *go_blocked(void *arg) {
  (void)arg;
  atomic_store(&blocked_go_rc, weft_group_go(lim_g, quick, NULL));
  return NULL;
}

/* A go() waiting for a place starts its function once the limit is removed, though the function holding
 * the only place has not returned. */
WEFT_TEST(group, waiting_go_starts_when_limit_removed) {
  cr_assert_eq(weft_group_create(NULL, 1, &lim_g), 0);
  atomic_store(&gate_open, 0);
  atomic_store(&ran_total, 0);
  cr_assert_eq(weft_group_go(lim_g, gated, NULL), 0);
  pthread_t t;
  pthread_create(&t, NULL, go_blocked, NULL);
  usleep(20000); /* lets it block (ordering only: the assertions hold either way) */
  cr_assert_eq(atomic_load(&blocked_go_rc), 99, "go waits while the limit is reached");
  cr_assert_eq(weft_group_set_limit(lim_g, -1), 0);
  pthread_join(t, NULL);
  cr_assert_eq(atomic_load(&blocked_go_rc), 0);
  while (atomic_load(&ran_total) < 1) usleep(200);
  cr_assert_eq(atomic_load(&running_now), 1, "the gated function still holds its place");
  atomic_store(&gate_open, 1);
  cr_assert_eq(weft_group_wait(lim_g), 0);
  cr_assert_eq(atomic_load(&ran_total), 2);
  weft_group_destroy(lim_g);
}

static weft_group *cw_g;
static _Atomic int cw_rcs[4];
static void *cw_waiter(void *arg) {
  atomic_store(&cw_rcs[(intptr_t)arg], weft_group_wait(cw_g));
  return NULL;
}
static int cw_fail(weft_ctx *ctx, void *arg) {
  (void)arg;
  weft_ctx_sleep(ctx, WEFT_MS(2));
  return -5;
}

/* Several threads wait at once (Go's Wait may be called from several goroutines): each returns once every
 * function has, with the first error. */
WEFT_TEST(group, concurrent_waits) {
  cr_assert_eq(weft_group_create(NULL, 0, &cw_g), 0);
  atomic_store(&gate_open, 0);
  atomic_store(&ran_total, 0);
  for (int i = 0; i < 6; i++) cr_assert_eq(weft_group_go(cw_g, gated, NULL), 0);
  cr_assert_eq(weft_group_go(cw_g, cw_fail, NULL), 0);
  pthread_t t[4];
  for (intptr_t i = 0; i < 4; i++) pthread_create(&t[i], NULL, cw_waiter, (void *)i);
  usleep(10000);
  atomic_store(&gate_open, 1);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  for (int i = 0; i < 4; i++) cr_assert_eq(atomic_load(&cw_rcs[i]), -5);
  cr_assert_eq(atomic_load(&ran_total), 6, "no wait returned before every function had");
  weft_group_destroy(cw_g);
}

/* Stress: threads (more than cores) start functions with go and try_go on one limited group, and some
 * wait, re-set the same limit (EBUSY while active) or are nested; the number of active functions never
 * exceeds the limit, and every function that was started runs exactly once. */
#define GS_LIMIT 3
static weft_group *gs_g;
static _Atomic int gs_cur, gs_over, gs_bad;
static _Atomic unsigned char *gs_runs;
static long gs_iters;
static int gs_fn(weft_ctx *ctx, void *arg) {
  (void)ctx;
  if (atomic_fetch_add(&gs_cur, 1) + 1 > GS_LIMIT) atomic_store(&gs_over, 1);
  atomic_fetch_add(&gs_runs[(uintptr_t)arg], 1);
  if ((uintptr_t)arg % 7 == 0) sched_yield();
  atomic_fetch_sub(&gs_cur, 1);
  return (uintptr_t)arg % 97 == 0 ? -3 : 0;
}
typedef struct gs_arg {
  long t;
  unsigned seed;
  unsigned char *started;
} gs_arg;
static void *gs_worker(void *a) {
  gs_arg *ga = a;
  for (long i = 0; i < gs_iters; i++) {
    uintptr_t id = (uintptr_t)(ga->t * gs_iters + i);
    unsigned r = weft_test_rand(&ga->seed);
    int rc = (r % 3 == 0) ? weft_group_try_go(gs_g, gs_fn, (void *)id) : weft_group_go(gs_g, gs_fn, (void *)id);
    if (rc == 0)
      ga->started[i] = 1;
    else if (rc != WEFT_EFULL || r % 3 != 0)
      atomic_store(&gs_bad, rc);
    if (r % 31 == 0) {
      int w = weft_group_wait(gs_g);
      if (w != 0 && w != -3) atomic_store(&gs_bad, w);
    }
    if (r % 37 == 0) {
      int s = weft_group_set_limit(gs_g, GS_LIMIT);
      if (s != 0 && s != WEFT_EBUSY) atomic_store(&gs_bad, s);
    }
  }
  return NULL;
}

WEFT_TEST(group, stress_limit_and_exactly_once) {
  long T = weft_test_env("WEFT_STRESS_THREADS", 4);
  gs_iters = weft_test_env("WEFT_STRESS_ITERS", 400 / WEFT_TEST_SCALE);
  const char *se = getenv("WEFT_SEED");
  unsigned seed = se && *se ? (unsigned)strtoul(se, NULL, 10) : (unsigned)time(NULL) ^ (unsigned)getpid();
  fprintf(stderr, "group stress: WEFT_SEED=%u threads=%ld iters=%ld\n", seed, T, gs_iters);
  cr_assert_eq(weft_group_create(NULL, GS_LIMIT, &gs_g), 0);
  gs_runs = calloc((size_t)(T * gs_iters), 1);
  gs_arg *args = calloc((size_t)T, sizeof *args);
  pthread_t *th = calloc((size_t)T, sizeof *th);
  for (long t = 0; t < T; t++) {
    args[t] = (gs_arg){t, seed + (unsigned)t * 7919u, calloc((size_t)gs_iters, 1)};
    pthread_create(&th[t], NULL, gs_worker, &args[t]);
  }
  for (long t = 0; t < T; t++) pthread_join(th[t], NULL);
  int w = weft_group_wait(gs_g);
  cr_assert(w == 0 || w == -3, "wait: %d", w);
  cr_assert_eq(atomic_load(&gs_bad), 0, "an unexpected result: %d (seed %u)", atomic_load(&gs_bad), seed);
  cr_assert_eq(atomic_load(&gs_over), 0, "more than %d functions active (seed %u)", GS_LIMIT, seed);
  long nstarted = 0;
  for (long t = 0; t < T; t++)
    for (long i = 0; i < gs_iters; i++) {
      unsigned char n = atomic_load(&gs_runs[t * gs_iters + i]);
      cr_assert_eq(n, args[t].started[i], "function %ld/%ld ran %u times, started %u (seed %u)", t, i, n,
                   args[t].started[i], seed);
      nstarted += n;
    }
  cr_assert(nstarted > 0);
  for (long t = 0; t < T; t++) free(args[t].started);
  free(args);
  free(th);
  free((void *)gs_runs);
  weft_group_destroy(gs_g);
}
