/* lib/chan/chan_timer.c: timer and ticker channels (weft_chan_after, weft_chan_tick).
 *
 * Design notes.
 * - No thread per timer and no second timer mechanism: each armed timer is a deadline context derived
 *   from the background root, with an after-func. The context layer already runs one timer thread for
 *   every deadline of the process and one callback thread for after-funcs, so a timer costs a
 *   context and a heap entry. Stopping it stops the after-func and ends the context on the spot (or, when
 *   the callback is already running, lets it see `stopped` and clean up). A ticker re-arms a fresh
 *   deadline context from its callback.
 * - The callback sends with the ring's non-blocking send: a value is dropped when the previous one is
 *   still unread (capacity 1), as Go drops ticks; it never blocks the shared callback thread.
 * - Lifetime: while a callback is armed it holds a reference to the channel, so weft_chan_destroy() can
 *   stop the timer and drop the user's reference at once; the channel is freed by whichever drops last.
 * - Lock order: timer.mu, then (inside the send's wake-up path) the channel's mu. weft_ctx_cancel() under
 *   timer.mu is safe: after-funcs never run on the cancelling thread.
 */
#include <stdlib.h>

#include "chan/chan_impl.h"

struct chan_timer {
  pthread_mutex_t mu;
  weft_chan *ch;
  weft_ctx *armed; /* the deadline context whose after-func is pending; NULL when none */
  weft_cancel *armed_cancel; /* the right to cancel it */
  weft_after *handle; /* its after-func; whoever takes it (under mu) frees it */
  int64_t next;    /* the deadline armed */
  int64_t period;  /* 0 for a one-shot timer */
  bool stopped;
};

static void timer_fire(void *arg);

/* Under t->mu. */
static int timer_arm(struct chan_timer *t) {
  weft_ctx *c;
  weft_cancel *k;
  int r = weft_ctx_with_deadline(weft_background(), t->next, &c, &k);
  if (r != 0) return r;
  r = weft_ctx_after_func(c, timer_fire, t, &t->handle);
  if (r != 0) {
    weft_ctx_end(k);
    return r;
  }
  t->armed = c;
  t->armed_cancel = k;
  return 0;
}

static void timer_fire(void *arg) {
  struct chan_timer *t = arg;
  weft_chan *ch = t->ch;
  bool rearmed = false, lost = false;
  pthread_mutex_lock(&t->mu);
  weft_ctx *c = t->armed;
  weft_after *h = t->handle;
  t->armed = NULL;
  t->handle = NULL;
  weft_after_free(h); /* too late to stop (we are running) */
  if (!t->stopped && weft_ctx_err(c) == WEFT_EDEADLINE) {
    int64_t now = weft_now();
    (void)weft_chan_try_send(ch, &now); /* WEFT_EFULL: the last value is unread; drop this one */
    if (t->period > 0) {
      /* Keep the phase: skip the ticks that are already late rather than firing them in a burst. */
      t->next += t->period;
      if (t->next <= now) t->next += ((now - t->next) / t->period + 1) * t->period;
      rearmed = timer_arm(t) == 0;
      if (!rearmed) t->stopped = lost = true; /* out of memory: the ticker stops and closes (documented) */
    }
  }
  pthread_mutex_unlock(&t->mu);
  weft_ctx_release(c);
  /* A ticker that can no longer tick closes its channel, so a reader waiting for the next tick wakes
   * (WEFT_ECLOSED once the last value is read) instead of waiting forever. Still holding our reference. */
  if (lost) (void)weft_chan_close(ch);
  if (!rearmed) weft__chan_unref(ch);
}

static int timer_chan(int64_t first, int64_t period, weft_chan **out) {
  weft_chan_opts o = WEFT_CHAN_OPTS_INIT;
  o.elem_size = sizeof(int64_t);
  o.capacity = 1;
  weft_chan *ch;
  int r = weft__chan_new(&o, &ch);
  if (r != 0) return r;
  struct chan_timer *t = calloc(1, sizeof *t);
  if (t == NULL) goto fail_timer;
  WEFT__ASSERT(pthread_mutex_init(&t->mu, NULL) == 0);
  t->ch = ch;
  t->period = period;
  t->next = weft_deadline_in(first);
  ch->timer = t;
  pthread_mutex_lock(&t->mu);
  r = timer_arm(t);
  if (r == 0) atomic_store(&ch->refs, 2); /* before unlocking: the callback cannot run its body yet */
  pthread_mutex_unlock(&t->mu);
  if (r != 0) {
    weft__chan_unref(ch); /* frees the timer too */
    return r;
  }
  *out = ch;
  return 0;
fail_timer:
  weft__chan_unref(ch);
  return WEFT_ENOMEM;
}

int weft_chan_after(int64_t duration, weft_chan **out) {
  if (out == NULL) return WEFT_EINVAL;
  *out = NULL;
  if (duration == WEFT_FOREVER) return WEFT_EINVAL;
  return timer_chan(duration, 0, out);
}

int weft_chan_tick(int64_t period, weft_chan **out) {
  if (out == NULL) return WEFT_EINVAL;
  *out = NULL;
  if (period <= 0 || period == WEFT_FOREVER) return WEFT_EINVAL;
  return timer_chan(period, period, out);
}

/* Stops the timer. When its callback has not started, the timer's context is ended here, synchronously
 * (so it leaves weft_ctx_live_count() at once), and the channel reference the callback held is dropped;
 * otherwise the running callback sees `stopped` and does both. */
void weft__chan_timer_stop(struct chan_timer *t) {
  weft_chan *drop = NULL;
  pthread_mutex_lock(&t->mu);
  t->stopped = true;
  weft_after *h = t->handle;
  t->handle = NULL;
  bool stopped = weft_after_stop(h);
  weft_after_free(h);
  if (stopped) {
    weft_ctx_end(t->armed_cancel);
    t->armed = NULL;
    t->armed_cancel = NULL;
    drop = t->ch;
  }
  pthread_mutex_unlock(&t->mu);
  if (drop) weft__chan_unref(drop); /* may free the channel and t: after unlocking */
}

void weft__chan_timer_free(struct chan_timer *t) {
  pthread_mutex_destroy(&t->mu);
  free(t);
}

int weft_chan_timer_stop(weft_chan *ch) {
  if (ch == NULL || ch->timer == NULL) return WEFT_EINVAL;
  weft__chan_timer_stop(ch->timer);
  return 0;
}
