/* weft-run: input sources. The first source is streamed record by record, so a run over 10^7 lines holds
 * one line at a time; the others are read whole (every combination needs them again and again), as are
 * all of them with --link (a shorter source wraps around) or when the total must be known first. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "weft-run.h"

#define LINE_MAX_BYTES ((size_t)256 << 20)

typedef struct vals {
  char **v;
  size_t *len;
  size_t n, cap;
} vals;

typedef struct src {
  const wr_source *s;
  int fd;              /* files: open descriptor, -1 when closed */
  bool pollable;       /* not a regular file: waits for data go through poll */
  char *buf;
  size_t blen, bpos, bcap;
  bool eof;
  bool whole;          /* read whole into w */
  vals w;
} src;

struct wr_input {
  size_t n;
  bool link;
  char sep;
  src *s;
  /* iteration */
  bool started, finished;
  char *cur;           /* the first source's current record (streamed) */
  size_t curlen;
  size_t first_i;      /* the first source's index when it is whole */
  size_t *idx;         /* odometer over sources 1..n-1 (or the link index in idx[0]) */
  uint64_t count;      /* combinations handed out */
  char **args;
  size_t *lens;
};

static int vals_push(vals *v, const char *p, size_t n) {
  if (v->n == v->cap) {
    size_t nc = v->cap ? v->cap * 2 : 16;
    char **nv = realloc(v->v, nc * sizeof *nv);
    if (!nv) return -1;
    v->v = nv;
    size_t *nl = realloc(v->len, nc * sizeof *nl);
    if (!nl) return -1;
    v->len = nl, v->cap = nc;
  }
  char *c = malloc(n + 1);
  if (!c) return -1;
  memcpy(c, p, n);
  c[n] = '\0';
  v->v[v->n] = c, v->len[v->n++] = n;
  return 0;
}

/* The next record of a file source: *p points into the source's buffer until the next call. Returns 1,
 * 0 at the end, -1 on error (message printed), -2 when cancel_fd became readable. */
static int next_record(src *s, char sep, int cancel_fd, char **p, size_t *len) {
  for (;;) {
    char *at = s->blen > s->bpos ? memchr(s->buf + s->bpos, sep, s->blen - s->bpos) : NULL;
    if (at) {
      *p = s->buf + s->bpos, *len = (size_t)(at - *p);
      s->bpos += *len + 1;
      return 1;
    }
    if (s->eof) {
      if (s->blen > s->bpos) { /* a last record without its separator */
        *p = s->buf + s->bpos, *len = s->blen - s->bpos;
        s->bpos = s->blen;
        return 1;
      }
      return 0;
    }
    if (s->bpos > 0) { /* keep the partial record at the front */
      memmove(s->buf, s->buf + s->bpos, s->blen - s->bpos);
      s->blen -= s->bpos, s->bpos = 0;
    }
    if (s->blen == s->bcap) {
      if (s->bcap >= LINE_MAX_BYTES) {
        wr_msg("%s: an input longer than %zu MiB", s->s->path, LINE_MAX_BYTES >> 20);
        return -1;
      }
      size_t nc = s->bcap ? s->bcap * 2 : 65536;
      char *nb = realloc(s->buf, nc + 1);
      if (!nb) { wr_msg("out of memory reading %s", s->s->path); return -1; }
      s->buf = nb, s->bcap = nc;
    }
    if (s->pollable && cancel_fd >= 0) {
      struct pollfd pf[2] = {{.fd = s->fd, .events = POLLIN}, {.fd = cancel_fd, .events = POLLIN}};
      int r = poll(pf, 2, -1);
      if (r < 0 && errno == EINTR) continue;
      if (pf[1].revents & POLLIN) return -2;
    }
    ssize_t r = read(s->fd, s->buf + s->blen, s->bcap - s->blen);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) { /* a non-blocking stdin someone handed us */
        struct pollfd pf = {.fd = s->fd, .events = POLLIN};
        (void)poll(&pf, 1, 100);
        continue;
      }
      wr_msg("%s: read error: %s", strcmp(s->s->path, "-") ? s->s->path : "stdin", strerror(errno));
      return -1;
    }
    if (r == 0) s->eof = true;
    s->blen += (size_t)r;
  }
}

static int read_whole(src *s, char sep) {
  if (s->whole) return 0;
  if (s->s->kind == WR_SRC_ARGS) {
    for (size_t i = 0; i < s->s->nargs; i++)
      if (vals_push(&s->w, s->s->args[i], strlen(s->s->args[i])) != 0) goto nomem;
  } else {
    char *p;
    size_t len;
    int r;
    while ((r = next_record(s, sep, -1, &p, &len)) == 1)
      if (vals_push(&s->w, p, len) != 0) goto nomem;
    if (r < 0) return -1;
  }
  s->whole = true;
  return 0;
nomem:
  wr_msg("out of memory reading the inputs");
  return -1;
}

