/* weft-bench-jetstream: what the queue costs per message, against one local nats-server.
 *
 *   weft-bench-jetstream [--memory] [N]
 *
 * Starts its own `nats-server -js` on a free loopback port with a temporary store (file storage unless
 * --memory), and prints, one line each (format of bench/README.md, best of 3 repetitions):
 *   js_publish        one weft_js_publish() (waits for the stream's acknowledgement)
 *   js_fetch_ack      one message of a weft_js_fetch() batch of 64 plus its weft_js_finish() (a confirmed Ack)
 *   js_fetch_ack_async  the same with ack_async (the Ack is not confirmed)
 *   js_cycle          publish + fetch + confirmed Ack, the sum per message
 *   js_pipeline_wW    messages per second through source -> W job workers (an empty job) -> finish sink
 *                     with W workers (confirmed Acks), W = 1, 2, 4, 8; js_pipeline_async_wW with ack_async
 * Every run checks its count (every message completed, none redelivered) before it prints. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft/jetstream.h>

#include "../tests/support/nats_server.h"

static nats_server srv;
static weft_js *js;
static bool memory;
static int seq;

static void die(const char *what, int rc) {
  fprintf(stderr, "%s: %s (%s)\n", what, weft_js_strerror(rc), weft_js_last_error());
  ns_stop(&srv);
  exit(1);
}

static void fresh_stream(char *name, size_t cap, char *subject, size_t scap) {
  seq++;
  snprintf(name, cap, "BENCH%d", seq);
  snprintf(subject, scap, "bench%d.jobs", seq);
  weft_js_stream_opts so = WEFT_JS_STREAM_OPTS_INIT;
  so.name = name;
  so.subject = subject;
  so.memory = memory;
  int rc = -1;
  for (int i = 0; i < 100 && rc != 0; i++)
    if ((rc = weft_js_stream_ensure(js, &so)) != 0) usleep(50000);
  if (rc != 0) die("stream", rc);
}

static void publish_all(const char *subject, int n) {
  for (int i = 0; i < n; i++) {
    char id[32];
    snprintf(id, sizeof id, "m-%d", i);
    int rc = weft_js_publish(js, NULL, subject, id, strlen(id), id, NULL);
    if (rc != 0) die("publish", rc);
  }
}

static weft_js_consumer *consumer(const char *stream, bool ack_async, size_t in_flight) {
  weft_js_consumer_opts co = WEFT_JS_CONSUMER_OPTS_INIT;
  co.stream = stream;
  co.durable = "bench";
  co.ack_async = ack_async;
  co.max_in_flight = in_flight;
  weft_js_consumer *c;
  int rc = weft_js_consumer_open(js, &co, &c);
  if (rc != 0) die("consumer", rc);
  return c;
}

static void check_done(weft_js_consumer *c, int n) {
  weft_js_report r;
  weft_js_consumer_report(c, &r);
  if (r.completed != (uint64_t)n || r.redelivered != 0 || r.in_flight != 0) {
    fprintf(stderr, "check failed: completed %lu of %d, redelivered %lu\n", (unsigned long)r.completed, n,
            (unsigned long)r.redelivered);
    exit(1);
  }
}

static double fetch_ack(const char *stream, int n, bool ack_async) {
  weft_js_consumer *c = consumer(stream, ack_async, 64);
  weft_js_msg *m[64];
  int got = 0;
  int64_t t0 = weft_now();
  while (got < n) {
    size_t k;
    int rc = weft_js_fetch(c, weft_background(), 64, WEFT_SEC(10), m, &k);
    if (rc != 0) die("fetch", rc);
    for (size_t i = 0; i < k; i++)
      if ((rc = weft_js_finish(m[i], 0, NULL)) != 0) die("finish", rc);
    got += (int)k;
  }
  int64_t dt = weft_now() - t0;
  check_done(c, n);
  weft_js_consumer_close(c);
  return (double)dt / n;
}

static int empty_job(weft_ctx *ctx, weft_js_msg *m, void *arg) {
  (void)ctx, (void)m, (void)arg;
  return 0;
}

typedef struct watch {
  weft_js_consumer *c;
  weft_pipeline *p;
  int n;
} watch;

static void *watcher(void *arg) {
  watch *w = arg;
  for (;;) {
    weft_js_report r;
    weft_js_consumer_report(w->c, &r);
    if (r.completed >= (uint64_t)w->n) break;
    usleep(200);
  }
  weft_pipeline_drain(w->p);
  return NULL;
}

static double pipeline_rate(const char *stream, int n, size_t workers, bool ack_async) {
  weft_js_consumer *c = consumer(stream, ack_async, 256);
  weft_pipeline *p;
  weft_pipeline_create(NULL, &p);
  weft_js_pipeline_source(p, NULL, c, weft_background());
  weft_stage_opts o = WEFT_STAGE_OPTS_INIT;
  o.workers = workers;
  weft_js_job job = {empty_job, NULL};
  weft_js_pipeline_jobs(p, &o, &job);
  /* The finish sink waits for each confirmed Ack: as many of its workers as job workers overlap them. */
  weft_stage_opts fo = WEFT_STAGE_OPTS_INIT;
  fo.workers = workers;
  weft_js_pipeline_finish(p, &fo);
  watch w = {c, p, n};
  pthread_t t;
  pthread_create(&t, NULL, watcher, &w);
  int64_t t0 = weft_now();
  int rc = weft_pipeline_run(p, weft_background(), NULL);
  int64_t dt = weft_now() - t0;
  pthread_join(t, NULL);
  if (rc != 0) die("run", rc);
  check_done(c, n);
  weft_pipeline_destroy(p);
  weft_js_consumer_close(c);
  return (double)n / ((double)dt / 1e9);
}

