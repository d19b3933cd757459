#!/usr/bin/env bash
# Allocation-failure runs: for every Criterion test of the test binaries, fail the 1st, 2nd, 3rd, ...
# allocation made inside libweft (one per run, the others succeed) until a run reaches no N-th allocation.
#   scripts/failmalloc.sh            the module tests (every test binary but the stress ones)
#   scripts/failmalloc.sh --ci       the same for CI: at most FM_CI_MAXN runs per test (default 100), one
#                                    run per core at a time, tests matching FM_SKIP (default "churn") left out
#   scripts/failmalloc.sh test_chan test_pool ...   those binaries only
# Environment: FM_BUILD (default build-asan: ASan+UBSan, configured if missing), FM_JOBS (parallel runs,
# default 1), FM_TIMEOUT (seconds per run, default 60), FM_MAXN (highest N tried, default 5000).
#
# The shim (tests/support/failmalloc.c) is preloaded into variants of the test binaries linked against a
# shared libweft (target `failmalloc`); it tells libweft's allocations from Criterion's and the test's by
# the caller's address. A run is acceptable when the test passed or reported a failed assertion (the
# library returned an error the test did not expect). Not acceptable: a crash (signal), a hang (timeout),
# an ASan or UBSan report, or a leak (LeakSanitizer) in a run whose test passed. A test that failed an
# assertion returns early and may not release what it made, so LeakSanitizer reports there are only
# counted (leaks_after_fail), not treated as library faults. The stress binaries are left out: they make
# millions of allocations, one run per allocation does not end, and they time their phases.
# Exit status: 0 when crashes, hangs, sanitizer reports and leaks are all zero.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${FM_BUILD:-build-asan}
jobs=${FM_JOBS:-1}
tmo=${FM_TIMEOUT:-60}
maxn=${FM_MAXN:-5000}
skip=${FM_SKIP:-}

if [[ ${1:-} == --one ]]; then
  # one test: --one <results file> <binary> <suite/name>
  out=$2 bin=$3 test=$4
  shim=$root/$build/tests/failmalloc.so
  export ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=1:abort_on_error=1:${FM_ASAN_OPTIONS:-}
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  export WEFT_FM_LIB=libweft_fm
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  runs=0 crashes=0 hangs=0 sans=0 leaks=0 fails=0 lfail=0 n=0 reached=0
  sites="" findings="" t0=$(date +%s)
  while ((n <= maxn)); do
    rm -f "$work"/rep*
    WEFT_FM_FAIL=$n WEFT_FM_REPORT=$work/rep LD_PRELOAD=$shim \
      timeout -k 5 "$tmo" "$bin" --filter "$test" --jobs=1 >"$work/log" 2>&1
    rc=$?
    runs=$((runs + 1))
    # the highest count of the processes of the run (Criterion's runner makes none; its test child all)
    allocs=0
    if [[ -f $work/rep ]]; then
      allocs=$(sed -n 's/.* allocs=\([0-9]*\).*/\1/p' "$work/rep" | sort -n | tail -1)
      s=$(sed -n 's/.* sites=\(.*\)$/\1/p' "$work/rep" | tr ',' '\n')
      sites+=$'\n'$s
    fi
    failed=$(sed -n 's/^failmalloc: allocation .* site \(0x[0-9a-f]*\)$/\1/p' "$work/log" | head -1)
    what=""
    if ((rc == 124 || rc == 137)); then
      what=hang
      hangs=$((hangs + 1))
    elif grep -q 'ERROR: AddressSanitizer\|runtime error:' "$work/log"; then
      what=sanitizer
      sans=$((sans + 1))
    elif grep -q 'Crashing: [1-9]\|CRASH' "$work/log" || ((rc > 128)); then
      what=crash
      crashes=$((crashes + 1))
    elif grep -q 'Tested: 0' "$work/log"; then
      what=no-such-test
      crashes=$((crashes + 1))
    elif grep -q 'Failing: [1-9]' "$work/log"; then
      fails=$((fails + 1))
      grep -q LeakSanitizer "$work/log" && lfail=$((lfail + 1))
    elif grep -q LeakSanitizer "$work/log"; then
      what=leak
      leaks=$((leaks + 1))
    elif ((rc != 0)); then
      what="exit-$rc"
      crashes=$((crashes + 1))
    fi
    if [[ -n $what ]]; then
      findings+="FINDING $what $(basename "$bin") $test N=$n site=${failed:--}"$'\n'
      cp "$work/log" "$FM_LOGDIR/$(basename "$bin").${test//\//.}.N$n.$what.log"
    fi
    if ((n == 0)); then
      reached=$allocs
      if [[ -n $what ]] || ! grep -q 'Passing: 1' "$work/log"; then
        findings+="FINDING baseline-failed $(basename "$bin") $test N=0"$'\n'
        break
      fi
    elif [[ -f $work/rep ]] && ((allocs < n)); then
      break
    elif [[ ! -f $work/rep ]] && ((n >= reached)); then
      break # no report (the run crashed): go on up to the highest count seen so far
    fi
    ((allocs > reached)) && reached=$allocs
    n=$((n + 1))
  done
  nsites=$(printf '%s\n' "$sites" | grep -c '^0x' || true)
  {
    printf '%s' "$findings"
    printf 'RESULT %s %s allocs=%d runs=%d crashes=%d hangs=%d sanitizer=%d leaks=%d test_failed=%d leaks_after_fail=%d secs=%d sites=%s\n' \
      "$(basename "$bin")" "$test" "$reached" "$runs" "$crashes" "$hangs" "$sans" "$leaks" "$fails" "$lfail" "$(($(date +%s) - t0))" \
      "$(printf '%s\n' "$sites" | grep '^0x' | sort -u | paste -sd, -)"
  } >>"$out"
  exit 0
