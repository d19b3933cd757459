/* lib/ctx/ctx.c: deriving, cancelling and releasing contexts (design notes in ctx_impl.h).
 *
 * Nothing here recurses, so no chain of contexts, however deep, can overflow the stack:
 * - Cancel walks the subtree iteratively: it pops a child off the current node's list, locks it, marks it
 *   done and descends, reusing the child's `next` field as the way back up. Multi-parent children found on
 *   the way are retained and their nodes (the cbnodes they registered, now off the parent's list) are
 *   pushed on one pending list; once every lock is dropped, one loop cancels them, and their own multi
 *   children join the same list. The list is intrusive, so a cancel allocates nothing and cannot fail.
 *   After-funcs are handed to the callback thread in one batch at the end.
 * - The final release frees the context, then drops the references it held (its parent, a multi's other
 *   parents); a context whose count reaches zero that way is unlinked and put on a to-do list linked
 *   through a field no longer in use (dlink()), instead of being destroyed by a nested call.
 * - Value lookup keeps an explicit stack of the multi-parent contexts whose later parents are still to be
 *   searched (on the C stack while small, then on the heap). */
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>

#include "ctx/ctx_impl.h"

/* ---- roots -------------------------------------------------------------------------------------- */

#define WEFT__ROOT_INIT                                                                            \
  {                                                                                                \
    .refs = 1, .kind = WEFT__K_ROOT, .flags = WEFT__F_STATIC, .u.c.deadline = WEFT_FOREVER         \
  }
static weft_ctx root_background = WEFT__ROOT_INIT;
static weft_ctx root_todo = WEFT__ROOT_INIT;

weft_ctx *weft_background(void) { return &root_background; }
weft_ctx *weft_todo(void) { return &root_todo; }

const char *weft__kind_name(int kind) {
  static const char *const names[] = {"root", "cancel", "deadline", "multi", "signal", "value", "without-cancel",
                                      "freed"};
  return (kind >= 0 && kind <= WEFT__K_FREED) ? names[kind] : "?";
}

static uint32_t coarse_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

/* A fresh context of `kind` derived from `parent` (retained). */
static weft_ctx *ctx_new(int kind, weft_ctx *parent, void *creator) {
  weft_ctx *c = weft__ctx_alloc();
  if (c == NULL) return NULL;
  atomic_store_explicit(&c->err, 0, memory_order_relaxed);
  c->cause = 0;
  atomic_store_explicit(&c->refs, 1, memory_order_relaxed);
  c->kind = (uint8_t)kind;
  c->flags = 0;
  c->timer_off = 0;
  c->born_ms = coarse_ms(); /* one clock for every kind, so ages in a dump compare */
  c->heap_idx = 0;
  atomic_store_explicit(&c->lock.locked, 0, memory_order_relaxed);
  atomic_store_explicit(&c->wake, 0, memory_order_relaxed);
  c->parent = weft_ctx_retain(parent);
  c->ext = NULL;
  memset(&c->u, 0, sizeof c->u);
  if (WEFT__UNLIKELY(weft__leaks_on)) weft__leak_track(c, creator);
  return c;
}

weft__ext *weft__ext_get(weft_ctx *c) {
  if (c->ext == NULL) {
    weft__ext *e = calloc(1, sizeof *e);
    if (e == NULL) return NULL;
    e->efd = -1;
    c->ext = e;
  }
  return c->ext;
}

/* ---- reference counting -------------------------------------------------------------------------- */

weft_ctx *weft_ctx_retain(weft_ctx *c) {
  if (c == NULL || (c->flags & WEFT__F_STATIC)) return c;
  uint32_t old = atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
  if (WEFT__UNLIKELY(old == 0 || c->kind == WEFT__K_FREED))
    weft__panic(__FILE__, __LINE__, "weft_ctx_retain on a context already released");
  return c;
}

bool weft__try_retain(weft_ctx *c) {
  if (c->flags & WEFT__F_STATIC) return true;
  uint32_t r = atomic_load_explicit(&c->refs, memory_order_relaxed);
  while (r != 0)
    if (atomic_compare_exchange_weak_explicit(&c->refs, &r, r + 1, memory_order_acquire, memory_order_relaxed))
      return true;
  return false;
}

