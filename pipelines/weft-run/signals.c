/* weft-run: stopping on signals, shared by a local run and --worker. Ctrl-C, SIGTERM or SIGHUP once calls
 * wr_stop(a, false) (start or fetch nothing new); a second calls wr_stop(a, true) (stop the running jobs);
 * a third exits at once with 128+signal (weft's force_exit_on_second on the second context). */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>

#include "weft-run.h"

static const int STOP_SIGNALS[3] = {SIGINT, SIGTERM, SIGHUP};

static void on_second(void *arg) {
  wr_signals *s = arg;
  int signo = weft_cause_signal(weft_ctx_cause(s->c2));
  wr_msg(s->second_fmt, strsignal(signo), (unsigned long long)atomic_load(&s->a->running));
  wr_stop(s->a, true, WEFT_SIGNAL_CAUSE(signo));
}

static void on_first(void *arg) {
  wr_signals *s = arg;
  int signo = weft_cause_signal(weft_ctx_cause(s->c1));
  atomic_store(&s->a->stop_signal, signo);
  wr_msg(s->first_fmt, strsignal(signo), (unsigned long long)atomic_load(&s->a->running));
  wr_stop(s->a, false, 0);
  pthread_mutex_lock(&s->mu);
  /* the second signal stops the running jobs; a third exits at once (128+signal): the way out when even
   * that waits, e.g. on a stdout nobody reads */
  if (!s->closing && weft_ctx_with_signals(weft_background(), STOP_SIGNALS, 3, true, &s->c2, &s->k2) == 0 &&
      weft_ctx_after_func(s->c2, on_second, s, &s->h2) != 0)
    s->h2 = NULL;
  pthread_mutex_unlock(&s->mu);
}

int wr_signals_start(wr_signals *s, wr_app *a, const char *first_fmt, const char *second_fmt) {
  *s = (wr_signals){.a = a, .first_fmt = first_fmt, .second_fmt = second_fmt};
  pthread_mutex_init(&s->mu, NULL);
  if (weft_ctx_with_signals(weft_background(), STOP_SIGNALS, 3, false, &s->c1, &s->k1) != 0) return -1;
  return weft_ctx_after_func(s->c1, on_first, s, &s->h1) != 0 ? -1 : 0;
}

void wr_signals_stop(wr_signals *s) {
  if (s->h1) weft_after_stop(s->h1);
  pthread_mutex_lock(&s->mu);
  s->closing = true;
  if (s->h2) weft_after_stop(s->h2), weft_after_free(s->h2);
  if (s->k2) weft_ctx_end(s->k2);
  pthread_mutex_unlock(&s->mu);
  if (s->h1) weft_after_free(s->h1);
  if (s->k1) weft_ctx_end(s->k1);
  s->h1 = s->h2 = NULL, s->k1 = s->k2 = NULL;
}