int main(int argc, char **argv) {
  int n = 20000;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--memory") == 0) memory = true;
    else n = atoi(argv[i]);
  }
  if (n <= 0) return 2;
  int rc = ns_start(&srv);
  if (rc == 1) {
    fprintf(stderr, "nats-server not found: install the Debian package 'nats-server'\n");
    return 0;
  }
  if (rc != 0) return 1;
  weft_js_opts jo = WEFT_JS_OPTS_INIT;
  jo.url = srv.url;
  if ((rc = weft_js_connect(&jo, &js)) != 0) die("connect", rc);
  fprintf(stderr, "nats-server %s, %s storage, %d messages per run\n", srv.url, memory ? "memory" : "file", n);

  double best_pub = 1e18, best_fa = 1e18, best_faa = 1e18;
  for (int rep = 0; rep < 3; rep++) {
    char stream[32], subject[32];
    fresh_stream(stream, sizeof stream, subject, sizeof subject);
    int64_t t0 = weft_now();
    publish_all(subject, n);
    double pub = (double)(weft_now() - t0) / n;
    double fa = fetch_ack(stream, n, false);
    char stream2[32], subject2[32];
    fresh_stream(stream2, sizeof stream2, subject2, sizeof subject2);
    publish_all(subject2, n);
    double faa = fetch_ack(stream2, n, true);
    if (pub < best_pub) best_pub = pub;
    if (fa < best_fa) best_fa = fa;
    if (faa < best_faa) best_faa = faa;
    weft_js_stream_delete(js, stream);
    weft_js_stream_delete(js, stream2);
  }
  printf("js_publish ns_per_op=%.0f ops=%d us=%.1f\n", best_pub, n, best_pub / 1e3);
  printf("js_fetch_ack ns_per_op=%.0f ops=%d us=%.1f\n", best_fa, n, best_fa / 1e3);
  printf("js_fetch_ack_async ns_per_op=%.0f ops=%d us=%.1f\n", best_faa, n, best_faa / 1e3);
  printf("js_cycle ns_per_op=%.0f ops=%d us=%.1f\n", best_pub + best_fa, n, (best_pub + best_fa) / 1e3);
  size_t ws[] = {1, 2, 4, 8};
  for (int async = 0; async < 2; async++)
    for (size_t wi = 0; wi < 4; wi++) {
      double best = 0;
      for (int rep = 0; rep < 3; rep++) {
        char stream[32], subject[32];
        fresh_stream(stream, sizeof stream, subject, sizeof subject);
        publish_all(subject, n);
        double r = pipeline_rate(stream, n, ws[wi], async);
        if (r > best) best = r;
        weft_js_stream_delete(js, stream);
      }
      printf("js_pipeline%s_w%zu ns_per_op=%.0f ops=%d msgs_per_s=%.0f\n", async ? "_async" : "", ws[wi], 1e9 / best,
             n, best);
    }
  weft_js_close(js);
  ns_stop(&srv);
  return 0;
}
