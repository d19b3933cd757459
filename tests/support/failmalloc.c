/* tests/support/failmalloc.c: an LD_PRELOAD shim that fails one allocation made inside libweft.
 *
 * scripts/failmalloc.sh preloads it into test binaries linked against a shared libweft (the *_fm targets
 * of tests/CMakeLists.txt). An allocation is "inside libweft" when the caller's address (the return
 * address of malloc, calloc, ...) lies in a mapping of the object whose path contains WEFT_FM_LIB
 * ("libweft" by default), so Criterion's and the test's own allocations are never failed.
 *
 *   WEFT_FM_FAIL=N      fail the N-th allocation inside libweft (1-based); 0 or unset: fail none
 *   WEFT_FM_REPORT=path at exit, append one line to path:
 *                         allocs=<allocations inside libweft> failed=<offset of the failed site or ->
 *                         live=<libweft allocations not freed> sites=<offset,offset,...>
 *
 * Offsets are relative to the library's load address, so they are the same in every run and
 * `addr2line -f -e libweft_fm.so <offset>` names the site (minus one byte: it is the return address).
 * Built without sanitizers: preloaded ahead of ASan's runtime (ASAN_OPTIONS=verify_asan_link_order=0), it
 * forwards to ASan's allocator, so LeakSanitizer and ASan still see every block. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_memalign)(size_t, size_t);
static void (*real_free)(void *);

static _Atomic int resolving; /* dlsym may allocate: serve it from a static arena meanwhile */
static _Alignas(16) char boot[8192];
static size_t boot_used;

static void resolve(void) {
  if (real_free) return;
  atomic_store(&resolving, 1);
  real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
  real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
  real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
  real_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
  real_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
  real_memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
  real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
  atomic_store(&resolving, 0);
}

static void *boot_alloc(size_t n) {
  size_t at = (boot_used + 15) & ~(size_t)15;
  if (at + n > sizeof boot) return NULL;
  boot_used = at + n;
  memset(boot + at, 0, n);
  return boot + at;
}
static int is_boot(const void *p) { return (const char *)p >= boot && (const char *)p < boot + sizeof boot; }

/* ---- where libweft is */
static const char *lib_name;
static uintptr_t lib_base, lib_lo, lib_hi;
static _Atomic int lib_state; /* 0: not looked for, 1: found, 2: absent */
static _Atomic int in_lookup;

static int find_cb(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  (void)data;
  if (info->dlpi_name == NULL || strstr(info->dlpi_name, lib_name) == NULL) return 0;
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
    uintptr_t a = info->dlpi_addr + ph->p_vaddr;
    if (a < lo) lo = a;
    if (a + ph->p_memsz > hi) hi = a + ph->p_memsz;
  }
  if (hi == 0) return 0;
  lib_base = info->dlpi_addr;
  lib_lo = lo;
  lib_hi = hi;
  return 1;
}

static void lookup(int final) {
  int expect = 0;
  if (!atomic_compare_exchange_strong(&in_lookup, &expect, 1)) return;
  if (atomic_load(&lib_state) == 0) {
    if (lib_name == NULL) {
      lib_name = getenv("WEFT_FM_LIB");
      if (lib_name == NULL || *lib_name == '\0') lib_name = "libweft";
    }
    if (dl_iterate_phdr(find_cb, NULL))
      atomic_store(&lib_state, 1);
    else if (final)
      atomic_store(&lib_state, 2);
  }
  atomic_store(&in_lookup, 0);
}

static int inside(const void *ra) {
  int s = atomic_load(&lib_state);
  if (s == 0) {
    lookup(0);
    s = atomic_load(&lib_state);
  }
  return s == 1 && (uintptr_t)ra >= lib_lo && (uintptr_t)ra < lib_hi;
}

/* ---- counting, sites, and the live set of libweft's blocks */
static long fail_at;
static _Atomic long allocs;
static _Atomic uintptr_t failed_site;
#define MAX_SITES 512
static _Atomic uintptr_t sites[MAX_SITES];

static void note_site(uintptr_t off) {
  for (int i = 0; i < MAX_SITES; i++) {
    uintptr_t cur = atomic_load(&sites[i]);
    if (cur == off) return;
    if (cur == 0) {
      uintptr_t zero = 0;
      if (atomic_compare_exchange_strong(&sites[i], &zero, off) || zero == off) return;
    }
  }
}

/* Open addressing with tombstones, under a spin lock; sized for the module tests (the script does not run
 * the stress tests). When full, blocks are no longer tracked and the live count is marked unknown. */
#define LIVE_SLOTS (1u << 20)
#define TOMB ((uintptr_t)1)
static uintptr_t *live_tab;
static atomic_flag live_lock = ATOMIC_FLAG_INIT;
static long live_n, live_used;
static int live_overflow;

static size_t slot_of(uintptr_t p) { return (size_t)((p >> 4) * 0x9E3779B97F4A7C15ull >> 44) & (LIVE_SLOTS - 1); }

