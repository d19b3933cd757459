/* weft-run: running one job.
 *
 * Spawning. posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK), no copy of the parent's page tables however
 * large weft-run grows), with the child in a new process group (POSIX_SPAWN_SETPGROUP), every signal
 * back to its default and unblocked, stdin from /dev/null, stdout and stderr to pipes (or weft-run's own
 * with --ungroup). Every descriptor weft-run opens is close-on-exec, so a job inherits only 0, 1 and 2.
 *
 * Waiting. One poll() over the job's two pipes, a pidfd for its end, and the descriptor of the job's
 * context (weft_ctx_fd: the run's kill context, or a per-job child of it with --timeout). When the
 * context ends, the whole process group gets SIGTERM, then SIGKILL once --term-grace has passed; after the
 * job's own process has ended the group is watched until it is empty (or killed), so that grandchildren do
 * not outlive a job that was stopped. A job that ends by itself leaves its background processes alone
 * (as a shell does), and its pipes are read until they are empty, not until every holder closed them: a
 * daemon that keeps the pipe open cannot hold the job, or the run, forever. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "weft-run.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

extern char **environ;

static double now_epoch(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What the worker keeps while a job's process runs. */
typedef struct attempt {
  pid_t pid;
  int pidfd;            /* -1: polled with waitpid every few ms instead */
  int fd[3];            /* [1] stdout, [2] stderr read ends; -1 when closed or not used */
  wr_lines lines[3];
  bool exited;
  int status;           /* waitpid's */
  int term_sig;         /* the signal weft-run sent first, 0 if none */
  int64_t kill_at;      /* when SIGKILL follows SIGTERM (monotonic ns) */
  bool group_gone;
} attempt;

static void take_output(wr_app *a, wr_job *j, attempt *t, int fd, const char *p, size_t n) {
  if (fd == 1) j->received += n; /* the joblog's Receive: stdout's bytes, as GNU parallel counts them */
  if (a->o.out == WR_OUT_LINE) wr_lines_add(a, j, fd, &t->lines[fd], p, n);
  else wr_hold_add(fd == 1 ? &j->out : &j->err, p, n);
}

/* Reads what is there; closes the pipe at its end. `until_empty`: stop at EAGAIN (after the job's end). */
static void drain_pipe(wr_app *a, wr_job *j, attempt *t, int fd, bool until_empty) {
  char buf[65536];
  for (int rounds = 0; t->fd[fd] >= 0; rounds++) {
    ssize_t r = read(t->fd[fd], buf, sizeof buf);
    if (r > 0) {
      take_output(a, j, t, fd, buf, (size_t)r);
      if (!until_empty && rounds >= 4) return; /* let the other pipe and the job's end have their turn */
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EAGAIN && !until_empty) return;
    close(t->fd[fd]); /* end of file, EAGAIN after the job's end, or an error */
    t->fd[fd] = -1;
    if (a->o.out == WR_OUT_LINE) wr_lines_end(a, j, fd, &t->lines[fd]);
  }
}

static void reap(attempt *t) {
  if (t->exited) return;
  if (t->pidfd >= 0) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PIDFD, (id_t)t->pidfd, &si, WEXITED | WNOHANG) == 0 && si.si_pid != 0) {
      t->exited = true;
      t->status = si.si_code == CLD_EXITED ? (si.si_status & 0xff) << 8 : (si.si_status & 0x7f);
    }
    return;
  }
  int st;
  pid_t r = waitpid(t->pid, &st, WNOHANG);
  if (r == t->pid) t->exited = true, t->status = st;
}

static void signal_group(attempt *t, int sig) {
  if (kill(-t->pid, sig) != 0 && errno == ESRCH) t->group_gone = true;
}

/* Spawns the job's command. Returns 0, or an errno (the job did not start). */
static int spawn(wr_app *a, wr_job *j, size_t slot, attempt *t) {
  int out[2] = {-1, -1}, err[2] = {-1, -1};
  int rc = 0;
  char **argv = NULL;
  char *shargv[4] = {"/bin/sh", "-c", j->cmd, NULL};
  if (a->o.no_shell) {
    argv = wr_command_argv(a->tmpl, j->seq, slot, j->args, j->lens, j->nargs);
    if (!argv) return ENOMEM;
  }
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  if ((rc = posix_spawn_file_actions_init(&fa)) != 0) goto out_argv;
  if ((rc = posix_spawnattr_init(&at)) != 0) goto out_fa;
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&at, 0);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  posix_spawn_file_actions_adddup2(&fa, a->devnull, 0);
  if (a->o.out != WR_OUT_UNGROUP) {
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) { rc = errno; goto out_attr; }
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  }
  if (a->o.no_shell && a->prog) rc = posix_spawn(&t->pid, a->prog, &fa, &at, argv, environ);
  else if (a->o.no_shell) rc = posix_spawnp(&t->pid, argv[0], &fa, &at, argv, environ);
  else rc = posix_spawn(&t->pid, "/bin/sh", &fa, &at, shargv, environ);
