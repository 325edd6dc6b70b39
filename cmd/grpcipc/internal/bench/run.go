package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"time"
)

// Server is one target's server, in a process of its own (see Spawn).
type Server interface {
	// Target is what it serves, with its endpoint.
	Target() Target
	// Stats returns the server process's CPU time (user and system) and
	// heap allocations (objects) so far.
	Stats() (cpu time.Duration, allocs uint64, err error)
	Close() error
}

// Spawn starts a fresh server process for spec (a stack and a transport),
// whose live heap carries heapMiB MiB of service data (0: none).
type Spawn func(ctx context.Context, spec Target, heapMiB int) (Server, error)

// Options say how much to measure.
type Options struct {
	Quick    bool
	Only     []string                           // workload kinds to measure (Unary, Throughput, Stream); nil: all
	Rounds   int                                // each runs every target once, in a fresh server process
	Spawn    Spawn                              // starts the servers
	Progress func(done, total int, what string) // called before each target's turn, if set
}

// Heaps: the stream workloads run with each.
const (
	HeapTiny    = "tiny"  // the processes' own small heaps
	HeapService = "64MiB" // 64 MiB of live data in both processes, as a daemon carries
	serviceMiB  = 64
)

// Warm-up, before a target's measurements: at least this long and this
// many calls.
const (
	warmupTime  = 500 * time.Millisecond
	warmupCalls = 2000
)

// Workloads returns what a run measures.
func Workloads(quick bool) []Workload {
	if quick {
		return []Workload{{Unary, 1 << 10, 1}, {Unary, 64 << 10, 1}, {Throughput, 1 << 10, 32}, {Stream, 1 << 20, 1}}
	}
	return []Workload{
		{Unary, 0, 1}, {Unary, 1 << 10, 1}, {Unary, 64 << 10, 1}, {Unary, 1 << 20, 1},
		{Throughput, 1 << 10, 32}, {Stream, 64 << 10, 1}, {Stream, 1 << 20, 1},
	}
}

// Figure is a median over the rounds with their range.
type Figure struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// Result is one workload on one target over the rounds. Its JSON is one
// object of the --json list (see docs/bench.md).
type Result struct {
	Stack         string `json:"stack"`
	Transport     string `json:"transport"`
	Workload      string `json:"workload"`
	Callers       int    `json:"callers"`
	SizeBytes     int    `json:"size_bytes"`
	Heap          string `json:"heap"`
	P50us         Figure `json:"p50_us"`
	P99us         Figure `json:"p99_us"`
	CallsPerSec   Figure `json:"calls_per_s"`
	MBPerSec      Figure `json:"mb_per_s"`
	CPUusPerCall  Figure `json:"cpu_us_per_call"` // per call; per MiB for streams
	AllocsPerCall Figure `json:"allocs_per_call"` // per call; per MiB for streams
	Rounds        int    `json:"rounds"`
	// The payload workload (payload.go): how the payload moved, and per
	// payload moved, both processes' CPU and each one's peak RSS.
	Way              string  `json:"way,omitempty"`
	CPUmsPerPayload  *Figure `json:"cpu_ms_per_payload,omitempty"`
	ClientPeakRSSMiB *Figure `json:"client_peak_rss_mib,omitempty"`
	ServerPeakRSSMiB *Figure `json:"server_peak_rss_mib,omitempty"`
}

// measurement is one round's figures.
type measurement struct {
	Sample
	cpuPerOp, allocsPerOp float64
}

