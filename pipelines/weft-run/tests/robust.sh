#!/usr/bin/env bash
# robust.sh WEFT_RUN: hostile jobs, outputs and inputs. Every run is bounded (a hang fails the test).
#   - a job that closes its stdout (others print as usual), one that closes both and goes on: it is waited for;
#   - a job writing WEFT_RUN_BIG_MB (1000) MB, --group (a temporary file) and --line-buffer: every byte
#     arrives and weft-run's peak RSS (/usr/bin/time -v) stays under 300 MB;
#   - a job that forks a daemon (own session) keeping the output pipe open, and one leaving a background
#     child in its group: weft-run does not hang, the job is done;
#   - `| head -1`: weft-run stops starting jobs and exits 255 at once; its stdout closed (>&-) or /dev/full:
#     exit 255 with a message; a joblog on /dev/full: a message, no more jobs, exit 255;
#   - a 1 MB input line: run when the command does not need it ({#}), a clear error (the kernel's limit on
#     one argument) when it does; a 100 KB line arrives intact; stdin a directory: 255;
#   - -j 100 under `ulimit -n 40` and -j 0 under it: no hang, every job accounted for;
#   - WEFT_RUN_LINES (10^6; 10^5 under the sanitizers) input lines streamed through --dry-run: every one
#     printed, peak RSS under 150 MB (10^7 lines were checked by hand: see the README).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
long=987.$tok
peak_kb() { sed -n 's/.*Maximum resident set size (kbytes): //p' "$1"; }

# ---- jobs closing their output
wr -k -j 3 sh -c {} ::: 'echo one' 'exec >&-; echo to-stderr >&2; exit 0' 'echo three' < /dev/null
expect_rc 0 "a job closing its stdout"
[ "$(cat "$tmp/out")" = $'one\nthree' ] && grep -q to-stderr "$tmp/err" || { show; fail "a job closing its stdout"; }
wr sh -c {} ::: "exec >&- 2>&-; sleep 0.5; touch $tmp/after" < /dev/null
expect_rc 0 "a job closing stdout and stderr, then working"
[ -e "$tmp/after" ] || fail "a job closing its output: weft-run ended before the job did"
echo "jobs closing their output: waited for, others unaffected"

# ---- a job writing a lot
mb=${WEFT_RUN_BIG_MB:-1000}
for mode in --group --line-buffer; do
  rc=0
  if [ $mode = --group ]; then gen="head -c ${mb}000000 /dev/zero"; else gen="yes 0123456789abcdef | head -c ${mb}000000"; fi
  timeout -k 10 300 /usr/bin/time -v -o "$tmp/time" "$bin" $mode "$gen; : {}" ::: 1 < /dev/null 2> "$tmp/err" \
    | wc -c > "$tmp/count" || rc=$?
  expect_rc 0 "a job writing $mb MB ($mode)"
  [ "$(cat "$tmp/count")" = "${mb}000000" ] || fail "a job writing $mb MB ($mode): $(cat "$tmp/count") bytes arrived"
  kb=$(peak_kb "$tmp/time")
  [ "$kb" -lt 307200 ] || fail "a job writing $mb MB ($mode): peak RSS $kb KiB"
  echo "a job writing $mb MB ($mode): every byte, peak RSS $kb KiB"
done

# ---- jobs leaving something behind that holds the pipe
cat > "$tmp/daemon.sh" <<'SH'
#!/bin/sh
# daemon.sh DIR SECS: a daemon in a session of its own keeps stdout and stderr open; the job itself ends.
setsid sh -c 'echo $$ > "$1/daemon.pid"; exec sleep "$2"' _ "$1" "$2" &
echo main-done
SH
for mode in --group --line-buffer; do
  rm -f "$tmp/daemon.pid"
  wr $mode sh "$tmp/daemon.sh" "$tmp" "$long" ::: 1 < /dev/null
  wait_for test -s "$tmp/daemon.pid"
  cat "$tmp/daemon.pid" >> "$tmp/pids"
  kill "$(cat "$tmp/daemon.pid")" 2>/dev/null || true
  expect_rc 0 "a job forking a daemon ($mode)"
  grep -q main-done "$tmp/out" || { show; fail "a job forking a daemon ($mode): its output"; }
done
wr sh -c {} ::: "sleep $long & echo main-done" < /dev/null
pgrep -f "sleep $long" >> "$tmp/pids" || true
expect_rc 0 "a job leaving a child in its group"
grep -q main-done "$tmp/out" || { show; fail "a job leaving a child in its group: its output"; }
echo "daemons and leftover children holding the pipe: no hang, the job done"

