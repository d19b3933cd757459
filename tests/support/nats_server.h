/* tests/support/nats_server.h: a private nats-server for one test.
 *
 * Every test that needs JetStream starts its own `nats-server -js` on a free loopback port with a
 * temporary store directory, and stops it at the end (the directory is removed). The server dies with the
 * test process (PR_SET_PDEATHSIG), so a crashed test leaves no server behind. The binary is looked up in
 * $WEFT_NATS_SERVER, then PATH, then /usr/sbin and /usr/bin (Debian installs it in /usr/sbin); when none
 * is there the test is skipped with a message saying so — the only reason a test here skips. */
#ifndef WEFT_NATS_SERVER_H
#define WEFT_NATS_SERVER_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct nats_server {
  char bin[512];
  char dir[256];
  char url[64];
  int port;
  pid_t pid;
} nats_server;

static inline bool ns_find_binary(char *out, size_t cap) {
  const char *env = getenv("WEFT_NATS_SERVER");
  if (env != NULL && *env && access(env, X_OK) == 0) {
    snprintf(out, cap, "%s", env);
    return true;
  }
  const char *path = getenv("PATH");
  char buf[4096];
  snprintf(buf, sizeof buf, "%s:/usr/sbin:/usr/bin:/usr/local/bin:/usr/local/sbin", path ? path : "");
  for (char *save = NULL, *d = strtok_r(buf, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
    snprintf(out, cap, "%s/nats-server", d);
    if (access(out, X_OK) == 0) return true;
  }
  return false;
}

static inline int ns_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  int port = -1;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0) close(fd);
  return port;
}

static inline bool ns_accepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((uint16_t)port);
  bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
  if (fd >= 0) close(fd);
  return ok;
}

/* Starts (or restarts, same port and store) the server; waits until it accepts connections (20 s at most).
 * Returns false when it did not come up. */
static inline bool ns_spawn(nats_server *s) {
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
      dup2(null, 0), dup2(null, 1);
      if (getenv("WEFT_NATS_LOG") == NULL) dup2(null, 2);
    }
    /* A signal mask inherited from the test (weft's threads block everything) must not reach the server. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    execl(s->bin, s->bin, "-js", "-a", "127.0.0.1", "-p", port, "-sd", s->dir, (char *)NULL);
    _exit(127);
  }
  s->pid = pid;
  for (int i = 0; i < 2000; i++) {
    if (ns_accepts(s->port)) return true;
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      s->pid = -1;
      return false;
    }
    usleep(10000);
  }
  return false;
}

/* 0: started; 1: no binary (skip); -1: failed. */
static inline int ns_start(nats_server *s) {
  memset(s, 0, sizeof *s);
  s->pid = -1;
  if (!ns_find_binary(s->bin, sizeof s->bin)) return 1;
  snprintf(s->dir, sizeof s->dir, "/tmp/weft-nats-XXXXXX");
  if (mkdtemp(s->dir) == NULL) return -1;
  for (int attempt = 0; attempt < 5; attempt++) {
    s->port = ns_free_port();
    if (s->port <= 0) continue;
    snprintf(s->url, sizeof s->url, "nats://127.0.0.1:%d", s->port);
    if (ns_spawn(s)) return 0;
  }
  return -1;
}

/* Stops the server: SIGTERM (it flushes its store and exits), SIGKILL after 10 s. */
static inline void ns_stop_process(nats_server *s) {
  if (s->pid <= 0) return;
  kill(s->pid, SIGTERM);
  for (int i = 0; i < 1000; i++) {
    int st;
    if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
      s->pid = -1;
      return;
    }
    usleep(10000);
  }
  kill(s->pid, SIGKILL);
  waitpid(s->pid, NULL, 0);
  s->pid = -1;
}

static inline void ns_stop(nats_server *s) {
  ns_stop_process(s);
  if (s->dir[0]) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", s->dir);
  }
}

/* In a Criterion test: start the server or skip the test with the reason. */
#define NATS_SERVER_OR_SKIP(s)                                                                               \
  do {                                                                                                     \
    int ns_rc_ = ns_start(s);                                                                              \
    if (ns_rc_ == 1)                                                                                       \
      cr_skip_test("nats-server not found (PATH, /usr/sbin, $WEFT_NATS_SERVER): install the Debian package " \
                   "'nats-server' to run the JetStream tests");                                            \
    cr_assert_eq(ns_rc_, 0, "nats-server did not start");                                                  \
  } while (0)

#endif
