/* Deep chains of contexts: cancel, value lookup and the final release take no stack in proportion to the
 * depth. Each operation runs in a thread with a small explicit stack, so a recursion over the chain fails
 * in every build mode. Depth: WEFT_DEEP_DEPTH (default 200000). */
#include <pthread.h>

#include "weft_test.h"

#define SMALL_STACK (256 * 1024)

static long depth(void) { return weft_test_env("WEFT_DEEP_DEPTH", 200000); }

/* Runs fn(arg) in a thread with a 256 KiB stack and waits for it. */
static void on_small_stack(void *(*fn)(void *), void *arg) {
  pthread_attr_t at;
  cr_assert_eq(pthread_attr_init(&at), 0);
  cr_assert_eq(pthread_attr_setstacksize(&at, SMALL_STACK), 0);
  pthread_t th;
  cr_assert_eq(pthread_create(&th, &at, fn, arg), 0);
  cr_assert_eq(pthread_join(th, NULL), 0);
  pthread_attr_destroy(&at);
}

typedef struct {
  weft_ctx **chain;
  long n;
  weft_ctx *root;
  weft_cancel *root_cancel;
  size_t freed_by_top; /* how many contexts the last release frees */
} deep;

static void *cancel_root(void *p) {
  deep *d = p;
  weft_ctx_cancel(d->root_cancel);
  return NULL;
}

static void *release_bottom_up(void *p) {
  /* Each context holds the one above it, so nothing is freed until the top goes: that last release
   * frees the whole chain. */
  deep *d = p;
  weft_ctx_release(d->root);
  for (long i = 0; i < d->n - 1; i++) weft_ctx_release(d->chain[i]);
  size_t before = weft_ctx_live_count();
  weft_ctx_release(d->chain[d->n - 1]);
  cr_assert_eq(before - weft_ctx_live_count(), d->freed_by_top, "the top's release freed the chain");
  return NULL;
}

/* A chain where every step is a multi-parent context, the chain's parent first, second or alone, with an
 * ordinary child (cancel, value) in between now and then. */
static void build_chain(deep *d, weft_ctx *other) {
  d->n = depth();
  d->freed_by_top = (size_t)d->n + 1;
  d->chain = calloc((size_t)d->n, sizeof *d->chain);
  cr_assert_not_null(d->chain);
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &d->root, &d->root_cancel), 0);
  weft_ctx *prev = d->root;
  for (long i = 0; i < d->n; i++) {
    weft_ctx *c = NULL;
    weft_cancel *c_cancel = NULL;
    switch (i % 5) {
    case 0: {
      weft_ctx *ps[] = {prev};
      cr_assert_eq(weft_ctx_with_parents(ps, 1, &c, &c_cancel), 0);
      break;
    }
    case 1: {
      weft_ctx *ps[] = {prev, other};
      cr_assert_eq(weft_ctx_with_parents(ps, 2, &c, &c_cancel), 0);
      break;
    }
    case 2: {
      weft_ctx *ps[] = {other, prev};
      cr_assert_eq(weft_ctx_with_parents(ps, 2, &c, &c_cancel), 0);
      break;
    }
    case 3:
      cr_assert_eq(weft_ctx_with_cancel(prev, &c, &c_cancel), 0);
      break;
    default:
      cr_assert_eq(weft_ctx_with_value(prev, &d, NULL, NULL, &c), 0);
      break;
    }
    d->chain[i] = c;
    prev = c;
  }
}

WEFT_TEST(ctx_deep, cancel_multi_parent_chain) {
  size_t live = weft_ctx_live_count();
  weft_ctx *other;
  weft_cancel *other_cancel = NULL;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &other, &other_cancel), 0);
  deep d;
  build_chain(&d, other);
  on_small_stack(cancel_root, &d);
  for (long i = 0; i < d.n; i++) {
    cr_assert_eq(weft_ctx_err(d.chain[i]), WEFT_ECANCELED, "level %ld", i);
  }
  cr_assert_eq(weft_ctx_err(other), 0, "the other parent is not cancelled");
  on_small_stack(release_bottom_up, &d);
  weft_ctx_end(other_cancel);
  cr_assert_eq(weft_ctx_live_count(), live);
  free(d.chain);
}

