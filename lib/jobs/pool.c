/* lib/jobs/pool.c: the worker pool — jobs, contexts, futures, waiting, shutdown and its report.
 *
 * Design notes.
 * - The queue (jobq.c) moves slots {fn, arg, ts}; ts is the submit time of one job in WEFT__POOL_SAMPLE per
 *   submitting thread (latency stats), else 0. A plain job has no record: it runs under the pool's
 *   context, so a tiny job costs a push, a claim and a call. A record (weft__job, from a per-pool free
 *   list, allocated 64 at a time) exists only when the job needs one: a future, a submitter's context,
 *   a timeout, an on_done callback or a completion channel. A record that ended goes back on a lock-free
 *   stack (`freed`) that rec_get takes whole, under `mu`, when its own list is empty: workers ending jobs
 *   never take the lock a submitter takes (it showed as contention with 64 jobs in flight from a loop).
 *   Such a job is queued as {rec_marker, record}, the real fn and arg inside the record. The worker
 *   derives the job's context when the job starts (with_parents(pool ctx, submitter ctx), then
 *   with_timeout), and ends it when fn returns. Sampled jobs take no record: a record's atomics, even for
 *   one job in 64, showed in pool_tiny.
 * - Accounting. Every counter of a worker is written only by that worker (relaxed stores on its own cache
 *   line); the thread running shutdown has its own atomic counters for the jobs it discards. A job's
 *   outcome is counted after it fully ended (fn returned, or the discard callback returned), and `fin`
 *   (jobs taken from the queue that ended) is stored with release order after it. The pool is quiescent
 *   when sum(fin) == jobs pushed; reading every fin before the pushed counts makes "equal" mean "quiescent
 *   at some instant during the read", because fin <= pushed always and both only grow.
 * - Blocking: waiters (submitters waiting for room, wait_all/shutdown waiting for quiescence, future
 *   waiters) park through park.c after registering a node {waiter, key} on the pool's list under `mu`,
 *   and after incrementing a counter the hot path reads (nwait_room, nwait_all, a future's nwait). The
 *   side that makes progress (a worker claimed jobs: room; a worker ended a job: quiescence, a future)
 *   stores its progress, fences, reads the counter, and only if it is non-zero takes `mu` and signals the
 *   nodes with that key. Waiters re-check their condition after every wake-up.
 * - Classes. A job that ran is canceled while running when shutdown cancelled the pool's context before
 *   it returned: shutdown sets `shut_cancel` just before it cancels, and a worker that sees the job's
 *   context done after fn returned reads it. Otherwise it completed (0) or failed (non-zero; timed out
 *   too when its own deadline is what ended its context). A plain job costs no more than before: the
 *   check of the pool's context that lets a job start is taken after the previous one returned, and
 *   classes it too; shut_cancel is read only for a job whose context was done.
 * - Completions. A job with a record ends in one place, run_job(), whatever its class (ran on a worker,
 *   ran inline by caller-runs, discarded by a worker or by the shutdown/destroy thread), so on_done and the
 *   completion happen exactly once per job, in this order: on_done, the discard hook (unrun jobs), the
 *   future's done flag, the completion sent to done_chan, and last `fin` (the job counts as ended), so
 *   wait_all/shutdown returning means every callback returned and every completion is buffered. The room
 *   of a completion is reserved in the channel at submit (chan/reserve.h), so the send never waits and
 *   never fails unless the application misused the channel (closed it, or sent its own elements): then
 *   the completion is counted as undelivered and a ran job's arg goes to the discard hook.
 * - Lock order: mu only; never held while a job, a discard callback or a context call runs.
 * - Taken but not started. A worker takes up to WEFT__JOBQ_BATCH jobs at once (jobq.c says why) and runs
 *   them in order, so the ones after the running job are invisible to other workers. If the running job
 *   waits for one of them (a future, a semaphore, a channel fed by a later job), the wait would never end
 *   while other workers idle. So a worker sets park.c's hook: when the job's weft wait outlasts its spin,
 *   the jobs still held go back to the queue (hand_back(): pushed in their order; a full or closed queue
 *   keeps the rest, run or discarded afterwards as before). Such a job was pushed twice; `requeued` per
 *   worker counts those pushes, and pushed_net() (pushed - requeued) is what quiescence and the report's
 *   `submitted` count. A job that blocks outside weft (a plain pthread or sleep call) hands nothing back.
 */
#include <pthread.h>
#include <sched.h>
#include <string.h>

#include "chan/reserve.h"
#include "common/internal.h"
#include "ctx/park.h"
#include "jobs/jobq.h"
#include "weft/pool.h"

#define HBUCKETS 48
#define WEFT__POOL_SAMPLE 64 /* one job in this many per submitting thread is timed (the first always) */
#define REC_CHUNK 64
#define FULL_RETRIES 256 /* a blocked submitter retries this often (yielding) before it parks */

