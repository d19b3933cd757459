/* lib/common/assert.h: broken invariants abort (not API).
 *
 * A broken internal invariant (a failed pthread call, a corrupted structure) is a bug: report and abort.
 * Never used for bad input or for running out of memory. Every layer uses it, the pipeline layer too. */
#ifndef WEFT_ASSERT_H
#define WEFT_ASSERT_H

#define WEFT__LIKELY(x) __builtin_expect(!!(x), 1)
#define WEFT__UNLIKELY(x) __builtin_expect(!!(x), 0)

#define WEFT__ASSERT(cond)                                                                          \
  do {                                                                                              \
    if (WEFT__UNLIKELY(!(cond))) weft__panic(__FILE__, __LINE__, #cond);                            \
  } while (0)
_Noreturn void weft__panic(const char *file, int line, const char *what);

#endif
