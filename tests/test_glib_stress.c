/* Stress of the GLib adapter: many jobs, each under a request context bridged from a GCancellable of its
 * own, while another thread cancels random GCancellables (in flight, finished or not yet used) and the
 * main-context thread cancels random jobs through their handles. Checked per job: one result, on the
 * main-context thread, with a class that matches what the job did; every link freed from the result
 * callback (disconnecting while the other thread may be cancelling); the counts add up.
 * Sizes: WEFT_STRESS_THREADS (pool workers, default 3), WEFT_STRESS_ITERS (jobs), WEFT_SEED. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <weft/glib.h>

#include "weft_test.h"

typedef struct job {
  _Atomic int ran, calls;
  int rc;
  weft_job_state state;
  bool accepted, cancel_sent;
  weft_ctx *req;
  weft_glib_link *link;
  weft_glib_job *handle;
  size_t id;
} job;

static job *jobs;
static GCancellable **gcs;
static size_t njobs, next_job, delivered, window;
static weft_glib *g;
static weft_pool *pool;
static pthread_t main_thread;
static unsigned seed;
static _Atomic int off_main, stop_canceller;

static int stress_job(weft_ctx *ctx, void *arg) {
  job *j = arg;
  atomic_fetch_add(&j->ran, 1);
  if (j->id % 4 == 0) return -9;
  return weft_ctx_sleep(ctx, WEFT_US(j->id % 3 == 0 ? 300 : 20));
}

static void submit_more(void);

static void on_result(void *job_arg, int job_rc, weft_job_state state, void *cb_arg) {
  job *j = job_arg;
  if (!pthread_equal(pthread_self(), main_thread)) atomic_fetch_add(&off_main, 1);
  cr_assert_eq(atomic_fetch_add(&j->calls, 1), 0, "job %zu delivered twice", j->id);
  j->rc = job_rc;
  j->state = state;
  j->handle = NULL;
  weft_glib_link_free(j->link);
  weft_ctx_release(j->req);
  delivered++;
  window--;
  size_t back = weft_test_rand(&seed) % (window + 1);
  if (weft_test_rand(&seed) % 6 == 0 && back < next_job) { /* cancel a recent job if still in flight */
    job *v = &jobs[next_job - 1 - back];
    if (v->handle != NULL) {
      int rc = weft_glib_job_cancel(v->handle);
      cr_assert(rc == 0 || rc == WEFT_ESTATE);
      if (rc == 0) v->cancel_sent = true;
    }
  }
  submit_more();
}

static void submit_more(void) {
  while (next_job < njobs && window < 128) {
    job *j = &jobs[next_job];
    j->id = next_job;
    cr_assert_eq(weft_glib_ctx_with_cancellable(weft_background(), gcs[next_job], &j->req, &j->link), 0);
    int rc = weft_glib_submit(g, pool, j->req, stress_job, j, on_result, j, &j->handle);
    if (rc == WEFT_EFULL) {
      weft_glib_link_free(j->link);
      weft_ctx_release(j->req);
      return;
    }
    cr_assert_eq(rc, 0, "%s", weft_err_name(rc));
    j->accepted = true;
    next_job++;
    window++;
  }
}

static void *canceller(void *arg) {
  unsigned s = *(unsigned *)arg; /* its own: the main thread's seed changes as it runs */
  while (!atomic_load(&stop_canceller)) {
    g_cancellable_cancel(gcs[weft_test_rand(&s) % njobs]);
    weft_ctx_sleep(weft_background(), WEFT_US(100));
  }
  return NULL;
}

static gboolean kick(gpointer data) {
  submit_more();
  return next_job < njobs ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

static int closed;
static void on_closed(weft_glib *gg, void *arg) { closed = 1; }

WEFT_TEST(glib_stress, results_exactly_once_with_cancellables_cancelled_from_another_thread) {
  long workers = weft_test_env("WEFT_STRESS_THREADS", 3);
  njobs = (size_t)weft_test_env("WEFT_STRESS_ITERS", 20000 / WEFT_TEST_SCALE);
  const char *e = getenv("WEFT_SEED");
  seed = e != NULL ? (unsigned)strtoul(e, NULL, 10) : (unsigned)time(NULL);
  printf("glib_stress: seed %u (WEFT_SEED replays), %ld workers, %zu jobs\n", seed, workers, njobs);
  jobs = calloc(njobs, sizeof *jobs);
  gcs = calloc(njobs, sizeof *gcs);
  for (size_t i = 0; i < njobs; i++) gcs[i] = g_cancellable_new();
  main_thread = pthread_self();
  GMainContext *mc = g_main_context_new();
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = (size_t)workers;
  o.queue_cap = 64;
  cr_assert_eq(weft_pool_create(&o, &pool), 0);
  cr_assert_eq(weft_glib_new(mc, &g), 0);
  pthread_t th;
  unsigned cseed = seed * 7 + 1;
  pthread_create(&th, NULL, canceller, &cseed);
  GSource *t = g_timeout_source_new(1);
  g_source_set_callback(t, kick, NULL, NULL);
  g_source_attach(t, mc);
  g_source_unref(t);
  while (next_job < njobs || window > 0) g_main_context_iteration(mc, TRUE);
  atomic_store(&stop_canceller, 1);
  pthread_join(th, NULL);
  cr_assert_eq(atomic_load(&off_main), 0);
  cr_assert_eq(delivered, njobs);
  weft_pool_report rep;
  weft_glib_report(g, &rep);
  cr_assert_eq(rep.submitted, njobs);
  cr_assert_eq(rep.completed + rep.failed + rep.canceled_before_start + rep.canceled_while_running, njobs);
  for (size_t i = 0; i < njobs; i++) {
    job *j = &jobs[i];
    int r = atomic_load(&j->ran);
    cr_assert_eq(atomic_load(&j->calls), 1);
    cr_assert_leq(r, 1);
    switch (j->state) {
    case WEFT_JOB_CANCELED_BEFORE_START: cr_assert_eq(r, 0, "job %zu", i); break;
    case WEFT_JOB_COMPLETED: cr_assert(r == 1 && j->rc == 0 && !j->cancel_sent, "job %zu", i); break;
    case WEFT_JOB_FAILED: /* its own error, or its GCancellable ended its request context */
      cr_assert(r == 1 && !j->cancel_sent && (j->rc == -9 || j->rc == WEFT_ECANCELED), "job %zu rc %d", i, j->rc);
      break;
    case WEFT_JOB_CANCELED_WHILE_RUNNING: cr_assert(r == 1 && j->cancel_sent, "job %zu", i); break;
    default: cr_assert_fail("job %zu: state %d", i, j->state);
    }
  }
  printf("glib_stress: completed %lu failed %lu canceled before start %lu while running %lu\n",
         (unsigned long)rep.completed, (unsigned long)rep.failed, (unsigned long)rep.canceled_before_start,
         (unsigned long)rep.canceled_while_running);
  weft_glib_close(g, false, on_closed, NULL);
  while (!closed) g_main_context_iteration(mc, TRUE);
  g_main_context_unref(mc);
  weft_pool_destroy(pool, NULL);
  for (size_t i = 0; i < njobs; i++) {
    cr_assert_eq(G_OBJECT(gcs[i])->ref_count, 1, "every link gave its reference back");
    g_object_unref(gcs[i]);
  }
  free(gcs);
  free(jobs);
}
