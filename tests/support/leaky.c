/* Run by ctest with WEFT_LEAKS=1: forgets to release two contexts; the report at exit must name them. */
#include <weft/weft.h>

int main(void) {
  weft_ctx *kept, *kept_child, *freed;
  weft_ctx_with_timeout(weft_background(), WEFT_SEC(60), &kept);
  weft_ctx_with_cancel(kept, &kept_child);
  weft_ctx_with_cancel(weft_background(), &freed);
  weft_ctx_end(freed);
  return weft_ctx_leak_tracking() ? 0 : 1;
}
