/* tests/test_select.c: select (fairness, default, disabled cases, wake-ups, cancel, same channel in two
 * cases). Timer channels are in test_timer.c. */
#include <stdatomic.h>
#include <stdint.h>

#include "chan_test_util.h"

WEFT_TEST(select, einval) {
  weft_chan *ch = mk(sizeof(int), 1);
  weft_select_case c[2] = {WEFT_RECV_CASE(ch, NULL), WEFT_SEND_CASE(ch, NULL)};
  cr_assert_eq(weft_try_select(c, 2), WEFT_EINVAL, "send case without an element");
  c[1].op = 99;
  c[1].elem = &(int){1};
  cr_assert_eq(weft_try_select(c, 2), WEFT_EINVAL, "bad op");
  cr_assert_eq(weft_select(NULL, NULL, 1), WEFT_EINVAL);
  cr_assert_eq(weft_select_until(NULL, 3, WEFT_FOREVER), WEFT_EINVAL);
  cr_assert_eq(weft_try_select(NULL, 0), WEFT_EEMPTY, "no case: the default fires");
  cr_assert_eq(weft_chan_len(ch), 0);
  weft_chan_destroy(ch);
}

WEFT_TEST(select, fair_between_two_ready_cases) {
  weft_chan *a = mk(sizeof(int), 4), *b = mk(sizeof(int), 4);
  weft_chan_try_send(a, &(int){1});
  weft_chan_try_send(b, &(int){2});
  int va = 0, vb = 0, hits[2] = {0, 0};
  enum { N = 10000 };
  for (int i = 0; i < N; i++) {
    weft_select_case c[2] = {WEFT_RECV_CASE(a, &va), WEFT_RECV_CASE(b, &vb)};
    int r = weft_select(NULL, c, 2);
    cr_assert(r == 0 || r == 1, "select returned %d", r);
    cr_assert_eq(c[r].err, 0);
    hits[r]++;
    cr_assert_eq(weft_chan_try_send(r == 0 ? a : b, r == 0 ? &va : &vb), 0); /* keep both ready */
  }
  cr_assert_eq(va, 1);
  cr_assert_eq(vb, 2);
  cr_assert_geq(hits[0], N * 3 / 10, "case 0 fired %d of %d", hits[0], N);
  cr_assert_geq(hits[1], N * 3 / 10, "case 1 fired %d of %d", hits[1], N);
  weft_chan_destroy(a);
  weft_chan_destroy(b);
}

WEFT_TEST(select, fair_among_three_with_send_cases) {
  weft_chan *ch[3] = {mk(sizeof(int), 1 << 14), mk(sizeof(int), 1 << 14), mk(sizeof(int), 1 << 14)};
  int hits[3] = {0};
  enum { N = 9000 };
  for (int i = 0; i < N; i++) {
    weft_select_case c[3] = {WEFT_SEND_CASE(ch[0], &i), WEFT_SEND_CASE(ch[1], &i), WEFT_SEND_CASE(ch[2], &i)};
    int r = weft_try_select(c, 3);
    cr_assert(r >= 0 && r < 3);
    hits[r]++;
  }
  for (int k = 0; k < 3; k++) {
    cr_assert_geq(hits[k], N / 5, "case %d fired %d of %d", k, hits[k], N);
    cr_assert_eq(weft_chan_len(ch[k]), (size_t)hits[k], "exactly one send per select");
    weft_chan_destroy(ch[k]);
  }
}

WEFT_TEST(select, default_when_nothing_ready) {
  weft_chan *a = mk(sizeof(int), 1), *z = mk(sizeof(int), 0);
  int v = -3;
  weft_select_case c[3] = {WEFT_RECV_CASE(a, &v), WEFT_RECV_CASE(z, &v), WEFT_SEND_CASE(z, &(int){1})};
  cr_assert_eq(weft_try_select(c, 3), WEFT_EEMPTY);
  cr_assert_eq(v, -3);
  weft_chan_try_send(a, &(int){8});
  cr_assert_eq(weft_try_select(c, 3), 0);
  cr_assert_eq(v, 8);
  cr_assert_eq(weft_try_select(c, 3), WEFT_EEMPTY);
  weft_chan_destroy(a);
  weft_chan_destroy(z);
}