out_attr:
  posix_spawnattr_destroy(&at);
out_fa:
  posix_spawn_file_actions_destroy(&fa);
out_argv:
  free(argv);
  if (out[1] >= 0) close(out[1]);
  if (err[1] >= 0) close(err[1]);
  if (rc != 0) {
    if (out[0] >= 0) close(out[0]);
    if (err[0] >= 0) close(err[0]);
    return rc;
  }
  t->fd[1] = out[0], t->fd[2] = err[0];
  for (int k = 1; k <= 2; k++)
    if (t->fd[k] >= 0) fcntl(t->fd[k], F_SETFL, O_NONBLOCK);
  t->pidfd = pidfd_open(t->pid, 0);
  return 0;
}

/* One attempt: spawn, collect, wait; the context ending stops it. Returns the class it ended in. */
static enum wr_class attempt_run(wr_app *a, wr_job *j, size_t slot, weft_ctx *ctx) {
  attempt t = {.pidfd = -1, .fd = {-1, -1, -1}};
  j->start = now_epoch();
  int64_t t0 = weft_now();
  j->received = 0;
  wr_hold_reset(&j->out);
  wr_hold_reset(&j->err);
  int rc = spawn(a, j, slot, &t);
  if (rc != 0) {
    /* the shell itself could not start, or (--no-shell) the program: 127 not found, 126 otherwise */
    char msg[256];
    int n = rc == E2BIG
                ? snprintf(msg, sizeof msg, "%s: job %llu: its command (%zu bytes) is longer than the kernel takes "
                           "for one argument (128 KiB) or for all of them\n", WR_NAME, (unsigned long long)j->seq, j->cmdlen)
                : a->o.no_shell
                ? snprintf(msg, sizeof msg, "%s: job %llu: %s: %s\n", WR_NAME, (unsigned long long)j->seq,
                           a->o.cmd[0], rc == ENOENT ? "not found" : strerror(rc))
                : snprintf(msg, sizeof msg, "%s: job %llu: cannot run /bin/sh: %s\n", WR_NAME,
                           (unsigned long long)j->seq, strerror(rc));
    if (a->o.out == WR_OUT_GROUP) wr_hold_add(&j->err, msg, (size_t)n);
    else wr_write(a, 2, msg, (size_t)n);
    j->exitval = rc == ENOENT ? 127 : 126, j->signo = 0;
    j->runtime = (double)(weft_now() - t0) / 1e9;
    return WR_FAILED;
  }
  atomic_fetch_add(&a->running, 1);
  int cfd = weft_ctx_fd(ctx);
  for (;;) {
    bool pipes_open = t.fd[1] >= 0 || t.fd[2] >= 0;
    if (t.exited) {
      /* the job's process ended: take what its pipes hold now, and finish unless its group is being
       * stopped and still has members */
      for (int k = 1; k <= 2; k++) drain_pipe(a, j, &t, k, true);
      if (!t.term_sig || t.group_gone) break;
      signal_group(&t, 0);
      if (t.group_gone) break;
    }
    struct pollfd pf[4];
    int np = 0, ip[3] = {-1, -1, -1};
    for (int k = 1; k <= 2; k++)
      if (t.fd[k] >= 0) ip[k] = np, pf[np++] = (struct pollfd){.fd = t.fd[k], .events = POLLIN};
    int ipid = -1, ictx = -1;
    if (!t.exited && t.pidfd >= 0) ipid = np, pf[np++] = (struct pollfd){.fd = t.pidfd, .events = POLLIN};
    if (!t.term_sig && cfd >= 0) ictx = np, pf[np++] = (struct pollfd){.fd = cfd, .events = POLLIN};
    int timeout = -1;
    if ((t.pidfd < 0 && !t.exited) || (cfd < 0 && !t.term_sig)) timeout = 10; /* no descriptor: look every 10 ms */
    if (t.term_sig) {
      int64_t left = t.kill_at - weft_now();
      int ms = left <= 0 ? 0 : (int)(left / 1000000) + 1;
      if (t.exited) ms = ms > 10 ? 10 : ms; /* watching the group empty */
      timeout = timeout < 0 || ms < timeout ? ms : timeout;
    }
    (void)pipes_open;
    int r = poll(pf, (nfds_t)np, timeout);
    if (r < 0 && errno != EINTR) break;
    for (int k = 1; k <= 2; k++)
      if (ip[k] >= 0 && pf[ip[k]].revents) drain_pipe(a, j, &t, k, false);
    if (ipid < 0 || pf[ipid].revents) reap(&t);
    if (!t.term_sig && ((ictx >= 0 && (pf[ictx].revents & POLLIN)) || (cfd < 0 && weft_ctx_done(ctx)))) {
      t.term_sig = SIGTERM;
      t.kill_at = weft_now() + a->o.term_grace;
      signal_group(&t, SIGTERM);
    }
    if (t.term_sig && t.term_sig != SIGKILL && weft_now() >= t.kill_at) {
      t.term_sig = SIGKILL;
      signal_group(&t, SIGKILL);
      t.kill_at = WEFT_FOREVER;
    }
    if (t.exited && t.term_sig == SIGKILL && t.kill_at == WEFT_FOREVER) {
      /* SIGKILL sent to the group after the job's own end: its members are gone or going */
      for (int k = 1; k <= 2; k++) drain_pipe(a, j, &t, k, true);
      break;
    }
  }
  if (!t.exited) { /* poll failed: make sure the job is gone before it is reported */
    signal_group(&t, SIGKILL);
    while (!t.exited) {
      if (t.pidfd >= 0) {
        struct pollfd pf = {.fd = t.pidfd, .events = POLLIN};
        (void)poll(&pf, 1, 100);
      } else {
        usleep(10000);
      }
      reap(&t);
    }
  }
  for (int k = 1; k <= 2; k++)
    if (t.fd[k] >= 0) drain_pipe(a, j, &t, k, true);
  if (t.pidfd >= 0) close(t.pidfd);
  atomic_fetch_sub(&a->running, 1);
  j->runtime = (double)(weft_now() - t0) / 1e9;
  if (t.term_sig) {
    /* stopped by weft-run: GNU parallel logs -1 and the signal that ended it */
    j->exitval = -1;
    j->signo = WIFSIGNALED(t.status) ? WTERMSIG(t.status) : t.term_sig;
    int cause = weft_ctx_err(a->kill_ctx) ? weft_ctx_cause(a->kill_ctx) : 0;
    if (!cause || cause == WEFT_EDEADLINE) return WR_TIMED_OUT; /* its own --timeout, or the --deadline */
    return WR_KILLED;
  }
  j->exitval = WIFEXITED(t.status) ? WEXITSTATUS(t.status) : 0;
  j->signo = WIFSIGNALED(t.status) ? WTERMSIG(t.status) : 0;
  return j->exitval == 0 && j->signo == 0 ? WR_DONE : WR_FAILED;
}

