/* client-limiter: one context per client, with a 1 h lifetime and 100 requests per hour; idle clients are
 * evicted, and all of one client's work can be cancelled at once.
 *
 * The Go guides keep a map[clientID]*client whose entries hold a context.WithTimeout(server, time.Hour) and a
 * request counter. The seed's version races: the map is read without the lock, the counter is incremented
 * outside it, an evicted entry's context is cancelled while a request is still using it, and a client that
 * is rate-limited but still knocking gets evicted (and so gets a fresh quota). Here every piece of shared
 * state is under one mutex, and lifetimes are explicit:
 *   - a client's entry owns one reference to its session context (1 h lifetime = the rate window);
 *   - every admitted request gets its own child context of the session, so cancelling the session cancels
 *     every request of that client at once, and a request keeps its parent alive by itself;
 *   - an entry is unlinked when its window ends, when it is evicted (idle and nothing in flight), or when
 *     the client is cancelled; its memory is freed only when its last in-flight request ends;
 *   - every attempt, admitted or not, counts as activity, so a limited client is never evicted into a new
 *     quota.
 *
 *   client-limiter [--fast]    The demo clock runs 1500x faster (1 h = 2.4 s); --fast (or
 *                              WEFT_EXAMPLE_FAST=1) 2000x (1 h = 1.8 s).
 * Exits 0 when: each client got exactly 100 of its 130 requests in its window; all 10 of mallory's
 * in-flight requests ended "canceled" with her cause the moment she was cancelled; idle clients were evicted
 * while a limited but active client kept its quota; a new window admitted requests again; nothing leaked. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft/weft.h>

#define CAUSE_LOGGED_OUT (-1001) /* our own cause: the client logged out, stop everything of hers */
#define E_NO_CLIENT (-1002)      /* our own error code: no such client */

static int64_t scale = 1500;
static int64_t demo_min(double m) { return (int64_t)(m * 60e9) / scale; }

/* ---- the limiter ------------------------------------------------------------------------------------ */

typedef struct client {
  char id[32];
  weft_ctx *session; /* owned by the entry: 1 h lifetime, parent of every request of this client */
  weft_cancel *session_cancel; /* the right to cancel it: the limiter's, which created it, alone */
  int used;          /* requests admitted in this window */
  int in_flight;     /* requests running now */
  int64_t last_seen; /* last attempt, admitted or not */
  bool retired;      /* unlinked from the table; freed when in_flight reaches 0 */
  struct client *next;
} client;

#define NBUCKETS 64
typedef struct limiter {
  pthread_mutex_t mu; /* guards everything below */
  client *table[NBUCKETS];
  weft_ctx *parent;
  int64_t lifetime, idle;
  int limit;
  int evicted, expired;
} limiter;

static unsigned hash(const char *s) {
  unsigned h = 2166136261u;
  while (*s) h = (h ^ (unsigned char)*s++) * 16777619u;
  return h % NBUCKETS;
}

/* mu held. Unlinks c from the table, ends its session (cancel + release the entry's reference; requests in
 * flight hold their own references through their child contexts) and frees it if nothing runs under it. */
