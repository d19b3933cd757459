/* tracing: request and trace ids as typed context values, and a deadline carried to another process as
 * "milliseconds left" and rebuilt there.
 *
 * Go code keeps request-scoped data in the context behind unexported key types and typed accessors
 * (`func SpanFrom(ctx) *Span`), and gRPC carries the deadline to the server as a "grpc-timeout" header that
 * the server turns back into context.WithTimeout. Here:
 *   - keys are the addresses of private static objects; the only way in or out is through typed functions
 *     (with_request_id, request_id_from, start_span, span_from), so a value of the wrong type cannot be
 *     stored under a key;
 *   - a span is a heap value the context owns (its destructor frees it with the context); a child span
 *     shadows its parent's under the same key, the parent still sees its own;
 *   - the inventory "service" is this same program started again as a child process (--inventory) with
 *     pipes for stdin and stdout. The caller sends headers: trace id, parent span, request id and
 *     `deadline-ms-left` computed from its context right before sending; the child rebuilds its context
 *     with weft_ctx_with_timeout(background, ms_left) and answers with what happened there.
 *
 * Two calls under one request of 1.5 s: one where inventory needs 100 ms, one where it needs 5 s and so
 * stops at the rebuilt deadline, at about the moment the caller's own deadline ends.
 *
 *   tracing [--fast]     --fast (or WEFT_EXAMPLE_FAST=1) divides every duration by 3.
 * Exits 0 when the ids travelled intact (same trace id, the child's parent span = the caller's span) and the
 * child, given N ms, stopped with "deadline exceeded" after about N ms. */
#define _GNU_SOURCE /* posix_spawn's file actions, pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft/weft.h>

extern char **environ;

static int64_t scale = 1;
static int64_t ms(int64_t m) { return WEFT_MS(m) / scale; }
static const char *who = "caller";
static FILE *logout; /* stdout; stderr in the child, whose stdout is the reply pipe */

/* ---- typed context values ---------------------------------------------------------------------------- */

static const char request_id_key; /* private: only the functions below touch these keys */
static const char span_key;

typedef struct span {
  char trace_id[17]; /* shared by every span of one trace */
  uint64_t id;
  uint64_t parent; /* 0 for the root span */
  char name[32];
} span;

static uint64_t new_id(void) {
  static _Atomic uint64_t seq;
  return ((uint64_t)getpid() << 32) ^ ((uint64_t)weft_now() & 0xffff0000u) ^ ++seq;
}

static int with_request_id(weft_ctx *parent, const char *id, weft_ctx **out) {
  char *copy = strdup(id);
  if (copy == NULL) return WEFT_ENOMEM;
  return weft_ctx_with_value(parent, &request_id_key, copy, free, out); /* the context owns the copy */
}
static const char *request_id_from(const weft_ctx *ctx) {
  const char *id = weft_ctx_value(ctx, &request_id_key);
  return id ? id : "-";
}
static const span *span_from(const weft_ctx *ctx) { return weft_ctx_value(ctx, &span_key); }

/* Starts a span named `name` as a child of the span in `parent` (or of `remote_parent` when the parent
 * span lives in another process; or a new trace when there is neither). */
static int start_span(weft_ctx *parent, const char *name, const span *remote_parent, weft_ctx **out) {
  span *s = calloc(1, sizeof *s);
  if (s == NULL) return WEFT_ENOMEM;
  const span *p = remote_parent ? remote_parent : span_from(parent);
  if (p) {
    memcpy(s->trace_id, p->trace_id, sizeof s->trace_id);
    s->parent = p->id;
  } else {
    snprintf(s->trace_id, sizeof s->trace_id, "%016" PRIx64, new_id() * 0x9e3779b97f4a7c15u);
  }
  s->id = new_id();
  snprintf(s->name, sizeof s->name, "%s", name);
  return weft_ctx_with_value(parent, &span_key, s, free, out);
}

