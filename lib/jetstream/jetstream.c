/* lib/jetstream/jetstream.c: JetStream jobs under weft contexts (weft/jetstream.h), on the NATS C client.
 *
 * Design notes.
 *
 * Leases. Every fetched message is on its consumer's in-flight list (c->mu) until weft_js_finish() takes
 * it off. One lease-keeper thread per consumer wakes when the earliest heartbeat is due, marks the due
 * messages whose context is alive `hb_busy`, drops the lock, sends InProgress for each, and retakes the
 * lock to record the result (last_refresh, next_hb) and clear hb_busy. A message whose context is done
 * gets next_hb = WEFT_FOREVER: it is no longer kept, so a hung job's lease lapses and the server
 * redelivers it. The keeper never sends more than one call per message at a time, and never concurrently
 * with its terminal action: finish unlinks the message under c->mu after waiting (c->idle) until the
 * keeper has cleared hb_busy, and only then sends. The NATS client's per-message state (its "acked" flag)
 * is therefore touched by one thread at a time, the rule nats.c expects.
 *
 * Lapses. last_refresh is a time before the server can have (re)started the lease: the start of the fetch
 * that could have delivered the message, and for an InProgress the moment before it was sent. A message
 * finished when now - last_refresh >= 3/4 AckWait may have been redelivered already; any action then
 * could settle another worker's delivery (nats-server#4786), so none is sent and the outcome is lapsed.
 * Messages left in the client's queue by a pull request that expired just as they arrived were delivered
 * around the time that fetch returned (last_fetch_end), which is then their lease's start; a fetch that
 * finds such messages more than AckWait/2 old counts them fetched and lapsed without handing them out.
 *
 * Accounting. Every counter of the report lives under c->mu; fetched is raised when messages are handed
 * out, exactly one class when one is finished, so fetched == classes + in_flight at every snapshot.
 *
 * Backpressure. in_flight never exceeds max_in_flight: a fetch asks the server for at most the room left
 * and waits on c->room (signalled by finish) while there is none. Fetches on one consumer are serialised
 * by c->fetch_mu (nats.c refuses concurrent fetches on a subscription).
 *
 * Connection loss. The client reconnects by itself; fetches that fail while it is down are retried after
 * a pause of fetch_wait under the caller's context. Actions are sent only while the connection is up, and
 * the client's reconnect buffer is 1 byte, so a publish during a reconnect fails instead of going out
 * late (at most one small message can slip into the buffer between the status check and the publish;
 * the lapse rule above covers it).
 *
 * Lock order: c->fetch_mu, then c->mu. No NATS call is made under c->mu. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <nats/nats.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <weft/jetstream.h>

/* ---- errors ------------------------------------------------------------------------------------------- */

static _Thread_local char js_last_err[256];

static void set_err(const char *what, natsStatus s) {
  natsStatus ls = NATS_OK;
  const char *t = nats_GetLastError(&ls);
  snprintf(js_last_err, sizeof js_last_err, "%s: %s%s%s", what, natsStatus_GetText(s), t ? ": " : "",
           t ? t : "");
}

static int map_status(const char *what, natsStatus s) {
  if (s == NATS_OK) return 0;
  set_err(what, s);
  if (s == NATS_NO_MEMORY) return WEFT_ENOMEM;
  if (s == NATS_TIMEOUT) return WEFT_ETIMEDOUT;
  return WEFT_JS_ENATS;
}

const char *weft_js_strerror(int err) {
  if (err == WEFT_JS_ENATS) return "NATS refused the call";
  if (err == WEFT_JS_EPERMANENT) return "permanent failure: do not retry";
  return weft_strerror(err);
}

const char *weft_js_last_error(void) { return js_last_err; }

const char *weft_js_outcome_name(weft_js_outcome o) {
  switch (o) {
  case WEFT_JS_COMPLETED: return "completed";
  case WEFT_JS_RETRIED: return "retried";
  case WEFT_JS_DEAD: return "dead";
  case WEFT_JS_EXPIRED: return "expired";
  case WEFT_JS_RETURNED: return "returned";
  case WEFT_JS_LAPSED: return "lapsed";
  case WEFT_JS_UNSENT: return "unsent";
  }
  return "?";
}

/* ---- time --------------------------------------------------------------------------------------------- */

static int64_t real_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * INT64_C(1000000000) + ts.tv_nsec;
}

/* A monotonic deadline as Unix ns (for the header), and back. */
static int64_t mono_to_unix(int64_t dl) {
  int64_t now = weft_now();
  int64_t left = dl - now;
  int64_t r = real_now();
  if (left > INT64_MAX - r) return INT64_MAX;
  return r + left;
}

static int64_t unix_to_mono(int64_t u) {
  int64_t r = real_now();
  int64_t left = u - r;
  int64_t now = weft_now();
  if (left > 0 && left > INT64_MAX - 1 - now) return WEFT_FOREVER;
  return now + left;
}

static void mono_to_timespec(int64_t dl, struct timespec *ts) {
  if (dl > INT64_C(4000000000) * INT64_C(1000000000)) dl = INT64_C(4000000000) * INT64_C(1000000000);
  ts->tv_sec = (time_t)(dl / INT64_C(1000000000));
  ts->tv_nsec = (long)(dl % INT64_C(1000000000));
}

static void lock(pthread_mutex_t *m) {
  if (pthread_mutex_lock(m) != 0) abort();
}
static void unlock(pthread_mutex_t *m) {
  if (pthread_mutex_unlock(m) != 0) abort();
}

static int cond_init_mono(pthread_cond_t *cv) {
  pthread_condattr_t a;
  if (pthread_condattr_init(&a) != 0) return WEFT_ESYS;
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  int rc = pthread_cond_init(cv, &a);
  pthread_condattr_destroy(&a);
  return rc == 0 ? 0 : WEFT_ESYS;
}

/* ---- connections -------------------------------------------------------------------------------------- */

struct weft_js {
  natsConnection *nc;
  jsCtx *jsx;
  int64_t timeout;
  _Atomic uint64_t disconnects;
  _Atomic uint64_t reconnects;
  _Atomic long consumers;
  /* The client calls the connection callbacks on a thread of its own, after natsConnection_Close() has
   * returned; the closed callback comes last, so close waits for it before freeing this. */
  pthread_mutex_t closed_mu;
  pthread_cond_t closed_cv;
  bool closed;
};

