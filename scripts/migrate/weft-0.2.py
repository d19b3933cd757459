#!/usr/bin/env python3
"""Rewrites C sources written against weft 0.1 to the 0.2 API, as far as a script can (CHANGELOG.md lists
every change). What it cannot decide it leaves for the compiler to point at: build with
-Werror=incompatible-pointer-types, since passing a weft_ctx * where a weft_cancel * is wanted is only a
warning in C.

    python3 scripts/migrate/weft-0.2.py FILE.c ...        # rewrites the files in place: run it once

It swaps the arguments of weft_chan_send/recv and weft_pipeline_create, so a second run would swap them
back.
"""
import re
import sys

CANCELLABLE = ['weft_ctx_with_cancel', 'weft_ctx_with_deadline_cause', 'weft_ctx_with_timeout_cause',
               'weft_ctx_with_deadline', 'weft_ctx_with_timeout', 'weft_ctx_with_parents',
               'weft_ctx_with_signals']
NOCANCEL = ['weft_ctx_with_value', 'weft_ctx_without_cancel']


def split_args(s, i):
    """s[i] is '('. Returns (args, end) with end the index after the matching ')'."""
    depth, args, cur, j = 0, [], '', i
    while j < len(s):
        ch = s[j]
        if ch in '([{':
            depth += 1
            if depth > 1:
                cur += ch
        elif ch in ')]}':
            depth -= 1
            if depth == 0:
                args.append(cur)
                return args, j + 1
            cur += ch
        elif ch == ',' and depth == 1:
            args.append(cur)
            cur = ''
        elif ch == '"' or ch == "'":
            k = j + 1
            while s[k] != ch:
                k += 2 if s[k] == '\\' else 1
            cur += s[j:k + 1]
            j = k
        else:
            cur += ch
        j += 1
    raise ValueError('unbalanced')


def calls(s, name):
    """Yields (start, paren, args, end) for each call of `name`, last first (so edits keep offsets)."""
    out = []
    for m in re.finditer(r'\b' + re.escape(name) + r'\s*\(', s):
        try:
            args, end = split_args(s, m.end() - 1)
        except (ValueError, IndexError):
            continue
        out.append((m.start(), m.end() - 1, args, end))
    return reversed(out)


def rewrite_call(s, name, fn):
    for start, paren, args, end in calls(s, name):
        new = fn(args)
        if new is not None:
            s = s[:start] + new + s[end:]
    return s


def cancel_name(var):
    v = var.strip()
    if not re.fullmatch(r'[A-Za-z_]\w*((->|\.)[A-Za-z_]\w*)*', v):
        return None  # an array element or an expression: left for the compiler to point at
    if v == 'ctx':
        return 'cancel'
    m = re.fullmatch(r'(.*?)(->|\.)ctx', v)
    if m:
        return m.group(1) + m.group(2) + 'cancel'
    if v.endswith('ctx'):
        return v[:-3] + 'cancel'
    return v + '_cancel'


def functions(s):
    """Splits s into top-level chunks at brace depth 0, so names are tracked per function."""
    chunks, depth, last = [], 0, 0
    i = 0
    while i < len(s):
        ch = s[i]
        if ch == '{':
            depth += 1
        elif ch == '}':
            depth -= 1
            if depth == 0:
                chunks.append(s[last:i + 1])
                last = i + 1
        elif ch == '"':
            k = i + 1
            while k < len(s) and s[k] != '"':
                k += 2 if s[k] == '\\' else 1
            i = k
        i += 1
    chunks.append(s[last:])
    return chunks


