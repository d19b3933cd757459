/* spawn-cost: what starting a job costs as the parent grows — fork+exec (the page tables are copied,
 * then discarded by exec) against posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK), nothing copied), the
 * way weft-run spawns. Usage: spawn-cost [MiB touched in the parent ...]   (default: 0 256 1024) */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double run(int use_fork, int n) {
  char *argv[] = {"/bin/true", NULL};
  double best = 1e9;
  for (int round = 0; round < 3; round++) {
    double t0 = now();
    for (int i = 0; i < n; i++) {
      pid_t pid;
      if (use_fork) {
        pid = fork();
        if (pid == 0) { execve(argv[0], argv, environ); _exit(127); }
      } else if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ) != 0) {
        pid = -1;
      }
      if (pid < 0) { perror("spawn"); exit(1); }
      int st;
      waitpid(pid, &st, 0);
    }
    double per = (now() - t0) / n * 1e6;
    if (per < best) best = per;
  }
  return best;
}

int main(int argc, char **argv) {
  const char *defaults[] = {"0", "256", "1024"};
  int nsizes = argc > 1 ? argc - 1 : 3;
  printf("| parent RSS | fork+exec, µs/job | posix_spawn, µs/job |\n|---|---|---|\n");
  for (int k = 0; k < nsizes; k++) {
    size_t mib = strtoul(argc > 1 ? argv[k + 1] : defaults[k], NULL, 10);
    char *mem = mib ? malloc(mib << 20) : NULL;
    if (mib && !mem) { perror("malloc"); return 1; }
    if (mem) memset(mem, 1, mib << 20);
    double f = run(1, 200), s = run(0, 200);
    printf("| %zu MiB | %.0f | %.0f |\n", mib, f, s);
    free(mem);
  }
  return 0;
}
