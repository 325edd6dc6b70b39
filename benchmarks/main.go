// Command peerbench measures grpcipc beside the RPC stacks Go users pick
// for local calls, in one run on this machine, each server in a fresh
// process of its own per round, the same protobuf message for all: grpc-go
// over TCP loopback (the baseline of the ratios) and over a Unix socket
// path; grpcipc (NewServer and NewClient) on its fast path and, its client
// given WithHTTP2, over HTTP/2; containerd's ttrpc and storj's drpc, each
// over a Unix socket path. The run fails if a grpcipc client does not speak
// the protocol it is there to measure.
//
//	cd benchmarks && go run . [--rounds 3] [--duration 1s] [--json FILE]
//
// Per stack and round: a warm-up (at least 0.5 s and 2,000 calls), then
// 1 KiB unary calls from one caller (p50, p99), 1 KiB calls from 32
// callers (calls/s, CPU and allocations per call of both processes
// together, and of each), and a stream of 1 MiB messages (MB/s). Rounds
// are interleaved across stacks; each figure is the median of the rounds,
// with their min and max. CPU is getrusage(RUSAGE_SELF) of each process,
// whose user+system total Linux keeps in nanoseconds of run time (the
// split between the two follows the tick; the sum does not). Allocations
// are runtime/metrics' /gc/heap/allocs:objects of each process.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"
)

const serveEnv = "PEERBENCH_SERVE" // STACK/TRANSPORT PATH: run as that stack's server

func main() {
	if spec := os.Getenv(serveEnv); spec != "" {
		if err := serveChild(spec); err != nil {
			fmt.Fprintln(os.Stderr, "peerbench server:", err)
			os.Exit(1)
		}
		return
	}
	rounds := flag.Int("rounds", 3, "rounds, interleaved across stacks")
	duration := flag.Duration("duration", time.Second, "how long each measurement runs")
	jsonFile := flag.String("json", "", "also write the results as JSON to `file`")
	flag.Parse()
	if *rounds < 1 || *duration <= 0 {
		fmt.Fprintln(os.Stderr, "peerbench: --rounds must be at least 1 and --duration positive")
		os.Exit(2)
	}
	if err := run(*rounds, *duration, *jsonFile); err != nil {
		fmt.Fprintln(os.Stderr, "peerbench:", err)
		os.Exit(1)
	}
}

// sample is one round's figures for one stack.
type sample struct {
	p50, p99                            time.Duration
	callsPerSec                         float64
	clientCPUPerCall, srvCPUPerCall     time.Duration
	clientAllocPerCall, srvAllocPerCall float64
	mbPerSec                            float64
}

func run(rounds int, d time.Duration, jsonFile string) error {
	dir, err := os.MkdirTemp("", "peerbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	samples := map[string][]sample{}
	for r := range rounds {
		for i, st := range stacks {
			fmt.Fprintf(os.Stderr, "round %d/%d: %s\n", r+1, rounds, st)
			s, err := measureStack(st, filepath.Join(dir, fmt.Sprintf("%d-%d.sock", r, i)), d)
			if err != nil {
				return fmt.Errorf("%s: %w", st, err)
			}
			samples[st.key()] = append(samples[st.key()], s)
		}
	}
	return report(samples, rounds, jsonFile)
}

// child is a stack's server process.
type child struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	addr string // where it serves: a socket path or a TCP address
}

func startChild(st stack, path string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), serveEnv+"="+st.key()+" "+path)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, in: in, out: bufio.NewReader(outPipe)}
	line, err := c.out.ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "ready ")
	if err != nil || !ok || addr == "" {
		c.stop()
		return nil, fmt.Errorf("server said %q: %v", line, err)
	}
	c.addr = addr
	return c, nil
}

// stats asks the server for its CPU time and allocations so far.
func (c *child) stats() (time.Duration, uint64, error) {
	if _, err := io.WriteString(c.in, "stats\n"); err != nil {
		return 0, 0, err
	}
	line, err := c.out.ReadString('\n')
	if err != nil {
		return 0, 0, err
	}
	var cpu int64
	var allocs uint64
	if _, err := fmt.Sscanf(line, "%d %d", &cpu, &allocs); err != nil {
		return 0, 0, fmt.Errorf("server stats %q: %w", line, err)
	}
	return time.Duration(cpu), allocs, nil
}

func (c *child) stop() {
	c.in.Close() // the server exits at EOF
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

func serveChild(spec string) error {
	name, path, ok := strings.Cut(spec, " ")
	if !ok {
		return fmt.Errorf("%s=%q: want STACK/TRANSPORT PATH", serveEnv, spec)
	}
	for _, st := range stacks {
		if st.key() != name {
			continue
		}
		addr, stop, err := st.serve(path)
		if err != nil {
			return err
		}
		defer stop()
		fmt.Println("ready", addr)
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			cpu, allocs := selfStats()
			fmt.Printf("%d %d\n", int64(cpu), allocs)
		}
		return nil
	}
	return fmt.Errorf("no stack %q", name)
}

