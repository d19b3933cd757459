#!/usr/bin/env bash
# failures.sh WEFT_RUN: exit statuses, commands that cannot run, --retries and --halt.
#   - exit 0 when all succeed, the number failed (1-100), 101 past 100; the summary adds up;
#   - a command not found: 127 in the joblog and a message (with and without --no-shell); not executable: 126;
#     a job killed by its own signal: Signal in the joblog;
#   - --retries N: N attempts in all (counted by a file each attempt appends to), one joblog line per job;
#     a job that succeeds on its second attempt is done;
#   - --halt now|soon, fail|success|done, counts and percentages and the shorthands 0 1 2 -1 -2: which
#     jobs run, which are killed (no survivor) or let finish, and GNU parallel's exit statuses (the failing
#     job's status for fail=1, 128+signal when it was killed; the number failed for fail=X and done=X;
#     the percentage for P%; 0 for success).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
long=987.$tok

# ---- exit statuses
wr 'exit {}' ::: 0 0 0 < /dev/null; expect_rc 0 "all succeed"
wr 'exit {}' ::: 0 1 2 3 0 < /dev/null; expect_rc 3 "3 fail"; expect_summary 2 3 0 0 0 "3 fail"
wr 'exit {}' ::: $(seq 0 100) < /dev/null; expect_rc 100 "100 fail"
wr -j 4 'exit 1' ::: $(seq 1 150) < /dev/null; expect_rc 101 "150 fail"; expect_summary 0 150 0 0 0 "150 fail"
wr 'exit {}' ::: 255 < /dev/null; expect_rc 1 "a job exiting 255"
echo "exit statuses: 0, 3, 100, 101 (150 failed), 1 for a job exiting 255"

# ---- commands that cannot run
wr --joblog "$tmp/log" "no-such-command-$tok" ::: 1 < /dev/null
expect_rc 1 "command not found"
[ "$(jl_col "$tmp/log" 1 7)" = 127 ] || { cat "$tmp/log" >&2; fail "command not found: joblog Exitval $(jl_col "$tmp/log" 1 7), want 127"; }
grep -q "no-such-command-$tok" "$tmp/err" || { show; fail "command not found: no message naming it"; }
wr --joblog "$tmp/log" --no-shell "no-such-command-$tok" ::: 1 2 < /dev/null
expect_rc 2 "--no-shell, command not found"
[ "$(jl_col "$tmp/log" 1 7) $(jl_col "$tmp/log" 2 7)" = "127 127" ] || { cat "$tmp/log" >&2; fail "--no-shell, command not found: want 127 in the joblog"; }
grep -q "no-such-command-$tok" "$tmp/err" || { show; fail "--no-shell, command not found: no message naming it"; }
printf '#!/bin/sh\necho ran\n' > "$tmp/noexec"
chmod -x "$tmp/noexec"
for ns in "" --no-shell; do
  wr --joblog "$tmp/log" $ns "$tmp/noexec" ::: 1 < /dev/null
  expect_rc 1 "not executable $ns"
  [ "$(jl_col "$tmp/log" 1 7)" = 126 ] || { cat "$tmp/log" >&2; fail "not executable $ns: want 126 in the joblog"; }
  ! grep -q ran "$tmp/out" || fail "not executable $ns: it ran"
done
wr --joblog "$tmp/log" 'kill -USR1 $$; : {}' ::: 1 < /dev/null
expect_rc 1 "a job killed by its own signal"
[ "$(jl_col "$tmp/log" 1 8)" = 10 ] || { cat "$tmp/log" >&2; fail "a job killed by SIGUSR1: joblog Signal $(jl_col "$tmp/log" 1 8), want 10"; }
echo "command not found: 127 (shell and --no-shell); not executable: 126; own signal: Signal 10"

# ---- --retries
wr --joblog "$tmp/log" --retries 3 "echo x >> $tmp/att.{}; exit 1" ::: a b < /dev/null
expect_rc 2 "--retries 3, always failing"
[ "$(wc -l < "$tmp/att.a") $(wc -l < "$tmp/att.b")" = "3 3" ] || fail "--retries 3: $(wc -l < "$tmp/att.a") and $(wc -l < "$tmp/att.b") attempts, want 3"
joblog_ok "$tmp/log" 2
wr --joblog "$tmp/log" --retries 3 "echo x >> $tmp/att2.{}; [ \$(wc -l < $tmp/att2.{}) -ge 2 ]" ::: a < /dev/null
expect_rc 0 "--retries 3, succeeding at the second attempt"
[ "$(wc -l < "$tmp/att2.a")" = 2 ] || fail "--retries: $(wc -l < "$tmp/att2.a") attempts of a job that succeeds at the second, want 2"
joblog_ok "$tmp/log" 1
[ "$(jl_col "$tmp/log" 1 7)" = 0 ] || fail "--retries: the joblog does not show the successful attempt"
wr --retries 1 "echo x >> $tmp/att3.{}; exit 1" ::: a < /dev/null
expect_rc 1 "--retries 1"
[ "$(wc -l < "$tmp/att3.a")" = 1 ] || fail "--retries 1: more than one attempt"
echo "--retries: 3 attempts in all, 2 when the second succeeds, 1 with --retries 1; one joblog line per job"

