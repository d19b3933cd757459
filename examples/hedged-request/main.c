/* hedged-request: the same query to three backends; the first success cancels the others.
 *
 * Go's version starts a goroutine per backend under `ctx, cancel := context.WithCancel(reqCtx)`, takes the
 * first good answer from a results channel and calls cancel(), which stops the losers. With a hedge delay
 * it asks the next backend only if no answer came within the delay (tail-latency hedging).
 *
 * Here the round's context does both jobs: the backends run under it, and the winner ends it with the cause
 * "answered" (weft_ctx_cancel_cause), which stops the losers and wakes the caller blocked in
 * weft_ctx_wait(); the answer itself sits in a small slot under a mutex that only the first success fills.
 * If every backend fails, the last failure ends the round with the cause "all failed". The request's own
 * deadline bounds everything, since the round's context is its child.
 *
 * Round 1, all three at once: alpha is slow (2 s), beta fails fast (50 ms), gamma answers in 200 ms.
 *   gamma wins at ~200 ms; alpha is cancelled mid-query; beta's failure does not end the round.
 * Round 2, hedged by 1 s: alpha answers in 60 ms, before the first hedge: beta and gamma are never asked.
 * Round 3, all three fail: the round ends with "all failed" as soon as the last one does.
 *
 *   hedged-request [--fast]     --fast (or WEFT_EXAMPLE_FAST=1) divides every duration by 4.
 * Exits 0 when each round's winner, losers and timings (causality, wide windows) are as described. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft/weft.h>

#define CAUSE_ANSWERED (-4000)   /* another backend answered first */
#define CAUSE_ALL_FAILED (-4001) /* no backend could answer */
#define E_BACKEND (-4002)        /* a backend's own error */

static int64_t scale = 1;
static int64_t ms(int64_t m) { return WEFT_MS(m) / scale; }

enum { N = 3 };
static const char *const names[N] = {"alpha", "beta", "gamma"};

typedef struct backend_spec {
  int64_t latency_ms;
  bool fails;
} backend_spec;

typedef enum { NOT_ASKED, ANSWERED, FAILED, CANCELED } outcome;
static const char *const outcome_names[] = {"never asked", "answered", "failed", "cancelled"};

typedef struct round {
  weft_ctx *ctx; /* the round: ends at the first success, when all failed, or with the request */
  backend_spec spec[N];
  int64_t hedge_delay; /* backend i is asked at i * hedge_delay */
  int64_t t0;
  pthread_mutex_t mu; /* guards the slot and the failure count */
  int winner;         /* -1 until the first success */
  char answer[64];
  int failures;
  /* per backend, written by its own thread, read after join */
  outcome out[N];
  int cause[N];
  int64_t ended_ms[N];
} round;

typedef struct backend_arg {
  round *r;
  int i;
} backend_arg;

static void *backend(void *arg) {
  backend_arg *a = arg;
  round *r = a->r;
  int i = a->i;
  /* Hedging: wait our turn unless the round ends first. */
  if (weft_ctx_sleep(r->ctx, i * r->hedge_delay) != 0) {
    r->out[i] = NOT_ASKED;
    r->cause[i] = weft_ctx_cause(r->ctx);
    r->ended_ms[i] = (weft_now() - r->t0) * scale / 1000000;
    return NULL;
  }
  int rc = weft_ctx_sleep(r->ctx, ms(r->spec[i].latency_ms)); /* the query, cancelled with the round */
  r->ended_ms[i] = (weft_now() - r->t0) * scale / 1000000;
  if (rc != 0) {
    r->out[i] = CANCELED;
    r->cause[i] = weft_ctx_cause(r->ctx);
    return NULL;
  }
  pthread_mutex_lock(&r->mu);
  if (r->spec[i].fails) {
    r->out[i] = FAILED;
    if (++r->failures == N) weft_ctx_cancel_cause(r->ctx, CAUSE_ALL_FAILED);
  } else {
    r->out[i] = ANSWERED;
    if (r->winner < 0) {
      r->winner = i;
      snprintf(r->answer, sizeof r->answer, "42 items in stock (from %s)", names[i]);
      weft_ctx_cancel_cause(r->ctx, CAUSE_ANSWERED); /* stops the others, wakes the caller */
    }
  }
  pthread_mutex_unlock(&r->mu);
  return NULL;
}

