/* pipeline-by-hand: Go's pipelines and fan-out/fan-in written by hand with weft's channels and threads,
 * and what cancelling one looks like. (The example `pipeline` runs the same programs on weft's pipeline
 * API.)
 *
 * The Go guides build a pipeline from stages that each read one channel, write another and close it when
 * they are done, all under one context:
 *
 *     func sq(ctx context.Context, in <-chan int) <-chan int {
 *         out := make(chan int)
 *         go func() {
 *             defer close(out)
 *             for n := range in {
 *                 select {
 *                 case out <- n * n:
 *                 case <-ctx.Done():
 *                     return
 *                 }
 *             }
 *         }()
 *         return out
 *     }
 *     ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
 *     defer cancel()
 *     for v := range keepEven(ctx, add10(ctx, sq(ctx, gen(ctx, 1, 10)))) { ... }   // the pipeline
 *     in := gen(ctx, 1, 12)
 *     for v := range merge(ctx, sq(ctx, in), sq(ctx, in), sq(ctx, in)) { ... }     // fan-out, fan-in
 *
 * Part 1: the Go code above, line for line. A stage is a thread that receives from its input channel until
 *   it is closed (WEFT_ECLOSED is `range` ending), sends to its output channel, and closes the output when
 *   it returns (`defer close(out)`). Every send and receive takes the context, which is Go's
 *   `select { case out <- v: case <-ctx.Done(): }` in one call. The fan-in is weft_chan_merge().
 * Part 2, cancellation: an endless source, three squaring threads, the fan-in written out as a weft_select()
 *   loop, and a consumer that only wants the first five results. The consumer waits until every stage is
 *   stuck behind a full channel, then cancels the context: every stage returns at once with "context
 *   canceled", every thread is joined, and a ledger shows where each item made went — consumed, still
 *   buffered, or dropped in a stage's hands — so nothing leaked. The stages get the context only; the
 *   consumer, which created it, keeps the cancel handle, as in Go.
 *
 *   pipeline-by-hand [--fast]   --fast (or WEFT_EXAMPLE_FAST=1) shortens the simulated work of the squaring
 *                               threads in part 1b (4 ms -> 1 ms per item). No other timing matters.
 * Exits 0 when every pipeline gave exactly the expected set, every cancelled stage returned "context
 * canceled" after the cancel (and within a wide window), every item is accounted for, and no context is
 * left alive. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft/weft.h>

#include "../common/bag.h"

#define CAUSE_ENOUGH (-6000) /* the consumer has what it needs (a cause of our own) */

static int64_t work = WEFT_MS(4); /* simulated work per item in the squaring threads */


static double ms_since(int64_t t) { return (double)(weft_now() - t) / 1e6; }

/* ==== part 1: by hand, with channels and threads ======================================================= */

/* One step of a stage: writes the output for `in` and returns true, or returns false to drop the item. */
typedef bool (*step_fn)(int64_t in, int64_t *out);
static bool step_square(int64_t in, int64_t *out) { return *out = in * in, true; }
static bool step_add10(int64_t in, int64_t *out) { return *out = in + 10, true; }
static bool step_even(int64_t in, int64_t *out) { return *out = in, in % 2 == 0; }

enum { KIND_GEN, KIND_STEP, KIND_MERGE, MAX_IN = 8 };

/* A stage: Go's goroutine with its channels. Results are written by the stage's thread, read after join. */
typedef struct stage_t {
  const char *name;
  int kind;
  weft_ctx *ctx;
  weft_chan *in[MAX_IN]; /* KIND_STEP: in[0]; KIND_MERGE: in[0..nin) */
  size_t nin;
  weft_chan *out;
  step_fn fn;       /* KIND_STEP */
  int64_t work;     /* KIND_STEP: simulated work per item */
  int64_t from, to; /* KIND_GEN: from..to, to < 0: until cancelled */
  pthread_t th;
  int rc;          /* what the stage's loop returned: 0 (input closed, or all sent) or the context's error */
  int64_t got;     /* items received (a generator: items made) */
  int64_t sent;    /* items sent on */
  int64_t dropped; /* items in hand when a send or the work was cut short (a pointer item is freed here) */
  int64_t ended;   /* weft_now() when it returned */
} stage_t;

