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
 * Exit status: 0; 1 if some file or directory could not be read; 2 on bad usage or a failed run;
 * 130 (128 + SIGINT) when interrupted. */
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
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <weft/weft.h>

#define READ_WHOLE_MAX (1u << 20) /* files up to 1 MiB are read whole by the read stage */
#define CHUNK (256u << 10)        /* bigger ones are streamed in 256 KiB reads by the hash stage */

typedef struct job {
  char *path;
  unsigned char *data; /* the whole file, when read by the read stage */
  uint64_t size, lines, hash;
  int err;             /* errno of a failed open/read, 0 if fine */
  bool have;           /* data holds the whole file */
} job;

typedef struct result {
  char *path;
  uint64_t size, lines, hash;
  int err;
} result;

typedef struct app {
  const char *root;
  weft_pipeline *p;
  weft_ctx *run_ctx;        /* the run's parent: cancelled by the second signal */
  weft_cancel *run_cancel;  /* kept by the program, used by the second signal's callback */
  weft_ctx *sig1, *sig2;    /* first signal: drain; second: cancel */
  weft_cancel *sig1_cancel, *sig2_cancel;
  weft_after *h1, *h2;      /* their callbacks (sig2 and h2 are set by the first callback, under mu) */
  bool first_done, second_done;
  result *res;
  size_t nres, cap;
  _Atomic uint64_t bytes_done, files_done, files_found;
  _Atomic uint64_t not_processed; /* jobs released by the pipeline */
  _Atomic uint64_t dirs_unreadable;
  uint64_t dirs_left;       /* directories the walk did not visit (stopped early) */
  _Atomic int interrupted;  /* signals seen */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stop_progress;
  bool quiet;
} app;

static void job_free(job *j) {
  free(j->path);
  free(j->data);
  free(j);
}

