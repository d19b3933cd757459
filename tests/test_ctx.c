/* Context semantics: Go's scenarios, derivations, values, cancellation, ownership, bad input. */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "testing.h"
#include "weft_test.h"

static const int key_user = 0, key_trace = 0, key_missing = 0;

static int64_t ms_since(int64_t t0) { return (weft_now() - t0) / 1000000; }

/* ---- roots and basics ---- */

WEFT_TEST(ctx, roots_are_never_done) {
  cr_assert_eq(weft_ctx_err(weft_background()), 0);
  cr_assert_eq(weft_ctx_err(weft_todo()), 0);
  cr_assert_neq(weft_background(), weft_todo());
  cr_assert_eq(weft_ctx_deadline(weft_background()), WEFT_FOREVER);
  cr_assert_null(weft_ctx_value(weft_background(), &key_missing));
  /* A root has no cancel handle at all: weft_ctx_cancel(weft_background()) does not build
   * (tests/compile/cancel_needs_the_right.c). */
  weft_ctx_retain(weft_background());
  weft_ctx_release(weft_background());
  weft_ctx_end(NULL); /* a no-op */
  cr_assert_eq(weft_ctx_err(weft_background()), 0);
  cr_assert_eq(weft_ctx_wait_until(weft_background(), weft_deadline_in(WEFT_MS(5))), WEFT_ETIMEDOUT);
}

WEFT_TEST(ctx, cancel_is_idempotent_and_keeps_first_cause) {
  weft_ctx *c;
  weft_cancel *c_cancel = NULL;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &c, &c_cancel), 0);
  cr_assert_eq(weft_ctx_err(c), 0);
  cr_assert_eq(weft_ctx_cause(c), 0);
  cr_assert_eq(weft_ctx_cancel_cause(c_cancel, -4242), 0);
  cr_assert_eq(weft_ctx_err(c), WEFT_ECANCELED);
  cr_assert_eq(weft_ctx_cause(c), -4242);
  cr_assert_eq(weft_ctx_cancel(c_cancel), 0, "double cancel is fine");
  cr_assert_eq(weft_ctx_cause(c), -4242, "the first cause stays");
  cr_assert(weft_ctx_done(c));
  weft_ctx_end(c_cancel);
  cr_assert_eq(weft_ctx_live_count(), 0);
}

WEFT_TEST(ctx, cancel_reaches_every_descendant) {
  weft_ctx *root, *a, *b, *aa, *ab, *v, *av;
  weft_cancel *b_cancel = NULL;
  weft_cancel *root_cancel = NULL;
  weft_cancel *a_cancel = NULL;
  weft_cancel *aa_cancel = NULL;
  weft_cancel *ab_cancel = NULL;
  static const char key = 0;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &root, &root_cancel), 0);
  cr_assert_eq(weft_ctx_with_cancel(root, &a, &a_cancel), 0);
  cr_assert_eq(weft_ctx_with_timeout(root, WEFT_SEC(3600), &b, &b_cancel), 0);
  cr_assert_eq(weft_ctx_with_cancel(a, &aa, &aa_cancel), 0);
  cr_assert_eq(weft_ctx_with_value(a, &key, NULL, NULL, &v), 0);
  cr_assert_eq(weft_ctx_with_cancel(v, &ab, &ab_cancel), 0); /* cancellable under a value context */
  cr_assert_eq(weft_ctx_with_value(ab, &key, NULL, NULL, &av), 0);
  cr_assert_eq(weft_ctx_cancel_cause(a_cancel, -7), 0);
  cr_assert_eq(weft_ctx_err(root), 0, "cancel never goes up");
  cr_assert_eq(weft_ctx_err(b), 0, "nor sideways");
  weft_ctx *done[] = {a, aa, v, ab, av};
  for (size_t i = 0; i < 5; i++) {
    cr_assert_eq(weft_ctx_err(done[i]), WEFT_ECANCELED);
    cr_assert_eq(weft_ctx_cause(done[i]), -7, "descendants take the cause");
  }
  weft_ctx_cancel(root_cancel);
  cr_assert_eq(weft_ctx_err(b), WEFT_ECANCELED);
  cr_assert_eq(weft_ctx_cause(b), WEFT_ECANCELED);
  weft_ctx_release(av);
  weft_ctx_end(ab_cancel);
  weft_ctx_release(v);
  weft_ctx_end(aa_cancel);
  weft_ctx_end(a_cancel);
  weft_ctx_end(b_cancel);
  weft_ctx_end(root_cancel);
  cr_assert_eq(weft_ctx_live_count(), 0);
}

WEFT_TEST(ctx, derive_from_done_parent_is_born_done) {
  weft_ctx *p, *c, *d;
  weft_cancel *d_cancel = NULL;
  weft_cancel *p_cancel = NULL;
  weft_cancel *c_cancel = NULL;
  weft_ctx_with_cancel(weft_background(), &p, &p_cancel);
  weft_ctx_cancel_cause(p_cancel, -99);
  cr_assert_eq(weft_ctx_with_cancel(p, &c, &c_cancel), 0);
  cr_assert_eq(weft_ctx_err(c), WEFT_ECANCELED);
  cr_assert_eq(weft_ctx_cause(c), -99);
  cr_assert_eq(weft_ctx_with_timeout(p, WEFT_SEC(10), &d, &d_cancel), 0);
  cr_assert_eq(weft_ctx_err(d), WEFT_ECANCELED);
  int64_t t0 = weft_now();
  cr_assert_eq(weft_ctx_wait_until(d, WEFT_FOREVER), WEFT_ECANCELED, "an already-cancelled context fails at once");
  cr_assert_eq(weft_ctx_sleep(c, WEFT_SEC(10)), WEFT_ECANCELED);
  cr_assert_lt(ms_since(t0), 5000);
  weft_ctx_end(d_cancel);
  weft_ctx_end(c_cancel);
  weft_ctx_end(p_cancel);
}

/* ---- deterministic scenarios: a cancelled tree, tasks under one deadline, a capped child ---- */

