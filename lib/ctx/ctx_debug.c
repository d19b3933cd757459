/* lib/ctx/ctx_debug.c: debug aids — live count (in ctx.c), subtree dump, leak tracking and report.
 *
 * Leak tracking is off unless WEFT_LEAKS=1 is in the environment when the library loads; then every
 * derived context gets an ext record with its creator (the return address of the weft_ctx_with_* call)
 * and is kept on a global list until its final release; at exit the contexts still on it are reported.
 * Creators are printed as symbol+offset when the symbol is visible (link programs with -rdynamic), and
 * always as a raw address that addr2line resolves. */
#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

#include "ctx/ctx_impl.h"

bool weft__leaks_on;
static pthread_mutex_t leak_mu = PTHREAD_MUTEX_INITIALIZER;
static weft_ctx *leak_head;

void weft__leaks_enable(bool on) { weft__leaks_on = on; }
bool weft_ctx_leak_tracking(void) { return weft__leaks_on; }

void weft__leak_track(weft_ctx *c, void *creator) {
  weft__ext *e = weft__ext_get(c);
  if (e == NULL) return; /* untracked rather than failing the derivation */
  e->creator = creator;
  e->born_ns = weft_now();
  pthread_mutex_lock(&leak_mu);
  e->leak_next = leak_head;
  if (leak_head) leak_head->ext->leak_pprev = &e->leak_next;
  leak_head = c;
  e->leak_pprev = &leak_head;
  pthread_mutex_unlock(&leak_mu);
}

void weft__leak_untrack(weft_ctx *c) {
  weft__ext *e = c->ext;
  if (e == NULL) return;
  pthread_mutex_lock(&leak_mu); /* leak_pprev is written by track() under leak_mu: read it under it */
  if (e->leak_pprev == NULL) {
    pthread_mutex_unlock(&leak_mu);
    return;
  }
  *e->leak_pprev = e->leak_next;
  if (e->leak_next) e->leak_next->ext->leak_pprev = e->leak_pprev;
  e->leak_pprev = NULL;
  pthread_mutex_unlock(&leak_mu);
}

static void describe_creator(FILE *out, void *addr) {
  Dl_info info;
  if (addr && dladdr(addr, &info) && info.dli_sname)
    fprintf(out, "%s+0x%lx (%p in %s)", info.dli_sname, (unsigned long)((char *)addr - (char *)info.dli_saddr),
            addr, info.dli_fname ? info.dli_fname : "?");
  else if (addr && dladdr(addr, &info) && info.dli_fname)
    fprintf(out, "%p in %s (offset 0x%lx)", addr, info.dli_fname,
            (unsigned long)((char *)addr - (char *)info.dli_fbase));
  else
    fprintf(out, "%p", addr);
}

static const char *state_name(int err) {
  return err == 0 ? "live" : err == WEFT_EDEADLINE ? "deadline-exceeded" : "canceled";
}

size_t weft_ctx_leak_report(FILE *out) {
  if (out == NULL) return 0;
  size_t n = 0;
  int64_t now = weft_now();
  pthread_mutex_lock(&leak_mu);
  for (weft_ctx *c = leak_head; c; c = c->ext->leak_next) {
    fprintf(out, "weft: context %p never released: %s, %s, age %.3fs, refs %u, created by ", (void *)c,
            weft__kind_name(c->kind), state_name(weft_ctx_err(c)), (double)(now - c->ext->born_ns) / 1e9,
            atomic_load(&c->refs));
    describe_creator(out, c->ext->creator);
    fputc('\n', out);
    n++;
  }
  pthread_mutex_unlock(&leak_mu);
  return n;
}

static void leaks_at_exit(void) {
  size_t n = weft_ctx_leak_report(stderr);
  if (n) fprintf(stderr, "weft: %zu context(s) never released\n", n);
}

__attribute__((constructor)) static void leaks_from_env(void) {
  const char *s = getenv("WEFT_LEAKS");
  if (s && strcmp(s, "1") == 0) {
    weft__leaks_on = true;
    atexit(leaks_at_exit);
  }
}

/* ---- dump ---------------------------------------------------------------------------------------- */

#define DUMP_MAX_DEPTH 200

static void dump_line(FILE *out, weft_ctx *c, int depth, uint32_t now_ms) {
  int err = weft_ctx_err(c); /* not the raw word: it may hold WEFT__ERR_ENDING */
  fprintf(out, "%*s%s %s", depth * 2, "", weft__kind_name(c->kind), state_name(err));
  if (err != 0 && weft__has_cancel(c) && c->cause != err) fprintf(out, " cause=%s", weft_err_name(c->cause));
  int32_t age_ms = (int32_t)(now_ms - c->born_ms);
  fprintf(out, " age=%.3fs", age_ms > 0 ? age_ms / 1e3 : 0.0);
  int64_t dl = weft_ctx_deadline(c);
  if (dl != WEFT_FOREVER) fprintf(out, " deadline=%+.3fs", (double)(dl - weft_now()) / 1e9);
  if (!(c->flags & WEFT__F_STATIC)) fprintf(out, " refs=%u", atomic_load(&c->refs));
  fputc('\n', out);
}

static void dump_values_under(FILE *out, weft_ctx *p, int depth, uint32_t now_ms);

/* c is locked by the caller (when it has a cancel of its own). */
static void dump_node(FILE *out, weft_ctx *c, int depth, uint32_t now_ms) {
  dump_line(out, c, depth, now_ms);
  if (depth >= DUMP_MAX_DEPTH) {
    fprintf(out, "%*s...\n", (depth + 1) * 2, "");
    return;
  }
  if (weft__leaks_on) dump_values_under(out, c, depth + 1, now_ms);
  if (!weft__has_cancel(c)) return;
  for (weft_ctx *k = c->u.c.kids; k; k = k->u.c.next) {
    weft__lock(k);
    dump_node(out, k, depth + 1, now_ms);
    weft__unlock(k);
  }
  for (weft__cbnode *n = c->ext ? c->ext->cbs : NULL; n; n = n->next) {
    if (n->type != WEFT__CB_MULTI) continue;
    fprintf(out, "%*s", (depth + 1) * 2, "");
    fprintf(out, "(also parent of) ");
    dump_line(out, n->owner, 0, now_ms);
  }
}

static void dump_values_under(FILE *out, weft_ctx *p, int depth, uint32_t now_ms) {
  /* Under leak_mu: contexts on the list cannot be freed while we look (untrack takes leak_mu). */
  pthread_mutex_lock(&leak_mu);
  for (weft_ctx *c = leak_head; c; c = c->ext->leak_next)
    if (c->parent == p && !weft__has_cancel(c)) dump_line(out, c, depth, now_ms);
  pthread_mutex_unlock(&leak_mu);
}

int weft_ctx_dump(weft_ctx *ctx, FILE *out) {
  if (ctx == NULL || out == NULL) return WEFT_EINVAL;
  struct timespec ts; /* the clock contexts record their birth with */
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  uint32_t now_ms = (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
  bool locked = weft__has_cancel(ctx);
  if (locked) weft__lock(ctx);
  dump_node(out, ctx, 0, now_ms);
  if (locked) weft__unlock(ctx);
  return 0;
}
