/* weft-digest: size, line count and XXH3-64 checksum of every regular file under a directory, computed by a
 * weft pipeline, printed sorted by path, then a summary.
 *
 *   weft-digest [-j WORKERS] [-q] [DIR]        (DIR defaults to /usr/share)
 *
 * The pipeline (public API only):
 *
 *   walk (source)  ->  read (WORKERS threads)  ->  hash (WORKERS threads)  ->  count (sink)
 *   directory tree     small files into memory     XXH3-64 + newline count     results and totals
 *
 * Items are pointers to a `job` (one per file) with a release hook, so a job the run does not finish is
 * freed by weft and counted here as "not processed". "read" loads files up to READ_WHOLE_MAX bytes into
 * memory, overlapping disk reads with the hashing of other files; bigger files are streamed by "hash" in
 * CHUNK-byte reads, so memory stays bounded (about (capacities + workers) x READ_WHOLE_MAX at worst).
 *
 * Ctrl-C (or SIGTERM): the first drains — the walk stops, every file already found is still read, hashed and
 * printed; the second cancels — files in flight are dropped and reported; a third exits at once. The output
 * says what was processed and what was not. A progress line goes to stderr when stderr is a terminal.
 *
 * Files are opened with O_NONBLOCK and their type checked after the open (fstat): what is not a regular file
 * by then (a FIFO or device swapped in after the walk), a read that would block, and the kernel-generated
 * files of /proc (some block, some never end, /proc/kmsg consumes what it returns) are skipped and counted.
 * After a second signal the run ends with its summary even if a read does not return: the run is abandoned
 * ABANDON_AFTER_MS after the cancel, and every file found and not done counts as not processed.
 *
 * Names are printed escaped when they hold a backslash, a newline or another control byte (md5sum's way:
 * the line starts with a backslash, and \\, \n, \r, \t and \xHH stand for the bytes).
 *
 * Exit status: 0; 1 if some file or directory could not be read; 2 on bad usage, a failed run or an error
 * writing the output; 130 (128 + SIGINT) when interrupted (2 if the output could not be written). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <getopt.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <xxhash.h>

#include <weft/weft.h>

#define READ_WHOLE_MAX (1u << 20) /* files up to 1 MiB are read whole by the read stage */
#define CHUNK (256u << 10)        /* bigger ones are streamed in 256 KiB reads by the hash stage */
#define ABANDON_AFTER_MS 2000     /* after a cancel, how long a read that does not return may hold the run */

/* Why a file was skipped (not an error: nothing in it could be read as a file's content). */
enum { SKIP_NONE, SKIP_NOT_REGULAR, SKIP_WOULD_BLOCK };

typedef struct job {
  char *path;
  unsigned char *data; /* the whole file, when read by the read stage */
  uint64_t size, lines, hash;
  int err;             /* errno of a failed open/read, 0 if fine */
  int skip;            /* SKIP_*: why the file was skipped */
  int fd;              /* a file too big to read whole, open for the hash stage; -1 if none */
  bool have;           /* data holds the whole file */
} job;

typedef struct result {
  char *path;
  uint64_t size, lines, hash;
  int err, skip;
} result;

typedef struct app {
  const char *root;
  weft_pipeline *p;
  weft_ctx *run_ctx;        /* the run's parent: cancelled by the second signal */
  weft_cancel *run_cancel;  /* kept by the program, used by the second signal's callback */
  weft_ctx *sig1, *sig2;    /* first signal: drain; second: cancel */
  weft_cancel *sig1_cancel, *sig2_cancel;
  weft_after *h1, *h2;      /* their callbacks */
  bool first_done, second_done;
  result *res;
  size_t nres, cap;
  pthread_mutex_t res_mu;   /* res, nres, cap, frozen: the sink against an abandoning main thread */
  bool frozen;              /* the run was abandoned: the sink no longer records results */
  bool run_done;            /* under mu: weft_pipeline_run returned (run_rc, rep) */
  int run_rc;
  weft_pipeline_report rep;
  _Atomic uint64_t skipped_proc; /* files of /proc not emitted by the walk */
  _Atomic uint64_t bytes_done, files_done, files_found;
  _Atomic uint64_t not_processed; /* jobs released by the pipeline */
  _Atomic uint64_t dirs_unreadable;
  _Atomic uint64_t dirs_left; /* directories the walk did not visit (stopped early) */
  _Atomic int interrupted;  /* signals seen */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stop_progress;
  bool quiet;
} app;

