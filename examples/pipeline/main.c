/* pipeline: Go's pipelines and fan-out/fan-in with weft's pipeline API, and what cancelling one looks like.
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
 * Here the same programs are a source, stages and a sink (weft/pipeline.h): weft starts the threads, wires
 * them with bounded channels, fans a stage out over `workers` threads and back in, and joins everything
 * before weft_pipeline_run() returns. The example pipeline-by-hand writes the Go code line for line with
 * channels and threads instead.
 * Part 1: the two programs above: gen -> sq -> add10 -> keepEven (1a), and 1..12 squared by a stage fanned
 *   out over three workers, whose outputs fan back in to the sink (1b).
 * Part 2, cancellation: an endless source, three squaring workers, and a consumer (the sink) that only wants
 *   the first five results. The consumer waits until every stage is stuck behind a full channel, then
 *   cancels the context: the run returns at once with "context canceled" and the consumer's cause, every
 *   thread is joined, and a ledger shows that every item emitted was consumed or discarded by the pipeline
 *   exactly once, so nothing leaked. The sink, a stage function, gets only the run's context; the code that
 *   created the context holds the right to cancel it and hands that cancel handle to the consumer on
 *   purpose, as Go code passes cancel to the one goroutine meant to call it.
 *
 *   pipeline [--fast]     --fast (or WEFT_EXAMPLE_FAST=1) shortens the simulated work of the squaring
 *                         workers in part 1b (4 ms -> 1 ms per item). No other timing matters.
 * Exits 0 when every pipeline gave exactly the expected set, the cancelled run returned "context canceled"
 * with the consumer's cause after the cancel (and within a wide window), every item is accounted for, and
 * no context is left alive. */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft/weft.h>

#include "../common/bag.h"

#define CAUSE_ENOUGH (-6000) /* the consumer has what it needs (a cause of our own) */

static int64_t work = WEFT_MS(4); /* simulated work per item in the squaring workers */


/* ==== part 1: the pipeline API ========================================================================= */

typedef struct range {
  int64_t from, to; /* inclusive; to < 0: count up until stopped */
} range;

/* The source: Go's gen(). It stops when emit fails (the run was cancelled or failed). */
static int numbers(weft_ctx *ctx, weft_emitter *em, void *arg) {
  const range *r = arg;
  for (int64_t i = r->from; r->to < 0 || i <= r->to; i++) {
    int rc = weft_pipeline_emit(em, &i);
    if (rc != 0) return rc;
  }
  return 0;
}

static int square(weft_ctx *ctx, const void *in, void *out, void *arg) {
  int64_t v = *(const int64_t *)in;
  *(int64_t *)out = v * v;
  return 0;
}

static int add10(weft_ctx *ctx, const void *in, void *out, void *arg) {
  *(int64_t *)out = *(const int64_t *)in + 10;
  return 0;
}

static int keep_even(weft_ctx *ctx, const void *item, void *arg) { return *(const int64_t *)item % 2 == 0; }

/* The sink runs on the thread that called weft_pipeline_run() (one worker): no lock needed. */
static int collect(weft_ctx *ctx, const void *item, void *arg) { return bag_add(arg, *(const int64_t *)item); }

static weft_stage_opts stage(const char *name, size_t workers) {
  weft_stage_opts o = WEFT_STAGE_OPTS_INIT;
  o.name = name;
  o.workers = workers;
  return o;
}

static bool part1_pipeline(void) {
  printf("\npart 1a: the pipeline API: 1..10 -> square -> add 10 -> keep even, under a 3 s deadline\n");
  weft_ctx *ctx; /* ctx, cancel := context.WithTimeout(background, 3s) */
  weft_cancel *cancel;
  if (weft_ctx_with_timeout(weft_background(), WEFT_SEC(3), &ctx, &cancel) != 0) return false;
  weft_pipeline *p;
  if (weft_pipeline_create(NULL, &p) != 0) return weft_ctx_end(cancel), false;
  range r = {1, 10};
  bag got = {.n = 0};
  weft_stage_opts o = stage("gen", 1);
  o.item_size = sizeof(int64_t); /* the source says what it emits; later stages keep the type */
  int rc = weft_pipeline_source(p, &o, numbers, &r);
  if (rc == 0) o = stage("square", 1), rc = weft_pipeline_map(p, &o, square, NULL);
  if (rc == 0) o = stage("add 10", 1), rc = weft_pipeline_map(p, &o, add10, NULL);
  if (rc == 0) o = stage("keep even", 1), rc = weft_pipeline_filter(p, &o, keep_even, NULL);
  if (rc == 0) o = stage("collect", 1), rc = weft_pipeline_sink(p, &o, collect, &got);
  weft_pipeline_report rep;
  if (rc == 0) rc = weft_pipeline_run(p, ctx, &rep); /* starts, wires and joins every stage */
  printf("  run: %s in %.1f ms\n", rc == 0 ? "ok" : weft_strerror(rc), rc == 0 ? rep.elapsed_ns / 1e6 : 0.0);
  for (size_t i = 0; rc == 0 && i < weft_pipeline_stage_count(p); i++) {
    weft_stage_stats s;
    weft_pipeline_stats(p, i, &s);
    printf("    %-9s in %2llu  out %2llu  dropped %llu\n", s.name, (unsigned long long)s.items_in,
           (unsigned long long)s.items_out, (unsigned long long)s.dropped);
  }
  bool ok = rc == 0 && bag_check(&got, "result", want_even, 5);
  weft_pipeline_destroy(p);
  weft_ctx_end(cancel); /* defer cancel() */
  return ok;
}

