#!/usr/bin/env bash
# output.sh WEFT_RUN: output is never garbled.
#   - --group (default): 40 jobs x 300 lines on stdout and 100 on stderr, written in bursts and in pieces of
#     lines, at -j 8: every job's lines come out whole, contiguous and in order, stdout and stderr apart;
#     jobs writing 12 MB each (past the in-memory hold: a temporary file) the same;
#     a job's output does not show before it ends;
#   - --line-buffer: the same jobs: every line whole and each job's lines in order (jobs may alternate);
#     a line shows while its job still runs (the job waits for the test to see it);
#   - --ungroup: everything arrives; a line shows while its job runs;
#   - --tag: every line (stdout and stderr, with --group and --line-buffer) starts with its job's input and
#     a tab;
#   - -k: input order under random delays (the seed is printed), with --tag; a job that does not end holds
#     back later outputs, and (past a window of 2N jobs) the start of new jobs, not the whole input.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# lines.sh ID N: N lines "job ID line L pad..." on stdout and N/3 on stderr, each line in two writes, with a
# pause every 25 lines so that jobs overlap.
cat > "$tmp/lines.sh" <<'SH'
#!/bin/sh
i=1
while [ "$i" -le "$2" ]; do
  printf 'job %s line %s ' "$1" "$i"
  printf 'pad-%s-%s end\n' "$1" "$i"
  if [ $((i % 3)) = 0 ]; then printf 'err %s line %s end\n' "$1" $((i / 3)) >&2; fi
  if [ $((i % 25)) = 0 ]; then sleep 0.01; fi
  i=$((i + 1))
done
SH
# big.sh ID N: N lines from awk, which writes in blocks that cut lines anywhere.
cat > "$tmp/big.sh" <<'SH'
#!/bin/sh
awk -v id="$1" -v n="$2" 'BEGIN { for (i = 1; i <= n; i++) printf "job %d line %d pad-%d-%d end\n", id, i, id, i }'
SH
# check_lines FILE KIND JOBS N [tag]: every line is one of job ID's; KIND "group": a job's lines are
# contiguous; "lines": jobs may alternate; in both each job's lines 1..N in order, every job present once.
check_lines() {
  local f=$1 kind=$2 jobs=$3 n=$4 tag=${5:-} word=job
  [ "$kind" != group-err ] && [ "$kind" != lines-err ] || word=err
  awk -v kind="${kind%-err}" -v jobs="$jobs" -v n="$n" -v tag="$tag" -v word="$word" '
    /^weft-run: / { next }
    {
      line = $0
      if (tag != "") {
        t = index(line, "\t"); if (t == 0) { print "untagged line " NR ": " $0; exit 1 }
        tg = substr(line, 1, t - 1); line = substr(line, t + 1)
      }
      if (word == "job") {
        ok = (line ~ /^job [0-9]+ line [0-9]+ pad-[0-9]+-[0-9]+ end$/)
        split(line, w, " "); id = w[2]; l = w[4]
        if (ok && w[5] != "pad-" id "-" l) ok = 0
      } else {
        ok = (line ~ /^err [0-9]+ line [0-9]+ end$/); split(line, w, " "); id = w[2]; l = w[4]
      }
      if (!ok) { print "garbled line " NR ": " $0; exit 1 }
      if (tag != "" && tg != id) { print "line " NR " tagged " tg ": " $0; exit 1 }
      if (l != last[id] + 1) { print "job " id ": line " l " after " last[id] + 0 " (line " NR ")"; exit 1 }
      if (kind == "group" && cur != id) {
        if (cur != "" && last[cur] != n) { print "job " cur " cut by job " id " at line " NR; exit 1 }
        if (seen[id]++) { print "job " id " printed twice"; exit 1 }
        cur = id
      }
      last[id] = l
    }
    END {
      for (i = 1; i <= jobs; i++) if (last[i] != n) { print "job " i ": " last[i] + 0 " of " n " lines"; exit 1 }
    }' "$f" > "$tmp/check" || { cat "$tmp/check" >&2; fail "$6"; }
}
J=40 N=300
for mode in --group --line-buffer; do
  wr -j 8 "$mode" sh "$tmp/lines.sh" {} $N ::: $(seq 1 $J) < /dev/null
  expect_rc 0 "$mode"
  kind=group; [ "$mode" = --group ] || kind=lines
  check_lines "$tmp/out" "$kind" $J $N "" "$mode: stdout"
  check_lines "$tmp/err" "$kind-err" $J $((N / 3)) "" "$mode: stderr"
  wr -j 8 "$mode" --tag sh "$tmp/lines.sh" {} $N ::: $(seq 1 $J) < /dev/null
  expect_rc 0 "$mode --tag"
  check_lines "$tmp/out" "$kind" $J $N tag "$mode --tag: stdout"
  check_lines "$tmp/err" "$kind-err" $J $((N / 3)) tag "$mode --tag: stderr"
  echo "$mode: $J jobs x $N lines, whole and in order, with and without --tag"
done
wr -j 6 sh "$tmp/lines.sh" {} $N ::: $(seq 1 $J) < /dev/null
expect_rc 0 "default (--group)"
check_lines "$tmp/out" group $J $N "" "default output mode"
# Large outputs: 6 jobs x 350,000 lines (about 12 MB each, past the in-memory hold), 3 at once.
B=350000
for mode in --group --line-buffer; do
  kind=group; [ "$mode" = --group ] || kind=lines
  wr -j 3 "$mode" sh "$tmp/big.sh" {} $B ::: 1 2 3 4 5 6 < /dev/null
  expect_rc 0 "$mode, large outputs"
  check_lines "$tmp/out" "$kind" 6 $B "" "$mode: large outputs"
  [ -z "$(ls "$tmp" | grep -v -e '\.sh$' -e '^out$' -e '^err$' -e '^check$' -e '^pids$' || true)" ] \
    || fail "$mode: temporary files left in TMPDIR: $(ls "$tmp")"
