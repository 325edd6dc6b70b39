package e2e

import (
	"context"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/examples/greetpb"
)

// LogSince waits until the log, past mark, holds every one of want, and
// returns that part.
func LogSince(log *SyncBuffer, mark int, want ...string) string {
	deadline := time.Now().Add(3 * time.Second)
	for {
		s := log.String()[mark:]
		all := true
		for _, w := range want {
			all = all && strings.Contains(s, w)
		}
		if all || time.Now().After(deadline) {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SettleLog waits (5 s at most) until the log holds want, and returns it.
func SettleLog(log *SyncBuffer, want string) string {
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(log.String(), want) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return log.String()
}

// Stable returns f's value once it has stopped changing.
func Stable(f func() int) int {
	last := f()
	for range 50 {
		time.Sleep(50 * time.Millisecond)
		now := f()
		if now == last {
			return now
		}
		last = now
	}
	return last
}

// Settle waits until f reports no more than want, for things that
// goroutines end asynchronously.
func Settle(want int, f func() int) int {
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := f()
		if got <= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SettleTo waits until f reports want, for counts that move both ways
// while things settle (a client's connection has a background reader only
// while no call reads for itself, and gets it back after an idle moment).
func SettleTo(want int, f func() int) int {
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := f()
		if got == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// GoroutinesBesidesIdleWorkers counts this process's goroutines but the
// idle workers grpcipc.Server keeps for its handlers: a bounded pool, by
// design, that concurrent calls grow (not a leak per connection).
func GoroutinesBesidesIdleWorkers() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		header, rest, _ := strings.Cut(g, "\n")
		if strings.Contains(header, "[chan receive") && idleWorker(rest) {
			continue
		}
		count++
	}
	return count
}

// idleWorker tells whether a goroutine's stack, past its header, starts
// in the server's worker pool: in package grpcipc, or in one under it
// (internal/fastpath).
func idleWorker(stack string) bool {
	fn, _, _ := strings.Cut(stack, "\n")
	return strings.HasPrefix(fn, "github.com/grpcipc/grpcipc") && strings.Contains(fn, ".(*workerPool).run.func1(")
}

// HeapInuse is the heap in use after garbage collection.
func HeapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// HeapWatch samples the heap in use (after garbage collection) until
// stopped, keeping the largest sample.
type HeapWatch struct {
	base, peak uint64
	stop, done chan struct{}
}

// WatchHeap starts a HeapWatch.
func WatchHeap() *HeapWatch {
	w := &HeapWatch{base: HeapInuse(), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			w.peak = max(w.peak, HeapInuse())
			select {
			case <-w.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return w
}

// Grown stops the watch and returns how much the heap grew at most.
func (w *HeapWatch) Grown() int64 {
	close(w.stop)
	<-w.done
	w.peak = max(w.peak, HeapInuse())
	return int64(w.peak) - int64(w.base)
}

// GoodCaller calls SayHello over and over on a well-behaved client while
// a test misbehaves beside it.
type GoodCaller struct {
	stop, done chan struct{}
	OK, failed atomic.Int64
	firstErr   atomic.Value
}

// KeepCalling starts a GoodCaller on client.
func KeepCalling(client greetpb.GreeterClient) *GoodCaller {
	g := &GoodCaller{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		for {
			select {
			case <-g.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := client.SayHello(ctx, &greetpb.HelloRequest{Name: "good"})
			cancel()
			if err != nil {
				g.failed.Add(1)
				g.firstErr.CompareAndSwap(nil, err)
			} else {
				g.OK.Add(1)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return g
}

// Check stops the calls and checks that all of them were served.
func (g *GoodCaller) Check(t *testing.T) {
	t.Helper()
	close(g.stop)
	<-g.done
	if n := g.failed.Load(); n > 0 {
		t.Errorf("%d calls of a well-behaved client failed meanwhile; the first: %v", n, g.firstErr.Load())
	}
	if g.OK.Load() == 0 {
		t.Error("a well-behaved client made no call meanwhile")
	}
}
