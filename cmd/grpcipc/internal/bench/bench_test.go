package bench

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/grpcipc/grpcipc/internal/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testutil.LeakOptions...)
}

// serve starts every target in this process for the test or benchmark.
func serve(tb testing.TB) []Target {
	tb.Helper()
	targets, stop, err := Serve(context.Background(), testutil.ShortTempDir(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(stop)
	return targets
}

func dial(tb testing.TB, t Target) Client {
	tb.Helper()
	c, err := Dial(context.Background(), t)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func name(t Target) string { return "stack=" + t.Stack + "/transport=" + t.Transport }

// BenchmarkUnary is one echo call in flight, by payload size: the same
// targets as grpcipc bench, benchstat-friendly (server in this process).
func BenchmarkUnary(b *testing.B) {
	for _, t := range serve(b) {
		c := dial(b, t)
		for _, size := range []int{0, 1 << 10, 64 << 10, 1 << 20} {
			b.Run(name(t)+"/size="+strings.ReplaceAll(SizeString(size), " ", ""), func(b *testing.B) {
				payload := make([]byte, size)
				ctx := context.Background()
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					if err := c.Echo(ctx, payload); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkParallel is 1 KiB echo calls from 32 goroutines at once.
func BenchmarkParallel(b *testing.B) {
	for _, t := range serve(b) {
		c := dial(b, t)
		b.Run(name(t)+"/size=1KiB", func(b *testing.B) {
			payload := make([]byte, 1<<10)
			b.SetParallelism(16) // 32 goroutines on 2 CPUs
			b.ReportAllocs()
			clients, closeAll, err := c.Parallel(32)
			if err != nil {
				b.Fatal(err)
			}
			defer closeAll()
			next := make(chan Client, len(clients))
			for _, cl := range clients {
				next <- cl
			}
			b.RunParallel(func(pb *testing.PB) {
				cl := <-next
				for pb.Next() {
					if err := cl.Echo(context.Background(), payload); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkStream is a server stream, by message size; its MB/s is the
// throughput.
func BenchmarkStream(b *testing.B) {
	for _, t := range serve(b) {
		c := dial(b, t)
		for _, size := range []int{64 << 10, 1 << 20} {
			b.Run(name(t)+"/size="+strings.ReplaceAll(SizeString(size), " ", ""), func(b *testing.B) {
				b.SetBytes(int64(size))
				b.ReportAllocs()
				if err := c.Receive(context.Background(), size, 2); err != nil { // warm up
					b.Fatal(err)
				}
				b.ResetTimer()
				if err := c.Receive(context.Background(), size, b.N); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// TestEveryTargetServes: each target answers each workload, and the raw
// echo returns what it was sent.
func TestEveryTargetServes(t *testing.T) {
	targets := serve(t)
	stacks := map[string]bool{}
	for _, tg := range targets {
		stacks[tg.Stack] = true
		c := dial(t, tg)
		for _, w := range Workloads(true) {
			s, err := Measure(context.Background(), c, w, 300*time.Millisecond)
			if err != nil {
				t.Fatalf("%s on %s: %v", w, tg.Name(), err)
			}
			if s.Ops == 0 || (w.Kind == Unary && s.P50 == 0) || (w.Kind == Stream && s.MBPerSec == 0) {
				t.Errorf("%s on %s measured nothing: %+v", w, tg.Name(), s)
			}
		}
	}
	for _, s := range []string{StackRaw, StackGRPCGo, StackGRPCIPC} {
		if !stacks[s] {
			t.Errorf("no %s target among %v", s, targets)
		}
	}
	if _, err := os.Stat("/proc/self/stat"); err == nil {
		if d, ok := cpuTime(os.Getpid()); !ok || d <= 0 {
			t.Errorf("cpuTime(self) = %v, %v", d, ok)
		}
	}
}

// TestStreamMeasureShorterThanOpening: a stream measurement much shorter
// than opening the stream takes (a fresh connection, a loaded machine) is
// timed from the first message and never fails for the bench's own timer.
func TestStreamMeasureShorterThanOpening(t *testing.T) {
	for _, target := range serve(t) {
		t.Run(name(target), func(t *testing.T) {
			c := dial(t, target) // no connection yet: the stream opens one
			s, err := Measure(context.Background(), c, Workload{Kind: Stream, Size: 1 << 20}, time.Microsecond)
			if err != nil {
				t.Fatalf("a 1 µs stream measurement on a fresh connection: %v", err)
			}
			if s.MBPerSec < 0 {
				t.Errorf("MB/s %v", s.MBPerSec)
			}
		})
	}
}

// TestEverySpecServesAlone: every target "grpcipc bench" measures can be
// served on its own, as its server process does, and measured there.
func TestEverySpecServesAlone(t *testing.T) {
	dir := testutil.ShortTempDir(t)
	for _, spec := range Specs() {
		tg, stop, err := ServeTarget(context.Background(), dir, spec)
		if err != nil {
			t.Fatalf("%s %s: %v", spec.Stack, spec.Transport, err)
		}
		c, err := Dial(context.Background(), tg)
		if err != nil {
			stop()
			t.Fatal(err)
		}
		w := Workload{Kind: Unary, Size: 1 << 10, Callers: 1}
		if spec.Stack == StackRawAlloc {
			w = Workload{Kind: Stream, Size: 64 << 10, Callers: 1}
		}
		s, err := Measure(context.Background(), c, w, 50*time.Millisecond)
		c.Close()
		stop()
		if err != nil || s.Ops == 0 {
			t.Errorf("%s on %s: %+v, %v", w, tg.Name(), s, err)
		}
	}
	if cpu, allocs := SelfStats(); cpu <= 0 || allocs == 0 {
		t.Errorf("SelfStats() = %v, %d", cpu, allocs)
	}
}