static void logf_ctx(const weft_ctx *ctx, const char *msg) {
  const span *s = span_from(ctx);
  int64_t d = weft_ctx_deadline(ctx);
  fprintf(logout, "  [%-9s] request=%s trace=%s span=%016" PRIx64 " parent=%016" PRIx64 " (%s) left=%s%lld ms: %s\n", who,
         request_id_from(ctx), s ? s->trace_id : "-", s ? s->id : 0, s ? s->parent : 0, s ? s->name : "-",
         d == WEFT_FOREVER ? "inf " : "", d == WEFT_FOREVER ? 0LL : (long long)((d - weft_now()) / 1000000), msg);
}

/* ---- the child process: the inventory service ---------------------------------------------------------- */

static int inventory_main(void) {
  who = "inventory";
  logout = stderr;
  char line[256], trace[17] = "", rid[64] = "-";
  uint64_t parent_span = 0;
  long long left = -1, work = 0;
  while (fgets(line, sizeof line, stdin) && strcmp(line, "\n") != 0) { /* headers up to a blank line */
    sscanf(line, "trace-id: %16s", trace);
    sscanf(line, "parent-span: %" SCNx64, &parent_span);
    sscanf(line, "request-id: %63s", rid);
    sscanf(line, "deadline-ms-left: %lld", &left);
    sscanf(line, "work-ms: %lld", &work);
  }
  int64_t t0 = weft_now();
  /* Rebuild the caller's context here: its deadline (as time left) and its values. */
  weft_ctx *dl, *rctx, *ctx;
  weft_cancel *dl_cancel;
  if (weft_ctx_with_timeout(weft_background(), left >= 0 ? WEFT_MS(left) : WEFT_FOREVER, &dl, &dl_cancel) != 0)
    return 1;
  if (with_request_id(dl, rid, &rctx) != 0) return 1;
  span remote = {.id = parent_span};
  memcpy(remote.trace_id, trace, sizeof remote.trace_id);
  if (start_span(rctx, "inventory", &remote, &ctx) != 0) return 1;
  logf_ctx(ctx, "rebuilt from the headers; looking up stock");
  int rc = weft_ctx_sleep(ctx, WEFT_MS(work));
  logf_ctx(ctx, rc == 0 ? "done" : weft_strerror(rc));
  const span *s = span_from(ctx);
  printf("status: %s\ntrace-id: %s\nspan: %" PRIx64 "\nparent-span: %" PRIx64 "\nrequest-id: %s\n"
         "elapsed-ms: %lld\n\n",
         rc == 0 ? "ok" : weft_err_name(rc), s->trace_id, s->id, s->parent, request_id_from(ctx),
         (long long)((weft_now() - t0) / 1000000));
  fflush(stdout);
  weft_ctx_release(ctx);
  weft_ctx_release(rctx);
  weft_ctx_end(dl_cancel);
  return 0;
}

/* ---- the caller -------------------------------------------------------------------------------------- */

typedef struct reply {
  char status[32], trace[17], rid[64];
  uint64_t span, parent;
  long long elapsed, sent_left;
  int wait_rc; /* 0: the reply came in time; else the caller's context error */
  pid_t pid;   /* the child, reaped at the end (a sanitizer runtime can take a while to exit) */
} reply;

static void parse_reply(const char *buf, reply *r) {
  for (const char *l = buf; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
    sscanf(l, "status: %31s", r->status);
    sscanf(l, "trace-id: %16s", r->trace);
    sscanf(l, "span: %" SCNx64, &r->span);
    sscanf(l, "parent-span: %" SCNx64, &r->parent);
    sscanf(l, "request-id: %63s", r->rid);
    sscanf(l, "elapsed-ms: %lld", &r->elapsed);
  }
}

/* Reads into buf until a blank line, waiting at most until `ctx` ends (then returns its error) or, with
 * ctx NULL, until `deadline`. Returns 0 with a complete reply, or an error. */
