/* Pool completions: on_done callbacks, completion channels (done_chan) and weft_future_state, for every way
 * a job ends (completed, failed, canceled before start, canceled while running, discarded by shutdown or
 * destroy, run inline by caller-runs), and their bad input: a done_chan of the wrong element size or of
 * capacity 0, a closed done_chan, room exhausted, a channel closed or filled by the application while
 * completions are outstanding, a channel destroyed while jobs are in flight, a callback that submits more
 * work, shutdown with completions outstanding. The many-thread stress against a loop thread is in
 * test_pool_done_stress.c. */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "weft_test.h"

#define MAXJ 64

/* What the callbacks saw, per job id (the job's arg is &ids[id]). */
static int ids[MAXJ];
static _Atomic int done_calls[MAXJ], discard_calls[MAXJ], discard_before_done[MAXJ];
static _Atomic int done_state[MAXJ], done_rc[MAXJ];
static pthread_t done_thread[MAXJ];
static int done_arg_token;

static weft_chan *gate;
static _Atomic int gate_after_discards; /* > 0: the discard hook closes the gate at that many discards */
static _Atomic int discards;

static void reset(void) {
  atomic_store(&gate_after_discards, 0);
  atomic_store(&discards, 0);
  for (int i = 0; i < MAXJ; i++) {
    ids[i] = i;
    atomic_store(&done_calls[i], 0);
    atomic_store(&discard_calls[i], 0);
    atomic_store(&discard_before_done[i], 0);
    atomic_store(&done_state[i], -1);
    atomic_store(&done_rc[i], 1);
  }
}

static void on_done(void *arg, int rc, weft_job_state st, void *darg) {
  int id = *(int *)arg;
  cr_assert_eq(darg, &done_arg_token);
  atomic_fetch_add(&done_calls[id], 1);
  atomic_store(&done_state[id], (int)st);
  atomic_store(&done_rc[id], rc);
  done_thread[id] = pthread_self();
}

static void on_discard(void *arg, void *darg) {
  (void)darg;
  int id = *(int *)arg;
  if (atomic_load(&done_calls[id]) == 0) atomic_fetch_add(&discard_before_done[id], 1);
  atomic_fetch_add(&discard_calls[id], 1);
  int n = atomic_fetch_add(&discards, 1) + 1;
  if (n == atomic_load(&gate_after_discards)) weft_chan_close(gate);
}

/* A job that returns its arg's id as a result: 0 for even ids, -100 - id for odd ones. */
static int result_job(weft_ctx *ctx, void *arg) {
  (void)ctx;
  int id = *(int *)arg;
  return id % 2 == 0 ? 0 : -100 - id;
}

/* A job that blocks until the gate channel is closed (returns 0) or its context ends (its error). */
static _Atomic int started;
static int gate_job(weft_ctx *ctx, void *arg) {
  (void)arg;
  atomic_fetch_add(&started, 1);
  int x;
  int rc = weft_chan_recv(gate, ctx, &x);
  return rc == WEFT_ECLOSED ? 0 : rc;
}

/* The same, deaf to its context: it returns only when the gate is closed. */
static int stubborn_gate_job(weft_ctx *ctx, void *arg) {
  (void)ctx;
  (void)arg;
  atomic_fetch_add(&started, 1);
  int x;
  int rc = weft_chan_recv(gate, NULL, &x);
  return rc == WEFT_ECLOSED ? 0 : rc;
}

static weft_chan *new_done_chan(size_t cap) {
  weft_chan *ch;
  cr_assert_eq(weft_chan_create(sizeof(struct weft_completion), cap, &ch), 0);
  return ch;
}

static weft_pool *new_pool(size_t workers, size_t queue) {
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = workers;
  o.queue_cap = queue;
  o.discard = on_discard;
  weft_pool *p;
  cr_assert_eq(weft_pool_create(&o, &p), 0);
  return p;
}