/* Whether a name needs escaping: it holds a backslash, a newline or another control byte. */
static bool needs_escape(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (*p == '\\' || *p < 0x20 || *p == 0x7f) return true;
  return false;
}

/* Writes a name with \\, \n, \r, \t and \xHH escapes (the caller marks the line, as md5sum does). */
static void put_escaped(FILE *f, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '\\') fputs("\\\\", f);
    else if (*p == '\n') fputs("\\n", f);
    else if (*p == '\r') fputs("\\r", f);
    else if (*p == '\t') fputs("\\t", f);
    else if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\x%02x", *p);
    else fputc(*p, f);
  }
}

/* A name inside a message line (stderr, the summary): escaped if need be, no line mark. */
static void put_name(FILE *f, const char *s) {
  if (needs_escape(s)) put_escaped(f, s);
  else fputs(s, f);
}

static void job_free(job *j) {
  if (j->fd >= 0) close(j->fd);
  free(j->path);
  free(j->data);
  free(j);
}

/* The release hook: a file the run did not finish. */
static void job_release(void *item, void *arg) {
  app *a = arg;
  job *j = *(job **)item;
  atomic_fetch_add(&a->not_processed, 1);
  if (atomic_load(&a->not_processed) <= 5 && !a->quiet) {
    fputs("not processed: ", stderr);
    put_name(stderr, j->path);
    fputc('\n', stderr);
  }
  job_free(j);
}

/* ---- walk: the source ------------------------------------------------------------------------------ */

typedef struct dstack {
  char **v;
  size_t n, cap;
} dstack;

static int push(dstack *s, char *path) {
  if (s->n == s->cap) {
    size_t nc = s->cap ? 2 * s->cap : 64;
    char **nv = realloc(s->v, nc * sizeof *nv);
    if (nv == NULL) return -1;
    s->v = nv;
    s->cap = nc;
  }
  s->v[s->n++] = path;
  return 0;
}

static char *join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = malloc(a + b + 2);
  if (p == NULL) return NULL;
  memcpy(p, dir, a);
  size_t k = a;
  if (a == 0 || dir[a - 1] != '/') p[k++] = '/';
  memcpy(p + k, name, b + 1);
  return p;
}

static int walk(weft_ctx *ctx, weft_emitter *em, void *arg) {
  app *a = arg;
  dstack st = {0};
  char *root = strdup(a->root);
  int rc = (root == NULL || push(&st, root) != 0) ? WEFT_ENOMEM : 0;
  while (rc == 0 && st.n > 0) {
    char *dir = st.v[--st.n];
    DIR *d = opendir(dir);
    if (d == NULL) {
      fprintf(stderr, "weft-digest: %s: %s\n", dir, strerror(errno));
      atomic_fetch_add(&a->dirs_unreadable, 1);
      free(dir);
      continue;
    }
    /* /proc's files are made by the kernel as they are read: some block (kmsg), some are as big as an
     * address space (pagemap, kcore), reading kmsg takes its messages away. They are not listed. */
    struct statfs fs;
    bool proc = fstatfs(dirfd(d), &fs) == 0 && fs.f_type == PROC_SUPER_MAGIC;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
      if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
      unsigned char type = de->d_type;
      char *path = join(dir, de->d_name);
      if (path == NULL) {
        rc = WEFT_ENOMEM;
        break;
      }
      if (type == DT_UNKNOWN) { /* some file systems do not fill d_type */
        struct stat sb;
        type = lstat(path, &sb) != 0 ? DT_UNKNOWN : S_ISREG(sb.st_mode) ? DT_REG : S_ISDIR(sb.st_mode) ? DT_DIR : DT_UNKNOWN;
      }
      if (type == DT_DIR) { /* symbolic links are neither followed nor listed, as with find -type f */
        if (push(&st, path) != 0) {
          free(path);
          rc = WEFT_ENOMEM;
        }
        continue;
      }
      if (type != DT_REG || proc) {
        if (type == DT_REG) atomic_fetch_add(&a->skipped_proc, 1);
        free(path);
        continue;
      }
      job *j = calloc(1, sizeof *j);
      if (j == NULL) {
        free(path);
        rc = WEFT_ENOMEM;
        break;
      }
      j->path = path;
      j->fd = -1;
      rc = weft_pipeline_emit(em, &j);
      if (rc != 0) { /* stopped (drain, cancel): the job was not emitted and is still ours */
        job_free(j);
        break;
      }
      atomic_fetch_add(&a->files_found, 1);
    }
    closedir(d);
    free(dir);
  }
  atomic_store(&a->dirs_left, st.n);
  while (st.n > 0) free(st.v[--st.n]);
  free(st.v);
  return rc;
}

