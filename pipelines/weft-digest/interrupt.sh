#!/usr/bin/env bash
# Ctrl-C on weft-digest: once drains, twice cancels (README). Each case runs the program on a tree of
# 200 files with WEFT_DIGEST_DELAY_MS set, so the run lasts seconds, sends SIGINT once the pipeline's
# threads are up (read from /proc, not guessed from time), and checks the outcome, not the timing:
#   drain:  exit 130, "interrupted: drained", every file the walk had found listed (the walk stops at the
#           signal; bounded channels keep it only a few files ahead, so fewer than 200), and every line's
#           checksum, size and line count right;
#   cancel: exit 130, "interrupted: cancelled", processed + not processed = found, at least one not
#           processed, and every line that is printed right;
#   a stuck read: once, the run keeps waiting; twice, it ends as cancel does, the stuck file not processed.
# The second signal is a SIGTERM: Ctrl-C and SIGTERM count alike.
#   interrupt.sh WEFT_DIGEST
set -euo pipefail
bin=$1
dir=$(mktemp -d "${TMPDIR:-/tmp}/weft-digest-int.XXXXXX")
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/tree"
for i in $(seq 1 200); do printf 'file %d\nline two\n' "$i" > "$dir/tree/f$i"; done

fail() { echo "interrupt.sh: $*" >&2; exit 1; }

# Waits until the program runs its pipeline (walk + 2 read + 2 hash workers + sink: 7 threads or more).
wait_running() {
  local pid=$1 n
  for _ in $(seq 1 500); do
    kill -0 "$pid" 2>/dev/null || fail "weft-digest ended before it could be interrupted"
    n=$(ls "/proc/$pid/task" 2>/dev/null | wc -l)
    [ "$n" -ge 7 ] && return 0
    sleep 0.01
  done
  fail "weft-digest did not start its pipeline within 5 s"
}

# Every listed file's checksum, size and line count, checked against xxhsum, stat and wc.
check_lines() {
  local out=$1 n=0 h size lines path
  while read -r h size lines path; do
    [ "$(xxhsum -H3 "$path" 2>/dev/null | sed -E 's/^XXH3 \(.*\) = //')" = "$h" ] || fail "wrong checksum: $path"
    [ "$(stat -c %s "$path")" = "$size" ] || fail "wrong size: $path"
    [ "$(wc -l < "$path")" = "$lines" ] || fail "wrong line count: $path"
    n=$((n + 1))
  done < <(grep -v '^#' "$out")
  echo "$n"
}

# A cancelled run's output: the "interrupted: cancelled" summary, every listed line right, as many lines as
# the summary says were processed, at least one file not processed, processed + not processed = found.
# Sets c_done and c_lost.   check_cancelled NAME OUT
check_cancelled() {
  local name=$1 out=$2 line found n
  line=$(grep '^# interrupted: cancelled' "$out") || { cat "$out" >&2; fail "$name: no 'interrupted: cancelled' summary"; }
  c_done=$(sed -E 's/.*Processed ([0-9]+) of the.*/\1/' <<< "$line")
  found=$(sed -E 's/.*of the ([0-9]+) files found.*/\1/' <<< "$line")
  c_lost=$(sed -E 's/.*; ([0-9]+) files in flight were not processed.*/\1/' <<< "$line")
  n=$(check_lines "$out")
  [ "$n" = "$c_done" ] || fail "$name: $n files listed, summary says $c_done"
  [ "$c_lost" -ge 1 ] || fail "$name: nothing was counted as not processed ($line)"
  [ $((c_done + c_lost)) = "$found" ] || fail "$name: processed $c_done + not processed $c_lost != $found found"
}

