/* Pipeline runs started without blocking the caller: weft_pipeline_start, weft_pipeline_fd,
 * weft_pipeline_done, weft_pipeline_join, with a loop thread that polls the descriptor and reads stats
 * during the run; the end by completion, error, cancel and drain; on_done's order and restrictions; bad
 * input and states. */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "weft_test.h"

/* A source that emits `n` items (0..n-1), then waits until the gate channel is closed or its context ends
 * (n < 0: emits until its context ends or emit fails). */
typedef struct src_arg {
  int64_t n;
  weft_chan *gate;
} src_arg;

static int gated_source(weft_ctx *ctx, weft_emitter *em, void *arg) {
  src_arg *a = arg;
  for (int64_t i = 0; a->n < 0 || i < a->n; i++) {
    int rc = weft_pipeline_emit(em, &i);
    if (rc != 0) return rc == WEFT_ESTOPPED ? 0 : rc;
    if (a->n < 0 && i % 64 == 0 && weft_ctx_err(ctx) != 0) return weft_ctx_err(ctx);
  }
  if ((weft_pipeline_flush(em)) != 0) return 0;
  if (a->gate == NULL) return 0;
  int x;
  int rc = weft_chan_recv(a->gate, ctx, &x);
  return rc == WEFT_ECLOSED || rc == WEFT_ESTOPPED ? 0 : rc;
}

static int fail_at_7(weft_ctx *ctx, const void *in, void *out, void *arg) {
  (void)ctx;
  (void)arg;
  int64_t v = *(const int64_t *)in;
  if (v == 7) return -77;
  *(int64_t *)out = v;
  return 0;
}

static int sum_sink(weft_ctx *ctx, const void *item, void *arg) {
  (void)ctx;
  atomic_fetch_add((_Atomic int64_t *)arg, *(const int64_t *)item);
  return 0;
}

static weft_pipeline *build(src_arg *sa, _Atomic int64_t *sum, bool failing) {
  weft_pipeline *p;
  cr_assert_eq(weft_pipeline_create(NULL, &p), 0);
  weft_stage_opts so = WEFT_STAGE_OPTS_INIT;
  so.name = "src";
  so.item_size = sizeof(int64_t);
  so.burst = 1;
  cr_assert_eq(weft_pipeline_source(p, &so, gated_source, sa), 0);
  if (failing) {
    weft_stage_opts mo = WEFT_STAGE_OPTS_INIT;
    mo.name = "fail7";
    cr_assert_eq(weft_pipeline_map(p, &mo, fail_at_7, NULL), 0);
  }
  weft_stage_opts ko = WEFT_STAGE_OPTS_INIT;
  ko.name = "sum";
  cr_assert_eq(weft_pipeline_sink(p, &ko, sum_sink, sum), 0);
  return p;
}

static bool readable(int fd, int ms) {
  struct pollfd pfd = {fd, POLLIN, 0};
  return poll(&pfd, 1, ms) == 1;
}

typedef struct done_rec {
  _Atomic int calls;
  int err;
  pthread_t thread;
  int join_rc;
  bool done_inside; /* weft_pipeline_done() as seen inside on_done */
} done_rec;

static void on_end(weft_pipeline *p, const weft_pipeline_report *rep, void *arg) {
  done_rec *d = arg;
  d->err = rep->err;
  d->thread = pthread_self();
  d->join_rc = weft_pipeline_join(p, NULL, NULL);
  d->done_inside = weft_pipeline_done(p);
  atomic_fetch_add(&d->calls, 1);
}

/* The caller returns at once; a loop (this thread) polls the descriptor with a timeout as its tick and
 * reads stats while the run goes on; the run ends when the gate closes. */
