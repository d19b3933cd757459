/* lib/common/common.c: error table, version, time, futex wrappers, panic. */
#include <signal.h>

#include "common/internal.h"
#include "weft/version.h"

const char *weft_strerror(int err) {
  switch (err) {
    case 0: return "success";
#define WEFT__XX(name, val, msg) \
  case (val): return msg;
      WEFT_ERRNO_MAP(WEFT__XX)
#undef WEFT__XX
    default: break;
  }
  if (weft_cause_signal(err) != 0) return "interrupted by a signal";
  return "unknown error";
}

const char *weft_err_name(int err) {
  switch (err) {
    case 0: return "WEFT_OK";
#define WEFT__XX(name, val, msg) \
  case (val): return "WEFT_" #name;
      WEFT_ERRNO_MAP(WEFT__XX)
#undef WEFT__XX
    default: return "WEFT_E?";
  }
}

#define WEFT__STR2(x) #x
#define WEFT__STR(x) WEFT__STR2(x)
const char *weft_version_string(void) {
  return WEFT__STR(WEFT_VERSION_MAJOR) "." WEFT__STR(WEFT_VERSION_MINOR) "." WEFT__STR(WEFT_VERSION_PATCH);
}
unsigned weft_version(void) { return WEFT_VERSION_HEX; }

int64_t weft_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * INT64_C(1000000000) + ts.tv_nsec;
}

int64_t weft_deadline_in(int64_t d) {
  if (d == WEFT_FOREVER) return WEFT_FOREVER;
  int64_t now = weft_now();
  if (d > 0 && now > WEFT_FOREVER - d) return WEFT_FOREVER;
  return now + d;
}

int weft_cause_signal(int cause) {
  /* Range first: -256 - cause overflows for a cause near INT_MAX. */
  if (cause > WEFT_SIGNAL_CAUSE(1) || cause < WEFT_SIGNAL_CAUSE(127)) return 0;
  return -256 - cause;
}

int weft__futex_wait(_Atomic uint32_t *word, uint32_t val, int64_t deadline, uint32_t bitset) {
  struct timespec ts, *tp = NULL;
  if (deadline != WEFT_FOREVER) {
    if (deadline < 0) deadline = 0;
    ts.tv_sec = deadline / INT64_C(1000000000);
    ts.tv_nsec = deadline % INT64_C(1000000000);
    tp = &ts;
  }
  long r = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, val, tp, NULL,
                   bitset);
  return r == 0 ? 0 : -errno;
}

void weft__futex_wake(_Atomic uint32_t *word, int n, uint32_t bitset) {
  syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_BITSET | FUTEX_PRIVATE_FLAG, n, NULL, NULL, bitset);
}

int weft__runtime_thread(pthread_t *th, void *(*fn)(void *), void *arg) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(th, NULL, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc == 0 ? 0 : WEFT_ESYS;
}

void weft__panic(const char *file, int line, const char *what) {
  fprintf(stderr, "weft: internal invariant broken at %s:%d: %s\n", file, line, what);
  abort();
}