WEFT_TEST(select, disabled_case_never_fires) {
  weft_chan *a = mk(sizeof(int), 2);
  int v;
  weft_select_case c[3] = {WEFT_RECV_CASE(NULL, &v), WEFT_RECV_CASE(a, &v), WEFT_SEND_CASE(NULL, &v)};
  cr_assert_eq(weft_try_select(c, 3), WEFT_EEMPTY);
  cr_assert_eq(weft_select_until(c, 3, weft_deadline_in(WEFT_MS(5))), WEFT_ETIMEDOUT);
  for (int i = 0; i < 1000; i++) {
    weft_chan_try_send(a, &i);
    cr_assert_eq(weft_select(NULL, c, 3), 1);
    cr_assert_eq(v, i);
  }
  weft_select_case only_nil[1] = {WEFT_RECV_CASE(NULL, &v)};
  cr_assert_eq(weft_select_until(only_nil, 1, weft_deadline_in(WEFT_MS(2))), WEFT_ETIMEDOUT);
  weft_chan_destroy(a);
}

WEFT_TEST(select, closed_channel_case_fires_with_eclosed) {
  weft_chan *a = mk(sizeof(int), 2), *z = mk(sizeof(int), 0), *idle = mk(sizeof(int), 0);
  weft_chan_try_send(a, &(int){5});
  weft_chan_close(a);
  weft_chan_close(z);
  int v = 0;
  weft_select_case c[2] = {WEFT_RECV_CASE(idle, &v), WEFT_RECV_CASE(a, &v)};
  cr_assert_eq(weft_select(NULL, c, 2), 1);
  cr_assert_eq(c[1].err, 0, "buffered element first");
  cr_assert_eq(v, 5);
  cr_assert_eq(weft_select(NULL, c, 2), 1);
  cr_assert_eq(c[1].err, WEFT_ECLOSED);
  weft_select_case s[2] = {WEFT_RECV_CASE(idle, &v), WEFT_SEND_CASE(z, &v)};
  cr_assert_eq(weft_select(NULL, s, 2), 1);
  cr_assert_eq(s[1].err, WEFT_ECLOSED, "send on closed: the case fires with an error");
  weft_chan_destroy(a);
  weft_chan_destroy(z);
  weft_chan_destroy(idle);
}

typedef struct sel_arg {
  weft_chan *a, *b;
  weft_ctx *ctx;
  int va, vb, rc, err;
} sel_arg;

static void *sel_recv_worker(void *p) {
  sel_arg *s = p;
  weft_select_case c[2] = {WEFT_RECV_CASE(s->a, &s->va), WEFT_RECV_CASE(s->b, &s->vb)};
  s->rc = weft_select(s->ctx, c, 2);
  if (s->rc >= 0) s->err = c[s->rc].err;
  return NULL;
}

WEFT_TEST(select, blocked_select_wakes_on_either_channel) {
  for (int which = 0; which < 2; which++) {
    weft_chan *a = mk(sizeof(int), 0), *b = mk(sizeof(int), 3);
    sel_arg s = {.a = a, .b = b, .va = -1, .vb = -1};
    pthread_t t = spawn(sel_recv_worker, &s);
    WAIT_UNTIL(chan_waits(a, false) + chan_waits(b, false) >= 2); /* queued on both */
    if (which == 0) {
      cr_assert_eq(weft_chan_send(a, NULL, &(int){11}), 0);
    } else {
      cr_assert_eq(weft_chan_send(b, NULL, &(int){22}), 0);
    }
    join(t);
    cr_assert_eq(s.rc, which);
    cr_assert_eq(s.err, 0);
    cr_assert_eq(which == 0 ? s.va : s.vb, which == 0 ? 11 : 22);
    cr_assert_eq(which == 0 ? s.vb : s.va, -1, "the other case's buffer is untouched");
    cr_assert_eq(weft_chan_len(b), 0);
    cr_assert_eq(weft_chan_try_send(a, &(int){1}), WEFT_EFULL, "the select left a's queue");
    weft_chan_destroy(a);
    weft_chan_destroy(b);
  }
}

