/* weft/error.h: error codes.
 *
 * Every int-returning weft call returns 0 on success or one of the negative codes below. Codes are
 * generated from one table (WEFT_ERRNO_MAP), as are weft_strerror() and weft_err_name(). Jobs, stages and
 * cancel causes may use any other negative int of their own; weft passes such codes through unchanged. */
#ifndef WEFT_ERROR_H
#define WEFT_ERROR_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* XX(NAME, value, message) */
#define WEFT_ERRNO_MAP(XX)                                                   \
  XX(ECANCELED, -1, "context canceled")                                      \
  XX(EDEADLINE, -2, "context deadline exceeded")                             \
  XX(ECLOSED, -3, "channel closed")                                          \
  XX(EFULL, -4, "full: the operation would block")                           \
  XX(EEMPTY, -5, "empty: the operation would block")                         \
  XX(ESTOPPED, -6, "stopped: no longer accepting work")                      \
  XX(EINVAL, -7, "invalid argument")                                         \
  XX(ENOMEM, -8, "out of memory")                                            \
  XX(ETIMEDOUT, -9, "timed out")                                             \
  XX(EBUSY, -10, "busy: still in use")                                       \
  XX(ESYS, -13, "system call failed")                                        \
  XX(ESTATE, -14, "operation not allowed in the current state")

typedef enum weft_errno {
  WEFT_OK = 0,
#define WEFT__XX(name, val, msg) WEFT_##name = (val),
  WEFT_ERRNO_MAP(WEFT__XX)
#undef WEFT__XX
} weft_errno;
/* Values -11 and -12 belonged to codes that no call returned (0.1's WEFT_ENOENT, WEFT_ESIGNAL); they stay
 * unused, so that the values above never change meaning. */

/* Returns a human-readable message for `err` (static storage, never NULL). 0 gives "success"; a code
 * outside the table gives "unknown error". Thread safety: any thread. */
WEFT_API const char *weft_strerror(int err);

/* Returns the symbolic name of `err` ("WEFT_ECANCELED", "WEFT_OK"; "WEFT_E?" for a code outside the
 * table). Static storage. Thread safety: any thread. */
WEFT_API const char *weft_err_name(int err);

#ifdef __cplusplus
}
#endif
#endif
