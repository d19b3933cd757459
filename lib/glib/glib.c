/* lib/glib/glib.c: the GLib adapter (weft/glib.h).
 *
 * Design notes.
 * - Job results: a completion hub (adapt/hub.c) whose wake is g_main_context_wakeup on the adapter's
 *   GMainContext (the adapter holds a reference to it, so a worker's wake never reaches a freed context).
 *   The adapter's GSource is ready while the hub's queue is not empty, read in prepare and check; its
 *   dispatch drains the hub. A push made after prepare looked is followed by the pusher's wakeup, which
 *   ends the poll, and check sees it; so no completion waits for an unrelated wake-up.
 * - Close: the hub stops accepting; the source becomes ready once nothing is in flight (also when that is
 *   already the case at close), and its dispatch, on the context's thread, runs the user's close callback,
 *   destroys the source and frees the adapter. After the hub's last delivery no worker touches it
 *   (hub.c, senders), so nothing can reach the adapter once it is freed. The source outlives the adapter
 *   by the GLib references GLib holds during dispatch; its pointer to the adapter is cleared first.
 * - Links: the GCancellable side follows GLib's rules: g_cancellable_connect calls the handler at once when
 *   already cancelled; the handler's data is a bridge object that GLib frees through the handler's destroy
 *   notify (see struct bridge for why it cannot be the link); the weft side uses weft_ctx_after_func, whose
 *   registration holds the context and whose arg holds a reference to the GCancellable that whoever ends the
 *   registration (the callback, or a successful stop) drops. */
#include <stdatomic.h>
#include <stdlib.h>

#include "adapt/hub.h"
#include "weft/glib.h"

typedef struct hub_source {
  GSource base;
  weft_glib *g; /* NULL once the adapter is freed */
} hub_source;

struct weft_glib {
  weft__hub hub;
  GMainContext *mc; /* a reference */
  hub_source *src;  /* a reference */
  bool finished;
  weft_glib_close_fn close_cb;
  void *close_arg;
};

static void glib_wake(void *arg) {
  weft_glib *g = arg;
  g_main_context_wakeup(g->mc);
}

static gboolean hub_ready(weft_glib *g) {
  if (g == NULL || g->finished) return FALSE;
  if (atomic_load_explicit(&g->hub.head, memory_order_acquire) != NULL) return TRUE;
  return g->hub.closing && g->hub.inflight == 0;
}

static gboolean hub_prepare(GSource *s, gint *timeout) {
  *timeout = -1;
  return hub_ready(((hub_source *)s)->g);
}

static gboolean hub_check(GSource *s) { return hub_ready(((hub_source *)s)->g); }

static gboolean hub_dispatch(GSource *s, GSourceFunc cb, gpointer data) {
  (void)cb;
  (void)data;
  hub_source *hs = (hub_source *)s;
  weft_glib *g = hs->g;
  if (g == NULL) return G_SOURCE_REMOVE;
  if (!weft__hub_drain(&g->hub)) return G_SOURCE_CONTINUE;
  /* closing, nothing in flight, no worker inside its wake: finish */
  g->finished = true;
  hs->g = NULL;
  if (g->close_cb != NULL) g->close_cb(g, g->close_arg);
  weft__hub_destroy(&g->hub);
  g_source_destroy(s);
  g_source_unref(s);
  g_main_context_unref(g->mc);
  free(g);
  return G_SOURCE_REMOVE;
}

static GSourceFuncs hub_funcs = {hub_prepare, hub_check, hub_dispatch, NULL, NULL, NULL};

int weft_glib_new(GMainContext *mc, weft_glib **out) {
  if (out != NULL) *out = NULL;
  if (out == NULL) return WEFT_EINVAL;
  weft_glib *g = calloc(1, sizeof *g);
  if (g == NULL) return WEFT_ENOMEM;
  weft__hub_init(&g->hub, glib_wake, g);
  g->mc = g_main_context_ref(mc != NULL ? mc : g_main_context_default());
  g->src = (hub_source *)g_source_new(&hub_funcs, sizeof(hub_source));
  g->src->g = g;
  g_source_set_name(&g->src->base, "weft job results");
  g_source_attach(&g->src->base, g->mc);
  *out = g;
  return 0;
}