static int read_reply(int fd, weft_ctx *ctx, int64_t deadline, char *buf, size_t cap) {
  size_t len = 0;
  buf[0] = '\0';
  while (!strstr(buf, "\n\n")) {
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = ctx ? weft_ctx_fd(ctx) : -1, .events = POLLIN}};
    int64_t left = ctx ? -1 : (deadline - weft_now()) / 1000000;
    if (!ctx && left <= 0) return WEFT_ETIMEDOUT;
    int r = poll(p, 2, ctx ? -1 : (int)left);
    if (r < 0 && errno == EINTR) continue;
    if (ctx && (p[1].revents & POLLIN)) return weft_ctx_err(ctx);
    if (r <= 0) continue;
    ssize_t n = read(fd, buf + len, cap - 1 - len);
    if (n <= 0) return WEFT_ECLOSED;
    len += (size_t)n;
    buf[len] = '\0';
  }
  return 0;
}

/* Calls the inventory service in a child process, passing the trace and the time left. */
static int call_inventory(weft_ctx *parent, long long work_ms, reply *r) {
  weft_ctx *ctx;
  if (start_span(parent, "call-inventory", NULL, &ctx) != 0) return 1;
  int to_child[2], from_child[2];
  if (pipe2(to_child, O_CLOEXEC) != 0 || pipe2(from_child, O_CLOEXEC) != 0) return 1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, to_child[0], 0);
  posix_spawn_file_actions_adddup2(&fa, from_child[1], 1);
  char *argv[] = {"tracing", "--inventory", scale > 1 ? "--fast" : NULL, NULL};
  pid_t pid;
  int rc = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(to_child[0]);
  close(from_child[1]);
  if (rc != 0) {
    fprintf(stderr, "posix_spawn: %s\n", strerror(rc));
    return 1;
  }
  /* The deadline crosses the process boundary as a duration: each side's clock stays its own. */
  int64_t d = weft_ctx_deadline(ctx);
  r->sent_left = d == WEFT_FOREVER ? -1 : (long long)((d - weft_now()) / 1000000);
  if (r->sent_left < 0 && d != WEFT_FOREVER) r->sent_left = 0;
  const span *s = span_from(ctx);
  char hdr[512];
  int n = snprintf(hdr, sizeof hdr,
                   "trace-id: %s\nparent-span: %" PRIx64 "\nrequest-id: %s\ndeadline-ms-left: %lld\n"
                   "work-ms: %lld\n\n",
                   s->trace_id, s->id, request_id_from(ctx), r->sent_left, (long long)(work_ms / scale));
  char msg[96];
  snprintf(msg, sizeof msg, "sending to inventory (pid %d) with deadline-ms-left: %lld", (int)pid, r->sent_left);
  logf_ctx(ctx, msg);
  if (write(to_child[1], hdr, (size_t)n) != n) return 1;
  close(to_child[1]);

  char buf[1024];
  r->wait_rc = read_reply(from_child[0], ctx, 0, buf, sizeof buf);
  if (r->wait_rc != 0) {
    logf_ctx(ctx, "gave up waiting: our own deadline passed (the child stops at its rebuilt deadline too)");
    /* Only to show the child's side in this example: collect its answer, bounded in time. */
    read_reply(from_child[0], NULL, weft_deadline_in(WEFT_SEC(10)), buf, sizeof buf);
  }
  parse_reply(buf, r);
  close(from_child[0]);
  r->pid = pid;
  logf_ctx(ctx, r->wait_rc == 0 ? "inventory answered" : "inventory's answer came after we gave up");
  printf("  [inventory] answered: status %s, trace %s, span %016" PRIx64 ", parent %016" PRIx64
         ", request %s, stopped after %lld ms of the %lld ms it was given\n",
         r->status, r->trace, r->span, r->parent, r->rid, r->elapsed, r->sent_left);
  int ok = strcmp(r->trace, s->trace_id) == 0 &&
           r->parent == s->id && strcmp(r->rid, request_id_from(ctx)) == 0;
  weft_ctx_release(ctx);
  return ok ? 0 : 1;
}

