/* Context stress: concurrent derive/cancel/release in one shared tree, cancel racing timer expiry and
 * release, a million deadlines on one timer thread. Sizes: WEFT_STRESS_THREADS, WEFT_STRESS_ITERS. */
#include <pthread.h>
#include <stdatomic.h>

#include "testing.h"
#include "weft_test.h"


static unsigned xorshift(unsigned *s) {
  *s ^= *s << 13;
  *s ^= *s >> 17;
  *s ^= *s << 5;
  return *s;
}

typedef struct {
  weft_ctx *shared[8];
  long iters;
  unsigned seed;
  _Atomic long *born_done;
} churn_arg;

/* Each thread derives chains under random shared parents, sometimes cancels, sometimes only releases,
 * sometimes waits for a short deadline to fire, and checks what it sees on the way. */
static void *churn(void *p) {
  churn_arg *a = p;
  unsigned s = a->seed;
  for (long i = 0; i < a->iters; i++) {
    weft_ctx *parent = a->shared[xorshift(&s) % 8];
    weft_ctx *c, *g = NULL;
    weft_cancel *c_cancel = NULL;
    weft_cancel *g_cancel = NULL;
    int rc;
    switch (xorshift(&s) % 4) {
      case 0: rc = weft_ctx_with_cancel(parent, &c, &c_cancel); break;
      case 1: rc = weft_ctx_with_timeout(parent, WEFT_US(xorshift(&s) % 200), &c, &c_cancel); break;
      case 2: rc = weft_ctx_with_timeout(parent, WEFT_SEC(3600), &c, &c_cancel); break;
      default: {
        weft_ctx *ps[2] = {parent, a->shared[xorshift(&s) % 8]};
        rc = weft_ctx_with_parents(ps, 2, &c, &c_cancel);
      }
    }
    if (rc != 0) return (void *)1;
    if (weft_ctx_err(c) != 0) atomic_fetch_add(a->born_done, 1);
    if (xorshift(&s) % 2) {
      if (weft_ctx_with_cancel(c, &g, &g_cancel) != 0) return (void *)1;
    }
    switch (xorshift(&s) % 3) {
      case 0:
        weft_ctx_cancel(c_cancel);
        if (g && weft_ctx_err(g) == 0) return (void *)2; /* a child must be done once its parent is */
        break;
      case 1: weft_ctx_wait_until(c, weft_deadline_in(WEFT_US(300))); break;
      default: break; /* release without cancel */
    }
    if (g && weft_ctx_err(c) != 0 && weft_ctx_err(g) == 0) return (void *)3;
    weft_ctx_end(g_cancel);
    if (xorshift(&s) % 2) weft_ctx_end(c_cancel);
    else weft_ctx_release(c);
  }
  return NULL;
}

WEFT_TEST(ctx_stress, shared_tree_churn_balances_to_zero) {
  long threads = weft_test_env("WEFT_STRESS_THREADS", 6);
  long iters = weft_test_env("WEFT_STRESS_ITERS", 60000 / WEFT_TEST_SCALE);
  weft_ctx *root, *shared[8];
  weft_cancel *shared_cancel[8];
  weft_cancel *root_cancel = NULL;
  weft_ctx_with_cancel(weft_background(), &root, &root_cancel);
  for (int i = 0; i < 8; i++) {
    if (i < 4) weft_ctx_with_cancel(root, &shared[i], &shared_cancel[i]);
    else weft_ctx_with_timeout(shared[i - 4], WEFT_SEC(3600), &shared[i], &shared_cancel[i]);
  }
  _Atomic long born_done = 0;
  pthread_t th[threads];
  churn_arg args[threads];
  for (long t = 0; t < threads; t++) {
    args[t] = (churn_arg){.iters = iters, .seed = 0x9e3779b9u * (unsigned)(t + 1), .born_done = &born_done};
    for (int i = 0; i < 8; i++) args[t].shared[i] = shared[i];
    pthread_create(&th[t], NULL, churn, &args[t]);
  }
  /* Midway, cancel one shared subtree while the others keep going. */
  weft_ctx_sleep(weft_background(), WEFT_MS(50));
  weft_ctx_cancel(shared_cancel[1]);
  for (long t = 0; t < threads; t++) {
    void *r;
    pthread_join(th[t], &r);
    cr_assert_null(r, "thread %ld saw a broken invariant (%ld)", t, (long)(intptr_t)r);
  }
  cr_assert_eq(weft_ctx_err(shared[5]), WEFT_ECANCELED, "a grandchild of the cancelled subtree");
  cr_assert_gt(atomic_load(&born_done), 0, "some children were derived from a done parent");
  cr_assert_eq(weft_ctx_live_count(), 9, "only the shared tree is left");
  weft_ctx_cancel(root_cancel);
  for (int i = 0; i < 8; i++) {
    cr_assert_eq(weft_ctx_err(shared[i]), WEFT_ECANCELED);
    weft_ctx_end(shared_cancel[i]);
  }
  weft_ctx_end(root_cancel);
  cr_assert_eq(weft_ctx_live_count(), 0, "counts balance to zero");
  cr_assert_leq(weft__timer_threads(), 1);
}

