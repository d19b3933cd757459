#!/usr/bin/env bash
# weft-run --worker and signals: Ctrl-C once stops fetching and lets the running jobs finish (their
# results published, their messages acked; what was not fetched stays for other workers); twice kills
# the running jobs and hands them back, and another worker runs them. --collect on Ctrl-C says what is
# missing.
source "$(dirname "$0")/nats-lib.sh"
start_server
cd "$T"

# -- twice: two jobs wait for GO (made only once the first worker is gone); the worker is interrupted
# twice, hands both back, and the second worker (GO there) runs them
JOB='echo $$ >> '"$T"'/pgids; echo "start {}" >> '"$T"'/ran2; [ -e '"$T"'/GO ] || sleep 60; echo "ran {}"'
"$WR" --submit "$URL/S" "$JOB" ::: 1 2 2>/dev/null || fail "submit S"
"$WR" --worker "$URL/S" -j2 --term-grace 1s 2>a.log & A=$!; PIDS+=($A)
wait_for "both jobs to start on the first worker" 60 has 2 start ran2
kill -INT $A
wait_for "the first worker to say it drains" 30 grep -qs "fetching no more jobs" a.log
kill -INT $A
wait $A; rc=$?
[ $rc = 130 ] || fail "twice: worker exit $rc, expected 130 ($(cat a.log))"
grep -q "0 done, 0 failed, 0 timed out, 2 handed back" a.log && grep -q "2 returned" a.log || fail "twice: $(cat a.log)"
touch GO
"$WR" --worker "$URL/S" -j2 --idle 2s 2>b.log & B=$!; PIDS+=($B)
timeout 120 "$WR" --collect "$URL/S" --joblog jl >out 2>err; rc=$?
[ $rc = 0 ] || fail "twice: collect exit $rc ($(cat err))"
wait $B
[ "$(sort out)" = "$(printf 'ran %s\n' 1 2)" ] || fail "twice: collected $(cat out)"
[ "$(count start ran2)" = 4 ] || fail "twice: starts $(cat ran2)"
grep -q "2 done" b.log && grep -q "2 redelivered" b.log || fail "twice: second worker $(cat b.log)"

# -- once: a drain. -j2 holds two of three jobs; both finish and are acked; the third stays in the stream
JOB1='echo "start {}" >> '"$T"'/ran1; sleep 2; echo "ran {}"'
"$WR" --submit "$URL/O" "$JOB1" ::: 1 2 3 2>/dev/null || fail "submit O"
"$WR" --worker "$URL/O" -j2 2>c.log & C=$!; PIDS+=($C)
wait_for "two jobs to start" 60 has 2 start ran1
kill -INT $C
wait $C; rc=$?
[ $rc = 130 ] || fail "once: worker exit $rc ($(cat c.log))"
grep -q "2 done, 0 failed, 0 timed out, 0 handed back" c.log && grep -q "2 fetched = 2 acked" c.log || fail "once: $(cat c.log)"
# the collector, interrupted, says which job has no result. timeout(1) passes a signal it gets on to its
# child and then to its whole process group, so the child gets it twice (a second Ctrl-C: exit at once);
# with --foreground it passes it on once.
timeout --foreground 60 "$WR" --collect "$URL/O" >o1 2>e1 & K=$!; PIDS+=($K)
wait_for "the collector to read two results" 30 nlines 2 o1
kill -INT $K; wait $K; rc=$?
[ $rc = 130 ] && grep -q "1 of 3 jobs have no result yet: 3" e1 || fail "collect on Ctrl-C: exit $rc, $(cat e1)"
"$WR" --worker "$URL/O" -j2 --idle 2s 2>d.log || fail "once: second worker ($(cat d.log))"
grep -q "1 done" d.log || fail "once: the third job $(cat d.log)"
timeout 60 "$WR" --collect "$URL/O" -k >o2 2>e2 || fail "once: collect $(cat e2)"
[ "$(cat o2)" = "$(printf 'ran %s\n' 1 2 3)" ] || fail "once: collected $(cat o2)"
echo "weft-run $NAME check passed"
