package main

import "testing"

// TestWorkloads runs every workload once at a small size: each must pass its own check.
// `go test -race` here is the quick way to check the Go side after a change.
func TestWorkloads(t *testing.T) {
	ctxCancelOps, ctxTimeoutOps, ctxValueOps = 1000, 1000, 1000
	treeChildren, treeGrandchild, ctxMemoryCount = 10, 10, 1000
	chanSPSCItems, chanPingPongTrips, poolJobs, pipelineItems, cancelTrials = 5000, 1000, 5001, 5000, 5
	for _, w := range workloads {
		r, err := w.run()
		if err != nil {
			t.Errorf("%s: %v", w.name, err)
			continue
		}
		if r.ops <= 0 || r.nsPerOp <= 0 {
			t.Errorf("%s: ops=%d ns_per_op=%g", w.name, r.ops, r.nsPerOp)
		}
		t.Logf("%s ns_per_op=%.1f ops=%d %v", w.name, r.nsPerOp, r.ops, r.extra)
	}
}

func TestRank(t *testing.T) {
	for _, c := range []struct {
		p    float64
		n, i int
	}{{0.5, 200, 99}, {0.99, 200, 197}, {0.5, 5, 2}, {0.99, 5, 4}, {1, 3, 2}} {
		if got := rank(c.p, c.n); got != c.i {
			t.Errorf("rank(%g, %d) = %d, want %d", c.p, c.n, got, c.i)
		}
	}
}