/* What a Go program leaves to the runtime and the garbage collector: the threads to join and the channels
 * to free once nobody uses them. */
typedef struct plumbing {
  stage_t *st[16];
  size_t nst;
  weft_chan *ch[16];
  size_t nch;
  weft_chan_pump *pump[2];
  size_t npump;
  int pump_rc[2];
  size_t cap;              /* capacity of every channel: 0 = unbuffered, as Go's make(chan int) */
  int64_t left;            /* items still buffered in a channel when it was freed (its discard hook) */
  atomic_llong pump_drops; /* items a merge pump had in hand when cancelled (its discard hook) */
  bool failed;             /* a channel or thread could not be made */
} plumbing;

static void count_left(void *elem, void *arg) { ((plumbing *)arg)->left++; }
static void count_pump_drop(void *elem, void *arg) { atomic_fetch_add(&((plumbing *)arg)->pump_drops, 1); }

static weft_chan *new_chan(plumbing *pl) {
  weft_chan_opts o = WEFT_CHAN_OPTS_INIT;
  o.elem_size = sizeof(int64_t);
  o.capacity = pl->cap;
  o.discard = count_left; /* plain numbers: just count what was still buffered */
  o.discard_arg = pl;
  weft_chan *ch = NULL;
  if (pl->nch == sizeof pl->ch / sizeof pl->ch[0] || weft_chan_create_opts(&o, &ch) != 0) return NULL;
  return pl->ch[pl->nch++] = ch;
}

static int run_gen(stage_t *s) {
  for (int64_t v = s->from; s->to < 0 || v <= s->to; v++) {
    s->got++;
    int rc = weft_chan_send(s->out, s->ctx, &v); /* select { case out <- v: case <-ctx.Done(): return } */
    if (rc != 0) return s->dropped++, rc;
    s->sent++;
  }
  return 0;
}

static int run_step(stage_t *s) {
  for (;;) {
    int64_t v, w;
    int rc = weft_chan_recv(s->in[0], s->ctx, &v); /* for v := range in, or <-ctx.Done() */
    if (rc == WEFT_ECLOSED) return 0;              /* upstream closed its channel and it is drained */
    if (rc != 0) return rc;                        /* the context ended */
    s->got++;
    if (s->work > 0 && (rc = weft_ctx_sleep(s->ctx, s->work)) != 0) return s->dropped++, rc;
    if (!s->fn(v, &w)) continue; /* filtered out */
    rc = weft_chan_send(s->out, s->ctx, &w);
    if (rc != 0) return s->dropped++, rc;
    s->sent++;
  }
}

/* Go's merge() as one select loop instead of a goroutine per input: receive from whichever input is
 * ready, pass it on; an input that is closed and drained is disabled by setting its channel to NULL —
 * Go's "set the channel to nil" trick. weft_chan_merge() is this loop, ready-made. */
static int run_merge(stage_t *s) {
  int64_t v;
  weft_select_case cases[MAX_IN];
  for (size_t i = 0; i < s->nin; i++) cases[i] = WEFT_RECV_CASE(s->in[i], &v);
  size_t open = s->nin;
  while (open > 0) {
    int k = weft_select(s->ctx, cases, s->nin);
    if (k < 0) return k; /* the context ended */
    if (cases[k].err == WEFT_ECLOSED) {
      cases[k].chan = NULL, open--;
      continue;
    }
    s->got++;
    int rc = weft_chan_send(s->out, s->ctx, &v);
    if (rc != 0) return s->dropped++, rc;
    s->sent++;
  }
  return 0;
}

static void *stage_main(void *arg) {
  stage_t *s = arg;
  s->rc = s->kind == KIND_GEN ? run_gen(s) : s->kind == KIND_STEP ? run_step(s) : run_merge(s);
  s->ended = weft_now();
  weft_chan_close(s->out); /* defer close(out): the next stage's range loop ends once it has drained it */
  return NULL;
}

/* Starts a stage on its own thread and returns its output channel (NULL if something could not be made,
 * or if an input is NULL because an earlier call failed: the calls nest as in Go). */