// selfStats is this process's CPU time (user+system) and heap
// allocations so far.
func selfStats() (time.Duration, uint64) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	m := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}}
	metrics.Read(m)
	return cpu, m[0].Value.Uint64()
}

func measureStack(st stack, path string, d time.Duration) (sample, error) {
	var s sample
	srv, err := startChild(st, path)
	if err != nil {
		return s, err
	}
	defer srv.stop()
	const callers = 32
	clients, err := st.dial(srv.addr, callers)
	if err != nil {
		return s, err
	}
	seen := map[client]bool{}
	var conns []client // each connection once
	for _, c := range clients {
		if !seen[c] {
			seen[c] = true
			conns = append(conns, c)
		}
	}
	defer func() {
		for _, c := range conns {
			c.close()
		}
	}()
	// checkProtocol fails the round unless every connection speaks the
	// protocol the stack is there to measure.
	checkProtocol := func(when string) error {
		if st.protocol == "" {
			return nil
		}
		for _, c := range conns {
			p, ok := c.(protocoler)
			if !ok {
				return fmt.Errorf("%s: client cannot tell its protocol", when)
			}
			if got := p.protocol(); got != st.protocol {
				return fmt.Errorf("%s: the client speaks %q, want %q: this would not measure what it says", when, got, st.protocol)
			}
		}
		return nil
	}
	ctx := context.Background()
	payload := &wrapperspb.BytesValue{Value: make([]byte, 1<<10)}

	// Warm-up: by time and by count.
	start := time.Now()
	for n := 0; n < 2000 || time.Since(start) < 500*time.Millisecond; n++ {
		if err := clients[n%callers].echo(ctx, payload, new(wrapperspb.BytesValue)); err != nil {
			return s, fmt.Errorf("warm-up: %w", err)
		}
	}
	if err := checkProtocol("after the warm-up"); err != nil {
		return s, err
	}

	// One caller: latency.
	var lat []time.Duration
	out := new(wrapperspb.BytesValue)
	for start := time.Now(); time.Since(start) < d; {
		t := time.Now()
		if err := clients[0].echo(ctx, payload, out); err != nil {
			return s, err
		}
		lat = append(lat, time.Since(t))
	}
	slices.Sort(lat)
	s.p50, s.p99 = lat[len(lat)/2], lat[len(lat)*99/100]

	// 32 callers: calls/s, CPU and allocations per call.
	cpu0, alloc0 := selfStats()
	scpu0, salloc0, err := srv.stats()
	if err != nil {
		return s, err
	}
	var calls atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start = time.Now()
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := new(wrapperspb.BytesValue)
			for time.Since(start) < d {
				if err := clients[i].echo(ctx, payload, out); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				calls.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1, alloc1 := selfStats()
	scpu1, salloc1, err := srv.stats()
	if err != nil {
		return s, err
	}
	if err, ok := firstErr.Load().(error); ok {
		return s, err
	}
	n := calls.Load()
	s.callsPerSec = float64(n) / elapsed.Seconds()
	s.clientCPUPerCall = (cpu1 - cpu0) / time.Duration(n)
	s.srvCPUPerCall = (scpu1 - scpu0) / time.Duration(n)
	s.clientAllocPerCall = float64(alloc1-alloc0) / float64(n)
	s.srvAllocPerCall = float64(salloc1-salloc0) / float64(n)

	// A stream of 1 MiB messages, timed from the first.
	if st.streams {
		sctx, cancel := context.WithCancel(ctx)
		open := time.AfterFunc(10*time.Second, cancel)
		var began time.Time
		var timer *time.Timer
		got, err := clients[0].stream(sctx, 1<<20, func() {
			open.Stop()
			began = time.Now()
			timer = time.AfterFunc(d, cancel)
		})
		if timer != nil {
			timer.Stop()
		}
		cancel()
		if err != nil {
			return s, fmt.Errorf("stream: %w", err)
		}
		s.mbPerSec = float64(got) / 1e6 / time.Since(began).Seconds()
	}
	return s, checkProtocol("at the end of the round")
}

// figure is a median with the range of the rounds.
type figure struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func summarize(ss []sample, f func(sample) float64) figure {
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = f(s)
	}
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return figure{Median: med, Min: v[0], Max: v[len(v)-1]}
}

type jsonRow struct {
	Stack               string `json:"stack"`
	Transport           string `json:"transport"`
	Rounds              int    `json:"rounds"`
	P50us               figure `json:"p50_us"`
	P99us               figure `json:"p99_us"`
	CallsPerS           figure `json:"calls_per_s"`
	CPUusPerCall        figure `json:"cpu_us_per_call"` // both processes
	ClientCPUusPerCall  figure `json:"client_cpu_us_per_call"`
	ServerCPUusPerCall  figure `json:"server_cpu_us_per_call"`
	AllocsPerCall       figure `json:"allocs_per_call"` // both processes
	ClientAllocsPerCall figure `json:"client_allocs_per_call"`
	ServerAllocsPerCall figure `json:"server_allocs_per_call"`
	MBPerS              figure `json:"mb_per_s"`
}