int weft_glib_submit(weft_glib *g, weft_pool *p, weft_ctx *ctx, weft_job_fn fn, void *arg,
                     weft_glib_result_fn cb, void *cb_arg, weft_glib_job **job) {
  if (job != NULL) *job = NULL;
  if (g == NULL) return WEFT_EINVAL;
  weft__hreq *r;
  int rc = weft__hub_submit(&g->hub, p, ctx, fn, arg, cb, cb_arg, job != NULL ? &r : NULL);
  if (rc == 0 && job != NULL) *job = (weft_glib_job *)r;
  return rc;
}

int weft_glib_job_cancel(weft_glib_job *job) { return weft__hub_cancel((weft__hreq *)job); }

int weft_glib_report(const weft_glib *g, weft_pool_report *rep) {
  if (g == NULL || rep == NULL) return WEFT_EINVAL;
  weft__hub_report(&g->hub, rep);
  return 0;
}

int weft_glib_close(weft_glib *g, bool cancel, weft_glib_close_fn close_cb, void *arg) {
  if (g == NULL) return WEFT_EINVAL;
  if (g->hub.closing) return WEFT_ESTATE;
  g->close_cb = close_cb;
  g->close_arg = arg;
  /* Whether or not jobs are in flight, the source finishes the close in a later dispatch. */
  (void)weft__hub_close(&g->hub, cancel);
  g_main_context_wakeup(g->mc);
  return 0;
}

/* ---- a GSource for a context -------------------------------------------------------------------- */

typedef struct ctx_source {
  GSource base;
  weft_ctx *ctx; /* a reference */
} ctx_source;

static gboolean ctx_prepare(GSource *s, gint *timeout) {
  *timeout = -1;
  return weft_ctx_done(((ctx_source *)s)->ctx);
}

static gboolean ctx_check(GSource *s) { return weft_ctx_done(((ctx_source *)s)->ctx); }

static gboolean ctx_dispatch(GSource *s, GSourceFunc cb, gpointer data) {
  ctx_source *cs = (ctx_source *)s;
  if (cb == NULL) return G_SOURCE_REMOVE;
  return ((weft_glib_ctx_fn)(void (*)(void))cb)(cs->ctx, weft_ctx_err(cs->ctx), data);
}

static void ctx_finalize(GSource *s) { weft_ctx_release(((ctx_source *)s)->ctx); }

static GSourceFuncs ctx_funcs = {ctx_prepare, ctx_check, ctx_dispatch, ctx_finalize, NULL, NULL};

GSource *weft_glib_ctx_source_new(weft_ctx *ctx) {
  if (ctx == NULL) return NULL;
  int fd = weft_ctx_fd(ctx);
  if (fd < 0) return NULL;
  ctx_source *cs = (ctx_source *)g_source_new(&ctx_funcs, sizeof(ctx_source));
  cs->ctx = weft_ctx_retain(ctx);
  g_source_add_unix_fd(&cs->base, fd, G_IO_IN);
  g_source_set_name(&cs->base, "weft context");
  return &cs->base;
}

/* ---- GCancellable <-> weft context --------------------------------------------------------------- */

/* What the "cancelled" handler uses, in an object of its own that GLib frees through the handler's
 * destroy notify: GLib 2.74's g_cancellable_disconnect can return while a cancel running on another
 * thread is about to call the handler (the check of "cancel running" and the removal of the handler are
 * two steps), so the handler's data must outlive the link. GLib calls the destroy notify once the handler
 * is disconnected and no emission holds it. The handler may thus run after weft_glib_link_free: it then
 * cancels a context the free already cancelled, which does nothing.
 * ThreadSanitizer does not see GLib's own synchronisation (futexes and atomics inside an uninstrumented
 * GLib), so the bridge carries it explicitly: its fields are published with release order before the
 * connect and read with acquire order in the handler, and the handler's calls are counted with release
 * order and read with acquire order before the free. */
