/* epoll-loop: a bare epoll event loop that offloads work to a weft pool and collects every result on one
 * descriptor.
 *
 * The loop thread never blocks on weft. Each request is a job with a context of its own (the loop keeps the
 * right to cancel it) and a completion channel given at submit: when the job ends, whatever the way, one
 * struct weft_completion lands in the channel, whose weft_chan_fd() is in the epoll set next to a timerfd.
 * The loop:
 *   - submits requests while the completion channel has room (a submit with a done_chan reserves room for
 *     its completion and says WEFT_EFULL, at once, when there is none: the loop then waits for completions
 *     instead of blocking);
 *   - on a timer tick, cancels every in-flight request whose id is a multiple of 5 (long requests whose
 *     client went away): a running job sees its context end and stops (class failed: its own context
 *     ended, not the pool's); one not started yet never starts (canceled before start);
 *   - gives every 11th request a per-job timeout shorter than its work (it fails, timed out);
 *   - once every request was submitted, adds a burst of extra jobs until the pool is full and shuts it down
 *     in cancel mode: queued jobs are discarded, running ones cancelled; their completions arrive all the
 *     same;
 *   - drains the channel in batches whenever its descriptor is readable, frees each request there, and
 *     counts the classes.
 * At the end it prints an accounting in which every job submitted is counted exactly once, checked against
 * the pool's report, and "OK: every job accounted for".
 *
 *   epoll-loop [--fast] [--jobs N]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <weft/weft.h>

typedef struct request {
  int id;
  int64_t work;      /* ns of work */
  weft_ctx *ctx;     /* the job runs under it too */
  weft_cancel *k;    /* the loop's right to cancel it */
  struct request *prev, *next; /* in flight, for the cancel sweep */
} request;

/* The job: work in slices, stopping when the context ends. Returns a result code of its own on success. */
static int work_job(weft_ctx *ctx, void *arg) {
  request *r = arg;
  int rc = weft_ctx_sleep(ctx, r->work);
  return rc; /* 0, or the context's error: cancelled by the loop, its timeout, or shutdown */
}

static const char *class_name[] = {"pending", "completed", "failed", "canceled before start",
                                   "canceled while running"};

static void die(const char *what, int rc) {
  fprintf(stderr, "epoll-loop: %s: %s\n", what, rc < 0 ? weft_strerror(rc) : strerror(errno));
  exit(1);
}