/* ---- read and hash --------------------------------------------------------------------------------- */

/* Newlines in p[0..n), eight bytes at a time: a byte of x ^ 0x0a.. is zero exactly where p has '\n', and
 * ~(((v & 0x7f..) + 0x7f..) | v | 0x7f..) has 0x80 in exactly those bytes (no carry crosses a byte, unlike
 * the usual has-zero test). The per-byte counts are summed every 255 words, before a byte can overflow.
 * (memchr once per line was an eighth of the program's time on /usr/share's 14.7 million lines.) */
static uint64_t count_lines(const unsigned char *p, size_t n) {
  const uint64_t ones = 0x0101010101010101u, low7 = 0x7f7f7f7f7f7f7f7fu, nl = ones * '\n';
  uint64_t lines = 0;
  while (n >= 8) {
    uint64_t acc = 0; /* eight byte-wide counters */
    for (unsigned k = 0; k < 255 && n >= 8; k++, p += 8, n -= 8) {
      uint64_t v;
      memcpy(&v, p, 8);
      v ^= nl;
      acc += ~(((v & low7) + low7) | v | low7) >> 7;
    }
    acc = (acc & 0x00ff00ff00ff00ffu) + ((acc >> 8) & 0x00ff00ff00ff00ffu); /* four 16-bit sums */
    lines += (acc * 0x0001000100010001u) >> 48;
  }
  while (n-- > 0) lines += *p++ == '\n';
  return lines;
}

/* Test knobs (interrupt.sh, check.sh), read once at start; no effect when unset.
 * WEFT_DIGEST_TEST_SWAP=FIFO: just before the read stage opens the file named like FIFO's last component,
 * FIFO is renamed over it: the file the walk saw is replaced between the walk and open(), deterministically.
 * WEFT_DIGEST_TEST_STUCK=NAME: the read of the file named NAME blocks for good (a read from a pipe nobody
 * writes, retried on EINTR), as a read from a driver that ignores O_NONBLOCK and signals would. */
static const char *test_swap, *test_stuck;
static int stuck_pipe[2] = {-1, -1};

static bool named(const char *path, const char *name) {
  const char *slash = strrchr(name, '/'), *base = strrchr(path, '/');
  return strcmp(base ? base + 1 : path, slash ? slash + 1 : name) == 0;
}

static void test_hooks(const char *path) {
  if (test_swap != NULL && named(path, test_swap) && rename(test_swap, path) != 0)
    fprintf(stderr, "weft-digest: test swap: %s\n", strerror(errno));
  if (test_stuck != NULL && named(path, test_stuck) && stuck_pipe[0] >= 0) {
    fprintf(stderr, "weft-digest: test: the read of %s blocks\n", test_stuck);
    char c;
    while (read(stuck_pipe[0], &c, 1) != 0) {
    }
  }
}

/* Opens a file without blocking (a FIFO swapped in after the walk would block open() until a writer comes)
 * and checks it is still a regular file; on failure sets j->err or j->skip and returns -1. */
static int open_regular(job *j, struct stat *sb) {
  test_hooks(j->path);
  int fd = open(j->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    j->err = errno;
    return -1;
  }
  if (fstat(fd, sb) != 0) {
    j->err = errno;
  } else if (!S_ISREG(sb->st_mode)) {
    j->skip = SKIP_NOT_REGULAR;
  } else {
    /* O_NONBLOCK stays set: files on disk ignore it, and a "regular" file whose reads would block (a
     * driver's or a kernel interface's) then answers EAGAIN and is skipped instead of holding a reader. */
    return fd;
  }
  close(fd);
  return -1;
}