struct weft__job {
  weft_job_fn fn;
  void *arg;
  weft_pool *pool;
  weft_ctx *sub;   /* the submitter's context (a reference), or NULL */
  int64_t timeout; /* from the job's start; WEFT_FOREVER = none */
  int rc;
  weft_job_state state; /* written before done */
  weft_done_fn on_done; /* completion callback, or NULL */
  void *done_arg;
  weft_chan *done_chan; /* completion channel holding a reservation (chan/reserve.h), or NULL */
  _Atomic int done;
  _Atomic int refs; /* 1 for the queue until the job ended, + REF_HOLDER for the future's holder */
  _Atomic uint32_t nwait;
  struct weft__job *next_free;
};

typedef struct worker {
  /* written by this worker only, read by stats/report/quiescence */
  _Atomic uint64_t fin; /* queued jobs that ended */
  _Atomic uint64_t completed, failed, timed_out, canceled_before_start, canceled_while_running, inline_sub, running,
      samples;
  _Atomic uint64_t hist_wait[HBUCKETS], hist_run[HBUCKETS];
  _Atomic uint64_t requeued; /* jobs this worker had taken and pushed back (hand_back()) */
  /* this worker's thread only: the jobs of the current batch after the one running are the last nheld
   * before held_end */
  const weft__jslot *held_end;
  unsigned nheld;
  weft_pool *pool;
  unsigned index;
  pthread_t thread;
} __attribute__((aligned(WEFT__CACHELINE))) worker;

typedef struct notify_node {
  weft__waiter *w;
  const void *key;
  struct notify_node *prev, *next;
} notify_node;

struct weft_pool {
  weft__jobq *q;
  weft_ctx *ctx;
  weft_cancel *cancel; /* the right to cancel ctx: shutdown's alone */
  worker *workers;
  unsigned nworkers;
  int64_t job_timeout;
  int64_t settle;
  weft_discard_fn discard;
  void *discard_arg;
  _Atomic int shut_cancel; /* shutdown cancelled the pool's context (set just before it does) */

  _Atomic uint32_t nwait_room __attribute__((aligned(WEFT__CACHELINE)));
  _Atomic uint32_t nwait_all;
  _Atomic int state; /* 0 running, 1 shut down */

  pthread_mutex_t mu __attribute__((aligned(WEFT__CACHELINE)));
  notify_node waiters; /* list head (sentinel) */
  struct weft__job *free_recs; /* the records rec_get hands out (under mu) */
  void **chunks;
  size_t nchunks;

  /* Records that ended, pushed without a lock by whoever ended them (a worker, a future's holder) and taken
   * all at once by rec_get when free_recs runs dry: the submitter and the workers share no lock. */
  _Atomic(struct weft__job *) freed __attribute__((aligned(WEFT__CACHELINE)));

  /* jobs the shutdown/destroy thread discarded */
  _Atomic uint64_t ext_fin, ext_canceled_before_start;
  _Atomic uint64_t undelivered; /* completions a done_chan refused (misuse: see pool.h) */
  char room_key, all_key;
};

static _Thread_local worker *tl_worker;
static _Thread_local unsigned tl_sample;

static bool on_worker_of(const weft_pool *p) { return tl_worker != NULL && tl_worker->pool == p; }

static inline void bump(_Atomic uint64_t *c) { weft__owned_add(c, 1, memory_order_relaxed); }

/* ---- waiting and notifying ---------------------------------------------------------------------- */

static void notify(weft_pool *p, const void *key) {
  pthread_mutex_lock(&p->mu);
  for (notify_node *n = p->waiters.next; n != &p->waiters; n = n->next)
    if (n->key == key) weft__waiter_signal(n->w, 1);
  pthread_mutex_unlock(&p->mu);
}

static void node_add(weft_pool *p, notify_node *n) {
  pthread_mutex_lock(&p->mu);
  n->next = &p->waiters;
  n->prev = p->waiters.prev;
  n->prev->next = n;
  p->waiters.prev = n;
  pthread_mutex_unlock(&p->mu);
}

static void node_del(weft_pool *p, notify_node *n) {
  pthread_mutex_lock(&p->mu);
  n->prev->next = n->next;
  n->next->prev = n->prev;
  pthread_mutex_unlock(&p->mu);
}

/* Blocks until cond(p, arg) holds, ctx ends or deadline passes. `counter` is what the progressing side
 * reads to know someone waits. Returns 0 when cond held, else the wait's error. */
static int wait_until(weft_pool *p, const void *key, _Atomic uint32_t *counter, bool (*cond)(weft_pool *, void *),
                      void *arg, weft_ctx *ctx, int64_t deadline) {
  for (;;) {
    if (cond(p, arg)) return 0;
    weft__waiter *w = weft__waiter_self();
    notify_node n = {.w = w, .key = key};
    weft__waiter_arm(w, ctx);
    atomic_fetch_add(counter, 1);
    node_add(p, &n);
    if (cond(p, arg)) { /* cond may have side effects (a push): never evaluate it again once true */
      node_del(p, &n);
      atomic_fetch_sub(counter, 1);
      return 0;
    }
    int r = weft__waiter_wait(w, ctx, deadline);
    node_del(p, &n);
    atomic_fetch_sub(counter, 1);
    if (r < 0) return cond(p, arg) ? 0 : r;
  }
}

