/* lib/pipeline/pump.c: weft_chan_merge (fan-in), weft_chan_tee (broadcast), and pumps that run them on
 * a thread of their own. Built on the public channel API only: a merge is a select over its open inputs
 * followed by a send, a tee a receive followed by one send per output. Everything blocks under the
 * caller's context, so cancelling it stops a pump within one channel operation. */
#include <signal.h>

#include "pipeline/pipeline_impl.h"

#define PUMP_MAX 64

static const weft_pump_opts pump_dflt = WEFT_PUMP_OPTS_INIT;

static int check_chans(weft_chan *a, weft_chan *const *bs, size_t n) {
  if (a == NULL || bs == NULL || n == 0 || n > PUMP_MAX) return WEFT_EINVAL;
  size_t es = weft_chan_elem_size(a);
  for (size_t i = 0; i < n; i++)
    if (bs[i] == NULL || weft_chan_elem_size(bs[i]) != es) return WEFT_EINVAL;
  return 0;
}

static void close_quietly(weft_chan *ch) { (void)weft_chan_close(ch); /* already closed: fine */ }

int weft_chan_merge(weft_ctx *ctx, weft_chan *out, weft_chan *const *ins, size_t n, const weft_pump_opts *opts) {
  int rc = check_chans(out, ins, n);
  if (rc != 0) return rc;
  const weft_pump_opts *o = opts ? opts : &pump_dflt;
  void *buf = malloc(weft_chan_elem_size(out));
  if (buf == NULL) { /* the header promises the output is closed whatever the reason: a reader must wake */
    if (!o->keep_open) close_quietly(out);
    return WEFT_ENOMEM;
  }
  weft_select_case cases[PUMP_MAX];
  for (size_t i = 0; i < n; i++) cases[i] = WEFT_RECV_CASE(ins[i], buf);
  size_t open = n;
  while (open > 0) {
    int r = weft_select(ctx, cases, n);
    if (r < 0) {
      rc = r;
      break;
    }
    if (cases[r].err == WEFT_ECLOSED) { /* closed and drained: disable the case */
      cases[r].chan = NULL;
      open--;
      continue;
    }
    rc = weft_chan_send(out, ctx, buf);
    if (rc != 0) {
      if (o->discard != NULL) o->discard(buf, o->discard_arg);
      break;
    }
  }
  free(buf);
  if (!o->keep_open) close_quietly(out);
  return rc;
}

int weft_chan_tee(weft_ctx *ctx, weft_chan *in, weft_chan *const *outs, size_t n, const weft_pump_opts *opts) {
  int rc = check_chans(in, outs, n);
  if (rc != 0) return rc;
  const weft_pump_opts *o = opts ? opts : &pump_dflt;
  void *buf = malloc(weft_chan_elem_size(in));
  if (buf == NULL) { /* as in merge: the outputs are closed whatever the reason */
    if (!o->keep_open)
      for (size_t i = 0; i < n; i++) close_quietly(outs[i]);
    return WEFT_ENOMEM;
  }
  for (;;) {
    rc = weft_chan_recv(in, ctx, buf);
    if (rc != 0) {
      if (rc == WEFT_ECLOSED) rc = 0; /* closed and drained: done */
      break;
    }
    size_t i = 0;
    for (; i < n && rc == 0; i++) rc = weft_chan_send(outs[i], ctx, buf);
    if (rc != 0) {
      for (size_t j = i - 1; j < n && o->discard != NULL; j++) o->discard(buf, o->discard_arg);
      break;
    }
  }
  free(buf);
  if (!o->keep_open)
    for (size_t i = 0; i < n; i++) close_quietly(outs[i]);
  return rc;
}

struct weft_chan_pump {
  bool merge; /* weft_chan_merge(ctx, a = out, bs = ins), else weft_chan_tee(ctx, a = in, bs = outs) */
  weft_ctx *ctx;
  weft_chan *a;
  weft_chan *bs[PUMP_MAX];
  size_t n;
  weft_pump_opts opts;
  pthread_t th;
  int rc;
};

static void *pump_main(void *arg) {
  weft_chan_pump *pu = arg;
  pu->rc = pu->merge ? weft_chan_merge(pu->ctx, pu->a, pu->bs, pu->n, &pu->opts)
                     : weft_chan_tee(pu->ctx, pu->a, pu->bs, pu->n, &pu->opts);
  return NULL;
}

static int pump_start(bool merge, weft_ctx *ctx, weft_chan *a, weft_chan *const *bs, size_t n,
                      const weft_pump_opts *opts, weft_chan_pump **out) {
  if (out == NULL) return WEFT_EINVAL;
  *out = NULL;
  int rc = check_chans(a, bs, n);
  if (rc != 0) return rc;
  weft_chan_pump *pu = calloc(1, sizeof *pu);
  if (pu == NULL) return WEFT_ENOMEM;
  pu->merge = merge;
  pu->ctx = weft_ctx_retain(ctx ? ctx : weft_background());
  pu->a = a;
  memcpy(pu->bs, bs, n * sizeof *bs);
  pu->n = n;
  pu->opts = opts ? *opts : pump_dflt;
  if (weft__runtime_thread(&pu->th, pump_main, pu) != 0) {
    weft_ctx_release(pu->ctx);
    free(pu);
    return WEFT_ESYS;
  }
  *out = pu;
  return 0;
}

int weft_chan_merge_start(weft_ctx *ctx, weft_chan *out, weft_chan *const *ins, size_t n,
                          const weft_pump_opts *opts, weft_chan_pump **pump) {
  return pump_start(true, ctx, out, ins, n, opts, pump);
}

int weft_chan_tee_start(weft_ctx *ctx, weft_chan *in, weft_chan *const *outs, size_t n,
                        const weft_pump_opts *opts, weft_chan_pump **pump) {
  return pump_start(false, ctx, in, outs, n, opts, pump);
}

int weft_chan_pump_join(weft_chan_pump *pu) {
  if (pu == NULL) return WEFT_EINVAL;
  pthread_join(pu->th, NULL);
  int rc = pu->rc;
  weft_ctx_release(pu->ctx);
  free(pu);
  return rc;
}
