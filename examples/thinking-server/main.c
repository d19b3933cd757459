/* thinking-server: an HTTP/1.1 server whose handlers stop "thinking" the moment the client goes away.
 *
 * The Go guides' server: the handler takes r.Context(), which net/http cancels when the client disconnects,
 * and thinks in 1 s steps with `select { case <-time.After(time.Second): case <-ctx.Done(): return }`.
 * A handler that ignores its context keeps burning a thread for a client that is long gone.
 *
 * Here, in C with weft:
 *   - the server-level context (Go's BaseContext) carries the server's name as a value and is the ancestor
 *     of every request; cancelling it is the hard stop when shutdown's grace period runs out;
 *   - each connection gets a connection-level context (Go's ConnContext) under it, carrying the connection's
 *     number and peer address; the connection thread cancels it with the cause "client disconnected" when
 *     poll() reports POLLRDHUP (the peer closed its side) while a request is being handled;
 *   - each request gets its own context under the connection's, carrying the request id; the handler runs
 *     on its own thread and thinks with weft_ctx_sleep(), which returns the moment the context ends;
 *   - SIGTERM/SIGINT cancel a signal context (weft_ctx_with_signals, Go's signal.NotifyContext): the server
 *     stops accepting, closes idle connections, and waits for in-flight requests up to a grace deadline
 *     (weft_ctx_wait_for on a "drained" context); after it, it cancels the server context so every handler
 *     stops, and answers 503. A second signal exits at once.
 *
 *   thinking-server [--fast] [--ignore-context] [--steps N] [--step-ms MS] [--grace-ms MS]
 *     --fast (or WEFT_EXAMPLE_FAST=1)  steps of 250 ms instead of 1 s, grace 3 s instead of 10 s
 *     --ignore-context                 the problem: the handler sleeps without looking at its context
 * Listens on 127.0.0.1 only, on an ephemeral port that it prints. Try it:
 *     curl -m 1.5 http://127.0.0.1:PORT/think          (curl gives up after 1.5 s; watch the log)
 *     kill -TERM PID
 * Exits 0 after a clean shutdown. tests/thinking-server: test.sh drives the scenarios and checks the log. */
#define _GNU_SOURCE /* POLLRDHUP, accept4, MSG_NOSIGNAL */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <weft/weft.h>

/* Causes of our own (any negative code that is not weft's), so logs can tell why a context ended. */
#define CAUSE_CLIENT_GONE (-1001)
#define CAUSE_SHUTDOWN (-1002)

/* Context keys: the address of a unique object each, so they never collide with anyone else's keys. */
static const char server_key, conn_key, request_key;

typedef struct options {
  int steps;
  int64_t step;
  int64_t grace;
  bool ignore_context;
} options;

typedef struct conn_info { /* the value under conn_key */
  int id;
  char peer[64];
} conn_info;

typedef struct request_info { /* the value under request_key */
  int id;
  char path[128];
} request_info;

typedef struct conn conn;
typedef struct server {
  options opt;
  weft_ctx *stop;    /* cancelled by SIGTERM/SIGINT: graceful shutdown begins */
  weft_ctx *base;    /* the server-level context: parent of every connection's context */
  weft_ctx *drained; /* cancelled once shutdown began and no connection is left */
  weft_cancel *stop_cancel, *base_cancel, *drained_cancel; /* the server's rights to cancel them */
  pthread_mutex_t mu;
  int active; /* connections not yet finished, under mu */
  bool shutting;
  conn *conns; /* every connection ever accepted, joined at the end; under mu */
  atomic_int next_request;
  atomic_int served, canceled, stopped;
} server;

struct conn {
  server *srv;
  int fd;
  conn_info info;
  weft_ctx *ctx;  /* the connection's cancel context (Go's ConnContext); cancelled when the client goes away */
  weft_cancel *cancel; /* kept by the connection thread: handlers get only contexts */
  weft_ctx *vctx; /* ctx plus the conn_info value: the parent of this connection's requests */
  pthread_t thread;
  conn *next;
};

