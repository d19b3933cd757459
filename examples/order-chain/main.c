/* order-chain: auth -> inventory -> payment -> database -> email, each step with its own timeout under
 * the request's deadline; a cancel midway stops the rest; the confirmation email runs detached.
 *
 * In Go each step does `ctx, cancel := context.WithTimeout(reqCtx, budget); defer cancel()`, so a step
 * gets min(its budget, what is left of the request). The email is sent after the response with
 * `context.WithoutCancel(reqCtx)` (plus a timeout of its own): it keeps the request id for the logs but
 * does not die with the request. Here:
 *   - weft_ctx_with_timeout_cause() gives every step a cause of its own, so a failure tells "the step's own
 *     timeout" (its cause) from "the request's deadline" (WEFT_EDEADLINE, inherited) at a glance;
 *   - weft_ctx_deadline() shows each step's effective budget, clipped by the request's deadline;
 *   - the email thread gets weft_ctx_without_cancel() of the request, and still reads the request id.
 *
 * Four requests:
 *   order-1001  everything in budget; 200 to the client, then the email is sent after the request ended
 *   order-1002  payment hangs past its own 2 s budget: its own timeout; database and email never run
 *   order-1003  a tight 2.5 s request deadline: the database step gets what is left, not its 1 s
 *   order-1004  the client hangs up during inventory: canceled; nothing after it runs
 *
 *   order-chain [--fast]     --fast (or WEFT_EXAMPLE_FAST=1) divides every duration by 4.
 * Exits 0 when every request ended as described above. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft/weft.h>

#define CAUSE_CLIENT_GONE (-1000)
#define CAUSE_STEP(i) (-1100 - (i)) /* "step i's own timeout" */

static int64_t scale = 1;
static int64_t ms(int64_t m) { return WEFT_MS(m) / scale; }

static const char request_id_key; /* the request id, a const char * value */

enum { AUTH, INVENTORY, PAYMENT, DATABASE, NSTEPS };
static const char *const step_names[NSTEPS] = {"auth", "inventory", "payment", "database"};
static const int64_t step_budget_ms[NSTEPS] = {500, 1000, 2000, 1000};

static const char *cause_name(int cause) {
  static char buf[64];
  if (cause == CAUSE_CLIENT_GONE) return "the client hung up";
  if (cause <= CAUSE_STEP(0) && cause > CAUSE_STEP(NSTEPS)) {
    snprintf(buf, sizeof buf, "%s's own timeout", step_names[CAUSE_STEP(0) - cause]);
    return buf;
  }
  if (cause == WEFT_EDEADLINE) return "the request's deadline";
  return weft_strerror(cause);
}

/* Runs step i for `work_ms` under its own timeout derived from the request. Returns 0 or the error. */
static int run_step(weft_ctx *req, int i, int64_t work_ms, int *cause) {
  weft_ctx *ctx;
  weft_cancel *cancel;
  int rc = weft_ctx_with_timeout_cause(req, ms(step_budget_ms[i]), CAUSE_STEP(i), &ctx, &cancel);
  if (rc != 0) return rc;
  int64_t effective = weft_ctx_deadline(ctx) - weft_now(); /* min(own budget, what the request has left) */
  rc = weft_ctx_sleep(ctx, ms(work_ms));                  /* the step's work */
  *cause = weft_ctx_cause(ctx);
  printf("  %-10s budget %4lld ms, effective %4lld ms, needs %4lld ms -> %s", step_names[i],
         (long long)step_budget_ms[i], (long long)(effective * scale / 1000000), (long long)work_ms,
         rc == 0 ? "ok" : weft_strerror(rc));
  if (rc != 0) printf(" (%s)", cause_name(*cause));
  printf("\n");
  weft_ctx_end(cancel); /* defer cancel() */
  return rc;
}

/* ---- the detached confirmation email ---------------------------------------------------------------- */

typedef struct email {
  weft_ctx *ctx; /* without-cancel of the request, plus a 1 s timeout of its own */
  pthread_t thread;
  bool started;
  int result;
  const char *request_id;
  atomic_llong sent_at;
} email;

