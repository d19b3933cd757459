/* tests/support/js_worker.c: a worker process for test_jetstream's crash test.
 *
 *   js_worker URL STREAM DURABLE COMPLETE HOLD
 *
 * Opens the durable consumer, completes COMPLETE messages one by one (printing "DONE <id>" once each Ack
 * is confirmed), then fetches HOLD more and keeps them (printing "HOLD <id>" each, then "READY") while
 * its lease keeper heartbeats them, until it is killed. Exit status 2 on any failure. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <weft/jetstream.h>

int main(int argc, char **argv) {
  if (argc != 6) return 2;
  setvbuf(stdout, NULL, _IONBF, 0);
  weft_js_opts jo = WEFT_JS_OPTS_INIT;
  jo.url = argv[1];
  weft_js *js;
  if (weft_js_connect(&jo, &js) != 0) return 2;
  weft_js_consumer_opts co = WEFT_JS_CONSUMER_OPTS_INIT;
  co.stream = argv[2];
  co.durable = argv[3];
  co.max_in_flight = 1024;
  weft_js_consumer *c;
  if (weft_js_consumer_open(js, &co, &c) != 0) return 2;
  long complete = atol(argv[4]), hold = atol(argv[5]);
  for (long i = 0; i < complete; i++) {
    weft_js_msg *m;
    size_t n;
    if (weft_js_fetch(c, weft_background(), 1, WEFT_SEC(30), &m, &n) != 0) return 2;
    char id[128];
    snprintf(id, sizeof id, "%s", weft_js_msg_id(m));
    weft_js_outcome oc;
    if (weft_js_finish(m, 0, &oc) != 0 || oc != WEFT_JS_COMPLETED) return 2;
    printf("DONE %s\n", id);
  }
  for (long i = 0; i < hold; i++) {
    weft_js_msg *m;
    size_t n;
    if (weft_js_fetch(c, weft_background(), 1, WEFT_SEC(30), &m, &n) != 0) return 2;
    printf("HOLD %s\n", weft_js_msg_id(m));
  }
  printf("READY\n");
  for (;;) pause();
}