/* Jobs pushed onto the queue, each counted once: a job a worker handed back was pushed twice. Every
 * requeued count is read before the queue's pushed counts, and written after the push it counts, so the
 * result never falls below the truth. */
static uint64_t pushed_net(weft_pool *p) {
  uint64_t r = 0;
  for (unsigned i = 0; i < p->nworkers; i++) r += atomic_load_explicit(&p->workers[i].requeued, memory_order_acquire);
  return weft__jobq_pushed(p->q) - r;
}

static uint64_t ended_queued(weft_pool *p) {
  uint64_t f = atomic_load_explicit(&p->ext_fin, memory_order_acquire);
  for (unsigned i = 0; i < p->nworkers; i++) f += atomic_load_explicit(&p->workers[i].fin, memory_order_acquire);
  return f;
}

static bool quiescent(weft_pool *p, void *unused) {
  (void)unused;
  uint64_t f = ended_queued(p); /* every fin before the pushed counts: see the design notes */
  atomic_thread_fence(memory_order_seq_cst);
  return f == pushed_net(p);
}

/* ---- job records -------------------------------------------------------------------------------- */

static struct weft__job *rec_get(weft_pool *p) {
  pthread_mutex_lock(&p->mu);
  /* The whole freed stack at once: an exchange, so no ABA (a pop of one node would need a counter). */
  if (p->free_recs == NULL) p->free_recs = atomic_exchange_explicit(&p->freed, NULL, memory_order_acquire);
  if (p->free_recs == NULL) {
    void **nc = realloc(p->chunks, (p->nchunks + 1) * sizeof *nc);
    struct weft__job *c = nc ? calloc(REC_CHUNK, sizeof *c) : NULL;
    if (nc) p->chunks = nc;
    if (c == NULL) {
      pthread_mutex_unlock(&p->mu);
      return NULL;
    }
    p->chunks[p->nchunks++] = c;
    for (int i = 0; i < REC_CHUNK; i++) {
      c[i].next_free = p->free_recs;
      p->free_recs = &c[i];
    }
  }
  struct weft__job *r = p->free_recs;
  p->free_recs = r->next_free;
  pthread_mutex_unlock(&p->mu);
  r->pool = p;
  r->sub = NULL;
  r->timeout = WEFT_FOREVER;
  r->rc = 0;
  r->state = WEFT_JOB_PENDING;
  r->on_done = NULL;
  r->done_arg = NULL;
  r->done_chan = NULL;
  atomic_store_explicit(&r->done, 0, memory_order_relaxed);
  atomic_store_explicit(&r->nwait, 0, memory_order_relaxed);
  atomic_store_explicit(&r->refs, 1, memory_order_relaxed);
  return r;
}

/* The holder's reference counts apart from the queue's, so a second weft_future_release finds it gone and
 * aborts, as a double weft_ctx_release does (unless the record went to another future in between). */
#define REF_HOLDER (1 << 16)

static void rec_free(struct weft__job *r) {
  weft_pool *p = r->pool;
  struct weft__job *head = atomic_load_explicit(&p->freed, memory_order_relaxed);
  do r->next_free = head; /* a push is safe from ABA: it only needs the head it links to be the head */
  while (!atomic_compare_exchange_weak_explicit(&p->freed, &head, r, memory_order_release, memory_order_relaxed));
}

static void rec_unref(struct weft__job *r) {
  int old = atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel);
  if (WEFT__UNLIKELY((old & (REF_HOLDER - 1)) == 0))
    weft__panic(__FILE__, __LINE__, "job record reference underflow");
  if (old == 1) rec_free(r);
}

/* The end of a job with a record, after its on_done and discard hook ran: the future becomes done, then
 * the completion goes to done_chan (read from the record first: the unref may hand it to another job). */
static void rec_finish(struct weft__job *r, int rc, weft_job_state st, bool discarded) {
  weft_pool *p = r->pool;
  weft_chan *dc = r->done_chan;
  struct weft_completion c = {r->arg, rc, st, r->done_arg};
  weft_ctx_release(r->sub);
  r->sub = NULL;
  r->done_chan = NULL;
  r->rc = rc;
  r->state = st;
  atomic_store(&r->done, 1);
  if (atomic_load(&r->nwait) != 0) notify(p, r);
  rec_unref(r);
  if (dc != NULL && weft__chan_send_reserved(dc, &c) != 0) {
    /* A misuse made it undeliverable (pool.h): count it and hand the arg back, never block or drop it
     * silently. An unrun job's arg went to the discard hook already. */
    atomic_fetch_add(&p->undelivered, 1);
    if (!discarded && p->discard != NULL) p->discard(c.arg, p->discard_arg);
  }
}

/* ---- running a job ------------------------------------------------------------------------------ */

static unsigned bucket(int64_t ns) {
  unsigned b = ns <= 1 ? 0 : 64u - (unsigned)__builtin_clzll((unsigned long long)ns);
  return b < HBUCKETS ? b : HBUCKETS - 1;
}