static void *email_main(void *arg) {
  email *e = arg;
  e->request_id = weft_ctx_value(e->ctx, &request_id_key); /* the values survive WithoutCancel */
  e->result = weft_ctx_sleep(e->ctx, ms(300));             /* talking to the mail server */
  atomic_store(&e->sent_at, weft_now());
  printf("  email      (detached) confirmation for %s: %s\n", e->request_id,
         e->result == 0 ? "sent" : weft_strerror(e->result));
  return NULL;
}

/* ---- a request -------------------------------------------------------------------------------------- */

typedef struct request {
  const char *id;
  int64_t deadline_ms;
  int64_t work_ms[NSTEPS];
  int64_t hang_up_after_ms; /* 0: the client waits */
  /* results */
  int failed_step; /* -1: none */
  int result, cause;
  int steps_run;
  atomic_llong ended_at;
  email mail;
  weft_cancel *mail_cancel; /* the right to cancel mail.ctx: the handler's, which made it (the email thread
                             * gets only the context); main ends it after joining the thread */
} request;

typedef struct hang_up {
  weft_ctx *req;
  weft_cancel *cancel; /* the request's cancel, handed over on purpose (see below) */
  int64_t after;
} hang_up;

/* The client's side runs on its own thread and holds its own reference to the request's context: the
 * handler may end the context while this thread is still using it (in C, unlike Go, every thread that
 * touches a context must hold a reference for as long as it does; that reference also keeps the cancel
 * handle valid). It plays the part of Go's HTTP server noticing the connection close, which is the one
 * component with the right to cancel r.Context(): so the handler, which created the request's context,
 * deliberately gives it the cancel handle, as Go code passes a cancel func. The steps get the context
 * only. */
static void *client_hangs_up(void *arg) {
  hang_up *h = arg;
  if (weft_ctx_sleep(h->req, h->after) == 0) weft_ctx_cancel_cause(h->cancel, CAUSE_CLIENT_GONE);
  weft_ctx_release(h->req);
  return NULL;
}

static int handle(request *r) {
  printf("%s (deadline %lld ms%s):\n", r->id, (long long)r->deadline_ms,
         r->hang_up_after_ms ? ", the client hangs up early" : "");
  weft_ctx *deadline_ctx, *req;
  weft_cancel *deadline_cancel;
  int rc = weft_ctx_with_timeout(weft_background(), ms(r->deadline_ms), &deadline_ctx, &deadline_cancel);
  if (rc != 0) return rc;
  rc = weft_ctx_with_value(deadline_ctx, &request_id_key, (void *)r->id, NULL, &req);
  if (rc != 0) {
    weft_ctx_end(deadline_cancel);
    return rc;
  }
  hang_up h = {weft_ctx_retain(deadline_ctx), deadline_cancel, ms(r->hang_up_after_ms)};
  pthread_t client;
  bool client_started = r->hang_up_after_ms > 0 && pthread_create(&client, NULL, client_hangs_up, &h) == 0;
  if (!client_started) weft_ctx_release(h.req);

  r->failed_step = -1;
  r->result = 0;
  for (int i = 0; i < NSTEPS; i++) {
    if (weft_ctx_err(req) != 0) { /* the request is over: do not start anything */
      r->result = weft_ctx_err(req);
      r->cause = weft_ctx_cause(req);
      break;
    }
    r->steps_run++;
    rc = run_step(req, i, r->work_ms[i], &r->cause);
    if (rc != 0) {
      r->failed_step = i;
      r->result = rc;
      break;
    }
  }
  for (int i = r->steps_run; i < NSTEPS; i++) printf("  %-10s not run\n", step_names[i]);
  if (r->result == 0) {
    printf("  -> 200 OK to the client; the confirmation email goes out on its own\n");
    /* context.WithoutCancel(req) + its own timeout: outlives the request, keeps the request id. */
    weft_ctx *detached;
    if (weft_ctx_without_cancel(req, &detached) == 0) {
      if (weft_ctx_with_timeout(detached, ms(1000), &r->mail.ctx, &r->mail_cancel) == 0)
        r->mail.started = pthread_create(&r->mail.thread, NULL, email_main, &r->mail) == 0;
      weft_ctx_release(detached); /* r->mail.ctx holds it */
    }
  } else {
    printf("  -> %s to the client: %s (%s); no email\n", r->cause == CAUSE_CLIENT_GONE ? "nothing" : "503",
           weft_strerror(r->result), cause_name(r->cause));
  }
  /* The handler returns: the request's context ends (Go cancels r.Context() here). */
  weft_ctx_release(req);
  weft_ctx_end(deadline_cancel);
  atomic_store(&r->ended_at, weft_now());
  if (client_started) pthread_join(client, NULL);
  return 0;
}