WEFT_TEST(ctx_deep, release_multi_parent_chain_live) {
  /* Released without a cancel: the multi children are still registered with their parents. */
  size_t live = weft_ctx_live_count();
  weft_ctx *other;
  weft_cancel *other_cancel = NULL;
  cr_assert_eq(weft_ctx_with_cancel(weft_background(), &other, &other_cancel), 0);
  deep d;
  build_chain(&d, other);
  on_small_stack(release_bottom_up, &d);
  weft_ctx_end(other_cancel);
  cr_assert_eq(weft_ctx_live_count(), live);
  free(d.chain);
}

static const char bottom_key, missing_key;

typedef struct {
  weft_ctx *top;
  bool found, missing_found;
  void *val;
} lookup_arg;

static void *lookup_top(void *p) {
  lookup_arg *a = p;
  a->found = weft_ctx_lookup(a->top, &bottom_key, &a->val);
  a->missing_found = weft_ctx_lookup(a->top, &missing_key, NULL);
  return NULL;
}

WEFT_TEST(ctx_deep, lookup_through_multi_parent_chain) {
  size_t live = weft_ctx_live_count();
  long n = depth();
  static int payload = 42;
  weft_ctx *bottom;
  cr_assert_eq(weft_ctx_with_value(weft_background(), &bottom_key, &payload, NULL, &bottom), 0);
  weft_ctx *other;
  cr_assert_eq(weft_ctx_with_value(weft_background(), &other, NULL, NULL, &other), 0);
  weft_ctx *prev = bottom;
  for (long i = 0; i < n; i++) {
    weft_ctx *c;
    weft_cancel *c_cancel = NULL;
    if (i % 3 == 0) {
      weft_ctx *ps[] = {prev, other}; /* searched first, with `other` still to come */
      cr_assert_eq(weft_ctx_with_parents(ps, 2, &c, &c_cancel), 0);
    } else if (i % 3 == 1) {
      weft_ctx *ps[] = {other, prev};
      cr_assert_eq(weft_ctx_with_parents(ps, 2, &c, &c_cancel), 0);
    } else {
      cr_assert_eq(weft_ctx_with_value(prev, &other, NULL, NULL, &c), 0);
    }
    weft_ctx_release(prev); /* the chain holds it */
    prev = c;
  }
  lookup_arg a = {.top = prev};
  on_small_stack(lookup_top, &a);
  cr_assert(a.found);
  cr_assert_eq(a.val, &payload);
  cr_assert(!a.missing_found);
  deep d = {.chain = &prev, .n = 1, .root = NULL, .freed_by_top = (size_t)n + 1};
  on_small_stack(release_bottom_up, &d);
  weft_ctx_release(other);
  cr_assert_eq(weft_ctx_live_count(), live);
}

WEFT_TEST(ctx_deep, lookup_order_and_shadowing_with_multi_parents) {
  /* The explicit stack keeps Go's order: each parent with all its ancestors before the next parent. */
  static const char k;
  weft_ctx *a, *a2, *b, *m, *top;
  weft_cancel *m_cancel = NULL;
  weft_cancel *a2_cancel = NULL;
  cr_assert_eq(weft_ctx_with_value(weft_background(), &k, "a", NULL, &a), 0);
  cr_assert_eq(weft_ctx_with_cancel(a, &a2, &a2_cancel), 0);
  cr_assert_eq(weft_ctx_with_value(weft_background(), &k, "b", NULL, &b), 0);
  weft_ctx *ps[] = {a2, b};
  cr_assert_eq(weft_ctx_with_parents(ps, 2, &m, &m_cancel), 0);
  cr_assert_str_eq(weft_ctx_value(m, &k), "a");
  weft_ctx *ps2[] = {b, a2};
  weft_ctx *m2;
  weft_cancel *m2_cancel = NULL;
  cr_assert_eq(weft_ctx_with_parents(ps2, 2, &m2, &m2_cancel), 0);
  cr_assert_str_eq(weft_ctx_value(m2, &k), "b");
  cr_assert_eq(weft_ctx_with_value(m, &k, "top", NULL, &top), 0);
  cr_assert_str_eq(weft_ctx_value(top, &k), "top");
  weft_ctx_release(top);
  weft_ctx_end(m2_cancel);
  weft_ctx_end(m_cancel);
  weft_ctx_release(b);
  weft_ctx_end(a2_cancel);
  weft_ctx_release(a);
}
