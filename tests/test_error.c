#include <limits.h>
#include <string.h>

#include "weft_test.h"

WEFT_TEST(error, strerror_names_every_code) {
  cr_assert_str_eq(weft_strerror(0), "success");
  cr_assert_str_eq(weft_strerror(WEFT_ECANCELED), "context canceled");
  cr_assert_str_eq(weft_strerror(WEFT_EDEADLINE), "context deadline exceeded");
  cr_assert_str_eq(weft_err_name(WEFT_ECLOSED), "WEFT_ECLOSED");
  cr_assert_str_eq(weft_err_name(0), "WEFT_OK");
  static const int codes[] = {
#define XX(name, val, msg) WEFT_##name,
      WEFT_ERRNO_MAP(XX)
#undef XX
  };
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    int e = codes[i];
    cr_assert_lt(e, 0);
    cr_assert_str_neq(weft_strerror(e), "unknown error", "code %d has no message", e);
    cr_assert(strncmp(weft_err_name(e), "WEFT_E", 6) == 0);
    for (size_t j = 0; j < i; j++) cr_assert_neq(codes[j], e, "two names for code %d", e);
  }
  cr_assert_str_eq(weft_err_name(-11), "WEFT_E?", "the value of 0.1's WEFT_ENOENT stays unused");
  cr_assert_str_eq(weft_err_name(-12), "WEFT_E?", "the value of 0.1's WEFT_ESIGNAL stays unused");
  cr_assert_str_eq(weft_strerror(-9999), "unknown error");
  cr_assert_str_eq(weft_strerror(WEFT_SIGNAL_CAUSE(15)), "interrupted by a signal");
}

WEFT_TEST(error, version_matches_header) {
  cr_assert_eq(weft_version(), (unsigned)WEFT_VERSION_HEX);
  char buf[32];
  snprintf(buf, sizeof buf, "%d.%d.%d", WEFT_VERSION_MAJOR, WEFT_VERSION_MINOR, WEFT_VERSION_PATCH);
  cr_assert_str_eq(weft_version_string(), buf);
}

WEFT_TEST(error, time_helpers) {
  cr_assert_eq(WEFT_MS(250), 250000000);
  cr_assert_eq(weft_deadline_in(WEFT_FOREVER), WEFT_FOREVER);
  int64_t a = weft_now();
  int64_t d = weft_deadline_in(WEFT_SEC(1));
  cr_assert(d >= a + WEFT_SEC(1));
  int64_t past = weft_deadline_in(-WEFT_MS(5));
  cr_assert(past < weft_now());
  cr_assert_eq(weft_deadline_in(INT64_MAX - 1), WEFT_FOREVER, "saturates instead of overflowing");
}

WEFT_TEST(error, extreme_codes_have_no_message) {
  /* Any int is accepted, without overflow (UBSan's signed-overflow check runs in the sanitizer build). */
  cr_assert_str_eq(weft_strerror(INT_MAX), "unknown error");
  cr_assert_str_eq(weft_strerror(INT_MIN), "unknown error");
  cr_assert_str_eq(weft_err_name(INT_MAX), "WEFT_E?");
  cr_assert_str_eq(weft_err_name(INT_MIN), "WEFT_E?");
  cr_assert_eq(weft_cause_signal(INT_MAX), 0);
  cr_assert_eq(weft_cause_signal(INT_MIN), 0);
  cr_assert_eq(weft_cause_signal(WEFT_SIGNAL_CAUSE(1)), 1);
  cr_assert_eq(weft_cause_signal(WEFT_SIGNAL_CAUSE(127)), 127);
  cr_assert_eq(weft_cause_signal(WEFT_SIGNAL_CAUSE(128)), 0);
  cr_assert_eq(weft_cause_signal(-256), 0);
}