/* A read's error: EAGAIN means the file would block, so it is skipped; anything else is the file's error. */
static void read_failed(job *j, int e) {
  if (e == EAGAIN || e == EWOULDBLOCK) j->skip = SKIP_WOULD_BLOCK;
  else j->err = e;
}

/* read: loads a small file whole; a bigger one is left open for the hash stage, so that stage reads the
 * very file checked here. Errors are the file's, not the run's: they travel in the job. */
static int read_stage(weft_ctx *ctx, const void *in, void *out, void *arg) {
  job *j = *(job *const *)in;
  struct stat sb;
  int fd = open_regular(j, &sb);
  if (fd < 0) {
  } else if (sb.st_size >= 0 && (uint64_t)sb.st_size <= READ_WHOLE_MAX) {
    j->data = malloc(sb.st_size > 0 ? (size_t)sb.st_size : 1);
    size_t got = 0;
    while (j->data != NULL && got < (size_t)sb.st_size) {
      ssize_t r = read(fd, j->data + got, (size_t)sb.st_size - got);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        if (r < 0) read_failed(j, errno);
        break;
      }
      got += (size_t)r;
    }
    if (j->data == NULL) {
      close(fd);
      return WEFT_ENOMEM; /* not consumed: weft releases the job */
    }
    /* A file that grew after fstat is streamed by the hash stage instead. */
    char extra;
    ssize_t r = j->err == 0 && j->skip == 0 ? read(fd, &extra, 1) : -1;
    if (r == 0) {
      j->size = got;
      j->have = true;
    } else {
      if (r < 0 && j->err == 0 && j->skip == 0) read_failed(j, errno);
      free(j->data);
      j->data = NULL;
      if (j->err == 0 && j->skip == 0 && lseek(fd, 0, SEEK_SET) == 0) {
        j->fd = fd;
        fd = -1;
      } else if (j->err == 0 && j->skip == 0) {
        j->err = errno;
      }
    }
  } else {
    j->fd = fd;
    fd = -1;
  }
  if (fd >= 0) close(fd);
  *(job **)out = j;
  return 0;
}

/* Streams a big file; returns the run's error if it was cancelled meanwhile (checked per chunk). */
static int stream(weft_ctx *ctx, job *j, unsigned char *buf) {
  XXH3_state_t *st = XXH3_createState();
  if (st == NULL) return WEFT_ENOMEM;
  XXH3_64bits_reset(st);
  int rc = 0;
  while ((rc = weft_ctx_err(ctx)) == 0) {
    ssize_t r = read(j->fd, buf, CHUNK);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) read_failed(j, errno);
    if (r <= 0) break;
    XXH3_64bits_update(st, buf, (size_t)r);
    j->lines += count_lines(buf, (size_t)r);
    j->size += (uint64_t)r;
  }
  j->hash = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  close(j->fd);
  j->fd = -1;
  return rc;
}

static pthread_key_t chunk_key;
/* WEFT_DIGEST_DELAY_MS: each file waits this long in the hash stage, under the run's context (for the
 * interruption test, interrupt.sh, which needs a run that lasts; 0 = none). */
static int64_t hash_delay;

static int hash_stage(weft_ctx *ctx, const void *in, void *out, void *arg) {
  job *j = *(job *const *)in;
  if (hash_delay > 0) {
    int rc = weft_ctx_sleep(ctx, hash_delay);
    if (rc != 0) return rc; /* cancelled: not consumed, weft releases the job */
  }
  if (j->err == 0 && j->skip == SKIP_NONE) {
    if (j->have) {
      j->hash = XXH3_64bits(j->data, j->size);
      j->lines = count_lines(j->data, j->size);
      free(j->data);
      j->data = NULL;
    } else {
      /* One read buffer per hash worker thread, freed when the thread exits (key destructor). */
      unsigned char *buf = pthread_getspecific(chunk_key);
      if (buf == NULL) {
        if ((buf = malloc(CHUNK)) == NULL) return WEFT_ENOMEM; /* not consumed: weft releases the job */
        if (pthread_setspecific(chunk_key, buf) != 0) {
          free(buf);
          return WEFT_ENOMEM;
        }
      }
      int rc = stream(ctx, j, buf);
      if (rc != 0) return rc; /* cancelled: not consumed, weft releases the job */
    }
  }
  *(job **)out = j;
  return 0;
}

/* ---- count: the sink ------------------------------------------------------------------------------- */