WEFT_TEST(ctx, cancel_of_a_parent_at_1s_ends_its_tree) {
  /* Parent cancelled at 1 s: a child with a 500 ms timeout ends with deadline-exceeded at ~0.5 s, the
   * others with canceled at ~1 s. */
  weft_ctx *parent, *fast, *slow, *plain;
  weft_cancel *fast_cancel = NULL;
  weft_cancel *slow_cancel = NULL;
  weft_cancel *parent_cancel = NULL;
  weft_cancel *plain_cancel = NULL;
  int64_t t0 = weft_now();
  weft_ctx_with_cancel(weft_background(), &parent, &parent_cancel);
  weft_ctx_with_timeout(parent, WEFT_MS(500), &fast, &fast_cancel);
  weft_ctx_with_timeout(parent, WEFT_SEC(5), &slow, &slow_cancel);
  weft_ctx_with_cancel(parent, &plain, &plain_cancel);
  cr_assert_eq(weft_ctx_wait_until(fast, WEFT_FOREVER), WEFT_EDEADLINE);
  int64_t t_fast = ms_since(t0);
  cr_assert_eq(weft_ctx_err(slow), 0);
  cr_assert_eq(weft_ctx_err(plain), 0);
  cr_assert_eq(weft_ctx_err(parent), 0, "a child's deadline does not touch its parent");
  cr_assert_eq(weft_ctx_sleep(weft_background(), WEFT_MS(1000) - (weft_now() - t0)), 0);
  weft_ctx_cancel(parent_cancel);
  cr_assert_eq(weft_ctx_err(slow), WEFT_ECANCELED);
  cr_assert_eq(weft_ctx_err(plain), WEFT_ECANCELED);
  cr_assert_eq(weft_ctx_err(fast), WEFT_EDEADLINE, "the first error stays");
  cr_assert(t_fast >= 499 && t_fast < 5000, "deadline fired after %lld ms", (long long)t_fast);
  weft_ctx_end(fast_cancel);
  weft_ctx_end(slow_cancel);
  weft_ctx_end(plain_cancel);
  weft_ctx_end(parent_cancel);
}

static int run_task(weft_ctx *ctx, int64_t dur) { return weft_ctx_sleep(ctx, dur); }

WEFT_TEST(ctx, sequential_tasks_share_one_deadline) {
  /* Tasks of 500, 800 and 1500 ms under one 1 s deadline: the first succeeds, the others fail. */
  weft_ctx *ctx;
  weft_cancel *cancel = NULL;
  weft_ctx_with_timeout(weft_background(), WEFT_SEC(1), &ctx, &cancel);
  cr_assert_eq(run_task(ctx, WEFT_MS(500)), 0);
  cr_assert_eq(run_task(ctx, WEFT_MS(800)), WEFT_EDEADLINE);
  cr_assert_eq(run_task(ctx, WEFT_MS(1500)), WEFT_EDEADLINE);
  cr_assert_eq(weft_ctx_cause(ctx), WEFT_EDEADLINE);
  weft_ctx_end(cancel);
}


WEFT_TEST(ctx, child_deadline_is_capped_by_parent) {
  /* A 45 s child under a 30 s parent has the parent's deadline, arms no timer of its own and ends when
   * the parent's deadline fires; scaled down to 450 ms under 300 ms. */
  weft_ctx *parent, *child;
  weft_cancel *parent_cancel = NULL;
  weft_cancel *child_cancel = NULL;
  weft_ctx_with_timeout(weft_background(), WEFT_MS(300), &parent, &parent_cancel);
  size_t armed = weft__timer_armed();
  weft_ctx_with_timeout(parent, WEFT_MS(450), &child, &child_cancel);
  cr_assert_eq(weft__timer_armed(), armed, "no timer armed for the child");
  cr_assert_eq(weft_ctx_deadline(child), weft_ctx_deadline(parent));
  cr_assert_eq(weft_ctx_wait_until(parent, WEFT_FOREVER), WEFT_EDEADLINE);
  cr_assert_eq(weft_ctx_err(child), WEFT_EDEADLINE, "done together with its parent, not at its own 450 ms");
  cr_assert_eq(weft_ctx_cause(child), WEFT_EDEADLINE);
  weft_ctx_end(child_cancel);
  weft_ctx_end(parent_cancel);
}

WEFT_TEST(ctx, earlier_child_deadline_wins) {
  weft_ctx *parent, *child;
  weft_cancel *parent_cancel = NULL;
  weft_cancel *child_cancel = NULL;
  weft_ctx_with_timeout(weft_background(), WEFT_SEC(3600), &parent, &parent_cancel);
  weft_ctx_with_timeout(parent, WEFT_MS(50), &child, &child_cancel);
  cr_assert_lt(weft_ctx_deadline(child), weft_ctx_deadline(parent));
  cr_assert_eq(weft_ctx_wait_until(child, WEFT_FOREVER), WEFT_EDEADLINE);
  cr_assert_eq(weft_ctx_err(parent), 0);
  weft_ctx_end(child_cancel);
  weft_ctx_end(parent_cancel);
}

WEFT_TEST(ctx, negative_timeout_is_already_expired) {
  weft_ctx *c;
  weft_cancel *c_cancel = NULL;
  cr_assert_eq(weft_ctx_with_timeout(weft_background(), -WEFT_SEC(1), &c, &c_cancel), 0);
  cr_assert_eq(weft_ctx_err(c), WEFT_EDEADLINE);
  weft_ctx_end(c_cancel);
  cr_assert_eq(weft_ctx_with_deadline(weft_background(), 0, &c, &c_cancel), 0);
  cr_assert_eq(weft_ctx_err(c), WEFT_EDEADLINE);
  weft_ctx_end(c_cancel);
}

WEFT_TEST(ctx, deadline_cause) {
  weft_ctx *c, *k;
  weft_cancel *c_cancel = NULL;
  weft_cancel *k_cancel = NULL;
  cr_assert_eq(weft_ctx_with_timeout_cause(weft_background(), WEFT_MS(20), -555, &c, &c_cancel), 0);
  weft_ctx_with_cancel(c, &k, &k_cancel);
  cr_assert_eq(weft_ctx_wait_until(c, WEFT_FOREVER), WEFT_EDEADLINE);
  cr_assert_eq(weft_ctx_err(c), WEFT_EDEADLINE);
  cr_assert_eq(weft_ctx_cause(c), -555);
  cr_assert_eq(weft_ctx_cause(k), -555);
  weft_ctx_end(k_cancel);
  weft_ctx_end(c_cancel);
  cr_assert_eq(weft_ctx_with_timeout_cause(weft_background(), WEFT_MS(20), 5, &c, &c_cancel), WEFT_EINVAL);
  cr_assert_null(c);
  /* cancelled before the deadline: canceled, not the deadline cause */
  weft_ctx_with_deadline_cause(weft_background(), weft_deadline_in(WEFT_SEC(60)), -555, &c, &c_cancel);
  weft_ctx_cancel(c_cancel);
  cr_assert_eq(weft_ctx_cause(c), WEFT_ECANCELED);
  weft_ctx_end(c_cancel);
}