static void unlink_from_parent(weft_ctx *c);
static void multi_deregister(weft_ctx *c);

/* The to-do link of a context whose count reached zero: a cancellable one is off its parent's list by then
 * (unlinked before it is queued), so its sibling link is free; a value or without-cancel context no longer
 * needs its `src`. */
static weft_ctx **dlink(weft_ctx *c) { return weft__has_cancel(c) ? &c->u.c.next : &c->u.v.src; }

/* Drops a reference held by a context being destroyed; queues p on *doomed when it was the last. */
static void drop_held(weft_ctx *p, weft_ctx **doomed) {
  if (p == NULL || (p->flags & WEFT__F_STATIC)) return;
  uint32_t old = atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel);
  if (WEFT__UNLIKELY(old == 0)) weft__panic(__FILE__, __LINE__, "context reference count underflow");
  if (old != 1) return;
  /* Unlink first: taking the parent's lock waits out any cancel walking through p. */
  if (weft__has_cancel(p)) unlink_from_parent(p);
  *dlink(p) = *doomed;
  *doomed = p;
}

/* Frees c and, iteratively, each context whose last reference c (or one freed after it) held. `unlinked`
 * says c's own cancel ran to completion in this thread, unlinking c under its parent's lock: no cancel
 * walk can be inside c or reach it any more, so the parent's lock need not be taken again. */
static void ctx_destroy(weft_ctx *c, bool unlinked) {
  weft_ctx *doomed = NULL;
  for (;;) {
    if (c == NULL) {
      if (doomed == NULL) return;
      c = doomed;
      doomed = *dlink(c);
      unlinked = true; /* drop_held() unlinked it */
    }
    weft_ctx *parent = c->parent;
    if (weft__has_cancel(c)) {
      /* Unlink first: taking the parent's lock waits out any cancel walking through c. */
      if (!unlinked) unlink_from_parent(c);
      if (c->kind == WEFT__K_DEADLINE && !c->timer_off) weft__timer_disarm(c);
      if (c->kind == WEFT__K_MULTI) multi_deregister(c);
      if (c->kind == WEFT__K_SIGNAL) weft__signal_forget(c);
    } else if (c->kind == WEFT__K_VALUE && c->u.v.dtor) {
      c->u.v.dtor(c->u.v.val);
    }
    unlinked = false;
    if (WEFT__UNLIKELY(weft__leaks_on)) weft__leak_untrack(c);
    weft__ext *e = c->ext;
    weft_ctx **extra = NULL; /* a multi's other parents, released once c is freed */
    uint32_t nextra = 0;
    if (e != NULL) {
      WEFT__ASSERT(e->cbs == NULL); /* pending after-funcs hold a reference */
      if (e->parents && e->nparents > 1) {
        extra = e->parents;
        nextra = e->nparents;
        e->parents = NULL;
      }
      weft__ext_free(e);
    }
    weft__ctx_free(c);
    c = NULL;
    for (uint32_t i = 1; i < nextra; i++) drop_held(extra[i], &doomed);
    free(extra);
    drop_held(parent, &doomed);
  }
}

/* A use of a context already freed: says which call, what the context was and whether WEFT_DEBUG_REFS is
 * on (with it every such use is caught; without it only those before the slot is reused), then aborts. */
__attribute__((cold, noreturn)) static void released_twice(const weft_ctx *c, const char *call, int line) {
  if (weft__debug_refs)
    fprintf(stderr, "weft: %s on context %p (a %s context), which was already released: double release "
            "(caught by WEFT_DEBUG_REFS)\n", call, (const void *)c, weft__kind_name(c->spare));
  else
    fprintf(stderr, "weft: %s on context %p, which was already released: double release (run with "
            "WEFT_DEBUG_REFS=1 to catch it even after the memory is reused)\n", call, (const void *)c);
  weft__panic(__FILE__, line, "a context released more often than it was retained");
}