/* Cancel racing timer expiry racing release, on the same contexts. */
typedef struct {
  weft_ctx *_Atomic *slots;
  weft_cancel **cancels; /* written before the slot is published: the creator hands the racer the right */
  long n;
  int role;
} race_arg;

static void *racer(void *p) {
  race_arg *a = p;
  for (long i = 0; i < a->n; i++) {
    weft_ctx *c;
    while ((c = atomic_load(&a->slots[i])) == NULL) sched_yield();
    if (a->role == 0) weft_ctx_cancel(a->cancels[i]);
    else weft_ctx_wait_until(c, weft_deadline_in(WEFT_US(20)));
    weft_ctx_release(c);
  }
  return NULL;
}

WEFT_TEST(ctx_stress, cancel_races_timer_and_release) {
  long n = weft_test_env("WEFT_STRESS_ITERS", 40000 / WEFT_TEST_SCALE);
  weft_ctx *root;
  weft_cancel *root_cancel = NULL;
  weft_ctx_with_cancel(weft_background(), &root, &root_cancel);
  weft_ctx *_Atomic *slots = calloc((size_t)n, sizeof *slots);
  weft_cancel **cancels = calloc((size_t)n, sizeof *cancels);
  pthread_t th[2];
  race_arg ra[2] = {{slots, cancels, n, 0}, {slots, cancels, n, 1}};
  for (int t = 0; t < 2; t++) pthread_create(&th[t], NULL, racer, &ra[t]);
  long expired = 0, canceled = 0;
  for (long i = 0; i < n; i++) {
    weft_ctx *c;
    weft_cancel *c_cancel = NULL;
    cr_assert_eq(weft_ctx_with_timeout(root, WEFT_US(i % 50), &c, &c_cancel), 0);
    weft_ctx_retain(c);
    weft_ctx_retain(c);
    cancels[i] = c_cancel;
    atomic_store(&slots[i], c); /* the two racers each own one reference */
    int e = weft_ctx_wait_until(c, WEFT_FOREVER);
    cr_assert(e == WEFT_EDEADLINE || e == WEFT_ECANCELED);
    if (e == WEFT_EDEADLINE) expired++;
    else canceled++;
    weft_ctx_release(c);
  }
  for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
  cr_assert_gt(expired + canceled, 0);
  free(slots);
  free(cancels);
  weft_ctx_end(root_cancel);
  cr_assert_eq(weft_ctx_live_count(), 0);
  cr_log_info("expired %ld canceled %ld", expired, canceled);
}

WEFT_TEST(ctx_stress, a_million_deadlines_one_timer_thread) {
  long n = weft_test_env("WEFT_STRESS_CTX", 1000000 / WEFT_TEST_SCALE);
  weft_ctx *root;
  weft_cancel *root_cancel = NULL;
  weft_ctx_with_cancel(weft_background(), &root, &root_cancel);
  weft_ctx **all = malloc((size_t)n * sizeof *all);
  weft_cancel **all_cancel = malloc((size_t)n * sizeof *all_cancel);
  for (long i = 0; i < n; i++) cr_assert_eq(weft_ctx_with_timeout(root, WEFT_SEC(3600) + i, &all[i], &all_cancel[i]), 0);
  cr_assert_eq(weft_ctx_live_count(), (size_t)n + 1);
  cr_assert_eq(weft__timer_threads(), 1, "one timer thread serves every deadline");
  for (long i = 0; i < n; i += 2) weft_ctx_end(all_cancel[i]); /* half cancelled one by one */
  weft_ctx_cancel(root_cancel);                                   /* the rest through the tree */
  for (long i = 1; i < n; i += 2) {
    cr_assert_eq(weft_ctx_err(all[i]), WEFT_ECANCELED);
    weft_ctx_release(all[i]);
  }
  free(all);
  free(all_cancel);
  weft_ctx_end(root_cancel);
  cr_assert_eq(weft_ctx_live_count(), 0);
  cr_assert_eq(weft__timer_threads(), 1);
}