// Run measures every workload on every target, one fresh server process
// per target and round, rounds interleaved across targets (A B C A B C
// ...), so that the machine's changing load falls on all of them alike.
// CPU and allocations are the client's (this process) and the server's
// together.
func Run(ctx context.Context, specs []Target, o Options) ([]Result, error) {
	if o.Rounds < 1 {
		o.Rounds = 3
	}
	d := 400 * time.Millisecond
	if o.Quick {
		d = 150 * time.Millisecond
	}
	workloads := Workloads(o.Quick)
	if len(o.Only) > 0 {
		workloads = slices.DeleteFunc(workloads, func(w Workload) bool { return !slices.Contains(o.Only, w.Kind) })
	}
	type key struct {
		t, w int
		heap string
	}
	got := map[key][]measurement{}
	names := map[int]Target{}
	total, done := o.Rounds*len(specs), 0
	for round := range o.Rounds {
		for ti, spec := range specs {
			if o.Progress != nil {
				o.Progress(done, total, fmt.Sprintf("round %d/%d: %s %s", round+1, o.Rounds, spec.Stack, spec.Transport))
			}
			done++
			for _, heap := range []string{HeapTiny, HeapService} {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				var ws []int
				for wi, w := range workloads {
					if (heap == HeapTiny || w.Kind == Stream) && (spec.Stack != StackRawAlloc || w.Kind == Stream) {
						ws = append(ws, wi)
					}
				}
				ms, t, err := runTarget(ctx, spec, heap, workloads, ws, d, o.Spawn)
				if err != nil {
					return nil, fmt.Errorf("%s %s: %w", spec.Stack, spec.Transport, err)
				}
				names[ti] = t
				for i, wi := range ws {
					k := key{ti, wi, heap}
					got[k] = append(got[k], ms[i])
				}
			}
		}
	}
	var out []Result
	for wi, w := range workloads {
		for _, heap := range []string{HeapTiny, HeapService} {
			for ti := range specs {
				ms := got[key{ti, wi, heap}]
				if len(ms) == 0 {
					continue
				}
				t := names[ti]
				r := Result{
					Stack: t.Stack, Transport: t.Transport, Workload: w.Kind, Callers: w.Callers, SizeBytes: w.Size,
					Heap: heap, Rounds: len(ms),
					CPUusPerCall:  figure(ms, func(m measurement) float64 { return m.cpuPerOp }),
					AllocsPerCall: figure(ms, func(m measurement) float64 { return m.allocsPerOp }),
				}
				switch w.Kind {
				case Unary:
					r.P50us = figure(ms, func(m measurement) float64 { return float64(m.P50.Nanoseconds()) / 1e3 })
					r.P99us = figure(ms, func(m measurement) float64 { return float64(m.P99.Nanoseconds()) / 1e3 })
					r.CallsPerSec = figure(ms, func(m measurement) float64 { return m.CallsPerSec })
				case Throughput:
					r.P50us = figure(ms, func(m measurement) float64 { return float64(m.P50.Nanoseconds()) / 1e3 })
					r.P99us = figure(ms, func(m measurement) float64 { return float64(m.P99.Nanoseconds()) / 1e3 })
					r.CallsPerSec = figure(ms, func(m measurement) float64 { return m.CallsPerSec })
				case Stream:
					r.MBPerSec = figure(ms, func(m measurement) float64 { return m.MBPerSec })
				}
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// runTarget starts spec's server with the given heap, warms it up, and
// measures the workloads ws on it.
func runTarget(ctx context.Context, spec Target, heap string, workloads []Workload, ws []int, d time.Duration, spawn Spawn) ([]measurement, Target, error) {
	mib := 0
	if heap == HeapService {
		mib = serviceMiB
		release := Ballast(mib) // this process carries the same
		defer release()
	}
	srv, err := spawn(ctx, spec, mib)
	if err != nil {
		return nil, Target{}, err
	}
	defer srv.Close()
	t := srv.Target()
	c, err := Dial(ctx, t)
	if err != nil {
		return nil, t, err
	}
	defer c.Close()
	if err := warmUp(ctx, c); err != nil {
		return nil, t, fmt.Errorf("warm-up: %w", err)
	}
	var out []measurement
	for _, wi := range ws {
		w := workloads[wi]
		// Open what the workload uses (32 callers' connections, a stream)
		// and grow its windows outside the clock.
		if _, err := Measure(ctx, c, w, 20*time.Millisecond); err != nil {
			return nil, t, fmt.Errorf("%s: %w", w, err)
		}
		c0, a0 := SelfStats()
		sc0, sa0, err := srv.Stats()
		if err != nil {
			return nil, t, err
		}
		s, err := Measure(ctx, c, w, d)
		if err != nil {
			return nil, t, fmt.Errorf("%s: %w", w, err)
		}
		c1, a1 := SelfStats()
		sc1, sa1, err := srv.Stats()
		if err != nil {
			return nil, t, err
		}
		m := measurement{Sample: s}
		if s.Ops > 0 {
			m.cpuPerOp = float64(((c1 - c0) + (sc1 - sc0)).Nanoseconds()) / 1e3 / s.Ops
			m.allocsPerOp = float64((a1-a0)+(sa1-sa0)) / s.Ops
		}
		out = append(out, m)
	}
	return out, t, nil
}

// warmUp makes at least warmupCalls 1 KiB calls over at least warmupTime.
func warmUp(ctx context.Context, c Client) error {
	payload := make([]byte, 1<<10)
	start := time.Now()
	for n := 0; n < warmupCalls || time.Since(start) < warmupTime; n++ {
		if err := c.Echo(ctx, payload); err != nil {
			return err
		}
	}
	return nil
}

// SelfStats is this process's CPU time (user and system; see cpuTime) and
// heap allocations (objects) so far.
func SelfStats() (time.Duration, uint64) {
	cpu, _ := cpuTime(os.Getpid())
	m := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}}
	metrics.Read(m)
	return cpu, m[0].Value.Uint64()
}

// Ballast keeps mib MiB of live data in 1 KiB objects, reachable through
// one slice of pointers (so the collector has something to mark, as in a
// service), until release is called.
func Ballast(mib int) (release func()) {
	objs := make([][]byte, mib<<10)
	for i := range objs {
		objs[i] = make([]byte, 1<<10)
		objs[i][0] = byte(i)
	}
	return func() { runtime.KeepAlive(objs); objs = nil }
}

func figure(ms []measurement, f func(measurement) float64) Figure {
	v := make([]float64, len(ms))
	for i, m := range ms {
		v[i] = f(m)
	}
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return Figure{Median: med, Min: v[0], Max: v[len(v)-1]}
}