func report(samples map[string][]sample, rounds int, jsonFile string) error {
	us := func(d time.Duration) float64 { return float64(d) / 1e3 }
	var rows []jsonRow
	for _, st := range stacks {
		ss := samples[st.key()]
		rows = append(rows, jsonRow{
			Stack: st.name, Transport: st.transport, Rounds: rounds,
			P50us:               summarize(ss, func(s sample) float64 { return us(s.p50) }),
			P99us:               summarize(ss, func(s sample) float64 { return us(s.p99) }),
			CallsPerS:           summarize(ss, func(s sample) float64 { return s.callsPerSec }),
			CPUusPerCall:        summarize(ss, func(s sample) float64 { return us(s.clientCPUPerCall + s.srvCPUPerCall) }),
			ClientCPUusPerCall:  summarize(ss, func(s sample) float64 { return us(s.clientCPUPerCall) }),
			ServerCPUusPerCall:  summarize(ss, func(s sample) float64 { return us(s.srvCPUPerCall) }),
			AllocsPerCall:       summarize(ss, func(s sample) float64 { return s.clientAllocPerCall + s.srvAllocPerCall }),
			ClientAllocsPerCall: summarize(ss, func(s sample) float64 { return s.clientAllocPerCall }),
			ServerAllocsPerCall: summarize(ss, func(s sample) float64 { return s.srvAllocPerCall }),
			MBPerS:              summarize(ss, func(s sample) float64 { return s.mbPerSec }),
		})
	}
	base := rows[0] // grpc-go tcp
	cell := func(f figure, ratio float64, digits int) string {
		x := fmt.Sprintf("x%.2f", ratio)
		if math.IsInf(ratio, 0) || math.IsNaN(ratio) || ratio > 1000 {
			x = "x-" // a figure of about nothing: no ratio to speak of
		}
		return fmt.Sprintf("%s (%s-%s) %s", strconv.FormatFloat(f.Median, 'f', digits, 64),
			strconv.FormatFloat(f.Min, 'f', digits, 64), strconv.FormatFloat(f.Max, 'f', digits, 64), x)
	}
	// lower and higher: the ratio of a figure where less, or more, is better.
	lower := func(b, r figure, digits int) string { return cell(r, b.Median/r.Median, digits) }
	higher := func(b, r figure, digits int) string { return cell(r, r.Median/b.Median, digits) }
	name := func(r jsonRow) string { return r.Stack + " " + r.Transport }

	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "stack\t1 KiB p50 µs\tp99 µs\t32 callers calls/s\tCPU µs/call\tallocs/call\t1 MiB stream MB/s\t\n")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name(r),
			lower(base.P50us, r.P50us, 1),
			lower(base.P99us, r.P99us, 1),
			higher(base.CallsPerS, r.CallsPerS, 0),
			lower(base.CPUusPerCall, r.CPUusPerCall, 1),
			lower(base.AllocsPerCall, r.AllocsPerCall, 1),
			higher(base.MBPerS, r.MBPerS, 0))
	}
	w.Flush()
	fmt.Printf("\nCPU and allocations per call of each process, 32 callers:\n\n")
	w = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "stack\tclient CPU µs/call\tserver CPU µs/call\tclient allocs/call\tserver allocs/call\t\n")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t\n", name(r),
			lower(base.ClientCPUusPerCall, r.ClientCPUusPerCall, 1),
			lower(base.ServerCPUusPerCall, r.ServerCPUusPerCall, 1),
			lower(base.ClientAllocsPerCall, r.ClientAllocsPerCall, 1),
			lower(base.ServerAllocsPerCall, r.ServerAllocsPerCall, 1))
	}
	w.Flush()
	fmt.Printf("\nmedians of %d round(s) (min-max); xN: how many times better than %s in the same run (higher is better)\n", rounds, name(base))
	for _, r := range rows {
		if r.Stack == "raw" && r.P50us.Median > 0 {
			var vs []string
			for _, o := range rows {
				if o.Stack != "raw" && o.Stack != "grpc-go" {
					vs = append(vs, fmt.Sprintf("%s %.2fx", name(o), o.P50us.Median/r.P50us.Median))
				}
			}
			fmt.Printf("1 KiB p50 over the bare socket's round trip (raw unix, the floor): %s\n", strings.Join(vs, ", "))
		}
	}
	if jsonFile == "" {
		return nil
	}
	b, err := json.MarshalIndent(rows, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(jsonFile, append(b, '\n'), 0o644)
}
