/* monitor: the live-context count, a dump of a context tree, and the leak report catching a context that
 * was never released.
 *
 * Go finds context leaks with `go vet` (the lostcancel check) and goroutine dumps. weft gives a C program
 * three aids (ctx.h, "debug aids"):
 *   - weft_ctx_live_count(): how many derived contexts are alive in the process; a server can export it as
 *     a gauge, and a steady climb is a leak;
 *   - weft_ctx_dump(ctx, out): the subtree under ctx, one line per context: kind, state, age, deadline left,
 *     references;
 *   - the leak report: with WEFT_LEAKS=1 in the environment weft records the creator of every context and
 *     prints, at exit, each one never released; weft_ctx_leak_report() does the same on demand.
 *
 * The program re-runs itself with WEFT_LEAKS=1 if it was not given it (tracking must be on before the first
 * context is made), then:
 *   1. builds a server -> 3 requests -> 2 steps each tree, counts and dumps it, cancels one request and
 *      dumps again (the cancelled request has left the tree; its own dump says canceled), ends everything:
 *      the count is back where it started;
 *   2. a child released without being cancelled leaves the tree at once (a parent does not keep its
 *      children alive; Go's "forgot to call cancel" cannot grow a weft tree);
 *   3. buggy_handler() forgets to release a context on an error path: the count stays one up, and the
 *      on-demand leak report names buggy_handler as the creator; after the fix the report is empty;
 *   4. a copy of the program (--leak-and-exit) leaks one and exits: weft's report at exit catches it.
 *
 *   monitor [--fast]      (nothing here is slow; --fast is accepted for uniformity)
 * Exits 0 when the counts, the dumps and both leak reports say what they should. Linked with -rdynamic
 * (ENABLE_EXPORTS in CMake) so that the report can name the function that created a context. */
#define _GNU_SOURCE /* open_memstream, pipe2, posix_spawn file actions */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft/weft.h>

extern char **environ;

static const char request_id_key;

/* ---- the bug ----------------------------------------------------------------------------------------- */

static weft_cancel *leaked; /* the leaked context's cancel handle, kept only so that part 3 can "fix" the leak
                            * afterwards */

/* Handles a request under a 30 s timeout; on its error path it returns without weft_ctx_end(). */
__attribute__((noinline)) int buggy_handler(weft_ctx *parent, bool fail);
__attribute__((noinline)) int buggy_handler(weft_ctx *parent, bool fail) {
  weft_ctx *ctx;
  weft_cancel *cancel;
  int rc = weft_ctx_with_timeout(parent, WEFT_SEC(30), &ctx, &cancel);
  if (rc != 0) return rc;
  if (fail) {
    leaked = cancel;
    return -1; /* BUG: forgot weft_ctx_end(cancel) on this path */
  }
  weft_ctx_end(cancel);
  return 0;
}

/* ---- part 4's child: leak and exit --------------------------------------------------------------------- */

static int leak_and_exit(void) {
  buggy_handler(weft_background(), true);
  return 0; /* weft's exit report prints the leaked context to stderr */
}

/* Runs this program again with --leak-and-exit and returns what it printed on stderr (malloc'd). */
static char *run_leaking_copy(int *status) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return NULL;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  /* The leak is deliberate; keep a sanitizer's own leak checker out of it (it is not what we show). */
  static char asan[] = "ASAN_OPTIONS=detect_leaks=0";
  size_t n = 0;
  while (environ[n]) n++;
  char **env = calloc(n + 2, sizeof *env);
  if (env == NULL) return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "ASAN_OPTIONS=", 13) != 0) env[k++] = environ[i];
  env[k++] = asan;
  char *argv[] = {"monitor", "--leak-and-exit", NULL};
  pid_t pid;
  int rc = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, env);
  posix_spawn_file_actions_destroy(&fa);
  free(env);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return NULL;
  }
  char *out = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&out, &len);
  char buf[512];
  ssize_t r;
  while ((r = read(fds[0], buf, sizeof buf)) > 0) fwrite(buf, 1, (size_t)r, m);
  fclose(m);
  close(fds[0]);
  waitpid(pid, status, 0);
  return out;
}

/* ---- the monitor ------------------------------------------------------------------------------------- */

static char *dump(weft_ctx *ctx) { /* weft_ctx_dump into a string, so we can print and check it */
  char *s = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&s, &len);
  weft_ctx_dump(ctx, m);
  fclose(m);
  return s;
}

