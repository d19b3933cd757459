/* bench/bench_chan.c: chan_spsc, chan_pingpong, cancel_latency (bench/README.md, "Workloads").
 *
 * chan_spsc: one producer sends 10,000,000 int64 (0..N-1) into a channel of capacity 1024, one consumer
 * receives them; checked: the sum and the count; op = one item.
 * chan_pingpong: two threads bounce a token through two channels of capacity 1, 1,000,000 round trips;
 * checked: every echo carries the value sent; op = one round trip.
 * cancel_latency: 64 threads blocked in weft_chan_recv() on empty channels (one each) under one shared
 * parent context; cancel the parent; latency = last thread's return time - the time before the cancel.
 * 200 trials. In the same run, interleaved trial by trial, the floor: the same 64 threads parked on one
 * futex word, woken by one FUTEX_WAKE of INT_MAX, timed the same way. Before each trial every thread is
 * seen parked (state S in /proc) after it has announced itself (and, for weft, after its channel counted
 * it as a waiter), so both sides start from threads asleep in the kernel. Checked: every recv returned
 * WEFT_ECANCELED, every floor waiter saw the word change. ns_per_op = weft's p50 per trial.
 */
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <weft/weft.h>

#include "bench.h"

/* ---- chan_spsc ---------------------------------------------------------------------------------- */

enum { SPSC_ITEMS = 10000000, SPSC_CAP = 1024 };

/* Shared between the two threads: a line of its own, read before the loop and written after it. Each
 * thread's loop touches only its locals: a loop variable whose address goes to weft_chan_send() lives in
 * memory, and when it shared a line with what the other thread reloads after every call (s->ch), the line
 * crossed cores on every item — a per-process coin toss on the stack's alignment (~30 ns vs ~7). */
typedef struct spsc {
  _Alignas(64) weft_chan *ch;
  long n;
  int64_t sum;
  long count;
  int rc;
} spsc;

static void *spsc_consumer(void *p) {
  spsc *s = p;
  weft_chan *ch = s->ch;
  int64_t v, sum = 0;
  long count = 0;
  int rc;
  while ((rc = weft_chan_recv(ch, NULL, &v)) == 0) sum += v, count++;
  s->sum = sum;
  s->count = count;
  s->rc = rc;
  return NULL;
}

static int bench_chan_spsc(bench_result *r) {
  static spsc s;
  s = (spsc){.n = SPSC_ITEMS};
  BENCH_CHECK(weft_chan_create(sizeof(int64_t), SPSC_CAP, &s.ch) == 0);
  weft_chan *ch = s.ch;
  const long n = s.n;
  pthread_t th;
  int64_t t0 = bench_now_ns();
  BENCH_CHECK(pthread_create(&th, NULL, spsc_consumer, &s) == 0);
  for (int64_t i = 0; i < n; i++)
    if (weft_chan_send(ch, NULL, &i) != 0) return 1;
  weft_chan_close(ch);
  pthread_join(th, NULL);
  int64_t t1 = bench_now_ns();
  BENCH_CHECK(s.rc == WEFT_ECLOSED);
  BENCH_CHECK(s.count == s.n);
  BENCH_CHECK(s.sum == (int64_t)s.n * (s.n - 1) / 2);
  struct weft_chan_stats st;
  weft_chan_stats(s.ch, &st);
  BENCH_CHECK(st.sends == (uint64_t)s.n && st.recvs == (uint64_t)s.n);
  r->ops = s.n;
  r->ns_per_op = (double)(t1 - t0) / (double)s.n;
  snprintf(r->extra, sizeof r->extra, " send_waits=%" PRIu64 " recv_waits=%" PRIu64, st.send_waits,
           st.recv_waits);
  weft_chan_destroy(s.ch);
  return 0;
}
WEFT_BENCH(chan_spsc, bench_chan_spsc, 50)

/* ---- chan_pingpong ------------------------------------------------------------------------------ */

enum { PP_ROUNDS = 1000000 };

/* Shared the same way as spsc's (a line of its own; the loops use locals). */
typedef struct pingpong {
  _Alignas(64) weft_chan *ping, *pong;
  long n;
  int bad;
} pingpong;

static void *pp_echo(void *p) {
  pingpong *s = p;
  weft_chan *ping = s->ping, *pong = s->pong;
  const long n = s->n;
  int64_t v;
  for (long i = 0; i < n; i++) {
    if (weft_chan_recv(ping, NULL, &v) != 0 || weft_chan_send(pong, NULL, &v) != 0) {
      s->bad = 1;
      break;
    }
  }
  return NULL;
}

