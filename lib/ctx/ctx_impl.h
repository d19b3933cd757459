/* lib/ctx/ctx_impl.h: the context's layout and the internal calls shared by ctx*.c, timer.c and signal.c.
 *
 * Design notes (the invariants every ctx file relies on).
 * - Memory. Contexts come from a per-thread slab cache (ctx_alloc.c) and are never returned to the
 *   system: the memory is type-stable. A thread that touches a context after it was freed (a late futex
 *   wake on its wake word) can only cause a spurious wake-up. Lifetime is still governed by the reference count. With
 *   WEFT_DEBUG_REFS=1 a freed context is poisoned and never handed out again (ctx_alloc.c).
 * - Cancellation source. A context either has a cancel of its own (kinds CANCEL, DEADLINE, MULTI, SIGNAL,
 *   and the roots, which simply never fire) or shares the one of an ancestor (VALUE, WITHOUT, whose `src`
 *   points at it; WITHOUT points at the background root). err/cause/deadline/wake word live in the source.
 * - Links. A cancellable child with a single parent is on its cancellation parent's `kids` list (intrusive,
 *   `pprev == NULL` means unlinked) under the parent's lock. Multi-parent children and after-funcs are
 *   `cbnode`s on the parent's `ext->cbs` list, also under the parent's lock.
 * - Lock order: ancestor before descendant. Cancel walks the subtree depth-first holding the locks along
 *   the current path, so a child can never be freed under the walker: a child's final release must lock
 *   its parent to unlink itself. A context with refs == 0 has no children (children hold their parent).
 *   The timer lock is taken inside a context lock, never the reverse.
 * - Publication. `cause` is written before `err` (seq_cst store); readers load `err` first.
 *   Order, both ways: a cancel publishes `err` bottom-up (a node after its whole subtree), so whoever sees a
 *   context done sees its descendants done; and it stores WEFT__ERR_ENDING in the `err` of every node it
 *   marks before it publishes any, so whoever saw a descendant done and reads an ancestor's `err` finds
 *   ENDING (or the error) and waits for the ancestor's lock, which the walk holds until the error is out
 *   (weft_ctx_err). ENDING is only ever seen without the lock: code holding a context's lock sees 0 or the
 *   error. Go gives the second order (a parent's err is set before its children are cancelled); weft both.
 *   A thread about to sleep sets WEFT__WORD_SLEEPERS in the wake word and then re-reads `err`; cancel
 *   stores `err` and then reads the word: one of the two always sees the other (park.c).
 */
#ifndef WEFT_CTX_IMPL_H
#define WEFT_CTX_IMPL_H

#include "common/internal.h"
#include "ctx/park.h"
#include "testing.h"

enum {
  WEFT__K_ROOT = 0,
  WEFT__K_CANCEL,
  WEFT__K_DEADLINE,
  WEFT__K_MULTI,
  WEFT__K_SIGNAL,
  WEFT__K_VALUE, /* kinds from here on have no cancel of their own */
  WEFT__K_WITHOUT,
  WEFT__K_FREED
};

#define WEFT__F_STATIC 1u    /* a root: never counted, never freed */
#define WEFT__ERR_ENDING INT32_MIN /* in err while a cancel walks the context's subtree: not an error */

typedef struct weft__cbnode weft__cbnode;
typedef struct weft__ext weft__ext;

struct weft_ctx {
  _Atomic int32_t err;       /* 0 while live; WEFT__ERR_ENDING while its cancel walks; then the error */
  int32_t cause;             /* valid once err != 0; before that, a deadline's custom cause (or 0) */
  _Atomic uint32_t refs;
  uint8_t kind;
  uint8_t flags;
  uint8_t timer_off;         /* DEADLINE: disarmed for good by its cancel (written under its lock) */
  uint8_t spare;
  uint32_t born_ms;          /* coarse creation time, for dumps */
  uint32_t heap_idx;         /* 1 + slot in the timer heap, 0 when not armed (timer lock) */
  weft__spin lock;
  _Atomic uint32_t wake;     /* futex word threads blocked under this context sleep on */
  weft_ctx *parent;          /* what it was derived from (first parent of a multi); NULL for roots */
  weft__ext *ext;            /* lazily allocated extras, under lock */
  union {
    struct {                 /* kinds with a cancel of their own */
      weft_ctx *kids;
      weft_ctx *next;        /* next sibling; reused as the "up" link while a cancel walks the tree */
      weft_ctx **pprev;      /* NULL when not on a parent's list */
      int64_t deadline;      /* effective deadline */
    } c;
    struct {                 /* VALUE, WITHOUT */
      const void *key;
      void *val;
      void (*dtor)(void *);
      weft_ctx *src;
    } v;
  } u;
};

enum { WEFT__CB_AFTER = 1, WEFT__CB_MULTI = 2 };

struct weft__cbnode {
  weft__cbnode *next, **pprev; /* on a context's ext->cbs, or a pending list once collected */
  uint8_t type;
  weft_ctx *owner;             /* CB_MULTI: the multi child; CB_AFTER: the context watched */
  weft_ctx *on;                /* CB_MULTI: the parent this node is registered with */
};

struct weft__ext {
  weft__cbnode *cbs;
  int efd;                     /* eventfd, -1 until asked for */
  uint32_t nparents;           /* MULTI */
  weft_ctx **parents;
  weft__cbnode *regs;          /* MULTI: one node per parent */
  void *creator;               /* leak tracking */
  int64_t born_ns;
  weft_ctx *leak_next, **leak_pprev;
};

static inline bool weft__has_cancel(const weft_ctx *c) { return c->kind < WEFT__K_VALUE; }
static inline weft_ctx *weft__src(const weft_ctx *c) {
  return weft__has_cancel(c) ? (weft_ctx *)c : c->u.v.src;
}
static inline void weft__lock(weft_ctx *c) { weft__spin_lock(&c->lock); }
static inline void weft__unlock(weft_ctx *c) { weft__spin_unlock(&c->lock); }

/* ctx.c */
weft__ext *weft__ext_get(weft_ctx *c); /* under c's lock; NULL when out of memory */
bool weft__cancel(weft_ctx *c, int err, int cause, bool from_timer); /* true: this call ended c */
bool weft__try_retain(weft_ctx *c);
const char *weft__kind_name(int kind);
weft_ctx *weft__ctx_alloc(void);   /* ctx_alloc.c: a context's memory (uninitialised), or NULL */
void weft__ctx_free(weft_ctx *c);  /* ctx_alloc.c: gives it back (kind set to FREED) */
extern bool weft__debug_refs;      /* ctx_alloc.c: WEFT_DEBUG_REFS=1 (freed contexts are quarantined) */

/* timer.c */
int weft__timer_arm(weft_ctx *c);    /* 0 or WEFT_ENOMEM / WEFT_ESYS */
void weft__timer_disarm(weft_ctx *c);

/* ctx_wait.c */
void weft__after_fire(weft__cbnode *list); /* hand collected after-func nodes to the callback thread */
void weft__ext_free(weft__ext *e);

/* ctx_debug.c */
extern bool weft__leaks_on;
void weft__leak_track(weft_ctx *c, void *creator);
void weft__leak_untrack(weft_ctx *c);
void weft__leaks_init(void);

/* signal.c */
int weft__ctx_with_signal_kind(weft_ctx *parent, weft_ctx **out, weft_cancel **cancel); /* a SIGNAL-kind child */
void weft__ctx_end(weft_ctx *c); /* weft_ctx_end() on the context itself */
void weft__signal_forget(weft_ctx *c);

#endif