fi

if [[ ${1:-} == --ci ]]; then
  shift
  export FM_MAXN=${FM_CI_MAXN:-100}
  skip=${FM_SKIP-churn} # churn tests repeat one operation thousands of times: one run per allocation is long
  jobs=${FM_JOBS:-$(nproc)}
fi

if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEFT_ASAN=ON -DWEFT_BUILD_BENCH=OFF >/dev/null || exit 1
fi
cmake --build "$build" -j"$(nproc)" --target failmalloc >/dev/null || {
  cmake --build "$build" --target failmalloc
  exit 1
}

bins=()
if (($#)); then
  for b in "$@"; do bins+=("$build/tests/${b%_fm}_fm"); done
else
  for b in "$build"/tests/test_*_fm; do
    [[ $b == *_stress_fm ]] && continue
    bins+=("$b")
  done
fi

export FM_LOGDIR=${FM_LOGDIR:-$build/failmalloc-logs}
rm -rf "$FM_LOGDIR"
mkdir -p "$FM_LOGDIR"
results=$FM_LOGDIR/results.txt
: >"$results"
start=$(date +%s)
for b in "${bins[@]}"; do
  "$b" --list 2>&1 | awk -v bin="$b" '
    /^[^ │├└].*: [0-9]+ tests?$/ { suite = $1; sub(/:$/, "", suite); next }
    /── / { name = $0; sub(/.*── /, "", name); sub(/ .*/, "", name); print bin "\t" suite "/" name }' |
    { if [[ -n $skip ]]; then grep -v -- "$skip"; else cat; fi; }
done | while IFS=$'\t' read -r b t; do printf '%s\0%s\0' "$b" "$t"; done |
  xargs -0 -n2 -P"$jobs" bash "$root/scripts/failmalloc.sh" --one "$results"
secs=$(($(date +%s) - start))

grep '^FINDING' "$results" | sort
sum() { sed -n "s/^RESULT .* $1=\([0-9]*\).*/\1/p" "$results" | awk '{s += $1} END {print s + 0}'; }
tests=$(grep -c '^RESULT' "$results")
printf 'failmalloc: %d tests, %d allocation sites reached, %d runs, %d crashes, %d hangs, %d sanitizer reports, %d leaks; %d runs where the test reported a failure (acceptable; %d of them with LeakSanitizer reports of what the test left); %d s\n' \
  "$tests" "$(sed -n 's/^RESULT .* sites=//p' "$results" | tr ',' '\n' | grep '^0x' | sort -u | wc -l)" \
  "$(sum runs)" "$(sum crashes)" "$(sum hangs)" "$(sum sanitizer)" "$(sum leaks)" "$(sum test_failed)" "$(sum leaks_after_fail)" "$secs"
echo "failmalloc: per-test results and the logs of findings in $FM_LOGDIR"
bad=$(($(sum crashes) + $(sum hangs) + $(sum sanitizer) + $(sum leaks) + $(grep -c '^FINDING baseline' "$results")))
((bad == 0))