static weft_chan *start(plumbing *pl, stage_t tmpl) {
  for (size_t i = 0; i < tmpl.nin; i++)
    if (tmpl.in[i] == NULL) return NULL;
  stage_t *s = malloc(sizeof *s);
  if (s == NULL || pl->nst == sizeof pl->st / sizeof pl->st[0] || (tmpl.out = new_chan(pl)) == NULL) {
    free(s);
    pl->failed = true;
    return NULL;
  }
  *s = tmpl;
  if (pthread_create(&s->th, NULL, stage_main, s) != 0) {
    free(s);
    pl->failed = true;
    return NULL;
  }
  pl->st[pl->nst++] = s;
  return s->out;
}

/* The Go functions, one line each: gen, sq, add10, keepEven, merge. */
static weft_chan *gen(plumbing *pl, weft_ctx *ctx, int64_t from, int64_t to) {
  return start(pl, (stage_t){.name = "gen", .kind = KIND_GEN, .ctx = ctx, .from = from, .to = to});
}
static weft_chan *sq(plumbing *pl, weft_ctx *ctx, weft_chan *in, const char *name, int64_t work) {
  return start(pl, (stage_t){.name = name, .kind = KIND_STEP, .ctx = ctx, .in = {in}, .nin = 1,
                             .fn = step_square, .work = work});
}
static weft_chan *add_ten(plumbing *pl, weft_ctx *ctx, weft_chan *in) {
  return start(pl, (stage_t){.name = "add 10", .kind = KIND_STEP, .ctx = ctx, .in = {in}, .nin = 1, .fn = step_add10});
}
static weft_chan *keep_even_chan(plumbing *pl, weft_ctx *ctx, weft_chan *in) {
  return start(pl, (stage_t){.name = "keep even", .kind = KIND_STEP, .ctx = ctx, .in = {in}, .nin = 1,
                             .fn = step_even});
}
/* Fan-in with the library's merge, on a thread of its own (a pump). */
static weft_chan *merge(plumbing *pl, weft_ctx *ctx, weft_chan *const *ins, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (ins[i] == NULL) return NULL;
  weft_chan *out = new_chan(pl);
  weft_pump_opts o = WEFT_PUMP_OPTS_INIT; /* closes out when done, as Go's merge does */
  o.discard = count_pump_drop;
  o.discard_arg = pl;
  if (out == NULL || weft_chan_merge_start(ctx, out, ins, n, &o, &pl->pump[pl->npump]) != 0) {
    pl->failed = true;
    return NULL;
  }
  pl->npump++;
  return out;
}
/* Fan-in with the select loop above. */
static weft_chan *merge_by_select(plumbing *pl, weft_ctx *ctx, weft_chan *const *ins, size_t n) {
  stage_t t = {.name = "merge", .kind = KIND_MERGE, .ctx = ctx, .nin = n};
  for (size_t i = 0; i < n && i < MAX_IN; i++) t.in[i] = ins[i];
  return start(pl, t);
}

/* Joins every thread, frees every channel (which fails with WEFT_EBUSY if a thread were still blocked on
 * one), and prints what each stage did. Returns false if anything went wrong. */
static bool plumbing_finish(plumbing *pl, int64_t cancelled_at) {
  bool ok = !pl->failed;
  for (size_t i = 0; i < pl->nst; i++) pthread_join(pl->st[i]->th, NULL);
  for (size_t i = 0; i < pl->npump; i++) pl->pump_rc[i] = weft_chan_pump_join(pl->pump[i]);
  for (size_t i = 0; i < pl->nch; i++)
    if (weft_chan_destroy(pl->ch[i]) != 0) ok = false, printf("  UNEXPECTED: a channel still had a waiter\n");
  for (size_t i = 0; i < pl->nst; i++) {
    const stage_t *s = pl->st[i];
    printf("    %-9s got %3lld  sent %3lld  dropped in hand %lld  returned: %s", s->name, (long long)s->got,
           (long long)s->sent, (long long)s->dropped,
           s->rc != 0 ? weft_strerror(s->rc) : s->kind == KIND_GEN ? "done (all sent)" : "done (input closed)");
    if (cancelled_at != 0) printf(", %.2f ms after the cancel", (double)(s->ended - cancelled_at) / 1e6);
    printf("\n");
  }
  for (size_t i = 0; i < pl->npump; i++)
    printf("    merge     (weft_chan_merge) returned: %s\n",
           pl->pump_rc[i] == 0 ? "done (inputs closed)" : weft_strerror(pl->pump_rc[i]));
  return ok;
}

