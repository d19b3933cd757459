#!/usr/bin/env bash
# weft-run across machines when things go wrong: a job longer than the lease (AckWait) is not run twice
# while its worker lives (heartbeats); a worker killed with SIGKILL mid-job has its job redelivered to
# the other worker, and the collected results hold every job exactly once.
source "$(dirname "$0")/nats-lib.sh"
start_server
cd "$T"

# -- a job three times longer than AckWait (2 s), beside quick ones, two workers: it starts once
LONG='echo "start {}" >> '"$T"'/ranL; if [ {} = 1 ]; then sleep 6; fi; echo "end {}" >> '"$T"'/ranL; echo job {}'
"$WR" --submit "$URL/L" "$LONG" ::: $(seq 5) 2>/dev/null || fail "submit L"
"$WR" --worker "$URL/L" -j1 --ack-wait 2s --idle 2s 2>l1.log & A=$!; PIDS+=($A)
wait_for "the long job to start" 60 grep -qs "start 1" ranL
"$WR" --worker "$URL/L" -j1 --ack-wait 2s --idle 2s 2>l2.log & B=$!; PIDS+=($B)
timeout 120 "$WR" --collect "$URL/L" --joblog ljl >lout 2>lerr; rc=$?
[ $rc = 0 ] || fail "long job: collect exit $rc"
wait $A; wait $B
[ "$(count 'start 1' ranL)" = 1 ] || fail "the long job started $(count 'start 1' ranL) times: $(cat ranL)"
[ "$(tail -n +2 ljl | wc -l)" = 5 ] || fail "long job: joblog $(cat ljl)"
grep -q " 0 redelivered" l1.log && grep -q " 0 redelivered" l2.log || fail "long job: a redelivery: $(cat l1.log l2.log)"
hb=$(cat l1.log l2.log | sed -n 's/.* \([0-9]*\) heartbeats.*/\1/p' | awk '{s += $1} END {print s}')
[ "${hb:-0}" -ge 1 ] || fail "long job: no heartbeat sent: $(cat l1.log l2.log)"

# -- a worker killed with SIGKILL while its job runs: the server redelivers the job once the lease lapses
CRASH='echo $$ >> '"$T"'/pgids; echo "start {} $$" >> '"$T"'/ranK; if [ {} = 1 ]; then sleep 4; fi; echo "end {}" >> '"$T"'/ranK; echo job {}'
"$WR" --submit "$URL/K" "$CRASH" ::: $(seq 4) 2>/dev/null || fail "submit K"
"$WR" --worker "$URL/K" -j1 --ack-wait 2s 2>k1.log & A=$!; PIDS+=($A)
wait_for "job 1 to start on the first worker" 60 grep -qs "start 1" ranK
kill -KILL $A; wait $A 2>/dev/null
# its job's process group outlives it (as after a machine's crash the job would be gone): end it here
g=$(sed -n 's/^start 1 //p' ranK | head -1); kill -KILL -- "-$g" 2>/dev/null
"$WR" --worker "$URL/K" -j1 --ack-wait 2s --idle 3s 2>k2.log & B=$!; PIDS+=($B)
timeout 120 "$WR" --collect "$URL/K" --joblog kjl >kout 2>kerr; rc=$?
[ $rc = 0 ] || fail "crash: collect exit $rc ($(cat kerr))"
wait $B
[ "$(count 'start 1' ranK)" = 2 ] && [ "$(count 'end 1' ranK)" = 1 ] || fail "crash: job 1 runs: $(cat ranK)"
[ "$(sort kout)" = "$(printf 'job %s\n' 1 2 3 4)" ] || fail "crash: collected output $(cat kout)"
[ "$(tail -n +2 kjl | cut -f1 | sort -n | tr '\n' ' ')" = "1 2 3 4 " ] || fail "crash: joblog $(cat kjl)"
grep -q " 1 redelivered" k2.log || fail "crash: the second worker did not get the job again: $(cat k2.log)"
echo "weft-run $NAME check passed"