/* The fn of a slot that carries a record (never called). */
static int rec_marker(weft_ctx *ctx, void *arg) {
  (void)ctx;
  (void)arg;
  return WEFT_EINVAL;
}

/* The class of a job that ran and returned rc under jctx (see the design notes); bumps its counter and
 * returns what its future reports: rc, or WEFT_ECANCELED for a job shutdown cancelled that returned 0.
 * own_timeout: jctx has the job's own deadline, derived from `parent`. */
static int count_ran(weft_pool *p, worker *wk, int rc, weft_ctx *jctx, weft_ctx *parent, bool own_timeout,
                     weft_job_state *st) {
  int err = weft_ctx_err(jctx);
  if (err != 0 && atomic_load_explicit(&p->shut_cancel, memory_order_relaxed)) {
    bump(&wk->canceled_while_running);
    *st = WEFT_JOB_CANCELED_WHILE_RUNNING;
    return rc != 0 ? rc : WEFT_ECANCELED;
  }
  if (rc == 0) {
    bump(&wk->completed);
    *st = WEFT_JOB_COMPLETED;
    return 0;
  }
  bump(&wk->failed);
  *st = WEFT_JOB_FAILED;
  /* Its own deadline ended it when its context ended by a deadline that was its own: a deadline of the
   * parents would have become the job's (the earlier one wins), so the job's is then earlier. */
  if (own_timeout && err == WEFT_EDEADLINE && weft_ctx_deadline(jctx) < weft_ctx_deadline(parent))
    bump(&wk->timed_out);
  return rc;
}

/* Runs (or discards) one job. wk is the worker running it, or NULL for the shutdown thread (discard
 * only: the pool's context is done by then). `queued` says whether it came from the queue (counts in fin).
 * worker_main() runs plain jobs itself; everything else comes here. */
static void run_job(weft_pool *p, worker *wk, const weft__jslot *s, bool queued) {
  struct weft__job *r = s->fn == rec_marker ? s->arg : NULL;
  weft_job_fn fn = r ? r->fn : s->fn;
  void *arg = r ? r->arg : s->arg;
  int64_t ts = s->ts;
  weft_ctx *ctx = p->ctx, *own = NULL, *joined = NULL;
  weft_cancel *own_k = NULL;
  int err = weft_ctx_err(ctx);
  if (err == 0 && r != NULL && (r->sub != NULL || r->timeout != WEFT_FOREVER)) {
    weft_cancel *joined_k = NULL;
    if (r->sub != NULL && (err = weft_ctx_err(r->sub)) == 0) {
      weft_ctx *ps[2] = {ctx, r->sub};
      err = weft_ctx_with_parents(ps, 2, &joined, &joined_k);
    }
    if (err == 0 && r->timeout != WEFT_FOREVER) {
      err = weft_ctx_with_timeout(joined ? joined : ctx, r->timeout, &own, &own_k);
      if (err != 0) { /* else joined is kept until the job ended: count_ran() compares deadlines */
        weft_ctx_release(joined);
        joined = NULL;
      }
    } else {
      own = joined;
      own_k = joined_k;
      joined = NULL;
    }
    if (err == 0 && own != NULL) err = weft_ctx_err(own);
  }
  int rc;
  weft_job_state st;
  bool discarded = err != 0 || wk == NULL;
  if (discarded) {
    if (err == 0) err = WEFT_ECANCELED;
    st = WEFT_JOB_CANCELED_BEFORE_START;
    /* on_done first, so arg is still valid inside it (the discard hook may free it). */
    if (r != NULL && r->on_done != NULL) r->on_done(arg, err, st, r->done_arg);
    if (p->discard != NULL) p->discard(arg, p->discard_arg);
    rc = err;
    if (wk)
      bump(&wk->canceled_before_start);
    else
      atomic_fetch_add(&p->ext_canceled_before_start, 1);
  } else {
    weft_ctx *jctx = own ? own : ctx;
    int64_t t0 = ts ? weft_now() : 0;
    bump(&wk->running);
    rc = fn(jctx, arg);
    atomic_store_explicit(&wk->running, atomic_load_explicit(&wk->running, memory_order_relaxed) - 1,
                          memory_order_relaxed);
    if (ts) {
      int64_t t1 = weft_now();
      bump(&wk->hist_wait[bucket(t0 - ts)]);
      bump(&wk->hist_run[bucket(t1 - t0)]);
      bump(&wk->samples);
    }
    rc = count_ran(p, wk, rc, jctx, joined ? joined : ctx, own != NULL && r->timeout != WEFT_FOREVER, &st);
  }
  weft_ctx_end(own_k);
  weft_ctx_release(joined);
  if (r != NULL) {
    if (!discarded && r->on_done != NULL) r->on_done(arg, rc, st, r->done_arg);
    rec_finish(r, rc, st, discarded);
  }
  if (queued) {
    if (wk)
      weft__owned_add(&wk->fin, 1, memory_order_release);
    else
      atomic_fetch_add_explicit(&p->ext_fin, 1, memory_order_release);
  }
}

