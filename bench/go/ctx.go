package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sizes from bench/README.md ("Workloads"); variables so the tests can shrink them.
var (
	ctxCancelOps   = 1_000_000
	ctxTimeoutOps  = 1_000_000
	ctxValueOps    = 10_000_000
	treeChildren   = 1_000
	treeGrandchild = 100 // per child
	ctxMemoryCount = 1_000_000
)

// mallocs returns the cumulative count of heap objects allocated (stops the world: call outside timing).
func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// ctxCancel: derive a cancellable child from a cancellable parent, then cancel and release it.
// In Go, cancel is also the release. ctxCancel and ctxTimeout repeat each other on purpose: with the
// derive call passed in as a func value, every op would pay an indirect call Go code written by hand does
// not, and weft's ratio would look better than it is.
func ctxCancel() (result, error) {
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	n := ctxCancelOps
	canceled := 0
	runtime.GC()
	m0 := mallocs()
	start := time.Now()
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithCancel(parent)
		cancel()
		if ctx.Err() == context.Canceled {
			canceled++
		}
	}
	el := time.Since(start)
	m1 := mallocs()
	if canceled != n {
		return result{}, fmt.Errorf("%d of %d children canceled", canceled, n)
	}
	if parent.Err() != nil {
		return result{}, errors.New("parent canceled by a child")
	}
	return result{nsPerOp: float64(el.Nanoseconds()) / float64(n), ops: int64(n),
		extra: []string{fmt.Sprintf("allocs_per_op=%.2f", float64(m1-m0)/float64(n))}}, nil
}

// ctxTimeout: derive a child with a 1-hour timeout from a cancellable parent, then cancel and release
// it. Go's cancel stops the timer (disarms it).
func ctxTimeout() (result, error) {
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	n := ctxTimeoutOps
	canceled := 0
	runtime.GC()
	m0 := mallocs()
	start := time.Now()
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(parent, time.Hour)
		cancel()
		if ctx.Err() == context.Canceled {
			canceled++
		}
	}
	el := time.Since(start)
	m1 := mallocs()
	if canceled != n {
		return result{}, fmt.Errorf("%d of %d children canceled (not timed out)", canceled, n)
	}
	if parent.Err() != nil {
		return result{}, errors.New("parent canceled by a child")
	}
	return result{nsPerOp: float64(el.Nanoseconds()) / float64(n), ops: int64(n),
		extra: []string{fmt.Sprintf("allocs_per_op=%.2f", float64(m1-m0)/float64(n))}}, nil
}

// ctxKey is the usual unexported key type.
type ctxKey int

// ctxValue: look up a key stored 8 value-layers above the context: a chain of 8 WithValue, the key
// looked up being the one stored first (so the lookup walks all 8 layers).
func ctxValue() (result, error) {
	const layers = 8
	ctx := context.Background()
	for i := 0; i < layers; i++ {
		ctx = context.WithValue(ctx, ctxKey(i), i+1)
	}
	n := ctxValueOps
	sum := 0
	start := time.Now()
	for i := 0; i < n; i++ {
		sum += ctx.Value(ctxKey(0)).(int)
	}
	el := time.Since(start)
	if sum != n {
		return result{}, fmt.Errorf("sum of looked-up values %d, want %d", sum, n)
	}
	return result{nsPerOp: float64(el.Nanoseconds()) / float64(n), ops: int64(n)}, nil
}