run_case() { # run_case SIGNALS DELAY_MS OUT -> exit status
  local signals=$1 delay=$2 out=$3 pid rc=0
  WEFT_DIGEST_DELAY_MS=$delay WEFT_DIGEST_NO_PROGRESS=1 "$bin" -j 2 "$dir/tree" > "$out" 2> "$out.err" &
  pid=$!
  wait_running "$pid"
  kill -INT "$pid"
  if [ "$signals" = 2 ]; then
    # At once: the second arrival counts however soon it follows the first. SIGTERM, not SIGINT again,
    # as the kernel merges a signal sent while one of the same number is still pending.
    kill -TERM "$pid"
  fi
  wait "$pid" || rc=$?
  echo "$rc"
}

# Drain: 200 files x 20 ms over 2 hash workers = 2 s.
rc=$(run_case 1 20 "$dir/drain")
[ "$rc" = 130 ] || { cat "$dir/drain" "$dir/drain.err" >&2; fail "drain: exit $rc, want 130"; }
line=$(grep '^# interrupted: drained' "$dir/drain") || fail "drain: no 'interrupted: drained' summary"
found=$(sed -E 's/.*All ([0-9]+) files found were processed.*/\1/' <<< "$line")
n=$(check_lines "$dir/drain")
[ "$n" = "$found" ] || fail "drain: $n files listed, the walk found $found"
{ [ "$n" -ge 1 ] && [ "$n" -lt 200 ]; } || fail "drain: $n files listed: the signal did not stop the walk"

# Cancel: 200 files x 100 ms over 2 hash workers = 10 s, cut short twice.
rc=$(run_case 2 100 "$dir/cancel")
[ "$rc" = 130 ] || { cat "$dir/cancel" "$dir/cancel.err" >&2; fail "cancel: exit $rc, want 130"; }
check_cancelled cancel "$dir/cancel"
done_n=$c_done lost_n=$c_lost
# A read that never returns (WEFT_DIGEST_TEST_STUCK: the read of the file named "stuck" blocks on a pipe nobody
# writes, retried on EINTR, as a read from a driver that ignores O_NONBLOCK and signals). Ctrl-C once drains:
# the run waits for that read. Twice: the run ends with its summary all the same, the stuck file not processed.
mkdir "$dir/stuck-tree"
for i in $(seq 1 20); do printf 'file %d\n' "$i" > "$dir/stuck-tree/f$i"; done
printf 'never read\n' > "$dir/stuck-tree/stuck"
out=$dir/stuck
# The abandoned run exits with its stuck threads on purpose: ThreadSanitizer would report them as leaked.
TSAN_OPTIONS="${TSAN_OPTIONS:-}:report_thread_leaks=0" WEFT_DIGEST_TEST_STUCK=stuck WEFT_DIGEST_NO_PROGRESS=1 \
  "$bin" -j 2 "$dir/stuck-tree" > "$out" 2> "$out.err" &
pid=$!
for _ in $(seq 1 500); do grep -q 'the read of stuck blocks' "$out.err" && break; sleep 0.01; done
grep -q 'the read of stuck blocks' "$out.err" || { kill -9 "$pid"; fail "stuck: the reader did not reach the file"; }
kill -INT "$pid"
sleep 0.3
kill -0 "$pid" 2>/dev/null || fail "stuck: the drain ended though a read is stuck"
kill -TERM "$pid"
# The program gives a stuck read a moment after the cancel; 30 s is only the bound of the test.
for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fail "stuck: Ctrl-C twice did not end the run within 30 s"; fi
rc=0
wait "$pid" || rc=$?
[ "$rc" = 130 ] || { cat "$out" "$out.err" >&2; fail "stuck: exit $rc, want 130"; }
check_cancelled stuck "$out"   # the stuck file among those not processed
s_done=$c_done s_lost=$c_lost
! grep -q '/stuck$' "$out" || fail "stuck: the stuck file is listed"

echo "weft-digest interrupt check passed (drain: $found of $found found; cancel: $done_n processed, $lost_n not;" \
     "stuck read: $s_done processed, $s_lost not)"