/* ---- values ---- */

static int dtor_calls;
static void count_dtor(void *p) {
  (void)p;
  dtor_calls++;
}

WEFT_TEST(ctx, values_chain_shadowing_and_missing) {
  weft_ctx *v1, *c, *v2, *v3;
  weft_cancel *c_cancel = NULL;
  dtor_calls = 0;
  weft_ctx_with_value(weft_background(), &key_user, "alice", count_dtor, &v1);
  weft_ctx_with_cancel(v1, &c, &c_cancel);
  weft_ctx_with_value(c, &key_trace, "t-1", count_dtor, &v2);
  weft_ctx_with_value(v2, &key_user, "bob", count_dtor, &v3);
  cr_assert_str_eq(weft_ctx_value(v3, &key_user), "bob", "the nearest value shadows");
  cr_assert_str_eq(weft_ctx_value(v2, &key_user), "alice");
  cr_assert_str_eq(weft_ctx_value(v3, &key_trace), "t-1");
  cr_assert_null(weft_ctx_value(v3, &key_missing));
  cr_assert_null(weft_ctx_value(v1, &key_trace), "values never flow up");
  void *out = (void *)1;
  cr_assert(!weft_ctx_lookup(v3, &key_missing, &out));
  weft_ctx *vn;
  weft_ctx_with_value(v3, &key_missing, NULL, NULL, &vn);
  cr_assert(weft_ctx_lookup(vn, &key_missing, &out));
  cr_assert_null(out, "a stored NULL is found");
  cr_assert_eq(weft_ctx_err(v3), 0);
  weft_ctx_cancel(c_cancel);
  cr_assert_eq(weft_ctx_err(v3), WEFT_ECANCELED, "value contexts share their source's cancellation");
  weft_ctx_release(vn);
  weft_ctx_release(v3);
  weft_ctx_release(v2);
  cr_assert_eq(dtor_calls, 2);
  weft_ctx_end(c_cancel);
  weft_ctx_release(v1);
  cr_assert_eq(dtor_calls, 3);
}

WEFT_TEST(ctx, value_bad_input_still_frees_value) {
  weft_ctx *c = (weft_ctx *)1;
  dtor_calls = 0;
  cr_assert_eq(weft_ctx_with_value(weft_background(), NULL, "x", count_dtor, &c), WEFT_EINVAL);
  cr_assert_null(c);
  cr_assert_eq(weft_ctx_with_value(NULL, &key_user, "x", count_dtor, &c), WEFT_EINVAL);
  cr_assert_eq(dtor_calls, 2, "ownership of the value passes to the call even on error");
}

WEFT_TEST(ctx, without_cancel_keeps_values_drops_cancel) {
  weft_ctx *req, *v, *detached, *child;
  weft_cancel *req_cancel = NULL;
  weft_cancel *child_cancel = NULL;
  weft_ctx_with_timeout(weft_background(), WEFT_MS(50), &req, &req_cancel);
  weft_ctx_with_value(req, &key_trace, "req-42", NULL, &v);
  weft_ctx_without_cancel(v, &detached);
  weft_ctx_with_cancel(detached, &child, &child_cancel);
  cr_assert_eq(weft_ctx_deadline(detached), WEFT_FOREVER);
  weft_ctx_cancel(req_cancel);
  cr_assert_eq(weft_ctx_err(v), WEFT_ECANCELED);
  cr_assert_eq(weft_ctx_err(detached), 0);
  cr_assert_eq(weft_ctx_err(child), 0);
  cr_assert_str_eq(weft_ctx_value(child, &key_trace), "req-42");
  weft_ctx_end(child_cancel);
  weft_ctx_release(detached);
  weft_ctx_release(v);
  weft_ctx_end(req_cancel);
  cr_assert_eq(weft_ctx_live_count(), 0);
}

/* ---- several parents ---- */

WEFT_TEST(ctx, multi_parent_done_when_any_parent_done) {
  weft_ctx *a, *b, *va, *m, *mk;
  weft_cancel *m_cancel = NULL;
  weft_cancel *a_cancel = NULL;
  weft_cancel *b_cancel = NULL;
  weft_cancel *mk_cancel = NULL;
  weft_ctx_with_timeout(weft_background(), WEFT_SEC(3600), &a, &a_cancel);
  weft_ctx_with_timeout(weft_background(), WEFT_SEC(60), &b, &b_cancel);
  weft_ctx_with_value(a, &key_user, "from-a", NULL, &va);
  weft_ctx *ps[] = {va, b};
  cr_assert_eq(weft_ctx_with_parents(ps, 2, &m, &m_cancel), 0);
  weft_ctx_with_cancel(m, &mk, &mk_cancel);
  cr_assert_eq(weft_ctx_deadline(m), weft_ctx_deadline(b), "the earliest deadline");
  cr_assert_str_eq(weft_ctx_value(mk, &key_user), "from-a");
  cr_assert_eq(weft_ctx_err(m), 0);
  weft_ctx_cancel_cause(b_cancel, -31);
  cr_assert_eq(weft_ctx_err(m), WEFT_ECANCELED);
  cr_assert_eq(weft_ctx_cause(m), -31);
  cr_assert_eq(weft_ctx_cause(mk), -31, "descendants of a multi are cancelled too");
  cr_assert_eq(weft_ctx_err(a), 0);
  weft_ctx_end(mk_cancel);
  weft_ctx_end(m_cancel);
  weft_ctx_release(va);
  weft_ctx_end(a_cancel);
  weft_ctx_end(b_cancel);
  cr_assert_eq(weft_ctx_live_count(), 0);
}

