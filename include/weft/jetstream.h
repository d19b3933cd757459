/* weft/jetstream.h: jobs from NATS JetStream under weft contexts (optional module, library weft-jetstream,
 * CMake target weft::jetstream; built when pkg-config finds libnats).
 *
 * A JetStream durable pull consumer is a shared work queue: every worker process (on any machine) that
 * opens the same durable consumer takes messages from it, and the server hands each message to one worker
 * at a time. This module maps that model onto weft's:
 *
 *   - A fetched message is a job with a context (weft_js_msg_ctx()): a child of the context given to the
 *     fetch (the run's), whose deadline is the earliest of the run's, the one carried in the message's
 *     `Weft-Deadline` header, and the consumer's per-job timeout.
 *   - AckWait is a lease. One lease-keeper thread per consumer sends `InProgress` for every fetched
 *     message whose context is alive, every `heartbeat` (AckWait/2 by default), so the server never
 *     redelivers a job that is still running. A message whose context is done (past its deadline,
 *     cancelled) is no longer kept: if its job hangs, the lease lapses and the server redelivers it.
 *   - Every fetched message ends with exactly one outcome (weft_js_finish()), counted in a report whose
 *     classes add up to the number fetched:
 *       completed  the job succeeded: Ack (confirmed by the server unless ack_async)
 *       retried    the job failed with deliveries left: Nak with a delay of
 *                  backoff_base * 2^(delivered-1), at most backoff_max
 *       dead       the job failed on its last allowed delivery (MaxDeliver: a poison message), or returned
 *                  WEFT_JS_EPERMANENT: Term; the server will not deliver it again
 *       expired    the deadline of its header passed: Term (nobody should run it any more)
 *       returned   handed back unrun or unfinished (drain, cancel, discarded by a pipeline, the run's own
 *                  deadline): Nak without delay, so another worker takes it at once
 *       lapsed     it ended after its lease had lapsed (its context ended, its job hung, and more than
 *                  3/4 of AckWait passed since the last InProgress the server took): nothing is sent,
 *                  since an ack that late could settle another worker's delivery (nats-server#4786);
 *                  the server redelivers it
 *       unsent     the action could not be sent or (for a confirmed Ack) not confirmed: the connection was
 *                  down, or the server did not answer in time; the server redelivers it (unless an
 *                  unconfirmed Ack did reach it: then the job completed once, without the count)
 *     `redelivered` counts fetched messages the server had delivered before (NumDelivered > 1).
 *   - Identity and deadline travel: weft_js_publish() sets `Nats-Msg-Id` (the server drops a second
 *     message with the same id within the stream's duplicate window, so resubmitting is idempotent) and
 *     copies the context's deadline into the `Weft-Deadline` header (Unix time in ns, decimal: clocks of
 *     different machines agree on it to within their NTP error; each side converts it to and from its own
 *     CLOCK_MONOTONIC).
 *   - Connection loss: the client reconnects by itself (max_reconnect) and nothing here cancels the run's
 *     context for a disconnect. Fetches fail while it is down and are retried after `fetch_wait`
 *     (counted in fetch_errors); actions that cannot be sent are counted (unsent) and the server
 *     redelivers those messages. Publishes made while the connection is down fail (no reconnect buffer),
 *     so nothing is sent late behind the caller's back.
 *
 * Guarantee, as JetStream gives it: at-least-once. A job can run twice (its worker died, its lease lapsed,
 * an ack was lost); its completion is recorded once per delivery that completed. Make jobs idempotent, or
 * key their effects by weft_js_msg_id(). With one worker per message at a time and leases kept alive, a
 * second run happens only after a failure.
 *
 * Direct use (a worker loop):
 *
 *     weft_js *js;  weft_js_consumer *c;  weft_js_msg *m;
 *     weft_js_opts jo = WEFT_JS_OPTS_INIT;  jo.url = "nats://127.0.0.1:4222";
 *     weft_js_connect(&jo, &js);
 *     weft_js_consumer_opts co = WEFT_JS_CONSUMER_OPTS_INIT;
 *     co.stream = "JOBS";  co.durable = "workers";  co.ack_wait = WEFT_SEC(30);  co.max_deliver = 5;
 *     weft_js_consumer_open(js, &co, &c);
 *     size_t n;
 *     while (weft_js_fetch(c, run_ctx, 1, WEFT_FOREVER, &m, &n) == 0) {
 *       int rc = run_job(weft_js_msg_ctx(m), weft_js_msg_data(m, NULL));
 *       weft_js_finish(m, rc, NULL);                   // Ack, Nak, Term or nothing: exactly one
 *     }
 *     weft_js_consumer_close(c);  weft_js_close(js);
 *
 * Pipeline use: weft_js_pipeline_source() (items are weft_js_msg *), weft_js_pipeline_jobs() (a stage
 * running a job function per message), then weft_js_pipeline_finish() or weft_js_pipeline_publish() as
 * the sink. Backpressure: a consumer holds at most `max_in_flight` messages at once (fetched and not yet
 * finished), so the fetch size is the room left and memory stays bounded whatever the stream holds.
 *
 * Errors: the WEFT_E* codes, and WEFT_JS_ENATS when the NATS client or server refused a call (no
 * connection, stream missing, bad configuration); weft_js_last_error() gives the NATS text for the
 * calling thread. Thread safety is stated per call. */
