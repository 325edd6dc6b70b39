package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/grpcipc/grpcipc/cmd/grpcipc/internal/bench"
)

// benchChildEnv, when set, makes "grpcipc bench" serve one target for the
// parent bench (see benchChild): JSON of a childSpec.
const benchChildEnv = "GRPCIPC_BENCH_CHILD"

type childSpec struct {
	Target  bench.Target `json:"target"`
	Dir     string       `json:"dir"`
	HeapMiB int          `json:"heap_mib"`
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	if spec := os.Getenv(benchChildEnv); spec != "" {
		return benchChild(ctx, spec, stdout)
	}
	c := newCommand("bench", "[--quick] [--only KINDS] [--reps N] [--wide] [--json FILE] [--chart FILE.svg]",
		"Measure the transports side by side on this machine: a raw socket (the best any\n"+
			"RPC could do: read into one buffer, and as raw-alloc into a new one per message),\n"+
			"grpc-go with default options over TCP loopback and a Unix socket (what users get\n"+
			"without grpcipc), grpcipc's fast path over each local transport, and grpcipc over HTTP/2\n"+
			"(grpcipc-http2: what other gRPC stacks get). Each target's server runs in a fresh\n"+
			"process per round and heap, with this process's GOMAXPROCS and GOGC; this process\n"+
			"is the client. After a warm-up (0.5 s and 2,000 calls), every workload is measured;\n"+
			"streams again with 64 MiB of live heap in both processes. Rounds are interleaved\n"+
			"across targets. The table (100 columns; --wide: every column) shows medians, their\n"+
			"range over the rounds, ratios to grpc-go over TCP, CPU and allocations per call of\n"+
			"both processes, and a summary line per workload; it warns when the machine was\n"+
			"busy (Linux: the load average above the CPUs plus two) or a round was more than\n"+
			"20% from its median. The chart draws the same ratios, the raw socket as a line.\n"+
			"On Linux, one large payload (64 and 256 MiB; --quick: 64) is also moved three\n"+
			"ways: a raw socket, the fast path's stream of 1 MiB messages, and a sealed memory\n"+
			"file handed over with one call, with both processes' CPU and peak RSS.",
		0, 0, stdout)
	quick := c.fs.Bool("quick", false, "fewer workloads and shorter measurements: about 40 s (the full run: about 100 s)")
	only := c.fs.String("only", "", "measure only these workload `kinds`, comma-separated: unary, throughput, stream, payload")
	reps := c.fs.Int("reps", 3, "rounds; each measures every workload on every target")
	wide := c.fs.Bool("wide", false, "print every column: the main figure's min and max, the ratio to the raw socket, unary calls/s")
	jsonFile := c.fs.String("json", "", "also write the results to this `file` as a JSON list (docs/bench.md)")
	chartFile := c.fs.String("chart", "", "also draw the results to this SVG `file`")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if *reps < 1 || *reps > 100 {
		return usageErrorf("bench: --reps must be from 1 to 100")
	}
	var kinds []string
	if *only != "" {
		for _, k := range strings.Split(*only, ",") {
			k = strings.TrimSpace(k)
			if k != bench.Unary && k != bench.Throughput && k != bench.Stream && k != bench.Payload {
				return usageErrorf("bench: --only %q: the workload kinds are unary, throughput, stream and payload", k)
			}
			kinds = append(kinds, k)
		}
	}
	if *chartFile != "" && !strings.HasSuffix(strings.ToLower(*chartFile), ".svg") {
		return usageErrorf("bench: --chart writes SVG: give a file name ending in .svg")
	}

	// Open the output files first: a typo in a path must not cost a run.
	var jsonOut, chartOut *os.File
	for _, o := range []struct {
		name string
		f    **os.File
	}{{*jsonFile, &jsonOut}, {*chartFile, &chartOut}} {
		if o.name == "" {
			continue
		}
		f, cerr := os.Create(o.name)
		if cerr != nil {
			return fmt.Errorf("bench: %w", cerr)
		}
		*o.f = f
		defer func(name string) {
			if cerr := f.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("bench: %w", cerr)
			}
			if err != nil {
				os.Remove(name) // nothing half-written left behind
			}
		}(o.name)
	}

	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	dir, err := os.MkdirTemp("", "grpcipc-bench-")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer func() {
		if rmErr := removeTree(dir); rmErr != nil && err == nil {
			err = fmt.Errorf("bench: %w", rmErr)
		}
	}()
	gogc := os.Getenv("GOGC")
	if gogc == "" {
		gogc = "100"
	}
	procs := runtime.GOMAXPROCS(0)
	spawn := func(ctx context.Context, t bench.Target, heapMiB int) (bench.Server, error) {
		spec, _ := json.Marshal(childSpec{Target: t, Dir: dir, HeapMiB: heapMiB})
		return startBenchChild(exe, stderr, append(os.Environ(), benchChildEnv+"="+string(spec),
			"GOMAXPROCS="+strconv.Itoa(procs), "GOGC="+gogc))
	}

	terminal := isTerminal(stderr)
	load := bench.WatchLoad(runtime.NumCPU())
	progress := func(done, total int, what string) {
		load.Sample()
		if terminal {
			fmt.Fprintf(stderr, "\r\033[K[%d/%d] %s", done+1, total, what)
		} else {
			fmt.Fprintf(stderr, "[%d/%d] %s\n", done+1, total, what)
		}
	}
	fmt.Fprintf(stdout, "grpcipc bench: %s/%s, %d CPUs, GOMAXPROCS %d, GOGC %s, %s, %d round%s%s;\n"+
		"a server process per target, round and heap, this process the client; CPU from getrusage (its\n"+
		"user+system total is kept in nanoseconds on Linux), allocations from runtime/metrics\n\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), procs, gogc, time.Now().Format("2006-01-02"), *reps,
		map[bool]string{true: "s"}[*reps > 1], map[bool]string{true: " (quick)"}[*quick])
	opts := bench.Options{Quick: *quick, Only: kinds, Rounds: *reps, Spawn: spawn, Progress: progress}
	var results []bench.Result
	if len(kinds) == 0 || slices.ContainsFunc(kinds, func(k string) bool { return k != bench.Payload }) {
		results, err = bench.Run(ctx, bench.Specs(), opts)
	}
	if err == nil && (len(kinds) == 0 || slices.Contains(kinds, bench.Payload)) {
		var payloads []bench.Result
		payloads, err = bench.RunPayloads(ctx, opts)
		results = append(results, payloads...)
	}
	if terminal {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if err != nil {
		if ctx.Err() != nil {
			return &exitError{code: 130, err: errors.New("bench interrupted")}
		}
		return fmt.Errorf("bench: %w", err)
	}
	load.Sample()
	calls := slices.DeleteFunc(slices.Clone(results), func(r bench.Result) bool { return r.Workload == bench.Payload })
	if len(calls) > 0 {
		bench.Table(stdout, calls, bench.TableOptions{Wide: *wide, Load: load.Load()})
	}
	bench.PayloadTable(stdout, results)
	if jsonOut != nil {
		b, _ := json.MarshalIndent(results, "", "  ")
		if _, err := jsonOut.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if chartOut != nil {
		title := fmt.Sprintf("grpcipc bench, %s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), time.Now().Format("2006-01-02"))
		o := bench.ChartOptions{Title: title}
		if l := load.Load(); l.Busy() {
			o.Notes = append(o.Notes, fmt.Sprintf("Measured on a busy machine: the load average reached %.2f on %d CPUs; "+
				"other programs competed for them, so these ratios are less sure than the whiskers show.", l.Max, l.CPUs))
		}
		if err := bench.Chart(chartOut, calls, o); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	return nil
}

// benchServer is a target's server in a child process.
type benchServer struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	target bench.Target
}

func startBenchChild(exe string, stderr io.Writer, env []string) (*benchServer, error) {
	cmd := exec.Command(exe, "bench")
	cmd.Env = env
	cmd.Stderr = stderr
	cmd.SysProcAttr = childProcAttr()
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting a server: %w", err)
	}
	s := &benchServer{cmd: cmd, in: in, out: bufio.NewReader(out)}
	line, err := s.out.ReadBytes('\n')
	if err != nil || json.Unmarshal(line, &s.target) != nil {
		s.Close()
		return nil, errors.New("a server did not start (see above)")
	}
	return s, nil
}

func (s *benchServer) Target() bench.Target { return s.target }

// PID is the server process's, whose peak RSS the payload workload reads.
func (s *benchServer) PID() int { return s.cmd.Process.Pid }

// FreeOSMemory has the server collect its garbage and give its free
// memory back to the OS, so that its peak RSS from now on is what comes.
func (s *benchServer) FreeOSMemory() error {
	if _, err := io.WriteString(s.in, "free\n"); err != nil {
		return err
	}
	_, err := s.out.ReadString('\n')
	return err
}

func (s *benchServer) Stats() (time.Duration, uint64, error) {
	if _, err := io.WriteString(s.in, "stats\n"); err != nil {
		return 0, 0, fmt.Errorf("asking the server for its figures: %w", err)
	}
	line, err := s.out.ReadString('\n')
	if err != nil {
		return 0, 0, fmt.Errorf("reading the server's figures: %w", err)
	}
	var cpu int64
	var allocs uint64
	if _, err := fmt.Sscanf(line, "%d %d", &cpu, &allocs); err != nil {
		return 0, 0, fmt.Errorf("the server's figures %q: %w", line, err)
	}
	return time.Duration(cpu), allocs, nil
}

func (s *benchServer) Close() error {
	s.in.Close() // the child stops when its stdin closes
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		return <-done
	}
}