// treeCancel: root -> 1,000 cancellable children -> 100 cancellable grandchildren each. The op is
// cancel(root) until every node reports Done; ns_per_op = that time / (1,000*100), as the contract
// says, although the tree holds 101,001 contexts and every one of them is checked. Nobody waits on
// the nodes before the cancel, so Go creates their Done channels lazily (the check after the cancel
// gets the shared closed channel).
func treeCancel() (result, error) {
	root, cancelRoot := context.WithCancel(context.Background())
	nodes := make([]context.Context, 0, treeChildren*(treeGrandchild+1))
	cancels := make([]context.CancelFunc, 0, cap(nodes))
	for i := 0; i < treeChildren; i++ {
		c, cc := context.WithCancel(root)
		nodes = append(nodes, c)
		cancels = append(cancels, cc)
		for j := 0; j < treeGrandchild; j++ {
			g, gc := context.WithCancel(c)
			nodes = append(nodes, g)
			cancels = append(cancels, gc)
		}
	}
	for _, c := range nodes {
		if c.Err() != nil {
			cancelRoot()
			return result{}, errors.New("node done before the cancel")
		}
	}
	runtime.GC() // as testing.B does before timing: no GC cycle left over from building the tree
	start := time.Now()
	cancelRoot()
	done := 0
	for _, c := range nodes {
		select {
		case <-c.Done():
			done++
		default:
		}
	}
	el := time.Since(start)
	for _, cc := range cancels {
		cc()
	}
	if done != len(nodes) || root.Err() != context.Canceled {
		return result{}, fmt.Errorf("%d of %d nodes done after cancel(root)", done, len(nodes))
	}
	ops := treeChildren * treeGrandchild
	return result{nsPerOp: float64(el.Nanoseconds()) / float64(ops), ops: int64(ops)}, nil
}

// rssBytes reads the resident set size from /proc/self/statm (second field, in pages).
func rssBytes() (int64, error) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, fmt.Errorf("unexpected /proc/self/statm: %q", b)
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, err
	}
	return pages * int64(os.Getpagesize()), nil
}

func heapAlloc() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// ctxMemory: 1,000,000 live contexts, each WithTimeout(1h) from one parent, with their cancel
// functions kept as a Go program keeps them. bytes_per_ctx is the RSS growth per context;
// heap_bytes_per_ctx the growth of live heap (runtime.MemStats.HeapAlloc after a GC). Before the
// baseline, the timers an earlier repetition stopped are swept out of the Ps' timer heaps (a stopped
// timer stays there, holding its context, until its P next schedules) and freed memory is returned
// to the OS, so leftovers of earlier workloads and repetitions neither hide nor inflate growth.
// ns_per_op is the time to create one context while 1,000,000 are live.
func ctxMemory() (result, error) {
	n := ctxMemoryCount
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	settleTimers()
	debug.FreeOSMemory()
	rss0, err := rssBytes()
	if err != nil {
		return result{}, err
	}
	heap0 := heapAlloc()
	ctxs := make([]context.Context, n)
	cancels := make([]context.CancelFunc, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		ctxs[i], cancels[i] = context.WithTimeout(parent, time.Hour)
	}
	el := time.Since(start)
	runtime.GC()
	rss1, err := rssBytes()
	if err != nil {
		return result{}, err
	}
	heap1 := heapAlloc()
	live := 0
	for _, c := range ctxs {
		if c.Err() == nil {
			live++
		}
	}
	for _, cancel := range cancels {
		cancel()
	}
	canceled := 0
	for _, c := range ctxs {
		if c.Err() == context.Canceled {
			canceled++
		}
	}
	runtime.KeepAlive(ctxs)
	if live != n || canceled != n {
		return result{}, fmt.Errorf("%d of %d contexts live before cancel, %d canceled after", live, n, canceled)
	}
	return result{nsPerOp: float64(el.Nanoseconds()) / float64(n), ops: int64(n), extra: []string{
		fmt.Sprintf("bytes_per_ctx=%.1f", float64(rss1-rss0)/float64(n)),
		fmt.Sprintf("heap_bytes_per_ctx=%.1f", float64(int64(heap1)-int64(heap0))/float64(n)),
	}}, nil
}

// settleTimers keeps every P scheduling for a moment so each sweeps the stopped timers out of its
// timer heap (the runtime does this only on the P that owns them, when it schedules).
func settleTimers() {
	var wg sync.WaitGroup
	for i := 0; i < 2*runtime.GOMAXPROCS(0); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := time.Now(); time.Since(t) < 2*time.Millisecond; {
				runtime.Gosched()
			}
		}()
	}
	wg.Wait()
}
