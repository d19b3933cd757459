/* uv-daemon: a libuv TCP service that offloads each request's work to a weft pool, with weft's libuv
 * adapter (weft/uv.h).
 *
 * The protocol is one line per request on a connection, one request at a time:
 *     work MS [deadline MS]      ->  "ok r-N SUM" | "deadline r-N" | "canceled r-N: shutting down" | "busy"
 * The work is MS milliseconds of steps (a context-aware sleep each), run on the pool under the request's
 * context: a child of the server's context with a deadline (--deadline-ms, or the request's own). The
 * result comes back as a callback on the loop thread with the job's terminal state.
 *
 * What it shows:
 *   - a client that disconnects cancels its request's work mid-run: the read callback sees EOF and calls
 *     weft_uv_job_cancel; the job's context ends, the job stops within a step, and its result says
 *     "canceled while running" (libuv's own uv_cancel could only stop work that had not started);
 *   - SIGTERM (weft_uv_signal_ctx, watched with weft_uv_watch) stops accepting, lets the requests in flight
 *     finish within the grace period (--grace-ms), then cancels the rest (the pool's shutdown in cancel
 *     mode: the pool's report counts them canceled while running);
 *   - a report where every request is accounted for, checked against the adapter's counts
 *     (weft_uv_report) and the pool's report (weft_pool_shutdown).
 *
 *   uv-daemon [--port P] [--workers N] [--deadline-ms MS] [--grace-ms MS]
 * Loopback only (127.0.0.1); port 0 (the default) picks a free one, printed as "listening on ...".
 * Exits 0 when the report adds up. tests: examples/uv-daemon/test.sh. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdarg.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <weft/uv.h>
#include <weft/weft.h>

#define STEP WEFT_MS(5)

typedef struct conn conn;
typedef struct req {
  int id;
  conn *c; /* NULL once the client left */
  weft_ctx *ctx;
  weft_cancel *cancel;
  weft_uv_job *job;
  int work_ms;
  int64_t left_at;          /* when the client left (ns), 0 while connected */
  bool shutdown_cancel;     /* cancelled when the grace period ran out */
  _Atomic int64_t started;  /* when the job started (written on a worker) */
  _Atomic int64_t stopped;  /* when the job returned */
  long sum;
  struct req *prev, *next;  /* in flight */
} req;

struct conn {
  uv_tcp_t tcp;
  char line[128];
  size_t len;
  req *r; /* the request in flight, or NULL */
  bool closing;
  conn *prev, *next;
};

static struct {
  uv_loop_t *loop;
  uv_tcp_t listener;
  weft_uv *u;
  weft_pool *pool;
  weft_ctx *server;   /* parent of every request's context */
  weft_cancel *server_cancel;
  weft_ctx *sig;      /* cancelled by SIGTERM */
  weft_uv_signal *sigw;
  weft_uv_watch *watch;
  uv_timer_t grace_timer;
  int64_t deadline, grace;
  bool shutting_down, grace_armed, closing, pool_shut;
  int next_id;
  conn conns;  /* sentinel */
  req live;    /* sentinel: requests in flight */
  int inflight;
  /* the ledger: every request ends in exactly one of these */
  int accepted, answered, deadline_hit, failed, left_mid_run, left_before_start, shut_mid_run,
      shut_before_start, refused_busy;
  weft_pool_report pool_rep, ad_rep;
} S;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
  fflush(stdout);
}

/* ---- the work, on a pool worker ---------------------------------------------------------------- */

static int work(weft_ctx *ctx, void *arg) {
  req *r = arg;
  atomic_store(&r->started, now_ns());
  log_line("[r-%d] work started (%d ms)", r->id, r->work_ms);
  long sum = 0;
  int rc = 0;
  for (int64_t done = 0; done < WEFT_MS(r->work_ms); done += STEP) {
    rc = weft_ctx_sleep(ctx, STEP); /* stops within a step once the request's context ends */
    if (rc != 0) break;
    sum += done / STEP;
  }
  r->sum = sum;
  atomic_store(&r->stopped, now_ns());
  return rc;
}

/* ---- writing answers ---------------------------------------------------------------------------- */

typedef struct wreq {
  uv_write_t w;
  char buf[160];
} wreq;

static void on_written(uv_write_t *w, int status) { free(w); }

