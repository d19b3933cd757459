/* weft-run: runs a command once per input, N at a time, with GNU parallel's options at xargs' cost.
 *
 * The run is a weft pipeline:
 *
 *   inputs (source)  ->  run (N workers)          ->  print (sink, this thread)
 *   one job per input    spawn, collect, wait,        a job's held output, whole; in input order
 *   streamed, resume     joblog line, --halt          with -k (an ordered stage, window 2N)
 *
 * Items are pointers to jobs; the pipeline's discard hook counts any job it drops as not started, so
 * every input read ends in exactly one class. Stopping is in two steps, as GNU parallel's --halt soon/now:
 * "stopping" (drain the pipeline: the source reads no more, jobs already read pass through the run stage
 * unstarted) and the kill context (its end makes every running job's worker stop its process group).
 * Ctrl-C/SIGTERM once is the first step, twice the second; --halt, --deadline and a failed output take the
 * step they need. The pipeline itself is never cancelled, so every job reaches the sink and is printed
 * and counted. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "weft-run.h"

#define CAUSE_HALT (-1001)


/* ---- counting, --halt, stopping ----------------------------------------------------------------- */

void wr_stop(wr_app *a, bool kill, int cause) {
  if (!atomic_exchange(&a->stopping, true) && a->p) weft_pipeline_drain(a->p);
  if (kill && a->kill_cancel) weft_ctx_cancel_cause(a->kill_cancel, cause);
}

static uint64_t failures(wr_app *a) {
  return atomic_load(&a->count[WR_FAILED]) + atomic_load(&a->count[WR_TIMED_OUT]) +
         atomic_load(&a->count[WR_KILLED]);
}

void wr_job_finished(wr_app *a, wr_job *j) {
  j->counted = true;
  atomic_fetch_add(&a->count[j->cls], 1);
  if (a->o.halt_when == WR_HALT_NEVER || j->cls == WR_NOT_STARTED || j->cls == WR_SKIPPED) return;
  pthread_mutex_lock(&a->halt_mu);
  if (!a->halted) {
    uint64_t failed = failures(a), done = atomic_load(&a->count[WR_DONE]);
    uint64_t limit = a->o.halt_why == WR_HALT_FAIL ? failed : a->o.halt_why == WR_HALT_SUCCESS ? done : failed + done;
    bool relevant = a->o.halt_why == WR_HALT_DONE || (a->o.halt_why == WR_HALT_FAIL) == (j->cls != WR_DONE);
    double total = (double)atomic_load(&a->total);
    double threshold = a->o.halt_pct ? total * a->o.halt_value / 100.0 : a->o.halt_value;
    if (relevant && (double)limit >= threshold) {
      a->halted = true;
      if (a->o.halt_why == WR_HALT_SUCCESS) a->halt_status = 0;
      else if (a->o.halt_pct) a->halt_status = (int)ceil((double)failed / (total > 0 ? total : 1) * 100.0);
      else if (a->o.halt_value == 1) /* a job weft-run stopped has exitval -1: its signal tells (GNU: 255) */
        a->halt_status = (j->exitval > 0 ? j->exitval : j->signo ? j->signo + 128 : 1) & 0xff;
      else a->halt_status = failed > 101 ? 101 : (int)failed;
      wr_msg("halting (--halt %s): job %llu %s; %s", a->o.halt_when == WR_HALT_NOW ? "now" : "soon",
             (unsigned long long)j->seq, j->cls == WR_DONE ? "succeeded" : "failed",
             a->o.halt_when == WR_HALT_NOW ? "stopping the running jobs" : "starting no more jobs");
      wr_stop(a, a->o.halt_when == WR_HALT_NOW, CAUSE_HALT);
    }
  }
  pthread_mutex_unlock(&a->halt_mu);
}

size_t wr_slot_take(wr_app *a) {
  pthread_mutex_lock(&a->slot_mu);
  size_t s = 0;
  for (size_t w = 0;; w++) {
    if (~a->slots[w]) {
      int b = __builtin_ctzll(~a->slots[w]);
      a->slots[w] |= 1ull << b;
      s = w * 64 + (size_t)b;
      break;
    }
  }
  pthread_mutex_unlock(&a->slot_mu);
  return s + 1;
}

void wr_slot_give(wr_app *a, size_t slot) {
  slot--;
  pthread_mutex_lock(&a->slot_mu);
  a->slots[slot / 64] &= ~(1ull << (slot % 64));
  pthread_mutex_unlock(&a->slot_mu);
}

/* ---- the pipeline's functions ------------------------------------------------------------------- */

