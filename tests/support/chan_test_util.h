/* tests/support/chan_test_util.h: helpers shared by the channel tests. */
#ifndef WEFT_CHAN_TEST_UTIL_H
#define WEFT_CHAN_TEST_UTIL_H

#include <pthread.h>
#include <unistd.h>

#include "weft_test.h"

/* A channel the test needs (creation is asserted). */
static inline weft_chan *mk(size_t esize, size_t cap) {
  weft_chan *ch = NULL;
  cr_assert_eq(weft_chan_create(esize, cap, &ch), 0);
  cr_assert_not_null(ch);
  return ch;
}

/* Huge allocations must fail with NULL (WEFT_ENOMEM), not abort, under the sanitizers' allocators. */
#define CHAN_TEST_SANITIZER_OPTIONS                                                               \
  const char *__asan_default_options(void);                                                       \
  const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }              \
  const char *__tsan_default_options(void);                                                       \
  const char *__tsan_default_options(void) { return "allocator_may_return_null=1"; }

/* Waits (bounded, 20 s) until `cond` holds; polls, so it asserts an order of events, never a duration. */
#define WAIT_UNTIL(cond)                                                      \
  do {                                                                        \
    int64_t wu_end_ = weft_now() + WEFT_SEC(20);                               \
    while (!(cond)) {                                                         \
      cr_assert(weft_now() < wu_end_, "timed out waiting for: %s", #cond);     \
      usleep(200);                                                            \
    }                                                                         \
  } while (0)

static inline uint64_t chan_waits(const weft_chan *ch, bool senders) {
  struct weft_chan_stats st;
  cr_assert_eq(weft_chan_stats(ch, &st), 0);
  return senders ? st.send_waits : st.recv_waits;
}

static inline pthread_t spawn(void *(*fn)(void *), void *arg) {
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, fn, arg), 0);
  return t;
}

static inline void *join(pthread_t t) {
  void *r;
  cr_assert_eq(pthread_join(t, &r), 0);
  return r;
}

#endif
