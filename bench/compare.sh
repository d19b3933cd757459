#!/usr/bin/env bash
# bench/compare.sh: run weft's C weft-bench and the Go side (bench/go, weft-bench-go) on the same
# workloads, side by side in one run, and print a table: weft ns/op, Go ns/op, and Go/weft (how many
# times faster weft is). Workloads are those of bench/README.md ("Workloads").
#
#   bench/compare.sh [-b BUILD_DIR] [-w WEFT_BENCH] [-g WEFT_BENCH_GO] [-o OUT_DIR] [WORKLOAD ...]
#
#   -b DIR   CMake build tree of weft (default: build, relative to the repository); weft-bench is
#            DIR/bench/weft-bench, configured and built with CMake if it is not there yet
#   -w PATH  the weft-bench binary to run (overrides -b; never built by this script)
#   -g PATH  a weft-bench-go binary to run instead of building bench/go
#   -o DIR   keep the raw output of every run, and the table, in DIR
#   WORKLOAD the workloads to run (default: every workload either side knows)
#
# Each workload runs in its own process on each side, weft then Go, one workload after the other, so
# both sides see the same machine state. A workload one side does not know (the C side is written in
# parallel) shows as "-"; one whose check failed shows as FAIL and makes the exit status 1.
# Go runs with GOMAXPROCS=2. Go is needed only here (not by the CMake build nor CI); if `go` is
# missing and this runs as root, golang-go is installed with apt-get.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
build_dir=build
weft_bench=
go_bench=
out_dir=

usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while getopts "b:w:g:o:h" opt; do
  case $opt in
    b) build_dir=$OPTARG ;;
    w) weft_bench=$OPTARG ;;
    g) go_bench=$OPTARG ;;
    o) out_dir=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