static int bench_chan_pingpong(bench_result *r) {
  static pingpong s;
  s = (pingpong){.n = PP_ROUNDS};
  BENCH_CHECK(weft_chan_create(sizeof(int64_t), 1, &s.ping) == 0);
  BENCH_CHECK(weft_chan_create(sizeof(int64_t), 1, &s.pong) == 0);
  weft_chan *ping = s.ping, *pong = s.pong;
  const long n = s.n;
  pthread_t th;
  int64_t t0 = bench_now_ns();
  BENCH_CHECK(pthread_create(&th, NULL, pp_echo, &s) == 0);
  long ok = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t v = -1;
    if (weft_chan_send(ping, NULL, &i) != 0 || weft_chan_recv(pong, NULL, &v) != 0) break;
    ok += v == i;
  }
  pthread_join(th, NULL);
  int64_t t1 = bench_now_ns();
  BENCH_CHECK(!s.bad);
  BENCH_CHECK(ok == s.n);
  struct weft_chan_stats a, b;
  weft_chan_stats(s.ping, &a);
  weft_chan_stats(s.pong, &b);
  BENCH_CHECK(a.recvs == (uint64_t)s.n && b.recvs == (uint64_t)s.n);
  r->ops = s.n;
  r->ns_per_op = (double)(t1 - t0) / (double)s.n;
  snprintf(r->extra, sizeof r->extra, " parks=%" PRIu64,
           a.recv_waits + a.send_waits + b.recv_waits + b.send_waits);
  weft_chan_destroy(s.ping);
  weft_chan_destroy(s.pong);
  return 0;
}
WEFT_BENCH(chan_pingpong, bench_chan_pingpong, 51)

/* ---- cancel_latency ----------------------------------------------------------------------------- */

enum { CL_THREADS = 64, CL_TRIALS = 200 };

static struct {
  _Atomic uint32_t gen;  /* bumped to start a trial; UINT32_MAX-ish stop flag below */
  _Atomic uint32_t done; /* threads returned this trial */
  _Atomic uint32_t floor_word;
  _Atomic int stop;
  _Atomic int floor_mode;
  weft_ctx *parent;
  weft_cancel *parent_cancel;
  weft_chan *ch[CL_THREADS];
  _Atomic int ready[CL_THREADS];
  _Atomic pid_t tid[CL_THREADS];
  int64_t t_end[CL_THREADS];
  _Atomic int bad;
} CL;

static long futex(_Atomic uint32_t *w, int op, uint32_t val) {
  return syscall(SYS_futex, (uint32_t *)w, op | FUTEX_PRIVATE_FLAG, val, NULL, NULL, 0);
}

static void *cl_worker(void *p) {
  int i = (int)(intptr_t)p;
  atomic_store(&CL.tid[i], (pid_t)syscall(SYS_gettid));
  uint32_t seen = 0;
  for (;;) {
    uint32_t g;
    while ((g = atomic_load(&CL.gen)) == seen) futex(&CL.gen, FUTEX_WAIT, seen);
    seen = g;
    if (atomic_load(&CL.stop)) return NULL;
    atomic_store(&CL.ready[i], 1);
    if (atomic_load(&CL.floor_mode)) {
      while (atomic_load(&CL.floor_word) == 0) futex(&CL.floor_word, FUTEX_WAIT, 0);
    } else {
      int64_t v;
      if (weft_chan_recv(CL.ch[i], CL.parent, &v) != WEFT_ECANCELED) atomic_store(&CL.bad, 1);
    }
    CL.t_end[i] = bench_now_ns();
    if (atomic_fetch_add(&CL.done, 1) + 1 == CL_THREADS) futex(&CL.done, FUTEX_WAKE, 1);
  }
}

/* True when thread `tid` is asleep (state S) right now. */
static bool cl_sleeping(pid_t tid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return false;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *rp = strrchr(buf, ')');
  return rp != NULL && rp[1] == ' ' && rp[2] == 'S';
}

static uint64_t cl_waits(void) {
  uint64_t sum = 0;
  for (int i = 0; i < CL_THREADS; i++) {
    struct weft_chan_stats st;
    weft_chan_stats(CL.ch[i], &st);
    sum += st.recv_waits;
  }
  return sum;
}