static void *sel_send_worker(void *p) {
  sel_arg *s = p;
  weft_select_case c[2] = {WEFT_SEND_CASE(s->a, &s->va), WEFT_SEND_CASE(s->b, &s->vb)};
  s->rc = weft_select(s->ctx, c, 2);
  if (s->rc >= 0) s->err = c[s->rc].err;
  return NULL;
}

WEFT_TEST(select, blocked_send_select_hands_off_exactly_once) {
  weft_chan *a = mk(sizeof(int), 0), *b = mk(sizeof(int), 1);
  weft_chan_try_send(b, &(int){0}); /* b full */
  sel_arg s = {.a = a, .b = b, .va = 100, .vb = 200};
  pthread_t t = spawn(sel_send_worker, &s);
  WAIT_UNTIL(chan_waits(a, true) + chan_waits(b, true) >= 2);
  int v;
  cr_assert_eq(weft_chan_recv(a, NULL, &v), 0);
  cr_assert_eq(v, 100);
  join(t);
  cr_assert_eq(s.rc, 0);
  cr_assert_eq(weft_chan_len(b), 1, "the other send did not happen");
  weft_chan_destroy(a);
  weft_chan_destroy(b);
}

WEFT_TEST(select, cancel_releases_blocked_selects) {
  enum { N = 6 };
  weft_chan *a = mk(sizeof(int), 0), *b = mk(sizeof(int), 2);
  weft_ctx *ctx;
  weft_cancel *cancel = NULL;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &ctx, &cancel), 0);
  sel_arg s[N];
  pthread_t t[N];
  for (int i = 0; i < N; i++) {
    s[i] = (sel_arg){.a = a, .b = b, .ctx = ctx, .va = -1, .vb = -1};
    t[i] = spawn(sel_recv_worker, &s[i]);
  }
  WAIT_UNTIL(chan_waits(a, false) >= N && chan_waits(b, false) >= N);
  weft_ctx_cancel(cancel);
  for (int i = 0; i < N; i++) {
    join(t[i]);
    cr_assert_eq(s[i].rc, WEFT_ECANCELED);
    cr_assert_eq(s[i].va, -1);
    cr_assert_eq(s[i].vb, -1);
  }
  /* Queues are empty again: a send on b stays buffered, one on a finds no receiver. */
  cr_assert_eq(weft_chan_try_send(a, &(int){1}), WEFT_EFULL);
  cr_assert_eq(weft_chan_try_send(b, &(int){1}), 0);
  cr_assert_eq(weft_chan_destroy(a), 0);
  cr_assert_eq(weft_chan_destroy(b), 0);
  weft_ctx_end(cancel);
}

WEFT_TEST(select, deadline_variants) {
  weft_chan *a = mk(sizeof(int), 0);
  int v;
  weft_select_case c[1] = {WEFT_RECV_CASE(a, &v)};
  int64_t d = weft_deadline_in(WEFT_MS(10));
  cr_assert_eq(weft_select_until(c, 1, d), WEFT_ETIMEDOUT);
  cr_assert_geq(weft_now(), d);
  weft_ctx *ctx;
  weft_cancel *cancel = NULL;
  cr_assert_eq(weft_ctx_with_timeout(weft_background(), WEFT_MS(10), &ctx, &cancel), 0);
  cr_assert_eq(weft_select(ctx, c, 1), WEFT_EDEADLINE);
  cr_assert_eq(weft_select(ctx, c, 1), WEFT_EDEADLINE, "done on entry");
  cr_assert_eq(weft_select(ctx, NULL, 0), WEFT_EDEADLINE, "no case: waits for the context alone");
  weft_ctx_end(cancel);
  weft_chan_destroy(a);
}

