#!/usr/bin/env bash
# weft-run across machines: submit -> two workers -> collect gives every job exactly once, with its
# output and exit status; resubmitting publishes only duplicates; collecting twice gives the same; a
# deadline in the header stops the job on the worker; bad URLs are refused.
source "$(dirname "$0")/nats-lib.sh"
start_server
cd "$T"
CMD='printf "out %s\n" {}; printf "err %s\n" {} >&2; echo {} >> '"$T"'/ran; sleep 0.05; exit $(( {} % 7 == 0 ))'

"$WR" --submit "$URL/B" "$CMD" ::: $(seq 30) 2>submit.log || fail "submit failed"
grep -q "30 jobs: 30 published, 0 duplicates" submit.log || fail "submit: $(cat submit.log)"
"$WR" --submit "$URL/B" "$CMD" ::: $(seq 30) 2>resubmit.log || fail "resubmit failed"
grep -q "30 jobs: 0 published, 30 duplicates" resubmit.log || fail "resubmit: $(cat resubmit.log)"

"$WR" --worker "$URL/B" -j2 --idle 2s 2>w1.log & W1=$!; PIDS+=($W1)
"$WR" --worker "$URL/B" -j2 --idle 2s 2>w2.log & W2=$!; PIDS+=($W2)
timeout 120 "$WR" --collect "$URL/B" -k --joblog jl >out 2>err; rc=$?
[ $rc = 4 ] || fail "collect exit $rc, expected 4 (jobs 7 14 21 28 fail)"
seq 30 | sed 's/^/out /' | cmp -s - out || fail "collect -k: stdout not the 30 outputs in order: $(head out)"
[ "$(grep -c '^err ' err)" = 30 ] || fail "collect: stderr lacks the jobs' error output"
wait $W1; r1=$?; wait $W2; r2=$?
[ $(( r1 + r2 )) = 4 ] || fail "workers' exit statuses $r1 + $r2, expected the 4 failures between them"
# every job ran once and has one joblog line with its exit value
[ "$(sort -n ran | uniq | wc -l)" = 30 ] && [ "$(wc -l <ran)" = 30 ] || fail "jobs did not run exactly once: $(sort -n ran | uniq -d)"
[ "$(tail -n +2 jl | wc -l)" = 30 ] || fail "joblog: $(tail -n +2 jl | wc -l) lines, expected 30"
[ "$(tail -n +2 jl | cut -f1 | sort -n | uniq | wc -l)" = 30 ] || fail "joblog: a job twice"
bad=$(tail -n +2 jl | awk -F'\t' '($1 % 7 == 0) != ($7 == 1) || $2 == ":"' | wc -l)
[ "$bad" = 0 ] || fail "joblog: wrong exit values or hosts: $(cat jl)"
grep -q "30 results: 26 done, 4 failed" err || fail "collect summary: $(tail -3 err)"

# reading the results again changes nothing on the server and gives the same lines (any order without -k)
timeout 60 "$WR" --collect "$URL/B" >out2 2>err2; rc=$?
[ $rc = 4 ] && [ "$(sort out2)" = "$(sort out)" ] || fail "second collect: exit $rc, output differs"
# resubmitting after the batch ran still stores nothing twice (ids outlive the acked messages)
"$WR" --submit "$URL/B" "$CMD" ::: $(seq 30) 2>resubmit2.log || fail "resubmit after the run failed"
grep -q "0 published, 30 duplicates" resubmit2.log || fail "resubmit after the run: $(cat resubmit2.log)"

# a deadline in the header stops the job on the worker: a result "timed out" (Exitval -1, SIGTERM), Term
"$WR" --submit "$URL/D" --deadline 2s 'echo started; sleep 60' ::: 1 2>dsubmit.log || fail "submit --deadline"
timeout 100 "$WR" --worker "$URL/D" -j1 --idle 1s --term-grace 500ms 2>dworker.log; rc=$?
[ $rc = 1 ] || fail "deadline: worker exit $rc, expected 1 (one job timed out)"
grep -q "0 done, 0 failed, 1 timed out" dworker.log && grep -q "1 expired" dworker.log || fail "deadline: $(cat dworker.log)"
timeout 60 "$WR" --collect "$URL/D" --joblog djl >dout 2>derr; rc=$?
[ $rc = 1 ] || fail "deadline: collect exit $rc"
[ "$(tail -n +2 djl | cut -f7,8)" = "$(printf -- '-1\t15')" ] || fail "deadline: joblog $(cat djl)"
grep -q started dout || fail "deadline: the job's output before its stop is missing"

# refused: URLs and options that do not fit
"$WR" --submit http://x/B true ::: 1 2>e1; [ $? = 255 ] && grep -q "nats://HOST:PORT/STREAM" e1 || fail "bad URL: $(cat e1)"
"$WR" --worker "$URL/a.b" 2>e2; [ $? = 255 ] && grep -q "STREAM made of" e2 || fail "bad stream: $(cat e2)"
"$WR" --worker "$URL/B" echo 2>e3; [ $? = 255 ] && grep -q "takes no command" e3 || fail "worker with a command: $(cat e3)"
"$WR" --submit "$URL/B" 'echo {%}' ::: 1 2>e4; [ $? = 255 ] && grep -q "job slot" e4 || fail "{%} submitted: $(cat e4)"
"$WR" --collect nats://127.0.0.1:1/B 2>e5; [ $? = 255 ] || fail "no server: $(cat e5)"
out=$("$WR" --submit "$URL/X" --dry-run 'echo {}' ::: a b 2>e6); [ $? = 0 ] && [ "$out" = "$(printf 'echo a\necho b')" ] || fail "submit --dry-run: $out $(cat e6)"
"$WR" --submit "$URL/X" --joblog j true ::: 1 2>e7; [ $? = 255 ] && grep -q "belongs to --collect" e7 || fail "submit --joblog: $(cat e7)"
echo "weft-run $NAME check passed"