/* Fan-out: the squaring stage runs on 3 threads. Its output item says which worker squared the number. */
typedef struct squared {
  int64_t n, sq;
  int worker;
} squared;

typedef struct fan {
  atomic_int next_worker; /* numbers the stage's threads as they first show up */
  int64_t work;
} fan;

static _Thread_local int worker_no; /* 0 on every new thread; the pipeline starts fresh threads per run */

static int square_slowly(weft_ctx *ctx, const void *in, void *out, void *arg) {
  fan *f = arg;
  if (worker_no == 0) worker_no = atomic_fetch_add(&f->next_worker, 1) + 1;
  int rc = weft_ctx_sleep(ctx, f->work); /* some work, which stops if the run is cancelled */
  if (rc != 0) return rc;
  int64_t v = *(const int64_t *)in;
  *(squared *)out = (squared){v, v * v, worker_no};
  return 0;
}

typedef struct by_worker {
  bag all;
  bag per[4]; /* numbers squared by worker 1..3 (index 0 unused) */
  bool bad;   /* a result that is not its number's square, or from an unknown worker */
} by_worker;

static int collect_squared(weft_ctx *ctx, const void *item, void *arg) {
  by_worker *b = arg;
  const squared *s = item;
  if (s->sq != s->n * s->n || s->worker < 1 || s->worker > 3) b->bad = true;
  else bag_add(&b->per[s->worker], s->n);
  return bag_add(&b->all, s->sq);
}

static void print_workers(const bag *per, size_t n, const char *who) {
  for (size_t w = 1; w < n; w++) {
    printf("    %s %zu squared %2zu:", who, w, per[w].n);
    for (size_t i = 0; i < per[w].n; i++) printf(" %lld", (long long)per[w].v[i]);
    printf("\n");
  }
}

static bool part1_fan(void) {
  printf("\npart 1b: the pipeline API: fan-out/fan-in, 1..%d squared by 3 workers\n", FAN_N);
  weft_pipeline *p;
  if (weft_pipeline_create(NULL, &p) != 0) return false;
  range r = {1, FAN_N};
  fan f = {.work = work};
  atomic_init(&f.next_worker, 0);
  by_worker got;
  memset(&got, 0, sizeof got);
  weft_stage_opts o = stage("gen", 1);
  o.item_size = sizeof(int64_t);
  o.burst = 1; /* hand numbers over one at a time, so the three workers share them */
  int rc = weft_pipeline_source(p, &o, numbers, &r);
  o = stage("square", 3); /* fan-out: 3 threads; their outputs fan in to the sink's input */
  o.item_size = sizeof(squared);
  if (rc == 0) rc = weft_pipeline_map(p, &o, square_slowly, &f);
  if (rc == 0) o = stage("collect", 1), rc = weft_pipeline_sink(p, &o, collect_squared, &got);
  if (rc == 0) rc = weft_pipeline_run(p, weft_background(), NULL);
  printf("  run: %s\n", rc == 0 ? "ok" : weft_strerror(rc));
  int64_t want[FAN_N];
  for (int i = 0; i < FAN_N; i++) want[i] = (int64_t)(i + 1) * (i + 1);
  bool ok = rc == 0 && !got.bad;
  if (rc == 0) print_workers(got.per, 4, "worker");
  ok = bag_check(&got.all, "merged", want, FAN_N) && ok;
  weft_pipeline_destroy(p);
  return ok;
}

/* ==== part 2: a consumer that stops early ============================================================== */


typedef struct first_n {
  weft_cancel *stop; /* the right to cancel the run's context: its creator gave it to the consumer on purpose */
  weft_pipeline *p;
  bag got;
  bool saw_full;
  int64_t cancelled_at;
} first_n;

static bool api_full(void *arg) {
  weft_pipeline *p = arg;
  weft_stage_stats sq_in, sink_in;
  weft_pipeline_stats(p, 1, &sq_in);
  weft_pipeline_stats(p, 2, &sink_in);
  return sq_in.queue_depth >= SMALL && sink_in.queue_depth >= SMALL;
}

