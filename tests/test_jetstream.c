/* The JetStream module against a real nats-server: each test starts its own `nats-server -js` on a free
 * loopback port with a temporary store (tests/support/nats_server.h) and stops it. AckWait is 1 s in these
 * tests so that leases lapse quickly; assertions are on counts, identities and order, never on durations
 * (a job "longer than AckWait" runs several AckWaits, with the other side waiting on events). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <weft/jetstream.h>

#include "nats_server.h"
#include "weft_test.h"

#define ACK_WAIT WEFT_SEC(1)
/* The longer tests (10,000 jobs, a server restart, leases that must lapse) get a timeout of their own. */
#define JS_TEST_LONG(suite, name, secs) Test(suite, name, .timeout = (secs))

/* ---- fixture: a test's server, its connections and consumers ------------------------------------------ */

/* What a test holds against its server: the server, and the connections and consumers it opened through
 * js_connect() and open_consumer(). js_down() closes them all (consumers first, newest first; every close
 * asserted to succeed) and stops the server. Whatever else a test makes (a pipeline, a context, a consumer
 * opened by hand) it ends itself before js_down(). */
typedef struct js_fixture {
  nats_server s;
  weft_js *conns[4];
  size_t n_conns;
  weft_js_consumer *consumers[4];
  size_t n_consumers;
} js_fixture;

/* One more connection to the fixture's server; the fixture owns it (js_down() closes it). */
static weft_js *js_connect(js_fixture *f) {
  cr_assert_lt(f->n_conns, sizeof f->conns / sizeof f->conns[0]);
  weft_js_opts o = WEFT_JS_OPTS_INIT;
  o.url = f->s.url;
  weft_js *js = NULL;
  cr_assert_eq(weft_js_connect(&o, &js), 0, "connect: %s", weft_js_last_error());
  f->conns[f->n_conns++] = js;
  return js;
}

/* The stream `name` storing `subject` (in memory or in files); retried while JetStream finishes starting. */
static void mk_stream(weft_js *js, const char *name, const char *subject, bool memory) {
  weft_js_stream_opts so = WEFT_JS_STREAM_OPTS_INIT;
  so.name = name;
  so.subject = subject;
  so.memory = memory;
  int rc = -1;
  for (int i = 0; i < 100 && rc != 0; i++) {
    rc = weft_js_stream_ensure(js, &so);
    if (rc != 0) usleep(50000);
  }
  cr_assert_eq(rc, 0, "stream: %s", weft_js_last_error());
}

/* Starts the test's server (skips the test when no nats-server is installed), connects to it and, unless
 * `stream` is NULL, creates that stream on `subject`. Returns the connection, which the fixture owns; the
 * caller ends the fixture with js_down(). */
static weft_js *js_up(js_fixture *f, const char *stream, const char *subject, bool memory) {
  memset(f, 0, sizeof *f);
  NATS_SERVER_OR_SKIP(&f->s);
  weft_js *js = js_connect(f);
  if (stream != NULL) mk_stream(js, stream, subject, memory);
  return js;
}

/* Closes what the fixture owns (each close must return 0) and stops the server. */
static void js_down(js_fixture *f) {
  while (f->n_consumers > 0) cr_assert_eq(weft_js_consumer_close(f->consumers[--f->n_consumers]), 0);
  while (f->n_conns > 0) cr_assert_eq(weft_js_close(f->conns[--f->n_conns]), 0);
  ns_stop(&f->s);
}

/* A pull consumer on `stream` (durable name `durable`) with the tests' AckWait and short backoffs; the
 * fixture owns it (js_down() closes it; a pipeline reading from it must be destroyed before). */
static weft_js_consumer *open_consumer(js_fixture *f, weft_js *js, const char *stream, const char *durable,
                                       int64_t max_deliver, size_t max_in_flight, int64_t job_timeout) {
  cr_assert_lt(f->n_consumers, sizeof f->consumers / sizeof f->consumers[0]);
  weft_js_consumer_opts co = WEFT_JS_CONSUMER_OPTS_INIT;
  co.stream = stream;
  co.durable = durable;
  co.ack_wait = ACK_WAIT;
  co.max_deliver = max_deliver;
  co.max_in_flight = max_in_flight;
  co.job_timeout = job_timeout;
  co.backoff_base = WEFT_MS(10);
  co.backoff_max = WEFT_MS(40);
  weft_js_consumer *c = NULL;
  cr_assert_eq(weft_js_consumer_open(js, &co, &c), 0, "consumer: %s", weft_js_last_error());
  f->consumers[f->n_consumers++] = c;
  return c;
}

/* ---- helpers ---------------------------------------------------------------------------------------- */

/* Publishes jobs "job-00000".. with bodies "0".. to `subject`, each asserted new (not a duplicate); with a
 * deadline other than WEFT_FOREVER, under a context with that deadline (it travels in a header). */
static void publish_n(weft_js *js, const char *subject, int n, int64_t deadline) {
  weft_ctx *ctx = weft_background();
  weft_cancel *cancel = NULL;
  if (deadline != WEFT_FOREVER) cr_assert_eq(weft_ctx_with_deadline(weft_background(), deadline, &ctx, &cancel), 0);
  for (int i = 0; i < n; i++) {
    char id[32], body[32];
    snprintf(id, sizeof id, "job-%05d", i);
    snprintf(body, sizeof body, "%d", i);
    bool dup = true;
    cr_assert_eq(weft_js_publish(js, ctx, subject, body, strlen(body), id, &dup), 0, "publish: %s",
                 weft_js_last_error());
    cr_assert(!dup);
  }
  if (cancel) weft_ctx_end(cancel);
}

