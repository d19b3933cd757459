/* weft-run: output. Each of weft-run's stdout and stderr has a lock; a job's output (--group) or a
 * whole line (--line-buffer) is written under it, so nothing of two jobs ever mixes within a line or,
 * with --group, within a job's output. A write error on stdout (EPIPE from `| head -1`, a closed or full
 * disk) stops the run: nothing new starts, later output is dropped, the exit status says so. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weft-run.h"

/* ---- writing ------------------------------------------------------------------------------------ */

static bool write_fd(wr_app *a, int fd, const char *p, size_t n) {
  if (fd == 1 && atomic_load(&a->output_failed)) return false;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) { /* a non-blocking stdout someone handed us: wait for room */
        usleep(1000);
        continue;
      }
      if (fd == 1 && !atomic_exchange(&a->output_failed, true)) {
        if (errno != EPIPE) wr_msg("writing the output failed: %s; starting no more jobs", strerror(errno));
        wr_stop(a, false, 0);
      }
      return false;
    }
    p += w, n -= (size_t)w;
  }
  return true;
}

/* --dry-run's lines cost a few hundred nanoseconds to make and a write() each to print (several
 * microseconds into a pipe): they are gathered and written WR_OUT_BUF at a time, and at least every
 * WR_OUT_FLUSH_MS by the run's waiting thread, so a line still shows soon when inputs come slowly. */
bool wr_write(wr_app *a, int fd, const char *p, size_t n) {
  if (fd != 1 || a->out_buf == NULL) return write_fd(a, fd, p, n);
  if (atomic_load(&a->output_failed)) return false;
  if (a->out_len + n > WR_OUT_BUF) {
    bool ok = write_fd(a, 1, a->out_buf, a->out_len);
    a->out_len = 0;
    if (!ok) return false;
    if (n > WR_OUT_BUF / 2) return write_fd(a, 1, p, n);
  }
  memcpy(a->out_buf + a->out_len, p, n);
  a->out_len += n;
  return true;
}

bool wr_out_flush(wr_app *a) {
  if (a->out_buf == NULL) return true;
  pthread_mutex_lock(&a->out_mu[1]);
  bool ok = a->out_len == 0 || write_fd(a, 1, a->out_buf, a->out_len);
  a->out_len = 0;
  pthread_mutex_unlock(&a->out_mu[1]);
  return ok;
}

/* The tag: the job's inputs separated by spaces, then a tab (GNU parallel's --tag). */
static bool write_tag(wr_app *a, int fd, const wr_job *j) {
  for (size_t k = 0; k < j->nargs; k++) {
    if (k && !wr_write(a, fd, " ", 1)) return false;
    if (!wr_write(a, fd, j->args[k], j->lens[k])) return false;
  }
  return wr_write(a, fd, "\t", 1);
}

bool wr_write_tagged(wr_app *a, int fd, const wr_job *j, const char *p, size_t n, bool *bol) {
  if (!a->o.tag) return wr_write(a, fd, p, n);
  while (n > 0) {
    if (*bol && !write_tag(a, fd, j)) return false;
    const char *nl = memchr(p, '\n', n);
    size_t l = nl ? (size_t)(nl - p) + 1 : n;
    if (!wr_write(a, fd, p, l)) return false;
    *bol = nl != NULL;
    p += l, n -= l;
  }
  return true;
}

/* ---- held output (--group) ---------------------------------------------------------------------- */

void wr_hold_init(wr_hold *h) { *h = (wr_hold){.fd = -1}; }

void wr_hold_reset(wr_hold *h) {
  h->len = 0, h->total = 0, h->lost = false;
  if (h->fd >= 0) close(h->fd), h->fd = -1;
}

void wr_hold_free(wr_hold *h) {
  if (h->fd >= 0) close(h->fd);
  free(h->mem);
  wr_hold_init(h);
}

static int temp_file(void) {
  const char *dir = getenv("TMPDIR");
  if (!dir || !*dir) dir = "/tmp";
  int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0) return fd;
  char path[4096];
  if (snprintf(path, sizeof path, "%s/weft-run.XXXXXX", dir) >= (int)sizeof path) return -1;
  fd = mkostemp(path, O_CLOEXEC);
  if (fd >= 0) unlink(path);
  return fd;
}

static bool write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w, n -= (size_t)w;
  }
  return true;
}

