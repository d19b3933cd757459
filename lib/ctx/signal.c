/* lib/ctx/signal.c: contexts cancelled by signals (Go's signal.NotifyContext).
 *
 * Design notes.
 * - The handler only writes the signal number to a non-blocking pipe (async-signal-safe, no lock) and,
 *   when a forced exit is armed for that signal, calls _exit. A dedicated thread reads the pipe and
 *   cancels the registered contexts. A handler is used rather than signalfd/sigwait because those only
 *   see a signal that every thread of the process blocks, which a library cannot guarantee for threads it
 *   did not create; the handler works whichever thread the kernel picks.
 * - Registrations live on a list under `mu`. The thread retains a context under `mu` and cancels it after
 *   dropping `mu` (a final release takes `mu` to unregister, so it must never run under it). It takes
 *   them in batches of a fixed size and goes back for more until none is left: each delivery has a
 *   number (`delivery`), and a registration stamped with it was taken already, so however the list
 *   changes between batches every registration present when the delivery began is cancelled once, and
 *   one made after (stamped at registration with the current number) is not.
 * - The previous disposition of a signal is saved when weft installs its handler and restored when the
 *   last registration for that signal goes away.
 * - Counting (weft_ctx_with_signals_nth): each registration counts the deliveries of its signals made
 *   after it (`count`, under mu) and is cancelled at the nth. Escalation ("once drains, twice cancels")
 *   registers every step up front, so a second arrival cannot fall in a gap between the first step's
 *   callback and the registration of the next; one delivery counts once per registration.
 * - Forced exit: when a delivery reaches the nth of a context with force_exit_on_second, `armed[s]` is
 *   set for every signal s of its set (under mu, just before the context is cancelled) and the next of
 *   them exits the process with status 128+s from the handler itself.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "ctx/ctx_impl.h"

#define NSIG_MAX 65

typedef struct reg {
  struct reg *next;
  weft_ctx *ctx;
  sigset_t set;
  bool force;
  unsigned nth;   /* cancelled by this delivery of its signals, counted from its registration */
  unsigned count; /* deliveries of its signals counted so far (under mu) */
  uint64_t seen;  /* the last delivery that took it (under mu) */
} reg;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static reg *regs;
static int users[NSIG_MAX];             /* registrations per signal */
static struct sigaction saved[NSIG_MAX]; /* disposition before weft's handler */
static _Atomic int armed[NSIG_MAX]; /* lock-free atomics: safe to read in a handler */
static int pipe_rd = -1, pipe_wr = -1;
static bool thread_started;
static uint64_t delivery; /* deliveries begun by the thread (under mu) */

static void on_signal(int s) {
  if (s > 0 && s < NSIG_MAX && atomic_load_explicit(&armed[s], memory_order_relaxed)) _exit(128 + s);
  int saved_errno = errno;
  unsigned char b = (unsigned char)s;
  ssize_t r = write(pipe_wr, &b, 1);
  (void)r;
  errno = saved_errno;
}

static void *signal_main(void *arg) {
  (void)arg;
  for (;;) {
    unsigned char b;
    ssize_t r = read(pipe_rd, &b, 1);
    if (r != 1) {
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && errno == EAGAIN) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        continue;
      }
      return NULL;
    }
    int s = b;
    enum { BATCH = 64 };
    weft_ctx *hit[BATCH];
    size_t n;
    bool more;
    pthread_mutex_lock(&mu);
    uint64_t d = ++delivery;
    do {
      n = 0;
      reg *g = regs;
      for (; g && n < BATCH; g = g->next) {
        if (g->seen == d || !sigismember(&g->set, s)) continue;
        g->seen = d;
        if (g->count >= g->nth || ++g->count < g->nth) continue; /* cancelled already, or not yet */
        if (!weft__try_retain(g->ctx)) continue; /* its final release runs: nothing to cancel */
        hit[n++] = g->ctx;
        /* Armed here, under mu, while g is surely registered: weft_ctx_end may free it once mu is
         * dropped (the reference taken above keeps the context, not the registration). */
        if (g->force)
          for (int k = 1; k < NSIG_MAX; k++)
            if (sigismember(&g->set, k)) atomic_store(&armed[k], 1);
      }
      more = g != NULL;
      pthread_mutex_unlock(&mu);
      for (size_t i = 0; i < n; i++) {
        weft__cancel(hit[i], WEFT_ECANCELED, WEFT_SIGNAL_CAUSE(s), false);
        weft_ctx_release(hit[i]);
      }
      pthread_mutex_lock(&mu);
    } while (more);
    pthread_mutex_unlock(&mu);
  }
}

