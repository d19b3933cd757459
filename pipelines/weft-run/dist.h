/* weft-run across machines: what dist.c (connection, streams, message formats, --submit), worker.c
 * (--worker) and collect.c (--collect) share. Built only with weft's JetStream module.
 *
 * One batch lives in two JetStream streams on one server (or cluster):
 *
 *   STREAM           work-queue retention; subject STREAM.job: one message per job, Nats-Msg-Id
 *                    "j<seq>-<hash of the command line>", payload a job record (below), the --deadline in
 *                    the Weft-Deadline header. Workers share the durable consumer "weft-run".
 *   STREAM_RESULTS   limits retention; subject STREAM_RESULTS.result: one message per job run to its
 *                    end, Nats-Msg-Id "r" + the job's id (so a job run twice, after a crash, stores one
 *                    result); subject STREAM_RESULTS.batch: the batch marker (how many jobs), published
 *                    by --submit after the last job. --collect reads the stream from its start.
 *
 * Both streams keep message ids for WR_DUP_WINDOW: a resubmission (after a crash of --submit, or by
 * mistake) within it stores nothing twice, and neither does a result published again.
 *
 * Records are a text line of decimal fields, then the byte strings whose lengths it gives (commands and
 * outputs may hold any byte):
 *   job     "weft-run-job 1 SEQ TIMEOUT_NS NARGS CMDLEN LEN1 .. LENn\n" CMD ARG1 .. ARGn
 *   result  "weft-run-result 1 SEQ CLASS EXITVAL SIGNAL START RUNTIME RECEIVED OUTTOTAL ERRTOTAL HOSTLEN
 *            CMDLEN NARGS OUTLEN ERRLEN LEN1 .. LENn\n" HOST CMD ARG1 .. ARGn OUT ERR
 *            (OUTLEN < OUTTOTAL: the worker cut the output at WR_RESULT_OUT_MAX)
 *   batch   "weft-run-batch 1 COUNT\n" */
#ifndef WEFT_RUN_DIST_H
#define WEFT_RUN_DIST_H

#include <weft/jetstream.h>

#include "weft-run.h"

#define WR_DUP_WINDOW WEFT_SEC(7 * 24 * 3600)
/* Each of a result's stdout and stderr is cut past this: a result must fit the server's max_payload
 * (1 MiB by default) with its command line. */
#define WR_RESULT_OUT_MAX ((size_t)384 << 10)
#define WR_DURABLE "weft-run"
#define WR_MAX_DELIVER 10

typedef struct wr_dist {
  char server[512];  /* nats://HOST:PORT */
  char stream[101];  /* the jobs' stream */
  char results[112]; /* STREAM_RESULTS */
  char subj_job[128], subj_result[128], subj_batch[128];
  weft_js *js;
} wr_dist;

/* Parses a->o.url, connects, creates both streams if missing. Returns 0 or -1 after a message. */
int wr_dist_open(wr_app *a, wr_dist *d);
void wr_dist_close(wr_dist *d);
/* The NATS error of the last call, for messages. */
const char *wr_dist_err(int rc);

/* A job as one allocation (args and host inline; cmd malloc'd, freed by wr_job_free). NULL: no memory. */
wr_job *wr_dist_job_new(uint64_t seq, size_t nargs, const char *const *args, const size_t *lens, const char *cmd,
                        size_t cmdlen, const char *host, size_t hostlen);
/* Decodes a job record (NULL if malformed or out of memory; *bad says which). */
wr_job *wr_dist_job_decode(const char *p, size_t n, bool *bad);
/* Encodes j's result (host, outputs cut at WR_RESULT_OUT_MAX): malloc'd, *n its size. NULL: no memory. */
char *wr_dist_result_encode(const wr_job *j, const char *host, size_t *n);
/* Decodes a result into a job with its held outputs; *truncated gets the outputs' whole sizes when cut
 * (else 0). NULL if malformed or out of memory. */
wr_job *wr_dist_result_decode(const char *p, size_t n, uint64_t trunc[2], bool *bad);

int wr_worker_main(wr_app *a, wr_dist *d);
int wr_collect_main(wr_app *a, wr_dist *d);

#endif
