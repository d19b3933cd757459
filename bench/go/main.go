// Command weft-bench-go is the Go side of weft's benchmark comparison (bench/README.md, "Workloads").
//
//	weft-bench-go [WORKLOAD ...]
//
// runs the named workloads (all of them when none is named), each three times in this process, and
// prints the best repetition as one line on stdout:
//
//	NAME ns_per_op=<float> ops=<int> [key=value ...]
//
// exactly like the C weft-bench. Every repetition checks its result (sums, counts, every node done)
// before it may yield a figure; a failed check prints to stderr, prints no line and makes the exit
// status 1. An unknown workload name is reported on stderr (exit status 2) and the others still run.
// WEFT_BENCH_REPS overrides the number of repetitions, as for weft-bench. "-list" prints the names.
//
// The workloads are written as a Go programmer would write them: context, buffered channels,
// goroutines, sync.WaitGroup. Run with GOMAXPROCS=2 (bench/compare.sh does) on the 2-core machine.
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// result is one repetition of a workload.
type result struct {
	nsPerOp float64 // lower is better; the best repetition is the one with the lowest
	ops     int64
	extra   []string // optional "key=value" pairs appended to the line
}

type workload struct {
	name string
	run  func() (result, error) // one checked repetition
}

// workloads in the contract's order; "all" runs them in this order.
var workloads = []workload{
	{"ctx_cancel", ctxCancel},
	{"ctx_timeout", ctxTimeout},
	{"ctx_value", ctxValue},
	{"tree_cancel", treeCancel},
	{"chan_spsc", chanSPSC},
	{"chan_pingpong", chanPingPong},
	{"pool_tiny", poolTiny},
	{"pool_tiny_4sub", poolTiny4Sub},
	{"pipeline3", pipeline3},
	{"cancel_latency", cancelLatency},
	{"ctx_memory", ctxMemory},
}

func reps() int {
	if n, err := strconv.Atoi(os.Getenv("WEFT_BENCH_REPS")); err == nil && n > 0 {
		return n
	}
	return 3
}

// runOne runs w reps times and prints the best checked repetition; it returns false if a check failed.
func runOne(w workload) bool {
	var best result
	for rep := 0; rep < reps(); rep++ {
		r, err := w.run()
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: check failed, no figure: %v\n", w.name, err)
			return false
		}
		if rep == 0 || r.nsPerOp < best.nsPerOp {
			best = r
		}
	}
	line := fmt.Sprintf("%s ns_per_op=%.1f ops=%d", w.name, best.nsPerOp, best.ops)
	if len(best.extra) > 0 {
		line += " " + strings.Join(best.extra, " ")
	}
	fmt.Println(line)
	return true
}

func main() {
	args := os.Args[1:]
	if len(args) == 1 && (args[0] == "-list" || args[0] == "--list") {
		for _, w := range workloads {
			fmt.Println(w.name)
		}
		return
	}
	rc := 0
	if len(args) == 0 {
		for _, w := range workloads {
			if !runOne(w) {
				rc |= 1
			}
		}
		os.Exit(rc)
	}
	for _, a := range args {
		found := false
		for _, w := range workloads {
			if w.name == a {
				found = true
				if !runOne(w) {
					rc |= 1
				}
			}
		}
		if !found {
			names := make([]string, len(workloads))
			for i, w := range workloads {
				names[i] = w.name
			}
			fmt.Fprintf(os.Stderr, "weft-bench-go: unknown workload '%s'; known: %s\n", a, strings.Join(names, " "))
			rc |= 2
		}
	}
	os.Exit(rc)
}