static wr_job *job_new(uint64_t seq, char *const *args, const size_t *lens, size_t n) {
  size_t bytes = sizeof(wr_job) + n * (sizeof(char *) + sizeof(size_t));
  for (size_t k = 0; k < n; k++) bytes += lens[k] + 1;
  wr_job *j = calloc(1, bytes);
  if (!j) return NULL;
  j->seq = seq, j->nargs = n;
  j->args = (char **)(j + 1);
  j->lens = (size_t *)(j->args + n);
  char *p = (char *)(j->lens + n);
  for (size_t k = 0; k < n; k++) {
    memcpy(p, args[k], lens[k]);
    p[lens[k]] = '\0';
    j->args[k] = p, j->lens[k] = lens[k];
    p += lens[k] + 1;
  }
  wr_hold_init(&j->out);
  wr_hold_init(&j->err);
  return j;
}

static void job_discard(void *item, void *arg) {
  wr_app *a = arg;
  wr_job *j = *(wr_job **)item;
  if (!j->counted) atomic_fetch_add(&a->count[WR_NOT_STARTED], 1);
  wr_job_free(j);
}

static int source(weft_ctx *ctx, weft_emitter *em, void *arg) {
  wr_app *a = arg;
  int cfd = weft_ctx_fd(ctx);
  uint64_t seq = 0;
  bool check_cmd = !wr_template_uses_slot(a->tmpl);
  while (!atomic_load(&a->stopping)) {
    char **args;
    size_t *lens;
    int r = wr_input_next(a->in, cfd, &args, &lens);
    if (r == -2) break; /* drained while waiting for input */
    if (r < 0) {
      atomic_store(&a->input_failed, true);
      wr_stop(a, false, 0);
      break;
    }
    if (r == 0) {
      uint64_t t;
      if (wr_input_total(a->in, &t)) atomic_store(&a->total, t), atomic_store(&a->total_known, true);
      break;
    }
    seq++;
    atomic_fetch_add(&a->read, 1);
    char *cmd = NULL;
    size_t cmdlen = 0;
    if (a->o.resume) {
      if (check_cmd) cmd = wr_command_line(a->tmpl, seq, 0, args, lens, a->o.nsrc, &cmdlen);
      bool differs;
      bool skip = wr_joblog_skip(a->log, seq, cmd, cmdlen, cmd != NULL, &differs);
      if (differs) {
        wr_msg("%s: job %llu there ran another command than \"%s\": is this the joblog of this command and "
               "these inputs?", a->o.joblog, (unsigned long long)seq, cmd);
        atomic_store(&a->input_failed, true);
        atomic_fetch_add(&a->count[WR_NOT_STARTED], 1);
        free(cmd);
        wr_stop(a, false, 0);
        break;
      }
      if (skip) {
        atomic_fetch_add(&a->count[WR_SKIPPED], 1);
        free(cmd);
        continue;
      }
    }
    wr_job *j = job_new(seq, args, lens, a->o.nsrc);
    if (!j) {
      wr_msg("out of memory: reading no more inputs");
      atomic_fetch_add(&a->count[WR_NOT_STARTED], 1);
      atomic_store(&a->input_failed, true);
      free(cmd);
      wr_stop(a, false, 0);
      break;
    }
    j->cls = WR_NOT_STARTED;
    j->cmd = cmd, j->cmdlen = cmdlen;
    if (weft_pipeline_emit(em, &j) != 0) { /* stopped: not emitted, still ours */
      atomic_fetch_add(&a->count[WR_NOT_STARTED], 1);
      wr_job_free(j);
      break;
    }
    /* bursts go out when full; before a wait for more input, what is read goes out at once */
    if (!wr_input_ready(a->in) && weft_pipeline_flush(em) != 0) break;
  }
  return 0;
}

static int run(weft_ctx *ctx, const void *in, void *out, void *arg) {
  (void)ctx;
  wr_app *a = arg;
  wr_job *j = *(wr_job *const *)in;
  if (!atomic_load(&a->stopping) && !weft_ctx_done(a->kill_ctx)) {
    wr_job_run(a, j, a->kill_ctx);
    if (a->log && !a->o.dry_run && wr_joblog_write(a->log, j) != 0 && !atomic_exchange(&a->input_failed, true)) {
      wr_msg("%s: writing the joblog failed: %s; starting no more jobs", a->o.joblog, strerror(errno));
      wr_stop(a, false, 0);
    }
  }
  wr_job_finished(a, j);
  *(wr_job **)out = j;
  return 0;
}

