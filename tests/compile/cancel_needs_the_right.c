/* Compiled, not run, by CTest: a callee that holds only a context cannot cancel it. Built as is, this file
 * must compile (the creator cancels through its handle); with -DCALLEE_CANCELS it must not (a job tries to
 * cancel the context it was given). tests/CMakeLists.txt registers both. */
#include <weft/weft.h>

static int job(weft_ctx *ctx, void *arg) {
  (void)arg;
#ifdef CALLEE_CANCELS
  return weft_ctx_cancel(ctx); /* refused by the compiler: a weft_ctx * is not a weft_cancel * */
#else
  return weft_ctx_err(ctx);
#endif
}

int main(void) {
  weft_ctx *ctx;
  weft_cancel *cancel;
  if (weft_ctx_with_cancel(weft_background(), &ctx, &cancel) != 0) return 1;
  int rc = job(ctx, NULL);
  weft_ctx_cancel(cancel);
  weft_ctx_end(cancel);
  return rc;
}