void weft_ctx_release(weft_ctx *c) {
  if (c == NULL || (c->flags & WEFT__F_STATIC)) return;
  if (WEFT__UNLIKELY(c->kind == WEFT__K_FREED)) released_twice(c, "weft_ctx_release", __LINE__);
  uint32_t old = atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel);
  if (WEFT__UNLIKELY(old == 0)) released_twice(c, "weft_ctx_release", __LINE__);
  if (old == 1) ctx_destroy(c, false);
}

/* ---- linking ------------------------------------------------------------------------------------- */

static void kids_push(weft_ctx *p, weft_ctx *c) {
  c->u.c.next = p->u.c.kids;
  if (c->u.c.next) c->u.c.next->u.c.pprev = &c->u.c.next;
  p->u.c.kids = c;
  c->u.c.pprev = &p->u.c.kids;
}

static void kids_unlink(weft_ctx *c) {
  *c->u.c.pprev = c->u.c.next;
  if (c->u.c.next) c->u.c.next->u.c.pprev = c->u.c.pprev;
  c->u.c.pprev = NULL;
  c->u.c.next = NULL;
}

static void cb_push(weft__ext *e, weft__cbnode *n) {
  n->next = e->cbs;
  if (n->next) n->next->pprev = &n->next;
  e->cbs = n;
  n->pprev = &e->cbs;
}

static void cb_unlink(weft__cbnode *n) {
  *n->pprev = n->next;
  if (n->next) n->next->pprev = n->pprev;
  n->pprev = NULL;
  n->next = NULL;
}

/* The context c registers with for cancellation: the cancellation source of its parent. */
static weft_ctx *cancel_parent(const weft_ctx *c) { return c->parent ? weft__src(c->parent) : NULL; }

static void unlink_from_parent(weft_ctx *c) {
  if (c->kind == WEFT__K_MULTI) return; /* registered through cbnodes instead */
  weft_ctx *p = cancel_parent(c);
  if (p == NULL || p->kind == WEFT__K_ROOT) return;
  weft__lock(p);
  if (c->u.c.pprev != NULL) kids_unlink(c);
  weft__unlock(p);
}

static void multi_deregister(weft_ctx *c) {
  weft__ext *e = c->ext;
  if (e == NULL || e->regs == NULL) return;
  for (uint32_t i = 0; i < e->nparents; i++) {
    weft__cbnode *n = &e->regs[i];
    weft_ctx *p = n->on;
    if (p == NULL) continue;
    weft__lock(p);
    if (n->pprev != NULL) cb_unlink(n);
    weft__unlock(p);
  }
}

/* ---- cancellation -------------------------------------------------------------------------------- */

/* First half of ending c (c locked, c live): records the cause, stops the timer and collects c's callback
 * nodes onto *pending (multi children retained, dying ones skipped). The error itself is published by
 * notify() once c's whole subtree is done, so whoever sees c done — by polling weft_ctx_err() or by being
 * woken — finds every descendant of c done too. c stays locked in between, so nothing can be derived from
 * it meanwhile. */
static void mark_done(weft_ctx *c, int cause, weft__cbnode **pending) {
  atomic_store_explicit(&c->err, WEFT__ERR_ENDING, memory_order_relaxed); /* before any descendant is published */
  c->cause = cause;
  if (c->kind == WEFT__K_DEADLINE) {
    weft__timer_disarm(c);
    c->timer_off = 1;
  }
  weft__ext *e = c->ext;
  if (e == NULL) return;
  while (e->cbs) {
    weft__cbnode *n = e->cbs;
    cb_unlink(n);
    if (n->type == WEFT__CB_MULTI && !weft__try_retain(n->owner)) continue; /* dying: it deregisters itself */
    n->next = *pending;
    *pending = n;
  }
}

/* Second half (c locked, its subtree done): publishes err and wakes whatever waits on c. */
static void notify(weft_ctx *c, int err) {
  atomic_store(&c->err, err);
  uint32_t w = atomic_load(&c->wake);
  if (w & WEFT__WORD_SLEEPERS) {
    atomic_fetch_add(&c->wake, WEFT__WORD_STEP);
    weft__futex_wake(&c->wake, INT_MAX, FUTEX_BITSET_MATCH_ANY);
  }
  if (c->ext != NULL && c->ext->efd >= 0) {
    uint64_t one = 1;
    ssize_t r = write(c->ext->efd, &one, sizeof one);
    (void)r;
  }
}

