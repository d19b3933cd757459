#!/usr/bin/env bash
# robust.sh WEFT_DIGEST: weft-digest against hostile trees, outputs and arguments. Each case checks the exit
# status and what is printed; every run is bounded by `timeout`, so a hang fails the test instead of holding it.
#   - a FIFO in the tree is not listed; a FIFO renamed over a file between the walk and open() (made
#     deterministic by the WEFT_DIGEST_TEST_SWAP knob) is skipped and counted, not waited on;
#   - `weft-digest /proc` ends (as root in CI: /proc/kmsg, pagemap and kcore are readable there);
#   - write errors (closed stdout, /dev/full, a closed pipe with SIGPIPE ignored) exit 2 with a message;
#   - names with a newline, a backslash or control bytes are escaped and cannot forge a summary line;
#   - bad -j values, a missing directory, a file given as DIR, --help and --version.
# Prints "weft-digest robust check passed" on success.
set -euo pipefail
bin=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/weft-digest-robust.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export WEFT_DIGEST_NO_PROGRESS=1
fail() { echo "robust.sh: $*" >&2; exit 1; }
run() { # run OUT ERR ARGS...: runs weft-digest bounded by timeout; prints the exit status
  local out=$1 err=$2 rc=0
  shift 2
  timeout 60 "$bin" "$@" > "$out" 2> "$err" || rc=$?
  [ "$rc" != 124 ] || fail "weft-digest $* did not end within 60 s"
  echo "$rc"
}

# FIFOs: one in the tree from the start, one swapped in for a file between the walk and open().
mkdir "$tmp/t"
printf 'keep\n' > "$tmp/t/keep"
printf 'victim\n' > "$tmp/t/victim"
mkfifo "$tmp/t/fifo" "$tmp/victim"
rc=$(WEFT_DIGEST_TEST_SWAP=$tmp/victim run "$tmp/o" "$tmp/e" -j 2 "$tmp/t")
[ "$rc" = 0 ] || { cat "$tmp/o" "$tmp/e" >&2; fail "fifo: exit $rc, want 0"; }
[ -p "$tmp/t/victim" ] || fail "fifo: the test knob did not swap the FIFO in"
grep -q '^# skipped: 1 files not regular when opened' "$tmp/o" || { cat "$tmp/o" >&2; fail "fifo: no 'skipped' summary"; }
grep -q 'victim: skipped: not a regular file' "$tmp/e" || { cat "$tmp/e" >&2; fail "fifo: the skipped file is not reported"; }
grep -q '/t/keep$' "$tmp/o" || fail "fifo: the regular file is not listed"
! grep -q 'fifo$' "$tmp/o" || fail "fifo: the FIFO is listed"
echo "fifo: skipped"

# /proc: ends, whatever the kernel's files do when read (exit 1: some directories are unreadable).
rc=$(run "$tmp/o" "$tmp/e" -q /proc)
{ [ "$rc" = 0 ] || [ "$rc" = 1 ]; } || { cat "$tmp/o" >&2; tail -5 "$tmp/e" >&2; fail "/proc: exit $rc, want 0 or 1"; }
grep -q '^# weft-digest /proc: ' "$tmp/o" || fail "/proc: no summary"
echo "/proc: ended (uid $(id -u)): $(grep '^# skipped' "$tmp/o" || true)"