WEFT_TEST(ctx, multi_parent_born_done_and_bad_input) {
  weft_ctx *a, *b, *m;
  weft_cancel *m_cancel = NULL;
  weft_cancel *a_cancel = NULL;
  weft_cancel *b_cancel = NULL;
  weft_ctx_with_cancel(weft_background(), &a, &a_cancel);
  weft_ctx_with_cancel(weft_background(), &b, &b_cancel);
  weft_ctx_cancel(b_cancel);
  weft_ctx *ps[] = {a, b};
  cr_assert_eq(weft_ctx_with_parents(ps, 2, &m, &m_cancel), 0);
  cr_assert_eq(weft_ctx_err(m), WEFT_ECANCELED);
  weft_ctx_end(m_cancel);
  cr_assert_eq(weft_ctx_with_parents(ps, 0, &m, &m_cancel), WEFT_EINVAL);
  weft_ctx *bad[] = {a, NULL};
  cr_assert_eq(weft_ctx_with_parents(bad, 2, &m, &m_cancel), WEFT_EINVAL);
  cr_assert_eq(weft_ctx_with_parents(NULL, 2, &m, &m_cancel), WEFT_EINVAL);
  /* released without cancel: unregistered from both parents, nothing left behind */
  weft_ctx *ps2[] = {a, weft_background()};
  cr_assert_eq(weft_ctx_with_parents(ps2, 2, &m, &m_cancel), 0);
  weft_ctx_release(m);
  weft_ctx_end(a_cancel);
  weft_ctx_end(b_cancel);
  cr_assert_eq(weft_ctx_live_count(), 0);
}

/* ---- ownership ---- */

WEFT_TEST(ctx, release_without_cancel_detaches_from_parent) {
  weft_ctx *p;
  weft_cancel *p_cancel = NULL;
  weft_ctx_with_cancel(weft_background(), &p, &p_cancel);
  for (int i = 0; i < 10000; i++) {
    weft_ctx *c;
    weft_cancel *c_cancel = NULL;
    weft_ctx_with_timeout(p, WEFT_SEC(3600), &c, &c_cancel);
    weft_ctx_release(c); /* no cancel: must not grow p or leave a timer armed */
  }
  cr_assert_eq(weft_ctx_live_count(), 1);
  weft_ctx_end(p_cancel);
  cr_assert_eq(weft_ctx_live_count(), 0);
}

WEFT_TEST(ctx, child_keeps_parent_alive) {
  weft_ctx *p, *c;
  weft_cancel *c_cancel = NULL;
  weft_ctx_with_value(weft_background(), &key_user, "kept", NULL, &p);
  weft_ctx_with_cancel(p, &c, &c_cancel);
  weft_ctx_release(p); /* the caller's reference only */
  cr_assert_str_eq(weft_ctx_value(c, &key_user), "kept");
  cr_assert_eq(weft_ctx_live_count(), 2);
  weft_ctx_end(c_cancel);
  cr_assert_eq(weft_ctx_live_count(), 0);
}