#ifndef WEFT_JETSTREAM_H
#define WEFT_JETSTREAM_H

#include "common.h"
#include "ctx.h"
#include "error.h"
#include "pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The NATS client or server refused the call; weft_js_last_error() says why. */
#define WEFT_JS_ENATS (-1024)
/* A job's result meaning "failed for good, do not retry": weft_js_finish() Terms the message (dead). */
#define WEFT_JS_EPERMANENT (-1025)

/* The header carrying a job's deadline (Unix time, ns, decimal). */
#define WEFT_JS_DEADLINE_HEADER "Weft-Deadline"

/* Returns a message for err: the module's codes, else weft_strerror(err). Static. Thread safety: any. */
WEFT_API const char *weft_js_strerror(int err);
/* The text of the last NATS error on the calling thread (static per thread; "" when none). */
WEFT_API const char *weft_js_last_error(void);

/* ---- connections ------------------------------------------------------------------------------------ */

typedef struct weft_js weft_js;

typedef struct weft_js_opts {
  const char *url;       /* required: "nats://HOST:PORT"; several separated by commas */
  const char *name;      /* connection name shown by the server; NULL: "weft" */
  int64_t timeout;       /* connect, JetStream API calls, publish and ack confirmations (ns) */
  int64_t reconnect_wait; /* between reconnect attempts (ns) */
  int max_reconnect;     /* reconnect attempts before the connection closes for good; -1: no limit */
} weft_js_opts;
#define WEFT_JS_OPTS_INIT {NULL, NULL, WEFT_SEC(5), WEFT_MS(250), -1}

/* Connects to the server and opens its JetStream context. Returns 0 with *out set; WEFT_EINVAL (NULL,
 * no url, timeout <= 0); WEFT_ENOMEM; WEFT_JS_ENATS (no server answered, bad url). The caller owns *out
 * and frees it with weft_js_close(). Thread safety: any thread. */
WEFT_API int weft_js_connect(const weft_js_opts *opts, weft_js **out);
/* Closes the connection and frees it. Every consumer opened on it must be closed first (else WEFT_EBUSY,
 * nothing done). Returns 0, WEFT_EINVAL for NULL. Thread safety: no other call on js during or after. */
WEFT_API int weft_js_close(weft_js *js);
/* true while the connection is up (false while reconnecting or closed). Thread safety: any thread. */
WEFT_API bool weft_js_connected(weft_js *js);

typedef struct weft_js_conn_stats {
  uint64_t disconnects; /* times the connection was lost */
  uint64_t reconnects;  /* times it came back */
} weft_js_conn_stats;
/* Fills *out. Returns 0, WEFT_EINVAL. Thread safety: any thread. */
WEFT_API int weft_js_conn_stats_get(weft_js *js, weft_js_conn_stats *out);