# ---- --halt, one job at a time (the order is the input's)
halt() { # halt SPEC WANT_RC DONE FAILED NOTSTARTED STATUSES...
  local spec=$1 want=$2 d=$3 f=$4 n=$5
  shift 5
  wr -j 1 --halt "$spec" 'exit {}' ::: "$@" < /dev/null
  expect_rc "$want" "--halt $spec ($*)"
  if [ "$spec" = 0 ]; then return 0; fi
  expect_summary "$d" "$f" 0 0 "$n" "--halt $spec ($*)"
}
halt soon,fail=1    3 2 1 2   0 0 3 0 0
halt now,fail=1     3 2 1 2   0 0 3 0 0
halt soon,fail=2    2 2 2 2   0 1 0 4 0 0
halt soon,done=3    1 2 1 2   0 1 0 0 0
halt soon,success=1 0 1 1 2   1 0 1 1
halt now,success=2  0 2 1 1   1 0 0 1
halt soon,fail=30%  30 2 3 5  0 0 1 1 1 0 0 0 0 0
halt soon,done=30%  20 1 2 7  0 1 1 1 1 0 0 0 0 0
halt soon,success=30% 0 3 2 5 1 1 0 0 0 0 0 0 0 0
halt 1              2 1 1 1   0 2 0
halt 2              2 1 1 1   0 2 0
halt -1             0 1 1 1   1 0 1
halt -2             0 1 1 1   1 0 1
halt 0              1 0 0 0   0 2 0
echo "--halt (one job at a time): counts, percentages, shorthands and their exit statuses"
# fail=1 takes a killed job's 128+signal.
wr -j 1 --halt soon,fail=1 'kill -USR1 $$; : {}' ::: 1 2 < /dev/null
expect_rc 138 "--halt soon,fail=1, a job killed by SIGUSR1"
wr -j 1 --halt soon,fail=1 --timeout 500ms sleep ::: "$long" 1 < /dev/null
expect_rc 143 "--halt soon,fail=1, a job timed out (SIGTERM)"
survivors "$long"

# now: the running job is killed (job 2 fails once job 1 runs); soon: it is let finish.
wr --joblog "$tmp/log" -j 2 --halt now,fail=1 sh -c {} ::: "touch $tmp/s1; sleep $long" \
   "while [ ! -e $tmp/s1 ]; do sleep 0.02; done; exit 4" "touch $tmp/ran3" < /dev/null
expect_rc 4 "--halt now,fail=1 with a job running"
expect_summary 0 1 0 1 1 "--halt now,fail=1 with a job running"
survivors "$long"
[ ! -e "$tmp/ran3" ] || fail "--halt now: a job started after the failure"
[ "$(jl_col "$tmp/log" 1 7)/$(jl_col "$tmp/log" 1 8)" = -1/15 ] || { cat "$tmp/log" >&2; fail "--halt now: the killed job's joblog line"; }
rm -f "$tmp/s1"
wr --joblog "$tmp/log" -j 2 --halt soon,fail=1 sh -c {} ::: \
   "touch $tmp/s1; while [ ! -e $tmp/f2 ]; do sleep 0.02; done; sleep 0.5; echo finished" \
   "while [ ! -e $tmp/s1 ]; do sleep 0.02; done; touch $tmp/f2; exit 5" "touch $tmp/ran3" < /dev/null
expect_rc 5 "--halt soon,fail=1 with a job running"
expect_summary 1 1 0 0 1 "--halt soon,fail=1 with a job running"
grep -q finished "$tmp/out" || { show; fail "--halt soon: the running job did not finish"; }
[ ! -e "$tmp/ran3" ] || fail "--halt soon: a job started after the failure"
rm -f "$tmp/s1"
wr -j 2 --halt now,success=1 sh -c {} ::: "touch $tmp/s1; sleep $long" \
   "while [ ! -e $tmp/s1 ]; do sleep 0.02; done; exit 0" "touch $tmp/ran3" < /dev/null
expect_rc 0 "--halt now,success=1 with a job running"
expect_summary 1 0 0 1 1 "--halt now,success=1 with a job running"
survivors "$long"
echo "--halt now kills the running job (no survivor), soon lets it finish; nothing starts after"
echo "weft-run failures check passed"
