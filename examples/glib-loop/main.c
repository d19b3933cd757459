/* glib-loop: offloading work from a GLib main loop to a weft pool, with GCancellables wired to weft
 * contexts both ways (weft's GLib adapter, weft/glib.h).
 *
 * A GLib program cancels with GCancellable; weft cancels with contexts. Here each request carries a
 * GCancellable of its own (as a GIO call would take one), bridged into the request's weft context
 * (weft_glib_ctx_with_cancellable), so cancelling it stops the request's work on the pool mid-run. The
 * other way, the server's weft context is bridged into a GCancellable (weft_glib_cancel_when_done) that a
 * pending GIO operation uses — an accept on a loopback GSocketListener — so the server's shutdown cancels
 * that GIO call. Results come back to the main loop's thread with their terminal state (weft_glib_submit).
 *
 * The program drives itself (every request is made from the main loop, at 10 ms intervals):
 *   r-1..r-4   50 ms of work: completed;
 *   r-5, r-6   5 s of work, their GCancellable cancelled 100 ms after they started: the work stops;
 *   r-7        5 s of work under a 100 ms deadline: deadline exceeded;
 *   r-8        100 ms of work, finishes during the shutdown's grace period;
 *   r-9, r-10  20 s of work: still running when the grace period (300 ms) ends, cancelled
 *              (weft_glib_close with cancel: canceled while running).
 * The shutdown starts once every request was made, or on SIGTERM/SIGINT (g_unix_signal_add). Then a
 * report where every request is accounted for, checked against the adapter's counts; exits 0 when it adds
 * up (the line "OK: ..."). */
#include <glib-unix.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <weft/glib.h>
#include <weft/weft.h>

#define NREQ 10

typedef struct req {
  int id, work_ms, deadline_ms;
  GCancellable *gc;     /* the caller's cancellable, bridged into ctx */
  weft_glib_link *link;
  weft_ctx *dl_ctx;     /* server context + deadline */
  weft_cancel *dl_cancel;
  weft_ctx *ctx;        /* dl_ctx + the GCancellable: the job runs under it */
  weft_glib_job *job;   /* valid until its result came */
  bool gc_cancelled, in_flight;
  _Atomic bool started; /* written by the worker */
  long sum;
} req;

static struct {
  GMainLoop *loop;
  weft_pool *pool;
  weft_glib *g;
  weft_ctx *server;
  weft_cancel *server_cancel;
  GCancellable *accept_gc; /* cancelled by the server's context */
  weft_glib_link *accept_link;
  GSocketListener *listener;
  bool accept_ended, accept_cancelled;
  req reqs[NREQ];
  int next, inflight;
  bool shutting_down, closed;
  guint grace_src;
  int completed, deadline, gc_stopped, shut_stopped, shut_unstarted, other;
  int by_state[5]; /* the ledger by terminal state, to check against the adapter's counts */
  weft_pool_report ad;
} S;

