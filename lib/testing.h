/* lib/testing.h: the runtime's hooks for its own tests (not API). Tests include this header instead of
 * declaring internal functions themselves, so a changed signature breaks their build. */
#ifndef WEFT_TESTING_H
#define WEFT_TESTING_H

#include <stdbool.h>
#include <stddef.h>

size_t weft__timer_threads(void); /* how many timer threads exist (0 or 1) */
size_t weft__timer_armed(void);   /* how many deadlines are armed now */
void weft__leaks_enable(bool on); /* switch leak tracking on or off (normally read from WEFT_LEAKS) */

#endif