# ---- weft-run's own output
mkdir "$tmp/h"
seq 1 1000 > "$tmp/s1000"
set +e
timeout -k 10 90 "$bin" -j 2 "touch $tmp/h/{}; sleep 0.01; echo {}" < "$tmp/s1000" 2> "$tmp/err" | head -1 > "$tmp/out"
rcs=("${PIPESTATUS[@]}")
set -e
[ "${rcs[0]}" = 255 ] || { show; fail "| head -1: exit ${rcs[0]}, want 255"; }
started=$(count_files "$tmp/h" "")
[ "$started" -lt 1000 ] || fail "| head -1: all 1000 jobs ran"
echo "| head -1: exit 255 after $started jobs of 1000"
rc=0; timeout -k 10 60 "$bin" echo ::: a b < /dev/null >&- 2> "$tmp/err" || rc=$?
[ "$rc" = 255 ] && [ -s "$tmp/err" ] || { cat "$tmp/err" >&2; fail "stdout closed: exit $rc, want 255 and a message"; }
rc=0; timeout -k 10 60 "$bin" echo ::: a b < /dev/null > /dev/full 2> "$tmp/err" || rc=$?
[ "$rc" = 255 ] && grep -q 'No space left' "$tmp/err" || { cat "$tmp/err" >&2; fail "/dev/full: exit $rc, want 255 and a message"; }
wr -j 1 --joblog /dev/full "touch $tmp/jf.{#}" ::: 1 2 3 4 5 < /dev/null
[ "$rc" = 255 ] && grep -q joblog "$tmp/err" || { show; fail "a joblog on /dev/full: exit $rc, want 255 and a message"; }
[ "$(count_files "$tmp" jf.)" -lt 5 ] || fail "a joblog on /dev/full: jobs went on starting"
echo "stdout closed, /dev/full, joblog on /dev/full: exit 255 with a message"

# ---- long input lines, a directory as input
head -c 1000000 /dev/zero | tr '\0' a > "$tmp/line1m"; echo >> "$tmp/line1m"
wr --joblog "$tmp/log" echo {#} < "$tmp/line1m"
expect_rc 0 "a 1 MB line the command does not use"
[ "$(cat "$tmp/out")" = 1 ] || { show; fail "a 1 MB line: the job did not run"; }
wr --joblog "$tmp/log" 'printf %s {} | wc -c' < "$tmp/line1m"
expect_rc 1 "a 1 MB line in the command"
[ -s "$tmp/err" ] || fail "a 1 MB line in the command: no message"
joblog_ok "$tmp/log" 1
expect_summary 0 1 0 0 0 "a 1 MB line in the command"
head -c 100000 /dev/zero | tr '\0' b > "$tmp/line100k"; echo >> "$tmp/line100k"
wr 'printf %s {} | wc -c' < "$tmp/line100k"
expect_rc 0 "a 100 KB line"
[ "$(tr -d ' ' < "$tmp/out")" = 100000 ] || { show; fail "a 100 KB line did not arrive whole"; }
wr echo < "$tmp"
expect_rc 255 "stdin a directory"
[ -s "$tmp/err" ] || fail "stdin a directory: no message"
echo "1 MB line: run with {#}, an error naming the limit in the command; 100 KB intact; directory: 255"

# ---- few descriptors
for j in 100 0; do
  rc=0
  (ulimit -n 40; exec timeout -k 10 120 "$bin" -j $j "sleep 0.2; echo {}" ::: $(seq 1 100)) < /dev/null > "$tmp/out" 2> "$tmp/err" || rc=$?
  [ "$rc" != 124 ] && [ "$rc" != 137 ] || fail "-j $j under ulimit -n 40: hung"
  if [ "$rc" = 0 ]; then
    [ "$(sort -n "$tmp/out" | tr '\n' ' ')" = "$(seq 1 100 | tr '\n' ' ')" ] || { show; fail "-j $j under ulimit -n 40: output lost"; }
  else
    summary
    [ "$s_total" = 100 ] && [ "$((s_done))" = "$(wc -l < "$tmp/out")" ] || { show; fail "-j $j under ulimit -n 40: exit $rc, jobs unaccounted for"; }
  fi
  echo "-j $j under ulimit -n 40: exit $rc"
done
[ "$rc" = 0 ] || fail "-j 0 under ulimit -n 40: exit $rc (it should take fewer jobs at once, not fail them)"

# ---- many inputs, streamed
n=${WEFT_RUN_LINES:-1000000}
rc=0
# (under AddressSanitizer, freed memory waits in a quarantine of 256 MB by default: keep it small here, so
# that the peak shows what weft-run holds, not what ASan keeps back)
seq 1 "$n" | ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}quarantine_size_mb=8" \
  timeout -k 10 600 /usr/bin/time -v -o "$tmp/time" "$bin" --dry-run echo 2> "$tmp/err" \
  | awk '{ s += $2; c++ } END { printf "%d %.0f\n", c, s }' > "$tmp/sum" || rc=$?
expect_rc 0 "$n lines through --dry-run"
[ "$(cat "$tmp/sum")" = "$n $(awk -v n="$n" 'BEGIN { printf "%.0f", n * (n + 1) / 2 }')" ] || fail "$n lines: got '$(cat "$tmp/sum")'"
kb=$(peak_kb "$tmp/time")
[ "$kb" -lt 153600 ] || fail "$n lines: peak RSS $kb KiB"
echo "$n lines streamed through --dry-run: all printed, peak RSS $kb KiB"
echo "weft-run robust check passed"
