/* The GLib adapter (weft/glib.h): job results on the main context's thread with their class, per-job
 * cancel, close with jobs in flight, the context GSource, and GCancellable <-> context both ways with
 * their references. Each test iterates its own GMainContext on the test's thread. */
#include <pthread.h>
#include <stdatomic.h>
#include <weft/glib.h>

#include "loop_test_jobs.h"
#include "weft_test.h"

static weft_pool *pool;
static GMainContext *mc;

static void setup(void) {
  loop_thread = pthread_self();
  mc = g_main_context_new();
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  o.workers = 2;
  cr_assert_eq(weft_pool_create(&o, &pool), 0);
}

static void teardown(void) {
  while (g_main_context_iteration(mc, FALSE)) {
  }
  g_main_context_unref(mc);
  weft_pool_destroy(pool, NULL);
}

TestSuite(glib, .init = setup, .fini = teardown);

/* Iterates mc until *flag is non-zero (each iteration blocks until a source is ready). */
static void iterate_until(const int *flag) {
  while (!*flag) g_main_context_iteration(mc, TRUE);
}

static int closed;
static long closed_at;
static void on_closed(weft_glib *g, void *arg) {
  cr_assert(pthread_equal(pthread_self(), loop_thread));
  closed++;
  closed_at = delivered;
}

