/* weft-run: the command template. The words are parsed once into literal text and replacement strings;
 * a job's command is then built by copying. Inputs are quoted for /bin/sh (single quotes, ' as '\''), so
 * every byte but NUL reaches the job as it was read; with --no-shell each word becomes one argument as
 * is. The modifiers follow GNU parallel's definitions:
 *   {.}  drops a last ".ext" that has no / or . in it      {/}  drops everything up to the last /
 *   {//} drops the last "/..." (no / at all: ".")          {/.} both {/} and {.} */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft-run.h"

enum seg_kind { SEG_TEXT, SEG_ARG, SEG_SEQ, SEG_SLOT };
enum mod { MOD_NONE, MOD_NOEXT, MOD_BASE, MOD_DIR, MOD_BASE_NOEXT };

typedef struct seg {
  enum seg_kind kind;
  const char *text;   /* SEG_TEXT */
  size_t len;
  size_t src;         /* SEG_ARG: 0 = every input ({}), k = the k-th source */
  enum mod mod;
  size_t word;        /* which command word it belongs to */
} seg;

struct wr_template {
  seg *segs;
  size_t n;
  size_t nwords;
  bool has_repl, uses_slot;
};

/* Recognises a replacement string at p ("{...}"); returns its length, 0 if it is not one. */
static size_t repl_at(const char *p, seg *out) {
  if (p[0] != '{') return 0;
  const char *q = p + 1;
  size_t src = 0;
  if (*q == '#' && q[1] == '}') { *out = (seg){.kind = SEG_SEQ}; return 3; }
  if (*q == '%' && q[1] == '}') { *out = (seg){.kind = SEG_SLOT}; return 3; }
  if (*q >= '1' && *q <= '9') {
    while (*q >= '0' && *q <= '9') {
      src = src * 10 + (size_t)(*q - '0');
      if (src > 1000000) return 0;
      q++;
    }
  }
  enum mod m;
  size_t ml;
  if (!strncmp(q, "/.}", 3)) m = MOD_BASE_NOEXT, ml = 2;
  else if (!strncmp(q, "//}", 3)) m = MOD_DIR, ml = 2;
  else if (!strncmp(q, "/}", 2)) m = MOD_BASE, ml = 1;
  else if (!strncmp(q, ".}", 2)) m = MOD_NOEXT, ml = 1;
  else if (*q == '}') m = MOD_NONE, ml = 0;
  else return 0;
  *out = (seg){.kind = SEG_ARG, .src = src, .mod = m};
  return (size_t)(q - p) + ml + 1;
}

static int push(wr_template *t, seg s) {
  seg *n = realloc(t->segs, (t->n + 1) * sizeof *n);
  if (!n) return -1;
  t->segs = n;
  t->segs[t->n++] = s;
  return 0;
}

int wr_template_parse(const wr_opts *o, wr_template **out) {
  wr_template *t = calloc(1, sizeof *t);
  if (!t) goto nomem;
  t->nwords = o->ncmd;
  for (size_t w = 0; w < o->ncmd; w++) {
    const char *p = o->cmd[w];
    const char *lit = p;
    while (*p) {
      seg r;
      size_t l = repl_at(p, &r);
      if (l == 0) { p++; continue; }
      if (r.kind == SEG_ARG && r.src > o->nsrc) {
        wr_msg("%.*s: there are only %zu input sources", (int)l, p, o->nsrc);
        wr_template_free(t);
        return -1;
      }
      if (p > lit && push(t, (seg){.kind = SEG_TEXT, .text = lit, .len = (size_t)(p - lit), .word = w}) != 0)
        goto nomem;
      r.word = w;
      if (push(t, r) != 0) goto nomem;
      t->has_repl = true;
      t->uses_slot |= r.kind == SEG_SLOT;
      p += l;
      lit = p;
    }
    /* an empty word still separates (and with --no-shell is an empty argument) */
    if (push(t, (seg){.kind = SEG_TEXT, .text = lit, .len = (size_t)(p - lit), .word = w}) != 0) goto nomem;
  }
  *out = t;
  return 0;
nomem:
  wr_msg("out of memory");
  wr_template_free(t);
  return -1;
}

bool wr_template_uses_slot(const wr_template *t) { return t->uses_slot; }

void wr_template_free(wr_template *t) {
  if (!t) return;
  free(t->segs);
  free(t);
}

/* ---- building ----------------------------------------------------------------------------------- */

