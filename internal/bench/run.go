package bench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"
)

// Options say how much to measure.
type Options struct {
	Quick     bool
	Reps      int                                // rounds; each measures every workload on every target
	ServerPID int                                // the server process, for its CPU time (0: in this process)
	Progress  func(done, total int, what string) // called before each measurement, if set
}

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

// Result is the median over the rounds of one workload on one target,
// with the spread of its main figure. Its JSON is one object of the
// --json list.
type Result struct {
	Transport   string  `json:"transport"`
	Stack       string  `json:"stack"`
	Workload    string  `json:"workload"`
	SizeBytes   int     `json:"size_bytes"`
	Callers     int     `json:"callers"`
	P50us       float64 `json:"p50_us"`
	P99us       float64 `json:"p99_us"`
	CallsPerSec float64 `json:"calls_per_s"`
	MBPerSec    float64 `json:"mb_per_s"`
	CPUusPerOp  float64 `json:"cpu_us_per_op"` // per call, or per MiB for streams
	Reps        int     `json:"reps"`
	Spread      float64 `json:"spread"` // (max-min)/median of the main figure over the rounds
	target      Target
	workload    Workload
}

// Run measures every workload on every target, round after round, so that
// the machine's changing load falls on all of them alike.
func Run(ctx context.Context, targets []Target, o Options) ([]Result, error) {
	if o.Reps < 1 {
		o.Reps = 3
	}
	d := 400 * time.Millisecond
	if o.Quick {
		d = 150 * time.Millisecond
	}
	serverPID := o.ServerPID
	if serverPID == 0 {
		serverPID = os.Getpid()
	}
	workloads := Workloads(o.Quick)
	clients := make([]Client, len(targets))
	for i, t := range targets {
		c, err := Dial(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.Name(), err)
		}
		defer c.Close()
		clients[i] = c
	}
	type key struct{ t, w int }
	samples := map[key][]Sample{}
	cpu := map[key][]float64{}
	total, done := o.Reps*len(workloads)*len(targets), 0
	for rep := 0; rep < o.Reps; rep++ {
		for wi, w := range workloads {
			for ti, t := range targets {
				if o.Progress != nil {
					o.Progress(done, total, fmt.Sprintf("round %d/%d: %s on %s", rep+1, o.Reps, w, t.Name()))
				}
				done++
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				// Warm the connection (and grow its windows) outside the clock.
				if _, err := Measure(ctx, clients[ti], Workload{Kind: w.Kind, Size: w.Size, Callers: w.Callers}, 20*time.Millisecond); err != nil {
					return nil, fmt.Errorf("%s on %s: %w", w, t.Name(), err)
				}
				c0, ok1 := cpuTime(os.Getpid())
				s0, ok2 := cpuTime(serverPID)
				s, err := Measure(ctx, clients[ti], w, d)
				if err != nil {
					return nil, fmt.Errorf("%s on %s: %w", w, t.Name(), err)
				}
				c1, _ := cpuTime(os.Getpid())
				s1, _ := cpuTime(serverPID)
				k := key{ti, wi}
				samples[k] = append(samples[k], s)
				if ok1 && ok2 && s.Ops > 0 {
					used := c1 - c0
					if serverPID != os.Getpid() {
						used += s1 - s0
					}
					cpu[k] = append(cpu[k], float64(used.Microseconds())/s.Ops)
				}
			}
		}
	}
	var out []Result
	for wi, w := range workloads {
		for ti, t := range targets {
			k := key{ti, wi}
			ss := samples[k]
			r := Result{
				Transport: t.Transport, Stack: t.Stack, Workload: w.Kind, SizeBytes: w.Size, Callers: w.Callers,
				Reps: len(ss), target: t, workload: w,
				P50us:       median(ss, func(s Sample) float64 { return float64(s.P50.Nanoseconds()) / 1e3 }),
				P99us:       median(ss, func(s Sample) float64 { return float64(s.P99.Nanoseconds()) / 1e3 }),
				CallsPerSec: median(ss, func(s Sample) float64 { return s.CallsPerSec }),
				MBPerSec:    median(ss, func(s Sample) float64 { return s.MBPerSec }),
				CPUusPerOp:  medianOf(cpu[k]),
			}
			main := func(s Sample) float64 { return float64(s.P50) }
			switch w.Kind {
			case Throughput:
				main = func(s Sample) float64 { return s.CallsPerSec }
			case Stream:
				main = func(s Sample) float64 { return s.MBPerSec }
			}
			r.Spread = spread(ss, main)
			if w.Kind == Stream {
				r.P50us, r.P99us, r.CallsPerSec = 0, 0, 0
			}
			if w.Kind == Throughput {
				r.P50us, r.P99us = 0, 0
			}
			out = append(out, r)
		}
	}
	return out, nil
}

func median(ss []Sample, f func(Sample) float64) float64 {
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = f(s)
	}
	return medianOf(v)
}

func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

func spread(ss []Sample, f func(Sample) float64) float64 {
	if len(ss) < 2 {
		return 0
	}
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = f(s)
	}
	m := medianOf(v)
	if m == 0 {
		return 0
	}
	return (slices.Max(v) - slices.Min(v)) / m
}
