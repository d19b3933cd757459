/* Linked into test binaries in TSan builds only.
 *
 * Criterion's sandbox maps its inheritable arena at an address derived from rand_r(); under TSan that
 * address can fall into ranges TSan reserves, and Criterion aborts with "Could not initialize inheritable
 * arena" (Criterion issue #274). Criterion only uses rand_r() for that pick, so this definition, which
 * overrides libc's, returns small values that keep the arena in low memory TSan leaves free. */
#include <stdlib.h>

int rand_r(unsigned int *seedp) {
  *seedp = *seedp * 1103515245u + 12345u;
  return (int)((*seedp >> 16) & 0x3ff);
}