static void on_disconnected(natsConnection *nc, void *closure) {
  (void)nc;
  atomic_fetch_add(&((weft_js *)closure)->disconnects, 1);
}
static void on_reconnected(natsConnection *nc, void *closure) {
  (void)nc;
  atomic_fetch_add(&((weft_js *)closure)->reconnects, 1);
}

static void on_closed(natsConnection *nc, void *closure) {
  (void)nc;
  weft_js *js = closure;
  lock(&js->closed_mu);
  js->closed = true;
  pthread_cond_broadcast(&js->closed_cv);
  unlock(&js->closed_mu);
}

static int64_t to_ms(int64_t ns) {
  if (ns <= 0) return 0;
  int64_t ms = ns / WEFT_MS(1);
  return ms == 0 ? 1 : ms;
}

/* Waits for the closed callback (10 s at most: a client that never calls it costs a wait, not a crash).
 * Returns false when it did not come, and then js must not be freed. */
static bool close_wait(weft_js *js) {
  int64_t until = weft_deadline_in(WEFT_SEC(10));
  struct timespec ts;
  mono_to_timespec(until, &ts);
  lock(&js->closed_mu);
  while (!js->closed && weft_now() < until) pthread_cond_timedwait(&js->closed_cv, &js->closed_mu, &ts);
  bool ok = js->closed;
  unlock(&js->closed_mu);
  return ok;
}

int weft_js_connect(const weft_js_opts *o, weft_js **out) {
  if (out != NULL) *out = NULL;
  if (o == NULL || out == NULL || o->url == NULL || o->url[0] == '\0' || o->timeout <= 0 ||
      o->reconnect_wait < 0 || o->max_reconnect < -1)
    return WEFT_EINVAL;
  weft_js *js = calloc(1, sizeof *js);
  if (js == NULL) return WEFT_ENOMEM;
  js->timeout = o->timeout;
  if (pthread_mutex_init(&js->closed_mu, NULL) != 0) {
    free(js);
    return WEFT_ESYS;
  }
  if (cond_init_mono(&js->closed_cv) != 0) {
    pthread_mutex_destroy(&js->closed_mu);
    free(js);
    return WEFT_ESYS;
  }
  natsOptions *no = NULL;
  natsStatus s = natsOptions_Create(&no);
  if (s == NATS_OK) s = natsOptions_SetURL(no, o->url);
  if (s == NATS_OK) s = natsOptions_SetName(no, o->name ? o->name : "weft");
  if (s == NATS_OK) s = natsOptions_SetTimeout(no, to_ms(o->timeout));
  if (s == NATS_OK) s = natsOptions_SetAllowReconnect(no, true);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(no, o->max_reconnect);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(no, to_ms(o->reconnect_wait));
  /* Nothing is sent late behind the caller's back: no publishing into a buffer while reconnecting, and
   * requests (confirmed acks, publishes) fail at once on a disconnect instead of waiting for a reply. */
  if (s == NATS_OK) s = natsOptions_SetReconnectBufSize(no, 1);
  if (s == NATS_OK) s = natsOptions_SetFailRequestsOnDisconnect(no, true);
  if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(no, on_disconnected, js);
  if (s == NATS_OK) s = natsOptions_SetReconnectedCB(no, on_reconnected, js);
  if (s == NATS_OK) s = natsOptions_SetClosedCB(no, on_closed, js);
  if (s == NATS_OK) s = natsConnection_Connect(&js->nc, no);
  jsOptions jo;
  if (s == NATS_OK) s = jsOptions_Init(&jo);
  if (s == NATS_OK) {
    jo.Wait = to_ms(o->timeout);
    s = natsConnection_JetStream(&js->jsx, js->nc, &jo);
  }
  natsOptions_Destroy(no);
  if (s != NATS_OK) {
    int rc = map_status("connect", s);
    if (rc == WEFT_ETIMEDOUT) rc = WEFT_JS_ENATS;
    if (js->nc != NULL) {
      natsConnection_Close(js->nc);
      close_wait(js);
      natsConnection_Destroy(js->nc);
    }
    pthread_cond_destroy(&js->closed_cv);
    pthread_mutex_destroy(&js->closed_mu);
    free(js);
    return rc;
  }
  *out = js;
  return 0;
}

int weft_js_close(weft_js *js) {
  if (js == NULL) return WEFT_EINVAL;
  if (atomic_load(&js->consumers) != 0) return WEFT_EBUSY;
  jsCtx_Destroy(js->jsx);
  natsConnection_Close(js->nc);
  bool callbacks_done = close_wait(js);
  natsConnection_Destroy(js->nc);
  if (!callbacks_done) return 0; /* leaked rather than freed under a callback still to come */
  pthread_cond_destroy(&js->closed_cv);
  pthread_mutex_destroy(&js->closed_mu);
  free(js);
  return 0;
}

bool weft_js_connected(weft_js *js) {
  return js != NULL && natsConnection_Status(js->nc) == NATS_CONN_STATUS_CONNECTED;
}

int weft_js_conn_stats_get(weft_js *js, weft_js_conn_stats *out) {
  if (js == NULL || out == NULL) return WEFT_EINVAL;
  out->disconnects = atomic_load(&js->disconnects);
  out->reconnects = atomic_load(&js->reconnects);
  return 0;
}

/* ---- streams ------------------------------------------------------------------------------------------ */

static bool valid_name(const char *n) {
  if (n == NULL || n[0] == '\0' || strlen(n) > 200) return false;
  for (const char *p = n; *p; p++)
    if (*p == '.' || *p == '*' || *p == '>' || *p == ' ' || *p == '\t' || *p == '/' || *p == '\\')
      return false;
  return true;
}