case $build_dir in /*) ;; *) build_dir=$root/$build_dir ;; esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/weft-compare.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
if [ -n "$out_dir" ]; then mkdir -p "$out_dir" || exit 1; else out_dir=$tmp/out; mkdir -p "$out_dir"; fi
note() { printf '%s\n' "compare.sh: $*" >&2; }
have_timeout=; command -v timeout >/dev/null 2>&1 && have_timeout=1
run_limited() { if [ -n "$have_timeout" ]; then timeout 900 "$@"; else "$@"; fi; }

# --- the C side ---------------------------------------------------------------------------------
if [ -z "$weft_bench" ]; then
  weft_bench=$build_dir/bench/weft-bench
  if [ ! -x "$weft_bench" ]; then
    note "building weft-bench in $build_dir"
    # An existing tree (possibly of another checkout) is only rebuilt; a new one is configured from here.
    configure=(true)
    if [ ! -f "$build_dir/CMakeCache.txt" ]; then
      configure=(cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release)
      command -v ninja >/dev/null 2>&1 && configure+=(-G Ninja)
    fi
    if ! { "${configure[@]}" >"$tmp/cmake.log" 2>&1 &&
           cmake --build "$build_dir" --target weft-bench >>"$tmp/cmake.log" 2>&1; }; then
      tail -n 20 "$tmp/cmake.log" >&2
      note "weft-bench did not build; the weft column stays empty"
    fi
  fi
fi
[ -x "$weft_bench" ] || { note "no weft-bench at $weft_bench"; weft_bench=; }

# --- the Go side --------------------------------------------------------------------------------
if [ -z "$go_bench" ]; then
  if ! command -v go >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    note "go is missing: installing golang-go"
    DEBIAN_FRONTEND=noninteractive apt-get install -y golang-go >"$tmp/apt.log" 2>&1 ||
      { apt-get update >>"$tmp/apt.log" 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y golang-go >>"$tmp/apt.log" 2>&1; } ||
      tail -n 5 "$tmp/apt.log" >&2
  fi
  if command -v go >/dev/null 2>&1; then
    # A home the go tool cannot write to would stop it at its build cache.
    if [ -z "${GOCACHE:-}" ] && ! { [ -n "${HOME:-}" ] && [ -w "$HOME" ]; }; then
      export GOCACHE=$tmp/go-cache GOPATH=$tmp/go-path
    fi
    go_bench=$tmp/weft-bench-go
    if ! (cd "$root/bench/go" && GOFLAGS= GOPROXY=off go build -o "$go_bench" .) 2>"$tmp/go-build.log"; then
      cat "$tmp/go-build.log" >&2
      note "weft-bench-go did not build; the Go column stays empty"
      go_bench=
    fi
  else
    note "go is not installed; the Go column stays empty"
  fi
fi
[ -z "$go_bench" ] || [ -x "$go_bench" ] || { note "no weft-bench-go at $go_bench"; go_bench=; }
[ -n "$weft_bench" ] || [ -n "$go_bench" ] || { note "neither side can run"; exit 1; }

# --- the workload list --------------------------------------------------------------------------
if [ $# -gt 0 ]; then
  workloads=("$@")
else
  workloads=()
  add() { local w x; for w in "$@"; do for x in "${workloads[@]}"; do [ "$x" = "$w" ] && continue 2; done; workloads+=("$w"); done; }
  [ -z "$go_bench" ] || add $("$go_bench" -list)
  # weft-bench has no list option; an unknown name makes it print "...; known: a b c" on stderr.
  [ -z "$weft_bench" ] || add $("$weft_bench" __no_such_workload__ 2>&1 >/dev/null | sed -n 's/.*known://p')
fi

# --- runs ---------------------------------------------------------------------------------------
# run SIDE BINARY WORKLOAD: the workload's line in $out_dir/SIDE.WORKLOAD.out, or a status word
# (missing / unknown / FAIL) in $out_dir/SIDE.WORKLOAD.status.
run() {
  local side=$1 bin=$2 w=$3 base=$out_dir/$1.$3 rc line
  if [ -z "$bin" ]; then echo missing >"$base.status"; return; fi
  if [ "$side" = go ]; then
    GOMAXPROCS=2 run_limited "$bin" "$w" >"$base.stdout" 2>"$base.stderr"; rc=$?
  else
    run_limited "$bin" "$w" >"$base.stdout" 2>"$base.stderr"; rc=$?
  fi
  line=$(grep -E "^$w[[:space:]]" "$base.stdout" | tail -n 1)
  if [ -n "$line" ] && [ "$rc" = 0 ]; then
    printf '%s\n' "$line" >"$base.out"; echo ok >"$base.status"
  elif grep -q "unknown workload" "$base.stderr"; then
    echo unknown >"$base.status"
  else
    echo FAIL >"$base.status"; note "$side $w failed (exit $rc): $(tail -n 3 "$base.stderr" | tr '\n' ' ')"
  fi
  [ -s "$base.stderr" ] && [ "$(cat "$base.status")" = ok ] && sed "s/^/$side $w: /" "$base.stderr" >&2
  return 0
}

# field FILE KEY...: the value of the first KEY present among the line's key=value pairs.
field() {
  local file=$1 tok key toks; shift
  [ -f "$file" ] || return 0
  read -r -a toks <"$file"
  for key in "$@"; do
    for tok in "${toks[@]}"; do
      case $tok in "$key="*) printf '%s' "${tok#*=}"; return 0 ;; esac
    done
  done
}
# cell SIDE WORKLOAD KEY...: a field of the side's line, or - / FAIL.
cell() {
  local st; st=$(cat "$out_dir/$1.$2.status" 2>/dev/null)
  case $st in
    ok) local v; v=$(field "$out_dir/$1.$2.out" "${@:3}"); printf '%s' "${v:--}" ;;
    FAIL) printf 'FAIL' ;;
    *) printf '%s' - ;;
  esac
}
# ratio A B: A/B to two decimals, or - when either is not a positive number.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.eE+-]+$/ && b ~ /^[0-9.eE+-]+$/ && a > 0 && b > 0) printf "%.2f", a / b; else printf "-" }'; }

{
  echo "# weft vs Go, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc 2>/dev/null || echo '?') CPUs"
  echo "# weft: ${weft_bench:-none}"
  if [ -n "$go_bench" ]; then
    echo "# Go:   $go_bench ($(go version 2>/dev/null | awk '{print $3}'), GOMAXPROCS=2)"
  else
    echo "# Go:   none"
  fi
} >"$out_dir/header"
cat "$out_dir/header"

failed=0
rows=()
for w in "${workloads[@]}"; do
  note "running $w"
  run weft "$weft_bench" "$w"
  run go "$go_bench" "$w"
  for side in weft go; do [ "$(cat "$out_dir/$side.$w.status")" = FAIL ] && failed=1; done
  wn=$(cell weft "$w" ns_per_op); gn=$(cell go "$w" ns_per_op)
  detail=
  case $w in
    cancel_latency)
      wp50=$(cell weft "$w" p50_us); gp50=$(cell go "$w" p50_us)
      wp99=$(cell weft "$w" p99_us); gp99=$(cell go "$w" p99_us)
      detail="p50 µs $wp50 / $gp50; p99 µs $wp99 / $gp99 (Go/weft $(ratio "$gp99" "$wp99"))"
      wf=$(cell weft "$w" floor_p99_us); [ "$wf" != - ] && detail="$detail; weft floor p99 $wf µs" ;;
    ctx_memory)
      wb=$(cell weft "$w" bytes_per_ctx rss_bytes_per_ctx bytes_per_op bytes)
      gb=$(cell go "$w" bytes_per_ctx)
      detail="B/ctx $wb / $gb (Go/weft $(ratio "$gb" "$wb")); Go heap $(cell go "$w" heap_bytes_per_ctx) B/ctx" ;;
    ctx_cancel | ctx_timeout)
      wa=$(cell weft "$w" allocs_per_op); ga=$(cell go "$w" allocs_per_op)
      detail="allocs/op $wa / $ga" ;;
  esac
  rows+=("$w|$wn|$gn|$(ratio "$gn" "$wn")|$detail")
done

echo
{
  echo "workload|weft ns/op|Go ns/op|Go/weft|weft / Go detail"
  printf '%s\n' "${rows[@]}"
} | awk -F'|' '
  { for (i = 1; i <= NF; i++) { c[NR, i] = $i; if (length($i) > wd[i]) wd[i] = length($i) } n = NR; nf = NF }
  END {
    for (r = 1; r <= n; r++) {
      line = ""
      for (i = 1; i <= nf; i++) {
        f = (i == 1 || i == nf) ? "%-" wd[i] "s" : "%" wd[i] "s"
        line = line (i > 1 ? "  " : "") sprintf(f, c[r, i])
      }
      sub(/ +$/, "", line); print line
    }
  }' | tee "$out_dir/table"
echo
echo "raw lines:"
for w in "${workloads[@]}"; do
  for side in weft go; do
    [ -f "$out_dir/$side.$w.out" ] && printf '  %-4s %s\n' "$side" "$(cat "$out_dir/$side.$w.out")"
  done
done
exit $failed