/* The park hook of a worker thread (park.h): the job it runs is about to sleep in a weft wait, so the jobs
 * it took with that job and has not started go back to the queue, for idle workers to run. Without this,
 * a job waiting for a job of its own batch would wait forever while other workers idle. They go in their
 * order; a push that fails (queue full: every worker has work; or closed: shutdown) keeps the rest, which
 * are then the last of the batch, run or discarded after the blocking job returns, as before. */
static void hand_back(void) {
  worker *wk = tl_worker;
  if (wk == NULL || wk->nheld == 0) return;
  weft_pool *p = wk->pool;
  while (wk->nheld > 0 && weft__jobq_push(p->q, wk->held_end - wk->nheld) == 0) {
    wk->nheld--;
    weft__owned_add(&wk->requeued, 1, memory_order_release);
  }
}

static void *worker_main(void *a) {
  worker *wk = a;
  weft_pool *p = wk->pool;
  tl_worker = wk;
  weft__park_hook = hand_back;
  weft__jobq_attach(p->q, wk->index, weft__waiter_self());
  weft__jslot batch[WEFT__JOBQ_BATCH];
  unsigned n;
  while ((n = weft__jobq_get(p->q, wk->index, batch, WEFT__JOBQ_BATCH)) != 0) {
    /* The claim was a locked CAS: a full fence before this load (Dekker with a waiting submitter). */
    if (atomic_load(&p->nwait_room) != 0) notify(p, &p->room_key);
    /* Plain jobs (no record, not sampled) run here and are counted once per batch; the rest, and any job
     * met once the pool's context has ended, go through run_job(). */
    weft_ctx *ctx = p->ctx;
    uint64_t ended = 0, ok = 0;
    wk->held_end = batch + n;
    /* One load of the context's state per job: taken after a job returns, it classes that job (done:
     * maybe cancelled by shutdown, count_ran() decides) and lets the next one start. */
    bool live = weft_ctx_err(ctx) == 0;
    for (unsigned i = 0; i < n; i++) {
      const weft__jslot *s = &batch[i];
      wk->nheld = n - i - 1;
      if (WEFT__LIKELY(s->fn != rec_marker && s->ts == 0 && live)) {
        atomic_store_explicit(&wk->running, 1, memory_order_relaxed);
        int rc = s->fn(ctx, s->arg);
        atomic_store_explicit(&wk->running, 0, memory_order_relaxed);
        live = weft_ctx_err(ctx) == 0;
        if (WEFT__LIKELY(rc == 0 && live))
          ok++;
        else {
          weft_job_state st;
          count_ran(p, wk, rc, ctx, ctx, false, &st);
        }
        ended++;
      } else {
        run_job(p, wk, s, true);
        live = weft_ctx_err(ctx) == 0;
      }
      i = n - 1 - wk->nheld; /* the job may have handed back the first of those held: go on with the rest */
    }
    wk->nheld = 0;
    weft__owned_add(&wk->completed, ok, memory_order_relaxed);
    weft__owned_add(&wk->fin, ended, memory_order_release);
    weft__full_fence();
    if (atomic_load_explicit(&p->nwait_all, memory_order_relaxed) != 0 && quiescent(p, NULL))
      notify(p, &p->all_key);
  }
  weft__park_hook = NULL;
  tl_worker = NULL;
  return NULL;
}

/* ---- creation ----------------------------------------------------------------------------------- */

int weft_pool_create(const weft_pool_opts *opts, weft_pool **out) {
  weft_pool_opts o = WEFT_POOL_OPTS_INIT;
  if (out == NULL) return WEFT_EINVAL;
  *out = NULL;
  if (opts != NULL) o = *opts;
  if (o.queue_cap == 0 || o.queue_cap > WEFT_POOL_MAX_QUEUE || o.workers > WEFT_POOL_MAX_WORKERS ||
      o.job_timeout <= 0 || o.settle < 0)
    return WEFT_EINVAL;
  if (o.workers == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    o.workers = n > 0 ? (size_t)n : 1;
  }
  int rc = WEFT_ENOMEM;
  weft_pool *p = aligned_alloc(WEFT__CACHELINE, (sizeof *p + WEFT__CACHELINE - 1) / WEFT__CACHELINE * WEFT__CACHELINE);
  if (p == NULL) goto fail0;
  memset(p, 0, sizeof *p);
  p->nworkers = (unsigned)o.workers;
  p->job_timeout = o.job_timeout;
  p->settle = o.settle;
  p->discard = o.discard;
  p->discard_arg = o.discard_arg;
  p->waiters.next = p->waiters.prev = &p->waiters;
  WEFT__ASSERT(pthread_mutex_init(&p->mu, NULL) == 0);
  if ((rc = weft_ctx_with_cancel(o.parent ? o.parent : weft_background(), &p->ctx, &p->cancel)) != 0)
    goto fail1;
  if ((rc = weft__jobq_create(&p->q, p->nworkers, o.queue_cap)) != 0) goto fail2;
  rc = WEFT_ENOMEM;
  p->workers = aligned_alloc(WEFT__CACHELINE, sizeof(worker) * p->nworkers);
  if (p->workers == NULL) goto fail3;
  memset(p->workers, 0, sizeof(worker) * p->nworkers);
  unsigned started = 0;
  for (; started < p->nworkers; started++) {
    worker *wk = &p->workers[started];
    wk->pool = p;
    wk->index = started;
    if (weft__runtime_thread(&wk->thread, worker_main, wk) != 0) {
      rc = WEFT_ESYS;
      goto fail4;
    }
  }
  *out = p;
  return 0;
fail4:
  weft__jobq_close(p->q);
  for (unsigned i = 0; i < started; i++) pthread_join(p->workers[i].thread, NULL);
  free(p->workers);
fail3:
  weft__jobq_destroy(p->q);
fail2:
  weft_ctx_end(p->cancel);
fail1:
  pthread_mutex_destroy(&p->mu);
  free(p);
fail0:
  return rc;
}