/* ---- logging: one line per call, with the time since the server started ---------------------------- */

static int64_t t0;

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  flockfile(stdout);
  printf("[%7.3fs] ", (double)(weft_now() - t0) / 1e9);
  vprintf(fmt, ap);
  putchar('\n');
  funlockfile(stdout);
  va_end(ap);
}

static const char *cause_name(int cause) {
  switch (cause) {
  case CAUSE_CLIENT_GONE: return "client disconnected";
  case CAUSE_SHUTDOWN: return "server shutting down";
  default: return weft_strerror(cause);
  }
}

/* ---- the handler: thinks in steps, on its own thread ----------------------------------------------- */

typedef struct handler {
  weft_ctx *ctx;         /* the request's context (a value context under the request's cancel context) */
  weft_cancel *finished; /* the one right the handler is given: it cancels this when it returns (the
                          * connection thread polls that context's fd) */
  const options *opt;
  int steps_done;
  int result;            /* 0, or the context's error when it stopped early */
  atomic_llong gone_at;  /* when the connection thread saw the client leave (0: it did not) */
  atomic_llong ended_at; /* when the handler returned */
} handler;

/* A plain sleep that ignores every context: what a handler that forgets its context does. */
static void sleep_ignoring_context(int64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static void *handler_main(void *arg) {
  handler *h = arg;
  /* Everything the handler needs to know about its request comes from its context's values. */
  const request_info *req = weft_ctx_value(h->ctx, &request_key);
  const conn_info *ci = weft_ctx_value(h->ctx, &conn_key);
  const char *srv_name = weft_ctx_value(h->ctx, &server_key);
  logf_("[r-%d] %s: GET %s on connection %d from %s: thinking in %d steps of %.2fs%s", req->id, srv_name,
        req->path, ci->id, ci->peer, h->opt->steps, (double)h->opt->step / 1e9,
        h->opt->ignore_context ? " (ignoring the context)" : "");
  h->result = 0;
  for (int i = 1; i <= h->opt->steps; i++) {
    int rc;
    if (h->opt->ignore_context) {
      sleep_ignoring_context(h->opt->step); /* the problem: nothing tells this sleep the client left */
      rc = 0;
    } else {
      rc = weft_ctx_sleep(h->ctx, h->opt->step); /* the fix: returns as soon as the context ends */
    }
    if (rc != 0) {
      h->result = rc;
      logf_("[r-%d] stopped thinking during step %d/%d: %s (cause: %s)", req->id, i, h->opt->steps,
            weft_strerror(rc), cause_name(weft_ctx_cause(h->ctx)));
      break;
    }
    h->steps_done = i;
    if (weft_ctx_err(h->ctx) != 0)
      logf_("[r-%d] still thinking: step %d/%d done, though the request context says '%s' (cause: %s)", req->id,
            i, h->opt->steps, weft_strerror(weft_ctx_err(h->ctx)), cause_name(weft_ctx_cause(h->ctx)));
    else
      logf_("[r-%d] thinking: step %d/%d done", req->id, i, h->opt->steps);
  }
  if (h->result == 0) logf_("[r-%d] finished thinking", req->id);
  atomic_store(&h->ended_at, weft_now());
  weft_ctx_cancel(h->finished); /* wakes the connection thread's poll */
  return NULL;
}

/* ---- the connection: read a request, run its handler while watching the socket, answer ------------- */

static int send_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL); /* never SIGPIPE for a client that left */
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void respond(int fd, int status, const char *reason, const char *body, bool close_after) {
  char buf[512];
  int n = snprintf(buf, sizeof buf, "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n%s\r\n%s",
                   status, reason, strlen(body), close_after ? "Connection: close\r\n" : "", body);
  send_all(fd, buf, (size_t)n);
}

/* Reads one request head into buf. Returns its length, 0 when the connection should close (the peer closed,
 * or shutdown began while the connection was idle), -1 on error. */