int weft_js_stream_ensure(weft_js *js, const weft_js_stream_opts *o) {
  if (js == NULL || o == NULL || !valid_name(o->name) || o->replicas < 1 || o->duplicate_window < 0)
    return WEFT_EINVAL;
  jsStreamInfo *si = NULL;
  jsErrCode je = 0;
  natsStatus s = js_GetStreamInfo(&si, js->jsx, o->name, NULL, &je);
  if (s == NATS_OK) {
    jsStreamInfo_Destroy(si);
    return 0;
  }
  if (s != NATS_NOT_FOUND) return map_status("stream info", s);
  char subj[256];
  const char *subject = o->subject;
  if (subject == NULL) {
    snprintf(subj, sizeof subj, "%s.>", o->name);
    subject = subj;
  }
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = o->name;
  cfg.Subjects = &subject;
  cfg.SubjectsLen = 1;
  cfg.Storage = o->memory ? js_MemoryStorage : js_FileStorage;
  cfg.Retention = o->work_queue ? js_WorkQueuePolicy : js_LimitsPolicy;
  cfg.Replicas = o->replicas;
  cfg.Duplicates = o->duplicate_window;
  s = js_AddStream(&si, js->jsx, &cfg, NULL, &je);
  if (s == NATS_OK) jsStreamInfo_Destroy(si);
  return map_status("add stream", s);
}

int weft_js_stream_delete(weft_js *js, const char *name) {
  if (js == NULL || !valid_name(name)) return WEFT_EINVAL;
  jsErrCode je = 0;
  return map_status("delete stream", js_DeleteStream(js->jsx, name, NULL, &je));
}

/* ---- publishing --------------------------------------------------------------------------------------- */

static int publish_impl(weft_js *js, weft_ctx *ctx, const char *subject, const void *data, size_t len,
                        const char *id, int64_t deadline, const char *const *headers, size_t nheaders,
                        bool *duplicate) {
  if (duplicate != NULL) *duplicate = false;
  if (ctx != NULL && weft_ctx_err(ctx) != 0) return weft_ctx_err(ctx);
  if (natsConnection_Status(js->nc) != NATS_CONN_STATUS_CONNECTED) {
    snprintf(js_last_err, sizeof js_last_err, "publish: not connected");
    return WEFT_JS_ENATS;
  }
  natsMsg *msg = NULL;
  natsStatus s = natsMsg_Create(&msg, subject, NULL, (const char *)data, (int)len);
  char dl[32];
  if (s == NATS_OK && deadline != WEFT_FOREVER) {
    snprintf(dl, sizeof dl, "%" PRId64, mono_to_unix(deadline));
    s = natsMsgHeader_Set(msg, WEFT_JS_DEADLINE_HEADER, dl);
  }
  for (size_t i = 0; s == NATS_OK && i < nheaders; i++) s = natsMsgHeader_Set(msg, headers[2 * i], headers[2 * i + 1]);
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MsgId = id;
  int64_t wait = js->timeout;
  if (ctx != NULL) {
    int64_t cdl = weft_ctx_deadline(ctx);
    if (cdl != WEFT_FOREVER) {
      int64_t left = cdl - weft_now();
      if (left <= 0) {
        natsMsg_Destroy(msg);
        return WEFT_EDEADLINE;
      }
      if (left < wait) wait = left;
    }
  }
  po.MaxWait = to_ms(wait);
  jsPubAck *pa = NULL;
  jsErrCode je = 0;
  if (s == NATS_OK) s = js_PublishMsg(&pa, js->jsx, msg, &po, &je);
  if (s == NATS_OK && duplicate != NULL) *duplicate = pa->Duplicate;
  jsPubAck_Destroy(pa);
  natsMsg_Destroy(msg);
  return map_status("publish", s);
}

int weft_js_publish(weft_js *js, weft_ctx *ctx, const char *subject, const void *data, size_t len,
                    const char *id, bool *duplicate) {
  if (duplicate != NULL) *duplicate = false;
  if (js == NULL || subject == NULL || subject[0] == '\0' || (data == NULL && len > 0) || len > INT_MAX)
    return WEFT_EINVAL;
  return publish_impl(js, ctx, subject, data, len, id, ctx ? weft_ctx_deadline(ctx) : WEFT_FOREVER, NULL, 0,
                      duplicate);
}

int weft_js_publish_with_headers(weft_js *js, weft_ctx *ctx, const char *subject, const void *data, size_t len,
                                 const char *id, const char *const *headers, size_t nheaders, bool *duplicate) {
  if (duplicate != NULL) *duplicate = false;
  if (js == NULL || subject == NULL || subject[0] == '\0' || (data == NULL && len > 0) || len > INT_MAX ||
      (headers == NULL && nheaders > 0) || nheaders > 64)
    return WEFT_EINVAL;
  for (size_t i = 0; i < nheaders; i++) {
    const char *k = headers[2 * i], *v = headers[2 * i + 1];
    if (k == NULL || v == NULL || k[0] == '\0' || strcasecmp(k, "Nats-Msg-Id") == 0 ||
        strcasecmp(k, WEFT_JS_DEADLINE_HEADER) == 0 || strpbrk(k, ": \r\n") != NULL || strpbrk(v, "\r\n") != NULL)
      return WEFT_EINVAL;
  }
  return publish_impl(js, ctx, subject, data, len, id, ctx ? weft_ctx_deadline(ctx) : WEFT_FOREVER, headers,
                      nheaders, duplicate);
}

/* ---- consumers ---------------------------------------------------------------------------------------- */

struct weft_js_msg {
  weft_js_consumer *c;
  natsMsg *nm;
  weft_ctx *ctx;
  weft_cancel *cancel;
  int64_t hdr_deadline;   /* WEFT_FOREVER: none */
  int64_t local_deadline; /* now + job_timeout at fetch, or WEFT_FOREVER */
  int64_t last_refresh;   /* c->mu: see the design notes */
  int64_t next_hb;        /* c->mu: when the keeper next sends InProgress; WEFT_FOREVER: no longer kept */
  bool hb_busy;           /* c->mu: the keeper is sending InProgress for it */
  bool linked;            /* c->mu: on the in-flight list */
  uint64_t seq, delivered;
  int result;
  void *out;
  size_t out_len;
  char id[80]; /* "<stream>:<seq>" when the message has no Nats-Msg-Id */
  const char *idp;
  weft_js_msg *prev, *next; /* c->mu: the in-flight list */
};

typedef struct js_source js_source;
struct js_source {
  weft_js_consumer *c;
  weft_ctx *jobs_ctx;
  js_source *next; /* the consumer's list, freed when it closes */
};

