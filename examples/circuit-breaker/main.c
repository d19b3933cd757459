/* circuit-breaker: a timeout cascade through nested calls, and a circuit breaker that opens after 3
 * failures and half-opens after its timeout.
 *
 * Part 1, the cascade. gateway (1 s) calls orders (800 ms) calls inventory (2 s) calls the database. Each
 * layer wraps the next with `WithTimeout(parent, own)`, so each gets min(own, what its caller has left):
 * inventory's 2 s are clipped to orders' 800 ms. With weft_ctx_with_timeout_cause() every layer names its
 * own deadline, so the error that bubbles up says which layer's budget ran out — not just "deadline
 * exceeded".
 *
 * Part 2, the breaker (Go's sony/gobreaker shape). Closed: calls go through; 3 failures in a row open it.
 * Open: calls fail at once with "circuit open" without touching the backend, until the open timeout.
 * Half-open: exactly one trial call goes through (concurrent callers are refused); its success closes the
 * breaker, its failure opens it again. Each call runs under a per-call timeout derived from the caller's
 * context; a call the *caller* gave up on (its own context ended) does not count against the backend.
 * The breaker's state is under one mutex; the backend call runs outside it.
 *
 *   circuit-breaker [--fast]     --fast (or WEFT_EXAMPLE_FAST=1) divides every duration by 5.
 * Exits 0 when the cascade's errors name the right layer and the breaker went closed -> open (refusing
 * without calling the backend) -> half-open (one trial among four callers) -> open -> half-open -> closed. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft/weft.h>

#define E_CIRCUIT_OPEN (-3000)  /* the breaker refused the call */
#define E_BACKEND_DOWN (-3001)  /* the backend answered with an error */
#define CAUSE_LAYER(i) (-3100 - (i))

static int64_t scale = 1;
static int64_t ms(int64_t m) { return WEFT_MS(m) / scale; }

/* ---- part 1: the cascade ------------------------------------------------------------------------------ */

static const char *const layers[] = {"gateway", "orders", "inventory"};
static const int64_t layer_ms[] = {1000, 800, 2000};

static const char *why(int cause) {
  static char buf[64];
  for (int i = 0; i < 3; i++)
    if (cause == CAUSE_LAYER(i)) {
      snprintf(buf, sizeof buf, "the %lld ms budget of %s ran out", (long long)layer_ms[i], layers[i]);
      return buf;
    }
  return weft_strerror(cause);
}

/* Layer i wraps layer i+1 (the last one calls the database, which needs db_ms). Returns the result and
 * stores the cause of a failure in *cause. */
static int call_layer(weft_ctx *parent, int i, int64_t db_ms, int *cause) {
  if (i == 3) { /* the database */
    int rc = weft_ctx_sleep(parent, ms(db_ms));
    *cause = weft_ctx_cause(parent);
    return rc;
  }
  weft_ctx *ctx;
  weft_cancel *cancel;
  int rc = weft_ctx_with_timeout_cause(parent, ms(layer_ms[i]), CAUSE_LAYER(i), &ctx, &cancel);
  if (rc != 0) return rc;
  printf("  %*s%s: own budget %lld ms, effective %lld ms\n", 2 * i, "", layers[i], (long long)layer_ms[i],
         (long long)((weft_ctx_deadline(ctx) - weft_now()) * scale / 1000000));
  rc = call_layer(ctx, i + 1, db_ms, cause);
  printf("  %*s%s: %s%s%s\n", 2 * i, "", layers[i], rc == 0 ? "ok" : weft_strerror(rc), rc ? " - " : "",
         rc ? why(*cause) : "");
  weft_ctx_end(cancel);
  return rc;
}

static int part1(void) {
  int ok = 1, cause = 0;
  printf("part 1: a timeout cascade, gateway 1 s -> orders 800 ms -> inventory 2 s -> database\n");
  printf(" a database answering in 100 ms:\n");
  if (call_layer(weft_background(), 0, 100, &cause) != 0) ok = 0;
  printf(" a database taking 5 s:\n");
  int rc = call_layer(weft_background(), 0, 5000, &cause);
  /* inventory's 2 s were clipped to orders' 800 ms: orders' deadline is the one that fired. */
  if (rc != WEFT_EDEADLINE || cause != CAUSE_LAYER(1)) ok = 0;
  return ok;
}

/* ---- part 2: the breaker ----------------------------------------------------------------------------- */

typedef enum { CLOSED, OPEN, HALF_OPEN } breaker_state;
static const char *const state_names[] = {"closed", "open", "half-open"};

typedef struct breaker {
  pthread_mutex_t mu; /* guards every field below */
  breaker_state state;
  int failures;  /* in a row, while closed */
  int threshold; /* failures that open it */
  int64_t open_timeout, open_until;
  bool trial_in_flight;
  char history[256]; /* the states it went through, for the check */
} breaker;

static void set_state(breaker *b, breaker_state s) { /* mu held */
  b->state = s;
  if (s == OPEN) b->open_until = weft_now() + b->open_timeout;
  size_t n = strlen(b->history);
  snprintf(b->history + n, sizeof b->history - n, "%s%s", n ? " -> " : "", state_names[s]);
  printf("    breaker: %s\n", state_names[s]);
}

/* Calls fn(ctx, arg) through the breaker under a per-call timeout derived from `parent`. Returns fn's
 * result, or E_CIRCUIT_OPEN (fn not called). Any thread. */