WEFT_TEST(ctx, bad_input) {
  weft_ctx *c = (weft_ctx *)1;
  weft_cancel *c_cancel = (weft_cancel *)1;
  cr_assert_eq(weft_ctx_with_cancel(NULL, &c, &c_cancel), WEFT_EINVAL);
  cr_assert_null(c);
  cr_assert_null(c_cancel);
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), NULL, &c_cancel), WEFT_EINVAL);
  cr_assert_null(c_cancel);
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &c, NULL), WEFT_EINVAL, "the right to cancel is required");
  cr_assert_null(c);
  cr_assert_eq(weft_ctx_with_parents((weft_ctx *[]){weft_background()}, 1, &c, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_ctx_cancel_cause(NULL, -5), WEFT_EINVAL);
  cr_assert_eq(weft_ctx_with_timeout(NULL, 5, &c, &c_cancel), WEFT_EINVAL);
  cr_assert_eq(weft_ctx_without_cancel(NULL, &c), WEFT_EINVAL);
  cr_assert_eq(weft_ctx_cancel(NULL), WEFT_EINVAL);
  cr_assert_eq(weft_ctx_err(NULL), WEFT_EINVAL);
  cr_assert_eq(weft_ctx_cause(NULL), WEFT_EINVAL);
  cr_assert_eq(weft_ctx_wait_until(NULL, 0), WEFT_EINVAL);
  cr_assert_eq(weft_ctx_sleep(NULL, 0), WEFT_EINVAL);
  cr_assert_eq(weft_ctx_fd(NULL), WEFT_EINVAL);
  cr_assert_null(weft_ctx_value(NULL, &key_user));
  cr_assert_eq(weft_ctx_after_func(NULL, count_dtor, NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_ctx_dump(NULL, stderr), WEFT_EINVAL);
  weft_ctx_with_cancel(weft_background(), &c, &c_cancel);
  cr_assert_eq(weft_ctx_cancel_cause(c_cancel, 3), WEFT_EINVAL, "causes are negative");
  cr_assert_eq(weft_ctx_after_func(c, NULL, NULL, NULL), WEFT_EINVAL);
  weft_ctx_end(c_cancel);
  weft_ctx_end(NULL);
  weft_ctx_release(NULL);
  cr_assert_null(weft_ctx_retain(NULL));
  cr_assert(!weft_after_stop(NULL));
}

WEFT_TEST(ctx, double_release_aborts, .signal = SIGABRT) {
  weft_ctx *c;
  weft_cancel *c_cancel = NULL;
  weft_ctx_with_cancel(weft_background(), &c, &c_cancel);
  weft_ctx_release(c);
  weft_ctx_release(c);
}

/* ---- waiting ---- */

typedef struct {
  weft_ctx *ctx;
  int rc;
} waitarg;
static void *waiter_thread(void *p) {
  waitarg *w = p;
  w->rc = weft_ctx_wait_until(w->ctx, WEFT_FOREVER);
  return NULL;
}

WEFT_TEST(ctx, cancel_wakes_every_parked_waiter) {
  enum { N = 8 };
  weft_ctx *p, *kids[N];
  weft_cancel *p_cancel = NULL, *kid_cancel[N];
  pthread_t th[N];
  waitarg wa[N];
  weft_ctx_with_cancel(weft_background(), &p, &p_cancel);
  for (int i = 0; i < N; i++) {
    kid_cancel[i] = NULL;
    if (i % 2) weft_ctx_with_cancel(p, &kids[i], &kid_cancel[i]);
    else kids[i] = weft_ctx_retain(p); /* half wait on the parent itself, half on children */
    wa[i] = (waitarg){kids[i], 1};
    pthread_create(&th[i], NULL, waiter_thread, &wa[i]);
  }
  weft_ctx_sleep(weft_background(), WEFT_MS(50)); /* let them park */
  for (int i = 0; i < N; i++) cr_assert_eq(wa[i].rc, 1, "nobody returns before the cancel");
  weft_ctx_cancel(p_cancel);
  for (int i = 0; i < N; i++) {
    pthread_join(th[i], NULL);
    cr_assert_eq(wa[i].rc, WEFT_ECANCELED);
    if (kid_cancel[i]) weft_ctx_end(kid_cancel[i]);
    else weft_ctx_release(kids[i]);
  }
  weft_ctx_end(p_cancel);
}

WEFT_TEST(ctx, wait_times_out) {
  weft_ctx *c;
  weft_cancel *c_cancel = NULL;
  weft_ctx_with_cancel(weft_background(), &c, &c_cancel);
  cr_assert_eq(weft_ctx_wait_until(c, weft_deadline_in(WEFT_MS(20))), WEFT_ETIMEDOUT);
  cr_assert_eq(weft_ctx_wait_until(c, WEFT_NOWAIT), WEFT_ETIMEDOUT);
  cr_assert_eq(weft_ctx_sleep(c, WEFT_MS(10)), 0);
  cr_assert_eq(weft_ctx_sleep(c, -5), 0);
  weft_ctx_end(c_cancel);
}

WEFT_TEST(ctx, fd_becomes_readable_on_cancel) {
  weft_ctx *c, *v;
  weft_cancel *c_cancel = NULL;
  weft_ctx_with_cancel(weft_background(), &c, &c_cancel);
  weft_ctx_with_value(c, &key_user, NULL, NULL, &v);
  int fd = weft_ctx_fd(v);
  cr_assert_geq(fd, 0);
  cr_assert_eq(weft_ctx_fd(c), fd, "one fd per cancellation source, created once");
  struct pollfd pf = {.fd = fd, .events = POLLIN};
  cr_assert_eq(poll(&pf, 1, 0), 0, "not readable while live");
  weft_ctx_cancel(c_cancel);
  cr_assert_eq(poll(&pf, 1, 5000), 1);
  cr_assert(pf.revents & POLLIN);
  weft_ctx_release(v);
  weft_ctx_end(c_cancel);
  /* asked for after the cancel: readable at once */
  weft_ctx_with_cancel(weft_background(), &c, &c_cancel);
  weft_ctx_cancel(c_cancel);
  pf.fd = weft_ctx_fd(c);
  cr_assert_eq(poll(&pf, 1, 0), 1);
  weft_ctx_end(c_cancel);
  /* never readable for a root */
  pf.fd = weft_ctx_fd(weft_background());
  cr_assert_geq(pf.fd, 0);
  cr_assert_eq(poll(&pf, 1, 10), 0);
}

/* ---- after-funcs ---- */

static _Atomic int af_runs;
static pthread_t af_thread;
static void af_fn(void *arg) {
  af_thread = pthread_self();
  atomic_fetch_add(&af_runs, *(int *)arg);
}

WEFT_TEST(ctx, after_func_runs_once_on_runtime_thread) {
  weft_ctx *c;
  weft_cancel *c_cancel = NULL;
  int one = 1, hundred = 100;
  atomic_store(&af_runs, 0);
  weft_ctx_with_cancel(weft_background(), &c, &c_cancel);
  weft_after *h1, *h2;
  cr_assert_eq(weft_ctx_after_func(c, af_fn, &one, &h1), 0);
  cr_assert_eq(weft_ctx_after_func(c, af_fn, &hundred, &h2), 0);
  cr_assert(weft_after_stop(h2), "stopped before the cancel");
  weft_ctx_cancel(c_cancel);
  weft_ctx_cancel(c_cancel);
  for (int i = 0; i < 5000 && atomic_load(&af_runs) == 0; i++) weft_ctx_sleep(weft_background(), WEFT_MS(1));
  weft_ctx_sleep(weft_background(), WEFT_MS(20));
  cr_assert_eq(atomic_load(&af_runs), 1, "ran exactly once, the stopped one never");
  cr_assert(!pthread_equal(af_thread, pthread_self()), "not on the cancelling thread");
  cr_assert(!weft_after_stop(h1), "too late to stop");
  weft_after_free(h1);
  weft_after_free(h2);
  /* registering on a done context schedules at once */
  cr_assert_eq(weft_ctx_after_func(c, af_fn, &hundred, NULL), 0);
  for (int i = 0; i < 5000 && atomic_load(&af_runs) == 1; i++) weft_ctx_sleep(weft_background(), WEFT_MS(1));
  cr_assert_eq(atomic_load(&af_runs), 101);
  weft_ctx_end(c_cancel);
}

WEFT_TEST(ctx, after_func_keeps_context_until_run) {
  weft_ctx *p, *c;
  weft_cancel *p_cancel = NULL;
  weft_cancel *c_cancel = NULL;
  int one = 1;
  atomic_store(&af_runs, 0);
  weft_ctx_with_cancel(weft_background(), &p, &p_cancel);
  weft_ctx_with_cancel(p, &c, &c_cancel);
  weft_ctx_after_func(c, af_fn, &one, NULL);
  weft_ctx_release(c); /* the registration keeps it linked */
  cr_assert_eq(weft_ctx_live_count(), 2);
  weft_ctx_cancel(p_cancel);
  for (int i = 0; i < 5000 && weft_ctx_live_count() != 1; i++) weft_ctx_sleep(weft_background(), WEFT_MS(1));
  cr_assert_eq(atomic_load(&af_runs), 1);
  cr_assert_eq(weft_ctx_live_count(), 1);
  weft_ctx_end(p_cancel);
}

/* ---- signals ---- */

WEFT_TEST(ctx, signal_context_cancelled_by_sigterm) {
  weft_ctx *c;
  weft_cancel *c_cancel = NULL;
  cr_assert_eq(weft_ctx_with_signals(weft_background(), NULL, 0, false, &c, &c_cancel), 0);
  cr_assert_eq(weft_ctx_err(c), 0);
  raise(SIGTERM);
  cr_assert_eq(weft_ctx_wait_until(c, weft_deadline_in(WEFT_SEC(10))), WEFT_ECANCELED);
  cr_assert_eq(weft_cause_signal(weft_ctx_cause(c)), SIGTERM, "the cause says which signal");
  weft_ctx_end(c_cancel);
  int bad[] = {SIGKILL};
  cr_assert_eq(weft_ctx_with_signals(weft_background(), bad, 1, false, &c, &c_cancel), WEFT_EINVAL);
}

WEFT_TEST(ctx, signal_context_custom_set_and_restore) {
  weft_ctx *c;
  weft_cancel *c_cancel = NULL;
  int sigs[] = {SIGUSR1};
  cr_assert_eq(weft_ctx_with_signals(weft_background(), sigs, 1, false, &c, &c_cancel), 0);
  raise(SIGUSR1);
  cr_assert_eq(weft_ctx_wait_until(c, weft_deadline_in(WEFT_SEC(10))), WEFT_ECANCELED);
  cr_assert_eq(weft_ctx_cause(c), WEFT_SIGNAL_CAUSE(SIGUSR1));
  weft_ctx_end(c_cancel);
  struct sigaction sa;
  sigaction(SIGUSR1, NULL, &sa);
  cr_assert_eq(sa.sa_handler, SIG_DFL, "the previous disposition is restored");
}

WEFT_TEST(ctx, signal_second_arrival_forces_exit, .exit_code = 128 + SIGUSR2) {
  weft_ctx *c;
  weft_cancel *c_cancel = NULL;
  int sigs[] = {SIGUSR2};
  /* checked: without the signal context the raise below would kill the test by the default disposition */
  cr_assert_eq(weft_ctx_with_signals(weft_background(), sigs, 1, true, &c, &c_cancel), 0);
  raise(SIGUSR2);
  weft_ctx_wait_until(c, weft_deadline_in(WEFT_SEC(10)));
  /* The forced exit is armed by weft's thread just after the cancel; until then another arrival only
   * cancels again (a no-op). Keep signalling: the first arrival after arming must exit. */
  for (int i = 0; i < 200; i++) {
    raise(SIGUSR2);
    weft_ctx_sleep(weft_background(), WEFT_MS(50));
  }
  exit(0); /* not reached when the forced exit works */
}

WEFT_TEST(ctx, signal_nth_steps_count_every_arrival) {
  /* Escalation made up front: two arrivals raised back to back, before weft's thread has read either,
   * reach both steps; the third step waits for a third. Different signals, so the kernel cannot merge them. */
  int sigs[] = {SIGUSR1, SIGUSR2};
  weft_ctx *c[3];
  weft_cancel *k[3];
  for (unsigned i = 0; i < 3; i++)
    cr_assert_eq(weft_ctx_with_signals_nth(weft_background(), sigs, 2, i + 1, false, &c[i], &k[i]), 0);
  raise(SIGUSR1);
  raise(SIGUSR2);
  cr_assert_eq(weft_ctx_wait_until(c[1], weft_deadline_in(WEFT_SEC(10))), WEFT_ECANCELED, "the second arrival");
  cr_assert_eq(weft_ctx_wait_until(c[0], weft_deadline_in(WEFT_SEC(10))), WEFT_ECANCELED);
  cr_assert_eq(weft_ctx_cause(c[0]), WEFT_SIGNAL_CAUSE(SIGUSR1), "the first step, by the first arrival");
  cr_assert_eq(weft_ctx_cause(c[1]), WEFT_SIGNAL_CAUSE(SIGUSR2), "the second step, by the second");
  /* A step made now counts from here: the next arrival cancels it and the third step, not the first two again. */
  weft_ctx *late;
  weft_cancel *late_k;
  cr_assert_eq(weft_ctx_with_signals_nth(weft_background(), sigs, 2, 1, false, &late, &late_k), 0);
  cr_assert_eq(weft_ctx_err(c[2]), 0, "two arrivals do not reach the third step");
  raise(SIGUSR1); /* not SIGUSR2: the third step's cause then shows which arrival cancelled it */
  cr_assert_eq(weft_ctx_wait_until(late, weft_deadline_in(WEFT_SEC(10))), WEFT_ECANCELED);
  cr_assert_eq(weft_ctx_wait_until(c[2], weft_deadline_in(WEFT_SEC(10))), WEFT_ECANCELED);
  cr_assert_eq(weft_ctx_cause(c[2]), WEFT_SIGNAL_CAUSE(SIGUSR1), "the third step, by the third arrival");
  cr_assert_eq(weft_ctx_cause(late), WEFT_SIGNAL_CAUSE(SIGUSR1), "a step made later, by the next arrival");
  cr_assert_eq(weft_ctx_cause(c[0]), WEFT_SIGNAL_CAUSE(SIGUSR1), "a step is cancelled once");
  for (int i = 0; i < 3; i++) weft_ctx_end(k[i]);
  weft_ctx_end(late_k);
  cr_assert_eq(weft_ctx_with_signals_nth(weft_background(), sigs, 2, 0, false, &late, &late_k), WEFT_EINVAL);
  cr_assert_null(late);
  cr_assert_null(late_k);
}

WEFT_TEST(ctx, signal_nth_forces_exit_after_the_nth_on_any_of_its_signals, .exit_code = 128 + SIGUSR2) {
  int sigs[] = {SIGUSR1, SIGUSR2};
  weft_ctx *first, *second;
  weft_cancel *first_k, *second_k;
  cr_assert_eq(weft_ctx_with_signals_nth(weft_background(), sigs, 2, 1, false, &first, &first_k), 0);
  cr_assert_eq(weft_ctx_with_signals_nth(weft_background(), sigs, 2, 2, true, &second, &second_k), 0);
  raise(SIGUSR1);
  /* weft's thread has taken the first arrival once `first` is cancelled: a forced exit armed then (too
   * early) would end the process at the next raise with 128+SIGUSR1, not the status this test expects. */
  cr_assert_eq(weft_ctx_wait_until(first, weft_deadline_in(WEFT_SEC(10))), WEFT_ECANCELED);
  raise(SIGUSR1);
  cr_assert_eq(weft_ctx_wait_until(second, weft_deadline_in(WEFT_SEC(10))), WEFT_ECANCELED);
  for (int i = 0; i < 200; i++) { /* armed by weft's thread with the cancel: the next SIGUSR2 exits */
    raise(SIGUSR2);
    weft_ctx_sleep(weft_background(), WEFT_MS(50));
  }
  exit(0); /* not reached when the forced exit works */
}

/* ---- debug aids ---- */


WEFT_TEST(ctx, dump_shows_the_tree) {
  weft_ctx *r, *a, *b;
  weft_cancel *a_cancel = NULL;
  weft_cancel *r_cancel = NULL;
  weft_cancel *b_cancel = NULL;
  weft_ctx_with_cancel(weft_background(), &r, &r_cancel);
  weft_ctx_with_timeout(r, WEFT_SEC(30), &a, &a_cancel);
  weft_ctx_with_cancel(a, &b, &b_cancel);
  weft_ctx_cancel(b_cancel);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  cr_assert_eq(weft_ctx_dump(r, f), 0);
  fclose(f);
  cr_assert(strstr(buf, "cancel live") == buf, "%s", buf);
  cr_assert(strstr(buf, "\n  deadline live") != NULL, "%s", buf);
  cr_assert(strstr(buf, "deadline=+") != NULL, "%s", buf);
  cr_assert(strstr(buf, "    cancel") == NULL, "a cancelled child is unlinked: %s", buf);
  for (const char *q = strstr(buf, "age="); q; q = strstr(q + 1, "age="))
    cr_assert_lt(atof(q + 4), 60.0, "ages are measured from creation: %s", buf);
  free(buf);
  weft_ctx_end(b_cancel);
  weft_ctx_end(a_cancel);
  weft_ctx_end(r_cancel);
}

WEFT_TEST(ctx, dump_ages_of_every_kind) {
  weft__leaks_enable(true); /* value contexts show in dumps only with tracking on */
  weft_ctx *r, *v, *w, *m;
  weft_cancel *m_cancel = NULL;
  weft_cancel *r_cancel = NULL;
  weft_ctx_with_cancel(weft_background(), &r, &r_cancel);
  weft_ctx_with_value(r, &key_user, NULL, NULL, &v);
  weft_ctx_without_cancel(r, &w);
  weft_ctx *ps[] = {r, v};
  weft_ctx_with_parents(ps, 2, &m, &m_cancel);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  weft_ctx_dump(r, f);
  fclose(f);
  cr_assert(strstr(buf, "value live") && strstr(buf, "without-cancel live") && strstr(buf, "multi live"), "%s", buf);
  for (const char *q = strstr(buf, "age="); q; q = strstr(q + 1, "age="))
    cr_assert_lt(atof(q + 4), 60.0, "ages are measured from creation: %s", buf);
  free(buf);
  weft_ctx_end(m_cancel);
  weft_ctx_release(w);
  weft_ctx_release(v);
  weft_ctx_end(r_cancel);
  weft__leaks_enable(false);
}

WEFT_TEST(ctx, leak_report_names_unreleased_contexts) {
  weft__leaks_enable(true);
  weft_ctx *kept, *freed;
  weft_cancel *freed_cancel = NULL;
  weft_cancel *kept_cancel = NULL;
  weft_ctx_with_cancel(weft_background(), &kept, &kept_cancel);
  weft_ctx_with_timeout(weft_background(), WEFT_SEC(5), &freed, &freed_cancel);
  weft_ctx_end(freed_cancel);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  cr_assert_eq(weft_ctx_leak_report(f), 1);
  fclose(f);
  cr_assert(strstr(buf, "never released: cancel, live") != NULL, "%s", buf);
  cr_assert(strstr(buf, "created by") != NULL);
  free(buf);
  weft_ctx_end(kept_cancel);
  cr_assert_eq(weft_ctx_leak_report(stderr), 0);
  weft__leaks_enable(false);
}

WEFT_TEST(ctx, signal_context_refuses_huge_counts) {
  static const int sigs[2] = {SIGUSR1, SIGUSR2};
  weft_ctx *c = (weft_ctx *)1;
  weft_cancel *k = (weft_cancel *)1;
  cr_assert_eq(weft_ctx_with_signals(weft_background(), sigs, SIZE_MAX, false, &c, &k), WEFT_EINVAL);
  cr_assert_null(c);
  cr_assert_null(k);
  cr_assert_eq(weft_ctx_with_signals(weft_background(), sigs, 66, false, &c, &k), WEFT_EINVAL);
}

/* ---- after-funcs: any context, stop more than once, free ---- */

static _Atomic int marker_ran;
static void marker_fn(void *arg) {
  (void)arg;
  atomic_store(&marker_ran, 1);
}

/* Waits until every callback queued so far has run: callbacks run one at a time, in order. */
static void callbacks_drain(void) {
  weft_ctx *c;
  weft_cancel *c_cancel = NULL;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &c, &c_cancel), 0);
  weft_ctx_cancel(c_cancel);
  atomic_store(&marker_ran, 0);
  cr_assert_eq(weft_ctx_after_func(c, marker_fn, NULL, NULL), 0);
  for (int i = 0; i < 10000 && !atomic_load(&marker_ran); i++) weft_ctx_sleep(weft_background(), WEFT_MS(1));
  cr_assert(atomic_load(&marker_ran), "the callback thread runs");
  weft_ctx_release(c);
}

