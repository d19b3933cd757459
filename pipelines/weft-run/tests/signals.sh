#!/usr/bin/env bash
# signals.sh WEFT_RUN: Ctrl-C and SIGTERM, once (drain) and twice (cancel). 20 jobs at -j 2 that each mark
# their start and wait for the test's "release" file; the signal comes once two have started.
#   - drain (SIGINT, SIGTERM, SIGHUP): the two running jobs finish (released after the signal) and print, no
#     other job starts; exit 128+signal; the summary: 2 done, 18 not started, adding up to the 20 inputs; 2
#     joblog lines;
#   - cancel (SIGINT twice; SIGINT then SIGTERM, also at once): the running jobs are killed (joblog -1/15, no survivor), the
#     summary 2 killed, 18 not started; jobs that ignore SIGTERM are SIGKILLed after --term-grace (-1/9);
#     afterwards --resume runs the 18 never started, --resume-failed the 2 killed; a third signal: exit at once;
#   - stdin streamed (100,000 lines): drained, the classes add up to the inputs read;
#   - a run waiting for input that does not come (the test holds the pipe open) ends on SIGINT.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
log=$tmp/log
# hold.sh DIR ID: marks its start, waits (120 s at most) for DIR/release, prints.
cat > "$tmp/hold.sh" <<'SH'
#!/bin/sh
touch "$1/s.$2"
i=0
while [ ! -e "$1/release" ] && [ "$i" -lt 6000 ]; do sleep 0.02; i=$((i + 1)); done
echo "released $2"
SH
# Jobs that ignore SIGTERM (the ignored disposition passes to their sleeps).
cat > "$tmp/hold-noterm.sh" <<'SH'
#!/bin/sh
trap '' TERM
touch "$1/s.$2"
i=0
while [ ! -e "$1/release" ] && [ "$i" -lt 6000 ]; do sleep 0.02; i=$((i + 1)); done
SH
start() { # start DIR SCRIPT [OPTIONS]: 20 jobs at -j 2; returns once two have started
  local d=$1 script=$2
  shift 2
  rm -rf "$d"; mkdir -p "$d"
  wr_bg --joblog "$log" -j 2 "$@" sh "$tmp/$script" "$d" {} ::: $(seq 1 20) < /dev/null
  wait_for at_least_files "$d" s. 2
}
# The first signal is said on stderr; the second must come after it was taken.
first_taken() { wait_for test -s "$tmp/err"; sleep 0.3; }

for sig in INT TERM HUP; do
  want=$((128 + $(kill -l $sig)))
  start "$tmp/d$sig" hold.sh
  kill -$sig "$wr_pid"
  first_taken
  kill -0 "$wr_pid" 2>/dev/null || { show; fail "drain ($sig): weft-run ended while its jobs ran"; }
  touch "$tmp/d$sig/release"
  wr_wait
  expect_rc $want "drain ($sig)"
  expect_summary 2 0 0 0 18 "drain ($sig)"
  [ "$(count_files "$tmp/d$sig" s.)" = 2 ] || fail "drain ($sig): $(count_files "$tmp/d$sig" s.) jobs started, want the 2 running"
  [ "$(grep -c '^released' "$tmp/out")" = 2 ] || { show; fail "drain ($sig): the running jobs' output"; }
  joblog_ok "$log" 2
  echo "drain (SIG$sig): 2 running jobs finished, 18 not started, exit $rc"
done

# "at once": the second signal right behind the first, before weft-run said it took the first (a different
# number: the kernel merges a signal sent while one of the same number is pending).
for sigs in "INT INT" "INT TERM" "INT TERM at-once"; do
  start "$tmp/c" hold.sh
  set -- $sigs
  kill -"$1" "$wr_pid"
  [ "${3:-}" = at-once ] || first_taken
  kill -"$2" "$wr_pid"
  wr_wait
  { [ "$rc" = 130 ] || [ "$rc" = 143 ]; } || { show; fail "cancel ($sigs): exit $rc, want 130 or 143"; }
  expect_summary 0 0 0 2 18 "cancel ($sigs)"
  survivors "$tmp/hold.sh"
  [ "$(count_files "$tmp/c" s.)" = 2 ] || fail "cancel ($sigs): jobs started after the signal"
  joblog_ok "$log" 2
  for s in $(tail -n +2 "$log" | cut -f1); do
    [ "$(jl_col "$log" "$s" 7)/$(jl_col "$log" "$s" 8)" = -1/15 ] || { cat "$log" >&2; fail "cancel ($sigs): job $s's joblog line, want -1/15"; }
  done
  echo "cancel (SIG$1, SIG$2): 2 killed (no survivor), 18 not started, exit $rc"