static void answer(conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void answer(conn *c, const char *fmt, ...) {
  if (c == NULL || c->closing) return;
  wreq *w = malloc(sizeof *w);
  if (w == NULL) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(w->buf, sizeof w->buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0 || n >= (int)sizeof w->buf - 1) n = (int)sizeof w->buf - 2;
  w->buf[n++] = '\n';
  uv_buf_t b = uv_buf_init(w->buf, (unsigned)n);
  if (uv_write(&w->w, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) free(w);
}

/* ---- results, on the loop thread ------------------------------------------------------------------ */

static void close_adapter(bool cancel);

static double ms_between(int64_t a, int64_t b) { return (double)(b - a) / 1e6; }

static void on_result(void *job_arg, int job_rc, weft_job_state state, void *cb_arg) {
  req *r = job_arg;
  r->prev->next = r->next;
  r->next->prev = r->prev;
  S.inflight--;
  conn *c = r->c;
  if (c != NULL) c->r = NULL;
  switch (state) {
  case WEFT_JOB_COMPLETED:
    S.answered++;
    answer(c, "ok r-%d %ld", r->id, r->sum);
    log_line("[r-%d] completed: answered", r->id);
    break;
  case WEFT_JOB_FAILED:
    if (job_rc == WEFT_EDEADLINE) {
      S.deadline_hit++;
      answer(c, "deadline r-%d", r->id);
      log_line("[r-%d] failed: deadline exceeded after %.0f ms of work", r->id,
               ms_between(atomic_load(&r->started), atomic_load(&r->stopped)));
    } else {
      S.failed++;
      answer(c, "error r-%d %s", r->id, weft_err_name(job_rc));
      log_line("[r-%d] failed: %s", r->id, weft_err_name(job_rc));
    }
    break;
  case WEFT_JOB_CANCELED_WHILE_RUNNING:
    if (r->left_at != 0) {
      S.left_mid_run++;
      log_line("[r-%d] client left: work stopped %.1f ms after it, %.0f of %d ms done (canceled while running)",
               r->id, ms_between(r->left_at, atomic_load(&r->stopped)),
               ms_between(atomic_load(&r->started), atomic_load(&r->stopped)), r->work_ms);
    } else {
      S.shut_mid_run++;
      answer(c, "canceled r-%d: shutting down", r->id);
      log_line("[r-%d] shutdown: work stopped mid-run (canceled while running)", r->id);
    }
    break;
  default: /* WEFT_JOB_CANCELED_BEFORE_START */
    if (r->left_at != 0) {
      S.left_before_start++;
      log_line("[r-%d] client left before the work started (canceled before start)", r->id);
    } else {
      S.shut_before_start++;
      answer(c, "canceled r-%d: shutting down", r->id);
      log_line("[r-%d] shutdown: never started (canceled before start)", r->id);
    }
    break;
  }
  weft_ctx_end(r->cancel);
  free(r);
  if (S.shutting_down && S.inflight == 0 && !S.closing) {
    log_line("shutdown: every request in flight ended within the grace period");
    close_adapter(false);
  }
}

/* ---- connections ---------------------------------------------------------------------------------- */

static void on_conn_closed(uv_handle_t *h) { free(h->data); }

static void conn_close(conn *c) {
  if (c->closing) return;
  c->closing = true;
  c->prev->next = c->next;
  c->next->prev = c->prev;
  uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void start_request(conn *c, int work_ms, int deadline_ms) {
  if (c->r != NULL) {
    answer(c, "busy: one request at a time");
    return;
  }
  req *r = calloc(1, sizeof *r);
  if (r == NULL) {
    answer(c, "busy: out of memory");
    return;
  }
  r->id = ++S.next_id;
  r->c = c;
  r->work_ms = work_ms;
  int64_t dl = deadline_ms > 0 ? WEFT_MS(deadline_ms) : S.deadline;
  int rc = weft_ctx_with_timeout(S.server, dl, &r->ctx, &r->cancel);
  if (rc == 0) rc = weft_uv_submit(S.u, S.pool, r->ctx, work, r, on_result, NULL, &r->job);
  if (rc != 0) {
    S.refused_busy++;
    log_line("[r-%d] refused: %s", r->id, weft_err_name(rc));
    answer(c, "busy r-%d: %s", r->id, weft_err_name(rc));
    weft_ctx_end(r->cancel);
    free(r);
    return;
  }
  S.accepted++;
  S.inflight++;
  r->prev = S.live.prev;
  r->next = &S.live;
  S.live.prev->next = r;
  S.live.prev = r;
  c->r = r;
  log_line("[r-%d] accepted: work %d ms, deadline %.0f ms", r->id, work_ms, (double)dl / 1e6);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  static char slab[4096]; /* the loop reads one connection at a time */
  *buf = uv_buf_init(slab, sizeof slab);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  conn *c = s->data;
  if (n < 0) { /* EOF or error: the client is gone; its work must stop */
    if (c->r != NULL) {
      req *r = c->r;
      r->left_at = now_ns();
      r->c = NULL;
      c->r = NULL;
      int rc = weft_uv_job_cancel(r->job);
      log_line("[r-%d] client disconnected: cancelling its work (%s)", r->id,
               rc == 0 ? "cancel sent" : "it had already ended");
    }
    conn_close(c);
    return;
  }
  for (ssize_t i = 0; i < n; i++) {
    char ch = buf->base[i];
    if (ch != '\n') {
      if (c->len < sizeof c->line - 1) c->line[c->len++] = ch;
      continue;
    }
    c->line[c->len] = '\0';
    c->len = 0;
    int work_ms = 0, deadline_ms = 0;
    if (sscanf(c->line, "work %d deadline %d", &work_ms, &deadline_ms) >= 1 && work_ms >= 0 && work_ms <= 600000)
      start_request(c, work_ms, deadline_ms);
    else
      answer(c, "usage: work MS [deadline MS]");
  }
}

static void on_connection(uv_stream_t *server, int status) {
  if (status != 0 || S.shutting_down) return;
  conn *c = calloc(1, sizeof *c);
  if (c == NULL) return;
  uv_tcp_init(S.loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    return;
  }
  c->prev = S.conns.prev;
  c->next = &S.conns;
  S.conns.prev->next = c;
  S.conns.prev = c;
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- shutdown -------------------------------------------------------------------------------------- */

/* The adapter's close callback: every result has been delivered; the last thing the adapter does. */
static void on_adapter_closed(weft_uv *u, void *arg) {
  weft_uv_report(u, &S.ad_rep);
  for (conn *c = S.conns.next; c != &S.conns;) {
    conn *n = c->next;
    conn_close(c);
    c = n;
  }
  weft_uv_signal_stop(S.sigw);
  weft_ctx_release(S.sig);
  if (!S.pool_shut) weft_pool_shutdown(S.pool, WEFT_POOL_DRAIN, WEFT_SEC(5), &S.pool_rep);
}

static void close_adapter(bool cancel) {
  S.closing = true;
  if (S.grace_armed && !uv_is_closing((uv_handle_t *)&S.grace_timer)) uv_close((uv_handle_t *)&S.grace_timer, NULL);
  /* with cancel, every job in flight (each has a handle) is cancelled; their results still come first */
  weft_uv_close(S.u, cancel, on_adapter_closed, NULL);
}

static void on_grace_over(uv_timer_t *t) {
  log_line("shutdown: grace period over: cancelling %d request(s) still in flight", S.inflight);
  for (req *r = S.live.next; r != &S.live; r = r->next) r->shutdown_cancel = true;
  /* The pool's cancel mode: running jobs see their context end and return within a step (the wait here
   * is that short), queued ones are discarded; their results reach on_result through the adapter. */
  weft_pool_shutdown(S.pool, WEFT_POOL_CANCEL, WEFT_SEC(5), &S.pool_rep);
  S.pool_shut = true;
  close_adapter(false);
}

static void on_sigterm(weft_uv_watch *w, int err, void *arg) {
  log_line("shutdown: SIGTERM received (signal %d): no longer accepting; %d request(s) in flight, grace %.0f ms",
           weft_cause_signal(weft_ctx_cause(S.sig)), S.inflight, (double)S.grace / 1e6);
  S.shutting_down = true;
  uv_close((uv_handle_t *)&S.listener, NULL);
  weft_uv_watch_close(w);
  S.watch = NULL;
  if (S.inflight == 0) {
    close_adapter(false);
    return;
  }
  uv_timer_init(S.loop, &S.grace_timer);
  S.grace_armed = true;
  uv_timer_start(&S.grace_timer, on_grace_over, (uint64_t)(S.grace / 1000000), 0);
}

static int report(void) {
  const weft_pool_report *ap = &S.ad_rep, a = *ap;
  const weft_pool_report *p = &S.pool_rep;
  int ended = S.answered + S.deadline_hit + S.failed + S.left_mid_run + S.left_before_start + S.shut_mid_run +
              S.shut_before_start;
  printf("report: %d request(s) accepted = %d answered + %d deadline exceeded + %d failed + %d client left "
         "(%d stopped mid-run, %d before start) + %d cancelled by shutdown (%d mid-run, %d before start); "
         "%d refused\n",
         S.accepted, S.answered, S.deadline_hit, S.failed, S.left_mid_run + S.left_before_start, S.left_mid_run,
         S.left_before_start, S.shut_mid_run + S.shut_before_start, S.shut_mid_run, S.shut_before_start,
         S.refused_busy);
  printf("adapter report (weft_uv_report): submitted %" PRIu64 ", completed %" PRIu64 ", failed %" PRIu64
         ", canceled before start %" PRIu64 ", canceled while running %" PRIu64 ", in flight %" PRIu64 "\n",
         a.submitted, a.completed, a.failed, a.canceled_before_start, a.canceled_while_running, a.still_running);
  printf("pool report (weft_pool_shutdown): submitted %" PRIu64 ", completed %" PRIu64 ", failed %" PRIu64
         ", canceled before start %" PRIu64 ", canceled while running %" PRIu64 ", still running %" PRIu64
         " (a job whose client left is failed there, as any job whose submitter's context ended: only the "
         "pool's shutdown makes \"canceled while running\" in its report)\n",
         p->submitted, p->completed, p->failed, p->canceled_before_start, p->canceled_while_running,
         p->still_running);
  bool ok = ended == S.accepted && S.inflight == 0 && a.submitted == (uint64_t)S.accepted &&
            a.completed == (uint64_t)S.answered && a.failed == (uint64_t)(S.deadline_hit + S.failed) &&
            a.canceled_while_running == (uint64_t)(S.left_mid_run + S.shut_mid_run) &&
            a.canceled_before_start == (uint64_t)(S.left_before_start + S.shut_before_start) &&
            a.still_running == 0 && p->submitted == a.submitted && p->still_running == 0 &&
            p->canceled_before_start == a.canceled_before_start &&
            p->completed + p->failed + p->canceled_while_running ==
                a.completed + a.failed + a.canceled_while_running;
  if (ok)
    printf("OK: every request accounted for (%d accepted, %d ended)\n", S.accepted, ended);
  else
    printf("MISMATCH: the ledger, the adapter's report and the pool's report disagree\n");
  fflush(stdout);
  return ok ? 0 : 1;
}

static int64_t arg_ms(const char *s) { return WEFT_MS(atol(s)); }

int main(int argc, char **argv) {
  int port = 0;
  size_t workers = 4;
  S.deadline = WEFT_SEC(10);
  S.grace = WEFT_MS(1000);
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) port = atoi(argv[++i]);
    else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) workers = (size_t)atoi(argv[++i]);
    else if (strcmp(argv[i], "--deadline-ms") == 0 && i + 1 < argc) S.deadline = arg_ms(argv[++i]);
    else if (strcmp(argv[i], "--grace-ms") == 0 && i + 1 < argc) S.grace = arg_ms(argv[++i]);
    else {
      fprintf(stderr, "usage: %s [--port P] [--workers N] [--deadline-ms MS] [--grace-ms MS]\n", argv[0]);
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  S.loop = uv_default_loop();
  S.conns.prev = S.conns.next = &S.conns;
  S.live.prev = S.live.next = &S.live;
  weft_pool_opts po = WEFT_POOL_OPTS_INIT;
  po.workers = workers;
  po.queue_cap = 256;
  int rc = weft_pool_create(&po, &S.pool);
  if (rc == 0) rc = weft_uv_init(S.loop, &S.u);
  if (rc == 0) rc = weft_ctx_with_cancel(weft_background(), &S.server, &S.server_cancel);
  if (rc == 0) rc = weft_uv_signal_ctx(S.loop, weft_background(), SIGTERM, &S.sig, &S.sigw);
  if (rc == 0) rc = weft_uv_watch_start(S.loop, S.sig, on_sigterm, NULL, &S.watch);
  if (rc != 0) {
    fprintf(stderr, "uv-daemon: setup failed: %s\n", weft_strerror(rc));
    return 1;
  }
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", port, &addr);
  uv_tcp_init(S.loop, &S.listener);
  int urc = uv_tcp_bind(&S.listener, (const struct sockaddr *)&addr, 0);
  if (urc == 0) urc = uv_listen((uv_stream_t *)&S.listener, 128, on_connection);
  if (urc != 0) {
    fprintf(stderr, "uv-daemon: cannot listen on 127.0.0.1:%d: %s\n", port, uv_strerror(urc));
    return 1;
  }
  struct sockaddr_in bound;
  int blen = sizeof bound;
  uv_tcp_getsockname(&S.listener, (struct sockaddr *)&bound, &blen);
  log_line("uv-daemon: listening on 127.0.0.1:%d (%zu workers; send SIGTERM to stop)", ntohs(bound.sin_port),
           workers);

  uv_run(S.loop, UV_RUN_DEFAULT);
  int status = report();
  weft_ctx_end(S.server_cancel);
  if (uv_loop_close(S.loop) != 0) {
    printf("MISMATCH: a libuv handle was left open\n");
    status = 1;
  }
  weft_pool_destroy(S.pool, NULL);
  return status;
}
