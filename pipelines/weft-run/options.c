/* weft-run: the command line. Options come first (GNU parallel's names), then the command's words, then
 * input sources after ::: and ::::. Every value is range-checked, and a refused one says why. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weft-run.h"
#include "usage.h" /* WR_USAGE: usage.txt, generated at build time */

/* weft-run's stderr lock, once the run has one: a message never lands inside a job's error output. */
pthread_mutex_t *wr_msg_mu;

void wr_msg(const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n > sizeof buf - 2) n = (int)sizeof buf - 2;
  buf[n++] = '\n';
  char out[1100];
  int m = snprintf(out, sizeof out, "%s: %.*s", WR_NAME, n, buf);
  if (m > 0) {
    if (wr_msg_mu) pthread_mutex_lock(wr_msg_mu);
    ssize_t w = write(2, out, (size_t)m < sizeof out ? (size_t)m : sizeof out - 1);
    (void)w;
    if (wr_msg_mu) pthread_mutex_unlock(wr_msg_mu);
  }
}

/* Go's time.ParseDuration, plus a bare number meaning seconds (GNU parallel's --timeout). */
bool wr_parse_duration(const char *s, int64_t *out) {
  if (!s || !*s) return false;
  char *end;
  errno = 0;
  double bare = strtod(s, &end);
  if (*end == '\0') {
    if (errno || !(bare > 0) || bare > 9.2e9) return false;
    *out = (int64_t)(bare * 1e9);
    return *out > 0;
  }
  static const struct { const char *unit; double ns; } units[] = {
      {"ns", 1}, {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}};
  double total = 0;
  const char *p = s;
  while (*p) {
    if (!((*p >= '0' && *p <= '9') || *p == '.')) return false;
    errno = 0;
    double v = strtod(p, &end);
    if (errno || end == p || v < 0) return false;
    p = end;
    size_t best = 0, bestlen = 0;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
      size_t ul = strlen(units[i].unit);
      if (strncmp(p, units[i].unit, ul) == 0 && ul > bestlen) best = i, bestlen = ul;
    }
    if (bestlen == 0) return false;
    /* "m" must not swallow the "m" of "ms": the longest unit wins above */
    total += v * units[best].ns;
    p += bestlen;
  }
  if (!(total >= 1) || total > 9.2e18) return false;
  *out = (int64_t)total;
  return true;
}

static bool parse_size(const char *s, unsigned long long max, unsigned long long *out) {
  if (!s || !(*s >= '0' && *s <= '9')) return false; /* no sign, no white space: strtoull would take them */
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || v > max) return false;
  *out = v;
  return true;
}

static int parse_halt(const char *s, wr_opts *o) {
  if (!strcmp(s, "never") || !strcmp(s, "0")) { o->halt_when = WR_HALT_NEVER; return 0; }
  static const struct { const char *s; enum wr_halt_when w; enum wr_halt_why y; } legacy[] = {
      {"1", WR_HALT_SOON, WR_HALT_FAIL}, {"2", WR_HALT_NOW, WR_HALT_FAIL},
      {"-1", WR_HALT_SOON, WR_HALT_SUCCESS}, {"-2", WR_HALT_NOW, WR_HALT_SUCCESS}};
  for (size_t i = 0; i < 4; i++)
    if (!strcmp(s, legacy[i].s)) {
      o->halt_when = legacy[i].w, o->halt_why = legacy[i].y, o->halt_value = 1, o->halt_pct = false;
      return 0;
    }
  const char *why = s;
  const char *comma = strchr(s, ',');
  if (comma) {
    size_t wl = (size_t)(comma - s);
    if (wl == 3 && !strncmp(s, "now", 3)) o->halt_when = WR_HALT_NOW;
    else if (wl == 4 && !strncmp(s, "soon", 4)) o->halt_when = WR_HALT_SOON;
    else return -1;
    why = comma + 1;
  } else {
    o->halt_when = WR_HALT_SOON; /* "1-99%": soon,fail=P% */
    o->halt_why = WR_HALT_FAIL;
  }
  const char *val = why;
  if (comma) {
    if (!strncmp(why, "fail=", 5)) o->halt_why = WR_HALT_FAIL, val = why + 5;
    else if (!strncmp(why, "success=", 8)) o->halt_why = WR_HALT_SUCCESS, val = why + 8;
    else if (!strncmp(why, "done=", 5)) o->halt_why = WR_HALT_DONE, val = why + 5;
    else return -1;
  }
  char *end;
  errno = 0;
  double v = strtod(val, &end);
  if (errno || end == val || v <= 0) return -1;
  if (*end == '%' && end[1] == '\0') {
    if (v > 100) return -1;
    o->halt_pct = true;
  } else if (*end == '\0') {
    if (v != floor(v) || v > 1e15) return -1;
    if (!comma) return -1; /* a bare count other than the legacy values */
    o->halt_pct = false;
  } else {
    return -1;
  }
  o->halt_value = v;
  return 0;
}

