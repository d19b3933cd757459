#!/usr/bin/env bash
# joblog.sh WEFT_RUN: --joblog, --resume, --resume-failed.
#   - the format is GNU parallel's (header; Seq, Host ":", Starttime with 3 decimals, JobRuntime "%10.3f",
#     Send 0, Receive = bytes of the job's stdout, Exitval, Signal, Command); Starttime within the run,
#     JobRuntime at least the job's sleep; the Command column runs with sh to the job's effect;
#   - a line is written when its job ends (job 2 waits for job 1's line), 300 jobs at -j 8 give 300 whole lines
#     with distinct Seq; a new run replaces the file; --joblog - writes it on stdout;
#   - --resume runs only the jobs the log does not show (more inputs than the first run); --resume-failed
#     reruns the failed ones and appends; a log that does not exist is a fresh start;
#   - a joblog from another command, or a file that is not a joblog: exit 255, a message, nothing run;
#   - weft-run SIGKILLed mid-run (300 jobs, after 30 lines): the log holds whole lines only, and a --resume
#     run completes it: every input's Seq exactly once across the two runs.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
log=$tmp/log

# ---- format
t0=$(date +%s)
wr --joblog "$log" -k sh -c {} ::: 'printf hello' 'echo hi; echo err >&2' 'sleep 0.3' 'exit 3' < /dev/null
t1=$(date +%s)
expect_rc 1 "format run"
joblog_ok "$log" 4
for s in 1 2 3 4; do
  [ "$(jl_col "$log" $s 2)" = : ] && [ "$(jl_col "$log" $s 5)" = 0 ] || fail "job $s: Host or Send"
  st=$(jl_col "$log" $s 3)
  awk -v s="$st" -v a="$t0" -v b="$t1" 'BEGIN { exit !(s >= a - 1 && s <= b + 1) }' || fail "job $s: Starttime $st not within the run ($t0-$t1)"
done
[ "$(jl_col "$log" 1 6)" = 5 ] || fail "Receive of 'printf hello': $(jl_col "$log" 1 6), want 5"
[ "$(jl_col "$log" 2 6)" = 3 ] || fail "Receive of 'echo hi; echo err >&2': $(jl_col "$log" 2 6), want 3 (stdout)"
awk -v r="$(jl_col "$log" 3 4)" 'BEGIN { exit !(r + 0 >= 0.29) }' || fail "JobRuntime of 'sleep 0.3': $(jl_col "$log" 3 4)"
[ "$(jl_col "$log" 4 7)/$(jl_col "$log" 4 8)" = 3/0 ] || fail "job 4: Exitval/Signal, want 3/0"
[ "$(jl_col "$log" 1 7)/$(jl_col "$log" 1 8)" = 0/0 ] || fail "job 1: Exitval/Signal, want 0/0"
# The Command column is the job's command line (a backslash, a tab and a newline written as \\ \t \n, so
# that a line is a job: decoded here with printf %b).
wr --joblog "$log" -k echo {} ::: 'a b' "it's" '$HOME' 'back\slash' $'tab\there' $'new\nline' < /dev/null
expect_rc 0 "Command column run"
joblog_ok "$log" 6
tail -n +2 "$log" | sort -n | cut -f9- | while IFS= read -r c; do printf '%b\n' "$c"; done | sh > "$tmp/replay"
diff "$tmp/out" "$tmp/replay" > /dev/null || { cat "$log" >&2; fail "the Command column does not replay the jobs"; }
echo "format: GNU parallel's columns, Receive, Starttime, JobRuntime, Exitval, Command replay"

# ---- written as jobs end; whole lines under concurrency; replaced by a new run
wr --joblog "$log" -j 2 sh -c {} ::: true \
   "i=0; until grep -q '^1	' $log; do i=\$((i+1)); [ \$i -lt 3000 ] || exit 9; sleep 0.02; done" < /dev/null
expect_rc 0 "job 1's line before the run ends"
wr --joblog "$log" -j 8 echo ::: $(seq 1 300) < /dev/null
expect_rc 0 "300 jobs"
joblog_ok "$log" 300
[ "$(tail -n +2 "$log" | cut -f1 | sort -n | uniq | wc -l)" = 300 ] || fail "300 jobs: Seq values not distinct"
[ "$(tail -n +2 "$log" | cut -f1 | sort -n | tail -1)" = 300 ] || fail "300 jobs: Seq not 1..300"
wr --joblog "$log" echo ::: a b < /dev/null
joblog_ok "$log" 2
wr --joblog - -k echo ::: a b < /dev/null
expect_rc 0 "--joblog -"
grep -v -e '^a$' -e '^b$' "$tmp/out" > "$tmp/stdlog"
joblog_ok "$tmp/stdlog" 2
[ "$(grep -c -x -e a -e b "$tmp/out")" = 2 ] || { show; fail "--joblog -: the jobs' output"; }
echo "lines written as jobs end; 300 whole lines at -j 8; a new run replaces the log; --joblog - on stdout"