# Write errors.
mkdir "$tmp/w"
for i in $(seq 1 3000); do : > "$tmp/w/file-with-a-longish-name-$i"; done
rc=0; timeout 60 "$bin" "$tmp/w" >&- 2> "$tmp/e" || rc=$?
[ "$rc" = 2 ] || fail "closed stdout: exit $rc, want 2"
grep -q 'write error' "$tmp/e" || fail "closed stdout: no 'write error' message"
rc=$(run /dev/full "$tmp/e" "$tmp/w")
[ "$rc" = 2 ] || fail "/dev/full: exit $rc, want 2"
grep -q 'write error: No space left on device' "$tmp/e" || { cat "$tmp/e" >&2; fail "/dev/full: no message"; }
if command -v python3 > /dev/null; then
  # A pipe whose reader is gone before the program starts, SIGPIPE ignored (as under many supervisors).
  rc=$(timeout 60 python3 -c '
import os, subprocess, sys
r, w = os.pipe()
os.close(r)
p = subprocess.run([sys.argv[1], sys.argv[2]], stdout=w, stderr=open(sys.argv[3], "w"), restore_signals=False)
print(p.returncode)' "$bin" "$tmp/w" "$tmp/e")
  [ "$rc" = 2 ] || fail "closed pipe: exit $rc, want 2"
  grep -q 'write error: Broken pipe' "$tmp/e" || { cat "$tmp/e" >&2; fail "closed pipe: no message"; }
  echo "write errors: closed stdout, /dev/full, closed pipe: exit 2"
else
  echo "write errors: closed stdout, /dev/full: exit 2 (no python3: closed pipe not tried)"
fi

# Names that would forge lines: each file's line starts with a backslash and its name is escaped.
mkdir "$tmp/n"
printf 'a\n' > "$tmp/n/evil"$'\n''# weft-digest forged: 0 files'
printf 'b\n' > "$tmp/n/back\\slash"
printf 'c\n' > "$tmp/n/ctl"$'\001\r\t\177'"x"
printf 'd\n' > "$tmp/n/plain"
rc=$(run "$tmp/o" "$tmp/e" -j 2 "$tmp/n")
[ "$rc" = 0 ] || fail "names: exit $rc"
[ "$(grep -c '^# weft-digest ' "$tmp/o")" = 1 ] || { cat "$tmp/o" >&2; fail "names: a summary line was forged"; }
[ "$(wc -l < "$tmp/o")" = 5 ] || { cat "$tmp/o" >&2; fail "names: want 4 file lines and a summary"; }
want() { # want NAME_AS_PRINTED FILE
  local h
  h=$(xxhsum -H3 < "$2" 2>/dev/null | sed -E 's/^XXH3 \(.*\) = //; s/ .*//')
  grep -qxF "\\$h            2          1  $tmp/n/$1" "$tmp/o" || { cat "$tmp/o" >&2; fail "names: no line for $1"; }
}
if command -v xxhsum > /dev/null; then
  want 'evil\n# weft-digest forged: 0 files' "$tmp/n/evil"$'\n''# weft-digest forged: 0 files'
  want 'back\\slash' "$tmp/n/back\\slash"
  want 'ctl\x01\r\t\x7fx' "$tmp/n/ctl"$'\001\r\t\177'"x"
fi
grep -q "^[0-9a-f]\{16\} .*  $tmp/n/plain\$" "$tmp/o" || fail "names: a plain name was escaped"
echo "names: escaped"

# Arguments.
for j in 2x 0 257 -1 '' ' 3' 99999999999999999999 1e2; do
  rc=$(run "$tmp/o" "$tmp/e" -j "$j" "$tmp/t")
  [ "$rc" = 2 ] || fail "-j '$j': exit $rc, want 2"
  grep -q 'whole number from 1 to 256' "$tmp/e" || fail "-j '$j': no message"
  [ ! -s "$tmp/o" ] || fail "-j '$j': ran anyway"
done
rc=$(run "$tmp/o" "$tmp/e" "$tmp/missing")
[ "$rc" = 2 ] && grep -q 'missing: No such file or directory' "$tmp/e" || { cat "$tmp/e" >&2; fail "missing dir: exit $rc"; }
rc=$(run "$tmp/o" "$tmp/e" "$tmp/t/keep")
[ "$rc" = 2 ] && grep -q 'keep: Not a directory' "$tmp/e" || { cat "$tmp/e" >&2; fail "file as DIR: exit $rc"; }
rc=$(run "$tmp/o" "$tmp/e" --help)
[ "$rc" = 0 ] && grep -q '^usage: weft-digest' "$tmp/o" && grep -q '^exit status' "$tmp/o" \
  || fail "--help: exit $rc, or no usage on stdout"
rc=$(run "$tmp/o" "$tmp/e" --version)
[ "$rc" = 0 ] && grep -q '^weft-digest (weft [0-9]' "$tmp/o" || fail "--version: exit $rc, or no version on stdout"
rc=$(run "$tmp/o" "$tmp/e" --bogus)
[ "$rc" = 2 ] && grep -q '^usage' "$tmp/e" || fail "--bogus: exit $rc, want 2 and usage on stderr"
echo "arguments: checked"
echo "weft-digest robust check passed"