static const char *cause_name(int c) {
  return c == CAUSE_ANSWERED ? "another backend answered" : c == CAUSE_ALL_FAILED ? "all failed" : weft_strerror(c);
}

/* Runs one round under the request context. Returns the winner (or -1) and the caller's wait in ms. */
static int run_round(const char *title, weft_ctx *request, round *r, int64_t *took_ms) {
  printf("%s\n", title);
  r->winner = -1;
  r->failures = 0;
  pthread_mutex_init(&r->mu, NULL);
  if (weft_ctx_with_cancel(request, &r->ctx) != 0) return -2;
  r->t0 = weft_now();
  pthread_t th[N];
  backend_arg args[N];
  for (int i = 0; i < N; i++) {
    args[i] = (backend_arg){r, i};
    if (pthread_create(&th[i], NULL, backend, &args[i]) != 0) return -2;
  }
  int rc = weft_ctx_wait(r->ctx, WEFT_FOREVER); /* the first success, all failed, or the request's end */
  *took_ms = (weft_now() - r->t0) * scale / 1000000;
  pthread_mutex_lock(&r->mu);
  int winner = r->winner;
  if (winner >= 0) printf("  caller: after %lld ms: %s\n", (long long)*took_ms, r->answer);
  else printf("  caller: after %lld ms: no answer (%s, cause: %s)\n", (long long)*took_ms, weft_strerror(rc),
              cause_name(weft_ctx_cause(r->ctx)));
  pthread_mutex_unlock(&r->mu);
  for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < N; i++) {
    printf("    %-6s (%4lld ms%s) %-11s at %4lld ms", names[i], (long long)r->spec[i].latency_ms,
           r->spec[i].fails ? ", fails" : "", outcome_names[r->out[i]], (long long)r->ended_ms[i]);
    if (r->out[i] == CANCELED || r->out[i] == NOT_ASKED) printf(" (%s)", cause_name(r->cause[i]));
    printf("\n");
  }
  weft_ctx_end(r->ctx);
  pthread_mutex_destroy(&r->mu);
  return winner;
}

int main(int argc, char **argv) {
  const char *env = getenv("WEFT_EXAMPLE_FAST");
  if ((argc > 1 && strcmp(argv[1], "--fast") == 0) || (env && *env && strcmp(env, "0") != 0)) scale = 4;
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("hedged-request: one query, three backends, the first success wins%s\n",
         scale > 1 ? " (--fast: durations / 4; printed in unscaled ms)" : "");
  weft_ctx *request;
  if (weft_ctx_with_timeout(weft_background(), ms(3000), &request) != 0) return 1;
  int ok = 1;
  int64_t took;

  round r1 = {.spec = {{2000, false}, {50, true}, {200, false}}, .hedge_delay = 0};
  int w = run_round("round 1: all three at once", request, &r1, &took);
  /* gamma wins; it cannot be earlier than its 200 ms, and the caller did not wait for alpha's 2 s. */
  if (w != 2 || took < 200 || took >= 2000 || r1.out[0] != CANCELED || r1.cause[0] != CAUSE_ANSWERED ||
      r1.out[1] != FAILED || r1.ended_ms[0] >= 2000)
    ok = 0, printf("UNEXPECTED round 1\n");

  round r2 = {.spec = {{60, false}, {100, false}, {100, false}}, .hedge_delay = ms(1000)};
  w = run_round("round 2: hedged, the next backend asked only after 1 s without an answer", request, &r2, &took);
  if (w != 0 || took >= 1000 || r2.out[1] != NOT_ASKED || r2.out[2] != NOT_ASKED || r2.cause[1] != CAUSE_ANSWERED)
    ok = 0, printf("UNEXPECTED round 2\n");

  round r3 = {.spec = {{100, true}, {50, true}, {150, true}}, .hedge_delay = 0};
  w = run_round("round 3: every backend fails", request, &r3, &took);
  if (w != -1 || took < 150 || took >= 1000 || r3.failures != N || weft_ctx_err(request) != 0)
    ok = 0, printf("UNEXPECTED round 3\n");

  weft_ctx_end(request);
  printf("live contexts at the end: %zu\n", weft_ctx_live_count());
  if (weft_ctx_live_count() != 0) ok = 0;
  printf("%s\n", ok ? "OK: first success won and cancelled the others; hedges only when needed" : "FAILED");
  return ok ? 0 : 1;
}