/* Ends root and its cancellation subtree; the multi children and after-funcs met are pushed on *pending.
 * Returns true when this call ended root. */
static bool cancel_walk(weft_ctx *root, int err, int cause, bool from_timer, weft__cbnode **pending) {
  weft__lock(root);
  if (atomic_load_explicit(&root->err, memory_order_relaxed) != 0) {
    weft__unlock(root);
    return false;
  }
  if (from_timer && root->cause != 0) cause = root->cause; /* a *_cause deadline */
  mark_done(root, cause, pending);
  /* Depth-first over the cancellation subtree, holding the locks along the path. */
  weft_ctx *cur = root;
  for (;;) {
    weft_ctx *k = cur->u.c.kids;
    if (k != NULL) {
      kids_unlink(k);
      weft__lock(k);
      if (atomic_load_explicit(&k->err, memory_order_relaxed) != 0) { /* cancelled on its own already */
        weft__unlock(k);
        continue;
      }
      mark_done(k, cause, pending);
      k->u.c.next = cur; /* the way back up */
      cur = k;
      continue;
    }
    if (cur == root) break;
    weft_ctx *up = cur->u.c.next;
    cur->u.c.next = NULL;
    notify(cur, err);
    weft__unlock(cur);
    cur = up;
  }
  notify(root, err);
  weft__unlock(root);
  unlink_from_parent(root);
  if (root->kind == WEFT__K_MULTI) multi_deregister(root);
  return true;
}

bool weft__cancel(weft_ctx *root, int err, int cause, bool from_timer) {
  weft__cbnode *pending = NULL;
  bool ended = cancel_walk(root, err, cause, from_timer, &pending);
  /* Multi-parent children are cancelled here, one after the other, with the cause root was given; theirs
   * join the same list. */
  int mcause = cause;
  if (ended && from_timer && root->cause != 0) mcause = root->cause;
  weft__cbnode *afters = NULL;
  while (pending) {
    weft__cbnode *n = pending;
    pending = n->next;
    if (n->type == WEFT__CB_MULTI) {
      weft_ctx *m = n->owner;
      cancel_walk(m, err, mcause, false, &pending);
      weft_ctx_release(m);
    } else {
      n->next = afters;
      afters = n;
    }
  }
  if (afters) weft__after_fire(afters);
  return ended;
}

/* A weft_cancel * is the context's own address under a type that only the cancel calls accept. */
static inline weft_ctx *cancel_target(weft_cancel *k) { return (weft_ctx *)(void *)k; }

int weft_ctx_cancel_cause(weft_cancel *k, int cause) {
  weft_ctx *c = cancel_target(k);
  if (c == NULL || cause > 0) return WEFT_EINVAL;
  if (!weft__has_cancel(c) || c->kind == WEFT__K_ROOT) return WEFT_EINVAL;
  weft__cancel(c, WEFT_ECANCELED, cause ? cause : WEFT_ECANCELED, false);
  return 0;
}

int weft_ctx_cancel(weft_cancel *k) { return weft_ctx_cancel_cause(k, 0); }

void weft_ctx_end(weft_cancel *k) { weft__ctx_end(cancel_target(k)); }

void weft__ctx_end(weft_ctx *c) {
  if (c == NULL || (c->flags & WEFT__F_STATIC)) return;
  /* A signal context stops listening now, as Go's stop() does: the signal thread may still hold a
   * reference while it cancels, and the disposition must be restored by the time end returns, not when
   * that reference goes (the final release calls forget again: a no-op). */
  if (c->kind == WEFT__K_SIGNAL) weft__signal_forget(c);
  bool unlinked = weft__has_cancel(c) && weft__cancel(c, WEFT_ECANCELED, WEFT_ECANCELED, false) &&
                  c->kind != WEFT__K_MULTI && c->kind != WEFT__K_SIGNAL;
  if (WEFT__UNLIKELY(c->kind == WEFT__K_FREED)) released_twice(c, "weft_ctx_end", __LINE__);
  uint32_t old = atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel);
  if (WEFT__UNLIKELY(old == 0)) released_twice(c, "weft_ctx_end", __LINE__);
  if (old == 1) ctx_destroy(c, unlinked);
}