static void live_add(void *p) {
  if (p == NULL) return;
  while (atomic_flag_test_and_set_explicit(&live_lock, memory_order_acquire)) {
  }
  if (live_tab == NULL) {
    void *m = mmap(NULL, LIVE_SLOTS * sizeof(uintptr_t), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    live_tab = m == MAP_FAILED ? NULL : m;
  }
  if (live_tab == NULL || live_used >= (long)(LIVE_SLOTS / 2)) {
    live_overflow = 1;
  } else {
    size_t i = slot_of((uintptr_t)p);
    while (live_tab[i] != 0 && live_tab[i] != TOMB) i = (i + 1) & (LIVE_SLOTS - 1);
    if (live_tab[i] == 0) live_used++;
    live_tab[i] = (uintptr_t)p;
    live_n++;
  }
  atomic_flag_clear_explicit(&live_lock, memory_order_release);
}

static void live_del(void *p) {
  if (p == NULL || live_tab == NULL) return;
  while (atomic_flag_test_and_set_explicit(&live_lock, memory_order_acquire)) {
  }
  size_t i = slot_of((uintptr_t)p);
  while (live_tab[i] != 0) {
    if (live_tab[i] == (uintptr_t)p) {
      live_tab[i] = TOMB;
      live_n--;
      break;
    }
    i = (i + 1) & (LIVE_SLOTS - 1);
  }
  atomic_flag_clear_explicit(&live_lock, memory_order_release);
}

/* Returns 1 when this allocation, made from ra, must fail. */
static int count(const void *ra, int *tracked) {
  *tracked = 0;
  if (!inside(ra)) return 0;
  *tracked = 1;
  uintptr_t off = (uintptr_t)ra - lib_base;
  note_site(off);
  long n = atomic_fetch_add(&allocs, 1) + 1;
  if (fail_at > 0 && n == fail_at) {
    atomic_store(&failed_site, off);
    /* said at once: a run that crashes writes no report */
    char line[96];
    int len = snprintf(line, sizeof line, "failmalloc: allocation %ld inside libweft fails, site 0x%lx\n", n,
                       (unsigned long)off);
    ssize_t w = write(2, line, (size_t)len);
    (void)w;
    return 1;
  }
  return 0;
}

__attribute__((constructor(101))) static void fm_init(void) {
  resolve();
  const char *s = getenv("WEFT_FM_FAIL");
  fail_at = s ? atol(s) : 0;
  lookup(1);
}

__attribute__((destructor(101))) static void fm_report(void) {
  const char *path = getenv("WEFT_FM_REPORT");
  if (path == NULL || *path == '\0') return;
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) return;
  char line[MAX_SITES * 12 + 256];
  int len = snprintf(line, sizeof line, "pid=%ld allocs=%ld failed=", (long)getpid(), atomic_load(&allocs));
  uintptr_t f = atomic_load(&failed_site);
  len += f ? snprintf(line + len, sizeof line - len, "0x%lx", (unsigned long)f) : snprintf(line + len, sizeof line - len, "-");
  while (atomic_flag_test_and_set_explicit(&live_lock, memory_order_acquire)) {
  }
  long live = live_overflow ? -1 : live_n;
  atomic_flag_clear_explicit(&live_lock, memory_order_release);
  len += snprintf(line + len, sizeof line - len, " live=%ld sites=", live);
  for (int i = 0; i < MAX_SITES && len < (int)sizeof line - 24; i++) {
    uintptr_t o = atomic_load(&sites[i]);
    if (o == 0) break;
    len += snprintf(line + len, sizeof line - len, "%s0x%lx", i ? "," : "", (unsigned long)o);
  }
  line[len++] = '\n';
  ssize_t w = write(fd, line, (size_t)len);
  (void)w;
  close(fd);
}

/* ---- the interposed functions */
EXPORT void *malloc(size_t n) {
  if (atomic_load(&resolving)) return boot_alloc(n);
  resolve();
  int t;
  if (count(__builtin_return_address(0), &t)) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = real_malloc(n);
  if (t) live_add(p);
  return p;
}

EXPORT void *calloc(size_t n, size_t m) {
  if (atomic_load(&resolving)) return boot_alloc(n * m);
  resolve();
  int t;
  if (count(__builtin_return_address(0), &t)) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = real_calloc(n, m);
  if (t) live_add(p);
  return p;
}

EXPORT void *realloc(void *old, size_t n) {
  resolve();
  if (is_boot(old)) {
    void *p = real_malloc(n);
    if (p) memcpy(p, old, n < sizeof boot ? n : sizeof boot);
    return p;
  }
  int t;
  if (count(__builtin_return_address(0), &t)) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = real_realloc(old, n);
  if (p != NULL || n == 0) live_del(old);
  if (t) live_add(p);
  return p;
}

EXPORT void *aligned_alloc(size_t a, size_t n) {
  resolve();
  int t;
  if (count(__builtin_return_address(0), &t)) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = real_aligned_alloc(a, n);
  if (t) live_add(p);
  return p;
}

EXPORT void *memalign(size_t a, size_t n) {
  resolve();
  int t;
  if (count(__builtin_return_address(0), &t)) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = real_memalign(a, n);
  if (t) live_add(p);
  return p;
}

EXPORT int posix_memalign(void **out, size_t a, size_t n) {
  resolve();
  int t;
  if (count(__builtin_return_address(0), &t)) return ENOMEM;
  int r = real_posix_memalign(out, a, n);
  if (t && r == 0) live_add(*out);
  return r;
}

static char *dup_n(const char *s, size_t n, const void *ra) {
  size_t len = strnlen(s, n);
  int t;
  if (count(ra, &t)) {
    errno = ENOMEM;
    return NULL;
  }
  char *p = real_malloc(len + 1);
  if (p == NULL) return NULL;
  memcpy(p, s, len);
  p[len] = '\0';
  if (t) live_add(p);
  return p;
}
EXPORT char *strdup(const char *s) {
  resolve();
  return dup_n(s, SIZE_MAX, __builtin_return_address(0));
}
EXPORT char *strndup(const char *s, size_t n) {
  resolve();
  return dup_n(s, n, __builtin_return_address(0));
}

EXPORT void free(void *p) {
  if (p == NULL || is_boot(p)) return;
  resolve();
  live_del(p);
  real_free(p);
}