void wr_job_run(wr_app *a, wr_job *j, weft_ctx *kill_ctx) {
  size_t slot = wr_slot_take(a);
  if (!j->cmd) {
    j->cmd = wr_command_line(a->tmpl, j->seq, slot, j->args, j->lens, j->nargs, &j->cmdlen);
    if (!j->cmd) {
      j->cls = WR_FAILED, j->exitval = 126, j->note = "out of memory building the command";
      wr_slot_give(a, slot);
      return;
    }
  }
  if (a->o.dry_run) {
    j->start = now_epoch();
    wr_hold_reset(&j->out);
    if (a->o.out == WR_OUT_GROUP) {
      wr_hold_add(&j->out, j->cmd, j->cmdlen);
      wr_hold_add(&j->out, "\n", 1);
    } else {
      /* one write: a dry-run line is never cut */
      char *l = malloc(j->cmdlen + 1);
      if (l) {
        memcpy(l, j->cmd, j->cmdlen);
        l[j->cmdlen] = '\n';
        pthread_mutex_lock(&a->out_mu[1]);
        wr_write(a, 1, l, j->cmdlen + 1);
        pthread_mutex_unlock(&a->out_mu[1]);
        free(l);
      }
    }
    j->cls = WR_DONE;
    wr_slot_give(a, slot);
    return;
  }
  for (unsigned n = 1;; n++) {
    weft_ctx *ctx = kill_ctx;
    weft_cancel *cancel = NULL;
    int64_t timeout = j->timeout ? j->timeout : a->o.timeout;
    if (timeout != WEFT_FOREVER && weft_ctx_with_timeout(kill_ctx, timeout, &ctx, &cancel) != 0) {
      ctx = kill_ctx, cancel = NULL; /* out of memory: the job runs without its own timeout, said below */
      wr_msg("job %llu: no memory for its timeout; it runs without one", (unsigned long long)j->seq);
    }
    j->cls = attempt_run(a, j, slot, ctx);
    if (cancel) weft_ctx_end(cancel);
    /* a failure (or its own timeout) is retried; a stop by weft-run is not */
    if (j->cls == WR_DONE || j->cls == WR_KILLED || n >= a->o.retries) break;
    if (atomic_load(&a->stopping) || weft_ctx_done(kill_ctx)) break;
  }
  wr_slot_give(a, slot);
}

void wr_job_free(wr_job *j) {
  if (!j) return;
  wr_hold_free(&j->out);
  wr_hold_free(&j->err);
  free(j->cmd);
  free(j);
}