WEFT_TEST(pipeline_start, returns_at_once_stats_from_the_loop_then_fd) {
  weft_chan *gate;
  cr_assert_eq(weft_chan_create(sizeof(int), 1, &gate), 0);
  src_arg sa = {1000, gate};
  _Atomic int64_t sum = 0;
  weft_pipeline *p = build(&sa, &sum, false);
  done_rec d = {0};
  cr_assert_eq(weft_pipeline_start(p, NULL, on_end, &d), 0);
  int fd = weft_pipeline_fd(p);
  cr_assert_geq(fd, 0);
  cr_assert_eq(weft_pipeline_fd(p), fd);
  /* The run cannot end before the gate closes: the source waits for it. */
  weft_stage_stats st;
  uint64_t last = 0;
  int ticks = 0;
  for (;;) {
    cr_assert(!readable(fd, 2), "the run cannot have ended");
    cr_assert(!weft_pipeline_done(p));
    cr_assert_eq(weft_pipeline_stats(p, 1, &st), 0);
    cr_assert_geq(st.items_out, last, "stats only grow");
    last = st.items_out;
    ticks++;
    if (last == 1000) break;
  }
  cr_assert_eq(atomic_load(&d.calls), 0);
  cr_assert_eq(weft_pipeline_run(p, NULL, NULL), WEFT_ESTATE, "one run at a time");
  cr_assert_eq(weft_pipeline_start(p, NULL, NULL, NULL), WEFT_ESTATE);
  cr_assert_eq(weft_pipeline_destroy(p), WEFT_EBUSY, "destroy refuses a running pipeline");
  cr_assert_eq(weft_chan_close(gate), 0);
  cr_assert(readable(fd, 10000), "the end turns the descriptor readable");
  cr_assert(readable(fd, 0), "and it stays readable");
  cr_assert(weft_pipeline_done(p));
  cr_assert_eq(atomic_load(&d.calls), 1, "on_done returned before the descriptor turned readable");
  cr_assert_eq(d.err, 0);
  cr_assert_eq(d.join_rc, WEFT_EBUSY, "join from on_done is refused");
  cr_assert(!d.done_inside, "inside on_done the run is not yet reported done");
  cr_assert(!pthread_equal(d.thread, pthread_self()));
  weft_pipeline_report rep;
  cr_assert_eq(weft_pipeline_join(p, NULL, &rep), 0);
  cr_assert_eq(rep.err, 0);
  cr_assert_eq(rep.stage, -1);
  cr_assert_eq(atomic_load(&sum), 999 * 1000 / 2);
  cr_assert_eq(weft_pipeline_join(p, NULL, &rep), 0, "join again: same result");
  cr_assert_eq(weft_pipeline_start(p, NULL, NULL, NULL), WEFT_ESTATE, "a pipeline runs once");
  cr_log_info("loop ticks during the run: %d", ticks);
  cr_assert_eq(weft_pipeline_destroy(p), 0);
  weft_chan_destroy(gate);
}

WEFT_TEST(pipeline_start, cancel_through_ctx_and_bounded_join) {
  src_arg sa = {-1, NULL};
  _Atomic int64_t sum = 0;
  weft_pipeline *p = build(&sa, &sum, false);
  weft_ctx *c;
  weft_cancel *k;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &c, &k), 0);
  cr_assert_eq(weft_pipeline_start(p, c, NULL, NULL), 0);

  weft_ctx *patience;
  weft_cancel *pk;
  cr_assert_eq(weft_ctx_with_timeout(weft_background(), WEFT_MS(20), &patience, &pk), 0);
  cr_assert_eq(weft_pipeline_join(p, patience, NULL), WEFT_EDEADLINE, "the run goes on (endless source)");
  weft_ctx_end(pk);
  cr_assert(!weft_pipeline_done(p));
  weft_ctx_cancel(k);
  weft_pipeline_report rep;
  cr_assert_eq(weft_pipeline_join(p, NULL, &rep), WEFT_ECANCELED);
  cr_assert_eq(rep.err, WEFT_ECANCELED);
  cr_assert(weft_pipeline_done(p));
  cr_assert_eq(weft_pipeline_destroy(p), 0);
  weft_ctx_end(k);
}

WEFT_TEST(pipeline_start, drain_from_the_loop) {
  src_arg sa = {-1, NULL};
  _Atomic int64_t sum = 0;
  weft_pipeline *p = build(&sa, &sum, false);
  cr_assert_eq(weft_pipeline_start(p, NULL, NULL, NULL), 0);
  int fd = weft_pipeline_fd(p);
  weft_stage_stats st;
  do {
    cr_assert(!readable(fd, 1));
    weft_pipeline_stats(p, 1, &st);
  } while (st.items_out < 100);
  cr_assert_eq(weft_pipeline_drain(p), 0);
  cr_assert(readable(fd, 10000));
  weft_pipeline_report rep;
  cr_assert_eq(weft_pipeline_join(p, NULL, &rep), 0);
  cr_assert(rep.drained);
  weft_pipeline_stats(p, 1, &st);
  int64_t n = (int64_t)st.items_out;
  cr_assert_eq(atomic_load(&sum), n * (n - 1) / 2, "everything emitted went through");
  cr_assert_eq(weft_pipeline_destroy(p), 0);
}

WEFT_TEST(pipeline_start, stage_error_is_the_result_and_on_done_sees_it) {
  src_arg sa = {100, NULL};
  _Atomic int64_t sum = 0;
  weft_pipeline *p = build(&sa, &sum, true);
  done_rec d = {0};
  cr_assert_eq(weft_pipeline_start(p, NULL, on_end, &d), 0);
  weft_pipeline_report rep;
  cr_assert_eq(weft_pipeline_join(p, NULL, &rep), -77);
  cr_assert_eq(rep.stage, 1);
  cr_assert_str_eq(rep.stage_name, "fail7");
  cr_assert_eq(atomic_load(&d.calls), 1, "join returns after on_done");
  cr_assert_eq(d.err, -77);
  cr_assert_eq(weft_pipeline_destroy(p), 0);
}