WEFT_TEST(ctx, after_func_on_never_cancelled_contexts) {
  int one = 1;
  atomic_store(&af_runs, 0);
  size_t live = weft_ctx_live_count();
  weft_ctx *p, *w, *vb, *vw;
  weft_cancel *p_cancel = NULL;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &p, &p_cancel), 0);
  cr_assert_eq(weft_ctx_without_cancel(p, &w), 0);
  cr_assert_eq(weft_ctx_with_value(weft_background(), &key_user, NULL, NULL, &vb), 0);
  cr_assert_eq(weft_ctx_with_value(w, &key_user, NULL, NULL, &vw), 0);
  weft_ctx *never[] = {weft_background(), weft_todo(), w, vb, vw};
  weft_after *h[5];
  for (int i = 0; i < 5; i++) {
    cr_assert_eq(weft_ctx_after_func(never[i], af_fn, &one, NULL), 0, "context %d, no handle", i);
    cr_assert_eq(weft_ctx_after_func(never[i], af_fn, &one, &h[i]), 0, "context %d", i);
    cr_assert_not_null(h[i]);
  }
  weft_ctx_cancel(p_cancel); /* the without-cancel context's parent: no effect on it */
  callbacks_drain();
  cr_assert_eq(atomic_load(&af_runs), 0, "never runs");
  for (int i = 0; i < 5; i++) {
    cr_assert(weft_after_stop(h[i]), "context %d: the first stop stops it", i);
    cr_assert(!weft_after_stop(h[i]), "context %d: a second stop reports false", i);
    weft_after_free(h[i]);
  }
  /* freed without a stop: nothing is left behind either (ASan checks) */
  weft_after *h2;
  cr_assert_eq(weft_ctx_after_func(vw, af_fn, &one, &h2), 0);
  weft_after_free(h2);
  weft_ctx_release(vw);
  weft_ctx_release(vb);
  weft_ctx_release(w);
  weft_ctx_end(p_cancel);
  cr_assert_eq(weft_ctx_live_count(), live);
  cr_assert_eq(atomic_load(&af_runs), 0);
}

