/* restaurant: an order with a 30 s timeout that the customer can also cancel; the kitchen checks Done.
 *
 * The Go guides tell this one as:
 *
 *     ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
 *     defer cancel()
 *     go kitchen(ctx, order)          // between and during steps: select { case <-ctx.Done(): ... }
 *     ... the customer may call cancel() and walk out ...
 *
 * In weft the order's context is weft_ctx_with_timeout(); the customer walks out with
 * weft_ctx_cancel_cause() (so the kitchen can tell "customer left" from "took too long"); the kitchen
 * checks weft_ctx_err() before each step (one atomic load) and cooks with weft_ctx_sleep(), which returns
 * the moment the order is off.
 *
 * Three orders cook at once:
 *   soup        chop 2 s, simmer 8 s, plate 1 s        -> served well inside 30 s
 *   slow roast  prep 5 s, roast 40 s, rest 5 s         -> the 30 s deadline stops the roast
 *   pizza       dough 4 s, bake 20 s, slice 1 s        -> the customer leaves after 6 s
 *
 *   restaurant [--fast]     --fast (or WEFT_EXAMPLE_FAST=1) runs the clock 50x faster (30 s = 0.6 s).
 * Exits 0 when each order ended as described: served, deadline exceeded during the roast, and cancelled
 * by the customer during the bake — each stopped after its cause and before the step would have ended. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft/weft.h>

#define CUSTOMER_LEFT (-1001) /* a cause of our own: any negative code that is not weft's */

static int64_t scale = 1; /* demo seconds are divided by this */
static int64_t t0;

static int64_t demo_sec(double s) { return (int64_t)(s * 1e9) / scale; }
static double now_demo(void) { return (double)((weft_now() - t0) * scale) / 1e9; }

typedef struct step {
  const char *what;
  double secs;
} step;

typedef struct order {
  const char *dish;
  step steps[3];
  double leave_after; /* the customer walks out after this many seconds; 0 = waits */
  weft_ctx *ctx;      /* the order's context: 30 s deadline, cancellable by the customer */
  weft_cancel *cancel; /* the right to cancel it: main creates it and hands it to the customer alone (the
                        * kitchen gets only the context) */
  /* results, written by the kitchen thread and read after join */
  int result;
  int cause;
  int stopped_in;     /* index of the step that was interrupted, -1 if none */
  double stopped_at;  /* demo seconds since opening */
} order;

static const char *cause_name(int cause) {
  return cause == CUSTOMER_LEFT ? "the customer left" : weft_strerror(cause);
}

/* The kitchen: cooks each step unless the order is off. */
static void *kitchen(void *arg) {
  order *o = arg;
  o->stopped_in = -1;
  o->result = 0;
  for (int i = 0; i < 3; i++) {
    int rc = weft_ctx_err(o->ctx); /* "select { case <-ctx.Done(): return }" before starting a step */
    if (rc == 0) {
      printf("[%5.1fs] kitchen: %-10s %s (%.0f s)\n", now_demo(), o->dish, o->steps[i].what, o->steps[i].secs);
      rc = weft_ctx_sleep(o->ctx, demo_sec(o->steps[i].secs)); /* cooking; returns early when the order is off */
    }
    if (rc != 0) {
      o->result = rc;
      o->cause = weft_ctx_cause(o->ctx);
      o->stopped_in = i;
      o->stopped_at = now_demo();
      printf("[%5.1fs] kitchen: %-10s stopped while '%s': %s (cause: %s) - the half-made dish goes in the bin\n",
             o->stopped_at, o->dish, o->steps[i].what, weft_strerror(rc), cause_name(o->cause));
      return NULL;
    }
  }
  o->stopped_at = now_demo();
  printf("[%5.1fs] kitchen: %-10s served\n", o->stopped_at, o->dish);
  return NULL;
}