int main(int argc, char **argv) {
  int njobs = 400, work_us = 2000, tick_ms = 3, extra = 64;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--fast") == 0) njobs = 200, work_us = 1000, tick_ms = 2;
    else if (strcmp(argv[i], "--jobs") == 0 && i + 1 < argc) njobs = atoi(argv[++i]);
    else return fprintf(stderr, "usage: epoll-loop [--fast] [--jobs N]\n"), 2;
  }

  weft_pool_opts po = WEFT_POOL_OPTS_INIT;
  po.workers = 2;
  po.queue_cap = 16;
  weft_pool *pool;
  int rc;
  if ((rc = weft_pool_create(&po, &pool)) != 0) die("pool", rc);
  weft_chan *done;
  if ((rc = weft_chan_create(sizeof(struct weft_completion), 24, &done)) != 0) die("channel", rc);
  int done_fd = weft_chan_fd(done);
  if (done_fd < 0) die("weft_chan_fd", done_fd);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (ep < 0 || tfd < 0) die("epoll/timerfd", 0);
  struct itimerspec its = {{0, tick_ms * 1000000L}, {0, tick_ms * 1000000L}};
  timerfd_settime(tfd, 0, &its, NULL);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = done_fd}; /* level-triggered */
  if (epoll_ctl(ep, EPOLL_CTL_ADD, done_fd, &ev) != 0) die("epoll_ctl", 0);
  ev.data.fd = tfd;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev) != 0) die("epoll_ctl", 0);

  request inflight = {.prev = &inflight, .next = &inflight}; /* list head */
  long submitted = 0, received = 0, by_class[5] = {0}, refused_full = 0, canceled_by_loop = 0, timed = 0;
  int next_id = 0;
  int total = njobs + extra;
  bool shut = false;
  weft_pool_report rep;

  while (!shut || received < submitted) {
    /* Submit while there is room for the completions. */
    bool refused = false;
    while (next_id < total && !shut) {
      if (next_id == njobs && received < submitted - 8) break; /* most earlier work done before the burst */
      request *r = calloc(1, sizeof *r);
      if (r == NULL) die("calloc", WEFT_ENOMEM);
      r->id = next_id;
      r->work = (int64_t)work_us * 1000 * (1 + next_id % 3);
      if (r->id % 5 == 0) r->work *= 20; /* long: its client gives up (the tick below) while it runs */
      if ((rc = weft_ctx_with_cancel(weft_background(), &r->ctx, &r->k)) != 0) die("context", rc);
      weft_job_opts jo = WEFT_JOB_OPTS_INIT;
      jo.run_ctx = r->ctx;
      jo.done_chan = done;
      jo.nowait = true; /* the loop never waits in weft */
      if (r->id % 11 == 0) jo.timeout = r->work / 4;
      rc = weft_pool_submit_opts(pool, NULL, work_job, r, &jo, NULL);
      if (rc == WEFT_EFULL) { /* no room for a completion, or the queue is full: wait for completions */
        refused_full++;
        refused = true;
        weft_ctx_end(r->k);
        free(r);
        break;
      }
      if (rc != 0) die("submit", rc);
      submitted++;
      timed += r->id % 11 == 0;
      r->next = &inflight;
      r->prev = inflight.prev;
      r->prev->next = r;
      inflight.prev = r;
      next_id++;
    }
    if (!shut && (next_id == total || (next_id > njobs && refused))) {
      /* The burst filled the pool (or every request is in): stop it now, cancelling what runs and
       * discarding what is queued; the rest of the burst is never submitted.
       * Shutdown waits for the running jobs to return (they stop at once); their completions were reserved,
       * so they are all in the channel afterwards, read by the loop below. */
      if ((rc = weft_pool_shutdown(pool, WEFT_POOL_CANCEL, WEFT_SEC(5), &rep)) != 0) die("shutdown", rc);
      shut = true;
      printf("shutdown after %ld submits: the burst's queued jobs discarded, running ones cancelled (%lu "
             "canceled while running)\n",
             submitted, (unsigned long)rep.canceled_while_running);
    }

    struct epoll_event got[4];
    int n = epoll_wait(ep, got, 4, 5000);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die("epoll_wait (nothing happened for 5 s)", 0);
    for (int i = 0; i < n; i++) {
      if (got[i].data.fd == tfd) {
        uint64_t ticks;
        (void)!read(tfd, &ticks, sizeof ticks);
        /* The clients of requests 0, 5, 10, ... went away: cancel their work. */
        for (request *r = inflight.next; r != &inflight; r = r->next)
          if (r->id % 5 == 0 && weft_ctx_err(r->ctx) == 0) {
            weft_ctx_cancel(r->k);
            canceled_by_loop++;
          }
        continue;
      }
      /* Completions: take every one buffered (the descriptor is level-triggered: it stays readable
       * until the channel is empty, so a batch of any size is fine). */
      struct weft_completion c;
      while (weft_chan_try_recv(done, &c) == 0) {
        request *r = c.arg;
        by_class[c.state]++;
        received++;
        r->prev->next = r->next;
        r->next->prev = r->prev;
        weft_ctx_end(r->k);
        free(r); /* the completion gives the request back: free it here */
      }
    }
  }

  weft_pool_report fin;
  weft_pool_destroy(pool, &fin);
  struct weft_completion c;
  bool empty = weft_chan_try_recv(done, &c) == WEFT_EEMPTY;
  close(tfd);
  close(ep);
  weft_chan_destroy(done);

  printf("requests: %ld submitted (%ld with a short timeout), %ld cancelled by the loop (client gone), %ld submits refused "
         "for lack of room (retried)\n",
         submitted, timed, canceled_by_loop, refused_full);
  long sum = 0;
  for (int s = 1; s <= 4; s++) {
    printf("  %-23s %5ld\n", class_name[s], by_class[s]);
    sum += by_class[s];
  }
  printf("  %-23s %5ld\n", "completions received", received);
  bool ok = empty && sum == submitted && received == submitted && (long)fin.submitted == submitted &&
            (long)fin.completed == by_class[WEFT_JOB_COMPLETED] && (long)fin.failed == by_class[WEFT_JOB_FAILED] &&
            (long)fin.canceled_before_start == by_class[WEFT_JOB_CANCELED_BEFORE_START] &&
            (long)fin.canceled_while_running == by_class[WEFT_JOB_CANCELED_WHILE_RUNNING] && fin.undelivered == 0 &&
            inflight.next == &inflight;
  printf("pool report: %lu submitted = %lu completed + %lu failed (%lu timed out) + %lu canceled before start + "
         "%lu canceled while running\n",
         (unsigned long)fin.submitted, (unsigned long)fin.completed, (unsigned long)fin.failed,
         (unsigned long)fin.timed_out, (unsigned long)fin.canceled_before_start,
         (unsigned long)fin.canceled_while_running);
  if (!ok) {
    printf("MISMATCH: the completions do not account for every job\n");
    return 1;
  }
  printf("OK: every job accounted for (%ld jobs, one completion each)\n", submitted);
  return 0;
}