WEFT_TEST(ctx, after_stop_twice_before_run) {
  int one = 1;
  atomic_store(&af_runs, 0);
  weft_ctx *c;
  weft_cancel *c_cancel = NULL;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &c, &c_cancel), 0);
  weft_after *h;
  cr_assert_eq(weft_ctx_after_func(c, af_fn, &one, &h), 0);
  cr_assert(weft_after_stop(h));
  cr_assert(!weft_after_stop(h), "only one stop reports true");
  weft_ctx_cancel(c_cancel);
  callbacks_drain();
  cr_assert_eq(atomic_load(&af_runs), 0);
  cr_assert(!weft_after_stop(h), "still valid, still false");
  weft_after_free(h);
  weft_ctx_end(c_cancel);
  weft_after_free(NULL);
}

WEFT_TEST(ctx, after_stop_after_run_is_false_twice) {
  int one = 1;
  atomic_store(&af_runs, 0);
  weft_ctx *c;
  weft_cancel *c_cancel = NULL;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &c, &c_cancel), 0);
  weft_after *h;
  cr_assert_eq(weft_ctx_after_func(c, af_fn, &one, &h), 0);
  weft_ctx_cancel(c_cancel);
  callbacks_drain();
  cr_assert_eq(atomic_load(&af_runs), 1);
  cr_assert(!weft_after_stop(h));
  cr_assert(!weft_after_stop(h));
  weft_after_free(h);
  weft_ctx_end(c_cancel);
}

