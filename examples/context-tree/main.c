/* context-tree: a request handled under a deadline, with per-step timeouts, a value carried through
 * the tree, a step cancelled by its parent, and the tree dumped before and after.
 *
 *   context-tree [deadline_ms]     (default 300)
 *
 * Exits 0 when every context behaved as Go's context would and nothing leaked. */
#include <stdio.h>
#include <stdlib.h>
#include <weft/weft.h>

static const char request_id_key; /* a typed key: the address of a unique object */

static int step(weft_ctx *parent, const char *name, int64_t budget, int64_t work) {
  weft_ctx *ctx;
  weft_cancel *cancel;
  int rc = weft_ctx_with_timeout(parent, budget, &ctx, &cancel);
  if (rc != 0) return rc;
  const char *rid = weft_ctx_value(ctx, &request_id_key);
  rc = weft_ctx_sleep(ctx, work); /* the "work": returns early when ctx ends */
  printf("  %-10s request=%s budget=%4lldms work=%4lldms -> %s\n", name, rid, (long long)(budget / 1000000),
         (long long)(work / 1000000), rc == 0 ? "done" : weft_strerror(rc));
  weft_ctx_end(cancel); /* Go's `defer cancel()` */
  return rc;
}

int main(int argc, char **argv) {
  int64_t deadline_ms = argc > 1 ? atoll(argv[1]) : 300;
  weft_ctx *req, *vctx;
  weft_cancel *req_cancel;
  if (weft_ctx_with_timeout(weft_background(), WEFT_MS(deadline_ms), &req, &req_cancel) != 0) return 1;
  if (weft_ctx_with_value(req, &request_id_key, "r-42", NULL, &vctx) != 0) return 1;

  printf("weft %s: a request with a %lld ms deadline\n", weft_version_string(), (long long)deadline_ms);
  weft_ctx *a, *b;
  weft_cancel *a_cancel, *b_cancel; /* value contexts (vctx) have none: they are released, not ended */
  weft_ctx_with_cancel(vctx, &a, &a_cancel);
  weft_ctx_with_timeout(a, WEFT_SEC(5), &b, &b_cancel);
  printf("the tree under the request:\n");
  weft_ctx_dump(req, stdout);

  printf("steps:\n");
  int r1 = step(vctx, "auth", WEFT_MS(100), WEFT_MS(20));                 /* fits its budget */
  int r2 = step(vctx, "inventory", WEFT_MS(50), WEFT_MS(200));            /* its own timeout fires */
  int r3 = step(vctx, "payment", WEFT_SEC(10), WEFT_MS(deadline_ms * 2)); /* the request deadline fires */

  printf("after the request deadline:\n");
  weft_ctx_dump(req, stdout);
  int ok = r1 == 0 && r2 == WEFT_EDEADLINE && r3 == WEFT_EDEADLINE && weft_ctx_err(b) == WEFT_EDEADLINE &&
           weft_ctx_err(req) == WEFT_EDEADLINE;
  weft_ctx_end(b_cancel);
  weft_ctx_end(a_cancel);
  weft_ctx_release(vctx);
  weft_ctx_end(req_cancel);
  printf("live contexts at the end: %zu\n", weft_ctx_live_count());
  ok = ok && weft_ctx_live_count() == 0;
  printf("%s\n", ok ? "OK: every context ended as expected" : "UNEXPECTED");
  return ok ? 0 : 1;
}
