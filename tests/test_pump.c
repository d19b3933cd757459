/* tests/test_pipeline_pump.c: weft_chan_merge and weft_chan_tee, blocking and on pump threads. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "weft_test.h"

typedef struct prod {
  weft_chan *ch;
  int64_t from, n;
} prod;

static void *producer(void *arg) {
  prod *p = arg;
  for (int64_t i = 0; i < p->n; i++) cr_assert_eq(weft_chan_send(p->ch, NULL, &(int64_t){p->from + i}), 0);
  weft_chan_close(p->ch);
  return NULL;
}

WEFT_TEST(pump, merge_moves_every_element_and_closes_out) {
  enum { N = 3, PER = 5000 };
  weft_chan *ins[N], *out;
  prod ps[N];
  pthread_t th[N];
  cr_assert_eq(weft_chan_create(sizeof(int64_t), 16, &out), 0);
  for (int i = 0; i < N; i++) {
    cr_assert_eq(weft_chan_create(sizeof(int64_t), 4, &ins[i]), 0);
    ps[i] = (prod){ins[i], (int64_t)i * PER, PER};
    pthread_create(&th[i], NULL, producer, &ps[i]);
  }
  weft_chan_pump *pu;
  cr_assert_eq(weft_chan_merge_start(NULL, out, ins, N, NULL, &pu), 0);
  static unsigned char seen[N * PER];
  int64_t v, last[N] = {-1, -1, -1};
  size_t got = 0;
  while (weft_chan_recv(out, NULL, &v) == 0) {
    cr_assert(v >= 0 && v < N * PER);
    cr_assert_eq(seen[v], 0, "element %ld twice", (long)v);
    seen[v] = 1;
    int src = (int)(v / PER);
    cr_assert_gt(v, last[src], "each input's order is kept");
    last[src] = v;
    got++;
  }
  cr_assert_eq(got, (size_t)N * PER);
  cr_assert(weft_chan_closed(out));
  cr_assert_eq(weft_chan_pump_join(pu), 0);
  for (int i = 0; i < N; i++) {
    pthread_join(th[i], NULL);
    weft_chan_destroy(ins[i]);
  }
  weft_chan_destroy(out);
}

typedef struct cons {
  weft_chan *ch;
  int64_t n;
  int64_t sum;
  bool in_order;
} cons;

static void *consumer(void *arg) {
  cons *c = arg;
  int64_t v, prev = -1;
  c->in_order = true;
  while (weft_chan_recv(c->ch, NULL, &v) == 0) {
    if (v != prev + 1) c->in_order = false;
    prev = v;
    c->n++;
    c->sum += v;
  }
  return NULL;
}

WEFT_TEST(pump, tee_broadcasts_every_element_in_order) {
  enum { N = 3, COUNT = 4000 };
  weft_chan *in, *outs[N];
  cr_assert_eq(weft_chan_create(sizeof(int64_t), 8, &in), 0);
  cons cs[N] = {0};
  pthread_t th[N + 1];
  for (int i = 0; i < N; i++) {
    cr_assert_eq(weft_chan_create(sizeof(int64_t), 1 + i, &outs[i]), 0);
    cs[i].ch = outs[i];
    pthread_create(&th[i], NULL, consumer, &cs[i]);
  }
  prod p = {in, 0, COUNT};
  pthread_create(&th[N], NULL, producer, &p);
  cr_assert_eq(weft_chan_tee(NULL, in, outs, N, NULL), 0); /* blocking, in this thread */
  for (int i = 0; i <= N; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < N; i++) {
    cr_assert_eq(cs[i].n, COUNT);
    cr_assert_eq(cs[i].sum, (int64_t)COUNT * (COUNT - 1) / 2);
    cr_assert(cs[i].in_order);
    cr_assert(weft_chan_closed(outs[i]));
    weft_chan_destroy(outs[i]);
  }
  weft_chan_destroy(in);
}

static _Atomic int released;
static void count_release(void *elem, void *arg) { atomic_fetch_add(&released, 1); }