/* Options that take a value; `v` is the value or NULL when it is missing. */
static int take_value(const char *name, const char *v, wr_opts *o) {
  if (!v) { wr_msg("option %s needs a value (see --help)", name); return -1; }
  unsigned long long n;
  if (!strcmp(name, "-j") || !strcmp(name, "--jobs") || !strcmp(name, "-P") || !strcmp(name, "--max-procs")) {
    if (!parse_size(v, WEFT_STAGE_MAX_WORKERS, &n)) {
      wr_msg("-j %s: not a number of jobs (0 for as many as the inputs allow, or 1 to %d)", v,
             WEFT_STAGE_MAX_WORKERS);
      return -1;
    }
    o->jobs = (size_t)n, o->jobs_auto = n == 0;
  } else if (!strcmp(name, "--submit") || !strcmp(name, "--worker") || !strcmp(name, "--collect")) {
    enum wr_mode m = name[2] == 's' ? WR_SUBMIT : name[2] == 'w' ? WR_WORKER : WR_COLLECT;
    if (o->mode != WR_LOCAL && o->mode != m) { wr_msg("--submit, --worker and --collect exclude each other"); return -1; }
    if (strncmp(v, "nats://", 7) != 0) { wr_msg("%s %s: expected nats://HOST:PORT/STREAM", name, v); return -1; }
    o->mode = m, o->url = v;
  } else if (!strcmp(name, "--timeout") || !strcmp(name, "--deadline") || !strcmp(name, "--term-grace") ||
             !strcmp(name, "--ack-wait") || !strcmp(name, "--idle")) {
    int64_t d;
    if (!wr_parse_duration(v, &d)) {
      wr_msg("%s %s: not a duration (examples: 300ms, 1.5s, 2m, 1h30m; a bare number is seconds)", name, v);
      return -1;
    }
    if (!strcmp(name, "--timeout")) o->timeout = d;
    else if (!strcmp(name, "--deadline")) o->deadline = d;
    else if (!strcmp(name, "--ack-wait")) o->ack_wait = d;
    else if (!strcmp(name, "--idle")) o->idle = d;
    else o->term_grace = d;
  } else if (!strcmp(name, "--retries")) {
    if (!parse_size(v, 1000000, &n) || n == 0) {
      wr_msg("--retries %s: not a number of attempts (1 to 1000000; 1 = no retry)", v);
      return -1;
    }
    o->retries = (unsigned)n;
  } else if (!strcmp(name, "--halt") || !strcmp(name, "--halt-on-error")) {
    if (parse_halt(v, o) != 0) {
      wr_msg("--halt %s: expected now|soon,fail|success|done=N|P%% (or 0, 1, 2, -1, -2, 1-99%%)", v);
      return -1;
    }
  } else if (!strcmp(name, "--joblog")) {
    if (!*v) { wr_msg("--joblog needs a file name"); return -1; }
    o->joblog = v;
  } else if (!strcmp(name, "-a") || !strcmp(name, "--arg-file")) {
    wr_source *s = realloc(o->src, (o->nsrc + 1) * sizeof *s);
    if (!s) { wr_msg("out of memory"); return -1; }
    o->src = s;
    o->src[o->nsrc++] = (wr_source){.kind = WR_SRC_FILE, .path = v};
  } else {
    wr_msg("unknown option %s (see --help)", name);
    return -1;
  }
  return 0;
}