/* ---- streams ---------------------------------------------------------------------------------------- */

typedef struct weft_js_stream_opts {
  const char *name;         /* required; no '.', '*', '>' or space */
  const char *subject;      /* the subject (wildcards allowed) the stream stores; NULL: "<name>.>" */
  bool memory;              /* memory storage; default file storage (survives a server restart) */
  bool work_queue;          /* work-queue retention: a message is removed once acknowledged */
  int replicas;             /* 1 on a single server; 3 in a cluster for acknowledged data to survive a
                             * machine loss */
  int64_t duplicate_window; /* how long a Nats-Msg-Id is remembered (ns); 0: server default (2 min) */
} weft_js_stream_opts;
#define WEFT_JS_STREAM_OPTS_INIT {NULL, NULL, false, false, 1, 0}

/* Creates the stream if it does not exist; an existing stream is left as it is. Returns 0; WEFT_EINVAL;
 * WEFT_ENOMEM; WEFT_JS_ENATS (refused: e.g. its subject overlaps another stream's). Thread safety: any. */
WEFT_API int weft_js_stream_ensure(weft_js *js, const weft_js_stream_opts *opts);
/* Deletes a stream and its consumers. Returns 0; WEFT_EINVAL; WEFT_JS_ENATS (e.g. not found). */
WEFT_API int weft_js_stream_delete(weft_js *js, const char *name);

/* ---- publishing ------------------------------------------------------------------------------------- */

/* Publishes `len` bytes to `subject` and waits for the stream's acknowledgement (the message is stored
 * once this returns 0). `id` (may be NULL) becomes Nats-Msg-Id: within the duplicate window a second
 * publish with the same id stores nothing and sets *duplicate (may be NULL). ctx's deadline, if it has
 * one, goes into the Weft-Deadline header, and bounds the wait for the acknowledgement together with
 * the connection's timeout. Returns 0; WEFT_EINVAL (js, subject NULL; data NULL with len > 0; len over
 * INT_MAX); ctx's error if it is already done; WEFT_ENOMEM; WEFT_ETIMEDOUT (no acknowledgement in time:
 * the message may or may not be stored; publishing again with the same id is safe); WEFT_JS_ENATS (no
 * stream for the subject, connection down). Thread safety: any thread, concurrently. */
WEFT_API int weft_js_publish(weft_js *js, weft_ctx *ctx, const char *subject, const void *data, size_t len,
                             const char *id, bool *duplicate);

/* As weft_js_publish(), adding `nheaders` headers of the caller's: headers[2*i] is a name (not
 * Nats-Msg-Id nor Weft-Deadline, which the call sets: WEFT_EINVAL), headers[2*i+1] its value; read back
 * with weft_js_msg_header(). For what a job needs besides its payload (a per-job timeout, a retry policy, a
 * submitter's name). nheaders at most 64 (WEFT_EINVAL). */
WEFT_API int weft_js_publish_with_headers(weft_js *js, weft_ctx *ctx, const char *subject, const void *data,
                                          size_t len, const char *id, const char *const *headers,
                                          size_t nheaders, bool *duplicate);

/* ---- consumers -------------------------------------------------------------------------------------- */

typedef struct weft_js_consumer weft_js_consumer;