static int print(weft_ctx *ctx, const void *item, void *arg) {
  (void)ctx;
  wr_app *a = arg;
  wr_job *j = *(wr_job *const *)item;
  wr_print_job(a, j);
  wr_job_free(j);
  return 0;
}

/* ---- signals and progress ----------------------------------------------------------------------- */

static void on_kill_ctx(void *arg) {
  wr_app *a = arg;
  if (weft_ctx_err(a->kill_ctx) == WEFT_EDEADLINE) wr_msg("the --deadline passed: stopping the running jobs");
  wr_stop(a, false, 0);
}

typedef struct progress {
  wr_app *a;
  pthread_t t;
  weft_ctx *ctx;
  weft_cancel *cancel;
  bool on;
} progress;

static void progress_line(wr_app *a, bool final) {
  uint64_t c[WR_NCLASS];
  for (int k = 0; k < WR_NCLASS; k++) c[k] = atomic_load(&a->count[k]);
  uint64_t finished = c[WR_DONE] + c[WR_FAILED] + c[WR_TIMED_OUT] + c[WR_KILLED] + c[WR_NOT_STARTED];
  uint64_t base = c[WR_SKIPPED];
  double secs = (double)(weft_now() - a->started_ns) / 1e9;
  double rate = secs > 0 ? (double)finished / secs : 0;
  char line[256];
  int n;
  if (atomic_load(&a->total_known)) {
    uint64_t total = atomic_load(&a->total) - base;
    double eta = rate > 0 && total > finished ? (double)(total - finished) / rate : 0;
    n = snprintf(line, sizeof line, "\r\033[K%s: %llu/%llu done (%.0f%%), %llu failed, %llu running, %.1f/s, ETA %d:%02d",
                 WR_NAME, (unsigned long long)finished, (unsigned long long)total,
                 total ? 100.0 * (double)finished / (double)total : 100.0,
                 (unsigned long long)(c[WR_FAILED] + c[WR_TIMED_OUT] + c[WR_KILLED]),
                 (unsigned long long)atomic_load(&a->running), rate, (int)(eta / 60), (int)fmod(eta, 60));
  } else {
    n = snprintf(line, sizeof line, "\r\033[K%s: %llu done, %llu failed, %llu running, %.1f/s", WR_NAME,
                 (unsigned long long)finished, (unsigned long long)(c[WR_FAILED] + c[WR_TIMED_OUT] + c[WR_KILLED]),
                 (unsigned long long)atomic_load(&a->running), rate);
  }
  if (final) n = snprintf(line, sizeof line, "\r\033[K");
  pthread_mutex_lock(&a->out_mu[2]);
  ssize_t w = write(2, line, n > 0 && (size_t)n < sizeof line ? (size_t)n : 0);
  (void)w;
  pthread_mutex_unlock(&a->out_mu[2]);
}

static void *progress_thread(void *arg) {
  progress *p = arg;
  while (weft_ctx_wait_for(p->ctx, WEFT_MS(250)) == WEFT_ETIMEDOUT) progress_line(p->a, false);
  progress_line(p->a, true);
  return NULL;
}

/* ---- the summary and the exit status ------------------------------------------------------------ */

static int finish(wr_app *a, bool run_failed) {
  /* inputs known but never read (all of ::: and whole files are known) were not started either */
  uint64_t total = atomic_load(&a->total), read = atomic_load(&a->read);
  if (atomic_load(&a->total_known) && total > read) {
    atomic_fetch_add(&a->count[WR_NOT_STARTED], total - read);
    atomic_store(&a->read, total);
  }
  bool unread = !atomic_load(&a->total_known); /* a streamed input left before its end */
  uint64_t c[WR_NCLASS];
  for (int k = 0; k < WR_NCLASS; k++) c[k] = atomic_load(&a->count[k]);
  uint64_t bad = c[WR_FAILED] + c[WR_TIMED_OUT] + c[WR_KILLED];
  int signo = atomic_load(&a->stop_signal);
  bool deadline = weft_ctx_err(a->kill_ctx) == WEFT_EDEADLINE;
  bool own_error = run_failed || atomic_load(&a->input_failed) || atomic_load(&a->output_failed);
  if (a->progress || signo || a->halted || deadline || own_error || bad || unread || c[WR_NOT_STARTED] ||
      c[WR_SKIPPED]) {
    char extra[96] = "";
    if (c[WR_SKIPPED]) snprintf(extra, sizeof extra, ", %llu skipped", (unsigned long long)c[WR_SKIPPED]);
    const char *why = signo ? " - stopped by a signal" : a->halted ? " - halted" : deadline ? " - deadline passed"
                      : atomic_load(&a->output_failed) ? " - output closed" : "";
    if (unread) snprintf(extra + strlen(extra), sizeof extra - strlen(extra), ", input not read to its end");
    wr_msg("%llu done, %llu failed, %llu timed out, %llu killed, %llu not started%s (%llu inputs read)%s",
           (unsigned long long)c[WR_DONE], (unsigned long long)c[WR_FAILED], (unsigned long long)c[WR_TIMED_OUT],
           (unsigned long long)c[WR_KILLED], (unsigned long long)c[WR_NOT_STARTED], extra,
           (unsigned long long)atomic_load(&a->read), why);
  }
  if (own_error) return WR_EXIT_ERROR;
  if (signo) return 128 + signo;
  if (a->halted) return a->halt_status;
  uint64_t n = bad + c[WR_NOT_STARTED];
  if (n == 0 && unread) n = 1; /* inputs were left, uncounted: never 0 */
  return n > 100 ? 101 : (int)n;
}

