/* lib/jobs/sem.c: a weighted semaphore with FIFO waiters (Go's x/sync/semaphore).
 *
 * Design notes. A mutex guards `cur` (units held) and a FIFO of waiters, each a node on its thread's
 * stack holding its park.c waiter record. Acquire takes the units at once only when they are free and
 * nobody waits (so later requests never overtake a queued one). Release (and a waiter leaving on
 * cancellation from the head of the queue) grants units to the queue from its head while the head fits,
 * marking each granted node under the mutex before signalling it. A waiter whose wait ended with an error
 * re-checks under the mutex: a node already granted means the signal raced in, and the acquire succeeds. */
#include <pthread.h>
#include <string.h>

#include "common/internal.h"
#include "ctx/park.h"
#include "weft/sem.h"

typedef struct sem_node {
  weft__waiter *w;
  int64_t n;
  bool granted;
  struct sem_node *next;
} sem_node;

struct weft_sem {
  pthread_mutex_t mu;
  int64_t size, cur;
  sem_node *head, *tail;
};

int weft_sem_create(int64_t size, weft_sem **out) {
  if (out == NULL) return WEFT_EINVAL;
  *out = NULL;
  if (size <= 0) return WEFT_EINVAL;
  weft_sem *s = calloc(1, sizeof *s);
  if (s == NULL) return WEFT_ENOMEM;
  WEFT__ASSERT(pthread_mutex_init(&s->mu, NULL) == 0);
  s->size = size;
  *out = s;
  return 0;
}

void weft_sem_destroy(weft_sem *s) {
  if (s == NULL) return;
  WEFT__ASSERT(s->head == NULL);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

/* Grants units to waiters from the head while the head fits (mu held). */
static void grant(weft_sem *s) {
  while (s->head != NULL && s->size - s->cur >= s->head->n) {
    sem_node *n = s->head;
    s->head = n->next;
    if (s->head == NULL) s->tail = NULL;
    s->cur += n->n;
    n->granted = true;
    weft__waiter_signal(n->w, 1);
  }
}

static void unlink_node(weft_sem *s, sem_node *node) {
  sem_node **pp = &s->head, *prev = NULL;
  while (*pp != NULL && *pp != node) {
    prev = *pp;
    pp = &(*pp)->next;
  }
  WEFT__ASSERT(*pp == node);
  *pp = node->next;
  if (s->tail == node) s->tail = prev;
}

int weft_sem_acquire(weft_sem *s, weft_ctx *ctx, int64_t n) {
  if (s == NULL || n <= 0 || (n > s->size && ctx == NULL)) return WEFT_EINVAL;
  pthread_mutex_lock(&s->mu);
  if (s->head == NULL && s->size - s->cur >= n) {
    s->cur += n;
    pthread_mutex_unlock(&s->mu);
    return 0;
  }
  if (n > s->size) { /* can never fit: wait for the context, as Go does */
    pthread_mutex_unlock(&s->mu);
    return weft_ctx_wait_until(ctx, WEFT_FOREVER);
  }
  sem_node node = {.w = weft__waiter_self(), .n = n};
  weft__waiter_arm(node.w, ctx);
  if (s->tail)
    s->tail->next = &node;
  else
    s->head = &node;
  s->tail = &node;
  pthread_mutex_unlock(&s->mu);
  for (;;) {
    int r = weft__waiter_wait(node.w, ctx, WEFT_FOREVER);
    pthread_mutex_lock(&s->mu);
    if (node.granted) {
      pthread_mutex_unlock(&s->mu);
      return 0;
    }
    if (r < 0) {
      bool was_head = s->head == &node;
      unlink_node(s, &node);
      if (was_head) grant(s); /* the ones behind us may fit now */
      pthread_mutex_unlock(&s->mu);
      return r;
    }
    /* A spurious wake-up (a stale signal): wait again. */
    weft__waiter_arm(node.w, ctx);
    pthread_mutex_unlock(&s->mu);
  }
}

int weft_sem_try_acquire(weft_sem *s, int64_t n) {
  if (s == NULL || n <= 0) return WEFT_EINVAL;
  pthread_mutex_lock(&s->mu);
  int rc = WEFT_EFULL;
  if (s->head == NULL && s->size - s->cur >= n) {
    s->cur += n;
    rc = 0;
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int weft_sem_release(weft_sem *s, int64_t n) {
  if (s == NULL || n <= 0) return WEFT_EINVAL;
  pthread_mutex_lock(&s->mu);
  if (n > s->cur) {
    pthread_mutex_unlock(&s->mu);
    return WEFT_EINVAL;
  }
  s->cur -= n;
  grant(s);
  pthread_mutex_unlock(&s->mu);
  return 0;
}