static weft_job_opts done_opts(weft_chan *dc) {
  weft_job_opts jo = WEFT_JOB_OPTS_INIT;
  jo.on_done = on_done;
  jo.done_arg = &done_arg_token;
  jo.done_chan = dc;
  return jo;
}

/* Receives every completion buffered now; checks each against what on_done saw and counts them per id. */
static int drain(weft_chan *dc, int *got) {
  struct weft_completion c;
  int n = 0;
  while (weft_chan_try_recv(dc, &c) == 0) {
    int id = *(int *)c.arg;
    cr_assert_eq(c.done_arg, &done_arg_token);
    cr_assert_eq(atomic_load(&done_calls[id]), 1, "on_done ran before the completion was sent (job %d)", id);
    cr_assert_eq((int)c.state, atomic_load(&done_state[id]));
    cr_assert_eq(c.rc, atomic_load(&done_rc[id]));
    cr_assert_neq(c.state, WEFT_JOB_PENDING);
    got[id]++;
    n++;
  }
  return n;
}

static void wait_started(int n) {
  while (atomic_load(&started) < n) weft_ctx_sleep(weft_background(), WEFT_US(200));
}

WEFT_TEST(pool_done, completed_and_failed_with_callback_channel_and_future) {
  reset();
  weft_pool *p = new_pool(2, 16);
  weft_chan *dc = new_done_chan(16);
  weft_job_opts jo = done_opts(dc);
  weft_future *f[8];
  for (int i = 0; i < 8; i++) cr_assert_eq(weft_pool_submit_opts(p, NULL, result_job, &ids[i], &jo, &f[i]), 0);
  int got[MAXJ] = {0};
  for (int i = 0; i < 8; i++) {
    int rc;
    cr_assert_eq(weft_future_wait(f[i], NULL, &rc), 0);
    weft_job_state want = i % 2 == 0 ? WEFT_JOB_COMPLETED : WEFT_JOB_FAILED;
    cr_assert_eq(weft_future_state(f[i]), want);
    cr_assert_eq(rc, i % 2 == 0 ? 0 : -100 - i);
    weft_future_release(f[i]);
  }
  cr_assert_eq(weft_pool_wait_all(p, NULL), 0);
  cr_assert_eq(drain(dc, got), 8, "every completion is in the channel once wait_all returned");
  for (int i = 0; i < 8; i++) {
    cr_assert_eq(got[i], 1);
    cr_assert_eq(atomic_load(&done_calls[i]), 1);
    cr_assert_eq(atomic_load(&done_state[i]), i % 2 == 0 ? WEFT_JOB_COMPLETED : WEFT_JOB_FAILED);
    cr_assert_eq(atomic_load(&discard_calls[i]), 0);
  }
  weft_pool_report rep;
  weft_pool_destroy(p, &rep);
  cr_assert_eq(rep.completed, 4);
  cr_assert_eq(rep.failed, 4);
  cr_assert_eq(rep.undelivered, 0);
  cr_assert_eq(weft_chan_len(dc), 0, "nothing more arrives");
  cr_assert_eq(weft_chan_destroy(dc), 0);
}

WEFT_TEST(pool_done, future_state_is_pending_until_the_end_and_for_null) {
  reset();
  cr_assert_eq(weft_future_state(NULL), WEFT_JOB_PENDING);
  cr_assert_eq(weft_chan_create(sizeof(int), 1, &gate), 0);
  atomic_store(&started, 0);
  weft_pool *p = new_pool(1, 4);
  weft_future *f;
  cr_assert_eq(weft_pool_submit_opts(p, NULL, gate_job, &ids[0], NULL, &f), 0);
  wait_started(1);
  cr_assert_eq(weft_future_state(f), WEFT_JOB_PENDING);
  cr_assert_eq(weft_chan_close(gate), 0);
  cr_assert_eq(weft_future_wait(f, NULL, NULL), 0);
  cr_assert_eq(weft_future_state(f), WEFT_JOB_COMPLETED);
  weft_future_release(f);
  weft_pool_destroy(p, NULL);
  weft_chan_destroy(gate);
}