Test(glib, einval, .timeout = WEFT_TEST_TIMEOUT) {
  weft_glib *g = (weft_glib *)1;
  cr_assert_eq(weft_glib_new(mc, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_glib_new(mc, &g), 0);
  result r = {0};
  weft_glib_job *j = (weft_glib_job *)1;
  cr_assert_eq(weft_glib_submit(NULL, pool, NULL, job_ok, &r, on_result, &r, &j), WEFT_EINVAL);
  cr_assert_null(j);
  cr_assert_eq(weft_glib_submit(g, NULL, NULL, job_ok, &r, on_result, &r, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_glib_submit(g, pool, NULL, NULL, &r, on_result, &r, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_glib_submit(g, pool, NULL, job_ok, &r, NULL, &r, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_glib_job_cancel(NULL), WEFT_EINVAL);
  cr_assert_eq(weft_glib_report(NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_glib_close(NULL, false, NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_glib_close(g, false, on_closed, NULL), 0);
  cr_assert_eq(weft_glib_close(g, false, on_closed, NULL), WEFT_ESTATE);
  cr_assert_eq(weft_glib_submit(g, pool, NULL, job_ok, &r, on_result, &r, NULL), WEFT_ESTOPPED);
  cr_assert_eq(closed, 0, "the close callback runs from the main context, not from the call");
  iterate_until(&closed);
  cr_assert_eq(closed, 1);
  cr_assert_eq(atomic_load(&r.calls), 0);
  cr_assert_null(weft_glib_ctx_source_new(NULL));
}

Test(glib, results_on_the_main_context_thread, .timeout = WEFT_TEST_TIMEOUT) {
  enum { N = 300 };
  weft_glib *g;
  cr_assert_eq(weft_glib_new(mc, &g), 0);
  static result rs[N];
  for (int i = 0; i < N; i++) {
    int rc;
    while ((rc = weft_glib_submit(g, pool, NULL, i % 4 == 0 ? job_fail : job_ok, &rs[i], on_result, &rs[i],
                                  i % 2 ? NULL : &(weft_glib_job *){NULL})) == WEFT_EFULL)
      g_main_context_iteration(mc, TRUE);
    cr_assert_eq(rc, 0, "%s", weft_err_name(rc));
  }
  while (delivered < N) g_main_context_iteration(mc, TRUE);
  for (int i = 0; i < N; i++) {
    cr_assert_eq(atomic_load(&rs[i].calls), 1);
    cr_assert(rs[i].on_loop);
    cr_assert_eq(rs[i].state, i % 4 == 0 ? WEFT_JOB_FAILED : WEFT_JOB_COMPLETED);
    cr_assert_eq(rs[i].rc, i % 4 == 0 ? JOB_FAIL_RC : 0);
  }
  weft_pool_report rep;
  weft_glib_report(g, &rep);
  cr_assert_eq(rep.submitted, N);
  cr_assert_eq(rep.failed, N / 4);
  cr_assert_eq(rep.completed, N - N / 4);
  weft_glib_close(g, false, on_closed, NULL);
  iterate_until(&closed);
}

static gboolean cancel_when_started(gpointer data) {
  if (atomic_load(&started) == 0) return G_SOURCE_CONTINUE;
  cr_assert_eq(weft_glib_job_cancel(data), 0);
  return G_SOURCE_REMOVE;
}

Test(glib, cancel_while_running, .timeout = WEFT_TEST_TIMEOUT) {
  weft_glib *g;
  cr_assert_eq(weft_glib_new(mc, &g), 0);
  result r = {0};
  weft_glib_job *j;
  cr_assert_eq(weft_glib_submit(g, pool, NULL, job_wait_ctx, &r, on_result, &r, &j), 0);
  GSource *t = g_timeout_source_new(1);
  g_source_set_callback(t, cancel_when_started, j, NULL);
  g_source_attach(t, mc);
  g_source_unref(t);
  while (delivered < 1) g_main_context_iteration(mc, TRUE);
  cr_assert_eq(r.state, WEFT_JOB_CANCELED_WHILE_RUNNING);
  cr_assert_eq(r.rc, WEFT_ECANCELED);
  weft_glib_close(g, false, on_closed, NULL);
  iterate_until(&closed);
}

/* The loop quits while jobs are in flight; the program closes with cancel and keeps iterating until the
 * close callback: every result first, exactly once, nothing after. */
Test(glib, loop_quits_with_jobs_in_flight, .timeout = WEFT_TEST_TIMEOUT) {
  enum { N = 6 };
  weft_glib *g;
  cr_assert_eq(weft_glib_new(mc, &g), 0);
  result rs[N] = {{0}};
  for (int i = 0; i < N; i++) {
    weft_glib_job *j;
    cr_assert_eq(weft_glib_submit(g, pool, NULL, job_wait_ctx, &rs[i], on_result, &rs[i], &j), 0);
  }
  while (atomic_load(&started) < 2) weft_ctx_sleep(weft_background(), WEFT_MS(1));
  cr_assert_eq(weft_glib_close(g, true, on_closed, NULL), 0);
  iterate_until(&closed);
  cr_assert_eq(closed_at, N);
  for (int i = 0; i < N; i++) {
    cr_assert_eq(atomic_load(&rs[i].calls), 1);
    cr_assert(rs[i].state == WEFT_JOB_CANCELED_WHILE_RUNNING || rs[i].state == WEFT_JOB_CANCELED_BEFORE_START);
  }
  weft_pool_wait_all(pool, NULL);
  while (g_main_context_iteration(mc, FALSE)) {
  }
  cr_assert_eq(delivered, N, "nothing runs after the close");
}

/* ---- the context source ------------------------------------------------------------------------- */

typedef struct fired {
  int calls, err;
  bool on_loop;
} fired;

static gboolean on_ctx_done(weft_ctx *ctx, int err, gpointer data) {
  fired *f = data;
  f->calls++;
  f->err = err;
  f->on_loop = pthread_equal(pthread_self(), loop_thread);
  return G_SOURCE_REMOVE;
}

static void *cancel_later(void *arg) {
  weft_ctx_sleep(weft_background(), WEFT_MS(5));
  weft_ctx_cancel(arg);
  return NULL;
}

Test(glib, ctx_source_dispatches_once_done, .timeout = WEFT_TEST_TIMEOUT) {
  weft_ctx *ctx;
  weft_cancel *cancel;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &ctx, &cancel), 0);
  GSource *s = weft_glib_ctx_source_new(ctx);
  cr_assert_not_null(s);
  fired f = {0};
  g_source_set_callback(s, G_SOURCE_FUNC(on_ctx_done), &f, NULL);
  g_source_attach(s, mc);
  g_source_unref(s);
  size_t live = weft_ctx_live_count();
  pthread_t th;
  pthread_create(&th, NULL, cancel_later, cancel);
  while (f.calls == 0) g_main_context_iteration(mc, TRUE);
  pthread_join(th, NULL);
  cr_assert_eq(f.err, WEFT_ECANCELED);
  cr_assert(f.on_loop);
  while (g_main_context_iteration(mc, FALSE)) {
  }
  cr_assert_eq(f.calls, 1, "removed after its callback returned G_SOURCE_REMOVE");
  weft_ctx_end(cancel); /* held until the cancelling thread was joined: it used the cancel right */
  cr_assert_lt(weft_ctx_live_count(), live, "the finalized source released its reference");

  /* an already-done context dispatches at the next iteration; a destroyed source never */
  weft_ctx *dl, *c2;
  weft_cancel *dlc, *c2c;
  cr_assert_eq(weft_ctx_with_timeout(weft_background(), -1, &dl, &dlc), 0);
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &c2, &c2c), 0);
  fired g = {0}, h = {0};
  GSource *s1 = weft_glib_ctx_source_new(dl), *s2 = weft_glib_ctx_source_new(c2);
  g_source_set_callback(s1, G_SOURCE_FUNC(on_ctx_done), &g, NULL);
  g_source_set_callback(s2, G_SOURCE_FUNC(on_ctx_done), &h, NULL);
  g_source_attach(s1, mc);
  g_source_attach(s2, mc);
  g_source_destroy(s2);
  weft_ctx_cancel(c2c);
  g_main_context_iteration(mc, TRUE);
  while (g_main_context_iteration(mc, FALSE)) {
  }
  cr_assert_eq(g.calls, 1);
  cr_assert_eq(g.err, WEFT_EDEADLINE);
  cr_assert_eq(h.calls, 0);
  g_source_unref(s1);
  g_source_unref(s2);
  weft_ctx_end(dlc);
  weft_ctx_end(c2c);
}

/* ---- GCancellable <-> context -------------------------------------------------------------------- */

static void *cancel_gc_later(void *arg) {
  weft_ctx_sleep(weft_background(), WEFT_MS(5));
  g_cancellable_cancel(arg);
  return NULL;
}

Test(glib, cancellable_cancels_a_context, .timeout = WEFT_TEST_TIMEOUT) {
  GCancellable *c = g_cancellable_new();
  weft_ctx *ctx;
  weft_glib_link *l;
  cr_assert_eq(weft_glib_ctx_with_cancellable(weft_background(), c, &ctx, &l), 0);
  cr_assert_eq(G_OBJECT(c)->ref_count, 2, "the link holds a reference");
  cr_assert_eq(weft_ctx_err(ctx), 0);
  pthread_t th;
  pthread_create(&th, NULL, cancel_gc_later, c); /* cancelled from another thread */
  cr_assert_eq(weft_ctx_wait_for(ctx, WEFT_SEC(30)), WEFT_ECANCELED);
  pthread_join(th, NULL);
  weft_glib_link_free(l);
  cr_assert_eq(G_OBJECT(c)->ref_count, 1, "freeing the link drops its reference");
  weft_ctx_release(ctx);

  /* already cancelled: the context is done at once */
  cr_assert_eq(weft_glib_ctx_with_cancellable(weft_background(), c, &ctx, &l), 0);
  cr_assert_eq(weft_ctx_err(ctx), WEFT_ECANCELED);
  weft_glib_link_free(l);
  weft_ctx_release(ctx);
  g_object_unref(c);
}

Test(glib, freeing_the_cancellable_link_ends_the_context_and_disconnects, .timeout = WEFT_TEST_TIMEOUT) {
  GCancellable *c = g_cancellable_new();
  weft_ctx *ctx;
  weft_glib_link *l;
  size_t live = weft_ctx_live_count();
  cr_assert_eq(weft_glib_ctx_with_cancellable(weft_background(), c, &ctx, &l), 0);
  weft_glib_link_free(l);
  cr_assert_eq(weft_ctx_err(ctx), WEFT_ECANCELED, "the link's end cancels the derived context");
  weft_ctx_release(ctx);
  cr_assert_eq(weft_ctx_live_count(), live);
  g_cancellable_cancel(c); /* disconnected: nothing is called on the freed link (ASan would say) */
  cr_assert_eq(G_OBJECT(c)->ref_count, 1);
  g_object_unref(c);
}

Test(glib, context_cancels_a_cancellable, .timeout = WEFT_TEST_TIMEOUT) {
  GCancellable *c = g_cancellable_new();
  weft_ctx *ctx;
  weft_cancel *cancel;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &ctx, &cancel), 0);
  weft_glib_link *l;
  cr_assert_eq(weft_glib_cancel_when_done(ctx, c, &l), 0);
  cr_assert(!g_cancellable_is_cancelled(c));
  weft_ctx_cancel(cancel);
  for (int i = 0; i < 30000 && !g_cancellable_is_cancelled(c); i++) weft_ctx_sleep(weft_background(), WEFT_MS(1));
  cr_assert(g_cancellable_is_cancelled(c));
  weft_glib_link_free(l);
  for (int i = 0; i < 30000 && G_OBJECT(c)->ref_count != 1; i++) weft_ctx_sleep(weft_background(), WEFT_MS(1));
  cr_assert_eq(G_OBJECT(c)->ref_count, 1, "the registration's reference was dropped");
  g_object_unref(c);
  weft_ctx_end(cancel);
}