/* --no-shell with a fixed program name: look it up in PATH once, not in every child (each miss is an
 * execve that fails). Not found here: left to posix_spawnp, which reports it per job (127). */
static char *find_program(const char *name) {
  if (!*name || strchr(name, '/') || strchr(name, '{')) return NULL;
  const char *path = getenv("PATH");
  if (!path) path = "/usr/local/bin:/usr/bin:/bin";
  for (const char *p = path;; ) {
    const char *colon = strchr(p, ':');
    size_t dl = colon ? (size_t)(colon - p) : strlen(p);
    char *full = NULL;
    if (asprintf(&full, "%.*s/%s", (int)dl, dl ? p : ".", name) < 0) return NULL;
    struct stat st;
    if (access(full, X_OK) == 0 && stat(full, &st) == 0 && S_ISREG(st.st_mode)) return full;
    free(full);
    if (!colon) return NULL;
    p = colon + 1;
  }
}

static size_t auto_jobs(wr_app *a) {
  size_t cap = WR_JOBS_AUTO_MAX;
  struct rlimit rl;
  /* a running job holds 3 descriptors here (2 pipes, a pidfd) and one more with --timeout */
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur > 32) {
    size_t by_fd = (size_t)(rl.rlim_cur - 32) / 4;
    if (by_fd < cap) cap = by_fd;
  }
  if (getrlimit(RLIMIT_NPROC, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur / 2 < cap)
    cap = (size_t)(rl.rlim_cur / 2);
  uint64_t total;
  if (wr_input_total(a->in, &total) && total < cap) cap = (size_t)total;
  return cap ? cap : 1;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN); /* a closed stdout is an error to handle, not a death; jobs get SIGPIPE back */
  static wr_app app;
  wr_app *a = &app;
  int rc = wr_options(argc, argv, &a->o);
  if (rc != 0) return rc > 0 ? 0 : WR_EXIT_ERROR;
  int status = WR_EXIT_ERROR;
  pthread_mutex_init(&a->halt_mu, NULL);
  pthread_mutex_init(&a->slot_mu, NULL);
  for (int k = 0; k < 3; k++) pthread_mutex_init(&a->out_mu[k], NULL);
  wr_msg_mu = &a->out_mu[2];
  if (a->o.mode != WR_LOCAL) { /* --submit, --worker, --collect: dist.c */
    status = wr_dist_main(a);
    free(a->o.src);
    return status;
  }
  a->devnull = -1;
  wr_signals s = {0};
  progress pr = {.a = a};

  if (wr_template_parse(&a->o, &a->tmpl) != 0 || wr_input_open(&a->o, &a->in) != 0) goto out;
  if (a->o.halt_when != WR_HALT_NEVER && a->o.halt_pct && wr_input_read_all(a->in) != 0) goto out;
  uint64_t total;
  if (wr_input_total(a->in, &total)) atomic_store(&a->total, total), atomic_store(&a->total_known, true);
  if (wr_joblog_open(&a->o, &a->log) != 0) goto out;
  if (a->o.jobs_auto) a->o.jobs = auto_jobs(a);
  if (a->o.no_shell) a->prog = find_program(a->o.cmd[0]);
  a->slots = calloc(a->o.jobs / 64 + 1, sizeof *a->slots);
  a->devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (!a->slots || a->devnull < 0) { wr_msg("setting up failed: %s", a->slots ? strerror(errno) : "out of memory"); goto out; }

  if ((a->o.deadline != WEFT_FOREVER
           ? weft_ctx_with_timeout(weft_background(), a->o.deadline, &a->kill_ctx, &a->kill_cancel)
           : weft_ctx_with_cancel(weft_background(), &a->kill_ctx, &a->kill_cancel)) != 0) {
    wr_msg("setting up failed: out of memory");
    goto out;
  }
  weft_after *kill_after = NULL;
  if (weft_ctx_after_func(a->kill_ctx, on_kill_ctx, a, &kill_after) != 0 ||
      wr_signals_start(&s, a, "%s: starting no more jobs, waiting for the %llu running (again to stop them)",
                       "%s again: stopping the %llu running jobs (SIGTERM, then SIGKILL after the grace)") != 0) {
    wr_msg("setting up the signal handling failed");
    goto out;
  }

  weft_pipeline_opts po = {.name = WR_NAME};
  if (weft_pipeline_create(&po, &a->p) != 0) { wr_msg("setting up failed: out of memory"); goto out; }
  weft_stage_opts o = WEFT_STAGE_OPTS_INIT;
  o.name = "inputs";
  o.item_size = sizeof(wr_job *);
  o.discard = job_discard, o.discard_arg = a;
  o.out_capacity = a->o.jobs;
  /* one job per hand-off: a worker must not hold jobs behind the one it runs (a slow job would keep
   * them from the idle workers); --dry-run's jobs cost nothing, and there bursts keep 10^7 inputs quick */
  o.burst = a->o.dry_run ? 0 : 1;
  rc = weft_pipeline_source(a->p, &o, source, a);
  o = (weft_stage_opts)WEFT_STAGE_OPTS_INIT;
  o.name = "run";
  o.workers = a->o.jobs;
  o.ordered = a->o.keep_order;
  o.reorder_window = 2 * a->o.jobs;
  /* a finished job goes to print at once (an automatic burst would hold it until the worker's input ran
   * dry); --dry-run's jobs cost nothing, and there bursts are what keeps 10^7 inputs quick */
  o.burst = a->o.dry_run ? 0 : 1;
  o.out_capacity = a->o.jobs;
  if (rc == 0) rc = weft_pipeline_map(a->p, &o, run, a);
  o = (weft_stage_opts)WEFT_STAGE_OPTS_INIT;
  o.name = "print";
  if (rc == 0) rc = weft_pipeline_sink(a->p, &o, print, a);
  if (rc != 0) { wr_msg("setting up the pipeline failed: %s", weft_strerror(rc)); goto out; }

  a->progress = a->o.bar == 1 || (a->o.bar == -1 && isatty(2));
  a->started_ns = weft_now();
  if (a->o.dry_run) a->out_buf = malloc(WR_OUT_BUF); /* without it, a write() a line */
  if (a->progress && weft_ctx_with_cancel(weft_background(), &pr.ctx, &pr.cancel) == 0) {
    pr.on = pthread_create(&pr.t, NULL, progress_thread, &pr) == 0;
    if (!pr.on) weft_ctx_end(pr.cancel);
  }
  /* The run goes on on a thread of weft's (which blocks signals), while this thread, with signals open,
   * waits in poll(): a signal is taken at once here, also where the runtime defers signals to the next
   * system call it knows (ThreadSanitizer does, and does not know weft's futex waits). */
  weft_pipeline_report rep;
  rc = weft_pipeline_start(a->p, NULL, NULL, NULL);
  if (rc == 0) {
    int pfd = weft_pipeline_fd(a->p);
    while (pfd >= 0 && !weft_pipeline_done(a->p)) {
      struct pollfd pf = {.fd = pfd, .events = POLLIN};
      (void)poll(&pf, 1, a->out_buf ? WR_OUT_FLUSH_MS : -1);
      wr_out_flush(a);
    }
    rc = weft_pipeline_join(a->p, NULL, &rep);
    wr_out_flush(a);
  }
  if (pr.on) {
    weft_ctx_cancel(pr.cancel);
    pthread_join(pr.t, NULL);
    weft_ctx_end(pr.cancel);
  }
  if (rc != 0) wr_msg("the run failed: %s", weft_strerror(rc));
  status = finish(a, rc != 0);
  weft_after_stop(kill_after);
  weft_after_free(kill_after);
out:
  if (s.a) wr_signals_stop(&s);
  if (a->p) weft_pipeline_destroy(a->p);
  if (a->kill_cancel) weft_ctx_end(a->kill_cancel);
  wr_joblog_close(a->log);
  wr_input_close(a->in);
  wr_template_free(a->tmpl);
  if (a->devnull >= 0) close(a->devnull);
  free(a->slots);
  free(a->out_buf);
  free(a->prog);
  free(a->o.src);
  if (fflush(stdout) != 0 && status == 0) status = WR_EXIT_ERROR;
  return status;
}
