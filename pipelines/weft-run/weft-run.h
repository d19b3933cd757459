/* weft-run: the parts of the program and what they share.
 *
 *   input.c    input sources (::: args, :::: files, -a, stdin), combined or linked, read as a stream
 *   command.c  the command template: replacement strings, shell quoting, argv for --no-shell
 *   spawn.c    one attempt of a job: posix_spawn into its own process group, its output, its end,
 *              the SIGTERM/SIGKILL sequence when its context ends
 *   output.c   where output goes: held whole (--group, spilling to a temporary file), whole lines
 *              (--line-buffer), tags, and the writes to weft-run's stdout and stderr
 *   joblog.c   the joblog (GNU parallel's format) and what --resume reads back from it
 *   options.c  the command line, durations, --halt
 *   main.c     the run: a weft pipeline  source -> run (N workers) -> print (sink),  signals, progress,
 *              the summary and the exit status
 *
 * A job is counted exactly once, when its class is known: done, failed, timed out, killed (by the worker
 * that ran it), not started (by the worker that skipped it, or by the pipeline's discard hook for a job
 * still inside the pipeline when it stopped), skipped (by the source, for --resume). */
#ifndef WEFT_RUN_H
#define WEFT_RUN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <weft/weft.h>

#define WR_NAME "weft-run"
#define WR_VERSION "0.2.0"
#define WR_HOLD_MAX ((size_t)256 << 10) /* a job's output held in memory; past it, a temporary file */
#define WR_JOBS_AUTO_MAX 256            /* -j 0: at most this many at once */
#define WR_EXIT_ERROR 255

/* ---- options ---------------------------------------------------------------------------------- */

enum wr_out { WR_OUT_GROUP, WR_OUT_LINE, WR_OUT_UNGROUP };
enum wr_halt_when { WR_HALT_NEVER, WR_HALT_SOON, WR_HALT_NOW };
enum wr_halt_why { WR_HALT_FAIL, WR_HALT_SUCCESS, WR_HALT_DONE };
enum wr_src_kind { WR_SRC_ARGS, WR_SRC_FILE };
/* Across machines (dist.c): a local run, or one of the three modes on a NATS JetStream stream. */
enum wr_mode { WR_LOCAL, WR_SUBMIT, WR_WORKER, WR_COLLECT };

typedef struct wr_source {
  enum wr_src_kind kind;
  char **args;      /* WR_SRC_ARGS: argv slice */
  size_t nargs;
  const char *path; /* WR_SRC_FILE: "-" is stdin */
} wr_source;

typedef struct wr_opts {
  size_t jobs;          /* 0 until resolved: -j 0 asks for as many as the inputs allow */
  bool jobs_auto;
  enum wr_out out;
  bool keep_order, tag, no_shell, dry_run, nul, link;
  int bar;              /* -1: when stderr is a terminal */
  int64_t timeout, deadline, term_grace; /* WEFT_FOREVER: none */
  unsigned retries;     /* attempts in all, >= 1 */
  enum wr_halt_when halt_when;
  enum wr_halt_why halt_why;
  bool halt_pct;
  double halt_value;    /* a count, or a percentage when halt_pct */
  const char *joblog;
  int resume;           /* 0; 1 --resume; 2 --resume-failed */
  char **cmd;           /* the command words */
  size_t ncmd;
  wr_source *src;
  size_t nsrc;
  enum wr_mode mode;    /* --submit, --worker, --collect URL */
  const char *url;      /* nats://HOST:PORT/STREAM */
  int64_t ack_wait;     /* --worker: the consumer's AckWait when this worker creates it */
  int64_t idle;         /* --worker: stop after this long without a job (WEFT_FOREVER: never) */
} wr_opts;

/* Parses argv into *o. Returns 0, 1 when it printed --help/--version (exit 0), or -1 after printing a
 * message (exit 255). */
int wr_options(int argc, char **argv, wr_opts *o);
/* Parses a duration ("300ms", "1.5s", "2m", "1h30m", a bare number of seconds) into ns. false if bad. */
bool wr_parse_duration(const char *s, int64_t *out);

/* ---- input ------------------------------------------------------------------------------------ */

typedef struct wr_input wr_input;
/* Opens every source (so that an unreadable one is said before any job runs). The first is streamed;
 * with several sources the others are read whole; with --link all are. `cancel_fd` (or -1) ends a wait
 * for input on a pipe or terminal. Returns 0 or -1 after printing a message. */