static int count_stage(weft_ctx *ctx, const void *item, void *arg) {
  app *a = arg;
  job *j = *(job *const *)item;
  pthread_mutex_lock(&a->res_mu);
  if (a->frozen) { /* the run was abandoned and its summary printed: this file counts as not processed */
    pthread_mutex_unlock(&a->res_mu);
    job_free(j);
    return 0;
  }
  if (a->nres == a->cap) {
    size_t nc = a->cap ? 2 * a->cap : 4096;
    result *nr = realloc(a->res, nc * sizeof *nr);
    if (nr == NULL) {
      pthread_mutex_unlock(&a->res_mu);
      return WEFT_ENOMEM; /* not consumed: weft releases the job */
    }
    a->res = nr;
    a->cap = nc;
  }
  a->res[a->nres++] = (result){j->path, j->size, j->lines, j->hash, j->err, j->skip};
  pthread_mutex_unlock(&a->res_mu);
  atomic_fetch_add(&a->bytes_done, j->size);
  atomic_fetch_add(&a->files_done, 1);
  j->path = NULL; /* moved into the results */
  job_free(j);
  return 0;
}

/* ---- signals and progress -------------------------------------------------------------------------- */

static void on_second_signal(void *arg) {
  app *a = arg;
  atomic_fetch_add(&a->interrupted, 1);
  weft_ctx_cancel(a->run_cancel);
  pthread_mutex_lock(&a->mu);
  a->second_done = true;
  pthread_cond_broadcast(&a->cv);
  pthread_mutex_unlock(&a->mu);
}

static void on_first_signal(void *arg) {
  app *a = arg;
  atomic_fetch_add(&a->interrupted, 1);
  weft_pipeline_drain(a->p);
  pthread_mutex_lock(&a->mu);
  a->first_done = true;
  pthread_cond_broadcast(&a->cv);
  pthread_mutex_unlock(&a->mu);
}

/* Stops the signal callbacks, waiting for one that already started, so none runs after teardown. */
static void stop_signals(app *a) {
  pthread_mutex_lock(&a->mu);
  if (!weft_after_stop(a->h1))
    while (!a->first_done) pthread_cond_wait(&a->cv, &a->mu);
  if (!weft_after_stop(a->h2))
    while (!a->second_done) pthread_cond_wait(&a->cv, &a->mu);
  weft_after_free(a->h1);
  weft_after_free(a->h2);
  a->h1 = a->h2 = NULL;
  pthread_mutex_unlock(&a->mu);
}

static void *progress(void *arg) {
  app *a = arg;
  weft_stage_stats rd, hs;
  pthread_mutex_lock(&a->mu);
  while (!a->stop_progress) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 250000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&a->cv, &a->mu, &ts);
    if (a->stop_progress) break;
    weft_pipeline_stats(a->p, 1, &rd);
    weft_pipeline_stats(a->p, 2, &hs);
    fprintf(stderr, "\r\033[Kfound %lu  read %lu  hashed %lu  done %lu files, %.1f MiB  (queued: read %zu, hash %zu)%s",
            (unsigned long)atomic_load(&a->files_found), (unsigned long)rd.items_out, (unsigned long)hs.items_out,
            (unsigned long)atomic_load(&a->files_done), (double)atomic_load(&a->bytes_done) / (1 << 20),
            rd.queue_depth, hs.queue_depth,
            atomic_load(&a->interrupted) == 1 ? "  [draining: Ctrl-C again to cancel]" : "");
  }
  pthread_mutex_unlock(&a->mu);
  fprintf(stderr, "\r\033[K");
  return NULL;
}

static int cmp_result(const void *x, const void *y) {
  return strcmp(((const result *)x)->path, ((const result *)y)->path);
}

static void usage(FILE *f) {
  fprintf(f, "usage: weft-digest [-j WORKERS] [-q] [DIR]\n"
             "  prints size, line count and XXH3-64 checksum of every regular file under DIR\n"
             "  (default /usr/share), sorted by path, then a summary.\n"
             "  -j WORKERS  threads of each parallel stage, 1 to 256 (default: the number of CPUs)\n"
             "  -q          the summary only\n"
             "  --help, --version\n"
             "  Names holding a backslash, newline or other control byte are escaped (\\\\, \\n, \\r, \\t, \\xHH)\n"
             "  and their line starts with a backslash. Ctrl-C once drains, twice cancels.\n"
             "exit status: 0 all read; 1 some file or directory could not be read; 2 bad usage, a failed run\n"
             "  or an error writing the output; 130 interrupted.\n");
}