typedef struct sbuf {
  char *p;
  size_t len, cap;
  bool fail;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
  if (b->fail) return;
  if (n > SIZE_MAX / 2 - b->len) { b->fail = true; return; }
  if (b->len + n + 1 > b->cap) {
    size_t nc = b->cap ? b->cap : 128;
    while (nc < b->len + n + 1) nc *= 2;
    char *np = realloc(b->p, nc);
    if (!np) { b->fail = true; return; }
    b->p = np, b->cap = nc;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static bool safe_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
         c == '.' || c == '/' || c == ',' || c == ':' || c == '@' || c == '%' || c == '+' || c == '=';
}

static void sb_quoted(sbuf *b, const char *s, size_t n) {
  bool safe = n > 0;
  for (size_t i = 0; i < n && safe; i++) safe = safe_char((unsigned char)s[i]);
  if (safe) { sb_add(b, s, n); return; }
  sb_add(b, "'", 1);
  size_t from = 0;
  for (size_t i = 0; i < n; i++)
    if (s[i] == '\'') {
      sb_add(b, s + from, i - from);
      sb_add(b, "'\\''", 4);
      from = i + 1;
    }
  sb_add(b, s + from, n - from);
  sb_add(b, "'", 1);
}

/* The modified view of an input (a substring, or "." for the dirname of a name without /). */
static void modified(enum mod m, const char *s, size_t n, const char **out, size_t *outn) {
  if (m == MOD_BASE || m == MOD_BASE_NOEXT) {
    const char *slash = memrchr(s, '/', n);
    if (slash) n -= (size_t)(slash + 1 - s), s = slash + 1;
  }
  if (m == MOD_NOEXT || m == MOD_BASE_NOEXT) {
    for (size_t i = n; i-- > 0;) {
      if (s[i] == '/') break;
      if (s[i] == '.') { n = i; break; }
    }
  }
  if (m == MOD_DIR) {
    const char *slash = memrchr(s, '/', n);
    if (slash) n = (size_t)(slash - s);
    else s = ".", n = 1;
  }
  *out = s, *outn = n;
}

static void add_repl(sbuf *b, const seg *g, uint64_t seq, size_t slot, char *const *args, const size_t *lens,
                     size_t nargs, bool quote) {
  char num[32];
  if (g->kind == SEG_SEQ || g->kind == SEG_SLOT) {
    int l = snprintf(num, sizeof num, "%" PRIu64, g->kind == SEG_SEQ ? seq : (uint64_t)slot);
    sb_add(b, num, (size_t)l);
    return;
  }
  size_t from = g->src ? g->src - 1 : 0, to = g->src ? g->src : nargs;
  for (size_t k = from; k < to; k++) {
    const char *s;
    size_t n;
    modified(g->mod, args[k], lens[k], &s, &n);
    if (k > from) sb_add(b, " ", 1);
    if (quote) sb_quoted(b, s, n);
    else sb_add(b, s, n);
  }
}

char *wr_command_line(const wr_template *t, uint64_t seq, size_t slot, char *const *args, const size_t *lens,
                      size_t nargs, size_t *len) {
  sbuf b = {0};
  size_t word = 0;
  for (size_t i = 0; i < t->n; i++) {
    const seg *g = &t->segs[i];
    if (g->word != word) sb_add(&b, " ", 1), word = g->word;
    if (g->kind == SEG_TEXT) sb_add(&b, g->text, g->len);
    else add_repl(&b, g, seq, slot, args, lens, nargs, true);
  }
  if (!t->has_repl)
    for (size_t k = 0; k < nargs; k++) sb_add(&b, " ", 1), sb_quoted(&b, args[k], lens[k]);
  if (b.fail || !b.p) { free(b.p); return NULL; }
  *len = b.len;
  return b.p;
}

char **wr_command_argv(const wr_template *t, uint64_t seq, size_t slot, char *const *args, const size_t *lens,
                       size_t nargs) {
  /* the words one after another, NUL-separated, then the pointer array in front of them */
  sbuf b = {0};
  size_t words = t->nwords + (t->has_repl ? 0 : nargs);
  size_t word = 0;
  for (size_t i = 0; i < t->n; i++) {
    const seg *g = &t->segs[i];
    if (g->word != word) sb_add(&b, "", 1), word = g->word;
    if (g->kind == SEG_TEXT) sb_add(&b, g->text, g->len);
    else add_repl(&b, g, seq, slot, args, lens, nargs, false);
  }
  sb_add(&b, "", 1);
  if (!t->has_repl)
    for (size_t k = 0; k < nargs; k++) sb_add(&b, args[k], lens[k]), sb_add(&b, "", 1);
  if (b.fail || !b.p) { free(b.p); return NULL; }
  size_t head = (words + 1) * sizeof(char *);
  char **argv = malloc(head + b.len);
  if (!argv) { free(b.p); return NULL; }
  char *strings = (char *)argv + head;
  memcpy(strings, b.p, b.len);
  free(b.p);
  char *p = strings;
  for (size_t w = 0; w < words; w++) {
    argv[w] = p;
    p += strlen(p) + 1;
  }
  argv[words] = NULL;
  return argv;
}
