/* Linked into test binaries in TSan builds only.
 *
 * Criterion's sandbox (BoxFort) maps its inheritable arena with MAP_FIXED at
 * 0x200000000000 + (rand_r() & 0x3fffff) * 16 MiB. Under TSan most of that range is not application
 * memory, TSan's mmap interceptor refuses it, and Criterion aborts with "Could not initialize inheritable
 * arena" (Criterion issue #274). Criterion uses rand_r() only for that pick, so this definition, which
 * overrides libc's, steers it into 0x560000000000..0x563f00000000, inside the range TSan keeps for
 * position-independent executables (application memory, 0x550000000000..0x568000000000); BoxFort still
 * checks that the pages are free and picks again when they are not. */
#include <stdlib.h>

int rand_r(unsigned int *seedp) {
  *seedp = *seedp * 1103515245u + 12345u;
  return (int)(0x360000u + ((*seedp >> 16) & 0x3f) * 0x100u);
}