/* ---- derivations --------------------------------------------------------------------------------- */

/* Links a new cancellable child under its cancellation parent, or marks it done at once when the parent
 * is already done. Returns true when the child was born done. */
static bool attach(weft_ctx *c) {
  weft_ctx *p = cancel_parent(c);
  if (p->kind == WEFT__K_ROOT) return false;
  weft__lock(p);
  int perr = atomic_load_explicit(&p->err, memory_order_relaxed);
  if (perr == 0) {
    kids_push(p, c);
    weft__unlock(p);
    return false;
  }
  int pcause = p->cause;
  weft__unlock(p);
  c->cause = pcause;
  atomic_store(&c->err, perr);
  return true;
}

/* `now` is the current time when the caller already read it (a timeout), or -1. */
static int derive_cancel(weft_ctx *parent, int64_t deadline, int64_t now, int dcause, int kind, weft_ctx **out,
                         weft_cancel **cancel, void *creator) {
  if (out) *out = NULL;
  if (cancel) *cancel = NULL;
  if (out == NULL || cancel == NULL || parent == NULL || dcause > 0) return WEFT_EINVAL;
  int64_t pdl = weft__src(parent)->u.c.deadline;
  bool timer = deadline < pdl;
  if (timer && now < 0) now = weft_now();
  weft_ctx *c = ctx_new(timer ? WEFT__K_DEADLINE : kind, parent, creator);
  if (c == NULL) return WEFT_ENOMEM;

  c->u.c.deadline = timer ? deadline : pdl;
  c->cause = timer ? dcause : 0; /* before attach: a cancel may reach c as soon as it is linked */
  if (attach(c) || !timer) goto done;
  if (deadline <= now) {
    weft__cancel(c, WEFT_EDEADLINE, WEFT_EDEADLINE, true);
  } else {
    int rc = weft__timer_arm(c);
    if (rc != 0) {
      weft__ctx_end(c);
      return rc;
    }
    /* A cancel that ran before the timer was armed disarmed nothing: take it off again. */
    if (atomic_load(&c->err) != 0) weft__timer_disarm(c);
  }
done:
  *out = c;
  *cancel = (weft_cancel *)(void *)c;
  return 0;
}

int weft_ctx_with_cancel(weft_ctx *parent, weft_ctx **out, weft_cancel **cancel) {
  return derive_cancel(parent, WEFT_FOREVER, -1, 0, WEFT__K_CANCEL, out, cancel, __builtin_return_address(0));
}
int weft_ctx_with_deadline(weft_ctx *parent, int64_t deadline, weft_ctx **out, weft_cancel **cancel) {
  return derive_cancel(parent, deadline, -1, 0, WEFT__K_CANCEL, out, cancel, __builtin_return_address(0));
}
/* One clock read for a timeout: the deadline and the birth time come from it. */
static int derive_timeout(weft_ctx *parent, int64_t timeout, int cause, weft_ctx **out, weft_cancel **cancel,
                          void *creator) {
  int64_t now = weft_now();
  int64_t deadline = timeout == WEFT_FOREVER ? WEFT_FOREVER
                     : (timeout > 0 && now > WEFT_FOREVER - timeout) ? WEFT_FOREVER
                                                                     : now + timeout;
  return derive_cancel(parent, deadline, now, cause, WEFT__K_CANCEL, out, cancel, creator);
}

int weft_ctx_with_timeout(weft_ctx *parent, int64_t timeout, weft_ctx **out, weft_cancel **cancel) {
  return derive_timeout(parent, timeout, 0, out, cancel, __builtin_return_address(0));
}
int weft_ctx_with_deadline_cause(weft_ctx *parent, int64_t deadline, int cause, weft_ctx **out,
                                 weft_cancel **cancel) {
  return derive_cancel(parent, deadline, -1, cause, WEFT__K_CANCEL, out, cancel, __builtin_return_address(0));
}
int weft_ctx_with_timeout_cause(weft_ctx *parent, int64_t timeout, int cause, weft_ctx **out,
                                weft_cancel **cancel) {
  return derive_timeout(parent, timeout, cause, out, cancel, __builtin_return_address(0));
}