/* The consumer: takes FIRST results, waits until the stages are stuck behind full channels, and cancels. */
static int take_first(weft_ctx *ctx, const void *item, void *arg) {
  first_n *f = arg;
  if (f->got.n == FIRST) return weft_ctx_err(ctx) != 0 ? weft_ctx_err(ctx) : WEFT_ECANCELED; /* not ours */
  bag_add(&f->got, *(const int64_t *)item);
  if (f->got.n == FIRST) {
    f->saw_full = wait_until(api_full, f->p);
    weft_stage_stats s;
    weft_pipeline_stats(f->p, 0, &s);
    printf("  consumer: got %d results; the source has emitted %llu and is blocked on a full channel%s\n", FIRST,
           (unsigned long long)s.items_out, f->saw_full ? "" : " (NOT seen)");
    printf("  consumer: cancel()\n");
    f->cancelled_at = weft_now();
    weft_ctx_cancel_cause(f->stop, CAUSE_ENOUGH); /* the whole run ends, every stage with it */
  }
  return 0;
}

static bool part2_cancel(void) {
  printf("\npart 2: cancellation: endless gen -> square x3 -> a consumer that wants %d results\n",
         FIRST);
  weft_ctx *ctx; /* ctx, cancel := context.WithCancel(background) */
  weft_cancel *cancel;
  if (weft_ctx_with_cancel(weft_background(), &ctx, &cancel) != 0) return false;
  weft_pipeline *p;
  if (weft_pipeline_create(NULL, &p) != 0) return weft_ctx_end(cancel), false;
  range r = {1, -1}; /* counts until stopped */
  first_n f = {.stop = cancel, .p = p}; /* the consumer calls cancel(); the stages get ctx only */
  weft_stage_opts o = stage("gen", 1);
  o.item_size = sizeof(int64_t);
  o.out_capacity = SMALL;
  o.burst = 1; /* item by item, so queue depths are exact */
  int rc = weft_pipeline_source(p, &o, numbers, &r);
  o = stage("square", 3);
  o.out_capacity = SMALL;
  o.burst = 1;
  if (rc == 0) rc = weft_pipeline_map(p, &o, square, NULL);
  if (rc == 0) o = stage("consumer", 1), rc = weft_pipeline_sink(p, &o, take_first, &f);
  weft_pipeline_report rep;
  if (rc == 0) rc = weft_pipeline_run(p, ctx, &rep); /* returns once every thread has been joined */
  double after = f.cancelled_at != 0 ? (double)(weft_now() - f.cancelled_at) / 1e6 : -1;
  printf("  run: %s (cause: %s), returned %.2f ms after the cancel, every thread joined\n", weft_strerror(rc),
         rep.cause == CAUSE_ENOUGH ? "the consumer had enough" : weft_strerror(rep.cause), after);
  bool ok = rc == WEFT_ECANCELED && rep.cause == CAUSE_ENOUGH && f.saw_full && after >= 0 && after < 2000;
  uint64_t emitted = 0;
  for (size_t i = 0; i < weft_pipeline_stage_count(p); i++) {
    weft_stage_stats s;
    weft_pipeline_stats(p, i, &s);
    if (i == 0) emitted = s.items_out;
    printf("    %-9s in %3llu  out %3llu  discarded %3llu  %s\n", s.name, (unsigned long long)s.items_in,
           (unsigned long long)s.items_out, (unsigned long long)s.discarded, s.done ? "finished" : "NOT finished");
    ok = ok && s.done;
  }
  /* Every item emitted was consumed or discarded by the pipeline, exactly once. */
  bool ledger = emitted == f.got.n + rep.discarded;
  printf("  ledger: %llu emitted = %zu consumed + %llu discarded by the pipeline: %s\n", (unsigned long long)emitted,
         f.got.n, (unsigned long long)rep.discarded, ledger ? "nothing lost" : "MISMATCH");
  /* The squaring workers race, so the first five out may be any five squares — but only squares. */
  bool squares = all_squares(&f.got, FIRST);
  printf("  consumed %zu values, %s\n", f.got.n, squares ? "all squares" : "NOT all squares");
  ok = ok && ledger && squares;
  weft_pipeline_destroy(p);
  weft_ctx_end(cancel);
  return ok;
}

int main(int argc, char **argv) {
  const char *env = getenv("WEFT_EXAMPLE_FAST");
  if ((argc > 1 && strcmp(argv[1], "--fast") == 0) || (env && *env && strcmp(env, "0") != 0)) work = WEFT_MS(1);
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("pipeline: Go's pipeline and fan-out/fan-in with weft's pipeline API%s\n",
         work < WEFT_MS(4) ? " (--fast: 1 ms of work per square instead of 4)" : "");
  bool ok = true;
  if (!part1_pipeline()) ok = false, printf("UNEXPECTED part 1a\n");
  if (!part1_fan()) ok = false, printf("UNEXPECTED part 1b\n");
  if (!part2_cancel()) ok = false, printf("UNEXPECTED part 2\n");
  printf("\nlive contexts at the end: %zu\n", weft_ctx_live_count());
  if (weft_ctx_live_count() != 0) ok = false;
  printf("%s\n", ok ? "OK: pipelines and fan-in gave exactly the expected sets; cancel stopped every stage, nothing "
                      "leaked"
                    : "FAILED");
  return ok ? 0 : 1;
}