def migrate_function(f):
    made = {}      # output expression -> cancel expression
    arrays = {}    # arrays of contexts -> arrays of their cancel handles
    plain = set()  # contexts with no cancel of their own

    def add_cancel(args):
        out = args[-1].strip()
        if not out.startswith('&') or 'cancel' in args[-1]:
            return None
        var = out[1:].strip()
        if cancel_name(var) is not None:
            made[var] = cancel_name(var)
        m = re.fullmatch(r'([A-Za-z_]\w*)((\[[^\]]+\])+)', var)
        if m:
            arrays[m.group(1)] = m.group(1) + '_cancel'
        return None

    for name in CANCELLABLE:
        for start, paren, args, end in calls(f, name):
            if len(args) >= 2 and not any('cancel' in a for a in args[-1:]):
                add_cancel(args)
    for name in NOCANCEL:
        for start, paren, args, end in calls(f, name):
            out = args[-1].strip()
            if out.startswith('&'):
                plain.add(out[1:].strip())

    def lookup(v):
        if v in made:
            return made[v]
        m = re.fullmatch(r'([A-Za-z_]\w*)((\[[^\]]+\])+)', v)
        if m and m.group(1) in arrays:
            return arrays[m.group(1)] + m.group(2)
        return None

    def extend(args, name):
        out = args[-1].strip()
        if not out.startswith('&'):
            return None
        var = out[1:].strip()
        c = lookup(var)
        if c is None:
            return None
        return name + '(' + ','.join(args) + ', &' + c + ')'

    for name in CANCELLABLE:
        f = rewrite_call(f, name, lambda a, n=name: extend(a, n) if len(a) >= 2 else None)

    def on_cancel(name):
        def fn(args):
            v = args[0].strip()
            if lookup(v) is not None:
                return name + '(' + ', '.join([lookup(v)] + [a.strip() for a in args[1:]]) + ')'
            if name == 'weft_ctx_end' and v in plain:
                return 'weft_ctx_release(' + v + ')'
            return None
        return fn

    for name in ['weft_ctx_end', 'weft_ctx_cancel', 'weft_ctx_cancel_cause']:
        f = rewrite_call(f, name, on_cancel(name))

    # Declare arrays of cancel handles beside the arrays of contexts they belong to.
    for var, cvar in arrays.items():
        if re.search(r'weft_cancel\s*\*\s*' + re.escape(cvar) + r'\b', f):
            continue
        m = re.search(r'^([ \t]*)weft_ctx\b[^;()]*?\*\s*' + re.escape(var) + r'((\[[^\]]+\])+)[^;()]*;[^\n]*\n', f, re.M)
        if m:
            f = f[:m.end()] + m.group(1) + 'weft_cancel *' + cvar + m.group(2) + ';\n' + f[m.end():]
    # Declare the cancel handles of plain local variables beside their weft_ctx declarations.
    for var, cvar in made.items():
        if not re.fullmatch(r'[A-Za-z_]\w*', var):
            continue
        if re.search(r'weft_cancel\s*\*\s*' + re.escape(cvar) + r'\b', f):
            continue
        m = re.search(r'^([ \t]*)weft_ctx\s*\*[^;()]*?\b' + re.escape(var) + r'\b[^;()]*;[^\n]*\n', f, re.M)
        if m:
            decl = m.group(1) + 'weft_cancel *' + cvar + ' = NULL;\n'
            f = f[:m.end()] + decl + f[m.end():]
    return f


def swap01(name):
    def fn(args):
        if len(args) < 2:
            return None
        return name + '(' + ', '.join([args[1].strip(), args[0].strip()] + [a.strip() for a in args[2:]]) + ')'
    return fn


def migrate(s):
    s = ''.join(migrate_function(f) for f in functions(s))
    s = rewrite_call(s, 'weft_chan_send', swap01('weft_chan_send'))
    s = rewrite_call(s, 'weft_chan_recv', swap01('weft_chan_recv'))
    s = rewrite_call(s, 'weft_pipeline_create', swap01('weft_pipeline_create'))

    def pump(args):
        kind = args[0].strip()
        rest = ', '.join(a.strip() for a in args[1:])
        if kind == 'WEFT_PUMP_MERGE':
            return 'weft_chan_merge_start(' + rest + ')'
        if kind == 'WEFT_PUMP_TEE':
            return 'weft_chan_tee_start(' + rest + ')'
        return None
    s = rewrite_call(s, 'weft_chan_pump_start', pump)

    def submit_ex(args):
        a = [x.strip() for x in args]
        return 'weft_pool_submit_opts(' + ', '.join([a[0], 'NULL'] + a[1:]) + ')'
    s = rewrite_call(s, 'weft_pool_submit_ex', submit_ex)

    s = re.sub(r'\bweft_select_try\b', 'weft_try_select', s)
    s = re.sub(r'\bweft_chan_get_stats\b', 'weft_chan_stats', s)
    s = re.sub(r'\bweft_pool_stats_get\b', 'weft_pool_stats', s)
    s = re.sub(r'(?<!struct )\bweft_(chan|pool)_stats(\s+\*?\s*[A-Za-z_])', r'struct weft_\1_stats\2', s)
    s = re.sub(r'\bweft_ctx_wait\(', 'weft_ctx_wait_until(', s)
    s = re.sub(r'\bweft_release_fn\b', 'weft_discard_fn', s)
    s = re.sub(r'(\.|->)release_arg\b', r'\1discard_arg', s)
    s = re.sub(r'(\.|->)release\b(?!_)', r'\1discard', s)
    s = re.sub(r'\b(rep|report|r|st|stats|ss)(\.|->)released\b', r'\1\2discarded', s)
    s = re.sub(r'\bWEFT_POOL_SETTLE\b', 'WEFT_MS(100)', s)
    s = re.sub(r'\bWEFT_POOL_CLAIM\b', '16', s)
    return s


if __name__ == '__main__':
    for path in sys.argv[1:]:
        with open(path) as fh:
            src = fh.read()
        out = migrate(src)
        if out != src:
            with open(path, 'w') as fh:
                fh.write(out)
            print('migrated', path)