/* One message, fetched within `timeout` (asserted); the caller finishes it. */
static weft_js_msg *fetch_one(weft_js_consumer *c, int64_t timeout) {
  weft_js_msg *m;
  size_t n;
  cr_assert_eq(weft_js_fetch(c, weft_background(), 1, timeout, &m, &n), 0);
  return m;
}

/* Asserts that no message comes within `timeout`: a fetch of one times out. `why` says what that shows. */
static void assert_no_delivery(weft_js_consumer *c, int64_t timeout, const char *why) {
  weft_js_msg *m;
  size_t n;
  cr_assert_eq(weft_js_fetch(c, weft_background(), 1, timeout, &m, &n), WEFT_ETIMEDOUT, "%s", why);
}

/* The job's number from its identity "job-NNNNN" (asserted on the test's thread: other threads check
 * job_index_raw() and report through counters, since an assertion must fail on the test's own thread). */
static int job_index_raw(const weft_js_msg *m) {
  const char *id = weft_js_msg_id(m);
  if (id == NULL || strncmp(id, "job-", 4) != 0) return -1;
  return atoi(id + 4);
}

static int job_index(const weft_js_msg *m) {
  int k = job_index_raw(m);
  cr_assert(k >= 0, "id %s", weft_js_msg_id(m) ? weft_js_msg_id(m) : "(null)");
  return k;
}

static void assert_classes_add_up(const weft_js_report *r) {
  cr_assert_eq(r->fetched, r->completed + r->retried + r->dead + r->expired + r->returned + r->lapsed +
                               r->unsent + r->in_flight,
               "fetched %lu != classes", (unsigned long)r->fetched);
}

static weft_js_report report(weft_js_consumer *c) {
  weft_js_report r;
  cr_assert_eq(weft_js_consumer_report(c, &r), 0);
  assert_classes_add_up(&r);
  return r;
}

/* Finishes m with the job's result `result` and asserts the outcome the module reports. */
static void finish_expect(weft_js_msg *m, int result, weft_js_outcome want) {
  weft_js_outcome oc;
  cr_assert_eq(weft_js_finish(m, result, &oc), 0);
  cr_assert_eq(oc, want, "outcome %s, expected %s", weft_js_outcome_name(oc), weft_js_outcome_name(want));
}

/* ---- pipelines -------------------------------------------------------------------------------------- */

typedef struct run_arg {
  weft_pipeline *p;
  weft_ctx *ctx;
  int rc;
  weft_pipeline_report rep;
  pthread_t t;
} run_arg;

static void *run_main(void *arg) {
  run_arg *ra = arg;
  ra->rc = weft_pipeline_run(ra->p, ra->ctx, &ra->rep);
  return NULL;
}

/* Runs p under ctx on a thread of its own (ra->t); once that is joined, ra->rc and ra->rep hold the run's
 * result. The caller joins the thread and keeps owning (destroys) the pipeline. */
static void run_start(run_arg *ra, weft_pipeline *p, weft_ctx *ctx) {
  *ra = (run_arg){.p = p, .ctx = ctx};
  cr_assert_eq(pthread_create(&ra->t, NULL, run_main, ra), 0);
}

/* A pipeline whose source fetches from c (each job's context derived from jobs_ctx) into a jobs stage of
 * `workers` threads running `job` (out_capacity 0: the stage's default). The caller adds the last stage
 * and owns the pipeline. */
static weft_pipeline *jobs_pipeline(weft_js_consumer *c, weft_ctx *jobs_ctx, const weft_js_job *job, size_t workers,
                                    size_t out_capacity) {
  weft_pipeline *p;
  cr_assert_eq(weft_pipeline_create(NULL, &p), 0);
  cr_assert_eq(weft_js_pipeline_source(p, NULL, c, jobs_ctx), 0);
  weft_stage_opts o = WEFT_STAGE_OPTS_INIT;
  o.workers = workers;
  if (out_capacity != 0) o.out_capacity = out_capacity;
  cr_assert_eq(weft_js_pipeline_jobs(p, &o, job), 0);
  return p;
}

/* ---- bad input ------------------------------------------------------------------------------------ */

