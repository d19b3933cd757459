/* lib/pipeline/pipeline_impl.h: the pipeline's internal structures (not API).
 *
 * Files, from the top of the layer down (each calls only the ones below it, and the public API):
 *   pipeline_run.c     a run: channels, threads, cleanup
 *   pipeline_worker.c  the worker loops, bursts, the emitter
 *   pipeline_order.c   the reorder window of ordered stages
 *   pipeline_edge.c    bursts over a run's channels: send, receive, discard
 *   pipeline.c         building, options, stats, drain, the first error, destroy
 *   pump.c             weft_chan_merge / weft_chan_tee (beside the rest: uses only the public API) */
#ifndef WEFT_PIPELINE_IMPL_H
#define WEFT_PIPELINE_IMPL_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/assert.h"
#include "common/owned.h"
#include "common/thread.h"
#include "weft/pipeline.h"
#include "weft/pump.h"

/* Automatic burst: at most this many items, and at most PL_BURST_BYTES of items per burst. */
#define PL_BURST_MAX 128
#define PL_BURST_BYTES 8192
#define PL_MIN_SLOTS 2
/* The work a burst should carry for its receiver, in ns: a stage whose items take t ns each is sent bursts
 * of about PL_BURST_TARGET_NS / t items (1..burst), so expensive stages share work among their workers
 * while cheap ones pay the hand-off once per many items. */
#define PL_BURST_TARGET_NS 20000

/* A burst: the element type of every channel inside a pipeline. Items follow the header. The header is
 * 16 bytes so items stay aligned like array elements (channel slots and our buffers are 16-aligned). */
typedef struct pl_hdr {
  uint64_t seq; /* position in the sending edge's order (ordered receivers use it) */
  uint32_t n;   /* items in the burst */
  uint32_t pad;
} pl_hdr;
#define PL_HDR sizeof(pl_hdr)
#define PL_ITEM(buf, isz, i) ((unsigned char *)(buf) + PL_HDR + (size_t)(i) * (isz))

struct pl_stage;
struct pl_run;

/* A connection: the channel into stage `to` (fed by every source, or by the stage before `to`). */
typedef struct pl_edge {
  weft_chan *ch;
  size_t isz;              /* item size */
  size_t kmax;             /* most items per burst */
  size_t bsz;              /* burst bytes: PL_HDR + kmax * isz */
  size_t slots;            /* channel capacity, in bursts */
  weft_discard_fn discard; /* for the items on this edge (NULL: values) */
  void *discard_arg;
  struct pl_stage *to;
  bool serial;              /* one sender at a time, sending in seq order: receivers may trust hdr.seq */
  _Atomic uint64_t send_seq; /* next seq a serial sender stamps */
  _Atomic size_t senders;   /* sending threads still running; the last one closes ch */
} pl_edge;

/* Per-worker counters, written by their worker only (relaxed store of a load: no read-modify-write on a
 * shared line), summed by weft_pipeline_stats(). Padded to a line each. */
typedef struct pl_wstats {
  _Atomic uint64_t in, out, dropped, discarded, errors;
  _Atomic int64_t busy;
  _Atomic int done;
  char pad[WEFT__CACHELINE - 6 * sizeof(uint64_t) - sizeof(int)];
} pl_wstats;

typedef struct pl_worker pl_worker;

/* The reorder window of an ordered stage with several workers (pipeline_order.c). */
typedef struct pl_order {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uint64_t next;         /* the next input seq whose output goes downstream */
  bool flushing;         /* a worker is sending on the stage's behalf */
  size_t window;         /* slots */
  unsigned char *slots;  /* window bursts of the out edge's bsz */
  bool *ready;           /* slot holds the complete output of its seq */
} pl_order;

typedef struct pl_stage {
  struct weft_pipeline *pl;
  size_t index;
  int kind;
  char *name;
  weft_stage_opts o; /* as given (o.name points to `name`) */
  union {
    weft_source_fn source;
    weft_map_fn map;
    weft_filter_fn filter;
    weft_flat_map_fn flat_map;
    weft_batch_fn batch;
    weft_sink_fn sink;
    void (*any)(void);
  } fn;
  void *arg;
  size_t in_size, out_size;  /* item sizes (0: none) */
  weft_discard_fn out_discard;
  void *out_discard_arg;
  pl_edge *in, *out;         /* set when the run wires the stages */
  pl_wstats *ws;             /* o.workers counters, allocated when the stage is added */
  /* Run state. */
  char pad0[WEFT__CACHELINE];
  _Atomic uint32_t hint;     /* the burst size this stage wants on its input (written rarely, read per burst) */
  char pad1[WEFT__CACHELINE - sizeof(uint32_t)];
  _Atomic uint64_t recv_seq; /* ordered stage with a non-serial input: seqs stamped on receipt */
  _Atomic size_t live;       /* workers still running */
  pl_order *order;           /* ordered with workers > 1 */
  pl_worker *workers;
} pl_stage;