static void *runner(void *arg) {
  app *a = arg;
  int rc = weft_pipeline_run(a->p, a->run_ctx, &a->rep);
  pthread_mutex_lock(&a->mu);
  a->run_rc = rc;
  a->run_done = true;
  pthread_cond_broadcast(&a->cv);
  pthread_mutex_unlock(&a->mu);
  return NULL;
}

/* Waits for the run; after a second signal, for at most ABANDON_AFTER_MS more. Returns whether it ended. */
static bool wait_run(app *a) {
  pthread_mutex_lock(&a->mu);
  while (!a->run_done && !a->second_done) pthread_cond_wait(&a->cv, &a->mu);
  if (!a->run_done) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ABANDON_AFTER_MS / 1000;
    ts.tv_nsec += (ABANDON_AFTER_MS % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    while (!a->run_done && pthread_cond_timedwait(&a->cv, &a->mu, &ts) != ETIMEDOUT) {
    }
  }
  bool done = a->run_done;
  pthread_mutex_unlock(&a->mu);
  return done;
}

/* Prints the results and the summary; returns the exit status. abandoned: the run was given up while some
 * read did not return, rc and rep are not set. */
static int report(app *a, long workers, bool abandoned) {
  int rc = abandoned ? WEFT_ECANCELED : a->run_rc;
  const weft_pipeline_report *rep = &a->rep;
  if (a->nres > 0) qsort(a->res, a->nres, sizeof *a->res, cmp_result); /* res is NULL when nothing was recorded */
  uint64_t bytes = 0, lines = 0, unreadable = 0, skipped[3] = {0};
  for (size_t i = 0; i < a->nres; i++) {
    const result *r = &a->res[i];
    if (r->err != 0) {
      unreadable++;
      fputs("weft-digest: ", stderr);
      put_name(stderr, r->path);
      fprintf(stderr, ": %s\n", strerror(r->err));
    } else if (r->skip != SKIP_NONE) {
      skipped[r->skip]++;
      fputs("weft-digest: ", stderr);
      put_name(stderr, r->path);
      fputs(r->skip == SKIP_NOT_REGULAR ? ": skipped: not a regular file when opened\n"
                                        : ": skipped: reading it would block\n", stderr);
    } else {
      bytes += r->size;
      lines += r->lines;
      if (!a->quiet) {
        bool esc = needs_escape(r->path);
        printf("%s%016llx %12llu %10llu  ", esc ? "\\" : "", (unsigned long long)r->hash,
               (unsigned long long)r->size, (unsigned long long)r->lines);
        if (esc) put_escaped(stdout, r->path);
        else fputs(r->path, stdout);
        putchar('\n');
      }
    }
    free(r->path);
  }
  uint64_t nskip = skipped[SKIP_NOT_REGULAR] + skipped[SKIP_WOULD_BLOCK];
  double secs = abandoned ? 0 : (double)rep->elapsed_ns / 1e9;
  printf("# weft-digest ");
  put_name(stdout, a->root);
  printf(": %zu files, %llu bytes, %llu lines in %.2f s (%.1f MiB/s, %ld workers per stage)\n",
         a->nres - (size_t)unreadable - (size_t)nskip, (unsigned long long)bytes, (unsigned long long)lines, secs,
         secs > 0 ? (double)bytes / (1 << 20) / secs : 0.0, workers);
  uint64_t proc = atomic_load(&a->skipped_proc);
  if (nskip || proc)
    printf("# skipped: %llu files not regular when opened, %llu whose reads would block, %llu of /proc "
           "(made by the kernel, not listed)\n", (unsigned long long)skipped[SKIP_NOT_REGULAR],
           (unsigned long long)skipped[SKIP_WOULD_BLOCK], (unsigned long long)proc);
  if (unreadable || atomic_load(&a->dirs_unreadable))
    printf("# unreadable: %llu files, %llu directories (see stderr)\n", (unsigned long long)unreadable,
           (unsigned long long)atomic_load(&a->dirs_unreadable));
  int status = (unreadable || atomic_load(&a->dirs_unreadable)) ? 1 : 0;
  uint64_t found = atomic_load(&a->files_found), released = atomic_load(&a->not_processed);
  /* Abandoned, the files not processed are all those found and not recorded (released or still inside). */
  if (rc != 0 || rep->drained) {
    if (rc == 0)
      printf("# interrupted: drained. All %llu files found were processed; the walk stopped with %llu "
             "directories not visited.\n", (unsigned long long)found, (unsigned long long)atomic_load(&a->dirs_left));
    else if (abandoned)
      printf("# interrupted: cancelled. Processed %zu of the %llu files found; %llu files in flight were not "
             "processed; the walk stopped with %llu directories not visited; abandoned: a read did not return "
             "%d ms after the cancel.\n", a->nres, (unsigned long long)found, (unsigned long long)(found - a->nres),
             (unsigned long long)atomic_load(&a->dirs_left), ABANDON_AFTER_MS);
    else if (atomic_load(&a->interrupted) >= 2)
      printf("# interrupted: cancelled. Processed %zu of the %llu files found; %llu files in flight were not "
             "processed; the walk stopped with %llu directories not visited.\n", a->nres,
             (unsigned long long)found, (unsigned long long)released, (unsigned long long)atomic_load(&a->dirs_left));
    else
      printf("# failed: %s in stage %s; processed %zu files, %llu not processed.\n", weft_strerror(rc),
             rep->stage_name ? rep->stage_name : "-", a->nres, (unsigned long long)released);
    status = atomic_load(&a->interrupted) ? 128 + SIGINT : 2;
  }
  /* The output is the program's result: a failed write (closed stdout, a full disk, a closed pipe with
   * SIGPIPE ignored) must not pass for success. */
  errno = 0;
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "weft-digest: write error: %s\n", strerror(errno ? errno : EIO));
    status = 2;
  }
  return status;
}

