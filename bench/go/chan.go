package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Sizes from bench/README.md ("Workloads"); variables so the tests can shrink them.
var (
	chanSPSCItems     = 10_000_000
	chanPingPongTrips = 1_000_000
	poolJobs          = 1_000_000
	pipelineItems     = 1_000_000
	cancelTrials      = 200
	// poolQueueCap is the capacity of the buffered channel feeding pool_tiny's workers: 1024, the
	// contract's bound for chan_spsc. The contract leaves it open and the figure depends on it a lot
	// (see README); WEFT_BENCH_GO_POOL_CAP overrides it and the line reports it as queue_cap.
	poolQueueCap = envInt("WEFT_BENCH_GO_POOL_CAP", 1024)
)

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n >= 0 {
		return n
	}
	return def
}

const (
	workersW       = 2    // "W": worker goroutines unless said otherwise
	spscCap        = 1024 // chan_spsc channel capacity
	pipelineCap    = 256  // pipeline3 channel capacity
	cancelWorkers  = 64   // cancel_latency blocked goroutines
	cancelSettle   = time.Millisecond
	poolSubmitters = 4 // pool_tiny_4sub
)

func perOp(el time.Duration, n int) float64 { return float64(el.Nanoseconds()) / float64(n) }

// chanSPSC: one producer goroutine sends ints into a channel of capacity 1024, the consumer
// receives them; op = one item.
func chanSPSC() (result, error) {
	n := chanSPSCItems
	ch := make(chan int, spscCap)
	runtime.GC()
	start := time.Now()
	go func() {
		for i := 1; i <= n; i++ {
			ch <- i
		}
		close(ch)
	}()
	sum, count := 0, 0
	for v := range ch {
		sum += v
		count++
	}
	el := time.Since(start)
	if want := n * (n + 1) / 2; count != n || sum != want {
		return result{}, fmt.Errorf("received %d items summing %d, want %d summing %d", count, sum, n, want)
	}
	return result{nsPerOp: perOp(el, n), ops: int64(n)}, nil
}

// chanPingPong: two goroutines bounce a token through two channels of capacity 1; op = one round trip.
func chanPingPong() (result, error) {
	n := chanPingPongTrips
	ping, pong := make(chan int, 1), make(chan int, 1)
	go func() {
		for v := range ping {
			pong <- v + 1
		}
		close(pong)
	}()
	tok := 0
	runtime.GC()
	start := time.Now()
	for i := 0; i < n; i++ {
		ping <- tok
		tok = <-pong
	}
	el := time.Since(start)
	close(ping)
	<-pong
	if tok != n {
		return result{}, fmt.Errorf("token %d after %d round trips", tok, n)
	}
	return result{nsPerOp: perOp(el, n), ops: int64(n)}, nil
}

// pool is the classic Go worker pool: W goroutines draining a buffered channel of jobs.
type pool struct {
	jobs    chan func()
	pending sync.WaitGroup // jobs submitted and not finished
	workers sync.WaitGroup
}

func newPool(w, queue int) *pool {
	p := &pool{jobs: make(chan func(), queue)}
	p.workers.Add(w)
	for i := 0; i < w; i++ {
		go func() {
			defer p.workers.Done()
			for job := range p.jobs {
				job()
				p.pending.Done()
			}
		}()
	}
	return p
}

func (p *pool) submit(job func()) {
	p.pending.Add(1)
	p.jobs <- job
}

func (p *pool) wait() { p.pending.Wait() }

func (p *pool) close() {
	close(p.jobs)
	p.workers.Wait()
}

// poolTinyN: a pool of W workers, `submitters` goroutines submit jobs that each add 1 to an atomic
// counter, then wait until all are done; op = one job.
func poolTinyN(submitters int) (result, error) {
	n := poolJobs
	p := newPool(workersW, poolQueueCap)
	defer p.close()
	var counter atomic.Int64
	job := func() { counter.Add(1) }
	runtime.GC()
	start := time.Now()
	if submitters == 1 {
		for i := 0; i < n; i++ {
			p.submit(job)
		}
	} else {
		var subs sync.WaitGroup
		subs.Add(submitters)
		for s := 0; s < submitters; s++ {
			share := n / submitters
			if s < n%submitters {
				share++
			}
			go func(share int) {
				defer subs.Done()
				for i := 0; i < share; i++ {
					p.submit(job)
				}
			}(share)
		}
		subs.Wait()
	}
	p.wait()
	el := time.Since(start)
	if got := counter.Load(); got != int64(n) {
		return result{}, fmt.Errorf("counter %d after %d jobs", got, n)
	}
	return result{nsPerOp: perOp(el, n), ops: int64(n), extra: []string{fmt.Sprintf("queue_cap=%d", poolQueueCap)}}, nil
}