weft_ctx *weft_pool_ctx(weft_pool *p) { return p ? p->ctx : NULL; }
size_t weft_pool_workers(const weft_pool *p) { return p ? p->nworkers : 0; }
size_t weft_pool_capacity(const weft_pool *p) { return p ? weft__jobq_capacity(p->q) : 0; }

/* ---- submitting --------------------------------------------------------------------------------- */

typedef struct push_try {
  const weft__jslot *s;
  int rc;
} push_try;

static bool pushed_or_final(weft_pool *p, void *arg) {
  push_try *t = arg;
  t->rc = weft__jobq_push(p->q, t->s);
  return t->rc != WEFT_EFULL;
}

static int submit_slot(weft_pool *p, weft__jslot *s, weft_ctx *wait_ctx, bool nowait) {
  int rc = weft__jobq_push(p->q, s);
  if (WEFT__LIKELY(rc != WEFT_EFULL) || nowait) return rc;
  if (on_worker_of(p)) {
    /* Caller runs: a worker must never block on its own pool's full queue. */
    worker *wk = tl_worker;
    if (atomic_load(&p->state) != 0) return WEFT_ESTOPPED;
    bump(&wk->inline_sub);
    run_job(p, wk, s, false);
    return 0;
  }
  /* The queue drains fast when jobs are short: retry for a while, yielding the core to the workers (a
   * submitter and the workers may share it), before parking. */
  for (int i = 1; i <= FULL_RETRIES; i++) {
    if (i % 4 == 0)
      sched_yield();
    else
      weft__cpu_relax();
    if ((rc = weft__jobq_push(p->q, s)) != WEFT_EFULL) return rc;
    if (wait_ctx != NULL && (rc = weft_ctx_err(wait_ctx)) != 0) return rc;
  }
  push_try t = {s, WEFT_EFULL};
  int w = wait_until(p, &p->room_key, &p->nwait_room, pushed_or_final, &t, wait_ctx, WEFT_FOREVER);
  return w != 0 ? w : t.rc;
}

/* Every submit ends here. join: the submitter's context the job runs under (NULL: none); wait_ctx bounds
 * the wait for room; timeout 0 means the pool's default. */
static int submit_rec(weft_pool *p, weft__jslot *sp, weft_ctx *join, weft_ctx *wait_ctx, int64_t timeout, bool nowait,
                      weft_future **future, weft_done_fn on_done, void *done_arg, weft_chan *dc);

static int submit(weft_pool *p, weft_job_fn fn, void *arg, weft_ctx *join, weft_ctx *wait_ctx, int64_t timeout,
                  bool nowait, weft_future **future, weft_done_fn on_done, void *done_arg, weft_chan *dc) {
  if (future != NULL) *future = NULL;
  if (p == NULL || fn == NULL || timeout < 0) return WEFT_EINVAL;
  if (timeout == 0) timeout = p->job_timeout;
  weft__jslot s = {fn, arg, 0};
  if (WEFT__UNLIKELY((tl_sample++ % WEFT__POOL_SAMPLE) == 0)) s.ts = weft_now();
  if (WEFT__LIKELY(join == NULL && timeout == WEFT_FOREVER && future == NULL && on_done == NULL && dc == NULL))
    return submit_slot(p, &s, wait_ctx, nowait);
  return submit_rec(p, &s, join, wait_ctx, timeout, nowait, future, on_done, done_arg, dc);
}

