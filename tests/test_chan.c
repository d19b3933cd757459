/* tests/test_chan.c: channel semantics — creation, FIFO, rendezvous, close, cancel, deadlines, stats,
 * destroy. Timing is never asserted: tests wait for observable states (a thread counted as parked) and
 * check order and causality. */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "chan_test_util.h"

CHAN_TEST_SANITIZER_OPTIONS

/* ---- creation and bad input --------------------------------------------------------------------- */

WEFT_TEST(chan, create_einval) {
  weft_chan *ch = (weft_chan *)&ch;
  cr_assert_eq(weft_chan_create(4, 4, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_chan_create(0, 4, &ch), WEFT_EINVAL);
  cr_assert_null(ch, "*out is cleared on error");
  cr_assert_eq(weft_chan_create(SIZE_MAX, 2, &ch), WEFT_EINVAL);
  cr_assert_eq(weft_chan_create(SIZE_MAX - 4, 0, &ch), WEFT_EINVAL);
  cr_assert_eq(weft_chan_create(8, SIZE_MAX / 2, &ch), WEFT_EINVAL);
  cr_assert_eq(weft_chan_create(1u << 20, SIZE_MAX >> 10, &ch), WEFT_EINVAL);
  cr_assert_eq(weft_chan_create_opts(NULL, &ch), WEFT_EINVAL);
  cr_assert_eq(weft_chan_create_opts(NULL, NULL), WEFT_EINVAL);
}

WEFT_TEST(chan, create_enomem) {
  weft_chan *ch = NULL;
  /* 2^48 bytes: no overflow, but no allocator can give it. */
  cr_assert_eq(weft_chan_create((size_t)1 << 20, (size_t)1 << 28, &ch), WEFT_ENOMEM);
  cr_assert_null(ch);
}

WEFT_TEST(chan, null_arguments_einval) {
  weft_chan *ch = mk(sizeof(int), 2);
  int v = 1;
  struct weft_chan_stats st;
  cr_assert_eq(weft_chan_send(NULL, NULL, &v), WEFT_EINVAL);
  cr_assert_eq(weft_chan_send(ch, NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_chan_recv(NULL, NULL, &v), WEFT_EINVAL);
  cr_assert_eq(weft_chan_recv(ch, NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_chan_try_send(NULL, &v), WEFT_EINVAL);
  cr_assert_eq(weft_chan_try_send(ch, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_chan_try_recv(NULL, &v), WEFT_EINVAL);
  cr_assert_eq(weft_chan_try_recv(ch, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_chan_send_until(NULL, &v, WEFT_FOREVER), WEFT_EINVAL);
  cr_assert_eq(weft_chan_send_until(ch, NULL, WEFT_FOREVER), WEFT_EINVAL);
  cr_assert_eq(weft_chan_recv_until(NULL, &v, WEFT_FOREVER), WEFT_EINVAL);
  cr_assert_eq(weft_chan_recv_until(ch, NULL, WEFT_FOREVER), WEFT_EINVAL);
  cr_assert_eq(weft_chan_close(NULL), WEFT_EINVAL);
  cr_assert_eq(weft_chan_destroy(NULL), WEFT_EINVAL);
  cr_assert_eq(weft_chan_stats(NULL, &st), WEFT_EINVAL);
  cr_assert_eq(weft_chan_stats(ch, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_chan_timer_stop(NULL), WEFT_EINVAL);
  cr_assert_eq(weft_chan_timer_stop(ch), WEFT_EINVAL, "not a timer channel");
  cr_assert_eq(weft_chan_len(NULL), 0);
  cr_assert_eq(weft_chan_cap(NULL), 0);
  cr_assert_eq(weft_chan_elem_size(NULL), 0);
  cr_assert(!weft_chan_closed(NULL));
  cr_assert_eq(weft_chan_len(ch), 0, "failed calls sent nothing");
  cr_assert_eq(weft_chan_destroy(ch), 0);
}

/* ---- buffered FIFO ------------------------------------------------------------------------------ */

WEFT_TEST(chan, fifo_fill_and_drain_odd_capacity) {
  weft_chan *ch = mk(sizeof(int), 7);
  cr_assert_eq(weft_chan_cap(ch), 7);
  cr_assert_eq(weft_chan_elem_size(ch), sizeof(int));
  for (int round = 0; round < 5; round++) { /* several laps of the ring */
    for (int i = 0; i < 7; i++) cr_assert_eq(weft_chan_try_send(ch, &(int){round * 100 + i}), 0);
    int v = -1;
    cr_assert_eq(weft_chan_try_send(ch, &v), WEFT_EFULL, "capacity is exact, not rounded up");
    cr_assert_eq(weft_chan_len(ch), 7);
    for (int i = 0; i < 7; i++) {
      cr_assert_eq(weft_chan_try_recv(ch, &v), 0);
      cr_assert_eq(v, round * 100 + i);
    }
    v = -7;
    cr_assert_eq(weft_chan_try_recv(ch, &v), WEFT_EEMPTY);
    cr_assert_eq(v, -7, "buffer untouched on error");
    cr_assert_eq(weft_chan_len(ch), 0);
  }
  weft_chan_destroy(ch);
}

WEFT_TEST(chan, capacity_one_and_blocking_calls_without_waiting) {
  weft_chan *ch = mk(sizeof(uint64_t), 1);
  for (uint64_t i = 0; i < 1000; i++) {
    cr_assert_eq(weft_chan_send(ch, NULL, &i), 0);
    cr_assert_eq(weft_chan_try_send(ch, &i), WEFT_EFULL);
    uint64_t v;
    cr_assert_eq(weft_chan_recv(ch, weft_background(), &v), 0);
    cr_assert_eq(v, i);
  }
  weft_chan_destroy(ch);
}

WEFT_TEST(chan, large_elements_copied_whole) {
  struct big {
    char bytes[203];
  } in, out;
  weft_chan *ch = mk(sizeof in, 3);
  for (int i = 0; i < 3; i++) {
    memset(&in, 'a' + i, sizeof in);
    cr_assert_eq(weft_chan_try_send(ch, &in), 0);
  }
  memset(&in, 0, sizeof in); /* the channel holds copies */
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(weft_chan_try_recv(ch, &out), 0);
    for (size_t k = 0; k < sizeof out; k++) cr_assert_eq(out.bytes[k], 'a' + i);
  }
  weft_chan_destroy(ch);
}

typedef struct fifo_arg {
  weft_chan *ch;
  int id, n;
} fifo_arg;

static void *fifo_producer(void *p) {
  fifo_arg *a = p;
  for (int i = 0; i < a->n; i++) cr_assert_eq(weft_chan_send(a->ch, NULL, &(int){a->id << 20 | i}), 0);
  return NULL;
}

WEFT_TEST(chan, fifo_per_producer_with_blocking) {
  for (size_t cap = 0; cap <= 4; cap += 4) {
    weft_chan *ch = mk(sizeof(int), cap);
    enum { P = 3, N = 3000 };
    fifo_arg args[P];
    pthread_t th[P];
    for (int p = 0; p < P; p++) {
      args[p] = (fifo_arg){ch, p, N};
      th[p] = spawn(fifo_producer, &args[p]);
    }
    int next[P] = {0};
    for (int k = 0; k < P * N; k++) {
      int v;
      cr_assert_eq(weft_chan_recv(ch, NULL, &v), 0);
      int p = v >> 20, i = v & 0xfffff;
      cr_assert(p >= 0 && p < P);
      cr_assert_eq(i, next[p], "producer %d: got %d, expected %d (cap %zu)", p, i, next[p], cap);
      next[p]++;
    }
    for (int p = 0; p < P; p++) join(th[p]);
    weft_chan_destroy(ch);
  }
}

/* ---- rendezvous --------------------------------------------------------------------------------- */

WEFT_TEST(chan, rendezvous_try_needs_a_partner) {
  weft_chan *ch = mk(sizeof(int), 0);
  int v = 5;
  cr_assert_eq(weft_chan_cap(ch), 0);
  cr_assert_eq(weft_chan_try_send(ch, &v), WEFT_EFULL);
  cr_assert_eq(weft_chan_try_recv(ch, &v), WEFT_EEMPTY);
  cr_assert_eq(weft_chan_len(ch), 0);
  weft_chan_destroy(ch);
}

typedef struct rv_arg {
  weft_chan *ch;
  _Atomic int stage;
  int value;
  int rc;
} rv_arg;

static void *rv_receiver(void *p) {
  rv_arg *a = p;
  WAIT_UNTIL(chan_waits(a->ch, true) >= 1); /* the sender is parked */
  atomic_store(&a->stage, 1);
  a->rc = weft_chan_recv(a->ch, NULL, &a->value);
  return NULL;
}

WEFT_TEST(chan, rendezvous_sender_returns_after_receiver_took_it) {
  weft_chan *ch = mk(sizeof(int), 0);
  rv_arg a = {.ch = ch};
  pthread_t t = spawn(rv_receiver, &a);
  cr_assert_eq(weft_chan_send(ch, NULL, &(int){42}), 0);
  /* The receiver only started receiving after we were parked; we returned, so it took the element. */
  cr_assert_eq(atomic_load(&a.stage), 1);
  struct weft_chan_stats st;
  weft_chan_stats(ch, &st);
  cr_assert_eq(st.recvs, 1, "the hand-off is counted before the sender is released");
  cr_assert_eq(st.sends, 1);
  join(t);
  cr_assert_eq(a.rc, 0);
  cr_assert_eq(a.value, 42);
  weft_chan_destroy(ch);
}

static void *rv_blocked_receiver(void *p) {
  rv_arg *a = p;
  a->rc = weft_chan_recv(a->ch, NULL, &a->value);
  return NULL;
}

WEFT_TEST(chan, rendezvous_try_send_hands_to_parked_receiver) {
  weft_chan *ch = mk(sizeof(int), 0);
  rv_arg a = {.ch = ch};
  pthread_t t = spawn(rv_blocked_receiver, &a);
  WAIT_UNTIL(chan_waits(ch, false) >= 1);
  cr_assert_eq(weft_chan_try_send(ch, &(int){7}), 0);
  join(t);
  cr_assert_eq(a.rc, 0);
  cr_assert_eq(a.value, 7);
  cr_assert_eq(weft_chan_try_send(ch, &(int){8}), WEFT_EFULL, "nobody waits any more");
  weft_chan_destroy(ch);
}

/* ---- close -------------------------------------------------------------------------------------- */

WEFT_TEST(chan, close_then_drain) {
  weft_chan *ch = mk(sizeof(int), 4);
  for (int i = 0; i < 3; i++) cr_assert_eq(weft_chan_send(ch, NULL, &i), 0);
  cr_assert(!weft_chan_closed(ch));
  cr_assert_eq(weft_chan_close(ch), 0);
  cr_assert(weft_chan_closed(ch));
  int v = 99;
  cr_assert_eq(weft_chan_send(ch, NULL, &v), WEFT_ECLOSED);
  cr_assert_eq(weft_chan_try_send(ch, &v), WEFT_ECLOSED, "closed wins over room");
  cr_assert_eq(weft_chan_send_until(ch, &v, WEFT_FOREVER), WEFT_ECLOSED);
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(weft_chan_recv(ch, NULL, &v), 0);
    cr_assert_eq(v, i);
  }
  v = -1;
  cr_assert_eq(weft_chan_recv(ch, NULL, &v), WEFT_ECLOSED);
  cr_assert_eq(weft_chan_try_recv(ch, &v), WEFT_ECLOSED);
  cr_assert_eq(weft_chan_recv_until(ch, &v, WEFT_FOREVER), WEFT_ECLOSED);
  cr_assert_eq(v, -1);
  weft_chan_destroy(ch);
}

WEFT_TEST(chan, double_close_is_an_error) {
  for (size_t cap = 0; cap <= 1; cap++) {
    weft_chan *ch = mk(sizeof(int), cap);
    cr_assert_eq(weft_chan_close(ch), 0);
    cr_assert_eq(weft_chan_close(ch), WEFT_ECLOSED);
    cr_assert_eq(weft_chan_close(ch), WEFT_ECLOSED);
    cr_assert(weft_chan_closed(ch));
    cr_assert_eq(weft_chan_try_send(ch, &(int){1}), WEFT_ECLOSED);
    weft_chan_destroy(ch);
  }
}

typedef struct blk_arg {
  weft_chan *ch;
  weft_ctx *ctx;
  bool send;
  int rc;
  int value;
} blk_arg;

static void *blk_worker(void *p) {
  blk_arg *a = p;
  a->rc = a->send ? weft_chan_send(a->ch, a->ctx, &a->value) : weft_chan_recv(a->ch, a->ctx, &a->value);
  return NULL;
}

/* Starts n workers blocked in send (or recv) on ch and waits until all n are parked. */
static void start_blocked(blk_arg *args, pthread_t *th, int n, weft_chan *ch, weft_ctx *ctx, bool send) {
  uint64_t before = chan_waits(ch, send);
  for (int i = 0; i < n; i++) {
    args[i] = (blk_arg){.ch = ch, .ctx = ctx, .send = send, .rc = 1, .value = 1000 + i};
    th[i] = spawn(blk_worker, &args[i]);
  }
  WAIT_UNTIL(chan_waits(ch, send) >= before + (uint64_t)n);
}

WEFT_TEST(chan, close_wakes_every_blocked_receiver_and_sender) {
  enum { N = 6 };
  blk_arg args[N];
  pthread_t th[N];
  for (size_t cap = 0; cap <= 2; cap += 2) {
    weft_chan *ch = mk(sizeof(int), cap);
    start_blocked(args, th, N, ch, NULL, false);
    cr_assert_eq(weft_chan_close(ch), 0);
    for (int i = 0; i < N; i++) {
      join(th[i]);
      cr_assert_eq(args[i].rc, WEFT_ECLOSED);
    }
    weft_chan_destroy(ch);

    ch = mk(sizeof(int), cap);
    for (size_t i = 0; i < cap; i++) cr_assert_eq(weft_chan_try_send(ch, &(int){-1}), 0);
    start_blocked(args, th, N, ch, NULL, true);
    cr_assert_eq(weft_chan_close(ch), 0);
    for (int i = 0; i < N; i++) {
      join(th[i]);
      cr_assert_eq(args[i].rc, WEFT_ECLOSED);
    }
    cr_assert_eq(weft_chan_len(ch), cap, "no blocked send landed after close");
    weft_chan_destroy(ch);
  }
}

/* ---- cancellation ------------------------------------------------------------------------------- */

WEFT_TEST(chan, cancel_releases_blocked_senders) {
  /* Blocked senders released by cancel: workers blocked sending on a channel nobody reads. */
  enum { N = 8 }; /* more threads than cores */
  blk_arg args[N];
  pthread_t th[N];
  for (size_t cap = 0; cap <= 3; cap += 3) {
    weft_chan *ch = mk(sizeof(int), cap);
    for (size_t i = 0; i < cap; i++) cr_assert_eq(weft_chan_try_send(ch, &(int){-1}), 0);
    weft_ctx *ctx;
    weft_cancel *cancel = NULL;
    cr_assert_eq(weft_ctx_with_cancel(weft_background(), &ctx, &cancel), 0);
    start_blocked(args, th, N, ch, ctx, true);
    cr_assert_eq(weft_ctx_cancel(cancel), 0);
    for (int i = 0; i < N; i++) {
      join(th[i]);
      cr_assert_eq(args[i].rc, WEFT_ECANCELED, "worker %d: %s", i, weft_err_name(args[i].rc));
    }
    cr_assert_eq(weft_chan_len(ch), cap, "no cancelled element was sent");
    int v;
    for (size_t i = 0; i < cap; i++) {
      cr_assert_eq(weft_chan_try_recv(ch, &v), 0);
      cr_assert_eq(v, -1);
    }
    cr_assert_eq(weft_chan_try_recv(ch, &v), WEFT_EEMPTY);
    struct weft_chan_stats st;
    weft_chan_stats(ch, &st);
    cr_assert_eq(st.sends, cap);
    cr_assert_geq(st.send_waits, N);
    weft_ctx_end(cancel);
    weft_chan_destroy(ch);
  }
}

WEFT_TEST(chan, cancel_releases_blocked_receivers_without_consuming) {
  enum { N = 5 };
  blk_arg args[N];
  pthread_t th[N];
  for (size_t cap = 0; cap <= 1; cap++) {
    weft_chan *ch = mk(sizeof(int), cap);
    weft_ctx *parent, *ctx;
    weft_cancel *parent_cancel = NULL;
    weft_cancel *cancel = NULL;
    cr_assert_eq(weft_ctx_with_cancel(weft_background(), &parent, &parent_cancel), 0);
    cr_assert_eq(weft_ctx_with_cancel(parent, &ctx, &cancel), 0);
    start_blocked(args, th, N, ch, ctx, false);
    cr_assert_eq(weft_ctx_cancel(parent_cancel), 0, "cancelling the parent reaches the child's waiters");
    for (int i = 0; i < N; i++) {
      join(th[i]);
      cr_assert_eq(args[i].rc, WEFT_ECANCELED);
      cr_assert_eq(args[i].value, 1000 + i, "buffer untouched");
    }
    if (cap > 0) { /* the channel still works and nothing was taken from it */
      cr_assert_eq(weft_chan_try_send(ch, &(int){5}), 0);
      int v;
      cr_assert_eq(weft_chan_try_recv(ch, &v), 0);
      cr_assert_eq(v, 5);
    }
    weft_ctx_end(cancel);
    weft_ctx_end(parent_cancel);
    weft_chan_destroy(ch);
  }
}

WEFT_TEST(chan, done_context_on_entry) {
  weft_chan *ch = mk(sizeof(int), 2);
  weft_ctx *ctx;
  weft_cancel *cancel = NULL;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &ctx, &cancel), 0);
  weft_ctx_cancel(cancel);
  int v = 3;
  cr_assert_eq(weft_chan_send(ch, ctx, &v), WEFT_ECANCELED);
  cr_assert_eq(weft_chan_len(ch), 0, "nothing sent under a done context");
  cr_assert_eq(weft_chan_try_send(ch, &v), 0);
  cr_assert_eq(weft_chan_recv(ch, ctx, &v), WEFT_ECANCELED);
  cr_assert_eq(weft_chan_len(ch), 1, "nothing consumed under a done context");
  weft_ctx_end(cancel);
  weft_chan_destroy(ch);
}

WEFT_TEST(chan, context_deadline_ends_blocked_calls) {
  for (size_t cap = 0; cap <= 1; cap++) {
    weft_chan *ch = mk(sizeof(int), cap);
    weft_ctx *ctx;
    weft_cancel *cancel = NULL;
    int64_t start = weft_now();
    cr_assert_eq(weft_ctx_with_timeout(weft_background(), WEFT_MS(20), &ctx, &cancel), 0);
    int v = 9;
    cr_assert_eq(weft_chan_recv(ch, ctx, &v), WEFT_EDEADLINE);
    cr_assert_geq(weft_now(), start + WEFT_MS(20), "not before the deadline");
    cr_assert_eq(v, 9);
    weft_ctx_end(cancel);
    if (cap) cr_assert_eq(weft_chan_try_send(ch, &v), 0);
    cr_assert_eq(weft_ctx_with_timeout(weft_background(), WEFT_MS(10), &ctx, &cancel), 0);
    cr_assert_eq(weft_chan_send(ch, ctx, &v), WEFT_EDEADLINE);
    weft_ctx_end(cancel);
    cr_assert_eq(weft_chan_len(ch), cap);
    weft_chan_destroy(ch);
  }
}

/* ---- deadline variants -------------------------------------------------------------------------- */

WEFT_TEST(chan, until_variants) {
  for (size_t cap = 0; cap <= 1; cap++) {
    weft_chan *ch = mk(sizeof(int), cap);
    int v = 4;
    cr_assert_eq(weft_chan_recv_until(ch, &v, WEFT_NOWAIT), WEFT_ETIMEDOUT);
    int64_t d = weft_deadline_in(WEFT_MS(15));
    cr_assert_eq(weft_chan_recv_until(ch, &v, d), WEFT_ETIMEDOUT);
    cr_assert_geq(weft_now(), d);
    cr_assert_eq(v, 4);
    if (cap) {
      cr_assert_eq(weft_chan_send_until(ch, &v, WEFT_NOWAIT), 0, "room: no wait needed");
      cr_assert_eq(weft_chan_send_until(ch, &v, weft_deadline_in(WEFT_MS(5))), WEFT_ETIMEDOUT);
      cr_assert_eq(weft_chan_recv_until(ch, &v, WEFT_NOWAIT), 0);
    } else {
      cr_assert_eq(weft_chan_send_until(ch, &v, weft_deadline_in(WEFT_MS(5))), WEFT_ETIMEDOUT);
    }
    cr_assert_eq(weft_chan_len(ch), 0);
    weft_chan_destroy(ch);
  }
}

/* ---- stats, destroy ----------------------------------------------------------------------------- */

WEFT_TEST(chan, stats_count_sends_receives_and_waits) {
  weft_chan *ch = mk(sizeof(int), 4);
  for (int i = 0; i < 4; i++) weft_chan_try_send(ch, &i);
  weft_chan_try_send(ch, &(int){0}); /* full: not counted */
  int v;
  weft_chan_try_recv(ch, &v);
  struct weft_chan_stats st;
  cr_assert_eq(weft_chan_stats(ch, &st), 0);
  cr_assert_eq(st.sends, 4);
  cr_assert_eq(st.recvs, 1);
  cr_assert_eq(st.send_waits, 0);
  cr_assert_eq(st.recv_waits, 0);
  weft_chan_destroy(ch);

  ch = mk(sizeof(int), 1);
  blk_arg a[1];
  pthread_t th[1];
  start_blocked(a, th, 1, ch, NULL, false);
  cr_assert_eq(weft_chan_send(ch, NULL, &(int){77}), 0);
  join(th[0]);
  cr_assert_eq(a[0].rc, 0);
  cr_assert_eq(a[0].value, 77);
  weft_chan_stats(ch, &st);
  cr_assert_eq(st.recv_waits, 1);
  cr_assert_eq(st.sends, 1);
  cr_assert_eq(st.recvs, 1);
  weft_chan_destroy(ch);
}

static int released[16], nreleased;
static void release_hook(void *elem, void *arg) {
  cr_assert_eq(arg, &nreleased);
  released[nreleased++] = *(int *)elem;
}

WEFT_TEST(chan, destroy_hands_back_buffered_elements) {
  weft_chan_opts o = WEFT_CHAN_OPTS_INIT;
  o.elem_size = sizeof(int);
  o.capacity = 5;
  o.discard = release_hook;
  o.discard_arg = &nreleased;
  weft_chan *ch;
  cr_assert_eq(weft_chan_create_opts(&o, &ch), 0);
  for (int i = 0; i < 5; i++) weft_chan_try_send(ch, &(int){10 + i});
  int v;
  weft_chan_try_recv(ch, &v); /* 10 leaves; 11..14 stay */
  weft_chan_try_send(ch, &(int){15});
  cr_assert_eq(weft_chan_destroy(ch), 0);
  cr_assert_eq(nreleased, 5);
  for (int i = 0; i < 5; i++) cr_assert_eq(released[i], 11 + i, "FIFO order");
}

WEFT_TEST(chan, destroy_with_a_blocked_thread_is_ebusy) {
  weft_chan *ch = mk(sizeof(int), 0);
  blk_arg a[1];
  pthread_t th[1];
  start_blocked(a, th, 1, ch, NULL, false);
  cr_assert_eq(weft_chan_destroy(ch), WEFT_EBUSY);
  weft_chan_close(ch);
  join(th[0]);
  cr_assert_eq(a[0].rc, WEFT_ECLOSED);
  cr_assert_eq(weft_chan_destroy(ch), 0);
}

/* Sizes are range-checked: a buffer whose bytes would wrap or pass the documented bound is WEFT_EINVAL. */
WEFT_TEST(chan, create_size_limits_einval) {
  static const size_t huge[] = {SIZE_MAX, SIZE_MAX - 7, ((size_t)1 << 63) + 5, (size_t)1 << 62};
  weft_chan *ch;
  cr_assert_eq(weft_chan_create(0, 1, &ch), WEFT_EINVAL);
  cr_assert_null(ch);
  for (size_t i = 0; i < sizeof huge / sizeof *huge; i++) {
    cr_assert_eq(weft_chan_create(1, huge[i], &ch), WEFT_EINVAL, "capacity %zu", huge[i]);
    cr_assert_null(ch);
    cr_assert_eq(weft_chan_create(huge[i], 1, &ch), WEFT_EINVAL, "elem_size %zu", huge[i]);
    cr_assert_eq(weft_chan_create(huge[i], huge[i], &ch), WEFT_EINVAL);
  }
  cr_assert_eq(weft_chan_create(1, SIZE_MAX >> 3, &ch), WEFT_EINVAL);
  cr_assert_eq(weft_chan_create(1, (SIZE_MAX >> 3) + 1, &ch), WEFT_EINVAL);
  /* (elem_size rounded to 8, + 8) * capacity: 16 * 2^58 is PTRDIFF_MAX / 2 + 1; one less slot is allowed
   * (and then cannot be allocated). */
  cr_assert_eq(weft_chan_create(8, (size_t)1 << 58, &ch), WEFT_EINVAL);
  int rc = weft_chan_create(8, ((size_t)1 << 58) - 1, &ch);
  cr_assert(rc == WEFT_ENOMEM || rc == 0, "%d", rc);
  if (rc == 0) weft_chan_destroy(ch);
  /* A size that wraps when rounded up to 8. */
  cr_assert_eq(weft_chan_create(SIZE_MAX - 3, 0, &ch), WEFT_EINVAL);
  cr_assert_eq(weft_chan_create(1, 1, &ch), 0);
  int v = 1;
  cr_assert_eq(weft_chan_try_send(ch, &v), 0);
  cr_assert_eq(weft_chan_try_send(ch, &v), WEFT_EFULL);
  cr_assert_eq(weft_chan_destroy(ch), 0);
}
