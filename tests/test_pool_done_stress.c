/* Completion stress: T submitter threads x N jobs, every job with a completion channel (and half of them
 * with an on_done callback too), a loop thread draining the channel as an event loop would, jobs that
 * fail, jobs under a submitter context cancelled at a random moment, jobs that block, and a shutdown at a
 * random moment. The channel is smaller than the number of jobs in flight, so submitters meet WEFT_EFULL
 * (room reserved) and retry while the loop drains. Checked per job: every accepted job's completion
 * arrives exactly once, its on_done ran exactly once (when asked for) before it, its class agrees with
 * whether it ran or was discarded, a refused job reports nothing; and the classes received add up to the
 * pool's report. The loop waits either in weft_chan_recv or in poll() on weft_chan_fd (level-triggered).
 * Sizes: WEFT_STRESS_THREADS (default 4), WEFT_STRESS_ITERS (jobs per submitter), WEFT_STRESS_ROUNDS;
 * WEFT_SEED replays a run. */
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "weft_test.h"

typedef struct job_rec {
  _Atomic uint8_t accepted, ran, discarded, done_calls, completions, want_done;
  _Atomic int8_t state; /* from the completion */
} job_rec;

static job_rec *jobs;
static weft_pool *pool;
static weft_chan *dc;
static weft_ctx *sub_ctx;
static weft_cancel *sub_cancel;
static _Atomic int stop_loop;
static _Atomic int bad_order;

static int stress_job(weft_ctx *ctx, void *arg) {
  size_t id = (size_t)(uintptr_t)arg;
  atomic_fetch_add(&jobs[id].ran, 1);
  if ((id * 40503u) % 97 == 0) {
    int rc = weft_ctx_sleep(ctx, WEFT_US(500));
    if (rc != 0) return rc;
  }
  return (id * 2654435761u) % 7 == 0 ? -100 : 0;
}

static void stress_discard(void *arg, void *darg) {
  (void)darg;
  size_t id = (size_t)(uintptr_t)arg;
  /* on_done runs before the discard hook */
  if (atomic_load(&jobs[id].want_done) && atomic_load(&jobs[id].done_calls) == 0) atomic_fetch_add(&bad_order, 1);
  atomic_fetch_add(&jobs[id].discarded, 1);
}

static void stress_done(void *arg, int rc, weft_job_state st, void *darg) {
  (void)rc;
  (void)st;
  size_t id = (size_t)(uintptr_t)arg;
  if (darg != &jobs[id]) atomic_fetch_add(&bad_order, 1);
  atomic_fetch_add(&jobs[id].done_calls, 1);
}

typedef struct sub {
  size_t first, n;
  unsigned seed;
  pthread_t th;
} sub;

static void *submitter(void *a) {
  sub *s = a;
  for (size_t i = 0; i < s->n; i++) {
    size_t id = s->first + i;
    unsigned r = (unsigned)weft_test_rand(&s->seed);
    weft_job_opts jo = WEFT_JOB_OPTS_INIT;
    jo.done_chan = dc;
    jo.done_arg = &jobs[id];
    if (r % 2) {
      jo.on_done = stress_done;
      atomic_store(&jobs[id].want_done, 1);
    }
    if (r % 5 == 0) jo.run_ctx = sub_ctx;
    jo.nowait = r % 3 == 0;
    int rc;
    while ((rc = weft_pool_submit_opts(pool, NULL, stress_job, (void *)(uintptr_t)id, &jo, NULL)) == WEFT_EFULL)
      sched_yield(); /* the channel's room is reserved (or the queue is full): the loop drains it */
    if (rc == WEFT_ESTOPPED) break;
    cr_assert_eq(rc, 0, "submit: %s", weft_err_name(rc));
    atomic_store(&jobs[id].accepted, 1);
  }
  return NULL;
}

static void take(const struct weft_completion *c) {
  size_t id = (size_t)(uintptr_t)c->arg;
  job_rec *j = &jobs[id];
  if (c->done_arg != j) atomic_fetch_add(&bad_order, 1);
  if (atomic_load(&j->want_done) && atomic_load(&j->done_calls) != 1) atomic_fetch_add(&bad_order, 1);
  atomic_store(&j->state, (int8_t)c->state);
  atomic_fetch_add(&j->completions, 1);
}

typedef struct loop_arg {
  bool use_fd;
  uint64_t received, polls, empty_wakeups;
} loop_arg;

/* The loop thread: waits for completions, receives every one that is there, repeats until told to stop
 * (then the main thread drains the rest). */