static void log_line(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static void log_line(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
  fflush(stdout);
}

static int work(weft_ctx *ctx, void *arg) {
  req *r = arg;
  atomic_store(&r->started, true); /* read by the main loop */
  long sum = 0;
  for (int ms = 0; ms < r->work_ms; ms += 5) {
    int rc = weft_ctx_sleep(ctx, WEFT_MS(5));
    if (rc != 0) return rc;
    sum += ms;
  }
  r->sum = sum;
  return 0;
}

static void start_shutdown(const char *why);
static void on_closed(weft_glib *g, void *arg);

static void on_result(void *job_arg, int job_rc, weft_job_state state, void *cb_arg) {
  req *r = job_arg;
  r->job = NULL;
  r->in_flight = false;
  S.inflight--;
  S.by_state[state]++;
  if (state == WEFT_JOB_CANCELED_BEFORE_START && job_rc == WEFT_EDEADLINE) { /* a slow start */
    S.deadline++;
    log_line("[r-%d] deadline exceeded before it started", r->id);
    state = WEFT_JOB_PENDING; /* counted */
  }
  switch (state) {
  case WEFT_JOB_PENDING:
    break;
  case WEFT_JOB_COMPLETED:
    S.completed++;
    log_line("[r-%d] completed (sum %ld)", r->id, r->sum);
    break;
  case WEFT_JOB_FAILED:
    if (job_rc == WEFT_EDEADLINE) {
      S.deadline++;
      log_line("[r-%d] failed: deadline exceeded", r->id);
    } else if (job_rc == WEFT_ECANCELED && r->gc_cancelled) {
      S.gc_stopped++;
      log_line("[r-%d] stopped mid-run: its GCancellable was cancelled (context canceled)", r->id);
    } else {
      S.other++;
      log_line("[r-%d] failed: %s", r->id, weft_err_name(job_rc));
    }
    break;
  case WEFT_JOB_CANCELED_WHILE_RUNNING:
    S.shut_stopped++;
    log_line("[r-%d] shutdown: stopped mid-run (canceled while running)", r->id);
    break;
  default:
    S.shut_unstarted++;
    log_line("[r-%d] shutdown: never started (canceled before start)", r->id);
    break;
  }
  weft_glib_link_free(r->link);
  weft_ctx_release(r->ctx);
  weft_ctx_end(r->dl_cancel);
  g_object_unref(r->gc);
  if (S.shutting_down && S.inflight == 0 && !S.closed) {
    log_line("shutdown: no request in flight");
    if (S.grace_src != 0) g_source_remove(S.grace_src);
    S.grace_src = 0;
    S.closed = true;
    weft_glib_close(S.g, false, on_closed, NULL);
  }
}

static gboolean cancel_gc(gpointer data) {
  req *r = data;
  if (!r->in_flight) return G_SOURCE_REMOVE;
  if (!atomic_load(&r->started)) return G_SOURCE_CONTINUE; /* not started yet: look again later */
  log_line("[r-%d] cancelling its GCancellable", r->id);
  r->gc_cancelled = true;
  g_cancellable_cancel(r->gc); /* the bridge cancels the request's weft context, here and now */
  return G_SOURCE_REMOVE;
}

static gboolean make_request(gpointer data) {
  static const int work_ms[NREQ] = {50, 50, 50, 50, 5000, 5000, 5000, 100, 20000, 20000};
  if (S.shutting_down) return G_SOURCE_REMOVE;
  req *r = &S.reqs[S.next];
  r->id = ++S.next;
  r->work_ms = work_ms[r->id - 1];
  r->deadline_ms = r->id == 7 ? 100 : 60000;
  r->gc = g_cancellable_new();
  int rc = weft_ctx_with_timeout(S.server, WEFT_MS(r->deadline_ms), &r->dl_ctx, &r->dl_cancel);
  if (rc == 0) rc = weft_glib_ctx_with_cancellable(r->dl_ctx, r->gc, &r->ctx, &r->link);
  if (rc == 0) rc = weft_glib_submit(S.g, S.pool, r->ctx, work, r, on_result, NULL, &r->job);
  if (rc != 0) {
    log_line("[r-%d] refused: %s", r->id, weft_err_name(rc));
    S.other++;
    return G_SOURCE_REMOVE;
  }
  r->in_flight = true;
  S.inflight++;
  log_line("[r-%d] submitted: %d ms of work, deadline %d ms", r->id, r->work_ms, r->deadline_ms);
  if (r->id == 5 || r->id == 6) g_timeout_add(100, cancel_gc, r);
  if (S.next == NREQ) {
    start_shutdown("every request was made");
    return G_SOURCE_REMOVE;
  }
  return G_SOURCE_CONTINUE;
}

static void on_closed(weft_glib *g, void *arg) {
  weft_glib_report(g, &S.ad);
  /* the server's context ends: its bridge cancels the GCancellable of the pending accept */
  weft_ctx_cancel(S.server_cancel);
}

static gboolean grace_over(gpointer data) {
  S.grace_src = 0;
  log_line("shutdown: grace period over: cancelling %d request(s) in flight", S.inflight);
  S.closed = true;
  weft_glib_close(S.g, true, on_closed, NULL);
  return G_SOURCE_REMOVE;
}

static void start_shutdown(const char *why) {
  if (S.shutting_down) return;
  S.shutting_down = true;
  log_line("shutdown: %s; %d request(s) in flight, grace 300 ms", why, S.inflight);
  if (S.inflight == 0) {
    S.closed = true;
    weft_glib_close(S.g, false, on_closed, NULL);
    return;
  }
  S.grace_src = g_timeout_add(300, grace_over, NULL);
}

static gboolean on_signal(gpointer data) {
  start_shutdown("signal received");
  return G_SOURCE_CONTINUE;
}

static void on_accept(GObject *src, GAsyncResult *res, gpointer data) {
  GError *err = NULL;
  GSocketConnection *c = g_socket_listener_accept_finish(G_SOCKET_LISTENER(src), res, NULL, &err);
  S.accept_ended = true;
  if (c != NULL) {
    g_object_unref(c); /* nobody is expected to connect */
  } else {
    S.accept_cancelled = g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED);
    log_line("the pending accept ended: %s", err->message);
    g_error_free(err);
  }
  g_main_loop_quit(S.loop);
}

