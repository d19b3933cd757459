#!/usr/bin/env bash
# weft-run-compare.sh [WEFT_RUN]: weft-run against xargs -P and GNU parallel on this machine, in one run.
# Not a test: it prints a markdown table of figures (for pipelines/weft-run/README.md).
#   1. N `true` jobs at -j 2 (N = 10,000): weft-run (shell, and --no-shell), `xargs -P2 -n1`, GNU parallel;
#   2. M jobs each printing 100 lines at -j 2 (M = 2,000; `head -n 100 FILE`, no shell for xargs and
#      weft-run --no-shell): the same tools, and how many output lines came out garbled (not one of the
#      file's lines: pieces of two jobs' lines run together).
# Each figure is the best of R runs (R = 3): wall time; CPU per job = (user + sys of the tool and every job
# it waited for, from /usr/bin/time) / jobs; per-job overhead = wall / jobs (the jobs themselves do almost
# nothing, so at -j 2 this is what a job costs the run); peak RSS of the tool (its largest process: for
# weft-run, weft-run itself). GNU parallel costs milliseconds a job: it runs P jobs (P = N / 5 and M / 5 by
# default) and its per-job figures are compared. Sizes: WR_N, WR_M, WR_PAR_N, WR_PAR_M, WR_REPS.
#   bench/weft-run-compare.sh build/pipelines/weft-run/weft-run
set -euo pipefail
wr=${1:-build/pipelines/weft-run/weft-run}
case $wr in /*) ;; *) wr=$PWD/$wr ;; esac
[ -x "$wr" ] || { echo "usage: $0 WEFT_RUN (not executable: $wr)" >&2; exit 2; }
N=${WR_N:-10000} M=${WR_M:-2000} R=${WR_REPS:-3}
PN=${WR_PAR_N:-$((N / 5))} PM=${WR_PAR_M:-$((M / 5))}
have_parallel=0; command -v parallel > /dev/null && have_parallel=1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/weft-run-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
awk 'BEGIN { for (i = 1; i <= 100; i++) printf "line %03d of a job'"'"'s output, as long as a log line might be: %s\n", i, "xxxxxxxxxxxxxxxx" }' > l
seq 1 "$N" > inN
seq 1 "$PN" > inPN
yes l | head -n "$M" > inM || true
yes l | head -n "$PM" > inPM || true

rows=()
# measure NAME JOBS INPUT CHECK CMD...: runs `CMD < INPUT > out` R times under /usr/bin/time; keeps the best
# wall time and that run's CPU and RSS. CHECK "lines" counts the output lines that are not lines of l.
measure() {
  local name=$1 jobs=$2 input=$3 check=$4 best="" cpu rss wall u s m garbled="-" lines
  shift 4
  for _ in $(seq 1 "$R"); do
    HOME=$tmp /usr/bin/time -f "%e %U %S %M" -o t "$@" < "$input" > out 2> err || { echo "$name failed:" >&2; tail -3 err >&2; return 1; }
    read -r wall u s m < t
    if [ -z "$best" ] || awk -v a="$wall" -v b="$best" 'BEGIN { exit !(a < b) }'; then
      best=$wall cpu=$(awk -v u="$u" -v s="$s" 'BEGIN { print u + s }') rss=$m
      if [ "$check" = lines ]; then
        lines=$(wc -l < out)
        garbled=$(grep -cvxFf l out || true)
        [ "$lines" = $((jobs * 100)) ] || garbled="$garbled ($lines lines of $((jobs * 100)))"
      fi
    fi
  done
  rows+=("$(awk -v n="$name" -v j="$jobs" -v w="$best" -v c="$cpu" -v r="$rss" -v g="$garbled" 'BEGIN {
    printf "| %s | %d | %.2f | %.0f | %.0f | %.1f | %s |", n, j, w, w / j * 1e6, c / j * 1e6, r / 1024, g }')")
  echo "  $name: $best s" >&2
}
echo "weft-run-compare: $N true jobs, $M jobs x 100 lines, -j 2, best of $R ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
measure "weft-run true" "$N" inN - "$wr" -j 2 true
measure "weft-run --no-shell true" "$N" inN - "$wr" -j 2 --no-shell true
measure "xargs -P2 -n1 true" "$N" inN - xargs -P2 -n1 true
[ $have_parallel = 0 ] || measure "parallel true" "$PN" inPN - parallel --will-cite -j 2 true
measure "weft-run head (100 lines)" "$M" inM lines "$wr" -j 2 head -n 100
measure "weft-run --no-shell head" "$M" inM lines "$wr" -j 2 --no-shell head -n 100
measure "xargs -P2 -n1 head" "$M" inM lines xargs -P2 -n1 head -n 100
[ $have_parallel = 0 ] || measure "parallel head" "$PM" inPM lines parallel --will-cite -j 2 head -n 100

echo
echo "$("$wr" --version | head -1), $(xargs --version | head -1)$([ $have_parallel = 0 ] || echo ", $(parallel --version | head -1)");" \
     "$(nproc) cores, -j 2, best of $R runs, $(date -u +%Y-%m-%d)"
echo
echo "| tool | jobs | wall (s) | wall per job (µs) | CPU per job (µs) | peak RSS (MiB) | garbled lines |"
echo "|---|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