WEFT_TEST(jetstream, einval) {
  weft_js *js = (weft_js *)1;
  cr_assert_eq(weft_js_connect(NULL, &js), WEFT_EINVAL);
  cr_assert_null(js);
  weft_js_opts o = WEFT_JS_OPTS_INIT;
  cr_assert_eq(weft_js_connect(&o, &js), WEFT_EINVAL); /* no url */
  o.url = "nats://127.0.0.1:1";
  o.timeout = 0;
  cr_assert_eq(weft_js_connect(&o, &js), WEFT_EINVAL);
  o.timeout = WEFT_MS(200);
  o.max_reconnect = 0;
  cr_assert_eq(weft_js_connect(&o, &js), WEFT_JS_ENATS); /* nobody listens on port 1 */
  cr_assert(weft_js_last_error()[0] != '\0');
  cr_assert_eq(weft_js_close(NULL), WEFT_EINVAL);
  cr_assert(!weft_js_connected(NULL));
  cr_assert_eq(weft_js_stream_ensure(NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_js_publish(NULL, NULL, "a", "", 0, NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_js_consumer_open(NULL, NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_js_consumer_close(NULL), WEFT_EINVAL);
  cr_assert_eq(weft_js_consumer_report(NULL, NULL), WEFT_EINVAL);
  size_t n = 7;
  weft_js_msg *m;
  cr_assert_eq(weft_js_fetch(NULL, weft_background(), 1, 0, &m, &n), WEFT_EINVAL);
  cr_assert_eq(n, 0);
  cr_assert_eq(weft_js_finish(NULL, 0, NULL), WEFT_EINVAL);
  cr_assert_null(weft_js_msg_ctx(NULL));
  cr_assert_null(weft_js_msg_id(NULL));
  cr_assert_eq(weft_js_msg_deadline(NULL), WEFT_FOREVER);
  cr_assert_eq(weft_js_pipeline_source(NULL, NULL, NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_js_pipeline_jobs(NULL, NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_js_pipeline_finish(NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_js_pipeline_publish(NULL, NULL, NULL), WEFT_EINVAL);
  cr_assert_str_eq(weft_js_outcome_name(WEFT_JS_LAPSED), "lapsed");
  cr_assert_str_eq(weft_js_strerror(WEFT_ECANCELED), weft_strerror(WEFT_ECANCELED));
}

WEFT_TEST(jetstream, einval_with_server) {
  js_fixture f;
  weft_js *js = js_up(&f, NULL, NULL, false);
  weft_js_stream_opts so = WEFT_JS_STREAM_OPTS_INIT;
  so.name = "bad.name";
  cr_assert_eq(weft_js_stream_ensure(js, &so), WEFT_EINVAL);
  mk_stream(js, "EV", "ev.>", true);
  weft_js_consumer_opts co = WEFT_JS_CONSUMER_OPTS_INIT;
  weft_js_consumer *c = (weft_js_consumer *)1;
  cr_assert_eq(weft_js_consumer_open(js, &co, &c), WEFT_EINVAL); /* no names */
  cr_assert_null(c);
  co.stream = "EV";
  co.durable = "w";
  co.max_in_flight = 0;
  cr_assert_eq(weft_js_consumer_open(js, &co, &c), WEFT_EINVAL);
  co.max_in_flight = 4;
  co.heartbeat = co.ack_wait;
  cr_assert_eq(weft_js_consumer_open(js, &co, &c), WEFT_EINVAL); /* heartbeat must be shorter than the lease */
  co.heartbeat = 0;
  co.stream = "NOSUCH";
  cr_assert_eq(weft_js_consumer_open(js, &co, &c), WEFT_JS_ENATS);
  co.stream = "EV";
  cr_assert_eq(weft_js_consumer_open(js, &co, &c), 0);
  weft_js_msg *m[8];
  size_t n;
  cr_assert_eq(weft_js_fetch(c, weft_background(), 5, 0, m, &n), WEFT_EINVAL); /* more than max_in_flight */
  cr_assert_eq(weft_js_fetch(c, weft_background(), 0, 0, m, &n), WEFT_EINVAL);
  assert_no_delivery(c, WEFT_MS(50), "empty");
  /* a publish to a subject no stream stores */
  cr_assert_eq(weft_js_publish(js, NULL, "nowhere", "x", 1, NULL, NULL), WEFT_JS_ENATS);
  cr_assert_eq(weft_js_close(js), WEFT_EBUSY); /* a consumer is open */
  cr_assert_eq(weft_js_consumer_close(c), 0);
  js_down(&f); /* the connection closes now that its consumer is closed */
}

/* ---- the basic cycle ---------------------------------------------------------------------------------- */

WEFT_TEST(jetstream, publish_fetch_ack_and_duplicates) {
  js_fixture f;
  weft_js *js = js_up(&f, "B", "b.jobs", true);
  publish_n(js, "b.jobs", 20, WEFT_FOREVER);
  bool dup = false;
  cr_assert_eq(weft_js_publish(js, NULL, "b.jobs", "3", 1, "job-00003", &dup), 0);
  cr_assert(dup, "a second publish with the same Nats-Msg-Id is a duplicate");
  const char *bad[] = {"Nats-Msg-Id", "x"};
  cr_assert_eq(weft_js_publish_with_headers(js, NULL, "b.jobs", "x", 1, NULL, bad, 1, NULL), WEFT_EINVAL);
  const char *hdrs[] = {"Weft-Timeout", "5s", "Weft-Submitter", "host-a"};
  cr_assert_eq(weft_js_publish_with_headers(js, NULL, "b.jobs", "20", 2, "job-00020", hdrs, 2, &dup), 0);
  cr_assert(!dup);
  weft_js_consumer *c = open_consumer(&f, js, "B", "w", -1, 8, WEFT_FOREVER);
  int seen[20] = {0};
  int next = 0;
  while (next < 20) {
    weft_js_msg *m[8];
    size_t n;
    size_t want = 20 - next < 8 ? (size_t)(20 - next) : 8; /* the 21st, with headers, is checked below */
    cr_assert_eq(weft_js_fetch(c, weft_background(), want, WEFT_SEC(10), m, &n), 0);
    for (size_t i = 0; i < n; i++) {
      int k = job_index(m[i]);
      cr_assert_eq(k, next, "stream order: got %d, expected %d", k, next); /* one worker: in order */
      next++;
      size_t len;
      const char *d = weft_js_msg_data(m[i], &len);
      cr_assert_eq(atoi(d), k);
      cr_assert_eq(weft_js_msg_delivered(m[i]), 1);
      cr_assert_eq(weft_js_msg_deadline(m[i]), WEFT_FOREVER);
      cr_assert_eq(weft_ctx_err(weft_js_msg_ctx(m[i])), 0);
      finish_expect(m[i], 0, WEFT_JS_COMPLETED);
      seen[k]++;
    }
  }
  weft_js_msg *m = fetch_one(c, WEFT_SEC(10));
  cr_assert_str_eq(weft_js_msg_id(m), "job-00020");
  cr_assert_str_eq(weft_js_msg_header(m, "Weft-Timeout"), "5s");
  cr_assert_str_eq(weft_js_msg_header(m, "Weft-Submitter"), "host-a");
  cr_assert_null(weft_js_msg_header(m, "Weft-None"));
  cr_assert_eq(weft_js_finish(m, 0, NULL), 0);
  assert_no_delivery(c, WEFT_MS(300), "all 21 were acked");
  weft_js_report r = report(c);
  cr_assert_eq(r.fetched, 21);
  cr_assert_eq(r.completed, 21);
  cr_assert_eq(r.redelivered, 0);
  weft_js_consumer_state st;
  cr_assert_eq(weft_js_consumer_state_get(c, &st), 0);
  cr_assert_eq(st.pending, 0);
  cr_assert_eq(st.ack_pending, 0);
  cr_assert_eq(st.ack_floor, 21);
  js_down(&f);
}

/* A worker loop whose jobs last longer than AckWait: the lease of the next message starts at its own
 * fetch, not at the previous one, so a job that ends at once after a long one is completed, not lapsed. */
WEFT_TEST(jetstream, lease_starts_at_its_own_fetch) {
  js_fixture f;
  weft_js *js = js_up(&f, "F", "f.jobs", true);
  publish_n(js, "f.jobs", 3, WEFT_FOREVER);
  weft_js_consumer *c = open_consumer(&f, js, "F", "w", -1, 1, WEFT_FOREVER);
  for (int i = 0; i < 3; i++) {
    weft_js_msg *m = fetch_one(c, WEFT_SEC(10));
    cr_assert_eq(job_index(m), i);
    cr_assert_eq(weft_js_msg_delivered(m), 1);
    if (i < 2) usleep(2 * ACK_WAIT / 1000); /* a long job: kept alive by heartbeats */
    finish_expect(m, 0, WEFT_JS_COMPLETED);
  }
  weft_js_report r = report(c);
  cr_assert_eq(r.completed, 3);
  cr_assert_eq(r.redelivered, 0);
  js_down(&f);
}

/* ---- a worker process killed mid-job ------------------------------------------------------------------ */

WEFT_TEST(jetstream, killed_worker_jobs_redelivered_each_ends_once) {
  js_fixture f;
  weft_js *js = js_up(&f, "K", "k.jobs", false);
  enum { N = 60, DONE_BY_CHILD = 10, HELD = 5 };
  publish_n(js, "k.jobs", N, WEFT_FOREVER);
  weft_js_consumer *c = open_consumer(&f, js, "K", "w", -1, 16, WEFT_FOREVER); /* creates the consumer */

  int out[2];
  cr_assert_eq(pipe(out), 0);
  pid_t pid = fork();
  cr_assert(pid >= 0);
  if (pid == 0) {
    dup2(out[1], 1);
    close(out[0]);
    char a[16], b[16];
    snprintf(a, sizeof a, "%d", DONE_BY_CHILD);
    snprintf(b, sizeof b, "%d", HELD);
    execl(JS_WORKER_PATH, JS_WORKER_PATH, f.s.url, "K", "w", a, b, (char *)NULL);
    _exit(127);
  }
  close(out[1]);
  FILE *from_worker = fdopen(out[0], "r");
  int done_by[N] = {0}, held[N] = {0};
  char line[128];
  bool ready = false;
  while (!ready && fgets(line, sizeof line, from_worker) != NULL) {
    if (strncmp(line, "DONE job-", 9) == 0) done_by[atoi(line + 9)]++;
    else if (strncmp(line, "HOLD job-", 9) == 0) held[atoi(line + 9)]++;
    else if (strncmp(line, "READY", 5) == 0) ready = true;
  }
  cr_assert(ready, "the worker process failed before holding its jobs");
  cr_assert_eq(kill(pid, SIGKILL), 0); /* mid-job: HELD messages fetched, heartbeated, never finished */
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_assert(WIFSIGNALED(st));
  fclose(from_worker);

  int done_here[N] = {0}, redelivered_here[N] = {0};
  int total = DONE_BY_CHILD;
  while (total < N) {
    weft_js_msg *m[16];
    size_t n;
    /* One at a time: each is finished right after it arrives. Under ThreadSanitizer on a loaded host,
     * confirming 16 Acks one after another could outlast the short AckWait of the last ones in a batch,
     * which the server then (rightly, at least once) delivered again. */
    cr_assert_eq(weft_js_fetch(c, weft_background(), 1, WEFT_SEC(20), m, &n), 0, "jobs missing: %d of %d", total,
                 N);
    for (size_t i = 0; i < n; i++) {
      int k = job_index(m[i]);
      if (weft_js_msg_delivered(m[i]) > 1) redelivered_here[k]++;
      finish_expect(m[i], 0, WEFT_JS_COMPLETED);
      done_here[k]++;
      total++;
    }
  }
  for (int k = 0; k < N; k++) {
    cr_assert_eq(done_by[k] + done_here[k], 1, "job %d completed %d times", k, done_by[k] + done_here[k]);
    cr_assert_eq(redelivered_here[k], held[k], "job %d: redelivered iff the killed worker held it", k);
  }
  assert_no_delivery(c, 2 * ACK_WAIT, "every job completed once");
  weft_js_report r = report(c);
  cr_assert_eq(r.completed, N - DONE_BY_CHILD);
  cr_assert_eq(r.redelivered, HELD);
  js_down(&f);
}

/* ---- leases: kept while the job's context lives, lapsing once it hangs past its deadline --------------- */

typedef struct rival {
  weft_js_consumer *c;
  _Atomic int stop;
  _Atomic int got;        /* messages the rival received */
  _Atomic uint64_t delivered;
  weft_js_msg *m;         /* the one it received */
} rival;

static void *rival_main(void *arg) {
  rival *rv = arg;
  while (!atomic_load(&rv->stop) && atomic_load(&rv->got) == 0) {
    weft_js_msg *m;
    size_t n;
    if (weft_js_fetch(rv->c, weft_background(), 1, WEFT_MS(100), &m, &n) == 0) {
      rv->m = m;
      atomic_store(&rv->delivered, weft_js_msg_delivered(m));
      atomic_store(&rv->got, 1);
    }
  }
  return NULL;
}

JS_TEST_LONG(jetstream, long_job_kept_alive_then_redelivered_after_its_deadline, 180.0) {
  js_fixture f;
  weft_js *js = js_up(&f, "L", "l.jobs", true);
  publish_n(js, "l.jobs", 1, WEFT_FOREVER);
  /* Worker A: a per-job timeout of 6 AckWaits. */
  weft_js_consumer *a = open_consumer(&f, js, "L", "w", -1, 4, 6 * ACK_WAIT);
  weft_js *js2 = js_connect(&f);
  rival rv = {.c = open_consumer(&f, js2, "L", "w", -1, 4, WEFT_FOREVER)};

  weft_js_msg *m = fetch_one(a, WEFT_SEC(10));
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, rival_main, &rv), 0);
  /* The job runs for 3 AckWaits with its context alive: the rival must get nothing, however slow the
   * machine, because only the heartbeats keep the lease (the job's own timeout is further away). */
  for (int i = 0; i < 30; i++) {
    cr_assert_eq(weft_ctx_err(weft_js_msg_ctx(m)), 0);
    usleep(100000);
    cr_assert_eq(atomic_load(&rv.got), 0, "redelivered while its context was alive");
  }
  weft_js_report r = report(a);
  cr_assert_geq(r.heartbeats, 1);
  /* Now it hangs past its own deadline (the job ignores its context): heartbeats stop, the lease lapses,
   * and the server hands the job to the rival. */
  cr_assert_eq(weft_ctx_wait_for(weft_js_msg_ctx(m), WEFT_SEC(60)), WEFT_EDEADLINE);
  while (atomic_load(&rv.got) == 0) usleep(10000);
  cr_assert_eq(atomic_load(&rv.delivered), 2);
  /* The hung job finally returns: its lease lapsed, so nothing is sent (an Ack now could settle the
   * rival's delivery). */
  finish_expect(m, 0, WEFT_JS_LAPSED);
  finish_expect(rv.m, 0, WEFT_JS_COMPLETED);
  atomic_store(&rv.stop, 1);
  pthread_join(t, NULL);
  r = report(a);
  cr_assert_eq(r.lapsed, 1);
  cr_assert_eq(r.completed, 0);
  weft_js_report r2 = report(rv.c);
  cr_assert_eq(r2.completed, 1);
  cr_assert_eq(r2.redelivered, 1);
  weft_js_consumer_state st;
  cr_assert_eq(weft_js_consumer_state_get(a, &st), 0);
  cr_assert_eq(st.ack_pending, 0);
  js_down(&f);
}

/* ---- poison: MaxDeliver ------------------------------------------------------------------------------- */

WEFT_TEST(jetstream, poison_stops_after_max_deliver_and_is_reported) {
  js_fixture f;
  weft_js *js = js_up(&f, "P", "p.jobs", true);
  publish_n(js, "p.jobs", 2, WEFT_FOREVER);
  weft_js_consumer *c = open_consumer(&f, js, "P", "w", 3, 4, WEFT_FOREVER);
  /* job-00000 always fails (retried with backoff, then dead on delivery 3); job-00001 says it is
   * permanent at once (dead on delivery 1). */
  uint64_t deliveries[2] = {0, 0};
  int dead = 0;
  while (dead < 2) {
    weft_js_msg *m = fetch_one(c, WEFT_SEC(20));
    int k = job_index(m);
    cr_assert_eq(weft_js_msg_delivered(m), deliveries[k] + 1, "deliveries of job %d in order", k);
    deliveries[k]++;
    weft_js_outcome oc;
    cr_assert_eq(weft_js_finish(m, k == 0 ? -42 : WEFT_JS_EPERMANENT, &oc), 0);
    if (k == 0) cr_assert_eq(oc, deliveries[0] < 3 ? WEFT_JS_RETRIED : WEFT_JS_DEAD);
    else cr_assert_eq(oc, WEFT_JS_DEAD);
    if (oc == WEFT_JS_DEAD) dead++;
  }
  cr_assert_eq(deliveries[0], 3);
  cr_assert_eq(deliveries[1], 1);
  assert_no_delivery(c, 2 * ACK_WAIT, "no further delivery");
  weft_js_report r = report(c);
  cr_assert_eq(r.fetched, 4);
  cr_assert_eq(r.retried, 2);
  cr_assert_eq(r.dead, 2);
  cr_assert_eq(r.redelivered, 2);
  js_down(&f);
}

/* ---- the header's deadline ---------------------------------------------------------------------------- */

WEFT_TEST(jetstream, header_deadline_cancels_the_job) {
  js_fixture f;
  weft_js *js = js_up(&f, "D", "d.jobs", true);
  int64_t dl = weft_deadline_in(2 * ACK_WAIT);
  publish_n(js, "d.jobs", 1, dl);
  weft_js_consumer *c = open_consumer(&f, js, "D", "w", -1, 4, WEFT_FOREVER);
  weft_js_msg *m = fetch_one(c, WEFT_SEC(10));
  cr_assert_str_eq(weft_js_msg_id(m), "job-00000");
  cr_assert_not_null(weft_js_msg_header(m, WEFT_JS_DEADLINE_HEADER));
  /* The header carries Unix time; back on this clock it is the publisher's deadline (same host: the two
   * clocks' conversions agree to well under a second). */
  cr_assert(weft_js_msg_deadline(m) > dl - WEFT_SEC(1) && weft_js_msg_deadline(m) < dl + WEFT_SEC(1));
  cr_assert_eq(weft_ctx_deadline(weft_js_msg_ctx(m)), weft_js_msg_deadline(m));
  /* The job waits for its context, as a job should: the deadline ends it (its lease kept meanwhile). */
  int rc = weft_ctx_wait_for(weft_js_msg_ctx(m), WEFT_SEC(60));
  cr_assert_eq(rc, WEFT_EDEADLINE);
  finish_expect(m, rc, WEFT_JS_EXPIRED);
  assert_no_delivery(c, 2 * ACK_WAIT, "an expired job is terminated, not redelivered");
  /* A job whose deadline passed before it was fetched arrives with its context done. */
  weft_ctx *pctx;
  weft_cancel *pcancel;
  cr_assert_eq(weft_ctx_with_timeout(weft_background(), WEFT_MS(100), &pctx, &pcancel), 0);
  cr_assert_eq(weft_js_publish(js, pctx, "d.jobs", "late", 4, "late-1", NULL), 0);
  cr_assert_eq(weft_ctx_wait_for(pctx, WEFT_SEC(10)), WEFT_EDEADLINE);
  weft_ctx_end(pcancel);
  m = fetch_one(c, WEFT_SEC(10));
  cr_assert_eq(weft_ctx_err(weft_js_msg_ctx(m)), WEFT_EDEADLINE);
  finish_expect(m, WEFT_EDEADLINE, WEFT_JS_EXPIRED);
  weft_js_report r = report(c);
  cr_assert_eq(r.expired, 2);
  js_down(&f);
}

/* ---- drain and cancel hand work back ----------------------------------------------------------------- */

typedef struct gate_job {
  _Atomic int running;
  _Atomic int release;
  _Atomic int ran[64];
} gate_job;

static int gated(weft_ctx *ctx, weft_js_msg *m, void *arg) {
  gate_job *g = arg;
  atomic_fetch_add(&g->running, 1);
  while (!atomic_load(&g->release)) {
    int rc = weft_ctx_sleep(ctx, WEFT_MS(5));
    if (rc != 0) return rc;
  }
  int k = job_index_raw(m);
  if (k < 0 || k >= 64) return -99;
  atomic_fetch_add(&g->ran[k], 1);
  return 0;
}

/* The worker's pipeline: fetch, `workers` threads running `job`, and the module's own finish stage. The
 * caller owns it. */
static weft_pipeline *worker_pipeline(weft_js_consumer *c, weft_ctx *jobs_ctx, const weft_js_job *job, size_t workers) {
  weft_pipeline *p = jobs_pipeline(c, jobs_ctx, job, workers, 4);
  cr_assert_eq(weft_js_pipeline_finish(p, NULL), 0);
  return p;
}

WEFT_TEST(jetstream, cancel_hands_work_back_at_once) {
  js_fixture f;
  weft_js *js = js_up(&f, "C", "c.jobs", true);
  enum { N = 20 };
  publish_n(js, "c.jobs", N, WEFT_FOREVER);
  weft_js_consumer *c = open_consumer(&f, js, "C", "w", -1, 8, WEFT_FOREVER);
  weft_ctx *ctx;
  weft_cancel *cancel;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &ctx, &cancel), 0);
  static gate_job g;
  weft_js_job job = {gated, &g};
  run_arg ra;
  run_start(&ra, worker_pipeline(c, ctx, &job, 2), ctx);
  while (atomic_load(&g.running) < 2) usleep(1000);
  weft_js_report r = report(c);
  while (r.fetched < 8) usleep(1000), r = report(c); /* the source filled max_in_flight */
  weft_ctx_cancel(cancel);
  pthread_join(ra.t, NULL);
  cr_assert_eq(ra.rc, WEFT_ECANCELED);
  r = report(c);
  cr_assert_eq(r.in_flight, 0);
  cr_assert_geq(r.fetched, 8);
  cr_assert_eq(r.returned, r.fetched, "running and queued jobs are handed back");
  cr_assert_eq(r.completed, 0);
  /* Handed back without delay: another worker gets them, as redeliveries, well before AckWait. */
  weft_js_consumer *c2 = open_consumer(&f, js, "C", "w", -1, N, WEFT_FOREVER);
  int got = 0, redelivered = 0;
  while (got < N) {
    weft_js_msg *m[N];
    size_t n;
    cr_assert_eq(weft_js_fetch(c2, weft_background(), N, WEFT_SEC(10), m, &n), 0);
    for (size_t i = 0; i < n; i++) {
      if (weft_js_msg_delivered(m[i]) == 2) redelivered++;
      cr_assert_eq(weft_js_finish(m[i], 0, NULL), 0);
      got++;
    }
  }
  cr_assert_eq((uint64_t)redelivered, r.returned);
  weft_pipeline_destroy(ra.p);
  weft_ctx_end(cancel);
  js_down(&f);
}

WEFT_TEST(jetstream, drain_finishes_running_jobs_and_leaves_the_rest) {
  js_fixture f;
  weft_js *js = js_up(&f, "R", "r.jobs", true);
  enum { N = 20 };
  publish_n(js, "r.jobs", N, WEFT_FOREVER);
  weft_js_consumer *c = open_consumer(&f, js, "R", "w", -1, 4, WEFT_FOREVER);
  static gate_job g;
  weft_js_job job = {gated, &g};
  run_arg ra;
  run_start(&ra, worker_pipeline(c, weft_background(), &job, 2), weft_background());
  while (atomic_load(&g.running) < 2) usleep(1000);
  cr_assert_eq(weft_pipeline_drain(ra.p), 0);
  atomic_store(&g.release, 1);
  pthread_join(ra.t, NULL);
  cr_assert_eq(ra.rc, 0);
  cr_assert(ra.rep.drained);
  weft_js_report r = report(c);
  cr_assert_eq(r.in_flight, 0);
  cr_assert_geq(r.completed, 2, "the jobs running at the drain finished and were acked");
  cr_assert_eq(r.completed + r.returned, r.fetched, "the rest of what was fetched was handed back");
  int ran = 0;
  for (int k = 0; k < N; k++) {
    cr_assert_leq(atomic_load(&g.ran[k]), 1);
    ran += atomic_load(&g.ran[k]);
  }
  cr_assert_eq((uint64_t)ran, r.completed);
  /* The rest stays for other workers, and a message handed back directly goes to the next fetch at once. */
  weft_js_msg *m = fetch_one(c, WEFT_SEC(10));
  int k = job_index(m);
  cr_assert_eq(atomic_load(&g.ran[k]), 0);
  finish_expect(m, WEFT_ESTOPPED, WEFT_JS_RETURNED);
  int total = ran;
  bool k_back = false;
  while (total < N) {
    m = fetch_one(c, WEFT_SEC(10));
    int j = job_index(m);
    cr_assert_eq(atomic_load(&g.ran[j]), 0, "job %d ran twice", j);
    if (j == k) {
      cr_assert_geq(weft_js_msg_delivered(m), 2);
      k_back = true;
    }
    atomic_fetch_add(&g.ran[j], 1);
    cr_assert_eq(weft_js_finish(m, 0, NULL), 0);
    total++;
  }
  cr_assert(k_back, "a job handed back came back");
  assert_no_delivery(c, WEFT_MS(300), "every job ran once");
  weft_pipeline_destroy(ra.p);
  js_down(&f);
}

/* ---- several workers share one stream ----------------------------------------------------------------- */

typedef struct share {
  int n;
  _Atomic int *completed; /* per job: completions (each after a confirmed Ack) */
  _Atomic int total;
  _Atomic int bad;
} share;

static int count_job(weft_ctx *ctx, weft_js_msg *m, void *arg) {
  (void)ctx, (void)arg, (void)m;
  return 0;
}

/* A finish stage of the test's own that counts confirmed completions per job. */
static int count_finish(weft_ctx *ctx, const void *item, void *arg) {
  (void)ctx;
  share *sh = arg;
  weft_js_msg *m = *(weft_js_msg *const *)item;
  int k = job_index_raw(m);
  if (k < 0 || k >= sh->n) atomic_fetch_add(&sh->bad, 1), k = 0;
  weft_js_outcome oc;
  weft_js_finish(m, weft_js_msg_result(m), &oc);
  if (oc == WEFT_JS_COMPLETED) {
    atomic_fetch_add(&sh->completed[k], 1);
    atomic_fetch_add(&sh->total, 1);
  }
  return 0;
}

static void share_stream(int workers, const char *stream, const char *subject) {
  js_fixture f;
  weft_js *pubjs = js_up(&f, stream, subject, false);
  enum { N = 10000 };
  publish_n(pubjs, subject, N, WEFT_FOREVER);
  share sh = {.n = N, .completed = calloc(N, sizeof(_Atomic int))};
  weft_js_job job = {count_job, &sh};
  weft_js *js[3];
  weft_js_consumer *c[3];
  run_arg ra[3];
  for (int w = 0; w < workers; w++) {
    js[w] = js_connect(&f);
    c[w] = open_consumer(&f, js[w], stream, "w", -1, 64, WEFT_FOREVER);
    weft_pipeline *p = jobs_pipeline(c[w], weft_background(), &job, 2, 0);
    cr_assert_eq(weft_pipeline_sink(p, NULL, count_finish, &sh), 0);
    run_start(&ra[w], p, weft_background());
  }
  while (atomic_load(&sh.total) < N) usleep(1000);
  for (int w = 0; w < workers; w++) cr_assert_eq(weft_pipeline_drain(ra[w].p), 0);
  uint64_t fetched = 0, completed = 0;
  for (int w = 0; w < workers; w++) {
    pthread_join(ra[w].t, NULL);
    cr_assert_eq(ra[w].rc, 0);
    weft_js_report r = report(c[w]);
    cr_assert_eq(r.in_flight, 0);
    cr_assert_gt(r.completed, 0, "worker %d took no job", w);
    fetched += r.fetched;
    completed += r.completed;
    weft_pipeline_destroy(ra[w].p);
  }
  cr_assert_eq(atomic_load(&sh.bad), 0);
  for (int k = 0; k < N; k++) cr_assert_eq(atomic_load(&sh.completed[k]), 1, "job %d completed %d times", k,
                                           atomic_load(&sh.completed[k]));
  cr_assert_eq(completed, N);
  weft_js_consumer_state st;
  cr_assert_eq(weft_js_consumer_state_get(c[0], &st), 0);
  cr_assert_eq(st.pending, 0);
  cr_assert_eq(st.ack_pending, 0);
  free(sh.completed);
  js_down(&f);
}

JS_TEST_LONG(jetstream, two_workers_share_10000_jobs_none_twice, 300.0) {
  share_stream(2, "S2", "s2.jobs");
}

JS_TEST_LONG(jetstream, three_workers_share_10000_jobs_none_twice, 300.0) {
  share_stream(3, "S3", "s3.jobs");
}

/* ---- the server restarted mid-run (file storage) ------------------------------------------------------ */

typedef struct restart_state {
  weft_js_consumer *c;
  int n;
  _Atomic int *completed;
  _Atomic int total;
  _Atomic int stop;
  _Atomic int bad;
} restart_state;

static void *restart_worker(void *arg) {
  restart_state *rs = arg;
  while (!atomic_load(&rs->stop)) {
    weft_js_msg *m[8];
    size_t n;
    int rc = weft_js_fetch(rs->c, weft_background(), 8, WEFT_MS(200), m, &n);
    if (rc == WEFT_ETIMEDOUT) continue;
    if (rc != 0) {
      atomic_fetch_add(&rs->bad, 1);
      break;
    }
    for (size_t i = 0; i < n; i++) {
      int k = job_index_raw(m[i]);
      if (k < 0 || k >= rs->n) atomic_fetch_add(&rs->bad, 1), k = 0;
      usleep(2000); /* the job */
      weft_js_outcome oc;
      weft_js_finish(m[i], 0, &oc);
      if (oc == WEFT_JS_COMPLETED) {
        atomic_fetch_add(&rs->completed[k], 1);
        atomic_fetch_add(&rs->total, 1);
      }
    }
  }
  return NULL;
}

static int distinct_completed(restart_state *rs) {
  int d = 0;
  for (int k = 0; k < rs->n; k++) d += atomic_load(&rs->completed[k]) > 0;
  return d;
}

JS_TEST_LONG(jetstream, server_restart_loses_nothing, 240.0) {
  js_fixture f;
  weft_js *js = js_up(&f, "T", "t.jobs", false);
  enum { N = 400 };
  publish_n(js, "t.jobs", N, WEFT_FOREVER);
  restart_state rs = {.n = N, .completed = calloc(N, sizeof(_Atomic int))};
  rs.c = open_consumer(&f, js, "T", "w", -1, 8, WEFT_FOREVER);
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, restart_worker, &rs), 0);
  while (atomic_load(&rs.total) < N / 4) usleep(1000);
  ns_stop_process(&f.s); /* SIGTERM: a clean stop that flushes the file store */
  while (weft_js_connected(js)) usleep(1000);
  usleep(300000); /* the worker meets the outage: failing fetches, unsendable acks */
  cr_assert(ns_spawn(&f.s), "the server did not restart");
  while (distinct_completed(&rs) < N && atomic_load(&rs.bad) == 0) usleep(10000);
  atomic_store(&rs.stop, 1);
  pthread_join(t, NULL);
  cr_assert_eq(atomic_load(&rs.bad), 0, "the worker failed (a fetch error other than a timeout, or a bad id)");
  weft_js_report r = report(rs.c);
  cr_assert_eq(r.in_flight, 0);
  /* Every job was acknowledged by the server at least once; one acknowledged twice is one whose first
   * run's action did not go out (unsent or lapsed), so the server redelivered it. */
  int twice = 0;
  for (int k = 0; k < N; k++) twice += atomic_load(&rs.completed[k]) - 1;
  cr_assert_leq((uint64_t)twice, r.unsent + r.lapsed + r.returned);
  weft_js_conn_stats cs;
  cr_assert_eq(weft_js_conn_stats_get(js, &cs), 0);
  cr_assert_geq(cs.disconnects, 1);
  cr_assert_geq(cs.reconnects, 1);
  /* Nothing left behind: every message is settled, none pending, none waiting for an ack. */
  weft_js_consumer_state st;
  int64_t until = weft_deadline_in(WEFT_SEC(30));
  for (;;) {
    cr_assert_eq(weft_js_consumer_state_get(rs.c, &st), 0);
    if (st.ack_pending == 0 || weft_now() > until) break;
    /* an unsent action's message comes back after AckWait: settle it */
    weft_js_msg *m;
    size_t n;
    if (weft_js_fetch(rs.c, weft_background(), 1, WEFT_MS(500), &m, &n) == 0) weft_js_finish(m, 0, NULL);
  }
  cr_assert_eq(st.pending, 0);
  cr_assert_eq(st.ack_pending, 0);
  cr_assert_eq(st.ack_floor, N, "every stored message settled");
  free(rs.completed);
  js_down(&f);
}