int weft__ctx_with_signal_kind(weft_ctx *parent, weft_ctx **out, weft_cancel **cancel) {
  return derive_cancel(parent, WEFT_FOREVER, -1, 0, WEFT__K_SIGNAL, out, cancel, __builtin_return_address(0));
}

int weft_ctx_with_value(weft_ctx *parent, const void *key, void *value, void (*dtor)(void *),
                        weft_ctx **out) {
  if (out) *out = NULL;
  if (parent == NULL || key == NULL || out == NULL) {
    if (dtor) dtor(value);
    return WEFT_EINVAL;
  }
  weft_ctx *c = ctx_new(WEFT__K_VALUE, parent, __builtin_return_address(0));
  if (c == NULL) {
    if (dtor) dtor(value);
    return WEFT_ENOMEM;
  }
  c->u.v.key = key;
  c->u.v.val = value;
  c->u.v.dtor = dtor;
  c->u.v.src = weft__src(parent);
  *out = c;
  return 0;
}

int weft_ctx_without_cancel(weft_ctx *parent, weft_ctx **out) {
  if (out) *out = NULL;
  if (parent == NULL || out == NULL) return WEFT_EINVAL;
  weft_ctx *c = ctx_new(WEFT__K_WITHOUT, parent, __builtin_return_address(0));
  if (c == NULL) return WEFT_ENOMEM;
  c->u.v.src = &root_background;
  *out = c;
  return 0;
}

int weft_ctx_with_parents(weft_ctx *const *parents, size_t n, weft_ctx **out, weft_cancel **cancel) {
  if (out) *out = NULL;
  if (cancel) *cancel = NULL;
  if (parents == NULL || out == NULL || cancel == NULL || n == 0 || n > 64) return WEFT_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (parents[i] == NULL) return WEFT_EINVAL;
  weft_ctx *c = ctx_new(WEFT__K_MULTI, parents[0], __builtin_return_address(0));
  if (c == NULL) return WEFT_ENOMEM;
  weft__ext *e = weft__ext_get(c);
  weft_ctx **ps = e ? calloc(n, sizeof *ps) : NULL;
  weft__cbnode *regs = ps ? calloc(n, sizeof *regs) : NULL;
  if (regs == NULL) {
    free(ps);
    weft_ctx_release(c);
    return WEFT_ENOMEM;
  }
  ps[0] = parents[0]; /* its reference is c->parent's */
  for (size_t i = 1; i < n; i++) ps[i] = weft_ctx_retain(parents[i]);
  e->parents = ps;
  e->regs = regs;
  e->nparents = (uint32_t)n;
  int64_t dl = WEFT_FOREVER;
  for (size_t i = 0; i < n; i++) {
    int64_t d = weft__src(ps[i])->u.c.deadline;
    if (d < dl) dl = d;
  }
  c->u.c.deadline = dl;
  for (size_t i = 0; i < n; i++) {
    weft_ctx *p = weft__src(ps[i]);
    regs[i].type = WEFT__CB_MULTI;
    regs[i].owner = c;
    regs[i].on = p->kind == WEFT__K_ROOT ? NULL : p;
  }
  int derr = 0, dcause = 0;
  for (size_t i = 0; i < n && derr == 0; i++) {
    weft_ctx *p = weft__src(ps[i]);
    if (p->kind == WEFT__K_ROOT) continue;
    weft__lock(p);
    derr = atomic_load_explicit(&p->err, memory_order_relaxed);
    if (derr != 0) {
      dcause = p->cause;
    } else {
      weft__ext *pe = weft__ext_get(p);
      if (pe == NULL) {
        weft__unlock(p);
        weft__ctx_end(c);
        return WEFT_ENOMEM;
      }
      cb_push(pe, &regs[i]);
    }
    weft__unlock(p);
  }
  if (derr != 0) weft__cancel(c, derr, dcause, false);
  *out = c;
  *cancel = (weft_cancel *)(void *)c;
  return 0;
}

/* ---- queries ------------------------------------------------------------------------------------- */

/* s's cancel has started but not yet published its err: its descendants are being published first. The
 * walk holds s's lock from mark_done() to notify(), so taking it waits for the err. */