struct weft_js_consumer {
  weft_js *js;
  char stream[208], durable[208];
  js_source *sources; /* mu: pipeline sources reading from it, freed on close */
  natsSubscription *sub;
  int64_t ack_wait, heartbeat, fetch_wait, job_timeout, backoff_base, backoff_max, max_deliver;
  size_t max_in_flight;
  bool ack_async;

  pthread_mutex_t fetch_mu;
  int64_t last_fetch_end; /* fetch_mu: when the last pull request returned */

  pthread_mutex_t mu;
  pthread_cond_t room;  /* in_flight dropped below max_in_flight */
  pthread_cond_t wake;  /* the keeper: a new message, or stop */
  pthread_cond_t idle;  /* a message's hb_busy cleared */
  weft_js_msg *head, *tail;
  bool stopping;
  pthread_t keeper;
  weft_js_report rep;
};

#define KEEPER_BATCH 64

static void *keeper_main(void *arg) {
  weft_js_consumer *c = arg;
  weft_js_msg *batch[KEEPER_BATCH];
  lock(&c->mu);
  while (!c->stopping) {
    int64_t now = weft_now();
    /* Send a little early rather than wake once per message: anything due within a quarter period. */
    int64_t horizon = now + c->heartbeat / 4;
    size_t k = 0;
    int64_t next = WEFT_FOREVER;
    for (weft_js_msg *m = c->head; m != NULL; m = m->next) {
      if (m->hb_busy || m->next_hb == WEFT_FOREVER) continue;
      if (m->next_hb <= horizon && k < KEEPER_BATCH) {
        if (weft_ctx_done(m->ctx)) {
          m->next_hb = WEFT_FOREVER; /* its context ended: the lease is no longer kept */
          continue;
        }
        m->hb_busy = true;
        batch[k++] = m;
      } else if (m->next_hb < next) {
        next = m->next_hb;
      }
    }
    if (k == 0) {
      if (next == WEFT_FOREVER) {
        pthread_cond_wait(&c->wake, &c->mu);
      } else {
        struct timespec ts;
        mono_to_timespec(next, &ts);
        pthread_cond_timedwait(&c->wake, &c->mu, &ts);
      }
      continue;
    }
    unlock(&c->mu);
    bool ok[KEEPER_BATCH];
    int64_t sent_at[KEEPER_BATCH];
    for (size_t i = 0; i < k; i++) {
      sent_at[i] = weft_now();
      ok[i] = natsConnection_Status(c->js->nc) == NATS_CONN_STATUS_CONNECTED &&
              natsMsg_InProgress(batch[i]->nm, NULL) == NATS_OK;
    }
    lock(&c->mu);
    for (size_t i = 0; i < k; i++) {
      weft_js_msg *m = batch[i];
      if (ok[i]) {
        m->last_refresh = sent_at[i];
        m->next_hb = sent_at[i] + c->heartbeat;
        c->rep.heartbeats++;
      } else {
        /* Try again soon: the connection may be back before the lease runs out. */
        m->next_hb = sent_at[i] + c->heartbeat / 4;
        c->rep.heartbeat_failures++;
      }
      m->hb_busy = false;
    }
    pthread_cond_broadcast(&c->idle);
  }
  unlock(&c->mu);
  return NULL;
}

int weft_js_consumer_open(weft_js *js, const weft_js_consumer_opts *o, weft_js_consumer **out) {
  if (out != NULL) *out = NULL;
  if (js == NULL || o == NULL || out == NULL || !valid_name(o->stream) || !valid_name(o->durable) ||
      o->ack_wait < WEFT_MS(10) || o->max_deliver == 0 || o->max_deliver < -1 || o->max_ack_pending == 0 ||
      o->max_ack_pending < -1 || o->max_in_flight < 1 || o->max_in_flight > 65536 || o->heartbeat < 0 ||
      o->fetch_wait < WEFT_MS(1) || o->job_timeout <= 0 || o->backoff_base < 0 || o->backoff_max < 0)
    return WEFT_EINVAL;
  int64_t hb = o->heartbeat ? o->heartbeat : o->ack_wait / 2;
  if (hb >= o->ack_wait) return WEFT_EINVAL;

  jsConsumerInfo *ci = NULL;
  jsErrCode je = 0;
  natsStatus s = js_GetConsumerInfo(&ci, js->jsx, o->stream, o->durable, NULL, &je);
  if (s == NATS_NOT_FOUND) {
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = o->durable;
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = js_DeliverAll;
    cc.AckWait = o->ack_wait;
    cc.MaxDeliver = o->max_deliver;
    if (o->max_ack_pending > 0) cc.MaxAckPending = o->max_ack_pending;
    cc.FilterSubject = o->filter;
    s = js_AddConsumer(&ci, js->jsx, o->stream, &cc, NULL, &je);
    if (s != NATS_OK) /* another worker may have created it at the same moment */
      s = js_GetConsumerInfo(&ci, js->jsx, o->stream, o->durable, NULL, &je);
  }
  if (s != NATS_OK) return map_status("consumer", s);

  weft_js_consumer *c = calloc(1, sizeof *c);
  int rc = WEFT_ENOMEM;
  if (c == NULL) goto fail_ci;
  c->js = js;
  snprintf(c->stream, sizeof c->stream, "%s", o->stream);
  snprintf(c->durable, sizeof c->durable, "%s", o->durable);
  /* The server's settings win: a consumer created earlier keeps its own. */
  c->ack_wait = ci->Config->AckWait > 0 ? ci->Config->AckWait : o->ack_wait;
  c->max_deliver = ci->Config->MaxDeliver;
  c->heartbeat = hb < c->ack_wait ? hb : c->ack_wait / 2;
  c->fetch_wait = o->fetch_wait;
  c->job_timeout = o->job_timeout;
  c->backoff_base = o->backoff_base;
  c->backoff_max = o->backoff_max;
  c->max_in_flight = o->max_in_flight;
  c->ack_async = o->ack_async;
  rc = WEFT_ESYS;
  if (pthread_mutex_init(&c->mu, NULL) != 0) goto fail_c;
  if (pthread_mutex_init(&c->fetch_mu, NULL) != 0) goto fail_mu;
  if (cond_init_mono(&c->room) != 0) goto fail_fmu;
  if (cond_init_mono(&c->wake) != 0) goto fail_room;
  if (cond_init_mono(&c->idle) != 0) goto fail_wake;
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = o->stream;
  so.Consumer = o->durable;
  s = js_PullSubscribe(&c->sub, js->jsx, o->filter, o->durable, NULL, &so, &je);
  if (s != NATS_OK) {
    rc = map_status("pull subscribe", s);
    goto fail_idle;
  }
  c->last_fetch_end = weft_now();
  /* The keeper blocks every signal, as weft's own threads do, so the process's signals go elsewhere. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int trc = pthread_create(&c->keeper, NULL, keeper_main, c);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (trc != 0) {
    rc = WEFT_ESYS;
    goto fail_sub;
  }
  jsConsumerInfo_Destroy(ci);
  atomic_fetch_add(&js->consumers, 1);
  *out = c;
  return 0;

fail_sub:
  natsSubscription_Destroy(c->sub);
fail_idle:
  pthread_cond_destroy(&c->idle);
fail_wake:
  pthread_cond_destroy(&c->wake);
fail_room:
  pthread_cond_destroy(&c->room);
fail_fmu:
  pthread_mutex_destroy(&c->fetch_mu);
fail_mu:
  pthread_mutex_destroy(&c->mu);
fail_c:
  free(c);
fail_ci:
  jsConsumerInfo_Destroy(ci);
  return rc;
}

int weft_js_consumer_close(weft_js_consumer *c) {
  if (c == NULL) return WEFT_EINVAL;
  lock(&c->mu);
  if (c->head != NULL) {
    unlock(&c->mu);
    return WEFT_EBUSY;
  }
  c->stopping = true;
  pthread_cond_broadcast(&c->wake);
  unlock(&c->mu);
  pthread_join(c->keeper, NULL);
  /* Destroy, not unsubscribe: the durable consumer stays on the server for the other workers. */
  natsSubscription_Destroy(c->sub);
  atomic_fetch_sub(&c->js->consumers, 1);
  pthread_cond_destroy(&c->idle);
  pthread_cond_destroy(&c->wake);
  pthread_cond_destroy(&c->room);
  pthread_mutex_destroy(&c->fetch_mu);
  pthread_mutex_destroy(&c->mu);
  while (c->sources != NULL) {
    js_source *n = c->sources->next;
    free(c->sources);
    c->sources = n;
  }
  free(c);
  return 0;
}