typedef struct weft_js_consumer_opts {
  const char *stream;       /* required: the stream */
  const char *durable;      /* required: the durable consumer's name, the same on every worker */
  const char *filter;       /* only subjects matching this; NULL: all of the stream */
  int64_t ack_wait;         /* the lease (ns): a message not acked, nor kept alive, within it is redelivered */
  int64_t max_deliver;      /* deliveries of one message before the server gives up; -1: no limit */
  int64_t max_ack_pending;  /* messages outstanding over all workers of the consumer; -1: server default */
  size_t max_in_flight;     /* messages this worker holds at once (fetched, not finished); 1 to 65536 */
  int64_t heartbeat;        /* InProgress period for live jobs (ns); 0: ack_wait / 2 */
  int64_t fetch_wait;       /* longest single pull request (ns): a fetch notices its context's end and
                             * retries after a connection loss within this */
  int64_t job_timeout;      /* a per-job timeout on this worker (ns; WEFT_FOREVER: none). A job that runs
                             * out of it has failed (retried, like any failure) */
  int64_t backoff_base;     /* delay before a failed job is redelivered (ns), doubled per delivery */
  int64_t backoff_max;      /* at most this (ns) */
  bool ack_async;           /* false: every Ack waits for the server's confirmation (an unconfirmed Ack
                             * is counted unsent); true: Acks are sent without waiting */
} weft_js_consumer_opts;
#define WEFT_JS_CONSUMER_OPTS_INIT                                                                         \
  {NULL, NULL, NULL, WEFT_SEC(30), -1, -1, 64, 0, WEFT_MS(200), WEFT_FOREVER, WEFT_MS(100), WEFT_SEC(60), \
   false}

/* Opens the durable pull consumer `durable` on `stream`, creating it with these settings if it does not
 * exist (an existing one keeps its settings: its AckWait and MaxDeliver are read back and used), and
 * starts this consumer's lease-keeper thread. The consumer (the server's) outlives weft_js_consumer_close()
 * and is shared by every worker that opens it by name. Returns 0 with *out set; WEFT_EINVAL (NULL, a
 * missing name, a value out of range, heartbeat >= ack_wait); WEFT_ENOMEM; WEFT_ESYS (thread);
 * WEFT_JS_ENATS (no such stream, refused). Thread safety: any thread. */
WEFT_API int weft_js_consumer_open(weft_js *js, const weft_js_consumer_opts *opts, weft_js_consumer **out);
/* Stops the lease keeper and frees the consumer (not the server's consumer). Every message fetched from
 * it must have been finished (else WEFT_EBUSY, nothing done). Returns 0, WEFT_EINVAL. Thread safety: no
 * other call on c during or after it. */
WEFT_API int weft_js_consumer_close(weft_js_consumer *c);

typedef struct weft_js_report {
  uint64_t fetched;            /* messages fetched; = the seven classes below + in_flight */
  uint64_t completed;          /* Ack */
  uint64_t retried;            /* Nak with a delay */
  uint64_t dead;               /* Term: MaxDeliver reached, or WEFT_JS_EPERMANENT */
  uint64_t expired;            /* Term: the header's deadline passed */
  uint64_t returned;           /* Nak without delay: handed back */
  uint64_t lapsed;             /* nothing sent: the lease had lapsed */
  uint64_t unsent;             /* the action failed to go out or to be confirmed */
  uint64_t in_flight;          /* fetched and not finished yet */
  uint64_t redelivered;        /* of those fetched, delivered before (NumDelivered > 1) */
  uint64_t heartbeats;         /* InProgress sent */
  uint64_t heartbeat_failures; /* InProgress that could not be sent */
  uint64_t fetch_errors;       /* pull requests that failed (connection down, ...) and were retried */
} weft_js_report;

/* Fills *out (a consistent snapshot: taken under the consumer's lock). Returns 0, WEFT_EINVAL.
 * Thread safety: any thread, at any time between open and close. */
WEFT_API int weft_js_consumer_report(weft_js_consumer *c, weft_js_report *out);

/* The server's view of the consumer, over all its workers. */
typedef struct weft_js_consumer_state {
  uint64_t pending;     /* messages not delivered yet */
  uint64_t ack_pending; /* delivered and neither acked nor terminated */
  uint64_t redelivered; /* of those, delivered more than once */
  uint64_t ack_floor;   /* stream sequence below which every message is settled */
} weft_js_consumer_state;

/* Asks the server (one request). Returns 0; WEFT_EINVAL; WEFT_ENOMEM; WEFT_ETIMEDOUT; WEFT_JS_ENATS.
 * Thread safety: any thread. */
WEFT_API int weft_js_consumer_state_get(weft_js_consumer *c, weft_js_consumer_state *out);

/* ---- messages (jobs) -------------------------------------------------------------------------------- */