done
echo "large outputs: 6 x $B lines whole in --group and --line-buffer; no temporary file left"
wr -j 8 -u sh "$tmp/lines.sh" {} $N ::: $(seq 1 10) < /dev/null
expect_rc 0 "--ungroup"
[ "$(grep -c 'end$' "$tmp/out")" -ge $((10 * N - 10 * 8)) ] || fail "--ungroup: output lost"
[ "$(grep -o 'end' "$tmp/out" | wc -l)" = $((10 * N)) ] || fail "--ungroup: output lost"
echo "--ungroup: all output arrived"

# Causality: --line-buffer and --ungroup show a line while its job runs (the job waits for the test to see it);
# --group does not show it before the job ends.
for mode in --line-buffer -u; do
  rm -f "$tmp/go"
  wr_bg "$mode" "echo first {}; i=0; while [ ! -e $tmp/go ] && [ \$i -lt 3000 ]; do sleep 0.02; i=\$((i+1)); done; echo second" \
    ::: 1 < /dev/null
  wait_for grep -q first "$tmp/out"
  touch "$tmp/go"
  wr_wait
  expect_rc 0 "$mode, live line"
  [ "$(cat "$tmp/out")" = $'first 1\nsecond' ] || { show; fail "$mode: live line"; }
done
rm -f "$tmp/go" "$tmp/started"
wr_bg "echo early {}; touch $tmp/started; i=0; while [ ! -e $tmp/go ] && [ \$i -lt 3000 ]; do sleep 0.02; i=\$((i+1)); done; echo late" \
  ::: 1 < /dev/null
wait_for test -e "$tmp/started"
sleep 0.5
[ ! -s "$tmp/out" ] || { show; fail "--group: a job's output showed before it ended"; }
touch "$tmp/go"
wr_wait
expect_rc 0 "--group, held output"
[ "$(cat "$tmp/out")" = $'early 1\nlate' ] || { show; fail "--group: held output"; }
echo "--line-buffer and --ungroup show lines live; --group holds them until the job ends"

# -k: input order whatever the delays.
seed=${WEFT_SEED:-$RANDOM}
echo "keep-order seed: $seed (WEFT_SEED)"
mapfile -t delays < <(awk -v s="$seed" 'BEGIN { srand(s); for (i = 1; i <= 60; i++) printf "%.3f\n", rand() * 0.15 }')
seq 1 60 | awk '{ print $1 " a"; print $1 " b" }' > "$tmp/want"
for tag in "" --tag; do
  wr -k -j 4 $tag --link "sleep {2}; echo {1} a; echo {1} e >&2; echo {1} b" ::: $(seq 1 60) ::: "${delays[@]}" < /dev/null
  expect_rc 0 "-k $tag"
  if [ -n "$tag" ]; then
    # The tag is the job's inputs (both sources: "ID DELAY") and a tab.
    awk -F'\t' '{ split($1, t, " "); split($2, l, " "); if (t[1] != l[1]) { print "bad tag: " $0; exit 1 } print $2 }' \
      "$tmp/out" > "$tmp/untagged" || { show; fail "-k --tag: a line with another job's tag"; }
    mv "$tmp/untagged" "$tmp/out"
  fi
  diff "$tmp/want" "$tmp/out" > /dev/null || { show; fail "-k $tag: not in input order"; }
  grep -v '^weft-run: ' "$tmp/err" | sed 's/^.*\t//' | diff <(seq 1 60 | sed 's/$/ e/') - > /dev/null \
    || { show; fail "-k $tag: stderr not in input order"; }
done
echo "-k: 60 jobs with random delays printed in input order (stdout and stderr), with and without --tag"

# -k with a job that does not end: later outputs are held back, and so is the start of new jobs past the
# window (2N jobs); once it ends, everything comes out in order.
rm -f "$tmp/go"
mkdir "$tmp/st"
wr_bg -k -j 2 "touch $tmp/st/s.{}; if [ {} = 1 ]; then i=0; while [ ! -e $tmp/go ] && [ \$i -lt 3000 ]; do sleep 0.02; i=\$((i+1)); done; fi; echo {}" \
  ::: $(seq 1 300) < /dev/null
# Within the window the free slot goes on: jobs 2..4 at least run while job 1 does.
wait_for at_least_files "$tmp/st" s. 4
# Let the run go as far as it would (it starts nothing past the window: a second is plenty for more).
prev=-1
for _ in $(seq 1 100); do
  n=$(count_files "$tmp/st" s.)
  [ "$n" = "$prev" ] && break
  prev=$n
  sleep 1
done
[ ! -s "$tmp/out" ] || { show; fail "-k: output of later jobs printed before job 1's"; }
[ "$n" -le 10 ] || fail "-k -j 2: $n jobs started while job 1 held the output (window 2N = 4)"
touch "$tmp/go"
wr_wait
expect_rc 0 "-k, held window"
seq 1 300 | diff - "$tmp/out" > /dev/null || { show; fail "-k, held window: not in order"; }
echo "-k: a job that does not end holds back later output and starts ($n of 300 started meanwhile)"
echo "weft-run output check passed"