static bool is_valued(const char *name) {
  static const char *const valued[] = {"-j", "--jobs", "-P", "--max-procs", "--timeout", "--deadline",
                                       "--term-grace", "--retries", "--halt", "--halt-on-error",
                                       "--joblog", "-a", "--arg-file", "--submit", "--worker", "--collect",
                                       "--ack-wait", "--idle", NULL};
  for (size_t i = 0; valued[i]; i++)
    if (!strcmp(name, valued[i])) return true;
  return false;
}

static int flag(const char *name, wr_opts *o) {
  if (!strcmp(name, "-0") || !strcmp(name, "--null")) o->nul = true;
  else if (!strcmp(name, "-k") || !strcmp(name, "--keep-order")) o->keep_order = true;
  else if (!strcmp(name, "-u") || !strcmp(name, "--ungroup")) o->out = WR_OUT_UNGROUP;
  else if (!strcmp(name, "--group")) o->out = WR_OUT_GROUP;
  else if (!strcmp(name, "--line-buffer") || !strcmp(name, "--lb")) o->out = WR_OUT_LINE;
  else if (!strcmp(name, "--tag")) o->tag = true;
  else if (!strcmp(name, "--link") || !strcmp(name, "--xapply")) o->link = true;
  else if (!strcmp(name, "--no-shell")) o->no_shell = true;
  else if (!strcmp(name, "--dry-run")) o->dry_run = true;
  else if (!strcmp(name, "--bar") || !strcmp(name, "--progress")) o->bar = 1;
  else if (!strcmp(name, "--no-bar")) o->bar = 0;
  else if (!strcmp(name, "--resume")) o->resume = o->resume == 2 ? 2 : 1;
  else if (!strcmp(name, "--resume-failed")) o->resume = 2;
  else if (!strcmp(name, "--will-cite")) { /* accepted for GNU parallel's habits; nothing to cite */
  } else return -1;
  return 0;
}

