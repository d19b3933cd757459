/* weft_chan_fd stress: P producer threads send distinct values into a small channel (blocking sends, so
 * the ring is full, empty and in between all the time) while a poll() loop consumer drains it whenever
 * the descriptor is readable, and a second consumer blocks in weft_chan_recv (the wait-queue wake-up and
 * the descriptor update run on the same sends). Checked: every value is received exactly once; a poll
 * that times out (a wide 10 s) while elements are buffered is a missed wake-up and fails; once everything
 * was received and no thread touches the channel, the descriptor is not readable (no readiness stuck
 * after a drain); after close it is readable. Producers + consumers outnumber the 2 cores.
 * Sizes: WEFT_STRESS_THREADS (producers, default 3), WEFT_STRESS_ITERS (values per producer),
 * WEFT_STRESS_ROUNDS. */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "weft_test.h"

static weft_chan *ch;
static _Atomic uint8_t *seen;
static _Atomic uint64_t received;
static uint64_t total;
static _Atomic int producers_left;

typedef struct prod {
  uint64_t first, n;
  pthread_t th;
} prod;

static void *producer(void *a) {
  prod *p = a;
  for (uint64_t i = 0; i < p->n; i++) {
    uint64_t v = p->first + i;
    int rc = (i % 3 == 0) ? weft_chan_try_send(ch, &v) : weft_chan_send(ch, NULL, &v);
    if (rc == WEFT_EFULL) rc = weft_chan_send(ch, NULL, &v);
    cr_assert_eq(rc, 0);
  }
  atomic_fetch_sub(&producers_left, 1);
  return NULL;
}

static void take(uint64_t v) {
  cr_assert_lt(v, total);
  cr_assert_eq(atomic_fetch_add(&seen[v], 1), 0, "value %llu received twice", (unsigned long long)v);
  atomic_fetch_add(&received, 1);
}

typedef struct loop_stats {
  uint64_t wakeups, empty_wakeups, got;
} loop_stats;

static void *poll_consumer(void *a) {
  loop_stats *ls = a;
  int fd = weft_chan_fd(ch);
  cr_assert_geq(fd, 0);
  while (atomic_load(&received) < total) {
    struct pollfd p = {fd, POLLIN, 0};
    int n = poll(&p, 1, 10000);
    if (n == 0) {
      cr_assert_eq(weft_chan_len(ch), 0, "missed wake-up: poll timed out with %zu buffered", weft_chan_len(ch));
      continue;
    }
    cr_assert_eq(n, 1);
    ls->wakeups++;
    uint64_t v, got = 0;
    while (weft_chan_try_recv(ch, &v) == 0) take(v), got++;
    if (got == 0) ls->empty_wakeups++;
    ls->got += got;
  }
  return NULL;
}

/* Receives with a short deadline until everything was received by someone. */
static void *blocking_consumer(void *a) {
  loop_stats *ls = a;
  while (atomic_load(&received) < total) {
    uint64_t v;
    int rc = weft_chan_recv_until(ch, &v, weft_deadline_in(WEFT_MS(5)));
    if (rc == 0) take(v), ls->got++;
    else cr_assert_eq(rc, WEFT_ETIMEDOUT);
  }
  return NULL;
}

static void round_once(size_t cap) {
  size_t P = (size_t)weft_test_env("WEFT_STRESS_THREADS", 3);
  uint64_t N = (uint64_t)weft_test_env("WEFT_STRESS_ITERS", 60000 / WEFT_TEST_SCALE);
  total = P * N;
  seen = calloc(total, 1);
  cr_assert_not_null(seen);
  atomic_store(&received, 0);
  atomic_store(&producers_left, (int)P);
  cr_assert_eq(weft_chan_create(sizeof(uint64_t), cap, &ch), 0);
  int fd = weft_chan_fd(ch);
  loop_stats pl = {0}, bl = {0};
  pthread_t pc, bc;
  cr_assert_eq(pthread_create(&pc, NULL, poll_consumer, &pl), 0);
  cr_assert_eq(pthread_create(&bc, NULL, blocking_consumer, &bl), 0);
  prod *ps = calloc(P, sizeof *ps);
  for (size_t i = 0; i < P; i++) {
    ps[i] = (prod){i * N, N, 0};
    cr_assert_eq(pthread_create(&ps[i].th, NULL, producer, &ps[i]), 0);
  }
  for (size_t i = 0; i < P; i++) pthread_join(ps[i].th, NULL);
  pthread_join(pc, NULL);
  pthread_join(bc, NULL);
  cr_assert_eq(atomic_load(&received), total);
  for (uint64_t v = 0; v < total; v++) cr_assert_eq(atomic_load(&seen[v]), 1, "value %llu", (unsigned long long)v);
  cr_assert_eq(weft_chan_len(ch), 0);
  struct pollfd p = {fd, POLLIN, 0};
  cr_assert_eq(poll(&p, 1, 0), 0, "drained and quiet: not readable");
  cr_assert_eq(weft_chan_close(ch), 0);
  cr_assert_eq(poll(&p, 1, 0), 1, "closed: readable");
  fprintf(stderr, "  cap %zu: %llu values; poll loop %llu (wake-ups %llu, empty %llu), blocking %llu\n", cap,
          (unsigned long long)total, (unsigned long long)pl.got, (unsigned long long)pl.wakeups,
          (unsigned long long)pl.empty_wakeups, (unsigned long long)bl.got);
  cr_assert_eq(weft_chan_destroy(ch), 0);
  free(ps);
  free(seen);
}

WEFT_TEST(chan_fd_stress, producers_poll_loop_and_blocking_receiver) {
  long rounds = weft_test_env("WEFT_STRESS_ROUNDS", 3);
  size_t caps[] = {1, 7, 64};
  for (long r = 0; r < rounds; r++) round_once(caps[r % 3]);
}