struct weft_emitter {
  pl_worker *w;
};

struct pl_worker {
  pl_stage *st;
  struct pl_run *run;
  size_t id;
  pthread_t th;
  bool started;
  unsigned char *inb;   /* the input burst being processed (in edge's bsz) */
  uint32_t in_pos;      /* next unprocessed item of inb (items before it are consumed) */
  uint32_t in_n;        /* items in inb (0: nothing held) */
  unsigned char *outb;  /* the output burst being filled (out edge's bsz) */
  uint32_t target;      /* send outb when it holds this many items */
  uint32_t keep_last;   /* set by emit: if the send fails, outb's last item is the caller's, not discarded */
  uint64_t cur_seq;     /* ordered stage: seq of the input burst in hand */
  unsigned char *group; /* batch stage: items grouped so far */
  size_t gn;
  uint32_t ysend, yrecv; /* yield budgets of this worker's waits on its output and input */
  int64_t est_ns;       /* smoothed ns per item of this worker's function (for the stage's hint) */
  weft_emitter em;
  pl_wstats *ws;
};

/* A run in progress. */
typedef struct pl_run {
  struct weft_pipeline *pl;
  weft_ctx *ctx;       /* derived from the caller's; cancelled with the first error */
  weft_cancel *cancel; /* the right to cancel ctx */
  weft_ctx *src_ctx;   /* sources' context: a child of ctx, cancelled by drain */
  weft_cancel *src_cancel;
  pl_edge *edges;      /* nedges: edge i feeds stage nsrc + i */
  size_t nedges;
  pl_worker *workers;  /* every worker of every stage, sources first */
  size_t nworkers;
  weft_after *waker;   /* after-func on ctx: wakes reorder waiters when the run is cancelled */
  _Atomic int waker_done;
  _Atomic int aborted; /* a worker stopped before the normal end of its input */
} pl_run;

typedef struct weft_pipeline {
  char *name;
  pl_stage **stages;
  size_t nstages, cap;
  size_t nsrc;         /* sources are stages 0..nsrc-1 */
  bool has_sink;
  pthread_mutex_t mu;  /* state, first error, drain vs. run start */
  int state;           /* PL_BUILDING, PL_RUNNING, PL_DONE */
  _Atomic int draining;
  int err;             /* first error of the run */
  long err_stage;
  pl_run *run;         /* while running */
  struct pl_async *async; /* the run weft_pipeline_start() began, until destroy (pipeline_run.c) */
} weft_pipeline;

enum { PL_BUILDING = 0, PL_RUNNING = 1, PL_DONE = 2 };

/* Most times a waiting worker yields its core (retrying between yields) before it blocks in a channel call;
 * each worker learns its own budget up to this (pipeline_run.c). */
#define PL_YIELDS 64
#ifndef PL_SPINS
#define PL_SPINS 64
#endif

/* pipeline_run.c */
int weft__pl_chan_send(weft_ctx *ctx, weft_chan *ch, const void *buf, uint32_t *budget);
int weft__pl_chan_recv(weft_ctx *ctx, weft_chan *ch, void *buf, uint32_t *budget);
void weft__pl_fail(pl_run *run, pl_stage *st, int err);
void weft__pl_discard_items(pl_edge *e, unsigned char *buf, uint32_t from, uint32_t to, pl_wstats *ws);
int weft__pl_send(pl_worker *w, unsigned char *buf);
void weft__pl_async_free(weft_pipeline *p); /* joins the runner thread if needed, frees the state */
/* pipeline_worker.c */
void *weft__pl_worker_main(void *arg);
int weft__pl_flush(pl_worker *w);
/* pipeline_order.c */
int weft__pl_order_new(pl_stage *st, size_t window);
void weft__pl_order_free(pl_stage *st);
int weft__pl_order_deposit(pl_worker *w);
int weft__pl_order_chunk(pl_worker *w);
void weft__pl_order_wake(pl_stage *st);
/* pipeline.c */
size_t weft__pl_kmax(size_t isz, size_t burst, size_t capacity);

#endif
