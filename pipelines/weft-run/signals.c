/* weft-run: stopping on signals, shared by a local run and --worker. Ctrl-C, SIGTERM or SIGHUP once calls
 * wr_stop(a, false) (start or fetch nothing new); a second calls wr_stop(a, true) (stop the running jobs);
 * a third exits at once with 128+signal. Both steps are made up front (weft_ctx_with_signals_nth). */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>

#include "weft-run.h"

static const int STOP_SIGNALS[3] = {SIGINT, SIGTERM, SIGHUP};

static void callback_done(wr_signals *s, bool *done) {
  pthread_mutex_lock(&s->mu);
  *done = true;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static void on_second(void *arg) {
  wr_signals *s = arg;
  int signo = weft_cause_signal(weft_ctx_cause(s->c2));
  wr_msg(s->second_fmt, strsignal(signo), (unsigned long long)atomic_load(&s->a->running));
  wr_stop(s->a, true, WEFT_SIGNAL_CAUSE(signo));
  callback_done(s, &s->done2);
}

static void on_first(void *arg) {
  wr_signals *s = arg;
  int signo = weft_cause_signal(weft_ctx_cause(s->c1));
  atomic_store(&s->a->stop_signal, signo);
  wr_msg(s->first_fmt, strsignal(signo), (unsigned long long)atomic_load(&s->a->running));
  wr_stop(s->a, false, 0);
  callback_done(s, &s->done1);
}

int wr_signals_start(wr_signals *s, wr_app *a, const char *first_fmt, const char *second_fmt) {
  *s = (wr_signals){.a = a, .first_fmt = first_fmt, .second_fmt = second_fmt};
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  /* Every step up front, so a second signal counts however soon it follows the first; the third exits at
   * once (128+signal): the way out when even the second waits, e.g. on a stdout nobody reads. The
   * callbacks run in order on weft's callback thread: on_second never before on_first. */
  if (weft_ctx_with_signals_nth(weft_background(), STOP_SIGNALS, 3, 1, false, &s->c1, &s->k1) != 0 ||
      weft_ctx_with_signals_nth(weft_background(), STOP_SIGNALS, 3, 2, true, &s->c2, &s->k2) != 0 ||
      weft_ctx_after_func(s->c1, on_first, s, &s->h1) != 0 || weft_ctx_after_func(s->c2, on_second, s, &s->h2) != 0)
    return -1;
  return 0;
}

void wr_signals_stop(wr_signals *s) {
  /* A callback stopped before it started never runs; one that started is waited for, so none runs on
   * after the run is torn down. */
  pthread_mutex_lock(&s->mu);
  if (s->h2 && !weft_after_stop(s->h2))
    while (!s->done2) pthread_cond_wait(&s->cv, &s->mu);
  if (s->h1 && !weft_after_stop(s->h1))
    while (!s->done1) pthread_cond_wait(&s->cv, &s->mu);
  pthread_mutex_unlock(&s->mu);
  weft_after_free(s->h2);
  weft_after_free(s->h1);
  if (s->k2) weft_ctx_end(s->k2);
  if (s->k1) weft_ctx_end(s->k1);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  s->h1 = s->h2 = NULL, s->k1 = s->k2 = NULL;
}