int weft_js_consumer_report(weft_js_consumer *c, weft_js_report *out) {
  if (c == NULL || out == NULL) return WEFT_EINVAL;
  lock(&c->mu);
  *out = c->rep;
  unlock(&c->mu);
  return 0;
}

int weft_js_consumer_state_get(weft_js_consumer *c, weft_js_consumer_state *out) {
  if (c == NULL || out == NULL) return WEFT_EINVAL;
  memset(out, 0, sizeof *out);
  jsConsumerInfo *ci = NULL;
  jsErrCode je = 0;
  natsStatus s = js_GetConsumerInfo(&ci, c->js->jsx, c->stream, c->durable, NULL, &je);
  if (s != NATS_OK) return map_status("consumer info", s);
  out->pending = ci->NumPending;
  out->ack_pending = (uint64_t)ci->NumAckPending;
  out->redelivered = (uint64_t)ci->NumRedelivered;
  out->ack_floor = ci->AckFloor.Stream;
  jsConsumerInfo_Destroy(ci);
  return 0;
}

/* ---- fetching ----------------------------------------------------------------------------------------- */

static void msg_free(weft_js_msg *m) {
  if (m->cancel != NULL) weft_ctx_end(m->cancel);
  natsMsg_Destroy(m->nm);
  free(m->out);
  free(m);
}

/* Wraps a received NATS message: metadata, header deadline, identity, context. The caller links it. */
static int msg_wrap(weft_js_consumer *c, natsMsg *nm, weft_ctx *parent, int64_t fetch_start, weft_js_msg **out) {
  weft_js_msg *m = calloc(1, sizeof *m);
  if (m == NULL) return WEFT_ENOMEM;
  m->c = c;
  m->nm = nm;
  m->hdr_deadline = WEFT_FOREVER;
  m->local_deadline = c->job_timeout == WEFT_FOREVER ? WEFT_FOREVER : weft_deadline_in(c->job_timeout);
  m->last_refresh = fetch_start;
  m->next_hb = fetch_start + c->heartbeat;
  jsMsgMetaData *md = NULL;
  if (natsMsg_GetMetaData(&md, nm) == NATS_OK) {
    m->seq = md->Sequence.Stream;
    m->delivered = md->NumDelivered;
    jsMsgMetaData_Destroy(md);
  }
  const char *v = NULL;
  if (natsMsgHeader_Get(nm, WEFT_JS_DEADLINE_HEADER, &v) == NATS_OK && v != NULL) {
    char *end;
    errno = 0;
    long long u = strtoll(v, &end, 10);
    if (errno == 0 && end != v && *end == '\0') m->hdr_deadline = unix_to_mono((int64_t)u);
  }
  v = NULL;
  if (natsMsgHeader_Get(nm, "Nats-Msg-Id", &v) == NATS_OK && v != NULL && v[0] != '\0') {
    m->idp = v;
  } else {
    const char *stream = "";
    /* the stream's name is in the reply subject's metadata; keep the sequence, which is unique in it */
    jsMsgMetaData *md2 = NULL;
    if (natsMsg_GetMetaData(&md2, nm) == NATS_OK) {
      snprintf(m->id, sizeof m->id, "%s:%" PRIu64, md2->Stream ? md2->Stream : stream, m->seq);
      jsMsgMetaData_Destroy(md2);
    } else {
      snprintf(m->id, sizeof m->id, ":%" PRIu64, m->seq);
    }
    m->idp = m->id;
  }
  int64_t dl = m->hdr_deadline < m->local_deadline ? m->hdr_deadline : m->local_deadline;
  int rc = dl == WEFT_FOREVER ? weft_ctx_with_cancel(parent, &m->ctx, &m->cancel)
                              : weft_ctx_with_deadline(parent, dl, &m->ctx, &m->cancel);
  if (rc != 0) {
    free(m);
    return rc;
  }
  *out = m;
  return 0;
}

static void link_locked(weft_js_consumer *c, weft_js_msg *m) {
  m->prev = c->tail;
  m->next = NULL;
  if (c->tail) c->tail->next = m;
  else c->head = m;
  c->tail = m;
  m->linked = true;
}