/* A job that needs a record (see the design notes): kept out of submit() so the plain path stays small. */
static __attribute__((noinline)) int submit_rec(weft_pool *p, weft__jslot *sp, weft_ctx *join, weft_ctx *wait_ctx,
                                                int64_t timeout, bool nowait, weft_future **future,
                                                weft_done_fn on_done, void *done_arg, weft_chan *dc) {
  weft__jslot s = *sp;
  weft_job_fn fn = s.fn;
  void *arg = s.arg;
  int rc;
  if (dc != NULL) {
    if (weft_chan_cap(dc) == 0 || weft_chan_elem_size(dc) != sizeof(struct weft_completion)) return WEFT_EINVAL;
    /* Stopped comes before full or closed: a submit after shutdown says so, whatever the channel. */
    if (atomic_load(&p->state) != 0) return WEFT_ESTOPPED;
    if ((rc = weft__chan_reserve(dc)) != 0) return rc;
  }
  struct weft__job *r = rec_get(p);
  if (r == NULL) {
    if (dc != NULL) weft__chan_unreserve(dc);
    return WEFT_ENOMEM;
  }
  r->fn = fn;
  r->arg = arg;
  r->sub = weft_ctx_retain(join);
  r->timeout = timeout;
  r->on_done = on_done;
  r->done_arg = done_arg;
  r->done_chan = dc;
  if (future != NULL) atomic_store_explicit(&r->refs, 1 + REF_HOLDER, memory_order_relaxed);
  s.fn = rec_marker;
  s.arg = r;
  rc = submit_slot(p, &s, wait_ctx, nowait);
  if (rc != 0) {
    weft_ctx_release(r->sub);
    r->sub = NULL;
    r->done_chan = NULL;
    if (dc != NULL) weft__chan_unreserve(dc);
    atomic_store_explicit(&r->refs, 1, memory_order_relaxed);
    rec_unref(r);
    return rc;
  }
  if (future != NULL) *future = (weft_future *)r;
  return 0;
}

int weft_pool_submit(weft_pool *p, weft_ctx *ctx, weft_job_fn fn, void *arg) {
  return submit(p, fn, arg, NULL, ctx, 0, false, NULL, NULL, NULL, NULL);
}

int weft_pool_try_submit(weft_pool *p, weft_job_fn fn, void *arg) {
  return submit(p, fn, arg, NULL, NULL, 0, true, NULL, NULL, NULL, NULL);
}

int weft_pool_submit_opts(weft_pool *p, weft_ctx *ctx, weft_job_fn fn, void *arg, const weft_job_opts *o,
                          weft_future **future) {
  weft_job_opts jo = WEFT_JOB_OPTS_INIT;
  if (o != NULL) jo = *o;
  return submit(p, fn, arg, jo.run_ctx, ctx, jo.timeout, jo.nowait, future, jo.on_done, jo.done_arg,
                jo.done_chan);
}

/* ---- futures ------------------------------------------------------------------------------------ */

static bool rec_done(weft_pool *p, void *arg) {
  (void)p;
  return atomic_load(&((struct weft__job *)arg)->done) != 0;
}

int weft_future_wait(weft_future *f, weft_ctx *ctx, int *job_rc) {
  struct weft__job *r = (struct weft__job *)f;
  if (r == NULL) return WEFT_EINVAL;
  int rc = wait_until(r->pool, r, &r->nwait, rec_done, r, ctx, WEFT_FOREVER);
  if (rc == 0 && job_rc != NULL) *job_rc = r->rc;
  return rc;
}

bool weft_future_done(const weft_future *f) {
  return f != NULL && atomic_load(&((const struct weft__job *)f)->done) != 0;
}

weft_job_state weft_future_state(const weft_future *f) {
  if (f == NULL) return WEFT_JOB_PENDING;
  const struct weft__job *r = (const struct weft__job *)f;
  if (atomic_load(&r->done) == 0) return WEFT_JOB_PENDING;
  return r->state;
}

void weft_future_release(weft_future *f) {
  if (f == NULL) return;
  struct weft__job *r = (struct weft__job *)f;
  int old = atomic_fetch_sub_explicit(&r->refs, REF_HOLDER, memory_order_acq_rel);
  if (WEFT__UNLIKELY(old < REF_HOLDER))
    weft__panic(__FILE__, __LINE__, "weft_future_release on a future already released (double release)");
  if (old == REF_HOLDER) rec_free(r);
}

/* ---- waiting for all, shutdown, report ---------------------------------------------------------- */

int weft_pool_wait_all(weft_pool *p, weft_ctx *ctx) {
  if (p == NULL) return WEFT_EINVAL;
  if (on_worker_of(p)) return WEFT_EBUSY;
  return wait_until(p, &p->all_key, &p->nwait_all, quiescent, NULL, ctx, WEFT_FOREVER);
}

static void fill_report(weft_pool *p, weft_pool_report *rep) {
  weft_pool_report r = {0};
  r.canceled_before_start = atomic_load(&p->ext_canceled_before_start);
  uint64_t inl = 0;
  for (unsigned i = 0; i < p->nworkers; i++) {
    worker *wk = &p->workers[i];
    r.completed += atomic_load(&wk->completed);
    r.failed += atomic_load(&wk->failed);
    r.timed_out += atomic_load(&wk->timed_out);
    r.canceled_before_start += atomic_load(&wk->canceled_before_start);
    r.canceled_while_running += atomic_load(&wk->canceled_while_running);
    inl += atomic_load(&wk->inline_sub);
  }
  r.undelivered = atomic_load(&p->undelivered);
  r.submitted = pushed_net(p) + inl;
  uint64_t ended = r.completed + r.failed + r.canceled_before_start + r.canceled_while_running;
  WEFT__ASSERT(ended <= r.submitted);
  r.still_running = r.submitted - ended;
  *rep = r;
}