/* The descriptor in an epoll set (level-triggered); destroy without join joins the run's thread. */
WEFT_TEST(pipeline_start, epoll_and_destroy_without_join) {
  src_arg sa = {10, NULL};
  _Atomic int64_t sum = 0;
  weft_pipeline *p = build(&sa, &sum, false);
  cr_assert_eq(weft_pipeline_start(p, NULL, NULL, NULL), 0);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = p};
  cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, weft_pipeline_fd(p), &ev), 0);
  struct epoll_event out;
  cr_assert_eq(epoll_wait(ep, &out, 1, 10000), 1);
  cr_assert_eq(out.data.ptr, p);
  cr_assert_eq(epoll_wait(ep, &out, 1, 0), 1, "level: still reported");
  cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_DEL, weft_pipeline_fd(p), NULL), 0);
  close(ep);
  cr_assert_eq(atomic_load(&sum), 45);
  cr_assert_eq(weft_pipeline_destroy(p), 0);
}

WEFT_TEST(pipeline_start, bad_input_and_states) {
  cr_assert_eq(weft_pipeline_start(NULL, NULL, NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_pipeline_fd(NULL), WEFT_EINVAL);
  cr_assert_eq(weft_pipeline_join(NULL, NULL, NULL), WEFT_EINVAL);
  cr_assert(!weft_pipeline_done(NULL));
  weft_pipeline *p;
  cr_assert_eq(weft_pipeline_create(NULL, &p), 0);
  cr_assert_eq(weft_pipeline_fd(p), WEFT_ESTATE, "nothing started");
  cr_assert_eq(weft_pipeline_join(p, NULL, NULL), WEFT_ESTATE);
  cr_assert(!weft_pipeline_done(p));
  cr_assert_eq(weft_pipeline_start(p, NULL, NULL, NULL), WEFT_EINVAL, "no source, no sink");
  src_arg sa = {3, NULL};
  weft_stage_opts so = WEFT_STAGE_OPTS_INIT;
  so.item_size = sizeof(int64_t);
  cr_assert_eq(weft_pipeline_source(p, &so, gated_source, &sa), 0);
  cr_assert_eq(weft_pipeline_start(p, NULL, NULL, NULL), WEFT_EINVAL, "no sink");
  cr_assert_eq(weft_pipeline_fd(p), WEFT_ESTATE, "a failed start started nothing");
  _Atomic int64_t sum = 0;
  cr_assert_eq(weft_pipeline_sink(p, NULL, sum_sink, &sum), 0);
  weft_ctx *c;
  weft_cancel *k;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &c, &k), 0);
  weft_ctx_cancel(k);
  cr_assert_eq(weft_pipeline_start(p, c, NULL, NULL), 0, "a context already done: the run ends at once");
  cr_assert_eq(weft_pipeline_join(p, NULL, NULL), WEFT_ECANCELED);
  cr_assert_eq(weft_pipeline_destroy(p), 0);
  weft_ctx_end(k);
}

/* Many started runs at once, joined from one loop that polls all their descriptors. */
WEFT_TEST(pipeline_start, many_runs_one_loop) {
  enum { N = 8 };
  weft_pipeline *p[N];
  src_arg sa[N];
  _Atomic int64_t sum[N];
  struct pollfd pfd[N];
  for (int i = 0; i < N; i++) {
    sa[i] = (src_arg){100 * (i + 1), NULL};
    atomic_store(&sum[i], 0);
    p[i] = build(&sa[i], &sum[i], false);
    cr_assert_eq(weft_pipeline_start(p[i], NULL, NULL, NULL), 0);
    pfd[i] = (struct pollfd){weft_pipeline_fd(p[i]), POLLIN, 0};
  }
  int left = N;
  bool joined[N] = {false};
  while (left > 0) {
    int n = poll(pfd, N, 10000);
    cr_assert_gt(n, 0, "some run ends");
    for (int i = 0; i < N; i++) {
      if (joined[i] || !(pfd[i].revents & POLLIN)) continue;
      cr_assert_eq(weft_pipeline_join(p[i], NULL, NULL), 0);
      int64_t m = 100 * (i + 1);
      cr_assert_eq(atomic_load(&sum[i]), m * (m - 1) / 2);
      pfd[i].fd = -1; /* poll ignores negative descriptors */
      joined[i] = true;
      left--;
      cr_assert_eq(weft_pipeline_destroy(p[i]), 0);
    }
  }
}