typedef struct weft_js_msg weft_js_msg;

typedef enum weft_js_outcome {
  WEFT_JS_COMPLETED = 1,
  WEFT_JS_RETRIED = 2,
  WEFT_JS_DEAD = 3,
  WEFT_JS_EXPIRED = 4,
  WEFT_JS_RETURNED = 5,
  WEFT_JS_LAPSED = 6,
  WEFT_JS_UNSENT = 7
} weft_js_outcome;
/* "completed", "retried", ...; "?" for another value. Static. */
WEFT_API const char *weft_js_outcome_name(weft_js_outcome o);

/* Fetches up to `max` messages (1..max_in_flight) into out[0..*n), waiting at most `wait` ns
 * (WEFT_FOREVER: until ctx ends) for the first one, and while this worker already holds max_in_flight
 * messages, for room (backpressure). Each message gets its context as a child of ctx (see the top), and
 * its lease is kept from now on. Returns 0 with 1 <= *n <= max; WEFT_ETIMEDOUT (*n = 0) when `wait`
 * passed first; ctx's error (WEFT_ECANCELED, WEFT_EDEADLINE) once ctx is done; WEFT_EINVAL; WEFT_ENOMEM
 * (no message is lost: those received are handed back); WEFT_JS_ENATS when the connection is closed for
 * good. A connection loss is not an error here: the fetch is retried until `wait` or ctx ends. Each
 * message returned must be passed to weft_js_finish() exactly once. Thread safety: any thread; fetches
 * on one consumer from several threads take turns. */
WEFT_API int weft_js_fetch(weft_js_consumer *c, weft_ctx *ctx, size_t max, int64_t wait, weft_js_msg **out,
                           size_t *n);

/* Ends the message: takes it out of lease keeping, chooses the action from `result` and the state of its
 * context, sends it, counts the outcome, stores it in *outcome (may be NULL) and frees m (and its
 * context: a job must not use it afterwards). `result`:
 *   0                   success: Ack (completed), unless its lease lapsed
 *   WEFT_ESTOPPED       not run, or abandoned: Nak without delay (returned)
 *   WEFT_JS_EPERMANENT  failed for good: Term (dead)
 *   any other code      the job failed; what happens depends on why: its header's deadline passed ->
 *                       Term (expired); its context was cancelled, or the run's deadline passed ->
 *                       Nak without delay (returned); else (its own error, or job_timeout) -> Nak with
 *                       backoff (retried), or Term on its last allowed delivery (dead)
 * If the lease lapsed (see the top), nothing is sent (lapsed); if sending fails, unsent. Returns 0 when
 * the action went out (confirmed, for a synchronous Ack) or none was due (lapsed); WEFT_JS_ENATS when it
 * could not be sent or confirmed (unsent: m is freed all the same and the server redelivers it);
 * WEFT_EINVAL for NULL (nothing done). Blocks at most the connection's timeout (a confirmed Ack).
 * Thread safety: any thread, once per message. */
WEFT_API int weft_js_finish(weft_js_msg *m, int result, weft_js_outcome *outcome);

/* The job's context (see the top). Valid until weft_js_finish(m); retain it to keep it longer. */
WEFT_API weft_ctx *weft_js_msg_ctx(const weft_js_msg *m);
/* The payload (not NUL-terminated unless the publisher sent a NUL); its size in *len (may be NULL). */
WEFT_API const void *weft_js_msg_data(const weft_js_msg *m, size_t *len);
WEFT_API const char *weft_js_msg_subject(const weft_js_msg *m);
/* The job's identity: its Nats-Msg-Id, or "<stream>:<stream sequence>" when it was published without. */
WEFT_API const char *weft_js_msg_id(const weft_js_msg *m);
/* The value of header `key`, or NULL. */
WEFT_API const char *weft_js_msg_header(const weft_js_msg *m, const char *key);
WEFT_API uint64_t weft_js_msg_seq(const weft_js_msg *m);       /* stream sequence */
WEFT_API uint64_t weft_js_msg_delivered(const weft_js_msg *m); /* 1 for a first delivery */
/* The header's deadline on this machine's CLOCK_MONOTONIC, or WEFT_FOREVER when it carries none. */
WEFT_API int64_t weft_js_msg_deadline(const weft_js_msg *m);
/* A result and an output kept with the message for a later stage (weft_js_pipeline_jobs() sets them;
 * the finish and publish sinks read them). set_output copies `len` bytes (WEFT_ENOMEM, WEFT_EINVAL). */