static void unlink_locked(weft_js_consumer *c, weft_js_msg *m) {
  if (m->prev) m->prev->next = m->next;
  else c->head = m->next;
  if (m->next) m->next->prev = m->prev;
  else c->tail = m->prev;
  m->prev = m->next = NULL;
  m->linked = false;
}

/* Waits for room under c->mu; returns the room, or 0 with *rc set when ctx ended or `until` passed. */
static size_t wait_room_locked(weft_js_consumer *c, weft_ctx *ctx, int64_t until, int *rc) {
  for (;;) {
    size_t room = c->max_in_flight - (size_t)c->rep.in_flight;
    if (room > 0) return room;
    if ((*rc = weft_ctx_err(ctx)) != 0) return 0;
    int64_t now = weft_now();
    if (now >= until) {
      *rc = WEFT_ETIMEDOUT;
      return 0;
    }
    /* Wake now and then to notice ctx's end (finish signals room; nobody signals a context's end). */
    int64_t t = now + WEFT_MS(50);
    if (t > until) t = until;
    struct timespec ts;
    mono_to_timespec(t, &ts);
    pthread_cond_timedwait(&c->room, &c->mu, &ts);
  }
}

/* Hands out messages from one list; those that cannot be wrapped (no memory) are handed back. Counts
 * those too old to trust (see the design notes) as fetched and lapsed. */
static size_t take_batch(weft_js_consumer *c, natsMsgList *list, weft_ctx *parent, int64_t fetch_start,
                         bool stale, weft_js_msg **out, int *rc) {
  size_t n = 0;
  uint64_t lapsed = 0;
  for (int i = 0; i < list->Count; i++) {
    natsMsg *nm = list->Msgs[i];
    list->Msgs[i] = NULL;
    if (stale) {
      natsMsg_Destroy(nm);
      lapsed++;
      continue;
    }
    weft_js_msg *m = NULL;
    int wrc = msg_wrap(c, nm, parent, fetch_start, &m);
    if (wrc != 0) {
      if (natsConnection_Status(c->js->nc) == NATS_CONN_STATUS_CONNECTED) natsMsg_Nak(nm, NULL);
      natsMsg_Destroy(nm);
      *rc = wrc;
      continue;
    }
    out[n++] = m;
  }
  natsMsgList_Destroy(list);
  lock(&c->mu);
  c->rep.fetched += lapsed;
  c->rep.lapsed += lapsed;
  for (size_t i = 0; i < n; i++) {
    link_locked(c, out[i]);
    c->rep.fetched++;
    c->rep.in_flight++;
    if (out[i]->delivered > 1) c->rep.redelivered++;
  }
  if (n > 0) pthread_cond_signal(&c->wake);
  unlock(&c->mu);
  return n;
}

/* fetch with the waiting context and the messages' parent apart (the pipeline source waits under its own
 * context, which a drain cancels, while the jobs live under the run's). */
static int fetch_impl(weft_js_consumer *c, weft_ctx *wait_ctx, weft_ctx *parent, size_t max, int64_t wait,
                      weft_js_msg **out, size_t *n) {
  *n = 0;
  int64_t until = weft_deadline_in(wait);
  int rc = 0;
  lock(&c->fetch_mu);
  for (;;) {
    if ((rc = weft_ctx_err(wait_ctx)) != 0) break;
    lock(&c->mu);
    size_t room = wait_room_locked(c, wait_ctx, until, &rc);
    unlock(&c->mu);
    if (room == 0) break;
    /* Room may have come from jobs ending with the same cancel that ends this fetch. */
    if ((rc = weft_ctx_err(wait_ctx)) != 0) break;
    if (max < room) room = max;
    if (natsConnection_Status(c->js->nc) == NATS_CONN_STATUS_CLOSED) {
      snprintf(js_last_err, sizeof js_last_err, "fetch: the connection is closed");
      rc = WEFT_JS_ENATS;
      break;
    }
    int64_t now = weft_now();
    /* Messages left in the client's queue arrived after an earlier fetch had returned (its request
     * expired as they came): their lease started then, so they are trusted only while young, and the
     * lease of this batch is counted from that earlier return. Otherwise the server can deliver only
     * after this request, so the lease starts no earlier than now. */
    int pending = 0;
    int64_t start = now;
    if (natsSubscription_GetPending(c->sub, &pending, NULL) == NATS_OK && pending > 0) {
      if (now - c->last_fetch_end >= c->ack_wait / 2) {
        natsMsgList stale_list = {0};
        jsFetchRequest fr;
        jsFetchRequest_Init(&fr);
        fr.Batch = pending;
        fr.NoWait = true;
        if (natsSubscription_FetchRequest(&stale_list, c->sub, &fr) == NATS_OK)
          take_batch(c, &stale_list, parent, 0, true, NULL, &rc);
        else
          natsMsgList_Destroy(&stale_list);
        c->last_fetch_end = weft_now();
      } else {
        start = c->last_fetch_end;
      }
    }
    int64_t slice = c->fetch_wait;
    int64_t left = until - now;
    if (left <= 0) {
      rc = WEFT_ETIMEDOUT;
      break;
    }
    if (left < slice) slice = left;
    natsMsgList list = {0};
    jsErrCode je = 0;
    natsStatus s = natsSubscription_Fetch(&list, c->sub, (int)room, to_ms(slice), &je);
    c->last_fetch_end = weft_now();
    if (s == NATS_OK) {
      size_t got = take_batch(c, &list, parent, start, false, out, &rc);
      if (got > 0) {
        *n = got;
        rc = 0;
        break;
      }
      if (rc != 0) break;
      continue;
    }
    natsMsgList_Destroy(&list);
    if (s == NATS_TIMEOUT) continue; /* nothing this slice */
    if (s == NATS_NO_MEMORY) {
      rc = WEFT_ENOMEM;
      break;
    }
    /* Disconnected, or a passing server error: count it, pause a slice under the context, try again. */
    set_err("fetch", s);
    lock(&c->mu);
    c->rep.fetch_errors++;
    unlock(&c->mu);
    int64_t pause = c->fetch_wait;
    if (until - weft_now() < pause) pause = until - weft_now();
    int src = weft_ctx_sleep(wait_ctx, pause);
    if (src != 0) {
      rc = src;
      break;
    }
  }
  unlock(&c->fetch_mu);
  return rc;
}

