#!/usr/bin/env bash
# time.sh WEFT_RUN: --timeout, --deadline, --term-grace and Go-style durations.
#   - durations 300ms, 1.5s, 2m, 1h30m and a bare number are accepted, and a timeout does not touch a
#     job that ends in time;
#   - a job past its --timeout is ended with its whole process tree (a child shell and grandchildren: no
#     survivor in ps), classed "timed out", its joblog line Exitval -1 and Signal 15; exit 1;
#   - a job that ignores SIGTERM is SIGKILLed after --term-grace (and after the default grace), Signal 9; a job
#     that traps SIGTERM gets SIGTERM first;
#   - --deadline stops running jobs the same way and starts no more: the summary adds up and the exit
#     status counts the jobs stopped and not started; a deadline also ends a run whose input never ends
#     (and that run, its input left unread, does not exit 0).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
long=987.$tok   # seconds: a sleep that only ends when killed, and that `ps` can find

for d in 300ms 1.5s 2m 1h30m 2 0.5 1m30s 1h; do
  wr --timeout "$d" --deadline "$d" --term-grace "$d" -k echo ::: a b < /dev/null
  [ "$rc" = 0 ] && [ "$(cat "$tmp/out")" = $'a\nb' ] || { show; fail "duration $d: exit $rc"; }
done
echo "durations: 300ms 1.5s 2m 1h30m 2 0.5 1m30s 1h accepted"

# A process tree: the job's shell, a child shell, a grandchild, each sleeping.
cat > "$tmp/tree.sh" <<'SH'
#!/bin/sh
sh -c "sleep $1 & sleep $1; :" &
sleep "$1"
SH
wr --joblog "$tmp/log" --timeout 1s sh "$tmp/tree.sh" "$long" ::: x < /dev/null
expect_rc 1 "timeout of a process tree"
expect_summary 0 0 1 0 0 "timeout of a process tree"
survivors "$long"
joblog_ok "$tmp/log" 1
[ "$(jl_col "$tmp/log" 1 7)/$(jl_col "$tmp/log" 1 8)" = "-1/15" ] \
  || { cat "$tmp/log" >&2; fail "timeout: joblog Exitval/Signal $(jl_col "$tmp/log" 1 7)/$(jl_col "$tmp/log" 1 8), want -1/15"; }
echo "timeout: the job's tree (3 processes) ended, no survivor; joblog -1/15"

# Among others: only the late ones are timed out.
wr --joblog "$tmp/log" -j 3 --timeout 2s sleep ::: 0 "$long" 0.1 "$long" 0 "$long" < /dev/null
expect_rc 3 "timeouts among quick jobs"
expect_summary 3 0 3 0 0 "timeouts among quick jobs"
survivors "$long"
joblog_ok "$tmp/log" 6
for s in 1 3 5; do [ "$(jl_col "$tmp/log" $s 7)" = 0 ] || fail "timeouts among quick jobs: job $s's exit value"; done
for s in 2 4 6; do [ "$(jl_col "$tmp/log" $s 7)/$(jl_col "$tmp/log" $s 8)" = -1/15 ] || fail "timeouts: job $s's line"; done
echo "timeouts among quick jobs: 3 done, 3 timed out"

# SIGTERM ignored: SIGKILL after the grace (given, and the default 2 s).
for grace in --term-grace=1s ""; do
  wr --joblog "$tmp/log" --timeout 500ms $grace "trap '' TERM; sleep $long; :" ::: x < /dev/null
  expect_rc 1 "a job ignoring SIGTERM ($grace)"
  expect_summary 0 0 1 0 0 "a job ignoring SIGTERM"
  survivors "$long"
  [ "$(jl_col "$tmp/log" 1 7)/$(jl_col "$tmp/log" 1 8)" = -1/9 ] \
    || { cat "$tmp/log" >&2; fail "a job ignoring SIGTERM ($grace): want Exitval -1, Signal 9"; }
done
# A job that traps SIGTERM and carries on gets SIGTERM first, then SIGKILL.
wr --joblog "$tmp/log" --timeout 500ms --term-grace 1s \
   ": {}; trap 'echo term >> $tmp/termlog' TERM; i=0; while [ \$i -lt 3000 ]; do sleep 0.05; i=\$((i+1)); done" ::: x < /dev/null
expect_rc 1 "a job trapping SIGTERM"
grep -q term "$tmp/termlog" || fail "a job trapping SIGTERM: it did not get SIGTERM"
[ "$(jl_col "$tmp/log" 1 7)/$(jl_col "$tmp/log" 1 8)" = -1/9 ] || { cat "$tmp/log" >&2; fail "a job trapping SIGTERM: want -1/9"; }
echo "--term-grace: SIGTERM, then SIGKILL (given grace and default); joblog -1/9"

# --deadline: jobs 1-2 end at once, 3-4 run into the deadline, 5-20 never start (the exit status counts
# the 2 stopped and the 16 not started: every input given on the command line is known).
wr --joblog "$tmp/log" -j 2 --deadline 4s sleep ::: 0 0 $(for _ in $(seq 1 18); do echo "$long"; done) < /dev/null
expect_rc 18 "--deadline"
summary
[ "$s_done" = 2 ] && [ $((s_killed + s_timed)) = 2 ] && [ "$s_notstarted" = 16 ] && [ "$s_total" = 20 ] \
  || { show; fail "--deadline: summary '$s_line', want 2 done, 2 stopped, 16 not started"; }
survivors "$long"
joblog_ok "$tmp/log" 4
for s in 3 4; do [ "$(jl_col "$tmp/log" $s 7)/$(jl_col "$tmp/log" $s 8)" = -1/15 ] || { cat "$tmp/log" >&2; fail "--deadline: job $s's line"; }; done
echo "--deadline: $s_line"
# A deadline ends a run waiting for input that never comes (the test holds the pipe open).
mkfifo "$tmp/fifo"
exec 3<> "$tmp/fifo"
echo first >&3
wr --deadline 2s echo < "$tmp/fifo"
exec 3>&-
[ "$(cat "$tmp/out")" = first ] || { show; fail "--deadline with endless input: the input read was not run"; }
summary
# Inputs were left unread: the run did not complete, so it does not exit 0.
[ "$rc" != 0 ] || { show; fail "--deadline with endless input: exit 0 though inputs were left unread"; }
echo "--deadline with endless input: ended (exit $rc): $s_line"
echo "weft-run time check passed"