Test(glib, freed_link_never_cancels, .timeout = WEFT_TEST_TIMEOUT) {
  GCancellable *c = g_cancellable_new();
  weft_ctx *ctx;
  weft_cancel *cancel;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &ctx, &cancel), 0);
  weft_glib_link *l;
  cr_assert_eq(weft_glib_cancel_when_done(ctx, c, &l), 0);
  cr_assert_eq(G_OBJECT(c)->ref_count, 2);
  weft_glib_link_free(l);
  cr_assert_eq(G_OBJECT(c)->ref_count, 1, "a stopped registration gives its reference back");
  weft_ctx_cancel(cancel);
  weft_ctx_sleep(weft_background(), WEFT_MS(20));
  cr_assert(!g_cancellable_is_cancelled(c));
  g_object_unref(c);
  weft_ctx_end(cancel);

  /* bad input */
  weft_glib_link *bad = (weft_glib_link *)1;
  weft_ctx *out = (weft_ctx *)1;
  cr_assert_eq(weft_glib_cancel_when_done(NULL, c, &bad), WEFT_EINVAL);
  cr_assert_null(bad);
  cr_assert_eq(weft_glib_cancel_when_done(weft_background(), NULL, &bad), WEFT_EINVAL);
  GObject *other = g_object_new(G_TYPE_OBJECT, NULL); /* a GObject, not a GCancellable */
  cr_assert_eq(weft_glib_cancel_when_done(weft_background(), (GCancellable *)other, &bad), WEFT_EINVAL);
  g_object_unref(other);
  cr_assert_eq(weft_glib_ctx_with_cancellable(weft_background(), NULL, &out, &bad), WEFT_EINVAL);
  cr_assert_null(out);
  cr_assert_eq(weft_glib_ctx_with_cancellable(NULL, c, &out, &bad), WEFT_EINVAL);
  weft_glib_link_free(NULL);
}
