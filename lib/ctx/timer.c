/* lib/ctx/timer.c: one timer thread for every deadline in the process.
 *
 * Design notes.
 * - A binary min-heap of DEADLINE contexts ordered by deadline; each context keeps 1 + its slot in
 *   heap_idx, so arming and disarming are O(log n). The heap array costs 8 bytes per armed context.
 * - Everything here is under `mu` (a spinlock: critical sections are a few dozen instructions, except a
 *   rare realloc). The timer lock is taken inside a context's lock (mark_done disarms), never the reverse:
 *   the thread pops expired contexts under `mu`, retains them, drops `mu`, and only then cancels them.
 * - Retaining under `mu` is safe because a context's final release disarms it (taking `mu`) before its
 *   memory is reused: while `mu` is held, a context on the heap or just popped is not yet freed. A
 *   context whose count already reached zero is dying and is skipped.
 * - Waking the thread costs a system call, so arming wakes it only when the new deadline is earlier than
 *   the one it sleeps until (`sleep_until`). Disarming never wakes it: an early wake-up finds nothing due
 *   and sleeps again. The thread is started on the first arm and lives for the rest of the process.
 */
#include <pthread.h>
#include <sys/mman.h>

#include "ctx/ctx_impl.h"

static struct {
  weft__spin mu;
  weft_ctx **heap;
  size_t n, cap;
  int64_t sleep_until;        /* what the thread sleeps until (WEFT_FOREVER when idle) */
  _Atomic uint32_t seq;       /* futex word the thread sleeps on */
  _Atomic int started;        /* 0 no, 1 starting/started, -1 failed */
  pthread_mutex_t start_mu;
} T = {.sleep_until = WEFT_FOREVER, .start_mu = PTHREAD_MUTEX_INITIALIZER};

static inline bool earlier(const weft_ctx *a, const weft_ctx *b) { return a->u.c.deadline < b->u.c.deadline; }

static void heap_set(size_t i, weft_ctx *c) {
  T.heap[i] = c;
  c->heap_idx = (uint32_t)(i + 1);
}

static void sift_up(size_t i) {
  weft_ctx *c = T.heap[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!earlier(c, T.heap[p])) break;
    heap_set(i, T.heap[p]);
    i = p;
  }
  heap_set(i, c);
}

static void sift_down(size_t i) {
  weft_ctx *c = T.heap[i];
  for (;;) {
    size_t l = 2 * i + 1, m = i;
    const weft_ctx *best = c;
    if (l < T.n && earlier(T.heap[l], best)) m = l, best = T.heap[l];
    if (l + 1 < T.n && earlier(T.heap[l + 1], best)) m = l + 1;
    if (m == i) break;
    heap_set(i, T.heap[m]);
    i = m;
  }
  heap_set(i, c);
}

static void heap_remove(size_t i) {
  T.heap[i]->heap_idx = 0;
  T.n--;
  if (i == T.n) return;
  weft_ctx *moved = T.heap[T.n];
  heap_set(i, moved);
  sift_down(i);
  sift_up(moved->heap_idx - 1);
}

static void *timer_main(void *arg) {
  (void)arg;
  enum { BATCH = 64 };
  weft_ctx *due[BATCH];
  for (;;) {
    size_t nd = 0;
    weft__spin_lock(&T.mu);
    int64_t now = weft_now();
    while (T.n > 0 && T.heap[0]->u.c.deadline <= now && nd < BATCH) {
      weft_ctx *c = T.heap[0];
      heap_remove(0);
      if (weft__try_retain(c)) due[nd++] = c;
    }
    int64_t next = nd == BATCH ? now : (T.n > 0 ? T.heap[0]->u.c.deadline : WEFT_FOREVER);
    T.sleep_until = next;
    uint32_t seq = atomic_load(&T.seq);
    weft__spin_unlock(&T.mu);
    for (size_t i = 0; i < nd; i++) {
      weft__cancel(due[i], WEFT_EDEADLINE, WEFT_EDEADLINE, true);
      weft_ctx_release(due[i]);
    }
    if (nd == 0) weft__futex_wait(&T.seq, seq, next, FUTEX_BITSET_MATCH_ANY);
  }
  return NULL;
}

/* The heap array lives in its own mapping grown with mremap: the kernel moves pages instead of copying,
 * and no freed copy of the old array stays resident, so the heap costs 8 bytes per armed context. */
static int heap_grow(void) {
  size_t cap = T.cap ? T.cap * 2 : 4096;
  void *h = T.heap ? mremap(T.heap, T.cap * sizeof(weft_ctx *), cap * sizeof(weft_ctx *), MREMAP_MAYMOVE)
                   : mmap(NULL, cap * sizeof(weft_ctx *), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (h == MAP_FAILED) return WEFT_ENOMEM;
  T.heap = h;
  T.cap = cap;
  return 0;
}

static int timer_start(void) {
  int s = atomic_load(&T.started);
  if (WEFT__LIKELY(s == 1)) return 0;
  pthread_mutex_lock(&T.start_mu);
  if (atomic_load(&T.started) == 0) {
    pthread_t th;
    if (weft__runtime_thread(&th, timer_main, NULL) == 0) {
      pthread_detach(th);
      atomic_store(&T.started, 1);
    }
  }
  s = atomic_load(&T.started);
  pthread_mutex_unlock(&T.start_mu);
  return s == 1 ? 0 : WEFT_ESYS;
}

int weft__timer_arm(weft_ctx *c) {
  int rc = timer_start();
  if (rc != 0) return rc;
  bool wake = false;
  weft__spin_lock(&T.mu);
  if (T.n == T.cap && heap_grow() != 0) {
    weft__spin_unlock(&T.mu);
    return WEFT_ENOMEM;
  }
  T.heap[T.n] = c;
  sift_up(T.n++);
  if (c->u.c.deadline < T.sleep_until) {
    T.sleep_until = c->u.c.deadline;
    atomic_fetch_add(&T.seq, 1);
    wake = true;
  }
  weft__spin_unlock(&T.mu);
  if (wake) weft__futex_wake(&T.seq, 1, FUTEX_BITSET_MATCH_ANY);
  return 0;
}

void weft__timer_disarm(weft_ctx *c) {
  weft__spin_lock(&T.mu);
  if (c->heap_idx != 0) heap_remove(c->heap_idx - 1);
  weft__spin_unlock(&T.mu);
}

size_t weft__timer_armed(void) {
  weft__spin_lock(&T.mu);
  size_t n = T.n;
  weft__spin_unlock(&T.mu);
  return n;
}

size_t weft__timer_threads(void) { return atomic_load(&T.started) == 1 ? 1 : 0; }