static size_t count_lines(const char *s, const char *needle) {
  size_t n = 0;
  for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
  return n;
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--leak-and-exit") == 0) return leak_and_exit();
  if (!weft_ctx_leak_tracking()) {
    if (getenv("WEFT_LEAKS") && strcmp(getenv("WEFT_LEAKS"), "1") == 0) {
      fprintf(stderr, "WEFT_LEAKS=1 is set but weft does not track leaks\n");
      return 1;
    }
    printf("monitor: re-running with WEFT_LEAKS=1 so that weft records who creates each context\n");
    fflush(stdout);
    setenv("WEFT_LEAKS", "1", 1);
    execv("/proc/self/exe", argv);
    perror("execv");
    return 1;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  int ok = 1;
  size_t base = weft_ctx_live_count();
  printf("monitor: leak tracking on; live contexts at start: %zu\n", base);

  /* 1. A tree: server -> 3 requests (5 s deadline, a request id) -> 2 steps each. */
  weft_ctx *server, *req[3], *rval[3], *step[3][2];
  weft_cancel *server_cancel, *req_cancel[3], *step_cancel[3][2]; /* the value contexts have none */
  static const char *const ids[] = {"r-1", "r-2", "r-3"};
  if (weft_ctx_with_cancel(weft_background(), &server, &server_cancel) != 0) return 1;
  for (int i = 0; i < 3; i++) {
    if (weft_ctx_with_timeout(server, WEFT_SEC(5), &req[i], &req_cancel[i]) != 0 ||
        weft_ctx_with_value(req[i], &request_id_key, (void *)ids[i], NULL, &rval[i]) != 0)
      return 1;
    for (int j = 0; j < 2; j++)
      if (weft_ctx_with_cancel(rval[i], &step[i][j], &step_cancel[i][j]) != 0) return 1;
  }
  size_t live = weft_ctx_live_count();
  printf("1. server + 3 requests (+ a value context each) + 6 steps: live contexts %zu (%zu more)\n", live,
         live - base);
  if (live - base != 1 + 3 + 3 + 6) ok = 0;
  char *d = dump(server);
  printf("   weft_ctx_dump(server):\n%s", d);
  if (count_lines(d, "\n") < 10 || count_lines(d, "live") < 10) ok = 0, printf("UNEXPECTED dump\n");
  free(d);
  weft_ctx_cancel(req_cancel[1]);
  d = dump(server);
  printf("   after cancelling r-2 (a cancelled context leaves its parent's list at once):\n%s", d);
  if (count_lines(d, "deadline live") != 2) ok = 0, printf("UNEXPECTED: two requests should be left\n");
  free(d);
  d = dump(req[1]);
  printf("   weft_ctx_dump(r-2), still referenced by its handler:\n%s", d);
  if (count_lines(d, "deadline canceled") != 1) ok = 0, printf("UNEXPECTED: r-2 should show canceled\n");
  free(d);
  for (int i = 0; i < 3; i++) {
    for (int j = 0; j < 2; j++) weft_ctx_end(step_cancel[i][j]);
    weft_ctx_release(rval[i]);
    weft_ctx_end(req_cancel[i]);
  }
  printf("   everything ended: live contexts %zu\n", weft_ctx_live_count());
  if (weft_ctx_live_count() != base + 1) ok = 0; /* the server is still up */

  /* 2. Released without cancel: gone from the tree at once. */
  weft_ctx *forgot;
  weft_cancel *forgot_cancel;
  if (weft_ctx_with_timeout(server, WEFT_SEC(60), &forgot, &forgot_cancel) != 0) return 1;
  size_t with = weft_ctx_live_count();
  /* No weft_ctx_end(forgot_cancel): the last reference goes without a cancel (and forgot_cancel with it). A Go
   * program that never calls its cancel func keeps the child in the parent until the parent ends. */
  weft_ctx_release(forgot);
  d = dump(server);
  printf("2. a child released without cancel: live %zu -> %zu; the server's subtree now:\n%s", with,
         weft_ctx_live_count(), d);
  if (with != base + 2 || weft_ctx_live_count() != base + 1 || count_lines(d, "\n") != 1) ok = 0;
  free(d);

  /* 3. The bug, and the report that finds it. */
  buggy_handler(server, false);
  buggy_handler(server, true);
  buggy_handler(server, false);
  size_t after = weft_ctx_live_count();
  printf("3. buggy_handler ran 3 times: live contexts %zu, expected %zu: something leaks\n", after, base + 1);
  char *rep = NULL;
  size_t replen = 0;
  FILE *m = open_memstream(&rep, &replen);
  size_t n = weft_ctx_leak_report(m);
  fclose(m);
  printf("   weft_ctx_leak_report() lists %zu context(s) alive now:\n%s", n, rep);
  /* The server is alive on purpose; the leaked one is the context created by buggy_handler. */
  if (after != base + 2 || n != 2 || count_lines(rep, "created by buggy_handler") != 1 ||
      count_lines(rep, "created by main") != 1)
    ok = 0, printf("UNEXPECTED: the report should name buggy_handler as the creator of the leak\n");
  free(rep);
  weft_ctx_end(leaked); /* the fix: what buggy_handler should have done */
  weft_ctx_end(server_cancel);
  n = weft_ctx_leak_report(stdout);
  printf("   after the fix and the server's end: %zu in the report, live contexts %zu\n", n, weft_ctx_live_count());
  if (n != 0 || weft_ctx_live_count() != base) ok = 0;

  /* 4. The report at exit, from a copy of this program that leaks and exits. */
  int status = -1;
  char *err = run_leaking_copy(&status);
  printf("4. a copy of this program leaks one context and exits; weft's report at exit said:\n%s",
         err ? err : "(nothing)\n");
  if (err == NULL || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
      count_lines(err, "never released: deadline, live") != 1 || count_lines(err, "created by buggy_handler") != 1 ||
      !strstr(err, "1 context(s) never released"))
    ok = 0, printf("UNEXPECTED: the exit report should catch the context buggy_handler leaked\n");
  free(err);

  printf("%s\n", ok ? "OK: the monitor counted, dumped, and caught the leak" : "FAILED");
  return ok ? 0 : 1;
}
