/* Run by ctest with WEFT_LEAKS=1: forgets to release two contexts; the report at exit must name them. */
#include <weft/weft.h>

int main(void) {
  weft_ctx *kept, *kept_child, *freed;
  weft_cancel *kept_cancel = NULL;
  weft_cancel *kept_child_cancel = NULL;
  weft_cancel *freed_cancel = NULL;
  weft_ctx_with_timeout(weft_background(), WEFT_SEC(60), &kept, &kept_cancel);
  weft_ctx_with_cancel(kept, &kept_child, &kept_child_cancel);
  weft_ctx_with_cancel(weft_background(), &freed, &freed_cancel);
  weft_ctx_end(freed_cancel);
  return weft_ctx_leak_tracking() ? 0 : 1;
}