typedef struct {
  weft_ctx *root;
  _Atomic int *ok;
} watch_arg;

static void *watch_subtree(void *p) {
  watch_arg *w = p;
  weft_ctx_wait_until(w->root, WEFT_FOREVER);
  return NULL;
}

WEFT_TEST(ctx_stress, waking_waiter_sees_whole_subtree_done) {
  enum { KIDS = 300, GRAND = 10 };
  for (int round = 0; round < 20; round++) {
    weft_ctx *root, *kids[KIDS], *grand[KIDS][GRAND];
    weft_cancel *kids_cancel[KIDS];
    weft_cancel *grand_cancel[KIDS][GRAND];
    weft_cancel *root_cancel = NULL;
    weft_ctx_with_cancel(weft_background(), &root, &root_cancel);
    for (int i = 0; i < KIDS; i++) {
      weft_ctx_with_cancel(root, &kids[i], &kids_cancel[i]);
      for (int j = 0; j < GRAND; j++) weft_ctx_with_cancel(kids[i], &grand[i][j], &grand_cancel[i][j]);
    }
    pthread_t th;
    watch_arg w = {root, NULL};
    pthread_create(&th, NULL, watch_subtree, &w);
    weft_ctx_cancel(root_cancel);
    pthread_join(th, NULL);
    /* Also from the observer's side: poll until the root is done, then everything must be. */
    for (int i = 0; i < KIDS; i++)
      for (int j = 0; j < GRAND; j++) cr_assert_eq(weft_ctx_err(grand[i][j]), WEFT_ECANCELED);
    for (int i = 0; i < KIDS; i++) {
      for (int j = 0; j < GRAND; j++) weft_ctx_end(grand_cancel[i][j]);
      weft_ctx_end(kids_cancel[i]);
    }
    weft_ctx_end(root_cancel);
  }
  cr_assert_eq(weft_ctx_live_count(), 0);
}

typedef struct {
  weft_ctx *root;
  weft_ctx **nodes;
  int n;
  _Atomic int bad;
} poll_arg;

static void *poll_root(void *p) {
  poll_arg *a = p;
  while (weft_ctx_err(a->root) == 0) sched_yield();
  for (int i = 0; i < a->n; i++)
    if (weft_ctx_err(a->nodes[i]) == 0) atomic_store(&a->bad, 1);
  return NULL;
}

WEFT_TEST(ctx_stress, polling_observer_sees_whole_subtree_done) {
  enum { N = 2000 };
  for (int round = 0; round < 20; round++) {
    weft_ctx *root, *nodes[N];
    weft_cancel *nodes_cancel[N];
    weft_cancel *root_cancel = NULL;
    weft_ctx_with_cancel(weft_background(), &root, &root_cancel);
    for (int i = 0; i < N; i++) weft_ctx_with_cancel(i < 100 ? root : nodes[i % 100], &nodes[i], &nodes_cancel[i]);
    poll_arg a = {root, nodes, N, 0};
    pthread_t th;
    pthread_create(&th, NULL, poll_root, &a);
    weft_ctx_cancel(root_cancel);
    pthread_join(th, NULL);
    cr_assert_eq(atomic_load(&a.bad), 0, "a descendant was still live after its ancestor reported done");
    for (int i = N - 1; i >= 0; i--) weft_ctx_end(nodes_cancel[i]);
    weft_ctx_end(root_cancel);
  }
}

/* The converse, Go's order: a context seen done because an ancestor was cancelled (or its deadline
 * fired) has that ancestor, and every context between them, seen done too. The observer polls the leaves
 * while the canceller walks the tree; the root is published last by the walk, so without the guarantee
 * the first leaf seen done comes with a live root almost every round. */
typedef struct {
  weft_ctx *root, *mid;
  weft_ctx **leaves;
  int n;
  _Atomic int go;
  int bad_root, bad_mid, seen; /* read after join */
} leaf_arg;

static void *poll_leaves(void *p) {
  leaf_arg *a = p;
  while (!atomic_load(&a->go)) sched_yield();
  for (;;) {
    for (int i = 0; i < a->n; i++) {
      if (weft_ctx_err(a->leaves[i]) == 0) continue;
      a->seen = i + 1;
      if (weft_ctx_err(a->mid) == 0) a->bad_mid = 1;
      if (weft_ctx_err(a->root) == 0 || weft_ctx_cause(a->root) == 0) a->bad_root = 1;
      return NULL;
    }
  }
}