int wr_input_open(const wr_opts *o, wr_input **out);
/* The next combination: *args gets nsrc pointers (valid until the next call), lens their lengths.
 * Returns 1, 0 at the end, -1 on a read error (message printed), -2 when cancel_fd became readable. */
int wr_input_next(wr_input *in, int cancel_fd, char ***args, size_t **lens);
/* Whether the next combination can be had without waiting for input (false when the first source is
 * streamed and its buffer holds no whole record). */
bool wr_input_ready(const wr_input *in);
/* The number of combinations, when every source has been read whole (else 0 and false). */
bool wr_input_total(const wr_input *in, uint64_t *total);
/* Reads everything now (for --halt P%), so that the total is known. Returns 0 or -1 (message printed). */
int wr_input_read_all(wr_input *in);
void wr_input_close(wr_input *in);

/* ---- command ---------------------------------------------------------------------------------- */

typedef struct wr_template wr_template;
int wr_template_parse(const wr_opts *o, wr_template **out);
bool wr_template_uses_slot(const wr_template *t);
void wr_template_free(wr_template *t);
/* The command line (shell form: inputs quoted) for job `seq` in `slot`; malloc'd, NUL-terminated, *len
 * its length. NULL when out of memory. */
char *wr_command_line(const wr_template *t, uint64_t seq, size_t slot, char *const *args, const size_t *lens,
                      size_t nargs, size_t *len);
/* The argv for --no-shell: one malloc'd block, NULL-terminated. NULL when out of memory. */
char **wr_command_argv(const wr_template *t, uint64_t seq, size_t slot, char *const *args, const size_t *lens,
                       size_t nargs);

/* ---- jobs ------------------------------------------------------------------------------------- */

enum wr_class { WR_DONE, WR_FAILED, WR_TIMED_OUT, WR_KILLED, WR_NOT_STARTED, WR_SKIPPED, WR_NCLASS };

/* Output held for printing (--group): memory up to WR_HOLD_MAX, then a temporary file. */
typedef struct wr_hold {
  char *mem;
  size_t len, cap;
  int fd;               /* the temporary file once spilled, else -1 */
  uint64_t total;       /* bytes held in all */
  bool lost;            /* a write to the temporary file failed: what follows was dropped (said on print) */
} wr_hold;

typedef struct wr_job {
  uint64_t seq;
  size_t nargs;
  char **args;          /* nargs inputs, each NUL-terminated (an input may hold NULs with -0? no: NUL ends it) */
  size_t *lens;
  char *cmd;            /* the command line as logged (shell form) */
  size_t cmdlen;
  enum wr_class cls;
  int exitval, signo;
  double start;         /* epoch seconds of the last attempt's start */
  double runtime;       /* seconds */
  uint64_t received;
  wr_hold out, err;
  const char *note;     /* why a job could not start (printed with its output), or NULL */
  int64_t timeout;      /* this job's --timeout (ns); 0: the run's (a job from a stream carries its own) */
  const char *host;     /* the joblog's Host; NULL: ":" (this machine) */
  bool counted;         /* its class was counted (the discard hook must not count it again) */
} wr_job;

struct wr_app;
/* Runs one job to its end (all its attempts) and sets its class. Never fails: what went wrong is the
 * job's result (exit 126/127 and a message in its stderr). */
void wr_job_run(struct wr_app *a, wr_job *j, weft_ctx *kill_ctx);
void wr_job_free(wr_job *j);

/* ---- output ----------------------------------------------------------------------------------- */

void wr_hold_init(wr_hold *h);
void wr_hold_reset(wr_hold *h);
void wr_hold_free(wr_hold *h);
void wr_hold_add(wr_hold *h, const char *p, size_t n);
/* Writes a job's held output (stdout part to fd 1, stderr part to fd 2), tagged when asked. */
void wr_print_job(struct wr_app *a, wr_job *j);
/* --line-buffer: a job's partial line per stream, printed whole under the stream's lock. */
typedef struct wr_lines {
  char *buf;
  size_t len, cap;
  bool holding;         /* this job holds the stream's lock through a line longer than WR_HOLD_MAX */
} wr_lines;
void wr_lines_add(struct wr_app *a, wr_job *j, int fd, wr_lines *l, const char *p, size_t n);
void wr_lines_end(struct wr_app *a, wr_job *j, int fd, wr_lines *l);
/* Writes n bytes to fd (1 or 2), EINTR-safe. On an error writing stdout the run stops (output_failed).
 * Callers writing stdout hold out_mu[1]; with the stdout buffer on (--dry-run), the bytes may only be
 * appended to it (written when it fills and by wr_out_flush). */