int main(int argc, char **argv) {
  bool inventory = false;
  const char *env = getenv("WEFT_EXAMPLE_FAST");
  if (env && *env && strcmp(env, "0") != 0) scale = 3;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--fast") == 0) scale = 3;
    else if (strcmp(argv[i], "--inventory") == 0) inventory = true;
  }
  logout = stdout;
  if (inventory) return inventory_main();
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN);

  int ok = 1;
  printf("tracing: request r-7f3a with a 1500 ms deadline%s\n", scale > 1 ? " (--fast: durations / 3; the times printed are real)" : "");
  weft_ctx *dl, *rctx, *root;
  weft_cancel *dl_cancel;
  if (weft_ctx_with_timeout(weft_background(), ms(1500), &dl, &dl_cancel) != 0 ||
      with_request_id(dl, "r-7f3a", &rctx) != 0 || start_span(rctx, "handle-order", NULL, &root) != 0)
    return 1;
  logf_ctx(root, "handling the request");
  {
    weft_ctx *child;
    if (start_span(root, "validate", NULL, &child) != 0) return 1;
    weft_ctx_sleep(child, ms(100));
    logf_ctx(child, "validated (a child span: same trace, parent = handle-order)");
    /* Shadowing: the child span hides the parent's under the same key; the parent still sees its own. */
    if (span_from(child)->parent != span_from(root)->id || span_from(root)->parent != 0 ||
        strcmp(span_from(child)->trace_id, span_from(root)->trace_id) != 0)
      ok = 0;
    weft_ctx_release(child);
  }

  printf("call 1: inventory needs 100 ms\n");
  reply r1 = {0};
  if (call_inventory(root, 100, &r1) != 0 || r1.wait_rc != 0 || strcmp(r1.status, "ok") != 0) ok = 0;

  printf("call 2: inventory needs 5000 ms, more than the request has left\n");
  weft_ctx_sleep(root, ms(100));
  reply r2 = {0};
  if (call_inventory(root, 5000, &r2) != 0) ok = 0;
  /* The child was given N ms and stopped with deadline exceeded after about N ms (never before; the window
   * after is wide). The two deadlines end within a millisecond of each other (N is rounded down), so the
   * caller either gave up first or read the child's answer just before its own deadline: both are right. */
  if ((r2.wait_rc != WEFT_EDEADLINE && r2.wait_rc != 0) || strcmp(r2.status, "WEFT_EDEADLINE") != 0 ||
      r2.sent_left <= 0 || r2.elapsed < r2.sent_left || r2.elapsed > r2.sent_left + 1000)
    ok = 0, printf("UNEXPECTED: the child should stop at its rebuilt deadline\n");
  /* If the answer won that race, the request's deadline is at most a millisecond away. */
  weft_ctx_wait_for(root, WEFT_SEC(2));
  logf_ctx(root, weft_ctx_err(root) ? "the request's deadline has passed" : "still live?");
  if (weft_ctx_err(root) != WEFT_EDEADLINE) ok = 0;

  /* Reap both children: each must have exited cleanly. */
  const reply *rs[] = {&r1, &r2};
  for (int i = 0; i < 2; i++) {
    int status;
    if (rs[i]->pid <= 0 || waitpid(rs[i]->pid, &status, 0) != rs[i]->pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
      ok = 0, printf("UNEXPECTED: inventory child %d did not exit cleanly\n", i + 1);
  }
  weft_ctx_release(root);
  weft_ctx_release(rctx);
  weft_ctx_end(dl_cancel);
  printf("live contexts at the end: %zu\n", weft_ctx_live_count());
  if (weft_ctx_live_count() != 0) ok = 0;
  printf("%s\n", ok ? "OK: ids and deadline crossed the process boundary; the child stopped at the rebuilt "
                      "deadline"
                    : "FAILED");
  return ok ? 0 : 1;
}