/* One worker held by a gate job: jobs queued behind it are discarded by a cancel shutdown (canceled before
 * start, on the shutdown thread), the gate job is canceled while running; on_done runs before the discard
 * hook; every completion arrives once. The gate job ignores the cancel and the fifth discard opens its
 * gate: a gate job that returned at the cancel would let its worker take the queued jobs and discard
 * them itself, on its own thread, before the shutdown thread does. */
WEFT_TEST(pool_done, shutdown_cancel_classes_and_order) {
  reset();
  cr_assert_eq(weft_chan_create(sizeof(int), 1, &gate), 0);
  atomic_store(&started, 0);
  atomic_store(&gate_after_discards, 5);
  weft_pool *p = new_pool(1, 16);
  weft_chan *dc = new_done_chan(16);
  weft_job_opts jo = done_opts(dc);
  cr_assert_eq(weft_pool_submit_opts(p, NULL, stubborn_gate_job, &ids[0], &jo, NULL), 0);
  wait_started(1);
  for (int i = 1; i < 6; i++) cr_assert_eq(weft_pool_submit_opts(p, NULL, result_job, &ids[i], &jo, NULL), 0);
  weft_pool_report rep;
  cr_assert_eq(weft_pool_shutdown(p, WEFT_POOL_CANCEL, WEFT_FOREVER, &rep), 0);
  int got[MAXJ] = {0};
  cr_assert_eq(drain(dc, got), 6, "shutdown returns with every completion delivered");
  cr_assert_eq(atomic_load(&done_state[0]), WEFT_JOB_CANCELED_WHILE_RUNNING);
  cr_assert_eq(atomic_load(&done_rc[0]), WEFT_ECANCELED);
  cr_assert(pthread_equal(done_thread[0], pthread_self()) == 0, "a job that ran ends on its worker");
  for (int i = 1; i < 6; i++) {
    cr_assert_eq(got[i], 1);
    cr_assert_eq(atomic_load(&done_state[i]), WEFT_JOB_CANCELED_BEFORE_START);
    cr_assert_eq(atomic_load(&done_rc[i]), WEFT_ECANCELED);
    cr_assert_eq(atomic_load(&discard_calls[i]), 1);
    cr_assert_eq(atomic_load(&discard_before_done[i]), 0, "on_done runs before the discard hook");
    cr_assert(pthread_equal(done_thread[i], pthread_self()), "discarded by shutdown: on_done on its thread");
  }
  cr_assert_eq(rep.canceled_before_start, 5);
  cr_assert_eq(rep.canceled_while_running, 1);
  weft_pool_destroy(p, NULL);
  cr_assert_eq(drain(dc, got), 0, "nothing twice");
  weft_chan_destroy(dc);
  weft_chan_destroy(gate);
}

/* A submitter's context ended before the job started: canceled before start on the worker. */
WEFT_TEST(pool_done, canceled_before_start_by_run_ctx) {
  reset();
  weft_pool *p = new_pool(1, 16);
  weft_chan *dc = new_done_chan(4);
  weft_ctx *c;
  weft_cancel *k;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &c, &k), 0);
  weft_ctx_cancel(k);
  weft_job_opts jo = done_opts(dc);
  jo.run_ctx = c;
  weft_future *f;
  cr_assert_eq(weft_pool_submit_opts(p, NULL, result_job, &ids[3], &jo, &f), 0);
  int rc;
  cr_assert_eq(weft_future_wait(f, NULL, &rc), 0);
  cr_assert_eq(rc, WEFT_ECANCELED);
  cr_assert_eq(weft_future_state(f), WEFT_JOB_CANCELED_BEFORE_START);
  weft_future_release(f);
  cr_assert_eq(weft_pool_wait_all(p, NULL), 0);
  int got[MAXJ] = {0};
  cr_assert_eq(drain(dc, got), 1);
  cr_assert_eq(atomic_load(&discard_calls[3]), 1);
  cr_assert_eq(atomic_load(&discard_before_done[3]), 0);
  weft_pool_destroy(p, NULL);
  weft_ctx_end(k);
  weft_chan_destroy(dc);
}