typedef struct bridge {
  _Atomic(weft_cancel *) cancel; /* the right to cancel the link's context */
  weft_ctx *ctx;                 /* the bridge's reference to it */
  _Atomic int calls;
} bridge;

struct weft_glib_link {
  GCancellable *c;
  /* ctx_with_cancellable */
  gulong handler;
  weft_ctx *ctx; /* the link's reference */
  weft_cancel *cancel;
  /* cancel_when_done */
  weft_after *after;
};

static void on_cancelled(GCancellable *c, gpointer data) {
  (void)c;
  bridge *b = data;
  weft_ctx_cancel(atomic_load_explicit(&b->cancel, memory_order_acquire));
  atomic_fetch_add_explicit(&b->calls, 1, memory_order_release);
}

static void bridge_free(gpointer data) {
  bridge *b = data;
  (void)atomic_load_explicit(&b->calls, memory_order_acquire);
  weft_ctx_release(b->ctx);
  free(b);
}

int weft_glib_ctx_with_cancellable(weft_ctx *parent, GCancellable *c, weft_ctx **out, weft_glib_link **link) {
  if (out != NULL) *out = NULL;
  if (link != NULL) *link = NULL;
  if (parent == NULL || c == NULL || !G_IS_CANCELLABLE(c) || out == NULL || link == NULL) return WEFT_EINVAL;
  weft_glib_link *l = calloc(1, sizeof *l);
  bridge *b = calloc(1, sizeof *b);
  if (l == NULL || b == NULL) {
    free(l);
    free(b);
    return WEFT_ENOMEM;
  }
  int rc = weft_ctx_with_cancel(parent, &l->ctx, &l->cancel);
  if (rc != 0) {
    free(l);
    free(b);
    return rc;
  }
  l->c = g_object_ref(c);
  b->ctx = weft_ctx_retain(l->ctx);
  atomic_init(&b->calls, 0);
  atomic_store_explicit(&b->cancel, l->cancel, memory_order_release);
  /* Already cancelled: the handler runs here, now, the bridge is freed, and 0 comes back. */
  l->handler = g_cancellable_connect(c, G_CALLBACK(on_cancelled), b, bridge_free);
  *out = weft_ctx_retain(l->ctx);
  *link = l;
  return 0;
}

static void on_ctx_done(void *arg) {
  GCancellable *c = arg; /* the registration's reference */
  g_cancellable_cancel(c);
  g_object_unref(c);
}

int weft_glib_cancel_when_done(weft_ctx *ctx, GCancellable *c, weft_glib_link **link) {
  if (link != NULL) *link = NULL;
  if (ctx == NULL || c == NULL || !G_IS_CANCELLABLE(c) || link == NULL) return WEFT_EINVAL;
  weft_glib_link *l = calloc(1, sizeof *l);
  if (l == NULL) return WEFT_ENOMEM;
  l->c = c; /* no reference of the link's: the registration holds one */
  int rc = weft_ctx_after_func(ctx, on_ctx_done, g_object_ref(c), &l->after);
  if (rc != 0) {
    g_object_unref(c);
    free(l);
    return rc;
  }
  *link = l;
  return 0;
}

void weft_glib_link_free(weft_glib_link *l) {
  if (l == NULL) return;
  if (l->after != NULL) {
    if (weft_after_stop(l->after)) g_object_unref(l->c); /* the callback will never run: its reference */
    weft_after_free(l->after);
  } else {
    if (l->handler != 0) g_cancellable_disconnect(l->c, l->handler);
    weft_ctx_end(l->cancel);
    g_object_unref(l->c);
  }
  free(l);
}