func poolTiny() (result, error)     { return poolTinyN(1) }
func poolTiny4Sub() (result, error) { return poolTinyN(poolSubmitters) }

// stage runs w goroutines applying f from in to a new channel of capacity 256, closed when all are done.
func stage(in <-chan int64, w int, f func(int64) int64) <-chan int64 {
	out := make(chan int64, pipelineCap)
	var wg sync.WaitGroup
	wg.Add(w)
	for i := 0; i < w; i++ {
		go func() {
			defer wg.Done()
			for v := range in {
				out <- f(v)
			}
		}()
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out
}

// pipeline3: source emits 1..N -> square (W goroutines) -> add 10 (W goroutines) -> sink sums;
// channels of capacity 256; unordered; op = one item.
func pipeline3() (result, error) {
	n := pipelineItems
	runtime.GC()
	start := time.Now()
	src := make(chan int64, pipelineCap)
	go func() {
		for i := int64(1); i <= int64(n); i++ {
			src <- i
		}
		close(src)
	}()
	squared := stage(src, workersW, func(v int64) int64 { return v * v })
	added := stage(squared, workersW, func(v int64) int64 { return v + 10 })
	var sum, count int64
	for v := range added {
		sum += v
		count++
	}
	el := time.Since(start)
	N := int64(n)
	if want := N*(N+1)*(2*N+1)/6 + 10*N; count != N || sum != want {
		return result{}, fmt.Errorf("sink got %d items summing %d, want %d summing %d", count, sum, N, want)
	}
	return result{nsPerOp: perOp(el, n), ops: int64(n)}, nil
}

// cancelLatency: 64 goroutines blocked in select { case <-ch: case <-ctx.Done(): } on empty channels;
// cancel the shared parent and time until all 64 have returned. op = one trial; p50_us and p99_us
// over 200 trials, ns_per_op the mean.
func cancelLatency() (result, error) {
	trials := cancelTrials
	lat := make([]time.Duration, trials)
	for t := 0; t < trials; t++ {
		ctx, cancel := context.WithCancel(context.Background())
		var ready, done sync.WaitGroup
		var byCancel, byValue atomic.Int32
		ready.Add(cancelWorkers)
		done.Add(cancelWorkers)
		for i := 0; i < cancelWorkers; i++ {
			ch := make(chan int, 1) // empty: nobody sends
			go func() {
				defer done.Done()
				ready.Done()
				select {
				case <-ch:
					byValue.Add(1)
				case <-ctx.Done():
					byCancel.Add(1)
				}
			}()
		}
		ready.Wait()
		time.Sleep(cancelSettle) // let all 64 reach the select and park, and the Ps go idle
		if byCancel.Load() != 0 || byValue.Load() != 0 {
			cancel()
			return result{}, fmt.Errorf("trial %d: a goroutine returned before the cancel", t)
		}
		start := time.Now()
		cancel()
		done.Wait()
		lat[t] = time.Since(start)
		if byCancel.Load() != cancelWorkers || byValue.Load() != 0 {
			return result{}, fmt.Errorf("trial %d: %d of %d returned by cancel, %d by value",
				t, byCancel.Load(), cancelWorkers, byValue.Load())
		}
	}
	var total time.Duration
	for _, d := range lat {
		total += d
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	us := func(p float64) float64 { return float64(lat[rank(p, trials)].Nanoseconds()) / 1e3 }
	return result{nsPerOp: float64(total.Nanoseconds()) / float64(trials), ops: int64(trials), extra: []string{
		fmt.Sprintf("p50_us=%.1f", us(0.50)),
		fmt.Sprintf("p99_us=%.1f", us(0.99)),
	}}, nil
}

// rank is the nearest-rank percentile index into n sorted samples.
func rank(p float64, n int) int {
	i := int(p*float64(n)+0.999999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= n {
		i = n - 1
	}
	return i
}