# ---- --resume, --resume-failed
rm -f "$log"
wr --joblog "$log" --resume "echo {} >> $tmp/r0" ::: 1 2 < /dev/null
expect_rc 0 "--resume without a log"
[ "$(sort "$tmp/r0" | tr '\n' ' ')" = "1 2 " ] || fail "--resume without a log: not everything ran"
wr --joblog "$log" "echo {} >> $tmp/r1" ::: 1 2 3 < /dev/null
wr --joblog "$log" --resume "echo {} >> $tmp/r1" ::: 1 2 3 4 5 < /dev/null
expect_rc 0 "--resume"
[ "$(sort -n "$tmp/r1" | tr '\n' ' ')" = "1 2 3 4 5 " ] || fail "--resume: ran $(sort -n "$tmp/r1" | tr '\n' ' '), want each of 1-5 once"
joblog_ok "$log" 5
summary
[ "$s_done $s_skipped" = "2 3" ] || fail "--resume: summary '$s_line', want 2 done, 3 skipped"
cmd="echo {} >> $tmp/rf; [ -e $tmp/second ] || [ {} -ne 3 ] && { [ -e $tmp/second ] || [ {} -ne 5 ]; }"
wr --joblog "$log" "$cmd" ::: 1 2 3 4 5 6 < /dev/null
expect_rc 2 "--resume-failed, first run"
touch "$tmp/second"
: > "$tmp/rf"
wr --joblog "$log" --resume-failed "$cmd" ::: 1 2 3 4 5 6 < /dev/null
expect_rc 0 "--resume-failed"
[ "$(sort -n "$tmp/rf" | tr '\n' ' ')" = "3 5 " ] || fail "--resume-failed: ran $(sort -n "$tmp/rf" | tr '\n' ' '), want 3 and 5"
joblog_ok "$log" 8
[ "$(tail -2 "$log" | sort -n | cut -f1,7 | tr '\t\n' ': ')" = "3:0 5:0 " ] || { cat "$log" >&2; fail "--resume-failed: the appended lines"; }
summary
[ "$s_done $s_skipped" = "2 4" ] || fail "--resume-failed: summary '$s_line', want 2 done, 4 skipped"
: > "$tmp/rf"
wr --joblog "$log" --resume "$cmd" ::: 1 2 3 4 5 6 < /dev/null
expect_rc 0 "--resume of a complete log"
[ ! -s "$tmp/rf" ] || fail "--resume of a complete log: jobs ran"
echo "--resume runs what is left; --resume-failed reruns the failed and appends; no log: all"

# ---- a log that is not this command's, or not a joblog
wr --joblog "$log" echo ::: a b < /dev/null
for r in --resume --resume-failed; do
  wr --joblog "$log" $r "touch $tmp/other.{#}" ::: a b c < /dev/null
  expect_rc 255 "$r with another command's joblog"
  [ -s "$tmp/err" ] || fail "$r with another command's joblog: no message"
  [ "$(count_files "$tmp" other.)" = 0 ] || fail "$r with another command's joblog: jobs ran"
done
printf 'root:x:0:0:root:/root:/bin/bash\nhello\tworld\n' > "$tmp/notlog"
wr --joblog "$tmp/notlog" --resume "touch $tmp/other.{#}" ::: a < /dev/null
expect_rc 255 "--resume with a file that is not a joblog"
[ -s "$tmp/err" ] && [ "$(count_files "$tmp" other.)" = 0 ] || fail "--resume with a file that is not a joblog"
grep -q '^root:x' "$tmp/notlog" || fail "--resume with a file that is not a joblog: the file was changed"
echo "another command's joblog, a file that is not a joblog: exit 255, a message, nothing run"

# ---- SIGKILL mid-run, then --resume
rm -f "$log"
cmd="sleep 0.02; echo {} >> $tmp/k"
seq 1 300 > "$tmp/in"
wr_bg --joblog "$log" -j 2 "$cmd" :::: "$tmp/in" < /dev/null
log_has() { [ -f "$log" ] && [ "$(wc -l < "$log")" -ge "$1" ]; }
wait_for log_has 31
kill -9 "$wr_pid"
wr_wait
[ "$rc" = 137 ] || fail "SIGKILL: exit $rc"
first=$(($(wc -l < "$log") - 1))
[ "$(tail -c 1 "$log" | od -An -c | tr -d ' ')" = '\n' ] || fail "SIGKILL: the joblog ends with a partial line"
joblog_ok "$log" "$first"
[ "$first" -lt 300 ] || fail "SIGKILL: the run had ended already"
# The jobs that were running live on in their process groups: let them end.
wait_for sh -c "! pgrep -f 'sleep 0.02; echo [0-9]* >> $tmp/k' > /dev/null"
wr --joblog "$log" --resume -j 2 "$cmd" :::: "$tmp/in" < /dev/null
expect_rc 0 "--resume after SIGKILL"
joblog_ok "$log" 300
tail -n +2 "$log" | cut -f1 | sort -n | uniq -c | awk '$1 != 1 { print "Seq " $2 " " $1 " times"; bad = 1 } END { exit bad }' \
  || fail "after SIGKILL and --resume: a job logged more than once"
[ "$(tail -n +2 "$log" | cut -f1 | sort -n | tr '\n' ' ')" = "$(seq 1 300 | tr '\n' ' ')" ] || fail "after SIGKILL and --resume: jobs missing from the log"
[ "$(sort -un "$tmp/k" | wc -l)" = 300 ] || fail "after SIGKILL and --resume: some inputs never ran"
summary
[ "$s_skipped" = "$first" ] && [ "$s_done" = $((300 - first)) ] || fail "--resume after SIGKILL: summary '$s_line', $first were logged"
echo "SIGKILL after $first lines: the log whole; --resume ran the other $((300 - first)); each Seq once in the log"
echo "weft-run joblog check passed"