bool wr_write(struct wr_app *a, int fd, const char *p, size_t n);
/* Writes out what the stdout buffer holds (takes out_mu[1]); false when writing failed. */
bool wr_out_flush(struct wr_app *a);
#define WR_OUT_BUF ((size_t)64 << 10)  /* the stdout buffer of --dry-run */
#define WR_OUT_FLUSH_MS 20             /* and how long a line may wait in it */
/* Tagged writing: the tag before every line of p[0..n). *bol says whether p starts a line. */
bool wr_write_tagged(struct wr_app *a, int fd, const wr_job *j, const char *p, size_t n, bool *bol);

/* ---- joblog ----------------------------------------------------------------------------------- */

typedef struct wr_joblog wr_joblog;
/* Opens o->joblog (replacing it, or reading it and appending with --resume*). Returns 0 or -1 after a
 * message. *out stays NULL without --joblog. */
int wr_joblog_open(const wr_opts *o, wr_joblog **out);
/* Writes the line of a finished job: one write(), so a weft-run killed at any time leaves whole lines. */
int wr_joblog_write(wr_joblog *l, const wr_job *j);
/* For --resume*: whether job `seq` should be skipped, and whether the log's command for it differs from
 * `cmd` (a joblog from another command). Lookups must come in increasing seq order. */
bool wr_joblog_skip(wr_joblog *l, uint64_t seq, const char *cmd, size_t cmdlen, bool check_cmd, bool *differs);
void wr_joblog_close(wr_joblog *l);

/* ---- the run ---------------------------------------------------------------------------------- */

typedef struct wr_app {
  wr_opts o;
  wr_template *tmpl;
  wr_input *in;
  wr_joblog *log;
  weft_pipeline *p;
  weft_ctx *kill_ctx;          /* ended by --deadline, a second signal, --halt now: running jobs stop */
  weft_cancel *kill_cancel;
  int devnull;
  char *prog;                  /* --no-shell: the program's path, found in PATH once, or NULL */
  char *tmpdir;

  atomic_bool stopping;        /* start nothing new */
  atomic_int stop_signal;      /* the first signal, or 0 */
  atomic_bool output_failed;   /* writing stdout failed (closed, a reader gone): the run stops */
  atomic_bool input_failed;
  atomic_uint_fast64_t count[WR_NCLASS];
  atomic_uint_fast64_t read;   /* inputs read */
  atomic_uint_fast64_t running;
  atomic_bool total_known;
  atomic_uint_fast64_t total;

  pthread_mutex_t halt_mu;     /* the halt decision and its exit status */
  bool halted;
  int halt_status;

  pthread_mutex_t out_mu[3];   /* [1] stdout, [2] stderr: whole lines and whole outputs */
  char *out_buf;               /* --dry-run: stdout collected here (under out_mu[1]), WR_OUT_BUF bytes */
  size_t out_len;
  pthread_mutex_t slot_mu;
  uint64_t *slots;             /* bitmap of busy slots */
  bool progress;
  int64_t started_ns;
} wr_app;

/* --submit, --worker, --collect (dist.c; without the JetStream module, a message and 255). Returns the
 * exit status. */
int wr_dist_main(wr_app *a);

/* Signals (signals.c): once, wr_stop(a, false); twice, wr_stop(a, true); three times, exit. The formats
 * take the signal's name (%s) and the running jobs (%llu). */
typedef struct wr_signals {
  wr_app *a;
  const char *first_fmt, *second_fmt;
  weft_ctx *c1, *c2;
  weft_cancel *k1, *k2;
  weft_after *h1, *h2;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done1, done2; /* the callback has returned (under mu): wr_signals_stop waits for a started one */
} wr_signals;
int wr_signals_start(wr_signals *s, wr_app *a, const char *first_fmt, const char *second_fmt);
void wr_signals_stop(wr_signals *s);

/* Stops starting jobs (a drain); `kill` also ends running ones. */
void wr_stop(wr_app *a, bool kill, int cause);
void wr_job_finished(wr_app *a, wr_job *j); /* counts it and decides --halt */
size_t wr_slot_take(wr_app *a);
void wr_slot_give(wr_app *a, size_t slot);
void wr_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern pthread_mutex_t *wr_msg_mu;

#endif
