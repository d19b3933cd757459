/* tests/test_sem.c: the weighted semaphore (Go's x/sync/semaphore). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "weft_test.h"

WEFT_TEST(sem, basics_and_bad_input) {
  weft_sem *s;
  cr_assert_eq(weft_sem_create(0, &s), WEFT_EINVAL);
  cr_assert_eq(weft_sem_create(3, &s), 0);
  cr_assert_eq(weft_sem_try_acquire(s, 2), 0);
  cr_assert_eq(weft_sem_try_acquire(s, 2), WEFT_EFULL);
  cr_assert_eq(weft_sem_acquire(s, NULL, 1), 0);
  weft_ctx *c;
  weft_cancel *c_cancel = NULL;
  cr_assert_eq(weft_ctx_with_timeout(weft_background(), WEFT_MS(10), &c, &c_cancel), 0);
  cr_assert_eq(weft_sem_acquire(s, c, 1), WEFT_EDEADLINE);
  cr_assert_eq(weft_sem_acquire(s, c, 4), WEFT_EDEADLINE); /* more than the size: waits for the ctx */
  weft_ctx_end(c_cancel);
  cr_assert_eq(weft_sem_acquire(s, NULL, 4), WEFT_EINVAL);
  cr_assert_eq(weft_sem_acquire(s, NULL, 0), WEFT_EINVAL);
  cr_assert_eq(weft_sem_release(s, 4), WEFT_EINVAL); /* more than held */
  cr_assert_eq(weft_sem_release(s, 3), 0);
  cr_assert_eq(weft_sem_release(s, 1), WEFT_EINVAL);
  cr_assert_eq(weft_sem_try_acquire(NULL, 1), WEFT_EINVAL);
  weft_sem_destroy(s);
}

static weft_sem *fsem;
static _Atomic int order[2], order_n;
static void *want(void *arg) {
  intptr_t n = (intptr_t)arg;
  if (weft_sem_acquire(fsem, NULL, n) != 0) return (void *)1;
  order[atomic_fetch_add(&order_n, 1)] = (int)n;
  weft_sem_release(fsem, n);
  return NULL;
}

/* FIFO: a waiter for 5 units queued first is served before a later waiter for 1, and a try_acquire
 * does not overtake it either. */
WEFT_TEST(sem, fifo_large_waiter_not_starved) {
  cr_assert_eq(weft_sem_create(5, &fsem), 0);
  cr_assert_eq(weft_sem_acquire(fsem, NULL, 5), 0);
  pthread_t big, small;
  pthread_create(&big, NULL, want, (void *)5);
  usleep(20000); /* let it queue (ordering only; the assertions do not depend on the timing) */
  cr_assert_eq(weft_sem_release(fsem, 4), 0); /* 4 free: not enough for the head (5) */
  cr_assert_eq(weft_sem_try_acquire(fsem, 1), WEFT_EFULL, "a try must not overtake a queued waiter");
  pthread_create(&small, NULL, want, (void *)1);
  usleep(20000);
  cr_assert_eq(atomic_load(&order_n), 0, "nobody may get units while the big waiter cannot");
  cr_assert_eq(weft_sem_release(fsem, 1), 0);
  pthread_join(big, NULL);
  pthread_join(small, NULL);
  cr_assert_eq(order[0], 5);
  cr_assert_eq(order[1], 1);
  weft_sem_destroy(fsem);
}

/* Stress: more threads than cores acquire random weights, some with short deadlines; the units held
 * never exceed the size and all come back. */
static weft_sem *ssem;
static _Atomic int64_t held;
static _Atomic int over;
static void *sem_worker(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  long iters = weft_test_env("WEFT_STRESS_ITERS", 20000 / WEFT_TEST_SCALE);
  for (long i = 0; i < iters; i++) {
    int64_t n = 1 + weft_test_rand(&seed) % 4;
    weft_ctx *c = NULL;
    weft_cancel *c_cancel = NULL;
    if (weft_test_rand(&seed) % 8 == 0) weft_ctx_with_timeout(weft_background(), WEFT_US(weft_test_rand(&seed) % 50), &c, &c_cancel);
    int rc = (weft_test_rand(&seed) % 4 == 0) ? weft_sem_try_acquire(ssem, n) : weft_sem_acquire(ssem, c, n);
    if (rc == 0) {
      if (atomic_fetch_add(&held, n) + n > 5) atomic_store(&over, 1);
      if (weft_test_rand(&seed) % 16 == 0) sched_yield();
      atomic_fetch_sub(&held, n);
      weft_sem_release(ssem, n);
    } else if (rc != WEFT_EFULL && rc != WEFT_EDEADLINE) {
      atomic_store(&over, 2);
    }
    weft_ctx_end(c_cancel);
  }
  return NULL;
}

WEFT_TEST(sem, stress_more_threads_than_cores) {
  cr_assert_eq(weft_sem_create(5, &ssem), 0);
  long T = weft_test_env("WEFT_STRESS_THREADS", 8);
  pthread_t *th = calloc((size_t)T, sizeof *th);
  for (long t = 0; t < T; t++) pthread_create(&th[t], NULL, sem_worker, (void *)(uintptr_t)(t * 7919 + 1));
  for (long t = 0; t < T; t++) pthread_join(th[t], NULL);
  cr_assert_eq(atomic_load(&over), 0);
  cr_assert_eq(weft_sem_try_acquire(ssem, 5), 0, "every unit came back");
  weft_sem_release(ssem, 5);
  weft_sem_destroy(ssem);
  free(th);
}
