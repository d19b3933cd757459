/* tests/test_timer.c: timer and ticker channels (lib/chan/chan_timer.c). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "chan_test_util.h"
#include "testing.h"

WEFT_TEST(timer, after_fires_once_not_early) {
  int64_t start = weft_now();
  weft_chan *t;
  cr_assert_eq(weft_chan_after(WEFT_MS(20), &t), 0);
  cr_assert_eq(weft_chan_cap(t), 1);
  cr_assert_eq(weft_chan_elem_size(t), sizeof(int64_t));
  int64_t at;
  cr_assert_eq(weft_chan_recv(t, NULL, &at), 0);
  cr_assert_geq(at, start + WEFT_MS(20));
  cr_assert_leq(at, weft_now());
  cr_assert_eq(weft_chan_recv_until(t, &at, weft_deadline_in(WEFT_MS(30))), WEFT_ETIMEDOUT, "once");
  cr_assert(!weft_chan_closed(t));
  cr_assert_eq(weft_chan_destroy(t), 0);
}

WEFT_TEST(timer, select_times_out_with_after) {
  weft_chan *idle = mk(sizeof(int), 0), *t;
  cr_assert_eq(weft_chan_after(WEFT_MS(5), &t), 0);
  int v;
  weft_select_case c[2] = {WEFT_RECV_CASE(idle, &v), WEFT_RECV_CASE(t, NULL)};
  cr_assert_eq(weft_select(NULL, c, 2), 1);
  weft_chan_destroy(t);
  cr_assert_eq(weft_chan_after(0, &t), 0);
  int64_t at;
  cr_assert_eq(weft_chan_recv(t, NULL, &at), 0, "a zero duration fires at once");
  weft_chan_destroy(t);
  weft_chan_destroy(idle);
}

WEFT_TEST(timer, ticker_ticks_in_order_and_stops) {
  int64_t period = WEFT_MS(3), start = weft_now(), prev = start;
  weft_chan *t;
  cr_assert_eq(weft_chan_tick(period, &t), 0);
  for (int k = 1; k <= 5; k++) {
    int64_t at;
    cr_assert_eq(weft_chan_recv(t, NULL, &at), 0);
    cr_assert_gt(at, prev);
    cr_assert_geq(at, start + k * period, "tick %d before its time", k);
    prev = at;
  }
  cr_assert_eq(weft_chan_timer_stop(t), 0);
  cr_assert_eq(weft_chan_timer_stop(t), 0, "idempotent");
  int64_t at;
  while (weft_chan_try_recv(t, &at) == 0) {
  }
  usleep(4 * 3000);
  cr_assert_eq(weft_chan_try_recv(t, &at), WEFT_EEMPTY, "no tick after stop");
  weft_chan_destroy(t);
}

WEFT_TEST(timer, destroy_before_firing_frees_everything) {
  size_t base = weft_ctx_live_count();
  weft_chan *t, *k;
  cr_assert_eq(weft_chan_after(WEFT_SEC(3600), &t), 0);
  cr_assert_eq(weft_chan_tick(WEFT_SEC(3600), &k), 0);
  cr_assert_eq(weft_ctx_live_count(), base + 2);
  cr_assert_eq(weft_chan_destroy(t), 0);
  cr_assert_eq(weft_chan_destroy(k), 0);
  WAIT_UNTIL(weft_ctx_live_count() == base); /* the callbacks ran, released their contexts and channels */
}

WEFT_TEST(timer, einval) {
  weft_chan *t = (weft_chan *)&t;
  cr_assert_eq(weft_chan_after(5, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_chan_after(WEFT_FOREVER, &t), WEFT_EINVAL);
  cr_assert_null(t);
  cr_assert_eq(weft_chan_tick(0, &t), WEFT_EINVAL);
  cr_assert_eq(weft_chan_tick(-5, &t), WEFT_EINVAL);
  cr_assert_eq(weft_chan_tick(WEFT_FOREVER, &t), WEFT_EINVAL);
  cr_assert_eq(weft_chan_tick(5, NULL), WEFT_EINVAL);
}


WEFT_TEST(timer, stop_ends_its_context_at_once) {
  size_t before = weft_ctx_live_count();
  for (int i = 0; i < 200; i++) {
    weft_chan *t;
    cr_assert_eq(weft_chan_after(WEFT_SEC(60), &t), 0);
    cr_assert_eq(weft_ctx_live_count(), before + 1, "an armed timer is one context");
    cr_assert_eq(weft_chan_timer_stop(t), 0);
    cr_assert_eq(weft_ctx_live_count(), before, "stopped before firing: its context ended synchronously");
    cr_assert_eq(weft_chan_destroy(t), 0);
  }
}

static void *timer_churn(void *arg) {
  (void)arg;
  for (int i = 0; i < 300; i++) {
    weft_chan *t;
    weft_ctx *c;
    weft_cancel *c_cancel = NULL;
    if (weft_chan_after(i % 3 == 0 ? 0 : WEFT_US(50), &t) != 0) return (void *)1;
    if (weft_ctx_with_cancel(weft_background(), &c, &c_cancel) != 0) return (void *)1;
    weft_ctx_end(c_cancel);
    if (weft_chan_destroy(t) != 0) return (void *)1;
  }
  return NULL;
}

WEFT_TEST(timer, churn_with_leak_tracking) {
  /* Timers fire and stop on weft's callback thread while other threads create and end contexts, with
   * leak tracking on (it keeps a process-wide list): no race, and nothing left at the end. */
  weft__leaks_enable(true);
  pthread_t th[3];
  for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, timer_churn, NULL);
  for (int i = 0; i < 3; i++) {
    void *r;
    pthread_join(th[i], &r);
    cr_assert_null(r);
  }
  for (int i = 0; i < 5000 && weft_ctx_live_count() != 0; i++) weft_ctx_sleep(weft_background(), WEFT_MS(1));
  cr_assert_eq(weft_ctx_live_count(), 0, "fired timers release their contexts once the callback ran");
  cr_assert_eq(weft_ctx_leak_report(stderr), 0);
  weft__leaks_enable(false);
}