void wr_hold_add(wr_hold *h, const char *p, size_t n) {
  if (n == 0 || h->lost) return;
  h->total += n;
  if (h->fd < 0 && h->len + n <= WR_HOLD_MAX) {
    if (h->len + n > h->cap) {
      size_t nc = h->cap ? h->cap : 4096;
      while (nc < h->len + n) nc *= 2;
      char *m = realloc(h->mem, nc);
      if (!m) goto spill;
      h->mem = m, h->cap = nc;
    }
    memcpy(h->mem + h->len, p, n);
    h->len += n;
    return;
  }
spill:
  if (h->fd < 0) {
    h->fd = temp_file();
    if (h->fd < 0 || !write_all(h->fd, h->mem, h->len)) goto lost;
    h->len = 0; /* all of it is in the file now: order is kept */
  }
  if (write_all(h->fd, p, n)) return;
lost:
  h->lost = true;
}

static void print_hold(wr_app *a, wr_job *j, int fd, wr_hold *h) {
  if (h->total == 0) return;
  pthread_mutex_lock(&a->out_mu[fd]);
  bool bol = true;
  if (h->fd < 0) {
    wr_write_tagged(a, fd, j, h->mem, h->len, &bol);
  } else {
    char buf[65536];
    if (lseek(h->fd, 0, SEEK_SET) == 0) {
      ssize_t r;
      while ((r = read(h->fd, buf, sizeof buf)) > 0 || (r < 0 && errno == EINTR))
        if (r > 0 && !wr_write_tagged(a, fd, j, buf, (size_t)r, &bol)) break;
    }
  }
  pthread_mutex_unlock(&a->out_mu[fd]);
  if (h->lost)
    wr_msg("job %llu: part of its %s was lost (the temporary file could not be written)",
           (unsigned long long)j->seq, fd == 1 ? "output" : "error output");
}

void wr_print_job(wr_app *a, wr_job *j) {
  if (a->o.out != WR_OUT_GROUP) return;
  print_hold(a, j, 1, &j->out);
  print_hold(a, j, 2, &j->err);
  if (j->note) wr_msg("job %llu: %s", (unsigned long long)j->seq, j->note);
}

/* ---- whole lines (--line-buffer) ---------------------------------------------------------------- */

static void lines_keep(wr_lines *l, const char *p, size_t n) {
  if (n == 0) return;
  if (l->len + n > l->cap) {
    size_t nc = l->cap ? l->cap : 4096;
    while (nc < l->len + n) nc *= 2;
    char *b = realloc(l->buf, nc);
    if (!b) return; /* out of memory: the partial line is dropped rather than cut into others */
    l->buf = b, l->cap = nc;
  }
  memcpy(l->buf + l->len, p, n);
  l->len += n;
}

void wr_lines_add(wr_app *a, wr_job *j, int fd, wr_lines *l, const char *p, size_t n) {
  bool bol;
  if (l->holding) { /* inside a line too long to hold: it goes out as it comes, the lock kept */
    const char *nl = memchr(p, '\n', n);
    size_t k = nl ? (size_t)(nl - p) + 1 : n;
    bol = false;
    wr_write_tagged(a, fd, j, p, k, &bol);
    if (!nl) return;
    l->holding = false;
    pthread_mutex_unlock(&a->out_mu[fd]);
    p += k, n -= k;
  }
  const char *last = n ? memrchr(p, '\n', n) : NULL;
  if (last) {
    size_t k = (size_t)(last - p) + 1;
    pthread_mutex_lock(&a->out_mu[fd]);
    bol = true;
    if (l->len) wr_write_tagged(a, fd, j, l->buf, l->len, &bol);
    wr_write_tagged(a, fd, j, p, k, &bol);
    pthread_mutex_unlock(&a->out_mu[fd]);
    l->len = 0;
    p += k, n -= k;
  }
  if (l->len + n > WR_HOLD_MAX) {
    pthread_mutex_lock(&a->out_mu[fd]);
    bol = true;
    wr_write_tagged(a, fd, j, l->buf, l->len, &bol);
    wr_write_tagged(a, fd, j, p, n, &bol);
    l->len = 0;
    l->holding = true;
    return;
  }
  lines_keep(l, p, n);
}

void wr_lines_end(wr_app *a, wr_job *j, int fd, wr_lines *l) {
  bool bol = !l->holding;
  if (!l->holding && l->len) pthread_mutex_lock(&a->out_mu[fd]);
  if (l->len || l->holding) {
    if (l->len) wr_write_tagged(a, fd, j, l->buf, l->len, &bol);
    pthread_mutex_unlock(&a->out_mu[fd]);
  }
  l->holding = false;
  l->len = 0;
  free(l->buf);
  l->buf = NULL, l->cap = 0;
}