/* ---- the publish sink: identity and deadline travel to the next stream -------------------------------- */

static int upper_job(weft_ctx *ctx, weft_js_msg *m, void *arg) {
  (void)ctx, (void)arg;
  size_t len;
  const char *d = weft_js_msg_data(m, &len);
  char out[64];
  int w = snprintf(out, sizeof out, "done:%.*s", (int)len, d);
  return weft_js_msg_set_output(m, out, (size_t)w);
}

WEFT_TEST(jetstream, publish_sink_carries_identity_and_deadline) {
  js_fixture f;
  weft_js *js = js_up(&f, "IN", "in.jobs", true);
  mk_stream(js, "OUT", "out.jobs", true);
  enum { N = 30 };
  int64_t dl = weft_deadline_in(WEFT_SEC(600));
  publish_n(js, "in.jobs", N, dl);
  weft_js_consumer *c = open_consumer(&f, js, "IN", "w", -1, 8, WEFT_FOREVER);
  weft_js_job job = {upper_job, NULL};
  weft_pipeline *p = jobs_pipeline(c, weft_background(), &job, 2, 0);
  weft_js_publish_to to = {js, "out.jobs"};
  cr_assert_eq(weft_js_pipeline_publish(p, NULL, &to), 0);
  run_arg ra;
  run_start(&ra, p, weft_background());
  weft_js_report r = report(c);
  while (r.completed < N) usleep(1000), r = report(c);
  weft_pipeline_drain(p);
  pthread_join(ra.t, NULL);
  cr_assert_eq(ra.rc, 0);
  weft_pipeline_destroy(p);
  weft_js_consumer *out = open_consumer(&f, js, "OUT", "reader", -1, N, WEFT_FOREVER);
  int seen[N] = {0};
  int got = 0;
  while (got < N) {
    weft_js_msg *m[N];
    size_t n;
    cr_assert_eq(weft_js_fetch(out, weft_background(), N, WEFT_SEC(10), m, &n), 0);
    for (size_t i = 0; i < n; i++) {
      int k = job_index(m[i]); /* the input's identity */
      seen[k]++;
      size_t len;
      const char *d = weft_js_msg_data(m[i], &len);
      char want[32];
      snprintf(want, sizeof want, "done:%d", k);
      cr_assert(len == strlen(want) && memcmp(d, want, len) == 0);
      cr_assert(weft_js_msg_deadline(m[i]) > dl - WEFT_SEC(1) && weft_js_msg_deadline(m[i]) < dl + WEFT_SEC(1));
      cr_assert_eq(weft_js_finish(m[i], 0, NULL), 0);
      got++;
    }
  }
  for (int k = 0; k < N; k++) cr_assert_eq(seen[k], 1);
  js_down(&f);
}
