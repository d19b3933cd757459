/* tests/test_chan_stress.c: P producers x C consumers x capacities {0, 1, 7, 1024} move distinct items.
 *
 * Invariants checked (never timing): every item is received exactly once (a per-item counter); each
 * consumer sees each producer's items in increasing order (per channel); when a cancel hits mid-stream,
 * every item is either received, still in the channel (drained after), or reported unsent by its
 * producer — exactly one of the three.
 *
 * Sizes: WEFT_STRESS_THREADS (producers = consumers, default 2) and WEFT_STRESS_ITERS (items per producer,
 * default 20000, divided by 4 under sanitizers). One configuration always runs more threads than cores. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "chan_test_util.h"

typedef struct stress {
  weft_chan *ch[2];   /* ch[1] is used by the select variant only */
  weft_ctx *ctx;      /* NULL unless cancelling mid-stream */
  weft_cancel *cancel;
  bool select;
  int P, C;
  long N;             /* items per producer */
  _Atomic uint8_t *seen;
  uint8_t *unsent;    /* producer p writes its own range only */
  _Atomic long received;
} stress;

typedef struct worker {
  stress *s;
  int id;
} worker;

static void *producer(void *p) {
  worker *w = p;
  stress *s = w->s;
  for (long i = 0; i < s->N; i++) {
    uint64_t item = (uint64_t)w->id * (uint64_t)s->N + (uint64_t)i;
    int rc;
    if (s->select) {
      weft_select_case c[2] = {WEFT_SEND_CASE(s->ch[0], &item), WEFT_SEND_CASE(s->ch[1], &item)};
      rc = weft_select(s->ctx, c, 2);
      if (rc >= 0) rc = c[rc].err;
    } else {
      rc = weft_chan_send(s->ch[0], s->ctx, &item);
    }
    if (rc == WEFT_ECANCELED) {
      cr_assert_not_null(s->ctx);
      for (long k = i; k < s->N; k++) s->unsent[(long)w->id * s->N + k] = 1;
      break;
    }
    cr_assert_eq(rc, 0, "send: %s", weft_err_name(rc));
  }
  return NULL;
}

static void take(stress *s, uint64_t item) {
  cr_assert_lt(item, (uint64_t)s->P * (uint64_t)s->N, "garbage item %llu", (unsigned long long)item);
  uint8_t before = atomic_fetch_add(&s->seen[item], 1);
  cr_assert_eq(before, 0, "item %llu received twice", (unsigned long long)item);
  atomic_fetch_add(&s->received, 1);
}

static void *consumer(void *p) {
  worker *w = p;
  stress *s = w->s;
  long *last = malloc(2 * (size_t)s->P * sizeof *last);
  cr_assert_not_null(last);
  for (int k = 0; k < 2 * s->P; k++) last[k] = -1;
  weft_chan *ch[2] = {s->ch[0], s->select ? s->ch[1] : NULL};
  for (;;) {
    uint64_t item;
    int rc, which = 0;
    if (s->select) {
      if (!ch[0] && !ch[1]) break;
      weft_select_case c[2] = {WEFT_RECV_CASE(ch[0], &item), WEFT_RECV_CASE(ch[1], &item)};
      which = weft_select(s->ctx, c, 2);
      if (which < 0) {
        rc = which;
      } else if ((rc = c[which].err) == WEFT_ECLOSED) {
        ch[which] = NULL; /* that channel is drained: disable its case */
        continue;
      }
    } else {
      rc = weft_chan_recv(ch[0], s->ctx, &item);
    }
    if (rc == WEFT_ECLOSED || rc == WEFT_ECANCELED) break;
    cr_assert_eq(rc, 0, "recv: %s", weft_err_name(rc));
    take(s, item);
    long prod = (long)(item / (uint64_t)s->N), seq = (long)(item % (uint64_t)s->N);
    long *l = &last[which * s->P + prod];
    cr_assert_gt(seq, *l, "producer %ld out of order: %ld after %ld", prod, seq, *l);
    *l = seq;
  }
  free(last);
  return NULL;
}

