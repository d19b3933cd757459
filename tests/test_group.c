/* Error groups (Go's errgroup). The semaphore is in test_sem.c. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
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
  cr_assert_eq(weft_group_go(g, failing, NULL), WEFT_ESTATE);
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