WEFT_TEST(pump, cancel_stops_a_blocked_pump_and_releases_what_it_holds) {
  /* merge blocked sending (out full, nobody reads): cancel returns WEFT_ECANCELED and releases the element */
  weft_chan *in, *out;
  cr_assert_eq(weft_chan_create(sizeof(int64_t), 4, &in), 0);
  cr_assert_eq(weft_chan_create(sizeof(int64_t), 1, &out), 0);
  for (int64_t i = 0; i < 4; i++) cr_assert_eq(weft_chan_send(in, NULL, &i), 0);
  weft_ctx *ctx;
  weft_cancel *cancel = NULL;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &ctx, &cancel), 0);
  weft_pump_opts o = WEFT_PUMP_OPTS_INIT;
  o.discard = count_release;
  o.keep_open = true;
  weft_chan_pump *pu;
  cr_assert_eq(weft_chan_merge_start(ctx, out, &in, 1, &o, &pu), 0);
  while (weft_chan_len(out) < 1 || weft_chan_len(in) > 2) weft_ctx_sleep(weft_background(), WEFT_MS(1));
  weft_ctx_cancel(cancel);
  cr_assert_eq(weft_chan_pump_join(pu), WEFT_ECANCELED);
  cr_assert_eq(atomic_load(&released), 1, "the element in hand was released");
  cr_assert_not(weft_chan_closed(out), "keep_open");
  cr_assert_eq(weft_chan_len(out) + weft_chan_len(in) + 1, 4, "nothing lost: 4 = sent + left + released");

  /* tee blocked receiving on an empty input: cancel returns WEFT_ECANCELED and closes its outputs */
  weft_chan *in2, *outs[2];
  cr_assert_eq(weft_chan_create(sizeof(int64_t), 1, &in2), 0);
  cr_assert_eq(weft_chan_create(sizeof(int64_t), 1, &outs[0]), 0);
  cr_assert_eq(weft_chan_create(sizeof(int64_t), 1, &outs[1]), 0);
  weft_ctx *ctx2;
  weft_cancel *ctx2_cancel = NULL;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &ctx2, &ctx2_cancel), 0);
  cr_assert_eq(weft_chan_tee_start(ctx2, in2, outs, 2, NULL, &pu), 0);
  weft_ctx_cancel(ctx2_cancel);
  cr_assert_eq(weft_chan_pump_join(pu), WEFT_ECANCELED);
  cr_assert(weft_chan_closed(outs[0]) && weft_chan_closed(outs[1]));
  weft_ctx_end(cancel);
  weft_ctx_end(ctx2_cancel);
  weft_chan_destroy(in);
  weft_chan_destroy(out);
  weft_chan_destroy(in2);
  weft_chan_destroy(outs[0]);
  weft_chan_destroy(outs[1]);
}

WEFT_TEST(pump, bad_input_einval) {
  weft_chan *a, *b, *c4;
  cr_assert_eq(weft_chan_create(sizeof(int64_t), 1, &a), 0);
  cr_assert_eq(weft_chan_create(sizeof(int64_t), 1, &b), 0);
  cr_assert_eq(weft_chan_create(4, 1, &c4), 0);
  weft_chan *mixed[2] = {b, c4}, *withnull[2] = {b, NULL};
  cr_assert_eq(weft_chan_merge(NULL, NULL, &b, 1, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_chan_merge(NULL, a, NULL, 1, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_chan_merge(NULL, a, &b, 0, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_chan_merge(NULL, a, mixed, 2, NULL), WEFT_EINVAL, "element sizes differ");
  cr_assert_eq(weft_chan_tee(NULL, a, withnull, 2, NULL), WEFT_EINVAL);
  weft_chan_pump *pu = (weft_chan_pump *)1;
  cr_assert_eq(weft_chan_merge_start(NULL, NULL, &b, 1, NULL, &pu), WEFT_EINVAL);
  cr_assert_null(pu);
  pu = (weft_chan_pump *)1;
  cr_assert_eq(weft_chan_tee_start(NULL, a, mixed, 2, NULL, &pu), WEFT_EINVAL);
  cr_assert_eq(weft_chan_tee_start(NULL, a, &b, 1, NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_chan_pump_join(NULL), WEFT_EINVAL);
  cr_assert(!weft_chan_closed(a) && !weft_chan_closed(b), "failed calls touch nothing");
  weft_chan_destroy(a);
  weft_chan_destroy(b);
  weft_chan_destroy(c4);
}

/* The channel count of merge, tee and pumps is range-checked (1..64) before the array is read. */
WEFT_TEST(pump, channel_count_limits_einval) {
  weft_chan *a;
  cr_assert_eq(weft_chan_create(sizeof(int), 1, &a), 0);
  weft_chan *bs[1] = {a};
  static const size_t bad[] = {0, 65, (size_t)1 << 62, SIZE_MAX};
  weft_pump_opts keep = WEFT_PUMP_OPTS_INIT;
  keep.keep_open = true;
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    cr_assert_eq(weft_chan_merge(NULL, a, bs, bad[i], &keep), WEFT_EINVAL, "n %zu", bad[i]);
    cr_assert_eq(weft_chan_tee(NULL, a, bs, bad[i], &keep), WEFT_EINVAL);
    weft_chan_pump *pu;
    cr_assert_eq(weft_chan_merge_start(NULL, a, bs, bad[i], &keep, &pu), WEFT_EINVAL);
    cr_assert_null(pu);
  }
  cr_assert_not(weft_chan_closed(a));
  cr_assert_eq(weft_chan_destroy(a), 0);
}
