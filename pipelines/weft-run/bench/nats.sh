#!/usr/bin/env bash
# weft-run across machines, on one machine: jobs/s of `true` jobs through submit -> two workers -> collect
# against the same jobs run by a local weft-run, and the queue's cost per job.
#   bench/nats.sh path/to/weft-run [JOBS]      (default 2000; needs nats-server)
# Set-up: one nats-server (JetStream, file storage, no replication) on 127.0.0.1, every process on this
# machine. Figures:
#   local           weft-run -j2 true ::: 1..N
#   queue, serial   submit all N, then two workers (-j1 each) run them while collect waits for every result
#   queue, overlap  workers and collect already running while submit publishes
#   publish         submit's time per job (one synchronous publish, its stored-acknowledgement awaited)
#   fetch+ack       a --dry-run worker (-j1, no process spawned) per job: fetch, publish the result, Ack
#                   confirmed by the server
set -u
WR=${1:?usage: $0 path/to/weft-run [JOBS]}
N=${2:-2000}
command -v nats-server >/dev/null || { echo "nats-server not installed"; exit 1; }
T=$(mktemp -d); PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -INT $p 2>/dev/null; done; kill $SP 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
PORT=$(( 20000 + RANDOM % 40000 ))
nats-server -js -a 127.0.0.1 -p $PORT -sd "$T/store" >"$T/server.log" 2>&1 & SP=$!
for _ in $(seq 100); do grep -q "Server is ready" "$T/server.log" && break; sleep 0.1; done
URL=nats://127.0.0.1:$PORT
now() { date +%s.%N; }
rate() { awk -v n="$N" -v a="$1" -v b="$2" 'BEGIN { printf "%8.0f jobs/s  %8.1f us/job", n / (b - a), (b - a) * 1e6 / n }'; }
seq "$N" >"$T/in"

t0=$(now); "$WR" -j2 --no-bar true :::: "$T/in" >/dev/null 2>&1; t1=$(now)
echo "local weft-run -j2       $(rate "$t0" "$t1")"

t0=$(now); "$WR" --submit "$URL/SER" true :::: "$T/in" 2>/dev/null; t1=$(now)
echo "publish (submit)         $(rate "$t0" "$t1")"
"$WR" --worker "$URL/SER" -j1 2>/dev/null & PIDS+=($!)
"$WR" --worker "$URL/SER" -j1 2>/dev/null & PIDS+=($!)
"$WR" --collect "$URL/SER" >/dev/null 2>&1; t2=$(now)
echo "queue, serial: run+collect $(rate "$t1" "$t2")"
echo "queue, serial: all       $(rate "$t0" "$t2")"

"$WR" --worker "$URL/OVL" -j1 2>/dev/null & PIDS+=($!)
"$WR" --worker "$URL/OVL" -j1 2>/dev/null & PIDS+=($!)
sleep 1
t0=$(now)
"$WR" --collect "$URL/OVL" >/dev/null 2>&1 & C=$!
"$WR" --submit "$URL/OVL" true :::: "$T/in" 2>/dev/null
wait $C; t1=$(now)
echo "queue, overlapped        $(rate "$t0" "$t1")"

"$WR" --submit "$URL/DRY" true :::: "$T/in" 2>/dev/null
t0=$(now)
"$WR" --worker "$URL/DRY" -j1 --dry-run 2>/dev/null & PIDS+=($!)
"$WR" --collect "$URL/DRY" >/dev/null 2>&1; t1=$(now)
echo "fetch+result+ack (dry)   $(rate "$t0" "$t1")"