/* Two threads each select {send x, recv x} on one rendezvous channel: they must pair up, one sending
 * and one receiving; a select never matches its own cases. */
typedef struct pair_arg {
  weft_chan *ch;
  int out, in, rc;
} pair_arg;

static void *pair_worker(void *p) {
  pair_arg *a = p;
  weft_select_case c[2] = {WEFT_SEND_CASE(a->ch, &a->out), WEFT_RECV_CASE(a->ch, &a->in)};
  a->rc = weft_select_until(c, 2, weft_deadline_in(WEFT_SEC(20)));
  return NULL;
}

WEFT_TEST(select, same_channel_both_directions) {
  weft_chan *ch = mk(sizeof(int), 0);
  int v = 1;
  weft_select_case self[2] = {WEFT_SEND_CASE(ch, &v), WEFT_RECV_CASE(ch, &v)};
  cr_assert_eq(weft_select_until(self, 2, weft_deadline_in(WEFT_MS(5))), WEFT_ETIMEDOUT,
               "no partner but itself");
  for (int round = 0; round < 200; round++) {
    pair_arg a = {ch, 1, -1, 0}, b = {ch, 2, -1, 0};
    pthread_t ta = spawn(pair_worker, &a), tb = spawn(pair_worker, &b);
    join(ta);
    join(tb);
    cr_assert(a.rc >= 0 && b.rc >= 0, "rc %d %d", a.rc, b.rc);
    cr_assert_neq(a.rc, b.rc, "one sent, the other received");
    if (a.rc == 1) cr_assert_eq(a.in, 2); else cr_assert_eq(b.in, 1);
  }
  weft_chan_destroy(ch);
}

WEFT_TEST(select, many_cases_and_discarding_receive) {
  enum { N = 40 }; /* above the stack limit: the entries are allocated */
  weft_chan *ch[N];
  weft_select_case c[N];
  for (int i = 0; i < N; i++) {
    ch[i] = mk(sizeof(int), 0);
    c[i] = WEFT_RECV_CASE(ch[i], NULL);
  }
  weft_chan *buf = mk(sizeof(int), 1);
  c[N - 1] = WEFT_RECV_CASE(buf, NULL);
  weft_chan_try_send(buf, &(int){3});
  cr_assert_eq(weft_select(NULL, c, N), N - 1);
  cr_assert_eq(weft_chan_len(buf), 0, "discarded, but consumed");
  cr_assert_eq(weft_select_until(c, N, weft_deadline_in(WEFT_MS(3))), WEFT_ETIMEDOUT);
  for (int i = 0; i < N; i++) weft_chan_destroy(ch[i]);
  weft_chan_destroy(buf);
}

WEFT_TEST(select, huge_case_counts_are_refused) {
  weft_select_case c = WEFT_RECV_CASE(NULL, NULL);
  cr_assert_eq(weft_try_select(&c, ((size_t)1 << 24) + 1), WEFT_EINVAL);
  cr_assert_eq(weft_try_select(&c, SIZE_MAX), WEFT_EINVAL);
  cr_assert_eq(weft_select_until(&c, SIZE_MAX, WEFT_NOWAIT), WEFT_EINVAL);
  cr_assert_eq(weft_select(NULL, &c, SIZE_MAX / sizeof(weft_select_case) + 1), WEFT_EINVAL);
}

/* Select's choice among ready cases is uniform (Go's pollorder is a uniform shuffle): for n cases of which
 * the ones in `ready` are ready (the others are empty channels, or disabled when `nil_rest`), each ready
 * case fires within 6.5 binomial standard deviations of trials/k over `trials` selects. At 20,000 trials
 * with two ready cases the window is 47.7-52.3 %, so a 42/58 split (a deviation of 22 standard deviations)
 * fails it, while a fair select fails it with a probability near 1e-10 per case. */