__attribute__((noinline)) static int err_after_ending(weft_ctx *s) {
  weft__lock(s);
  int e = atomic_load_explicit(&s->err, memory_order_acquire);
  weft__unlock(s);
  return e;
}

int weft_ctx_err(const weft_ctx *c) {
  if (WEFT__UNLIKELY(c == NULL)) return WEFT_EINVAL;
  weft_ctx *s = weft__src(c);
  int e = atomic_load_explicit(&s->err, memory_order_acquire);
  if (WEFT__UNLIKELY(e == WEFT__ERR_ENDING)) return err_after_ending(s);
  return e;
}

bool weft_ctx_done(const weft_ctx *c) { return c != NULL && weft_ctx_err(c) != 0; }

int weft_ctx_cause(const weft_ctx *c) {
  if (c == NULL) return WEFT_EINVAL;
  if (weft_ctx_err(c) == 0) return 0;
  return weft__src(c)->cause;
}

int64_t weft_ctx_deadline(const weft_ctx *c) { return c ? weft__src(c)->u.c.deadline : WEFT_FOREVER; }

_Atomic uint32_t *weft__ctx_wake_word(const weft_ctx *c) {
  weft_ctx *s = weft__src(c);
  return s->kind == WEFT__K_ROOT ? NULL : &s->wake;
}

/* A multi-parent context whose parents from `next` on are still to be searched. */
typedef struct lookup_frame {
  const weft_ctx *m;
  uint32_t next;
} lookup_frame;

#define LOOKUP_INLINE 32

/* The general search, through multi-parent contexts (kept out of the common path's frame). */
__attribute__((noinline)) static bool lookup_multi(const weft_ctx *c, const void *key, void **value) {
  lookup_frame inline_frames[LOOKUP_INLINE];
  lookup_frame *st = inline_frames;
  size_t n = 0, cap = LOOKUP_INLINE;
  bool found = false;
  for (;;) {
    while (c != NULL) {
      if (c->kind == WEFT__K_VALUE && c->u.v.key == key) {
        if (value) *value = c->u.v.val;
        found = true;
        goto out;
      }
      if (c->kind == WEFT__K_MULTI) {
        const weft__ext *e = c->ext;
        if (e->nparents > 1) {
          if (WEFT__UNLIKELY(n == cap)) {
            lookup_frame *bigger = malloc(2 * cap * sizeof *bigger);
            if (bigger == NULL) {
              /* Out of memory: search this context's parents with a nested lookup, which has room on
               * the C stack for its own frames, rather than give a wrong answer. */
              for (uint32_t i = 0; i < e->nparents && !found; i++)
                found = weft_ctx_lookup(e->parents[i], key, value);
              if (found) goto out;
              break;
            }
            memcpy(bigger, st, n * sizeof *st);
            if (st != inline_frames) free(st);
            st = bigger;
            cap *= 2;
          }
          st[n].m = c;
          st[n].next = 1;
          n++;
        }
        c = e->parents[0]; /* parents in the order given, each one's ancestors before the next parent */
        continue;
      }
      c = c->parent;
    }
    if (n == 0) break;
    lookup_frame *f = &st[n - 1];
    const weft__ext *e = f->m->ext;
    c = e->parents[f->next++];
    if (f->next == e->nparents) n--; /* the last parent: nothing left to come back for */
  }
out:
  if (st != inline_frames) free(st);
  return found;
}

bool weft_ctx_lookup(const weft_ctx *c, const void *key, void **value) {
  if (c == NULL || key == NULL) return false;
  /* The common case, a single line of ancestors, walks it directly; the first multi-parent context met
   * hands the rest of the search to lookup_multi(). */
  for (; c != NULL; c = c->parent) {
    if (c->kind == WEFT__K_VALUE && c->u.v.key == key) {
      if (value) *value = c->u.v.val;
      return true;
    }
    if (WEFT__UNLIKELY(c->kind == WEFT__K_MULTI)) return lookup_multi(c, key, value);
  }
  return false;
}

void *weft_ctx_value(const weft_ctx *c, const void *key) {
  void *v = NULL;
  return weft_ctx_lookup(c, key, &v) ? v : NULL;
}