int main(int argc, char **argv) {
  const char *env = getenv("WEFT_EXAMPLE_FAST");
  if ((argc > 1 && strcmp(argv[1], "--fast") == 0) || (env && *env && strcmp(env, "0") != 0)) scale = 4;
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("order-chain: auth 500 ms, inventory 1 s, payment 2 s, database 1 s budgets under each request's "
         "deadline%s\n", scale > 1 ? " (--fast: every duration / 4)" : "");

  request rs[] = {
      {.id = "order-1001", .deadline_ms = 5000, .work_ms = {100, 200, 400, 200}},
      {.id = "order-1002", .deadline_ms = 5000, .work_ms = {100, 200, 6000, 200}},
      {.id = "order-1003", .deadline_ms = 2500, .work_ms = {100, 800, 1200, 900}},
      {.id = "order-1004", .deadline_ms = 5000, .work_ms = {100, 900, 400, 200}, .hang_up_after_ms = 400},
  };
  enum { NR = sizeof rs / sizeof rs[0] };
  for (int i = 0; i < NR; i++)
    if (handle(&rs[i]) != 0) return 1;
  for (int i = 0; i < NR; i++)
    if (rs[i].mail.started) pthread_join(rs[i].mail.thread, NULL);

  int ok = 1;
  request *a = &rs[0], *b = &rs[1], *c = &rs[2], *d = &rs[3];
  /* 1001: all steps, then an email sent after the request ended, carrying the request id. */
  if (a->result != 0 || a->steps_run != NSTEPS || !a->mail.started || a->mail.result != 0 ||
      a->mail.request_id == NULL || strcmp(a->mail.request_id, "order-1001") != 0 ||
      atomic_load(&a->mail.sent_at) <= atomic_load(&a->ended_at))
    ok = 0, printf("UNEXPECTED: order-1001 should succeed and its email go out after the request ended\n");
  /* 1002: payment's own timeout, nothing after it. */
  if (b->result != WEFT_EDEADLINE || b->failed_step != PAYMENT || b->cause != CAUSE_STEP(PAYMENT) ||
      b->steps_run != PAYMENT + 1 || b->mail.started)
    ok = 0, printf("UNEXPECTED: order-1002 should stop at payment's own timeout\n");
  /* 1003: the request's deadline, reached in the database step whose budget it clipped. */
  if (c->result != WEFT_EDEADLINE || c->failed_step != DATABASE || c->cause != WEFT_EDEADLINE || c->mail.started)
    ok = 0, printf("UNEXPECTED: order-1003 should stop at the request's deadline during the database step\n");
  /* 1004: the client hung up during inventory; payment and the rest never ran. */
  if (d->result != WEFT_ECANCELED || d->failed_step != INVENTORY || d->cause != CAUSE_CLIENT_GONE ||
      d->steps_run != INVENTORY + 1 || d->mail.started)
    ok = 0, printf("UNEXPECTED: order-1004 should be cancelled during inventory\n");
  for (int i = 0; i < NR; i++) weft_ctx_end(rs[i].mail_cancel); /* NULL (a no-op) where no email was made */
  printf("live contexts at the end: %zu\n", weft_ctx_live_count());
  if (weft_ctx_live_count() != 0) ok = 0;
  printf("%s\n", ok ? "OK: the chain stopped where it should, and the detached email outlived its request"
                    : "FAILED");
  return ok ? 0 : 1;
}