int wr_input_open(const wr_opts *o, wr_input **out) {
  *out = NULL;
  wr_input *in = calloc(1, sizeof *in);
  if (!in) { wr_msg("out of memory"); return -1; }
  in->n = o->nsrc, in->link = o->link, in->sep = o->nul ? '\0' : '\n';
  in->s = calloc(in->n, sizeof *in->s);
  in->idx = calloc(in->n, sizeof *in->idx);
  in->args = calloc(in->n, sizeof *in->args);
  in->lens = calloc(in->n, sizeof *in->lens);
  if (!in->s || !in->idx || !in->args || !in->lens) { wr_msg("out of memory"); goto fail; }
  for (size_t k = 0; k < in->n; k++) {
    src *s = &in->s[k];
    s->s = &o->src[k];
    s->fd = -1;
    if (s->s->kind != WR_SRC_FILE) continue;
    if (!strcmp(s->s->path, "-")) {
      s->fd = 0;
    } else {
      s->fd = open(s->s->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
      if (s->fd < 0) { wr_msg("%s: cannot open: %s", s->s->path, strerror(errno)); goto fail; }
    }
    struct stat st;
    if (fstat(s->fd, &st) != 0) { wr_msg("%s: %s", s->s->path, strerror(errno)); goto fail; }
    if (S_ISDIR(st.st_mode)) { wr_msg("%s: is a directory, not a file of inputs", s->s->path); goto fail; }
    s->pollable = !S_ISREG(st.st_mode);
  }
  /* the sources after the first (all with --link) are read whole now, so that their errors come first */
  for (size_t k = in->link ? 0 : 1; k < in->n; k++)
    if (read_whole(&in->s[k], in->sep) != 0) goto fail;
  if (in->s[0].s->kind == WR_SRC_ARGS && read_whole(&in->s[0], in->sep) != 0) goto fail;
  *out = in;
  return 0;
fail:
  wr_input_close(in);
  return -1;
}

int wr_input_read_all(wr_input *in) { return read_whole(&in->s[0], in->sep); }

static uint64_t product_rest(const wr_input *in) {
  uint64_t t = 1;
  for (size_t k = 1; k < in->n; k++) {
    if (in->s[k].w.n == 0) return 0;
    if (t > UINT64_MAX / in->s[k].w.n) return UINT64_MAX;
    t *= in->s[k].w.n;
  }
  return t;
}

bool wr_input_total(const wr_input *in, uint64_t *total) {
  if (in->link) {
    size_t mx = 0;
    for (size_t k = 0; k < in->n; k++) {
      if (in->s[k].w.n == 0) { *total = 0; return true; }
      if (in->s[k].w.n > mx) mx = in->s[k].w.n;
    }
    *total = mx;
    return true;
  }
  if (in->s[0].whole) {
    uint64_t r = product_rest(in);
    *total = in->s[0].w.n && r > UINT64_MAX / in->s[0].w.n ? UINT64_MAX : in->s[0].w.n * r;
    return true;
  }
  if (in->finished) { *total = in->count; return true; }
  return false;
}

bool wr_input_ready(const wr_input *in) {
  const src *f = &in->s[0];
  if (in->link || f->whole || f->eof || in->finished) return true;
  return f->blen > f->bpos && memchr(f->buf + f->bpos, in->sep, f->blen - f->bpos) != NULL;
}

/* Advances the odometer over sources 1..n-1; true when it wrapped (the first source moves on). */
static bool odometer_step(wr_input *in) {
  for (size_t k = in->n; k-- > 1;) {
    if (++in->idx[k] < in->s[k].w.n) return false;
    in->idx[k] = 0;
  }
  return true;
}

int wr_input_next(wr_input *in, int cancel_fd, char ***args, size_t **lens) {
  if (in->finished) return 0;
  if (in->link) {
    uint64_t total;
    wr_input_total(in, &total);
    if (in->idx[0] >= total) { in->finished = true; return 0; }
    for (size_t k = 0; k < in->n; k++) {
      size_t i = in->idx[0] % in->s[k].w.n;
      in->args[k] = in->s[k].w.v[i], in->lens[k] = in->s[k].w.len[i];
    }
    in->idx[0]++;
    in->count++;
    *args = in->args, *lens = in->lens;
    return 1;
  }
  if (product_rest(in) == 0) { in->finished = true; return 0; }
  bool advance = !in->started || odometer_step(in);
  in->started = true;
  if (advance) {
    src *f = &in->s[0];
    if (f->whole) {
      if (in->cur) in->first_i++;
      if (in->first_i >= f->w.n) { in->finished = true; return 0; }
      in->cur = f->w.v[in->first_i], in->curlen = f->w.len[in->first_i];
    } else {
      char *p;
      size_t len;
      int r = next_record(f, in->sep, cancel_fd, &p, &len);
      if (r <= 0) {
        if (r == 0) in->finished = true;
        in->started = r == -2 ? false : in->started; /* a cancelled wait is retried from here */
        return r;
      }
      p[len] = '\0'; /* the buffer keeps one spare byte; the separator's place otherwise */
      in->cur = p, in->curlen = len;
    }
  }
  in->args[0] = in->cur, in->lens[0] = in->curlen;
  for (size_t k = 1; k < in->n; k++) in->args[k] = in->s[k].w.v[in->idx[k]], in->lens[k] = in->s[k].w.len[in->idx[k]];
  in->count++;
  *args = in->args, *lens = in->lens;
  return 1;
}

void wr_input_close(wr_input *in) {
  if (!in) return;
  for (size_t k = 0; k < in->n && in->s; k++) {
    src *s = &in->s[k];
    if (s->fd > 0) close(s->fd);
    free(s->buf);
    for (size_t i = 0; i < s->w.n; i++) free(s->w.v[i]);
    free(s->w.v);
    free(s->w.len);
  }
  free(in->s);
  free(in->idx);
  free(in->args);
  free(in->lens);
  free(in);
}
