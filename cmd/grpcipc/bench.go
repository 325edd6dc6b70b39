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
	"strings"
	"time"

	"github.com/grpcipc/grpcipc/internal/bench"
)

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	c := newCommand("bench", "[--quick] [--reps N] [--json FILE] [--chart FILE.svg]",
		"Measure the transports side by side on this machine, with the server in a child\n"+
			"process: a raw socket (the floor), grpc-go with default options over TCP loopback\n"+
			"and a Unix socket (what users get today), and grpcipc's defaults over each local\n"+
			"transport. Workloads are measured round after round, interleaved, and the table\n"+
			"shows medians, their spread, and ratios to grpc-go over TCP and to the raw socket.",
		0, 0, stdout)
	quick := c.fs.Bool("quick", false, "fewer workloads and shorter rounds: under a minute")
	reps := c.fs.Int("reps", 3, "rounds; each measures every workload on every target")
	jsonFile := c.fs.String("json", "", "also write the results to this `file` as a JSON list")
	chartFile := c.fs.String("chart", "", "also draw the results to this SVG `file`")
	serveChild := c.fs.String("serve-child", "", "(internal) run the benchmark servers with sockets in `dir`")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if *serveChild != "" {
		return benchChild(ctx, *serveChild, stdout)
	}
	if *reps < 1 || *reps > 100 {
		return usageErrorf("bench: --reps must be from 1 to 100")
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
	child := exec.Command(exe, "bench", "--serve-child", dir)
	child.Stderr = stderr
	child.SysProcAttr = childProcAttr()
	stdin, err := child.StdinPipe()
	if err != nil {
		return err
	}
	out, err := child.StdoutPipe()
	if err != nil {
		return err
	}
	if err := child.Start(); err != nil {
		return fmt.Errorf("bench: starting the server: %w", err)
	}
	defer func() {
		stdin.Close() // the child stops when its stdin closes
		done := make(chan struct{})
		go func() { child.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			child.Process.Kill()
			<-done
		}
	}()
	var targets []bench.Target
	line, err := bufio.NewReader(out).ReadBytes('\n')
	if err != nil || json.Unmarshal(line, &targets) != nil {
		return fmt.Errorf("bench: the server did not start (see above)")
	}

	progress := func(int, int, string) {}
	if isTerminal(stderr) {
		progress = func(done, total int, what string) {
			fmt.Fprintf(stderr, "\r\033[K[%d/%d] %s", done+1, total, what)
		}
	}
	fmt.Fprintf(stdout, "grpcipc bench: %s/%s, %d CPUs, %s, %d rounds%s, server pid %d\n\n", runtime.GOOS, runtime.GOARCH,
		runtime.NumCPU(), time.Now().Format("2006-01-02"), *reps, map[bool]string{true: " (quick)"}[*quick], child.Process.Pid)
	results, err := bench.Run(ctx, targets, bench.Options{Quick: *quick, Reps: *reps, ServerPID: child.Process.Pid, Progress: progress})
	if isTerminal(stderr) {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if err != nil {
		if ctx.Err() != nil {
			return &exitError{code: 130, err: errors.New("bench interrupted")}
		}
		return fmt.Errorf("bench: %w", err)
	}
	bench.Table(stdout, results)
	if jsonOut != nil {
		b, _ := json.MarshalIndent(results, "", "  ")
		if _, err := jsonOut.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if chartOut != nil {
		title := fmt.Sprintf("grpcipc bench, %s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), time.Now().Format("2006-01-02"))
		if err := bench.Chart(chartOut, results, title); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	return nil
}

// benchChild serves every target until its stdin closes, after printing
// them as one JSON line.
func benchChild(ctx context.Context, dir string, stdout io.Writer) error {
	targets, stop, err := bench.Serve(ctx, dir)
	if err != nil {
		return err
	}
	defer stop()
	b, _ := json.Marshal(targets)
	fmt.Fprintf(stdout, "%s\n", b)
	io.Copy(io.Discard, os.Stdin)
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