int weft_js_fetch(weft_js_consumer *c, weft_ctx *ctx, size_t max, int64_t wait, weft_js_msg **out, size_t *n) {
  if (n != NULL) *n = 0;
  if (c == NULL || ctx == NULL || out == NULL || n == NULL || max < 1 || max > c->max_in_flight || wait < 0)
    return WEFT_EINVAL;
  return fetch_impl(c, ctx, ctx, max, wait, out, n);
}

/* ---- finishing ---------------------------------------------------------------------------------------- */

enum action { A_ACK, A_NAK, A_NAK_DELAY, A_TERM, A_NONE };

static int64_t backoff(const weft_js_consumer *c, uint64_t delivered) {
  int64_t d = c->backoff_base;
  for (uint64_t i = 1; i < delivered && d < c->backoff_max; i++) d = d > INT64_MAX / 2 ? INT64_MAX : d * 2;
  return d < c->backoff_max ? d : c->backoff_max;
}

int weft_js_finish(weft_js_msg *m, int result, weft_js_outcome *outcome) {
  if (outcome != NULL) *outcome = 0;
  if (m == NULL) return WEFT_EINVAL;
  weft_js_consumer *c = m->c;
  lock(&c->mu);
  while (m->hb_busy) pthread_cond_wait(&c->idle, &c->mu);
  unlink_locked(c, m);
  int64_t last_refresh = m->last_refresh;
  unlock(&c->mu);

  int64_t now = weft_now();
  weft_js_outcome oc;
  enum action a;
  int64_t delay = 0;
  if (result == 0) {
    oc = WEFT_JS_COMPLETED, a = A_ACK;
  } else if (result == WEFT_ESTOPPED) {
    oc = WEFT_JS_RETURNED, a = A_NAK;
  } else if (result == WEFT_JS_EPERMANENT) {
    oc = WEFT_JS_DEAD, a = A_TERM;
  } else {
    int cerr = weft_ctx_err(m->ctx);
    bool failed = false;
    if (m->hdr_deadline != WEFT_FOREVER && now >= m->hdr_deadline) {
      oc = WEFT_JS_EXPIRED, a = A_TERM;
    } else if (cerr == WEFT_ECANCELED) {
      oc = WEFT_JS_RETURNED, a = A_NAK;
    } else if (cerr == WEFT_EDEADLINE && !(m->local_deadline != WEFT_FOREVER && now >= m->local_deadline)) {
      oc = WEFT_JS_RETURNED, a = A_NAK; /* the run's own deadline */
    } else {
      failed = true;
    }
    if (failed) {
      if (c->max_deliver > 0 && m->delivered >= (uint64_t)c->max_deliver) {
        oc = WEFT_JS_DEAD, a = A_TERM;
      } else {
        oc = WEFT_JS_RETRIED;
        delay = backoff(c, m->delivered);
        a = delay > 0 ? A_NAK_DELAY : A_NAK;
      }
    }
  }
  if (now - last_refresh >= c->ack_wait / 4 * 3) oc = WEFT_JS_LAPSED, a = A_NONE;

  int rc = 0;
  if (a != A_NONE) {
    natsStatus s;
    if (natsConnection_Status(c->js->nc) != NATS_CONN_STATUS_CONNECTED) {
      s = NATS_CONNECTION_DISCONNECTED;
    } else {
      switch (a) {
      case A_ACK:
        if (c->ack_async) {
          s = natsMsg_Ack(m->nm, NULL);
        } else {
          jsOptions jo;
          jsOptions_Init(&jo);
          jo.Wait = to_ms(c->js->timeout);
          jsErrCode je = 0;
          s = natsMsg_AckSync(m->nm, &jo, &je);
        }
        break;
      case A_NAK: s = natsMsg_Nak(m->nm, NULL); break;
      case A_NAK_DELAY: s = natsMsg_NakWithDelay(m->nm, to_ms(delay), NULL); break;
      default: s = natsMsg_Term(m->nm, NULL); break;
      }
    }
    if (s != NATS_OK) {
      set_err("finish", s);
      oc = WEFT_JS_UNSENT;
      rc = WEFT_JS_ENATS;
    }
  }

  lock(&c->mu);
  c->rep.in_flight--;
  switch (oc) {
  case WEFT_JS_COMPLETED: c->rep.completed++; break;
  case WEFT_JS_RETRIED: c->rep.retried++; break;
  case WEFT_JS_DEAD: c->rep.dead++; break;
  case WEFT_JS_EXPIRED: c->rep.expired++; break;
  case WEFT_JS_RETURNED: c->rep.returned++; break;
  case WEFT_JS_LAPSED: c->rep.lapsed++; break;
  case WEFT_JS_UNSENT: c->rep.unsent++; break;
  }
  pthread_cond_signal(&c->room);
  unlock(&c->mu);
  msg_free(m);
  if (outcome != NULL) *outcome = oc;
  return rc;
}

/* ---- message accessors -------------------------------------------------------------------------------- */

weft_ctx *weft_js_msg_ctx(const weft_js_msg *m) { return m ? m->ctx : NULL; }

const void *weft_js_msg_data(const weft_js_msg *m, size_t *len) {
  if (len != NULL) *len = 0;
  if (m == NULL) return NULL;
  if (len != NULL) *len = (size_t)natsMsg_GetDataLength(m->nm);
  return natsMsg_GetData(m->nm);
}

const char *weft_js_msg_subject(const weft_js_msg *m) { return m ? natsMsg_GetSubject(m->nm) : NULL; }
const char *weft_js_msg_id(const weft_js_msg *m) { return m ? m->idp : NULL; }

const char *weft_js_msg_header(const weft_js_msg *m, const char *key) {
  if (m == NULL || key == NULL) return NULL;
  const char *v = NULL;
  if (natsMsgHeader_Get(m->nm, key, &v) != NATS_OK) return NULL;
  return v;
}

uint64_t weft_js_msg_seq(const weft_js_msg *m) { return m ? m->seq : 0; }
uint64_t weft_js_msg_delivered(const weft_js_msg *m) { return m ? m->delivered : 0; }
int64_t weft_js_msg_deadline(const weft_js_msg *m) { return m ? m->hdr_deadline : WEFT_FOREVER; }