/* The customer: waits at the table, and walks out after a while unless the order ended first. */
static void *customer(void *arg) {
  order *o = arg;
  if (weft_ctx_sleep(o->ctx, demo_sec(o->leave_after)) == 0) { /* the order is still cooking */
    printf("[%5.1fs] customer: waited %.0f s for the %s, leaving (cancel)\n", now_demo(), o->leave_after, o->dish);
    weft_ctx_cancel_cause(o->cancel, CUSTOMER_LEFT);
  }
  return NULL;
}

int main(int argc, char **argv) {
  const char *env = getenv("WEFT_EXAMPLE_FAST");
  if ((argc > 1 && strcmp(argv[1], "--fast") == 0) || (env && *env && strcmp(env, "0") != 0)) scale = 50;
  setvbuf(stdout, NULL, _IOLBF, 0);

  order orders[] = {
      {"soup", {{"chop", 2}, {"simmer", 8}, {"plate", 1}}, 0, NULL, NULL, 0, 0, 0, 0},
      {"slow roast", {{"prep", 5}, {"roast", 40}, {"rest", 5}}, 0, NULL, NULL, 0, 0, 0, 0},
      {"pizza", {{"dough", 4}, {"bake", 20}, {"slice", 1}}, 6, NULL, NULL, 0, 0, 0, 0},
  };
  enum { N = sizeof orders / sizeof orders[0] };
  const double timeout = 30;
  printf("restaurant: every order gets a %.0f s deadline%s\n", timeout,
         scale > 1 ? " (the clock runs 50x faster: --fast)" : "");

  t0 = weft_now();
  pthread_t cook[N], cust[N];
  for (int i = 0; i < N; i++) {
    /* ctx, cancel := context.WithTimeout(background, 30s) */
    if (weft_ctx_with_timeout(weft_background(), demo_sec(timeout), &orders[i].ctx, &orders[i].cancel) != 0)
      return 1;
    printf("[%5.1fs] order: %s%s\n", now_demo(), orders[i].dish,
           orders[i].leave_after > 0 ? " (an impatient customer)" : "");
  }
  for (int i = 0; i < N; i++) {
    if (pthread_create(&cook[i], NULL, kitchen, &orders[i]) != 0) return 1;
    if (orders[i].leave_after > 0 && pthread_create(&cust[i], NULL, customer, &orders[i]) != 0) return 1;
  }
  for (int i = 0; i < N; i++) {
    pthread_join(cook[i], NULL);
    if (orders[i].leave_after > 0) pthread_join(cust[i], NULL);
  }

  /* Check the story: each order ended for its reason, after the cause and before the step would have ended. */
  const order *soup = &orders[0], *roast = &orders[1], *pizza = &orders[2];
  double roast_step_end = roast->steps[0].secs + roast->steps[1].secs;
  double pizza_step_end = pizza->steps[0].secs + pizza->steps[1].secs;
  int ok = 1;
  if (soup->result != 0) ok = 0, printf("UNEXPECTED: the soup was not served\n");
  if (roast->result != WEFT_EDEADLINE || roast->stopped_in != 1 || roast->stopped_at < timeout - 0.5 ||
      roast->stopped_at >= roast_step_end)
    ok = 0, printf("UNEXPECTED: the roast should stop at the %.0f s deadline, while roasting\n", timeout);
  if (pizza->result != WEFT_ECANCELED || pizza->cause != CUSTOMER_LEFT || pizza->stopped_in != 1 ||
      pizza->stopped_at < pizza->leave_after - 0.5 || pizza->stopped_at >= pizza_step_end)
    ok = 0, printf("UNEXPECTED: the pizza should stop when the customer leaves, while baking\n");

  for (int i = 0; i < N; i++) weft_ctx_end(orders[i].cancel); /* defer cancel() */
  printf("summary: soup %s; slow roast: %s at %.1f s; pizza: %s at %.1f s; live contexts %zu\n",
         soup->result == 0 ? "served" : "NOT served", weft_strerror(roast->result), roast->stopped_at,
         cause_name(pizza->cause), pizza->stopped_at, weft_ctx_live_count());
  if (weft_ctx_live_count() != 0) ok = 0;
  printf("%s\n", ok ? "OK: every order ended as described" : "FAILED");
  return ok ? 0 : 1;
}