static void plumbing_free(plumbing *pl) {
  for (size_t i = 0; i < pl->nst; i++) free(pl->st[i]);
}

/* for v := range out: receive until the channel is closed and drained. */
static int drain_into(weft_ctx *ctx, weft_chan *out, bag *b) {
  if (out == NULL) return WEFT_ENOMEM;
  for (;;) {
    int64_t v;
    int rc = weft_chan_recv(out, ctx, &v);
    if (rc == WEFT_ECLOSED) return 0;
    if (rc == 0) rc = bag_add(b, v);
    if (rc != 0) return rc;
  }
}

static bool part1_pipeline(void) {
  printf("\npart 1a: gen -> sq -> add10 -> keepEven, a thread and an unbuffered channel per stage\n");
  weft_ctx *ctx; /* ctx, cancel := context.WithTimeout(background, 3s) */
  weft_cancel *cancel;
  if (weft_ctx_with_timeout(weft_background(), WEFT_SEC(3), &ctx, &cancel) != 0) return false;
  plumbing pl = {.cap = 0};
  atomic_init(&pl.pump_drops, 0);
  bag got = {.n = 0};
  int rc = drain_into(ctx, keep_even_chan(&pl, ctx, add_ten(&pl, ctx, sq(&pl, ctx, gen(&pl, ctx, 1, 10), "sq", 0))),
                      &got);
  printf("  consumer: %s\n", rc == 0 ? "the output channel was closed: every stage is done" : weft_strerror(rc));
  if (rc != 0) weft_ctx_cancel(cancel); /* on a failure, stop the stages before joining them */
  bool ok = plumbing_finish(&pl, 0) && rc == 0;
  for (size_t i = 0; i < pl.nst; i++) ok = ok && pl.st[i]->rc == 0;
  ok = bag_check(&got, "result", want_even, 5) && ok;
  plumbing_free(&pl);
  weft_ctx_end(cancel); /* defer cancel() */
  return ok;
}

static bool part1_fan(void) {
  printf("\npart 1b: fan-out to 3 sq threads reading one channel, fan-in with weft_chan_merge\n");
  weft_ctx *ctx;
  weft_cancel *cancel;
  if (weft_ctx_with_timeout(weft_background(), WEFT_SEC(3), &ctx, &cancel) != 0) return false;
  plumbing pl = {.cap = 0};
  atomic_init(&pl.pump_drops, 0);
  bag got = {.n = 0};
  weft_chan *in = gen(&pl, ctx, 1, FAN_N);
  weft_chan *c[3] = {sq(&pl, ctx, in, "sq 1", work), sq(&pl, ctx, in, "sq 2", work), sq(&pl, ctx, in, "sq 3", work)};
  int rc = drain_into(ctx, merge(&pl, ctx, c, 3), &got);
  printf("  consumer: %s\n", rc == 0 ? "the merged channel was closed: every stage is done" : weft_strerror(rc));
  if (rc != 0) weft_ctx_cancel(cancel);
  bool ok = plumbing_finish(&pl, 0) && rc == 0 && pl.pump_rc[0] == 0;
  for (size_t i = 0; i < pl.nst; i++) ok = ok && pl.st[i]->rc == 0;
  int64_t want[FAN_N];
  for (int i = 0; i < FAN_N; i++) want[i] = (int64_t)(i + 1) * (i + 1);
  ok = bag_check(&got, "merged", want, FAN_N) && ok;
  plumbing_free(&pl);
  weft_ctx_end(cancel);
  return ok;
}

/* ==== part 2: a consumer that stops early ============================================================== */


static bool chans_full(void *arg) {
  plumbing *pl = arg;
  for (size_t i = 0; i < pl->nch; i++)
    if (weft_chan_len(pl->ch[i]) < weft_chan_cap(pl->ch[i])) return false;
  return true;
}