static void retire(limiter *l, client *c, int cause) {
  for (client **pp = &l->table[hash(c->id)]; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  c->retired = true;
  if (cause != 0) weft_ctx_cancel_cause(c->session_cancel, cause);
  weft_ctx_end(c->session_cancel);
  c->session = NULL;
  c->session_cancel = NULL;
  if (c->in_flight == 0) free(c);
}

/* Admits one request of client `id`. On success returns 0, stores the request's context (a child of the
 * client's session) in *work, the right to cancel it in *done (the caller's, as Go's cancel func: it ends
 * the request with limiter_end) and the client in *who. Returns WEFT_EFULL when the client used its quota
 * for this window, WEFT_ENOMEM, or a derivation error. Any thread. */
static int limiter_begin(limiter *l, const char *id, client **who, weft_ctx **work, weft_cancel **done) {
  int rc = 0;
  int64_t now = weft_now();
  pthread_mutex_lock(&l->mu);
  client *c = l->table[hash(id)];
  while (c && strcmp(c->id, id) != 0) c = c->next;
  if (c && weft_ctx_err(c->session) != 0) { /* its window ended: a new session, a new quota */
    l->expired++;
    retire(l, c, 0);
    c = NULL;
  }
  if (c == NULL) {
    c = calloc(1, sizeof *c);
    if (c == NULL) {
      rc = WEFT_ENOMEM;
      goto out;
    }
    snprintf(c->id, sizeof c->id, "%s", id);
    rc = weft_ctx_with_timeout(l->parent, l->lifetime, &c->session, &c->session_cancel);
    if (rc != 0) {
      free(c);
      goto out;
    }
    c->next = l->table[hash(id)];
    l->table[hash(id)] = c;
  }
  c->last_seen = now; /* every attempt counts as activity */
  if (c->used >= l->limit) {
    rc = WEFT_EFULL;
    goto out;
  }
  rc = weft_ctx_with_cancel(c->session, work, done);
  if (rc != 0) goto out;
  c->used++;
  c->in_flight++;
  *who = c;
out:
  pthread_mutex_unlock(&l->mu);
  return rc;
}

/* Ends a request admitted by limiter_begin, given the cancel handle limiter_begin stored in *done. Any
 * thread. */
static void limiter_end(limiter *l, client *c, weft_cancel *done) {
  weft_ctx_end(done);
  pthread_mutex_lock(&l->mu);
  c->last_seen = weft_now();
  if (--c->in_flight == 0 && c->retired) free(c);
  pthread_mutex_unlock(&l->mu);
}

/* Cancels every request of client `id` at once with `cause` and forgets the client. Returns how many
 * requests were in flight, or E_NO_CLIENT. Any thread. */
static int limiter_cancel_client(limiter *l, const char *id, int cause) {
  pthread_mutex_lock(&l->mu);
  client *c = l->table[hash(id)];
  while (c && strcmp(c->id, id) != 0) c = c->next;
  int n = c ? c->in_flight : E_NO_CLIENT;
  if (c) retire(l, c, cause);
  pthread_mutex_unlock(&l->mu);
  return n;
}

/* Returns the client's admitted count and in-flight count in this window (-1, -1 when unknown). */
static void limiter_peek(limiter *l, const char *id, int *used, int *in_flight) {
  pthread_mutex_lock(&l->mu);
  client *c = l->table[hash(id)];
  while (c && strcmp(c->id, id) != 0) c = c->next;
  *used = c ? c->used : -1;
  *in_flight = c ? c->in_flight : -1;
  pthread_mutex_unlock(&l->mu);
}

/* Returns when the client's current window ends (its session's deadline), WEFT_FOREVER when unknown. */
static int64_t limiter_window_end(limiter *l, const char *id) {
  pthread_mutex_lock(&l->mu);
  client *c = l->table[hash(id)];
  while (c && strcmp(c->id, id) != 0) c = c->next;
  int64_t d = c ? weft_ctx_deadline(c->session) : WEFT_FOREVER;
  pthread_mutex_unlock(&l->mu);
  return d;
}

static int limiter_clients(limiter *l) {
  int n = 0;
  pthread_mutex_lock(&l->mu);
  for (int b = 0; b < NBUCKETS; b++)
    for (client *c = l->table[b]; c; c = c->next) n++;
  pthread_mutex_unlock(&l->mu);
  return n;
}

/* The evictor: every idle/4, forget clients idle for `idle` with nothing in flight, and ended windows. */
typedef struct evictor_arg {
  limiter *l;
  weft_ctx *stop;
} evictor_arg;

static void *evictor(void *arg) {
  evictor_arg *e = arg;
  limiter *l = e->l;
  while (weft_ctx_sleep(e->stop, l->idle / 4) == 0) {
    int64_t now = weft_now();
    pthread_mutex_lock(&l->mu);
    for (int b = 0; b < NBUCKETS; b++)
      for (client *c = l->table[b], *next; c; c = next) {
        next = c->next;
        if (c->in_flight > 0) continue; /* never cancel work in progress to reclaim memory */
        if (weft_ctx_err(c->session) != 0) {
          l->expired++;
          retire(l, c, 0);
        } else if (now - c->last_seen > l->idle) {
          printf("  evictor: %s idle for more than 10 min: evicted\n", c->id);
          l->evicted++;
          retire(l, c, 0);
        }
      }
    pthread_mutex_unlock(&l->mu);
  }
  return NULL;
}

static void limiter_destroy(limiter *l) {
  pthread_mutex_lock(&l->mu);
  for (int b = 0; b < NBUCKETS; b++)
    while (l->table[b]) retire(l, l->table[b], 0);
  pthread_mutex_unlock(&l->mu);
  pthread_mutex_destroy(&l->mu);
}

/* ---- the clients ------------------------------------------------------------------------------------ */

typedef struct burst {
  limiter *l;
  const char *id;
  int attempts;
  atomic_int *admitted, *rejected;
} burst;

static void *burst_main(void *arg) { /* many short requests */
  burst *b = arg;
  for (int i = 0; i < b->attempts; i++) {
    client *c;
    weft_ctx *work;
    weft_cancel *done;
    int rc = limiter_begin(b->l, b->id, &c, &work, &done);
    if (rc == WEFT_EFULL) {
      atomic_fetch_add(b->rejected, 1);
      continue;
    }
    if (rc != 0) continue;
    atomic_fetch_add(b->admitted, 1);
    weft_ctx_sleep(work, WEFT_US(50)); /* the request's work, under its context */
    limiter_end(b->l, c, done);
  }
  return NULL;
}

typedef struct long_req {
  limiter *l;
  int result, cause;
} long_req;

static void *long_main(void *arg) { /* a request that works until its context ends */
  long_req *r = arg;
  client *c;
  weft_ctx *work;
  weft_cancel *done;
  r->result = limiter_begin(r->l, "mallory", &c, &work, &done);
  if (r->result != 0) return NULL;
  r->result = weft_ctx_wait_until(work, WEFT_FOREVER); /* e.g. a long poll or a stream */
  r->cause = weft_ctx_cause(work);
  limiter_end(r->l, c, done);
  return NULL;
}

int main(int argc, char **argv) {
  const char *env = getenv("WEFT_EXAMPLE_FAST");
  if ((argc > 1 && strcmp(argv[1], "--fast") == 0) || (env && *env && strcmp(env, "0") != 0)) scale = 2000;
  setvbuf(stdout, NULL, _IOLBF, 0);
  int ok = 1;

  limiter l = {.mu = PTHREAD_MUTEX_INITIALIZER, .lifetime = demo_min(60), .idle = demo_min(10), .limit = 100};
  weft_ctx *server, *stop;
  weft_cancel *server_cancel, *stop_cancel;
  if (weft_ctx_with_cancel(weft_background(), &server, &server_cancel) != 0 ||
      weft_ctx_with_cancel(server, &stop, &stop_cancel) != 0)
    return 1;
  l.parent = server;
  printf("client-limiter: 100 requests per client per 1 h session, idle clients evicted after 10 min\n"
         "(the demo clock runs %lldx faster: 1 h = %.1f s)\n", (long long)scale, 3600.0 / (double)scale);
  evictor_arg ea = {&l, stop};
  pthread_t ev;
  if (pthread_create(&ev, NULL, evictor, &ea) != 0) return 1;

  /* 1. Four clients, two threads each, 130 attempts per client at once. */
  const char *ids[] = {"alice", "bob", "carol", "dave"};
  enum { NC = 4, PER = 2 };
  atomic_int admitted[NC], rejected[NC];
  burst bs[NC * PER];
  pthread_t th[NC * PER];
  for (int i = 0; i < NC; i++) atomic_init(&admitted[i], 0), atomic_init(&rejected[i], 0);
  for (int i = 0; i < NC * PER; i++) {
    bs[i] = (burst){&l, ids[i / PER], 65, &admitted[i / PER], &rejected[i / PER]};
    if (pthread_create(&th[i], NULL, burst_main, &bs[i]) != 0) return 1;
  }
  for (int i = 0; i < NC * PER; i++) pthread_join(th[i], NULL);
  printf("1. a burst of 130 requests per client from %d threads each:\n", PER);
  for (int i = 0; i < NC; i++) {
    printf("   %-6s admitted %3d, rate-limited %2d\n", ids[i], atomic_load(&admitted[i]), atomic_load(&rejected[i]));
    if (atomic_load(&admitted[i]) != 100 || atomic_load(&rejected[i]) != 30) ok = 0;
  }

  /* 2. mallory has 10 long requests in flight; she logs out: all of them stop at once. */
  enum { NL = 10 };
  long_req lr[NL];
  pthread_t lt[NL];
  for (int i = 0; i < NL; i++) {
    lr[i] = (long_req){&l, 1, 0};
    if (pthread_create(&lt[i], NULL, long_main, &lr[i]) != 0) return 1;
  }
  int used, in_flight;
  do {
    weft_ctx_sleep(server, WEFT_MS(1));
    limiter_peek(&l, "mallory", &used, &in_flight);
  } while (in_flight < NL);
  printf("2. mallory has %d requests in flight; she logs out: cancel her session\n", in_flight);
  int64_t t = weft_now();
  int n = limiter_cancel_client(&l, "mallory", CAUSE_LOGGED_OUT);
  for (int i = 0; i < NL; i++) pthread_join(lt[i], NULL);
  int stopped = 0;
  for (int i = 0; i < NL; i++) stopped += lr[i].result == WEFT_ECANCELED && lr[i].cause == CAUSE_LOGGED_OUT;
  printf("   cancelled %d in flight; %d/%d ended '%s' with her cause, all within %.1f ms\n", n, stopped, NL,
         weft_strerror(WEFT_ECANCELED), (double)(weft_now() - t) / 1e6);
  if (n != NL || stopped != NL) ok = 0;

  /* 3. dave keeps knocking (rate-limited) while the others go quiet: the evictor takes only the idle ones,
   * and dave keeps his used-up quota rather than being evicted into a new one. */
  printf("3. 20 min pass; dave keeps knocking every minute (and is refused: his quota is used up)\n");
  int dave_admitted = 0;
  for (int i = 0; i < 20; i++) {
    client *c;
    weft_ctx *work;
    weft_cancel *done;
    if (limiter_begin(&l, "dave", &c, &work, &done) == 0) dave_admitted++, limiter_end(&l, c, done);
    weft_ctx_sleep(server, demo_min(1));
  }
  limiter_peek(&l, "dave", &used, &in_flight);
  pthread_mutex_lock(&l.mu);
  int evicted = l.evicted;
  pthread_mutex_unlock(&l.mu);
  printf("   evicted %d idle clients; %d client(s) left; dave: %d admitted in those 20 min, %d used this window\n",
         evicted, limiter_clients(&l), dave_admitted, used);
  if (evicted != 3 || limiter_clients(&l) != 1 || dave_admitted != 0 || used != 100) ok = 0;

  /* 4. dave keeps knocking until he is admitted again: that happens when his hour ends (a new session and
   * a new quota), not before, and not because he was evicted. */
  int64_t window_end = limiter_window_end(&l, "dave");
  int refused = 0, rc;
  int64_t admitted_at;
  for (;;) {
    client *c;
    weft_ctx *work;
    weft_cancel *done;
    admitted_at = weft_now();
    rc = limiter_begin(&l, "dave", &c, &work, &done);
    if (rc == 0) {
      limiter_end(&l, c, done);
      break;
    }
    if (rc != WEFT_EFULL || ++refused > 200) break;
    weft_ctx_sleep(server, demo_min(1));
  }
  limiter_peek(&l, "dave", &used, &in_flight);
  pthread_mutex_lock(&l.mu);
  int expired = l.expired;
  evicted = l.evicted;
  pthread_mutex_unlock(&l.mu);
  printf("4. dave knocks every minute: refused %d more times, admitted %.0f min after his window ended "
         "(a new session; %d used in it; sessions expired %d, evicted still %d)\n",
         refused, (double)(admitted_at - window_end) * (double)scale / 60e9, used, expired, evicted);
  if (rc != 0 || admitted_at < window_end || used != 1 || expired != 1 || evicted != 3) ok = 0;

  weft_ctx_cancel(stop_cancel);
  pthread_join(ev, NULL);
  limiter_destroy(&l);
  weft_ctx_end(stop_cancel);
  weft_ctx_end(server_cancel);
  printf("live contexts at the end: %zu\n", weft_ctx_live_count());
  if (weft_ctx_live_count() != 0) ok = 0;
  printf("%s\n", ok ? "OK: limits held, one client's work cancelled at once, only idle clients evicted"
                    : "FAILED");
  return ok ? 0 : 1;
}