WEFT_TEST(ctx, after_free_does_not_stop) {
  /* As in Go, dropping the stop function leaves the callback armed. */
  int one = 1;
  atomic_store(&af_runs, 0);
  size_t live = weft_ctx_live_count();
  weft_ctx *c;
  weft_cancel *c_cancel = NULL;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &c, &c_cancel), 0);
  weft_after *h;
  cr_assert_eq(weft_ctx_after_func(c, af_fn, &one, &h), 0);
  weft_after_free(h);
  weft_ctx_cancel(c_cancel);
  weft_ctx_release(c);
  callbacks_drain();
  cr_assert_eq(atomic_load(&af_runs), 1);
  cr_assert_eq(weft_ctx_live_count(), live);
}

WEFT_TEST(ctx, signal_cancels_every_registered_context) {
  /* One arrival cancels all of them, well past any batch the signal thread takes at a time. */
  enum { N = 300 };
  static weft_ctx *c[N];
  static weft_cancel *c_cancel[N];
  int sigs[] = {SIGUSR1};
  for (int i = 0; i < N; i++) cr_assert_eq(weft_ctx_with_signals(weft_background(), sigs, 1, false, &c[i], &c_cancel[i]), 0);
  raise(SIGUSR1);
  int missed = 0;
  int64_t deadline = weft_deadline_in(WEFT_SEC(10)); /* one for all: a miss costs the test 10 s at most */
  for (int i = 0; i < N; i++)
    if (weft_ctx_wait_until(c[i], deadline) != WEFT_ECANCELED) missed++;
  cr_assert_eq(missed, 0, "%d of %d signal contexts were not cancelled", missed, N);
  for (int i = 0; i < N; i++) {
    cr_assert_eq(weft_ctx_cause(c[i]), WEFT_SIGNAL_CAUSE(SIGUSR1));
    weft_ctx_end(c_cancel[i]);
  }
}

WEFT_TEST(ctx, signal_numbers_that_cannot_fire_are_refused) {
  weft_ctx *c = (weft_ctx *)1;
  weft_cancel *c_cancel = NULL;
  int bad[] = {0, -1, 32, 33, SIGRTMAX + 1, 65, 1000, SIGKILL, SIGSTOP, SIGSEGV};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cr_assert_eq(weft_ctx_with_signals(weft_background(), &bad[i], 1, false, &c, &c_cancel), WEFT_EINVAL, "signal %d",
                 bad[i]);
    cr_assert_null(c);
  }
  int ok[] = {SIGRTMIN, SIGRTMAX};
  cr_assert_eq(weft_ctx_with_signals(weft_background(), ok, 2, false, &c, &c_cancel), 0, "real-time signals work");
  raise(SIGRTMAX);
  cr_assert_eq(weft_ctx_wait_until(c, weft_deadline_in(WEFT_SEC(10))), WEFT_ECANCELED);
  cr_assert_eq(weft_ctx_cause(c), WEFT_SIGNAL_CAUSE(SIGRTMAX));
  weft_ctx_end(c_cancel);
}

/* The parent count of a multi-parent context is range-checked (1..64) before the array is read. */
WEFT_TEST(ctx, with_parents_count_limits_einval) {
  weft_ctx *ps[65];
  for (int i = 0; i < 65; i++) ps[i] = weft_background();
  weft_ctx *m;
  weft_cancel *m_cancel = NULL;
  static const size_t bad[] = {0, 65, (size_t)1 << 62, SIZE_MAX};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    cr_assert_eq(weft_ctx_with_parents(ps, bad[i], &m, &m_cancel), WEFT_EINVAL, "n %zu", bad[i]);
    cr_assert_null(m);
  }
  cr_assert_eq(weft_ctx_with_parents(ps, 1, &m, &m_cancel), 0);
  weft_ctx_end(m_cancel);
  cr_assert_eq(weft_ctx_with_parents(ps, 64, &m, &m_cancel), 0);
  weft_ctx_end(m_cancel);
}