static double sd_of(double var) { /* Newton's square root: keeps the test off libm */
  double x = var > 1 ? var : 1;
  for (int i = 0; i < 60; i++) x = 0.5 * (x + var / x);
  return x;
}

static void check_uniform(size_t n, const size_t *ready, size_t k, bool nil_rest, bool blocking, int trials) {
  weft_chan *ch[20];
  int v[20];
  long hits[20] = {0};
  weft_select_case c[20];
  cr_assert(n <= 20 && k >= 2 && k <= n);
  for (size_t i = 0; i < n; i++) {
    ch[i] = mk(sizeof(int), 2);
    c[i] = WEFT_RECV_CASE(nil_rest ? NULL : ch[i], &v[i]);
  }
  for (size_t j = 0; j < k; j++) {
    cr_assert_eq(weft_chan_try_send(ch[ready[j]], &(int){(int)ready[j]}), 0);
    c[ready[j]].chan = ch[ready[j]];
  }
  for (int t = 0; t < trials; t++) {
    int r = blocking ? weft_select(NULL, c, n) : weft_try_select(c, n);
    cr_assert(r >= 0 && (size_t)r < n, "select returned %d", r);
    cr_assert_eq(v[r], r);
    hits[r]++;
    cr_assert_eq(weft_chan_try_send(ch[r], &v[r]), 0); /* keep it ready */
  }
  double p = 1.0 / (double)k, mean = trials * p, var = trials * p * (1 - p);
  for (size_t j = 0; j < k; j++) {
    double d = (double)hits[ready[j]] - mean;
    cr_assert(d * d <= 6.5 * 6.5 * var, "n=%zu k=%zu: case %zu fired %ld of %d times (expected %.0f +- %.0f)", n, k,
              ready[j], hits[ready[j]], trials, mean, 6.5 * sd_of(var));
  }
  long sum = 0;
  for (size_t i = 0; i < n; i++) sum += hits[i];
  cr_assert_eq(sum, trials, "only ready cases fire");
  for (size_t i = 0; i < n; i++) weft_chan_destroy(ch[i]);
}

WEFT_TEST(select, uniform_among_ready_cases_at_every_position) {
  /* Two ready cases at every pair of positions among 3 to 6 cases (the 4-case and 6-case shapes with two
   * ready ones were 42/58 and 30/70 with a random start and coprime stride). */
  for (size_t n = 3; n <= 6; n++)
    for (size_t a = 0; a < n; a++)
      for (size_t b = a + 1; b < n; b++) check_uniform(n, (size_t[]){a, b}, 2, false, false, 20000);
}

WEFT_TEST(select, uniform_among_ready_cases_other_shapes) {
  check_uniform(6, (size_t[]){0, 1}, 2, false, true, 20000);       /* the blocking select polls alike */
  check_uniform(6, (size_t[]){1, 4}, 2, true, false, 20000);       /* disabled cases in between */
  check_uniform(8, (size_t[]){2, 3, 7}, 3, false, false, 30000);   /* three ready */
  check_uniform(17, (size_t[]){0, 16}, 2, false, false, 20000);    /* past the on-stack order */
  check_uniform(17, (size_t[]){5, 6, 9, 10}, 4, false, true, 40000);
}

/* The case count is range-checked (at most 2^24), before anything is read from the cases. */
WEFT_TEST(select, case_count_limit_einval) {
  weft_select_case c[1];
  static const size_t bad[] = {((size_t)1 << 24) + 1, (size_t)1 << 62, SIZE_MAX};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    cr_assert_eq(weft_try_select(c, bad[i]), WEFT_EINVAL, "n %zu", bad[i]);
    cr_assert_eq(weft_select_until(c, bad[i], weft_now()), WEFT_EINVAL);
    cr_assert_eq(weft_select(NULL, c, bad[i]), WEFT_EINVAL);
  }
}
