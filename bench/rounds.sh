#!/usr/bin/env bash
# bench/rounds.sh: run bench/compare.sh several times and summarise each workload's Go/weft ratio over the
# rounds (min, median, max, and in how many rounds it met the target of its issue), because on a shared
# 2-vCPU VM one side-by-side run is one sample: where the hypervisor places the two vCPUs moves a
# cross-core cache-line round trip between ~65 and ~400 ns from one minute to the next, and every workload
# that hands data between threads moves with it. Each round also records that round trip
# (weft-bench's line_rtt), so a reader can tell a slow round from a slow weft.
#
#   bench/rounds.sh [-n ROUNDS] [-b BUILD_DIR] [-o OUT_DIR] [WORKLOAD ...]
#
#   -n N     rounds (default 5)
#   -b DIR   weft's build tree, passed to compare.sh (default: build)
#   -o DIR   keep every round's raw output (DIR/round-K) and the summary (DIR/summary)
#   WORKLOAD the workloads (default: all of compare.sh's)
#
# Ratios are Go ns/op over weft ns/op (higher is better for weft), except cancel_latency (weft's p99 over
# the futex wake-all floor measured in the same run: lower is better) and ctx_memory (weft's bytes per
# context: lower is better).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
rounds=5
build=build
out=
while getopts "n:b:o:h" opt; do
  case $opt in
    n) rounds=$OPTARG ;;
    b) build=$OPTARG ;;
    o) out=$OPTARG ;;
    *) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
tmp=$(mktemp -d "${TMPDIR:-/tmp}/weft-rounds.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
[ -n "$out" ] || out=$tmp/out
mkdir -p "$out" || exit 1

case $build in /*) ;; *) build=$(cd "$here/.." && pwd)/$build ;; esac
for ((k = 1; k <= rounds; k++)); do
  echo "rounds.sh: round $k of $rounds" >&2
  bash "$here/compare.sh" -b "$build" -o "$out/round-$k" "$@" >"$out/round-$k.table" 2>"$out/round-$k.log" ||
    echo "rounds.sh: round $k: compare.sh failed (see $out/round-$k.log)" >&2
  [ -f "$out/round-$k/weft.line_rtt.out" ] || [ ! -x "$build/bench/weft-bench" ] ||
    "$build/bench/weft-bench" line_rtt 2>/dev/null | grep '^line_rtt ' >"$out/round-$k/weft.line_rtt.out"
done

# One line per round and workload: workload value, where value is the ratio described above.
for ((k = 1; k <= rounds; k++)); do
  d=$out/round-$k
  for f in "$d"/weft.*.out; do
    [ -f "$f" ] || continue
    w=${f#"$d"/weft.}; w=${w%.out}
    awk -v w="$w" -v gofile="$d/go.$w.out" '
      function val(line, key,   n, i, t, kv) { n = split(line, t, " "); for (i = 1; i <= n; i++) { split(t[i], kv, "="); if (kv[1] == key) return kv[2] } return "" }
      { weft = $0 }
      END {
        if (w == "cancel_latency") { v = val(weft, "p99_vs_floor") }
        else if (w == "ctx_memory") { v = val(weft, "bytes_per_ctx") }
        else if (w == "line_rtt") { v = val(weft, "ns_per_op") }
        else {
          g = ""; if ((getline gl < gofile) > 0) g = val(gl, "ns_per_op")
          n = val(weft, "ns_per_op"); v = (g != "" && n > 0) ? g / n : ""
        }
        if (v != "") printf "%s %s\n", w, v
      }' "$f"
  done
done >"$tmp/values"

{
  printf '%-15s %-12s %7s %7s %7s %7s\n' workload target met min median max
  awk '
    BEGIN {
      tgt["ctx_cancel"] = ">=4"; tgt["ctx_timeout"] = ">=4"; tgt["ctx_value"] = ">=2"; tgt["tree_cancel"] = ">=3"
      tgt["chan_spsc"] = ">=3"; tgt["chan_pingpong"] = ">=1.5"; tgt["pool_tiny"] = ">=4"; tgt["pipeline3"] = ">=3"
      tgt["cancel_latency"] = "<=1.25"; tgt["ctx_memory"] = "<=96"
    }
    { v[$1] = v[$1] " " $2; n[$1]++ }
    END {
      for (w in v) {
        m = split(substr(v[w], 2), a, " ")
        for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
        med = (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
        met = "-"; t = (w in tgt) ? tgt[w] : (w == "line_rtt" ? "(ns)" : "-")
        if (w in tgt) {
          met = 0; lim = substr(t, 3) + 0
          for (i = 1; i <= m; i++) if ((substr(t, 1, 1) == ">" && a[i] + 0 >= lim) || (substr(t, 1, 1) == "<" && a[i] + 0 <= lim)) met++
          met = met "/" m
        }
        printf "%-15s %-12s %7s %7.2f %7.2f %7.2f\n", w, t, met, a[1], med, a[m]
      }
    }' "$tmp/values" | sort
} | tee "$out/summary"
