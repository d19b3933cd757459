/* Linked into test binaries in TSan builds only.
 *
 * Criterion's sandbox (BoxFort) maps its inheritable arena with mmap(MAP_FIXED) at
 * 0x200000000000 + r * 16 MiB, r = rand_r() & 0x3fffff, after checking with mincore() that the pages are
 * free. Under the TSan runtime of this toolchain (gcc 12, x86-64) almost all of that window is reserved by
 * TSan (shadow, meta, and PROT_NONE guards), so Criterion aborts with "Could not initialize inheritable
 * arena" (Criterion issue #274). The one part TSan leaves to the program is its "mid app" range
 * [0x550000000000, 0x568000000000), where PIE executables are loaded; its top end lies above any ASLR
 * placement of the executable and its brk heap (PIE base < 0x565555554000 with 28 random bits).
 *
 * This definition, which overrides libc's, makes r land in [0x366000, 0x366400), i.e. the arena in
 * [0x566000000000, 0x566400000000): free, and application memory as far as TSan's mmap interceptor is
 * concerned. Criterion uses rand_r() for nothing else. */
#include <stdlib.h>

int rand_r(unsigned int *seedp) {
  *seedp = *seedp * 1103515245u + 12345u;
  return 0x366000 + (int)((*seedp >> 16) & 0x3ff);
}