static int ensure_thread(void) {
  if (thread_started) return 0;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return WEFT_ESYS;
  fcntl(fds[1], F_SETFL, O_NONBLOCK); /* the handler must never block */
  pipe_rd = fds[0];
  pipe_wr = fds[1];
  pthread_t th;
  if (weft__runtime_thread(&th, signal_main, NULL) != 0) {
    close(fds[0]);
    close(fds[1]);
    pipe_rd = pipe_wr = -1;
    return WEFT_ESYS;
  }
  pthread_detach(th);
  thread_started = true;
  return 0;
}

int weft_ctx_with_signals(weft_ctx *parent, const int *sigs, size_t n, bool force_exit_on_second,
                          weft_ctx **out, weft_cancel **cancel) {
  return weft_ctx_with_signals_nth(parent, sigs, n, 1, force_exit_on_second, out, cancel);
}

int weft_ctx_with_signals_nth(weft_ctx *parent, const int *sigs, size_t n, unsigned nth, bool force_exit_on_next,
                              weft_ctx **out, weft_cancel **cancel) {
  static const int dflt[] = {SIGINT, SIGTERM};
  if (out) *out = NULL;
  if (cancel) *cancel = NULL;
  if (parent == NULL || out == NULL || cancel == NULL || (n > 0 && sigs == NULL) || n > NSIG_MAX || nth == 0)
    return WEFT_EINVAL;
  if (n == 0) {
    sigs = dflt;
    n = 2;
  }
  reg *g = calloc(1, sizeof *g);
  if (g == NULL) return WEFT_ENOMEM;
  sigemptyset(&g->set);
  for (size_t i = 0; i < n; i++) {
    int s = sigs[i];
    /* Between the classic signals and SIGRTMIN lie the C library's own (glibc's thread cancellation and
     * set*id signals): it refuses to install a handler for them, so they could never fire. */
    if (s <= 0 || s >= NSIG_MAX || s > SIGRTMAX || (s >= 32 && s < SIGRTMIN) || s == SIGKILL ||
        s == SIGSTOP || s == SIGSEGV || s == SIGBUS || s == SIGFPE || s == SIGILL) {
      free(g);
      return WEFT_EINVAL;
    }
    sigaddset(&g->set, s);
  }
  int rc = weft__ctx_with_signal_kind(parent, out, cancel);
  if (rc != 0) {
    free(g);
    return rc;
  }
  g->ctx = *out;
  g->force = force_exit_on_next;
  g->nth = nth;
  pthread_mutex_lock(&mu);
  rc = ensure_thread();
  if (rc == 0) {
    for (int s = 1; s < NSIG_MAX; s++) {
      if (!sigismember(&g->set, s) || users[s]++ > 0) continue;
      struct sigaction sa;
      memset(&sa, 0, sizeof sa);
      sa.sa_handler = on_signal;
      sa.sa_flags = SA_RESTART;
      sigemptyset(&sa.sa_mask);
      atomic_store(&armed[s], 0);
      sigaction(s, &sa, &saved[s]);
    }
    g->seen = delivery; /* a delivery under way began before it */
    g->next = regs;
    regs = g;
  }
  pthread_mutex_unlock(&mu);
  if (rc != 0) {
    free(g);
    weft__ctx_end(*out);
    *out = NULL;
    *cancel = NULL;
  }
  return rc;
}

/* Called from the final release of a SIGNAL context. */
void weft__signal_forget(weft_ctx *c) {
  pthread_mutex_lock(&mu);
  for (reg **pp = &regs; *pp; pp = &(*pp)->next) {
    reg *g = *pp;
    if (g->ctx != c) continue;
    *pp = g->next;
    for (int s = 1; s < NSIG_MAX; s++) {
      if (!sigismember(&g->set, s) || --users[s] > 0) continue;
      sigaction(s, &saved[s], NULL);
      atomic_store(&armed[s], 0);
    }
    free(g);
    break;
  }
  pthread_mutex_unlock(&mu);
}