/* weft_pool_destroy without a shutdown discards what is queued: those completions arrive too. */
WEFT_TEST(pool_done, destroy_discards_and_delivers) {
  reset();
  cr_assert_eq(weft_chan_create(sizeof(int), 1, &gate), 0);
  atomic_store(&started, 0);
  weft_pool *p = new_pool(1, 16);
  weft_chan *dc = new_done_chan(16);
  weft_job_opts jo = done_opts(dc);
  cr_assert_eq(weft_pool_submit_opts(p, NULL, gate_job, &ids[0], &jo, NULL), 0);
  wait_started(1);
  for (int i = 1; i < 10; i++) cr_assert_eq(weft_pool_submit_opts(p, NULL, result_job, &ids[i], &jo, NULL), 0);
  weft_pool_report rep;
  weft_pool_destroy(p, &rep);
  int got[MAXJ] = {0};
  cr_assert_eq(drain(dc, got), 10);
  for (int i = 0; i < 10; i++) cr_assert_eq(got[i], 1);
  cr_assert_eq(rep.canceled_before_start + rep.canceled_while_running, 10);
  weft_chan_destroy(dc);
  weft_chan_destroy(gate);
}

/* Caller-runs: a job submitting to its own full pool runs the new job inline; its on_done runs on that
 * same worker thread, before the submit returns. */
static weft_pool *inline_pool;
static weft_chan *inline_dc;
static _Atomic int inline_ok;
static int inline_spawner(weft_ctx *ctx, void *arg) {
  (void)arg;
  weft_job_opts jo = done_opts(inline_dc);
  for (int i = 1; i < 12; i++) {
    if (weft_pool_submit_opts(inline_pool, ctx, result_job, &ids[i], &jo, NULL) != 0) return -1;
  }
  /* with a queue of 1 and this worker busy, most ran inline, here: */
  int here = 0;
  for (int i = 1; i < 12; i++) here += atomic_load(&done_calls[i]) == 1 && pthread_equal(done_thread[i], pthread_self());
  atomic_store(&inline_ok, here);
  return 0;
}

WEFT_TEST(pool_done, caller_runs_inline_delivers_on_the_submitting_worker) {
  reset();
  inline_pool = new_pool(1, 1);
  inline_dc = new_done_chan(32);
  weft_job_opts jo = done_opts(inline_dc);
  cr_assert_eq(weft_pool_submit_opts(inline_pool, NULL, inline_spawner, &ids[0], &jo, NULL), 0);
  cr_assert_eq(weft_pool_wait_all(inline_pool, NULL), 0);
  cr_assert_geq(atomic_load(&inline_ok), 10, "at least 10 of 11 ran inline (the queue holds one)");
  int got[MAXJ] = {0};
  cr_assert_eq(drain(inline_dc, got), 12);
  for (int i = 0; i < 12; i++) cr_assert_eq(got[i], 1);
  weft_pool_report rep;
  weft_pool_destroy(inline_pool, &rep);
  cr_assert_eq(rep.submitted, 12);
  weft_chan_destroy(inline_dc);
}

/* A callback that submits more work: each on_done submits the next job of a chain, from a worker. */
static weft_pool *chain_pool;
static weft_chan *chain_dc;
static _Atomic int chain_submit_err;
static void chain_done(void *arg, int rc, weft_job_state st, void *darg) {
  on_done(arg, rc, st, darg);
  int id = *(int *)arg;
  if (id + 1 < 40) {
    weft_job_opts jo = done_opts(chain_dc);
    jo.on_done = chain_done;
    int r = weft_pool_submit_opts(chain_pool, NULL, result_job, &ids[id + 1], &jo, NULL);
    if (r != 0) atomic_store(&chain_submit_err, r);
  }
}