int wr_options(int argc, char **argv, wr_opts *o) {
  *o = (wr_opts){.jobs = 0, .out = WR_OUT_GROUP, .bar = -1, .timeout = WEFT_FOREVER,
                 .deadline = WEFT_FOREVER, .term_grace = WEFT_SEC(2), .retries = 1, .mode = WR_LOCAL,
                 .ack_wait = WEFT_SEC(30), .idle = WEFT_FOREVER};
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  size_t default_jobs = cores > 0 ? (size_t)cores : 1;
  int i = 1;
  for (; i < argc; i++) {
    char *arg = argv[i];
    if (!strcmp(arg, "--")) { i++; break; }
    if (!strcmp(arg, ":::") || !strcmp(arg, "::::") || arg[0] != '-' || arg[1] == '\0') break;
    if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
      fputs(WR_USAGE, stdout);
      return fflush(stdout) == 0 && !ferror(stdout) ? 1 : -1;
    }
    if (!strcmp(arg, "--version") || !strcmp(arg, "-V")) {
      printf("%s %s (weft %s)\n", WR_NAME, WR_VERSION, weft_version_string());
      return fflush(stdout) == 0 && !ferror(stdout) ? 1 : -1;
    }
    if (arg[1] == '-') { /* --name or --name=value */
      char *eq = strchr(arg, '=');
      if (eq) {
        *eq = '\0';
        bool valued = is_valued(arg);
        if (!valued) { wr_msg("option %s takes no value", arg); return -1; }
        if (take_value(arg, eq + 1, o) != 0) return -1;
      } else if (is_valued(arg)) {
        if (take_value(arg, i + 1 < argc ? argv[i + 1] : NULL, o) != 0) return -1;
        i++;
      } else if (flag(arg, o) != 0) {
        wr_msg("unknown option %s (see --help)", arg);
        return -1;
      }
      continue;
    }
    /* short options: -j4, -j 4, -ku, -a FILE */
    for (const char *c = arg + 1; *c; c++) {
      char name[3] = {'-', *c, '\0'};
      if (is_valued(name)) {
        const char *v = c[1] ? c + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (take_value(name, v, o) != 0) return -1;
        break;
      }
      if (flag(name, o) != 0) {
        wr_msg("unknown option %s (see --help)", name);
        return -1;
      }
    }
  }
  /* the command: words up to the first ::: or :::: */
  o->cmd = argv + i;
  while (i < argc && strcmp(argv[i], ":::") && strcmp(argv[i], "::::")) i++, o->ncmd++;
  if (o->mode == WR_WORKER || o->mode == WR_COLLECT) {
    /* the command lines and inputs are in the stream */
    if (i < argc || o->ncmd || o->nsrc) {
      wr_msg("--%s takes no command and no inputs: they come from the stream (see --help)",
             o->mode == WR_WORKER ? "worker" : "collect");
      return -1;
    }
    if (o->mode == WR_WORKER && o->halt_when != WR_HALT_NEVER && o->halt_pct) {
      wr_msg("--worker: --halt with a percentage needs the batch's size, which a worker does not know");
      return -1;
    }
    if (!o->jobs_auto && o->jobs == 0) o->jobs = default_jobs;
    if (o->jobs_auto) o->jobs = default_jobs, o->jobs_auto = false;
    return 0;
  }
  if (o->mode == WR_SUBMIT && o->no_shell) {
    wr_msg("--submit: --no-shell is not supported across machines (a job travels as a shell command line)");
    return -1;
  }
  if (o->ncmd == 0) {
    wr_msg("no command given (usage: %s [OPTIONS] COMMAND [ARG...] [::: ARGS...]; see --help)", WR_NAME);
    return -1;
  }
  /* sources after the command; -a files given before it come first, as GNU parallel orders them */
  while (i < argc) {
    bool files = !strcmp(argv[i], "::::");
    int start = ++i;
    while (i < argc && strcmp(argv[i], ":::") && strcmp(argv[i], "::::")) i++;
    if (files) {
      if (i == start) { wr_msg(":::: needs at least one file"); return -1; }
      for (int k = start; k < i; k++)
        if (take_value("-a", argv[k], o) != 0) return -1;
    } else {
      wr_source *s = realloc(o->src, (o->nsrc + 1) * sizeof *s);
      if (!s) { wr_msg("out of memory"); return -1; }
      o->src = s;
      o->src[o->nsrc++] = (wr_source){.kind = WR_SRC_ARGS, .args = argv + start, .nargs = (size_t)(i - start)};
    }
  }
  if (o->nsrc == 0) {
    wr_source *s = malloc(sizeof *s);
    if (!s) { wr_msg("out of memory"); return -1; }
    *s = (wr_source){.kind = WR_SRC_FILE, .path = "-"};
    o->src = s, o->nsrc = 1;
  }
  size_t stdin_uses = 0;
  for (size_t k = 0; k < o->nsrc; k++) stdin_uses += o->src[k].kind == WR_SRC_FILE && !strcmp(o->src[k].path, "-");
  if (stdin_uses > 1) { wr_msg("stdin (-) can be read by one input source only"); return -1; }
  if (o->out == WR_OUT_UNGROUP && o->tag) { wr_msg("--tag needs --group or --line-buffer, not --ungroup"); return -1; }
  if (o->keep_order && o->out != WR_OUT_GROUP) {
    wr_msg("-k/--keep-order needs --group output (the default), not --line-buffer or --ungroup");
    return -1;
  }
  if (o->resume && !o->joblog) { wr_msg("--resume and --resume-failed need --joblog FILE"); return -1; }
  if (!o->jobs_auto && o->jobs == 0) o->jobs = default_jobs;
  return 0;
}
