/* WEFT_DEBUG_REFS=1: released contexts are quarantined, so a second release is caught every time, also
 * after other contexts were made (without it the freed slot is reused at once). The environment is read
 * once, before the first context is made: each test sets it first (Criterion runs each test in a process
 * of its own). */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weft_test.h"

/* The first context made and freed settles the size of the thread's cache; after it, without the mode, a
 * freed context's memory is the next one handed out. */
static void settle(void) {
  weft_ctx *c;
  weft_cancel *c_cancel = NULL;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &c, &c_cancel), 0);
  weft_ctx_end(c_cancel);
}

static void debug_refs_on(void) {
  cr_assert_eq(setenv("WEFT_DEBUG_REFS", "1", 1), 0);
  settle();
}

WEFT_TEST(ctx_debug_refs, slot_reused_without_it) {
  /* The premise of the tests below: without the mode, the next context takes the freed one's memory. */
  unsetenv("WEFT_DEBUG_REFS");
  weft_ctx *a, *b;
  weft_cancel *a_cancel = NULL;
  weft_cancel *b_cancel = NULL;
  settle();
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &a, &a_cancel), 0);
  weft_ctx_end(a_cancel);
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &b, &b_cancel), 0);
  cr_assert_eq(a, b, "the freed slot is reused");
  weft_ctx_end(b_cancel);
}

WEFT_TEST(ctx_debug_refs, double_release_after_reuse_aborts, .signal = SIGABRT) {
  debug_refs_on();
  weft_ctx *a, *b;
  weft_cancel *a_cancel = NULL;
  weft_cancel *b_cancel = NULL;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &a, &a_cancel), 0);
  weft_ctx_release(a);
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &b, &b_cancel), 0);
  cr_assert_neq(a, b, "quarantined: not reused");
  weft_ctx_release(a);
}

WEFT_TEST(ctx_debug_refs, double_end_after_reuse_aborts, .signal = SIGABRT) {
  debug_refs_on();
  weft_ctx *p, *v, *w;
  weft_cancel *p_cancel = NULL;
  weft_cancel *w_cancel = NULL;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &p, &p_cancel), 0);
  cr_assert_eq(weft_ctx_with_value(p, &p, NULL, NULL, &v), 0);
  weft_ctx_end(p_cancel); /* v still holds p */
  weft_ctx_release(v);
  for (int i = 0; i < 100; i++) { /* plenty of new contexts: none takes p's or v's place */
    cr_assert_eq(weft_ctx_with_cancel(weft_background(), &w, &w_cancel), 0);
    cr_assert(w != p && w != v);
    weft_ctx_end(w_cancel);
  }
  weft_ctx_end(p_cancel);
}

WEFT_TEST(ctx_debug_refs, release_of_a_freed_multi_parent_aborts, .signal = SIGABRT) {
  debug_refs_on();
  weft_ctx *a, *m, *x;
  weft_cancel *m_cancel = NULL;
  weft_cancel *a_cancel = NULL;
  weft_cancel *x_cancel = NULL;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &a, &a_cancel), 0);
  weft_ctx *ps[] = {a, weft_background()};
  cr_assert_eq(weft_ctx_with_parents(ps, 2, &m, &m_cancel), 0);
  weft_ctx_end(m_cancel);
  cr_assert_eq(weft_ctx_with_cancel(a, &x, &x_cancel), 0);
  weft_ctx_end(x_cancel);
  weft_ctx_end(a_cancel);
  weft_ctx_release(m);
}

WEFT_TEST(ctx_debug_refs, contexts_work_and_are_counted) {
  debug_refs_on();
  size_t live = weft_ctx_live_count();
  weft_ctx *seen[64];
  for (int i = 0; i < 64; i++) {
    weft_ctx *c, *v;
    weft_cancel *c_cancel = NULL;
    cr_assert_eq(weft_ctx_with_timeout(weft_background(), WEFT_SEC(60), &c, &c_cancel), 0);
    cr_assert_eq(weft_ctx_with_value(c, &seen, &seen[i], NULL, &v), 0);
    cr_assert_eq(weft_ctx_value(v, &seen), &seen[i]);
    weft_ctx_cancel(c_cancel);
    cr_assert_eq(weft_ctx_err(v), WEFT_ECANCELED);
    weft_ctx_release(v);
    weft_ctx_end(c_cancel);
    for (int j = 0; j < i; j++) cr_assert_neq(seen[j], c, "never reused");
    seen[i] = c;
  }
  cr_assert_eq(weft_ctx_live_count(), live, "quarantined contexts count as freed");
}

WEFT_TEST(ctx_debug_refs, report_names_call_context_and_mode) {
  /* In a child, so the report on stderr can be read. */
  int fds[2];
  cr_assert_eq(pipe(fds), 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    dup2(fds[1], 2);
    setenv("WEFT_DEBUG_REFS", "1", 1);
    weft_ctx *a, *b;
    weft_cancel *b_cancel = NULL;
    if (weft_ctx_with_value(weft_background(), &a, NULL, NULL, &a) != 0) _exit(1);
    weft_ctx_release(a);
    if (weft_ctx_with_cancel(weft_background(), &b, &b_cancel) != 0) _exit(1);
    weft_ctx_release(a);
    _exit(0);
  }
  close(fds[1]);
  char buf[4096];
  size_t len = 0;
  ssize_t r;
  while (len < sizeof buf - 1 && (r = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)r;
  buf[len] = '\0';
  close(fds[0]);
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "aborted (status %#x): %s", st, buf);
  cr_assert(strstr(buf, "weft_ctx_release on context 0x") != NULL, "%s", buf);
  cr_assert(strstr(buf, "a value context") != NULL, "%s", buf);
  cr_assert(strstr(buf, "double release (caught by WEFT_DEBUG_REFS)") != NULL, "%s", buf);
}