WEFT_API void weft_js_msg_set_result(weft_js_msg *m, int result);
WEFT_API int weft_js_msg_result(const weft_js_msg *m);
WEFT_API int weft_js_msg_set_output(weft_js_msg *m, const void *data, size_t len);
/* Thread safety of the accessors: any thread holding m (a message is used by one thread at a time). */

/* ---- pipeline stages (items are weft_js_msg *, pointer items) ---------------------------------------- */

/* Adds a source that fetches from c while the source's context lives (until the run ends, or a drain)
 * and emits each message as an item (the stage's item_size is sizeof(weft_js_msg *); its discard hook
 * hands a message back, Nak without delay, whenever the pipeline drops one). Messages' contexts are
 * children of `jobs_ctx` (pass the context given to weft_pipeline_run(), so cancelling the run cancels
 * them while a drain lets them finish; NULL: weft_background()). It fetches as many as the consumer's
 * max_in_flight leaves room for, so set max_in_flight to cover the stages' workers and buffers. opts may
 * be NULL; its item_size and discard are set here. Returns as weft_pipeline_source(). c and jobs_ctx
 * must outlive the run. Thread safety: the building thread. */
WEFT_API int weft_js_pipeline_source(weft_pipeline *p, const weft_stage_opts *opts, weft_js_consumer *c,
                                     weft_ctx *jobs_ctx);

/* A job function: runs the job of m under ctx (done when the run or the message's context is done) and
 * returns its result (see weft_js_finish()). It may set an output (weft_js_msg_set_output()). It must not
 * finish m. */
typedef int (*weft_js_job_fn)(weft_ctx *ctx, weft_js_msg *m, void *arg);

/* What weft_js_pipeline_jobs() runs: the caller's, valid until the run returns. */
typedef struct weft_js_job {
  weft_js_job_fn fn;
  void *arg;
} weft_js_job;

/* Adds a map stage calling job->fn for each message (opts->workers of them at once) and recording its
 * result in the message, which goes on to the next stage. The stage never fails the run for a job's
 * error. Returns as weft_pipeline_map() (WEFT_EINVAL for a NULL job or fn). Thread safety: the building
 * thread. */
WEFT_API int weft_js_pipeline_jobs(weft_pipeline *p, const weft_stage_opts *opts, const weft_js_job *job);

/* Adds the sink finishing each message with its recorded result (weft_js_finish()). Returns as
 * weft_pipeline_sink(). */
WEFT_API int weft_js_pipeline_finish(weft_pipeline *p, const weft_stage_opts *opts);

/* Where weft_js_pipeline_publish() sends results: the caller's, valid until the run returns. */
typedef struct weft_js_publish_to {
  weft_js *js;         /* the connection to publish through */
  const char *subject; /* the next stream's subject */
} weft_js_publish_to;

/* Adds a sink that, for each message whose result is 0, publishes its output (or, if none was set, its
 * payload) to to->subject, with the message's identity as Nats-Msg-Id and its context's deadline in the
 * header, and then finishes it: completed once the next stream has stored it; a failed publish finishes
 * it as a failure (retried: it runs again, and the identity keeps the next stream free of duplicates).
 * Messages whose result is not 0 are finished with it, unpublished. Returns as weft_pipeline_sink()
 * (WEFT_EINVAL for a NULL to, js or subject). Thread safety: the building thread. */
WEFT_API int weft_js_pipeline_publish(weft_pipeline *p, const weft_stage_opts *opts,
                                      const weft_js_publish_to *to);

#ifdef __cplusplus
}
#endif
#endif