/* One trial; returns the latency in ns, or -1 on a failed check. */
static int64_t cl_trial(bool floor_mode, uint64_t *waits_expected) {
  atomic_store(&CL.done, 0);
  for (int i = 0; i < CL_THREADS; i++) atomic_store(&CL.ready[i], 0);
  atomic_store(&CL.floor_mode, floor_mode);
  if (floor_mode) {
    atomic_store(&CL.floor_word, 0);
  } else if (weft_ctx_with_cancel(weft_background(), &CL.parent, &CL.parent_cancel) != 0) {
    return -1;
  }
  atomic_fetch_add(&CL.gen, 1);
  futex(&CL.gen, FUTEX_WAKE, INT_MAX);
  if (!floor_mode) *waits_expected += CL_THREADS;
  for (int64_t give_up = bench_now_ns() + INT64_C(10000000000);;) {
    bool all = floor_mode || cl_waits() >= *waits_expected;
    for (int i = 0; all && i < CL_THREADS; i++) all = atomic_load(&CL.ready[i]) && cl_sleeping(CL.tid[i]);
    if (all) break;
    if (bench_now_ns() > give_up) return -1;
    usleep(100);
  }
  int64_t t0 = bench_now_ns();
  if (floor_mode) {
    atomic_store(&CL.floor_word, 1);
    futex(&CL.floor_word, FUTEX_WAKE, INT_MAX);
  } else {
    weft_ctx_cancel(CL.parent_cancel);
  }
  uint32_t d;
  while ((d = atomic_load(&CL.done)) != CL_THREADS) futex(&CL.done, FUTEX_WAIT, d);
  int64_t last = 0;
  for (int i = 0; i < CL_THREADS; i++)
    if (CL.t_end[i] > last) last = CL.t_end[i];
  if (!floor_mode) {
    weft_ctx_release(CL.parent);
    CL.parent = NULL;
  }
  return last - t0;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static double pct_us(int64_t *v, int n, double p) {
  int k = (int)(p * n + 0.999999) - 1;
  if (k < 0) k = 0;
  return (double)v[k] / 1000.0;
}

static int bench_cancel_latency(bench_result *r) {
  memset(&CL, 0, sizeof CL);
  for (int i = 0; i < CL_THREADS; i++) BENCH_CHECK(weft_chan_create(sizeof(int64_t), 1, &CL.ch[i]) == 0);
  pthread_t th[CL_THREADS];
  for (int i = 0; i < CL_THREADS; i++)
    BENCH_CHECK(pthread_create(&th[i], NULL, cl_worker, (void *)(intptr_t)i) == 0);
  for (int i = 0; i < CL_THREADS; i++)
    while (atomic_load(&CL.tid[i]) == 0) usleep(100);
  static int64_t lat[CL_TRIALS], flo[CL_TRIALS];
  uint64_t waits = 0;
  int rc = 0;
  for (int t = 0; t < CL_TRIALS && rc == 0; t++) {
    if ((lat[t] = cl_trial(false, &waits)) < 0) rc = 1;
    if ((flo[t] = cl_trial(true, &waits)) < 0) rc = 1;
  }
  atomic_store(&CL.stop, 1);
  atomic_fetch_add(&CL.gen, 1);
  futex(&CL.gen, FUTEX_WAKE, INT_MAX);
  for (int i = 0; i < CL_THREADS; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < CL_THREADS; i++) weft_chan_destroy(CL.ch[i]);
  BENCH_CHECK(rc == 0);
  BENCH_CHECK(!atomic_load(&CL.bad));
  qsort(lat, CL_TRIALS, sizeof lat[0], cmp_i64);
  qsort(flo, CL_TRIALS, sizeof flo[0], cmp_i64);
  double p50 = pct_us(lat, CL_TRIALS, 0.50), p99 = pct_us(lat, CL_TRIALS, 0.99);
  double f50 = pct_us(flo, CL_TRIALS, 0.50), f99 = pct_us(flo, CL_TRIALS, 0.99);
  r->ops = CL_TRIALS;
  r->ns_per_op = p50 * 1000.0;
  snprintf(r->extra, sizeof r->extra,
           " p50_us=%.1f p99_us=%.1f floor_p50_us=%.1f floor_p99_us=%.1f p99_vs_floor=%.2f threads=%d", p50,
           p99, f50, f99, p99 / f99, CL_THREADS);
  return 0;
}
WEFT_BENCH(cancel_latency, bench_cancel_latency, 52)