static int breaker_call(breaker *b, weft_ctx *parent, int64_t timeout, int (*fn)(weft_ctx *, void *), void *arg) {
  bool trial = false;
  pthread_mutex_lock(&b->mu);
  if (b->state == OPEN && weft_now() >= b->open_until) set_state(b, HALF_OPEN);
  if (b->state == OPEN || (b->state == HALF_OPEN && b->trial_in_flight)) {
    pthread_mutex_unlock(&b->mu);
    return E_CIRCUIT_OPEN;
  }
  if (b->state == HALF_OPEN) trial = b->trial_in_flight = true;
  pthread_mutex_unlock(&b->mu);

  weft_ctx *ctx;
  weft_cancel *cancel;
  int rc = weft_ctx_with_timeout(parent, timeout, &ctx, &cancel);
  if (rc == 0) {
    rc = fn(ctx, arg);
    weft_ctx_end(cancel);
  }
  bool caller_gave_up = weft_ctx_err(parent) != 0; /* not the backend's fault */

  pthread_mutex_lock(&b->mu);
  if (trial) {
    b->trial_in_flight = false;
    if (rc == 0) {
      b->failures = 0;
      set_state(b, CLOSED);
    } else {
      set_state(b, OPEN);
    }
  } else if (b->state == CLOSED) {
    if (rc == 0) b->failures = 0;
    else if (!caller_gave_up && ++b->failures >= b->threshold) set_state(b, OPEN);
  }
  pthread_mutex_unlock(&b->mu);
  return rc;
}

/* The backend: healthy (answers in 20 ms), slow (takes 5 s, so every call times out). */
static atomic_int backend_slow, backend_calls;

static int backend(weft_ctx *ctx, void *arg) {
  atomic_fetch_add(&backend_calls, 1);
  int rc = weft_ctx_sleep(ctx, atomic_load(&backend_slow) ? ms(5000) : ms(20));
  return rc;
}

static const char *result_name(int rc) {
  return rc == 0 ? "ok" : rc == E_CIRCUIT_OPEN ? "circuit open (backend not called)" : weft_strerror(rc);
}

static int call(breaker *b, const char *who) {
  int64_t t = weft_now();
  int rc = breaker_call(b, weft_background(), ms(500), backend, NULL);
  printf("  %s: %s after %lld ms\n", who, result_name(rc), (long long)((weft_now() - t) * scale / 1000000));
  return rc;
}

typedef struct caller {
  breaker *b;
  int rc;
} caller;

static void *caller_main(void *arg) {
  caller *c = arg;
  c->rc = breaker_call(c->b, weft_background(), ms(500), backend, NULL);
  return NULL;
}

static int part2(void) {
  int ok = 1;
  breaker b = {.mu = PTHREAD_MUTEX_INITIALIZER, .threshold = 3, .open_timeout = ms(2000)};
  printf("part 2: a breaker (3 failures open it, half-open after 2 s), calls with a 500 ms timeout\n");
  printf(" the backend is healthy:\n");
  for (int i = 0; i < 3; i++) ok &= call(&b, "call") == 0;

  printf(" the backend turns slow:\n");
  atomic_store(&backend_slow, 1);
  for (int i = 0; i < 3; i++) ok &= call(&b, "call") == WEFT_EDEADLINE;
  int before = atomic_load(&backend_calls);
  for (int i = 0; i < 4; i++) ok &= call(&b, "call") == E_CIRCUIT_OPEN;
  if (atomic_load(&backend_calls) != before) ok = 0, printf("UNEXPECTED: an open breaker called the backend\n");

  printf(" 2 s later, four callers at once while the backend is still slow:\n");
  weft_ctx_sleep(weft_background(), ms(2000) + ms(100));
  before = atomic_load(&backend_calls);
  caller cs[4];
  pthread_t th[4];
  for (int i = 0; i < 4; i++) {
    cs[i] = (caller){&b, 0};
    if (pthread_create(&th[i], NULL, caller_main, &cs[i]) != 0) return 0;
  }
  int timed_out = 0, refused = 0;
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    timed_out += cs[i].rc == WEFT_EDEADLINE;
    refused += cs[i].rc == E_CIRCUIT_OPEN;
  }
  printf("  one trial call reached the backend (%d), it timed out (%d), %d callers were refused\n",
         atomic_load(&backend_calls) - before, timed_out, refused);
  if (atomic_load(&backend_calls) - before != 1 || timed_out != 1 || refused != 3) ok = 0;

  printf(" the backend recovers; 2 s later:\n");
  atomic_store(&backend_slow, 0);
  weft_ctx_sleep(weft_background(), ms(2000) + ms(100));
  for (int i = 0; i < 3; i++) ok &= call(&b, "call") == 0;

  pthread_mutex_lock(&b.mu);
  printf("  states: %s\n", b.history);
  if (strcmp(b.history, "open -> half-open -> open -> half-open -> closed") != 0 || b.state != CLOSED) ok = 0;
  pthread_mutex_unlock(&b.mu);
  pthread_mutex_destroy(&b.mu);
  return ok;
}

int main(int argc, char **argv) {
  const char *env = getenv("WEFT_EXAMPLE_FAST");
  if ((argc > 1 && strcmp(argv[1], "--fast") == 0) || (env && *env && strcmp(env, "0") != 0)) scale = 5;
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (scale > 1) printf("(--fast: every duration / 5; figures below are in unscaled ms)\n");
  int ok1 = part1();
  int ok2 = part2();
  printf("live contexts at the end: %zu\n", weft_ctx_live_count());
  int ok = ok1 && ok2 && weft_ctx_live_count() == 0;
  printf("%s\n", ok ? "OK: the cascade named the layer whose budget ran out, and the breaker opened, refused, "
                      "half-opened and closed as it should"
                    : "FAILED");
  return ok ? 0 : 1;
}