/* The release hook: a file the run did not finish. */
static void job_release(void *item, void *arg) {
  app *a = arg;
  job *j = *(job **)item;
  atomic_fetch_add(&a->not_processed, 1);
  if (atomic_load(&a->not_processed) <= 5 && !a->quiet) fprintf(stderr, "not processed: %s\n", j->path);
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
      if (type != DT_REG) {
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
  a->dirs_left = st.n;
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

/* read: loads a small file whole. Errors are the file's, not the run's: they travel in the job. */
static int read_stage(weft_ctx *ctx, const void *in, void *out, void *arg) {
  job *j = *(job *const *)in;
  int fd = open(j->path, O_RDONLY | O_CLOEXEC);
  struct stat sb;
  if (fd < 0 || fstat(fd, &sb) != 0) {
    j->err = errno;
  } else if (sb.st_size >= 0 && (uint64_t)sb.st_size <= READ_WHOLE_MAX) {
    j->data = malloc(sb.st_size > 0 ? (size_t)sb.st_size : 1);
    size_t got = 0;
    while (j->data != NULL && got < (size_t)sb.st_size) {
      ssize_t r = read(fd, j->data + got, (size_t)sb.st_size - got);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        if (r < 0) j->err = errno;
        break;
      }
      got += (size_t)r;
    }
    if (j->data == NULL) return WEFT_ENOMEM; /* not consumed: weft releases the job */
    /* A file that grew after fstat is streamed by the hash stage instead. */
    char extra;
    if (j->err == 0 && read(fd, &extra, 1) == 0) {
      j->size = got;
      j->have = true;
    } else {
      free(j->data);
      j->data = NULL;
    }
  }
  if (fd >= 0) close(fd);
  *(job **)out = j;
  return 0;
}

/* Streams a big file; returns the run's error if it was cancelled meanwhile (checked per chunk). */
static int stream(weft_ctx *ctx, job *j, unsigned char *buf) {
  int fd = open(j->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    j->err = errno;
    return 0;
  }
  XXH3_state_t *st = XXH3_createState();
  if (st == NULL) {
    close(fd);
    return WEFT_ENOMEM;
  }
  XXH3_64bits_reset(st);
  int rc = 0;
  while ((rc = weft_ctx_err(ctx)) == 0) {
    ssize_t r = read(fd, buf, CHUNK);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) j->err = errno;
    if (r <= 0) break;
    XXH3_64bits_update(st, buf, (size_t)r);
    j->lines += count_lines(buf, (size_t)r);
    j->size += (uint64_t)r;
  }
  j->hash = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  close(fd);
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
  if (j->err == 0) {
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
  if (a->nres == a->cap) {
    size_t nc = a->cap ? 2 * a->cap : 4096;
    result *nr = realloc(a->res, nc * sizeof *nr);
    if (nr == NULL) return WEFT_ENOMEM; /* not consumed: weft releases the job */
    a->res = nr;
    a->cap = nc;
  }
  a->res[a->nres++] = (result){j->path, j->size, j->lines, j->hash, j->err};
  atomic_fetch_add(&a->bytes_done, j->size);
  atomic_fetch_add(&a->files_done, 1);
  free(j->data);
  free(j); /* the path moved into the results */
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
  /* The second signal cancels; a third one exits at once (force_exit_on_second). */
  pthread_mutex_lock(&a->mu);
  if (weft_ctx_with_signals(weft_background(), NULL, 0, true, &a->sig2, &a->sig2_cancel) == 0 &&
      weft_ctx_after_func(a->sig2, on_second_signal, a, &a->h2) != 0)
    a->h2 = NULL;
  a->first_done = true;
  pthread_cond_broadcast(&a->cv);
  pthread_mutex_unlock(&a->mu);
}

/* Stops the signal callbacks, waiting for one that already started, so none runs after teardown. */
static void stop_signals(app *a) {
  pthread_mutex_lock(&a->mu);
  if (!weft_after_stop(a->h1))
    while (!a->first_done) pthread_cond_wait(&a->cv, &a->mu);
  if (a->h2 != NULL && !weft_after_stop(a->h2))
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

static void usage(void) {
  fprintf(stderr, "usage: weft-digest [-j WORKERS] [-q] [DIR]\n"
                  "  prints size, line count and XXH3-64 checksum of every regular file under DIR\n"
                  "  (default /usr/share), sorted by path, then a summary. -q: summary only.\n");
}

int main(int argc, char **argv) {
  app a = {.root = "/usr/share", .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
  long workers = sysconf(_SC_NPROCESSORS_ONLN);
  /* File buffers (up to READ_WHOLE_MAX) come from the heap and go back to it, rather than each being a
   * fresh mapping the kernel must zero and unmap (that was 5% of the time). */
  mallopt(M_MMAP_THRESHOLD, 2 * READ_WHOLE_MAX);
  mallopt(M_TRIM_THRESHOLD, 64 * READ_WHOLE_MAX);
  const char *delay = getenv("WEFT_DIGEST_DELAY_MS");
  if (delay != NULL) hash_delay = WEFT_MS(atol(delay));
  int opt;
  while ((opt = getopt(argc, argv, "j:qh")) != -1) {
    switch (opt) {
    case 'j': workers = atol(optarg); break;
    case 'q': a.quiet = true; break;
    default: usage(); return opt == 'h' ? 0 : 2;
    }
  }
  if (optind < argc) a.root = argv[optind++];
  if (optind < argc || workers < 1 || workers > 256) {
    usage();
    return 2;
  }
  struct stat sb;
  if (stat(a.root, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    fprintf(stderr, "weft-digest: %s: not a directory\n", a.root);
    return 2;
  }

  if (pthread_key_create(&chunk_key, free) != 0) return 2;
  /* Signal contexts first, so every thread created later has SIGINT/SIGTERM blocked and weft gets them. */
  int rc = weft_ctx_with_signals(weft_background(), NULL, 0, false, &a.sig1, &a.sig1_cancel);
  if (rc == 0) rc = weft_ctx_after_func(a.sig1, on_first_signal, &a, &a.h1);
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
  weft_pipeline_report rep;
  rc = weft_pipeline_run(a.p, a.run_ctx, &rep);
  stop_signals(&a);
  if (show) {
    pthread_mutex_lock(&a.mu);
    a.stop_progress = true;
    pthread_cond_signal(&a.cv);
    pthread_mutex_unlock(&a.mu);
    pthread_join(prog, NULL);
  }

  qsort(a.res, a.nres, sizeof *a.res, cmp_result);
  uint64_t bytes = 0, lines = 0, unreadable = 0;
  for (size_t i = 0; i < a.nres; i++) {
    const result *r = &a.res[i];
    if (r->err != 0) {
      unreadable++;
      fprintf(stderr, "weft-digest: %s: %s\n", r->path, strerror(r->err));
    } else {
      bytes += r->size;
      lines += r->lines;
      if (!a.quiet) printf("%016llx %12llu %10llu  %s\n", (unsigned long long)r->hash, (unsigned long long)r->size,
                           (unsigned long long)r->lines, r->path);
    }
    free(r->path);
  }
  double secs = (double)rep.elapsed_ns / 1e9;
  printf("# weft-digest %s: %zu files, %llu bytes, %llu lines in %.2f s (%.1f MiB/s, %ld workers per stage)\n",
         a.root, a.nres - (size_t)unreadable, (unsigned long long)bytes, (unsigned long long)lines, secs,
         secs > 0 ? (double)bytes / (1 << 20) / secs : 0.0, workers);
  if (unreadable || atomic_load(&a.dirs_unreadable))
    printf("# unreadable: %llu files, %llu directories (see stderr)\n", (unsigned long long)unreadable,
           (unsigned long long)atomic_load(&a.dirs_unreadable));
  int status = (unreadable || atomic_load(&a.dirs_unreadable)) ? 1 : 0;
  if (rc != 0 || rep.drained) {
    if (rc == 0)
      printf("# interrupted: drained. All %llu files found were processed; the walk stopped with %llu "
             "directories not visited.\n", (unsigned long long)atomic_load(&a.files_found),
             (unsigned long long)a.dirs_left);
    else if (atomic_load(&a.interrupted) >= 2)
      printf("# interrupted: cancelled. Processed %zu of the %llu files found; %llu files in flight were not "
             "processed; the walk stopped with %llu directories not visited.\n", a.nres,
             (unsigned long long)atomic_load(&a.files_found), (unsigned long long)atomic_load(&a.not_processed),
             (unsigned long long)a.dirs_left);
    else
      printf("# failed: %s in stage %s; processed %zu files, %llu not processed.\n", weft_strerror(rc),
             rep.stage_name ? rep.stage_name : "-", a.nres, (unsigned long long)atomic_load(&a.not_processed));
    status = atomic_load(&a.interrupted) ? 128 + SIGINT : 2;
  }
  free(a.res);
  weft_pipeline_destroy(a.p);
  weft_ctx_end(a.run_cancel);
  weft_ctx_end(a.sig2_cancel);
  weft_ctx_end(a.sig1_cancel);
  return status;
}