/* A number from lo to hi, the whole argument; anything else (2x, 1e3, overflow) is refused. */
static bool parse_long(const char *s, long lo, long hi, long *out) {
  char *end;
  if (*s < '0' || *s > '9') return false; /* strtol would take leading blanks and signs */
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

int main(int argc, char **argv) {
  app a = {.root = "/usr/share", .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER,
           .res_mu = PTHREAD_MUTEX_INITIALIZER};
  long workers = sysconf(_SC_NPROCESSORS_ONLN);
  if (workers < 1) workers = 1;
  if (workers > 256) workers = 256;
  /* File buffers (up to READ_WHOLE_MAX) come from the heap and go back to it, rather than each being a
   * fresh mapping the kernel must zero and unmap (that was 5% of the time). */
  mallopt(M_MMAP_THRESHOLD, 2 * READ_WHOLE_MAX);
  mallopt(M_TRIM_THRESHOLD, 64 * READ_WHOLE_MAX);
  const char *delay = getenv("WEFT_DIGEST_DELAY_MS");
  if (delay != NULL) hash_delay = WEFT_MS(atol(delay));
  test_swap = getenv("WEFT_DIGEST_TEST_SWAP");
  test_stuck = getenv("WEFT_DIGEST_TEST_STUCK");
  if (test_stuck != NULL && pipe2(stuck_pipe, O_CLOEXEC) != 0) return 2;
  static const struct option longopts[] = {
      {"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}, {NULL, 0, NULL, 0}};
  int opt;
  while ((opt = getopt_long(argc, argv, "j:q", longopts, NULL)) != -1) {
    switch (opt) {
    case 'j':
      if (!parse_long(optarg, 1, 256, &workers)) {
        fprintf(stderr, "weft-digest: -j %s: the number of workers must be a whole number from 1 to 256\n", optarg);
        return 2;
      }
      break;
    case 'q': a.quiet = true; break;
    case 'h':
      usage(stdout);
      return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 2;
    case 'V':
      printf("weft-digest (weft %d.%d.%d, xxHash %u)\n", WEFT_VERSION_MAJOR, WEFT_VERSION_MINOR, WEFT_VERSION_PATCH,
             XXH_versionNumber());
      return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 2;
    default: usage(stderr); return 2;
    }
  }
  if (optind < argc) a.root = argv[optind++];
  if (optind < argc) {
    usage(stderr);
    return 2;
  }
  /* A closed stdout is an error now, not after the run; and no file opened later may become descriptor 1. */
  if (fcntl(STDOUT_FILENO, F_GETFD) < 0) {
    fprintf(stderr, "weft-digest: write error: standard output: %s\n", strerror(errno));
    return 2;
  }
  struct stat sb;
  int e = stat(a.root, &sb) != 0 ? errno : S_ISDIR(sb.st_mode) ? 0 : ENOTDIR;
  if (e != 0) {
    fputs("weft-digest: ", stderr);
    put_name(stderr, a.root);
    fprintf(stderr, ": %s\n", strerror(e));
    return 2;
  }

  if (pthread_key_create(&chunk_key, free) != 0) return 2;
  /* Signal contexts first, so every thread created later has SIGINT/SIGTERM blocked and weft gets them.
   * Both steps up front: a second Ctrl-C is counted however soon it follows the first; a third exits. */
  int rc = weft_ctx_with_signals_nth(weft_background(), NULL, 0, 1, false, &a.sig1, &a.sig1_cancel);
  if (rc == 0) rc = weft_ctx_with_signals_nth(weft_background(), NULL, 0, 2, true, &a.sig2, &a.sig2_cancel);
  if (rc == 0) rc = weft_ctx_after_func(a.sig1, on_first_signal, &a, &a.h1);
  if (rc == 0) rc = weft_ctx_after_func(a.sig2, on_second_signal, &a, &a.h2);
  if (rc == 0) rc = weft_ctx_with_cancel(weft_background(), &a.run_ctx, &a.run_cancel);
  if (rc == 0) rc = weft_pipeline_create(NULL, &a.p);
  weft_stage_opts o = WEFT_STAGE_OPTS_INIT;
  o.name = "walk";
  o.item_size = sizeof(job *);
  o.discard = job_release;
  o.discard_arg = &a;
  o.out_capacity = 4 * (size_t)workers;
  if (rc == 0) rc = weft_pipeline_source(a.p, &o, walk, &a);
  o = (weft_stage_opts)WEFT_STAGE_OPTS_INIT;
  o.workers = (size_t)workers;
  o.out_capacity = 4 * (size_t)workers; /* bounds the memory of files read ahead of the hashing */
  o.name = "read";
  if (rc == 0) rc = weft_pipeline_map(a.p, &o, read_stage, NULL);
  o.name = "hash";
  if (rc == 0) rc = weft_pipeline_map(a.p, &o, hash_stage, NULL);
  o = (weft_stage_opts)WEFT_STAGE_OPTS_INIT;
  o.name = "count";
  if (rc == 0) rc = weft_pipeline_sink(a.p, &o, count_stage, &a);
  if (rc != 0) {
    fprintf(stderr, "weft-digest: setup failed: %s\n", weft_strerror(rc));
    return 2;
  }

  pthread_t prog;
  bool show = isatty(STDERR_FILENO) && !getenv("WEFT_DIGEST_NO_PROGRESS");
  if (show) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    show = pthread_create(&prog, NULL, progress, &a) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
  }
  /* The run goes on its own thread so that a read that never returns cannot hold the summary (wait_run). */
  pthread_t run;
  if (pthread_create(&run, NULL, runner, &a) != 0) {
    fprintf(stderr, "weft-digest: setup failed: cannot start a thread\n");
    return 2;
  }
  bool ended = wait_run(&a);
  if (ended) {
    pthread_join(run, NULL);
  } else {
    /* Some read does not return after the cancel: the results so far are final, the rest is not processed. */
    pthread_mutex_lock(&a.res_mu);
    a.frozen = true;
    pthread_mutex_unlock(&a.res_mu);
  }
  stop_signals(&a);
  if (show) {
    pthread_mutex_lock(&a.mu);
    a.stop_progress = true;
    pthread_cond_signal(&a.cv);
    pthread_mutex_unlock(&a.mu);
    pthread_join(prog, NULL);
  }
  int status = report(&a, workers, !ended);
  if (!ended) _exit(status); /* the stuck threads cannot be joined, nor the pipeline destroyed */
  free(a.res);
  weft_pipeline_destroy(a.p);
  weft_ctx_end(a.run_cancel);
  weft_ctx_end(a.sig2_cancel);
  weft_ctx_end(a.sig1_cancel);
  return status;
}