void weft_js_msg_set_result(weft_js_msg *m, int result) {
  if (m != NULL) m->result = result;
}
int weft_js_msg_result(const weft_js_msg *m) { return m ? m->result : WEFT_EINVAL; }

int weft_js_msg_set_output(weft_js_msg *m, const void *data, size_t len) {
  if (m == NULL || (data == NULL && len > 0) || len > INT_MAX) return WEFT_EINVAL;
  void *p = malloc(len ? len : 1);
  if (p == NULL) return WEFT_ENOMEM;
  if (len) memcpy(p, data, len);
  free(m->out);
  m->out = p;
  m->out_len = len;
  return 0;
}

/* ---- pipeline stages ---------------------------------------------------------------------------------- */


/* The pipeline's discard hook gets the address of the item, which is the weft_js_msg pointer. */
static void discard_msg(void *item, void *arg) {
  (void)arg;
  weft_js_finish(*(weft_js_msg **)item, WEFT_ESTOPPED, NULL);
}

static int source_fn(weft_ctx *ctx, weft_emitter *em, void *arg) {
  js_source *src = arg;
  weft_js_consumer *c = src->c;
  weft_js_msg **batch = malloc(c->max_in_flight * sizeof *batch);
  if (batch == NULL) return WEFT_ENOMEM;
  int rc = 0;
  for (;;) {
    size_t n = 0;
    rc = fetch_impl(c, ctx, src->jobs_ctx, c->max_in_flight, WEFT_FOREVER, batch, &n);
    if (rc != 0) break;
    size_t i = 0;
    for (; i < n; i++) {
      rc = weft_pipeline_emit(em, &batch[i]);
      if (rc != 0) break;
    }
    for (size_t j = i; j < n; j++) weft_js_finish(batch[j], WEFT_ESTOPPED, NULL); /* not emitted */
    if (rc != 0) break;
    /* Hand the batch on at once: a job should not wait for a burst to fill. */
    if ((rc = weft_pipeline_flush(em)) != 0) break;
  }
  free(batch);
  /* Its context ending (the run's end, a drain) is the normal way out. */
  if (rc == WEFT_ECANCELED || rc == WEFT_EDEADLINE || rc == WEFT_ESTOPPED || weft_ctx_done(ctx)) rc = 0;
  return rc;
}

int weft_js_pipeline_source(weft_pipeline *p, const weft_stage_opts *opts, weft_js_consumer *c,
                            weft_ctx *jobs_ctx) {
  if (p == NULL || c == NULL) return WEFT_EINVAL;
  js_source *src = malloc(sizeof *src);
  if (src == NULL) return WEFT_ENOMEM;
  src->c = c;
  src->jobs_ctx = jobs_ctx ? jobs_ctx : weft_background();
  weft_stage_opts o = WEFT_STAGE_OPTS_INIT;
  if (opts != NULL) o = *opts;
  o.item_size = sizeof(weft_js_msg *);
  o.discard = discard_msg;
  o.discard_arg = NULL;
  int rc = weft_pipeline_source(p, &o, source_fn, src);
  if (rc != 0) {
    free(src);
    return rc;
  }
  lock(&c->mu);
  src->next = c->sources;
  c->sources = src;
  unlock(&c->mu);
  return 0;
}

static int jobs_fn(weft_ctx *ctx, const void *in, void *out, void *arg) {
  const weft_js_job *job = arg;
  weft_js_msg *m = *(weft_js_msg *const *)in;
  /* The job ends with the run (an error elsewhere, a cancel) or with its own context (deadline). */
  weft_ctx *parents[2] = {ctx, m->ctx};
  weft_ctx *jctx;
  weft_cancel *jcancel;
  int r = weft_ctx_with_parents(parents, 2, &jctx, &jcancel);
  if (r == 0) {
    r = job->fn(jctx, m, job->arg);
    if (r != 0 && weft_ctx_done(ctx) && !weft_ctx_done(m->ctx)) r = WEFT_ESTOPPED; /* the run stopped */
    weft_ctx_end(jcancel);
  } else {
    r = WEFT_ESTOPPED; /* not run: hand it back */
  }
  m->result = r;
  *(weft_js_msg **)out = m;
  return 0;
}

int weft_js_pipeline_jobs(weft_pipeline *p, const weft_stage_opts *opts, const weft_js_job *job) {
  if (p == NULL || job == NULL || job->fn == NULL) return WEFT_EINVAL;
  weft_stage_opts o = WEFT_STAGE_OPTS_INIT;
  if (opts != NULL) o = *opts;
  o.item_size = 0; /* same items: weft_js_msg *, with the source's discard hook */
  o.discard = NULL;
  return weft_pipeline_map(p, &o, jobs_fn, (void *)job);
}

static int finish_fn(weft_ctx *ctx, const void *item, void *arg) {
  (void)ctx, (void)arg;
  weft_js_msg *m = *(weft_js_msg *const *)item;
  weft_js_finish(m, m->result, NULL);
  return 0;
}

int weft_js_pipeline_finish(weft_pipeline *p, const weft_stage_opts *opts) {
  if (p == NULL) return WEFT_EINVAL;
  return weft_pipeline_sink(p, opts, finish_fn, NULL);
}

static int publish_fn(weft_ctx *ctx, const void *item, void *arg) {
  (void)ctx;
  const weft_js_publish_to *to = arg;
  weft_js_msg *m = *(weft_js_msg *const *)item;
  int r = m->result;
  if (r == 0) {
    const void *data = m->out;
    size_t len = m->out_len;
    if (data == NULL) data = weft_js_msg_data(m, &len);
    /* The message's own deadline travels on, not this worker's job_timeout. */
    r = publish_impl(to->js, m->ctx, to->subject, data, len, m->idp, m->hdr_deadline, NULL, 0, NULL);
  }
  weft_js_finish(m, r, NULL);
  return 0;
}

int weft_js_pipeline_publish(weft_pipeline *p, const weft_stage_opts *opts, const weft_js_publish_to *to) {
  if (p == NULL || to == NULL || to->js == NULL || to->subject == NULL || to->subject[0] == '\0')
    return WEFT_EINVAL;
  return weft_pipeline_sink(p, opts, publish_fn, (void *)to);
}