static int read_request(conn *c, char *buf, size_t cap) {
  size_t len = 0;
  for (;;) {
    struct pollfd p[2] = {{.fd = c->fd, .events = POLLIN}, {.fd = weft_ctx_fd(c->srv->stop), .events = POLLIN}};
    int r = poll(p, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (p[1].revents & POLLIN) { /* shutdown: idle connections are closed, as Go's Shutdown does */
      if (len == 0) logf_("[conn %d] idle at shutdown: closing", c->info.id);
      return 0;
    }
    ssize_t n = recv(c->fd, buf + len, cap - 1 - len, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n == 0 ? 0 : -1;
    len += (size_t)n;
    buf[len] = '\0';
    if (strstr(buf, "\r\n\r\n")) return (int)len;
    if (len == cap - 1) return -1; /* head too large */
  }
}

/* Runs one request: returns true if the connection can be kept open for another. */
static bool serve_request(conn *c, char *head) {
  server *s = c->srv;
  char method[16], path[128], version[16];
  if (sscanf(head, "%15s %127s %15s", method, path, version) != 3) {
    respond(c->fd, 400, "Bad Request", "bad request\n", true);
    return false;
  }
  bool keep = strcmp(version, "HTTP/1.1") == 0 && !strcasestr(head, "\r\nConnection: close");
  if (strcmp(method, "GET") != 0 || strncmp(path, "/think", 6) != 0) {
    respond(c->fd, 404, "Not Found", "try GET /think\n", !keep);
    return keep;
  }

  /* The request's context: a child of the connection's, plus the request's id as a value. */
  request_info req = {.id = atomic_fetch_add(&s->next_request, 1) + 1};
  snprintf(req.path, sizeof req.path, "%s", path);
  weft_ctx *rcancel_ctx, *rctx, *finished;
  weft_cancel *rcancel, *finished_cancel;
  if (weft_ctx_with_cancel(c->vctx, &rcancel_ctx, &rcancel) != 0) return false;
  if (weft_ctx_with_value(rcancel_ctx, &request_key, &req, NULL, &rctx) != 0) {
    weft_ctx_end(rcancel);
    return false;
  }
  if (weft_ctx_with_cancel(weft_background(), &finished, &finished_cancel) != 0) {
    weft_ctx_release(rctx);
    weft_ctx_end(rcancel);
    return false;
  }
  handler h = {.ctx = rctx, .finished = finished_cancel, .opt = &s->opt};
  pthread_t th;
  if (pthread_create(&th, NULL, handler_main, &h) != 0) {
    respond(c->fd, 500, "Internal Server Error", "no thread\n", true);
    weft_ctx_end(finished_cancel);
    weft_ctx_release(rctx);
    weft_ctx_end(rcancel);
    return false;
  }

  /* Watch the client while the handler thinks: POLLRDHUP means the peer closed its side. Only RDHUP is
   * asked for (not POLLIN), so a pipelined next request does not wake this loop. */
  bool client_gone = false;
  for (;;) {
    struct pollfd p[2] = {{.fd = c->fd, .events = client_gone ? 0 : POLLRDHUP},
                          {.fd = weft_ctx_fd(finished), .events = POLLIN}};
    int r = poll(p, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (p[1].revents & POLLIN) break; /* the handler returned */
    if (!client_gone && (p[0].revents & (POLLRDHUP | POLLHUP | POLLERR))) {
      client_gone = true;
      atomic_store(&h.gone_at, weft_now());
      logf_("[conn %d] client went away during r-%d: cancelling the connection's context", c->info.id, req.id);
      weft_ctx_cancel_cause(c->cancel, CAUSE_CLIENT_GONE); /* ends the request's context too: it is a child */
    }
  }
  pthread_join(th, NULL);

  if (client_gone) {
    double after = (double)(atomic_load(&h.ended_at) - atomic_load(&h.gone_at)) / 1e9;
    if (h.result != 0)
      logf_("[conn %d] r-%d: handler stopped %.3fs after the client left", c->info.id, req.id, after);
    else
      logf_("[conn %d] r-%d: handler kept thinking %.3fs after the client left, for nobody", c->info.id, req.id,
            after);
    atomic_fetch_add(&s->canceled, 1);
  } else if (h.result != 0) {
    char body[160];
    snprintf(body, sizeof body, "stopped after %d steps: %s\n", h.steps_done, cause_name(weft_ctx_cause(rctx)));
    respond(c->fd, 503, "Service Unavailable", body, true);
    logf_("[conn %d] r-%d: answered 503 (%s)", c->info.id, req.id, cause_name(weft_ctx_cause(rctx)));
    atomic_fetch_add(&s->stopped, 1);
    keep = false;
  } else {
    char body[96];
    snprintf(body, sizeof body, "thought for %d steps\n", h.steps_done);
    respond(c->fd, 200, "OK", body, !keep);
    logf_("[conn %d] r-%d: answered 200", c->info.id, req.id);
    atomic_fetch_add(&s->served, 1);
  }
  weft_ctx_end(finished_cancel);
  weft_ctx_release(rctx);
  weft_ctx_end(rcancel); /* the request is over: Go cancels r.Context() when ServeHTTP returns */
  return keep && !client_gone;
}

static void *conn_main(void *arg) {
  conn *c = arg;
  server *s = c->srv;
  char head[8192];
  for (;;) {
    int n = read_request(c, head, sizeof head);
    if (n <= 0 || !serve_request(c, head)) break;
  }
  close(c->fd);
  logf_("[conn %d] closed", c->info.id);
  weft_ctx_cancel(c->cancel); /* the connection is over: its context ends (a no-op if the client went away) */
  pthread_mutex_lock(&s->mu);
  if (--s->active == 0 && s->shutting) weft_ctx_cancel(s->drained_cancel);
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* ---- the server -------------------------------------------------------------------------------------- */

static int listen_loopback(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 64) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
    close(fd);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

static int accept_conn(server *s, int lfd) {
  struct sockaddr_in peer;
  socklen_t plen = sizeof peer;
  int fd = accept4(lfd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
  if (fd < 0) return errno == EINTR || errno == ECONNABORTED ? 0 : -1;
  conn *c = calloc(1, sizeof *c);
  if (c == NULL) {
    close(fd);
    return 0;
  }
  static int next_conn;
  c->srv = s;
  c->fd = fd;
  c->info.id = ++next_conn;
  char ip[INET_ADDRSTRLEN];
  snprintf(c->info.peer, sizeof c->info.peer, "%s:%d", inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof ip),
           ntohs(peer.sin_port));
  /* ConnContext: the connection's context is a child of the server's, plus the connection's info. */
  if (weft_ctx_with_cancel(s->base, &c->ctx, &c->cancel) != 0 ||
      weft_ctx_with_value(c->ctx, &conn_key, &c->info, NULL, &c->vctx) != 0) {
    weft_ctx_end(c->cancel);
    close(fd);
    free(c);
    return 0;
  }
  logf_("[conn %d] accepted from %s", c->info.id, c->info.peer);
  pthread_mutex_lock(&s->mu);
  s->active++;
  c->next = s->conns;
  s->conns = c;
  pthread_mutex_unlock(&s->mu);
  if (pthread_create(&c->thread, NULL, conn_main, c) != 0) {
    close(fd);
    pthread_mutex_lock(&s->mu);
    s->active--;
    s->conns = c->next;
    pthread_mutex_unlock(&s->mu);
    weft_ctx_release(c->vctx);
    weft_ctx_end(c->cancel);
    free(c);
  }
  return 0;
}

static int64_t arg_ms(const char *v) { return WEFT_MS(atoll(v)); }

int main(int argc, char **argv) {
  options opt = {.steps = 6, .step = WEFT_SEC(1), .grace = WEFT_SEC(10)};
  const char *env = getenv("WEFT_EXAMPLE_FAST");
  if (env && *env && strcmp(env, "0") != 0) opt.step = WEFT_MS(250), opt.grace = WEFT_SEC(3);
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--fast") == 0) opt.step = WEFT_MS(250), opt.grace = WEFT_SEC(3);
    else if (strcmp(argv[i], "--ignore-context") == 0) opt.ignore_context = true;
    else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) opt.steps = atoi(argv[++i]);
    else if (strcmp(argv[i], "--step-ms") == 0 && i + 1 < argc) opt.step = arg_ms(argv[++i]);
    else if (strcmp(argv[i], "--grace-ms") == 0 && i + 1 < argc) opt.grace = arg_ms(argv[++i]);
    else {
      fprintf(stderr, "usage: %s [--fast] [--ignore-context] [--steps N] [--step-ms MS] [--grace-ms MS]\n", argv[0]);
      return 2;
    }
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  t0 = weft_now();

  server s = {.opt = opt};
  pthread_mutex_init(&s.mu, NULL);
  /* signal.NotifyContext(background, SIGTERM, SIGINT), before any thread starts; a second signal exits. */
  static const int sigs[] = {SIGTERM, SIGINT};
  weft_ctx *named;
  if (weft_ctx_with_signals(weft_background(), sigs, 2, true, &s.stop, &s.stop_cancel) != 0 ||
      weft_ctx_with_value(weft_background(), &server_key, "thinking-server", NULL, &named) != 0 ||
      weft_ctx_with_cancel(named, &s.base, &s.base_cancel) != 0 ||
      weft_ctx_with_cancel(weft_background(), &s.drained, &s.drained_cancel) != 0) {
    fprintf(stderr, "cannot create the server's contexts\n");
    return 1;
  }
  weft_ctx_release(named); /* s.base holds it now */

  int port, lfd = listen_loopback(&port);
  if (lfd < 0) {
    perror("listen on 127.0.0.1");
    return 1;
  }
  logf_("listening on http://127.0.0.1:%d (pid %d): GET /think; %d steps of %.2fs; handlers %s their context",
        port, (int)getpid(), opt.steps, (double)opt.step / 1e9, opt.ignore_context ? "IGNORE" : "watch");

  for (;;) {
    struct pollfd p[2] = {{.fd = lfd, .events = POLLIN}, {.fd = weft_ctx_fd(s.stop), .events = POLLIN}};
    int r = poll(p, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || (p[1].revents & POLLIN)) break;
    if ((p[0].revents & POLLIN) && accept_conn(&s, lfd) != 0) break;
  }

  /* Graceful shutdown: no new connections; in-flight requests get until the grace deadline. */
  close(lfd);
  int sig = weft_cause_signal(weft_ctx_cause(s.stop));
  pthread_mutex_lock(&s.mu);
  s.shutting = true;
  int in_flight = s.active;
  if (s.active == 0) weft_ctx_cancel(s.drained_cancel);
  pthread_mutex_unlock(&s.mu);
  logf_("shutdown: %s received; not accepting; waiting up to %.1fs for %d connection(s)",
        sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "stop", (double)opt.grace / 1e9, in_flight);
  if (weft_ctx_wait_for(s.drained, opt.grace) == WEFT_ETIMEDOUT) {
    logf_("shutdown: grace period over: cancelling the server context, every handler stops");
    weft_ctx_cancel_cause(s.base_cancel, CAUSE_SHUTDOWN);
    weft_ctx_wait_until(s.drained, WEFT_FOREVER);
  } else {
    logf_("shutdown: every in-flight request finished within the grace period");
  }
  for (conn *c = s.conns, *next; c; c = next) { /* no thread adds to the list any more */
    next = c->next;
    pthread_join(c->thread, NULL);
    weft_ctx_release(c->vctx);
    weft_ctx_end(c->cancel);
    free(c);
  }
  weft_ctx_end(s.base_cancel);
  weft_ctx_end(s.drained_cancel);
  weft_ctx_end(s.stop_cancel);
  pthread_mutex_destroy(&s.mu);
  logf_("stopped: %d answered 200, %d abandoned by their client, %d stopped by shutdown; live contexts %zu",
        atomic_load(&s.served), atomic_load(&s.canceled), atomic_load(&s.stopped), weft_ctx_live_count());
  return weft_ctx_live_count() == 0 ? 0 : 1;
}