WEFT_TEST(ctx_stress, observer_of_a_done_leaf_sees_its_ancestors_done) {
  long rounds = weft_test_env("WEFT_STRESS_ITERS", 400 / WEFT_TEST_SCALE);
  enum { N = 512 };
  int bad_root = 0, bad_mid = 0;
  for (long round = 0; round < rounds; round++) {
    bool timer = round % 2; /* odd rounds: the root's deadline ends it, on the timer thread */
    weft_ctx *root, *mid, *leaves[N];
    weft_cancel *root_cancel, *mid_cancel, *leaves_cancel[N];
    cr_assert_eq(timer ? weft_ctx_with_timeout(weft_background(), WEFT_MS(2), &root, &root_cancel)
                       : weft_ctx_with_cancel(weft_background(), &root, &root_cancel), 0);
    cr_assert_eq(weft_ctx_with_cancel(root, &mid, &mid_cancel), 0);
    for (int i = 0; i < N; i++) cr_assert_eq(weft_ctx_with_cancel(mid, &leaves[i], &leaves_cancel[i]), 0);
    leaf_arg a = {.root = root, .mid = mid, .leaves = leaves, .n = N};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, poll_leaves, &a), 0);
    atomic_store(&a.go, 1);
    if (!timer) weft_ctx_cancel(root_cancel);
    pthread_join(th, NULL);
    cr_assert_gt(a.seen, 0);
    bad_root += a.bad_root, bad_mid += a.bad_mid;
    cr_assert_eq(weft_ctx_wait_until(root, WEFT_FOREVER), timer ? WEFT_EDEADLINE : WEFT_ECANCELED);
    for (int i = 0; i < N; i++) weft_ctx_end(leaves_cancel[i]);
    weft_ctx_end(mid_cancel);
    weft_ctx_end(root_cancel);
  }
  cr_assert_eq(bad_root + bad_mid, 0, "a leaf was seen done with its root live in %d of %ld rounds, its parent in %d",
               bad_root, rounds, bad_mid);
}

WEFT_TEST(ctx_stress, deep_chain_cancel_does_not_recurse) {
  long n = 200000 / WEFT_TEST_SCALE;
  weft_ctx **chain = malloc((size_t)n * sizeof *chain);
  weft_cancel **chain_cancel = malloc((size_t)n * sizeof *chain_cancel);
  weft_ctx *p = weft_background();
  for (long i = 0; i < n; i++) {
    weft_ctx_with_cancel(p, &chain[i], &chain_cancel[i]);
    p = chain[i];
  }
  weft_ctx_cancel(chain_cancel[0]);
  cr_assert_eq(weft_ctx_err(chain[n - 1]), WEFT_ECANCELED);
  for (long i = n - 1; i >= 0; i--) weft_ctx_end(chain_cancel[i]);
  /* and released leaf-last without cancel: freeing a long chain must not recurse either */
  p = weft_background();
  for (long i = 0; i < n; i++) {
    weft_ctx_with_cancel(p, &chain[i], &chain_cancel[i]);
    p = chain[i];
  }
  for (long i = 0; i < n - 1; i++) weft_ctx_release(chain[i]);
  weft_ctx_release(chain[n - 1]);
  free(chain);
  free(chain_cancel);
  cr_assert_eq(weft_ctx_live_count(), 0);
}

static void *short_lived(void *p) {
  weft_ctx *parent = p, *c;
  weft_cancel *c_cancel = NULL;
  for (int i = 0; i < 50; i++) {
    if (weft_ctx_with_timeout(parent, WEFT_SEC(60), &c, &c_cancel) != 0) return (void *)1;
    weft_ctx_end(c_cancel);
  }
  if (weft_ctx_with_cancel(parent, &c, &c_cancel) != 0) return (void *)1;
  return c; /* released by the main thread after this thread exited */
}

WEFT_TEST(ctx_stress, short_lived_threads_recycle_caches) {
  weft_ctx *root;
  weft_cancel *root_cancel = NULL;
  weft_ctx_with_cancel(weft_background(), &root, &root_cancel);
  for (int round = 0; round < 200 / WEFT_TEST_SCALE; round++) {
    pthread_t th[4];
    for (int t = 0; t < 4; t++) pthread_create(&th[t], NULL, short_lived, root);
    for (int t = 0; t < 4; t++) {
      void *c;
      pthread_join(th[t], &c);
      cr_assert_neq(c, (void *)1);
      weft_ctx_end(c);
    }
  }
  weft_ctx_end(root_cancel);
  cr_assert_eq(weft_ctx_live_count(), 0, "counts survive their threads");
}