static void *loop_main(void *a) {
  loop_arg *la = a;
  struct weft_completion c;
  if (la->use_fd) {
    int fd = weft_chan_fd(dc);
    cr_assert_geq(fd, 0, "weft_chan_fd: %s", weft_err_name(fd));
    while (!atomic_load(&stop_loop)) {
      struct pollfd pfd = {fd, POLLIN, 0};
      int n = poll(&pfd, 1, 20);
      la->polls++;
      if (n <= 0) continue;
      cr_assert(pfd.revents & POLLIN);
      uint64_t got = 0;
      while (weft_chan_try_recv(dc, &c) == 0) take(&c), got++;
      if (got == 0) la->empty_wakeups++;
      la->received += got;
    }
  } else {
    weft_ctx *lc;
    weft_cancel *lk;
    cr_assert_eq(weft_ctx_with_timeout(weft_background(), WEFT_MS(20), &lc, &lk), 0);
    while (!atomic_load(&stop_loop)) {
      int rc = weft_chan_recv(dc, lc, &c);
      if (rc == 0) {
        take(&c);
        la->received++;
      } else {
        cr_assert_eq(rc, WEFT_EDEADLINE);
        weft_ctx_end(lk);
        cr_assert_eq(weft_ctx_with_timeout(weft_background(), WEFT_MS(20), &lc, &lk), 0);
      }
    }
    weft_ctx_end(lk);
  }
  return NULL;
}

static unsigned stress_seed(const char *test, unsigned dflt) {
  const char *e = getenv("WEFT_SEED");
  unsigned seed = e && *e ? (unsigned)strtoul(e, NULL, 10) : dflt;
  fprintf(stderr, "%s: WEFT_SEED=%u\n", test, seed);
  return seed;
}

static void stress_round(unsigned seed, weft_pool_mode mode, bool use_fd) {
  size_t T = (size_t)weft_test_env("WEFT_STRESS_THREADS", 4);
  size_t N = (size_t)weft_test_env("WEFT_STRESS_ITERS", 20000 / WEFT_TEST_SCALE);
  jobs = calloc(T * N, sizeof *jobs);
  cr_assert_not_null(jobs);
  atomic_store(&bad_order, 0);
  atomic_store(&stop_loop, 0);
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &sub_ctx, &sub_cancel), 0);
  cr_assert_eq(weft_chan_create(sizeof(struct weft_completion), 96, &dc), 0);
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 3;
  o.queue_cap = 64;
  o.discard = stress_discard;
  cr_assert_eq(weft_pool_create(&o, &pool), 0);
  loop_arg la = {use_fd, 0, 0, 0};
  pthread_t loop;
  cr_assert_eq(pthread_create(&loop, NULL, loop_main, &la), 0);
  sub *subs = calloc(T, sizeof *subs);
  for (size_t t = 0; t < T; t++) {
    subs[t] = (sub){t * N, N, seed + (unsigned)t, 0};
    cr_assert_eq(pthread_create(&subs[t].th, NULL, submitter, &subs[t]), 0);
  }
  usleep((useconds_t)(weft_test_rand(&seed) % 40000));
  weft_ctx_cancel(sub_cancel); /* the jobs under it that have not started end canceled before start */
  usleep((useconds_t)(weft_test_rand(&seed) % 40000));
  weft_pool_report rep;
  cr_assert_eq(weft_pool_shutdown(pool, mode, WEFT_FOREVER, &rep), 0);
  for (size_t t = 0; t < T; t++) pthread_join(subs[t].th, NULL);
  atomic_store(&stop_loop, 1);
  pthread_join(loop, NULL);
  struct weft_completion c;
  uint64_t rest = 0;
  while (weft_chan_try_recv(dc, &c) == 0) take(&c), rest++;
  weft_pool_report fin;
  weft_pool_destroy(pool, &fin);
  cr_assert_eq(weft_chan_try_recv(dc, &c), WEFT_EEMPTY, "nothing arrives after the pool is gone");
  uint64_t accepted = 0, by_state[5] = {0};
  for (size_t id = 0; id < T * N; id++) {
    job_rec *j = &jobs[id];
    int a = atomic_load(&j->accepted), r = atomic_load(&j->ran), d = atomic_load(&j->discarded);
    int n = atomic_load(&j->completions), dn = atomic_load(&j->done_calls), st = atomic_load(&j->state);
    accepted += (uint64_t)a;
    if (!a) {
      cr_assert_eq(r + d + n + dn, 0, "job %zu was refused but reported something", id);
      continue;
    }
    cr_assert_eq(n, 1, "job %zu: %d completions (seed %u)", id, n, seed);
    cr_assert_eq(dn, atomic_load(&j->want_done) ? 1 : 0, "job %zu: on_done ran %d times", id, dn);
    cr_assert_eq(r + d, 1, "job %zu: ran %d, discarded %d", id, r, d);
    cr_assert_eq(st == WEFT_JOB_CANCELED_BEFORE_START, d == 1, "job %zu: state %d but discarded %d", id, st, d);
    cr_assert(st >= WEFT_JOB_COMPLETED && st <= WEFT_JOB_CANCELED_WHILE_RUNNING);
    by_state[st]++;
  }
  cr_assert_eq(atomic_load(&bad_order), 0, "a callback ran out of order or with a wrong done_arg");
  cr_assert_eq(la.received + rest, accepted);
  cr_assert_eq(fin.submitted, accepted);
  cr_assert_eq(fin.undelivered, 0);
  cr_assert_eq(by_state[WEFT_JOB_COMPLETED], fin.completed);
  cr_assert_eq(by_state[WEFT_JOB_FAILED], fin.failed);
  cr_assert_eq(by_state[WEFT_JOB_CANCELED_BEFORE_START], fin.canceled_before_start);
  cr_assert_eq(by_state[WEFT_JOB_CANCELED_WHILE_RUNNING], fin.canceled_while_running);
  fprintf(stderr, "  round: %llu accepted, loop received %llu (+%llu after), polls %llu, empty wake-ups %llu\n",
          (unsigned long long)accepted, (unsigned long long)la.received, (unsigned long long)rest,
          (unsigned long long)la.polls, (unsigned long long)la.empty_wakeups);
  free(subs);
  free(jobs);
  weft_ctx_end(sub_cancel);
  cr_assert_eq(weft_chan_destroy(dc), 0);
}