static bool part2_cancel(void) {
  printf("\npart 2: cancellation: endless gen -> sq x3 -> merge (select loop) -> first %d, "
         "channels of %d\n", FIRST, SMALL);
  weft_ctx *ctx; /* ctx, cancel := context.WithCancel(background): the stages get ctx, cancel stays here */
  weft_cancel *cancel;
  if (weft_ctx_with_cancel(weft_background(), &ctx, &cancel) != 0) return false;
  plumbing pl = {.cap = SMALL};
  atomic_init(&pl.pump_drops, 0);
  bag got = {.n = 0};
  weft_chan *in = gen(&pl, ctx, 1, -1);
  weft_chan *c[3] = {sq(&pl, ctx, in, "sq 1", 0), sq(&pl, ctx, in, "sq 2", 0), sq(&pl, ctx, in, "sq 3", 0)};
  weft_chan *out = merge_by_select(&pl, ctx, c, 3);
  int rc = out == NULL ? WEFT_ENOMEM : 0;
  while (rc == 0 && got.n < FIRST) {
    int64_t v;
    if ((rc = weft_chan_recv(out, ctx, &v)) == 0) bag_add(&got, v);
  }
  bool full = rc == 0 && wait_until(chans_full, &pl);
  printf("  consumer: got %zu results; every channel is full (%s), so every stage is blocked in a send\n", got.n,
         full ? "seen" : "NOT seen");
  printf("  consumer: cancel()\n");
  int64_t t_cancel = weft_now();
  weft_ctx_cancel_cause(cancel, CAUSE_ENOUGH);
  bool ok = plumbing_finish(&pl, t_cancel) && rc == 0 && full;
  printf("  every thread joined %.2f ms after the cancel; every channel freed (no thread blocked on one)\n",
         ms_since(t_cancel));
  int64_t made = 0, dropped = 0;
  for (size_t i = 0; i < pl.nst; i++) {
    const stage_t *s = pl.st[i];
    if (s->kind == KIND_GEN) made = s->got;
    dropped += s->dropped;
    /* Causality: each stage ended because of the cancel, after it, and promptly (a very wide window). */
    if (s->rc != WEFT_ECANCELED || s->ended < t_cancel || s->ended - t_cancel > WEFT_SEC(2)) ok = false;
  }
  bool ledger = made == (int64_t)got.n + pl.left + dropped;
  printf("  ledger: %lld made = %zu consumed + %lld left in channels + %lld dropped in hand: %s\n", (long long)made,
         got.n, (long long)pl.left, (long long)dropped, ledger ? "nothing lost" : "MISMATCH");
  /* The merge is fair, not ordered: the first five out may be any five squares — but only squares. */
  bool squares = all_squares(&got, FIRST);
  printf("  consumed %zu values, %s\n", got.n, squares ? "all squares" : "NOT all squares");
  plumbing_free(&pl);
  weft_ctx_end(cancel);
  return ok && ledger && squares;
}

int main(int argc, char **argv) {
  const char *env = getenv("WEFT_EXAMPLE_FAST");
  if ((argc > 1 && strcmp(argv[1], "--fast") == 0) || (env && *env && strcmp(env, "0") != 0)) work = WEFT_MS(1);
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("pipeline-by-hand: Go's pipeline and fan-out/fan-in with channels and threads%s\n",
         work < WEFT_MS(4) ? " (--fast: 1 ms of work per square instead of 4)" : "");
  bool ok = true;
  if (!part1_pipeline()) ok = false, printf("UNEXPECTED part 1a\n");
  if (!part1_fan()) ok = false, printf("UNEXPECTED part 1b\n");
  if (!part2_cancel()) ok = false, printf("UNEXPECTED part 2\n");
  printf("\nlive contexts at the end: %zu\n", weft_ctx_live_count());
  if (weft_ctx_live_count() != 0) ok = false;
  printf("%s\n", ok ? "OK: by hand, pipelines and fan-in gave exactly the expected sets; cancel stopped every "
                      "stage, nothing leaked"
                    : "FAILED");
  return ok ? 0 : 1;
}