WEFT_TEST(pool_done, callback_submits_more_work) {
  reset();
  chain_pool = new_pool(2, 4);
  chain_dc = new_done_chan(64);
  atomic_store(&chain_submit_err, 0);
  weft_job_opts jo = done_opts(chain_dc);
  jo.on_done = chain_done;
  cr_assert_eq(weft_pool_submit_opts(chain_pool, NULL, result_job, &ids[0], &jo, NULL), 0);
  int got[MAXJ] = {0}, n = 0;
  struct weft_completion c;
  while (n < 40) { /* the chain's completions, received as they come */
    cr_assert_eq(weft_chan_recv(chain_dc, NULL, &c), 0);
    got[*(int *)c.arg]++;
    n++;
  }
  cr_assert_eq(atomic_load(&chain_submit_err), 0);
  cr_assert_eq(weft_pool_wait_all(chain_pool, NULL), 0);
  cr_assert_eq(weft_chan_len(chain_dc), 0);
  for (int i = 0; i < 40; i++) cr_assert_eq(got[i], 1);
  weft_pool_report rep;
  weft_pool_destroy(chain_pool, &rep);
  cr_assert_eq(rep.submitted, 40);
  weft_chan_destroy(chain_dc);
}

WEFT_TEST(pool_done, bad_done_chan) {
  reset();
  weft_pool *p = new_pool(1, 4);
  weft_chan *wrong, *zero, *closed;
  cr_assert_eq(weft_chan_create(sizeof(int), 8, &wrong), 0);
  cr_assert_eq(weft_chan_create(sizeof(struct weft_completion), 0, &zero), 0);
  closed = new_done_chan(8);
  cr_assert_eq(weft_chan_close(closed), 0);
  weft_job_opts jo = done_opts(wrong);
  weft_future *f = (weft_future *)&jo;
  cr_assert_eq(weft_pool_submit_opts(p, NULL, result_job, &ids[0], &jo, &f), WEFT_EINVAL);
  cr_assert_null(f);
  jo.done_chan = zero;
  cr_assert_eq(weft_pool_submit_opts(p, NULL, result_job, &ids[0], &jo, NULL), WEFT_EINVAL);
  jo.done_chan = closed;
  cr_assert_eq(weft_pool_submit_opts(p, NULL, result_job, &ids[0], &jo, NULL), WEFT_ECLOSED);
  jo.done_chan = NULL; /* on_done alone is fine; a NULL fn still fails and never calls it */
  cr_assert_eq(weft_pool_submit_opts(p, NULL, NULL, &ids[1], &jo, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_pool_submit_opts(NULL, NULL, result_job, &ids[1], &jo, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_pool_wait_all(p, NULL), 0);
  cr_assert_eq(atomic_load(&done_calls[0]) + atomic_load(&done_calls[1]), 0, "failed submits call nothing");
  weft_pool_report rep;
  cr_assert_eq(weft_pool_shutdown(p, WEFT_POOL_DRAIN, WEFT_FOREVER, &rep), 0);
  jo.done_chan = new_done_chan(2);
  cr_assert_eq(weft_pool_submit_opts(p, NULL, result_job, &ids[2], &jo, NULL), WEFT_ESTOPPED);
  cr_assert_eq(atomic_load(&done_calls[2]), 0);
  cr_assert_eq(rep.submitted, 0);
  weft_pool_destroy(p, NULL);
  cr_assert_eq(weft_chan_len(jo.done_chan), 0);
  weft_chan_destroy(jo.done_chan);
  weft_chan_destroy(wrong);
  weft_chan_destroy(zero);
  weft_chan_destroy(closed);
}

/* Room is reserved at submit: with a channel of 3, the 4th outstanding completion is refused with
 * WEFT_EFULL, even by a blocking submit; receiving one completion makes room for one more submit. */
WEFT_TEST(pool_done, room_is_reserved_at_submit) {
  reset();
  cr_assert_eq(weft_chan_create(sizeof(int), 1, &gate), 0);
  atomic_store(&started, 0);
  weft_pool *p = new_pool(2, 16);
  weft_chan *dc = new_done_chan(3);
  weft_job_opts jo = done_opts(dc);
  for (int i = 0; i < 3; i++) cr_assert_eq(weft_pool_submit_opts(p, NULL, gate_job, &ids[i], &jo, NULL), 0);
  cr_assert_eq(weft_pool_submit_opts(p, NULL, result_job, &ids[3], &jo, NULL), WEFT_EFULL);
  jo.nowait = true;
  cr_assert_eq(weft_pool_submit_opts(p, NULL, result_job, &ids[3], &jo, NULL), WEFT_EFULL);
  jo.nowait = false;
  cr_assert_eq(weft_chan_close(gate), 0);
  cr_assert_eq(weft_pool_wait_all(p, NULL), 0);
  cr_assert_eq(weft_chan_len(dc), 3);
  cr_assert_eq(weft_pool_submit_opts(p, NULL, result_job, &ids[3], &jo, NULL), WEFT_EFULL,
               "buffered completions hold their room until received");
  struct weft_completion c;
  cr_assert_eq(weft_chan_try_recv(dc, &c), 0);
  cr_assert_eq(weft_pool_submit_opts(p, NULL, result_job, &ids[3], &jo, NULL), 0);
  cr_assert_eq(weft_pool_wait_all(p, NULL), 0);
  int got[MAXJ] = {0};
  got[*(int *)c.arg]++;
  cr_assert_eq(drain(dc, got), 3);
  for (int i = 0; i < 4; i++) cr_assert_eq(got[i], 1);
  weft_pool_report rep;
  weft_pool_destroy(p, &rep);
  cr_assert_eq(rep.undelivered, 0);
  weft_chan_destroy(dc);
  weft_chan_destroy(gate);
}

/* Misuse 1: the done_chan is closed while a completion is outstanding. The completion cannot be sent: it
 * is counted as undelivered and the arg of the job (which ran) goes to the discard hook; on_done still
 * ran; nothing blocks. */
WEFT_TEST(pool_done, closed_while_outstanding_is_counted_and_handed_back) {
  reset();
  cr_assert_eq(weft_chan_create(sizeof(int), 1, &gate), 0);
  atomic_store(&started, 0);
  weft_pool *p = new_pool(1, 4);
  weft_chan *dc = new_done_chan(4);
  weft_job_opts jo = done_opts(dc);
  cr_assert_eq(weft_pool_submit_opts(p, NULL, gate_job, &ids[0], &jo, NULL), 0);
  wait_started(1);
  cr_assert_eq(weft_chan_close(dc), 0);
  cr_assert_eq(weft_chan_close(gate), 0);
  cr_assert_eq(weft_pool_wait_all(p, NULL), 0);
  cr_assert_eq(atomic_load(&done_calls[0]), 1);
  cr_assert_eq(atomic_load(&done_state[0]), WEFT_JOB_COMPLETED);
  cr_assert_eq(atomic_load(&discard_calls[0]), 1, "the arg came back through the discard hook");
  weft_pool_report rep;
  weft_pool_destroy(p, &rep);
  cr_assert_eq(rep.undelivered, 1);
  cr_assert_eq(rep.completed, 1);
  struct weft_completion c;
  cr_assert_eq(weft_chan_try_recv(dc, &c), WEFT_ECLOSED);
  weft_chan_destroy(dc);
  weft_chan_destroy(gate);
}

/* Misuse 2: the application's own sends fill the room a completion reserved. The worker does not wait:
 * undelivered, arg handed back (discard hook called once: a discarded job's arg is not handed back twice). */
WEFT_TEST(pool_done, foreign_sends_taking_the_room_never_block_a_worker) {
  reset();
  cr_assert_eq(weft_chan_create(sizeof(int), 1, &gate), 0);
  atomic_store(&started, 0);
  weft_pool *p = new_pool(1, 4);
  weft_chan *dc = new_done_chan(2);
  weft_job_opts jo = done_opts(dc);
  cr_assert_eq(weft_pool_submit_opts(p, NULL, gate_job, &ids[0], &jo, NULL), 0);
  cr_assert_eq(weft_pool_submit_opts(p, NULL, result_job, &ids[1], &jo, NULL), 0);
  wait_started(1);
  struct weft_completion mine = {&ids[9], 0, WEFT_JOB_COMPLETED, NULL};
  cr_assert_eq(weft_chan_try_send(dc, &mine), 0);
  cr_assert_eq(weft_chan_try_send(dc, &mine), 0);
  weft_pool_report rep;
  cr_assert_eq(weft_pool_shutdown(p, WEFT_POOL_CANCEL, WEFT_FOREVER, &rep), 0, "no worker blocked");
  cr_assert_eq(rep.undelivered, 2);
  cr_assert_eq(atomic_load(&discard_calls[0]), 1);
  cr_assert_eq(atomic_load(&discard_calls[1]), 1, "the discarded job's arg is handed back once");
  cr_assert_eq(atomic_load(&done_calls[0]) + atomic_load(&done_calls[1]), 2);
  weft_pool_destroy(p, NULL);
  weft_chan_destroy(dc);
  weft_chan_destroy(gate);
}

/* The channel may be destroyed while completions are in flight: it lives until the last one was sent,
 * and those completions reach the channel's discard hook, so the loop that dropped it loses nothing. */
static _Atomic int chan_discards;
static void chan_discard(void *elem, void *darg) {
  (void)darg;
  const struct weft_completion *c = elem;
  cr_assert_eq(*(int *)c->arg, 0);
  atomic_fetch_add(&chan_discards, 1);
}

WEFT_TEST(pool_done, done_chan_destroyed_while_in_flight) {
  reset();
  cr_assert_eq(weft_chan_create(sizeof(int), 1, &gate), 0);
  atomic_store(&started, 0);
  atomic_store(&chan_discards, 0);
  weft_pool *p = new_pool(1, 4);
  weft_chan_opts co = WEFT_CHAN_OPTS_INIT;
  co.elem_size = sizeof(struct weft_completion);
  co.capacity = 4;
  co.discard = chan_discard;
  weft_chan *dc;
  cr_assert_eq(weft_chan_create_opts(&co, &dc), 0);
  weft_job_opts jo = done_opts(dc);
  cr_assert_eq(weft_pool_submit_opts(p, NULL, gate_job, &ids[0], &jo, NULL), 0);
  wait_started(1);
  cr_assert_eq(weft_chan_destroy(dc), 0);
  cr_assert_eq(atomic_load(&chan_discards), 0);
  cr_assert_eq(weft_chan_close(gate), 0);
  cr_assert_eq(weft_pool_wait_all(p, NULL), 0);
  cr_assert_eq(atomic_load(&chan_discards), 1, "the completion reached the destroyed channel's discard hook");
  weft_pool_report rep;
  weft_pool_destroy(p, &rep);
  cr_assert_eq(rep.undelivered, 0);
  weft_chan_destroy(gate);
}

/* Shutdown in drain mode while many completions are outstanding and nobody receives: the reservation
 * guarantees room, so shutdown completes, and the loop finds every completion afterwards. */
WEFT_TEST(pool_done, drain_shutdown_with_outstanding_completions) {
  reset();
  weft_pool *p = new_pool(2, 64);
  weft_chan *dc = new_done_chan(MAXJ);
  weft_job_opts jo = done_opts(dc);
  for (int i = 0; i < MAXJ; i++) cr_assert_eq(weft_pool_submit_opts(p, NULL, result_job, &ids[i], &jo, NULL), 0);
  weft_pool_report rep;
  cr_assert_eq(weft_pool_shutdown(p, WEFT_POOL_DRAIN, WEFT_FOREVER, &rep), 0);
  int got[MAXJ] = {0};
  cr_assert_eq(drain(dc, got), MAXJ);
  for (int i = 0; i < MAXJ; i++) cr_assert_eq(got[i], 1);
  cr_assert_eq(rep.completed + rep.failed, MAXJ);
  weft_pool_destroy(p, NULL);
  weft_chan_destroy(dc);
}