int main(void) {
  weft_pool_opts po = WEFT_POOL_OPTS_INIT;
  po.workers = 4;
  int rc = weft_pool_create(&po, &S.pool);
  if (rc == 0) rc = weft_glib_new(NULL, &S.g);
  if (rc == 0) rc = weft_ctx_with_cancel(weft_background(), &S.server, &S.server_cancel);
  S.accept_gc = g_cancellable_new();
  if (rc == 0) rc = weft_glib_cancel_when_done(S.server, S.accept_gc, &S.accept_link);
  if (rc != 0) {
    fprintf(stderr, "glib-loop: setup failed: %s\n", weft_strerror(rc));
    return 1;
  }
  S.loop = g_main_loop_new(NULL, FALSE);
  S.listener = g_socket_listener_new();
  GInetAddress *lo = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
  GSocketAddress *addr = g_inet_socket_address_new(lo, 0);
  GSocketAddress *bound = NULL;
  GError *err = NULL;
  if (!g_socket_listener_add_address(S.listener, addr, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL, &bound,
                                     &err)) {
    fprintf(stderr, "glib-loop: cannot listen on loopback: %s\n", err->message);
    return 1;
  }
  log_line("glib-loop: a pending accept on 127.0.0.1:%u, cancelled through the server's weft context",
           g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound)));
  g_object_unref(bound);
  g_object_unref(addr);
  g_object_unref(lo);
  g_socket_listener_accept_async(S.listener, S.accept_gc, on_accept, NULL);
  guint sig1 = g_unix_signal_add(SIGTERM, on_signal, NULL), sig2 = g_unix_signal_add(SIGINT, on_signal, NULL);
  g_timeout_add(10, make_request, NULL);

  g_main_loop_run(S.loop); /* until the pending accept was cancelled, at the very end */

  g_source_remove(sig1);
  g_source_remove(sig2);
  weft_glib_link_free(S.accept_link);
  g_object_unref(S.accept_gc);
  g_socket_listener_close(S.listener);
  g_object_unref(S.listener);
  weft_pool_report pr;
  weft_pool_shutdown(S.pool, WEFT_POOL_DRAIN, WEFT_SEC(5), &pr);
  weft_pool_destroy(S.pool, NULL);
  weft_ctx_end(S.server_cancel);
  while (g_main_context_iteration(NULL, FALSE)) {
  }
  g_main_loop_unref(S.loop);

  int ended = S.completed + S.deadline + S.gc_stopped + S.shut_stopped + S.shut_unstarted + S.other;
  printf("report: %d request(s) = %d completed + %d deadline exceeded + %d stopped by their GCancellable + %d "
         "stopped by the shutdown (%d mid-run, %d before start) + %d other\n",
         S.next, S.completed, S.deadline, S.gc_stopped, S.shut_stopped + S.shut_unstarted, S.shut_stopped,
         S.shut_unstarted, S.other);
  printf("adapter report: submitted %lu, completed %lu, failed %lu, canceled before start %lu, canceled while "
         "running %lu, in flight %lu; pool: submitted %lu\n",
         (unsigned long)S.ad.submitted, (unsigned long)S.ad.completed, (unsigned long)S.ad.failed,
         (unsigned long)S.ad.canceled_before_start, (unsigned long)S.ad.canceled_while_running,
         (unsigned long)S.ad.still_running, (unsigned long)pr.submitted);
  bool ok = ended == S.next && S.next == NREQ && S.other == 0 && S.ad.submitted == (uint64_t)NREQ &&
            pr.submitted == (uint64_t)NREQ && S.ad.still_running == 0 &&
            S.ad.completed == (uint64_t)S.by_state[WEFT_JOB_COMPLETED] &&
            S.ad.failed == (uint64_t)S.by_state[WEFT_JOB_FAILED] &&
            S.ad.canceled_while_running == (uint64_t)S.by_state[WEFT_JOB_CANCELED_WHILE_RUNNING] &&
            S.ad.canceled_before_start == (uint64_t)S.by_state[WEFT_JOB_CANCELED_BEFORE_START] &&
            S.accept_cancelled;
  printf(ok ? "OK: every request accounted for, GCancellables and contexts wired both ways\n"
            : "MISMATCH: the ledger and the reports disagree\n");
  return ok ? 0 : 1;
}