static void discard_queued(weft_pool *p) {
  weft__jslot batch[WEFT__JOBQ_BATCH];
  unsigned n;
  while ((n = weft__jobq_take(p->q, batch, WEFT__JOBQ_BATCH)) != 0)
    for (unsigned i = 0; i < n; i++) run_job(p, NULL, &batch[i], true);
}

/* The flag comes first: a worker that sees a job's context done by this cancel also sees the flag. */
static void shutdown_cancel(weft_pool *p) {
  atomic_store(&p->shut_cancel, 1);
  weft_ctx_cancel(p->cancel);
}

int weft_pool_shutdown(weft_pool *p, weft_pool_mode mode, int64_t grace, weft_pool_report *rep) {
  if (p == NULL || (mode != WEFT_POOL_DRAIN && mode != WEFT_POOL_CANCEL) || grace < 0) return WEFT_EINVAL;
  if (on_worker_of(p)) return WEFT_EBUSY;
  int zero = 0;
  if (!atomic_compare_exchange_strong(&p->state, &zero, 1)) return WEFT_ESTATE;
  int64_t deadline = weft_deadline_in(grace);
  weft__jobq_close(p->q);
  notify(p, &p->room_key); /* blocked submitters retry and see WEFT_ESTOPPED */
  int w;
  if (mode == WEFT_POOL_DRAIN) {
    if ((w = wait_until(p, &p->all_key, &p->nwait_all, quiescent, NULL, NULL, deadline)) != 0) {
      shutdown_cancel(p);
      discard_queued(p);
      w = wait_until(p, &p->all_key, &p->nwait_all, quiescent, NULL, NULL, weft_deadline_in(p->settle));
    }
  } else {
    shutdown_cancel(p);
    discard_queued(p);
    w = wait_until(p, &p->all_key, &p->nwait_all, quiescent, NULL, NULL, deadline);
  }
  if (rep != NULL) fill_report(p, rep);
  return w == 0 ? 0 : WEFT_ETIMEDOUT;
}

void weft_pool_destroy(weft_pool *p, weft_pool_report *final) {
  if (p == NULL) return;
  WEFT__ASSERT(!on_worker_of(p));
  if (atomic_load(&p->state) == 0) (void)weft_pool_shutdown(p, WEFT_POOL_CANCEL, WEFT_FOREVER, NULL);
  for (unsigned i = 0; i < p->nworkers; i++) WEFT__ASSERT(pthread_join(p->workers[i].thread, NULL) == 0);
  discard_queued(p); /* nothing should be left; a broken invariant would otherwise lose jobs silently */
  if (final != NULL) fill_report(p, final);
  weft__jobq_destroy(p->q);
  weft_ctx_end(p->cancel);
  for (size_t i = 0; i < p->nchunks; i++) free(p->chunks[i]);
  free(p->chunks);
  free(p->workers);
  pthread_mutex_destroy(&p->mu);
  free(p);
}

/* ---- stats -------------------------------------------------------------------------------------- */

static int64_t percentile(const uint64_t *h, uint64_t total, double q) {
  if (total == 0) return 0;
  uint64_t want = (uint64_t)(q * (double)total + 0.999999), acc = 0;
  if (want == 0) want = 1;
  for (unsigned b = 0; b < HBUCKETS; b++) {
    acc += h[b];
    if (acc >= want) return b == 0 ? 1 : (int64_t)1 << b;
  }
  return (int64_t)1 << (HBUCKETS - 1);
}

int weft_pool_stats(weft_pool *p, struct weft_pool_stats *st) {
  if (p == NULL || st == NULL) return WEFT_EINVAL;
  weft_pool_report r;
  fill_report(p, &r);
  memset(st, 0, sizeof *st);
  st->submitted = r.submitted;
  st->completed = r.completed;
  st->failed = r.failed;
  st->canceled = r.canceled_before_start + r.canceled_while_running;
  st->queued = weft__jobq_queued(p->q);
  uint64_t hw[HBUCKETS] = {0}, hr[HBUCKETS] = {0};
  for (unsigned i = 0; i < p->nworkers; i++) {
    worker *wk = &p->workers[i];
    st->running += atomic_load(&wk->running);
    for (unsigned b = 0; b < HBUCKETS; b++) {
      hw[b] += atomic_load_explicit(&wk->hist_wait[b], memory_order_relaxed);
      hr[b] += atomic_load_explicit(&wk->hist_run[b], memory_order_relaxed);
    }
  }
  uint64_t n = 0;
  for (unsigned b = 0; b < HBUCKETS; b++) n += hw[b];
  st->samples = n;
  st->wait_p50 = percentile(hw, n, 0.50);
  st->wait_p90 = percentile(hw, n, 0.90);
  st->wait_p99 = percentile(hw, n, 0.99);
  st->run_p50 = percentile(hr, n, 0.50);
  st->run_p90 = percentile(hr, n, 0.90);
  st->run_p99 = percentile(hr, n, 0.99);
  return 0;
}
