/* lib/ctx/ctx_alloc.c: where contexts come from — per-thread caches over type-stable chunks.
 *
 * Design notes. Contexts are never returned to the allocator: they live in chunks of CHUNK_OBJS, and a
 * freed one goes back to its thread's cache (a free list of at most CACHE_MAX; half of it moves to the
 * shared list when it overflows, so memory migrates between threads), or to the shared list when its
 * thread has no cache. Type-stability is what lets a canceller touch a context's lock and wake word after
 * the last release (ctx_impl.h). Each cache counts its allocations and frees with single-writer counters,
 * summed by weft_ctx_live_count(); caches are never freed (a thread's exit hands its cache to the next new
 * thread), so the counts survive. The only lock, free_mu, guards the shared list and the cache lists. */
#include <pthread.h>
#include <string.h>

#include "ctx/ctx_impl.h"

#define CACHE_MAX 256
#define CHUNK_OBJS 1024

typedef struct tcache {
  weft_ctx *free;          /* singly linked through u.c.next */
  unsigned n;
  _Atomic uint64_t allocs; /* written by the owner only; summed by weft_ctx_live_count() */
  _Atomic uint64_t frees;
  struct tcache *all_next;
  struct tcache *idle_next; /* on idle_caches once its thread exited */
} tcache;

static pthread_mutex_t free_mu = PTHREAD_MUTEX_INITIALIZER;
static weft_ctx *free_ctxs; /* shared overflow list */
static tcache *all_caches;  /* every cache ever made (never freed: the counters must survive) */
static tcache *idle_caches; /* caches of exited threads, reused by new threads */
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static _Thread_local tcache *my_cache;
static _Atomic uint64_t cacheless_frees; /* frees by threads that could not get a cache */

/* WEFT_DEBUG_REFS=1 in the environment, read once before the first context is allocated or freed: a freed
 * context is poisoned and quarantined (never reused), so a second release of it always finds it freed.
 * Without it a slot is reused at once, and a late second release hits whoever owns the slot next. */
bool weft__debug_refs;

static void cache_flush(void *p) {
  tcache *tc = p;
  my_cache = NULL; /* runs in the exiting thread: a later use makes (or reuses) a fresh cache */
  pthread_mutex_lock(&free_mu);
  while (tc->free) {
    weft_ctx *c = tc->free;
    tc->free = c->u.c.next;
    c->u.c.next = free_ctxs;
    free_ctxs = c;
  }
  tc->n = 0;
  tc->idle_next = idle_caches;
  idle_caches = tc;
  pthread_mutex_unlock(&free_mu);
}
static void cache_key_init(void) {
  WEFT__ASSERT(pthread_key_create(&cache_key, cache_flush) == 0);
  const char *s = getenv("WEFT_DEBUG_REFS");
  weft__debug_refs = s != NULL && strcmp(s, "1") == 0;
}

static tcache *cache_self(void) {
  if (WEFT__LIKELY(my_cache != NULL)) return my_cache;
  pthread_once(&cache_once, cache_key_init);
  pthread_mutex_lock(&free_mu);
  tcache *tc = idle_caches;
  if (tc != NULL) {
    idle_caches = tc->idle_next; /* counters are running totals: they carry over */
  } else if ((tc = calloc(1, sizeof *tc)) != NULL) {
    tc->all_next = all_caches;
    all_caches = tc;
  }
  pthread_mutex_unlock(&free_mu);
  if (tc == NULL) return NULL;
  my_cache = tc;
  pthread_setspecific(cache_key, tc);
  return tc;
}

weft_ctx *weft__ctx_alloc(void) {
  tcache *tc = cache_self();
  if (WEFT__UNLIKELY(tc == NULL)) return NULL;
  if (WEFT__UNLIKELY(tc->free == NULL)) {
    pthread_mutex_lock(&free_mu);
    for (int i = 0; i < CACHE_MAX / 2 && free_ctxs; i++) {
      weft_ctx *c = free_ctxs;
      free_ctxs = c->u.c.next;
      c->u.c.next = tc->free;
      tc->free = c;
      tc->n++;
    }
    pthread_mutex_unlock(&free_mu);
    if (tc->free == NULL) {
      weft_ctx *chunk = malloc(sizeof(weft_ctx) * CHUNK_OBJS);
      if (chunk == NULL) return NULL;
      for (int i = CHUNK_OBJS - 1; i >= 0; i--) {
        chunk[i].u.c.next = tc->free;
        tc->free = &chunk[i];
      }
      tc->n += CHUNK_OBJS;
    }
  }
  weft_ctx *c = tc->free;
  tc->free = c->u.c.next;
  tc->n--;
  weft__owned_add(&tc->allocs, 1, memory_order_relaxed);
  return c;
}

/* WEFT_DEBUG_REFS: c keeps only what tells a late use that it is gone (kind FREED, refs 0; its old kind in
 * `spare` for the report); the links are poisoned so that a use of them faults. The lock and the wake word
 * are left alone: a late futex wake on them is allowed (ctx_impl.h). */
static void ctx_quarantine(weft_ctx *c, uint8_t kind) {
  c->spare = kind;
  c->cause = (int32_t)0xdbdbdbdb;
  c->heap_idx = 0xdbdbdbdbu;
  memset(&c->parent, 0xdb, sizeof c->parent);
  memset(&c->ext, 0xdb, sizeof c->ext);
  memset(&c->u, 0xdb, sizeof c->u);
}

void weft__ctx_free(weft_ctx *c) {
  uint8_t kind = c->kind;
  c->kind = WEFT__K_FREED;
  tcache *tc = cache_self();
  if (WEFT__UNLIKELY(tc == NULL)) { /* no cache for this thread: give it straight to the shared list */
    atomic_fetch_add_explicit(&cacheless_frees, 1, memory_order_relaxed);
    if (WEFT__UNLIKELY(weft__debug_refs)) {
      ctx_quarantine(c, kind);
      return;
    }
    pthread_mutex_lock(&free_mu);
    c->u.c.next = free_ctxs;
    free_ctxs = c;
    pthread_mutex_unlock(&free_mu);
    return;
  }
  weft__owned_add(&tc->frees, 1, memory_order_relaxed);
  if (WEFT__UNLIKELY(weft__debug_refs)) {
    ctx_quarantine(c, kind);
    return;
  }
  c->u.c.next = tc->free;
  tc->free = c;
  if (++tc->n > CACHE_MAX) { /* give half back so memory migrates between threads */
    pthread_mutex_lock(&free_mu);
    while (tc->n > CACHE_MAX / 2) {
      weft_ctx *x = tc->free;
      tc->free = x->u.c.next;
      x->u.c.next = free_ctxs;
      free_ctxs = x;
      tc->n--;
    }
    pthread_mutex_unlock(&free_mu);
  }
}

size_t weft_ctx_live_count(void) {
  uint64_t a = 0, f = atomic_load_explicit(&cacheless_frees, memory_order_relaxed);
  pthread_mutex_lock(&free_mu);
  for (tcache *tc = all_caches; tc; tc = tc->all_next) {
    a += atomic_load_explicit(&tc->allocs, memory_order_relaxed);
    f += atomic_load_explicit(&tc->frees, memory_order_relaxed);
  }
  pthread_mutex_unlock(&free_mu);
  return a > f ? (size_t)(a - f) : 0;
}
