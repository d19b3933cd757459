/* bench/bench_floor.c: line_rtt, the machine's floor for any hand-off between two threads (not one of
 * the contract workloads (bench/README.md); bench/rounds.sh records it beside each round).
 *
 * line_rtt: two threads spin on one cache line, each writing it in turn; op = one round trip (the line
 * crosses cores twice). It measured 170-415 ns on one 2-vCPU host kind; on the VMs seen since, it moves
 * between ~65 and ~400 ns with the hypervisor's placement of the two vCPUs, and chan_pingpong,
 * chan_spsc, pool_tiny and pipeline3 move with it. Checked: the last value seen is the last one written. */
#include <pthread.h>
#include <stdatomic.h>

#include "bench.h"

enum { RTT_ROUNDS = 200000 };

static inline void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static _Alignas(64) _Atomic long rtt_word;

static void *rtt_echo(void *arg) {
  (void)arg;
  for (long i = 0; i < RTT_ROUNDS; i++) {
    while (atomic_load_explicit(&rtt_word, memory_order_acquire) != 2 * i + 1) relax();
    atomic_store_explicit(&rtt_word, 2 * i + 2, memory_order_release);
  }
  return NULL;
}

static int bench_line_rtt(bench_result *r) {
  atomic_store(&rtt_word, 0);
  pthread_t th;
  BENCH_CHECK(pthread_create(&th, NULL, rtt_echo, NULL) == 0);
  int64_t t0 = bench_now_ns();
  for (long i = 0; i < RTT_ROUNDS; i++) {
    atomic_store_explicit(&rtt_word, 2 * i + 1, memory_order_release);
    while (atomic_load_explicit(&rtt_word, memory_order_acquire) != 2 * i + 2) relax();
  }
  int64_t t1 = bench_now_ns();
  pthread_join(th, NULL);
  BENCH_CHECK(atomic_load(&rtt_word) == 2L * RTT_ROUNDS);
  r->ops = RTT_ROUNDS;
  r->ns_per_op = (double)(t1 - t0) / RTT_ROUNDS;
  return 0;
}

WEFT_BENCH(line_rtt, bench_line_rtt, 5)