/* Runs one configuration. cancel_at > 0: cancel the context once that many items were received. */
static void run(int P, int C, long N, size_t cap, bool sel, long cancel_at) {
  stress s = {.P = P, .C = C, .N = N, .select = sel};
  size_t total = (size_t)P * (size_t)N;
  s.seen = calloc(total, 1);
  s.unsent = calloc(total, 1);
  cr_assert(s.seen && s.unsent);
  for (int k = 0; k < 2; k++) cr_assert_eq(weft_chan_create(sizeof(uint64_t), cap, &s.ch[k]), 0);
  if (cancel_at > 0) cr_assert_eq(weft_ctx_with_cancel(weft_background(), &s.ctx, &s.cancel), 0);
  worker *ws = calloc((size_t)(P + C), sizeof *ws);
  pthread_t *th = calloc((size_t)(P + C), sizeof *th);
  for (int i = 0; i < C; i++) {
    ws[i] = (worker){&s, i};
    th[i] = spawn(consumer, &ws[i]);
  }
  for (int i = 0; i < P; i++) {
    ws[C + i] = (worker){&s, i};
    th[C + i] = spawn(producer, &ws[C + i]);
  }
  if (cancel_at > 0) {
    WAIT_UNTIL(atomic_load(&s.received) >= cancel_at);
    weft_ctx_cancel(s.cancel);
    for (int i = 0; i < P + C; i++) join(th[i]);
  } else {
    for (int i = C; i < P + C; i++) join(th[i]);
    weft_chan_close(s.ch[0]);
    weft_chan_close(s.ch[1]);
    for (int i = 0; i < C; i++) join(th[i]);
  }
  /* Drain what is still buffered (only after a cancel can anything be left). */
  long drained = 0;
  for (int k = 0; k < 2; k++) {
    uint64_t item;
    while (weft_chan_try_recv(s.ch[k], &item) == 0) take(&s, item), drained++;
  }
  if (cancel_at == 0) cr_assert_eq(drained, 0);
  long unsent = 0;
  for (size_t i = 0; i < total; i++) {
    unsent += s.unsent[i];
    cr_assert_eq(atomic_load(&s.seen[i]) + s.unsent[i], 1,
                 "item %zu: received %d times, unsent %d (P%d C%d cap %zu select %d cancel_at %ld)", i,
                 (int)atomic_load(&s.seen[i]), s.unsent[i], P, C, cap, sel, cancel_at);
  }
  struct weft_chan_stats st[2];
  weft_chan_stats(s.ch[0], &st[0]);
  weft_chan_stats(s.ch[1], &st[1]);
  cr_assert_eq(st[0].sends + st[1].sends, (uint64_t)total - (uint64_t)unsent, "stats agree with the count");
  cr_assert_eq(st[0].recvs + st[1].recvs, st[0].sends + st[1].sends);
  for (int k = 0; k < 2; k++) cr_assert_eq(weft_chan_destroy(s.ch[k]), 0);
  weft_ctx_end(s.cancel);
  free(ws);
  free(th);
  free(s.seen);
  free(s.unsent);
}

static const size_t caps[] = {0, 1, 7, 1024};
#define NCAPS (sizeof caps / sizeof caps[0])

static int threads(void) { return (int)weft_test_env("WEFT_STRESS_THREADS", 2); }
static long items(void) { return weft_test_env("WEFT_STRESS_ITERS", 20000 / WEFT_TEST_SCALE); }

WEFT_TEST(chan_stress, mpmc_exactly_once) {
  for (size_t k = 0; k < NCAPS; k++) run(threads(), threads(), items(), caps[k], false, 0);
}

WEFT_TEST(chan_stress, more_threads_than_cores) {
  int t = threads();
  for (size_t k = 0; k < NCAPS; k++) run(2 * t, 2 * t - 1, items() / 4, caps[k], false, 0);
}

WEFT_TEST(chan_stress, select_send_and_recv_exactly_once) {
  for (size_t k = 0; k < NCAPS; k++) run(threads(), threads() + 1, items() / 2, caps[k], true, 0);
}

WEFT_TEST(chan_stress, cancel_mid_stream_loses_nothing) {
  long n = items();
  for (size_t k = 0; k < NCAPS; k++) run(threads() + 1, threads(), n, caps[k], false, n / 2);
}

WEFT_TEST(chan_stress, cancel_mid_stream_in_select_loses_nothing) {
  long n = items() / 2;
  for (size_t k = 0; k < NCAPS; k++) run(threads() + 1, threads(), n, caps[k], true, n / 2);
}