done
# What is left after a cancel: --resume runs the 18 never started, --resume-failed the 2 killed.
touch "$tmp/c/release"
rm -f "$tmp"/c/s.*
wr --joblog "$log" --resume -j 2 sh "$tmp/hold.sh" "$tmp/c" {} ::: $(seq 1 20) < /dev/null
expect_rc 0 "--resume after a cancel"
expect_summary 18 0 0 0 0 2 "--resume after a cancel"
[ "$(count_files "$tmp/c" s.)" = 18 ] || fail "--resume after a cancel: $(count_files "$tmp/c" s.) ran, want 18"
rm -f "$tmp"/c/s.*
wr --joblog "$log" --resume-failed -j 2 sh "$tmp/hold.sh" "$tmp/c" {} ::: $(seq 1 20) < /dev/null
expect_rc 0 "--resume-failed after a cancel"
expect_summary 2 0 0 0 0 18 "--resume-failed after a cancel"
[ "$(count_files "$tmp/c" s.)" = 2 ] || fail "--resume-failed after a cancel: $(count_files "$tmp/c" s.) ran, want the 2 killed"
echo "after a cancel: --resume ran the 18 not started, --resume-failed the 2 killed"

# Jobs that ignore SIGTERM: SIGKILL after the grace.
start "$tmp/n" hold-noterm.sh --term-grace 1s --no-shell   # the job is the script: no shell around it
kill -INT "$wr_pid"
first_taken
kill -INT "$wr_pid"
wr_wait
expect_rc 130 "cancel of jobs ignoring SIGTERM"
expect_summary 0 0 0 2 18 "cancel of jobs ignoring SIGTERM"
survivors "$tmp/hold-noterm.sh"
for s in $(tail -n +2 "$log" | cut -f1); do
  [ "$(jl_col "$log" "$s" 7)/$(jl_col "$log" "$s" 8)" = -1/9 ] || { cat "$log" >&2; fail "cancel of jobs ignoring SIGTERM: job $s's line, want -1/9"; }
done
echo "cancel of jobs ignoring SIGTERM: SIGKILL after the grace, no survivor"

# Three times: weft-run exits at once, whatever its jobs do (they ignore SIGTERM, the grace is long).
start "$tmp/t3" hold-noterm.sh --term-grace 600s --no-shell
kill -INT "$wr_pid"
first_taken
kill -INT "$wr_pid"
err_lines() { [ "$(wc -l < "$tmp/err")" -ge "$1" ]; }
wait_for err_lines 2   # the second signal said too
sleep 0.3
kill -INT "$wr_pid"
wr_wait
expect_rc 130 "a third SIGINT"
touch "$tmp/t3/release"   # the jobs left behind end on their own
echo "a third SIGINT: exit 130 at once"

# Streamed stdin: the classes add up to the inputs read.
seq 1 100000 > "$tmp/many"
rm -rf "$tmp/m"; mkdir "$tmp/m"
wr_bg -j 2 sh "$tmp/hold.sh" "$tmp/m" < "$tmp/many"
wait_for at_least_files "$tmp/m" s. 2
kill -INT "$wr_pid"
first_taken
touch "$tmp/m/release"
wr_wait
expect_rc 130 "drain of streamed stdin"
summary
[ "$s_done" = 2 ] && [ "$s_total" -ge 2 ] && [ "$s_total" -le 100000 ] || { show; fail "drain of streamed stdin: '$s_line'"; }
echo "drain of streamed stdin: $s_line"

# Waiting for input that does not come.
mkfifo "$tmp/fifo"
exec 3<> "$tmp/fifo"
echo first >&3
wr_bg echo < "$tmp/fifo"
wait_for grep -q first "$tmp/out"
kill -INT "$wr_pid"
wr_wait
exec 3>&-
expect_rc 130 "SIGINT while waiting for input"
expect_summary 1 0 0 0 0 "SIGINT while waiting for input"
echo "SIGINT while waiting for input: ended, exit 130"
echo "weft-run signals check passed"