// benchChild serves one target until its stdin closes, after printing it
// as one JSON line; each "stats" line on stdin gets a line with its CPU
// time in nanoseconds and its heap allocations so far, each "free" line
// an "ok" once it has given its free memory back to the OS.
func benchChild(ctx context.Context, spec string, stdout io.Writer) error {
	var cs childSpec
	if err := json.Unmarshal([]byte(spec), &cs); err != nil {
		return fmt.Errorf("%s: %w", benchChildEnv, err)
	}
	if cs.HeapMiB > 0 {
		release := bench.Ballast(cs.HeapMiB)
		defer release()
	}
	t, stop, err := bench.ServeTarget(ctx, cs.Dir, cs.Target)
	if err != nil {
		return err
	}
	defer stop()
	b, _ := json.Marshal(t)
	fmt.Fprintf(stdout, "%s\n", b)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "free" {
			debug.FreeOSMemory()
			fmt.Fprintln(stdout, "ok")
			continue
		}
		cpu, allocs := bench.SelfStats()
		fmt.Fprintf(stdout, "%d %d\n", cpu.Nanoseconds(), allocs)
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// removeTree removes dir; the servers removed their sockets already.
func removeTree(dir string) error {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		os.Remove(filepath.Join(dir, e.Name()))
	}
	return os.Remove(dir)
}