WEFT_TEST(pool_done_stress, loop_recv_random_cancel) {
  unsigned seed = stress_seed("loop_recv_random_cancel", (unsigned)weft_now());
  long rounds = weft_test_env("WEFT_STRESS_ROUNDS", 4);
  for (long r = 0; r < rounds; r++) stress_round(seed + (unsigned)r * 977u, WEFT_POOL_CANCEL, false);
}

WEFT_TEST(pool_done_stress, loop_recv_random_drain) {
  unsigned seed = stress_seed("loop_recv_random_drain", (unsigned)weft_now() ^ 0x5bd1e995u);
  long rounds = weft_test_env("WEFT_STRESS_ROUNDS", 4);
  for (long r = 0; r < rounds; r++) stress_round(seed + (unsigned)r * 131u, WEFT_POOL_DRAIN, false);
}

WEFT_TEST(pool_done_stress, loop_poll_fd_random_cancel) {
  unsigned seed = stress_seed("loop_poll_fd_random_cancel", (unsigned)weft_now() ^ 0x9e3779b9u);
  long rounds = weft_test_env("WEFT_STRESS_ROUNDS", 4);
  for (long r = 0; r < rounds; r++) stress_round(seed + (unsigned)r * 613u, WEFT_POOL_CANCEL, true);
}

WEFT_TEST(pool_done_stress, loop_poll_fd_random_drain) {
  unsigned seed = stress_seed("loop_poll_fd_random_drain", (unsigned)weft_now() ^ 0x85ebca6bu);
  long rounds = weft_test_env("WEFT_STRESS_ROUNDS", 4);
  for (long r = 0; r < rounds; r++) stress_round(seed + (unsigned)r * 389u, WEFT_POOL_DRAIN, true);
}

/* Submits that fill the completion channel to exactly its capacity while workers send the completions of
 * the first ones: each submit must find its room. A reservation counts the channel's reservations and
 * elements, and a completion just sent is in both until its sender drops its reservation; that instant
 * must not refuse a submit with WEFT_EFULL. Rounds of CAP submits, then CAP receives (nothing is received
 * during the submits). Sizes: WEFT_STRESS_ROUNDS (x 200 rounds). */
static int quick_job(weft_ctx *ctx, void *arg) {
  (void)ctx;
  (void)arg;
  return 0;
}

WEFT_TEST(pool_done_stress, submits_up_to_the_channel_capacity_are_never_refused) {
  enum { CAP = 32 };
  long rounds = weft_test_env("WEFT_STRESS_ROUNDS", 6) * 200;
  weft_pool_opts po = WEFT_POOL_OPTS_INIT;
  po.workers = 2;
  po.queue_cap = 2 * CAP;
  weft_pool *p;
  cr_assert_eq(weft_pool_create(&po, &p), 0);
  weft_chan *ch;
  cr_assert_eq(weft_chan_create(sizeof(struct weft_completion), CAP, &ch), 0);
  weft_job_opts jo = WEFT_JOB_OPTS_INIT;
  jo.done_chan = ch;
  long refused = 0;
  for (long r = 0; r < rounds; r++) {
    int accepted = 0;
    for (int i = 0; i < CAP; i++) {
      int rc = weft_pool_submit_opts(p, NULL, quick_job, NULL, &jo, NULL);
      if (rc == 0)
        accepted++;
      else if (rc == WEFT_EFULL)
        refused++;
      else
        cr_assert_fail("submit: %s", weft_err_name(rc));
    }
    for (int i = 0; i < accepted; i++) {
      struct weft_completion c;
      cr_assert_eq(weft_chan_recv(ch, NULL, &c), 0);
      cr_assert_eq(c.state, WEFT_JOB_COMPLETED);
    }
  }
  weft_pool_report rep;
  cr_assert_eq(weft_pool_shutdown(p, WEFT_POOL_DRAIN, WEFT_FOREVER, &rep), 0);
  weft_pool_destroy(p, NULL);
  cr_assert_eq(weft_chan_destroy(ch), 0);
  cr_assert_eq(refused, 0, "%ld of %ld submits were refused though the channel had room", refused, rounds * CAP);
}
