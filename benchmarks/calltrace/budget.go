package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"

	"golang.org/x/exp/trace"
)

// event is one goroutine transition that matters to a call.
type event struct {
	t    int64 // ns, CLOCK_MONOTONIC: the same clock in both processes
	side byte  // 'C'lient or 'S'erver
	kind string
}

// Event kinds.
const (
	kWrite  = "write"  // into a write system call
	kRead   = "read"   // into a read system call
	kBack   = "back"   // out of a system call
	kUnpark = "unpark" // made runnable (the poller saw the socket readable)
	kRun    = "run"    // running
)

// events reads a trace's goroutine transitions around socket I/O.
func events(path string, side byte) ([]event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := trace.NewReader(f)
	if err != nil {
		return nil, err
	}
	var out []event
	for {
		e, err := r.ReadEvent()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if e.Kind() != trace.EventStateTransition {
			continue
		}
		st := e.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		from, to := st.Goroutine()
		var stack []string
		for fr := range st.Stack.Frames() {
			stack = append(stack, fr.Func)
		}
		s := strings.Join(stack, " ")
		kind := ""
		switch {
		case to == trace.GoSyscall && strings.Contains(s, "netFD).Write"):
			kind = kWrite
		case to == trace.GoSyscall && (strings.Contains(s, "netFD).Read") || strings.Contains(s, "netFD).readMsg")):
			kind = kRead
		case from == trace.GoSyscall && to == trace.GoRunning:
			kind = kBack
		case from == trace.GoWaiting && to == trace.GoRunnable:
			kind = kUnpark
		case from == trace.GoRunnable && to == trace.GoRunning:
			kind = kRun
		default:
			continue
		}
		out = append(out, event{int64(e.Time()), side, kind})
	}
}

// marks are the moments of one call, in order.
var marks = []string{"cw0", "cw1", "su", "srun", "sread", "sw0", "sw1", "cu", "crun", "cread", "next"}

var steps = []struct{ name, from, to string }{
	{"client: write system call (the request)", "cw0", "cw1"},
	{"kernel and scheduler: the server's poller wakes", "cw1", "su"},
	{"server: the goroutine runs", "su", "srun"},
	{"server: read system call", "srun", "sread"},
	{"server: frames, handler, reply", "sread", "sw0"},
	{"server: write system call (the reply)", "sw0", "sw1"},
	{"kernel and scheduler: the client's poller wakes", "sw1", "cu"},
	{"client: the goroutine runs", "cu", "crun"},
	{"client: read system call", "crun", "cread"},
	{"client: frames, the reply, the next request", "cread", "next"},
}

// budget lines up the two traces call by call and prints each step's
// median.
func budget(w io.Writer, clientTrace, serverTrace string) error {
	c, err := events(clientTrace, 'C')
	if err != nil {
		return err
	}
	s, err := events(serverTrace, 'S')
	if err != nil {
		return err
	}
	all := append(c, s...)
	sort.SliceStable(all, func(i, j int) bool { return all[i].t < all[j].t })
	var calls []map[string]int64
	var cur map[string]int64
	last := map[byte]string{}
	for _, e := range all {
		prev := last[e.side]
		last[e.side] = e.kind
		if e.side == 'C' && e.kind == kWrite {
			if cur != nil {
				cur["next"] = e.t
				if whole(cur) {
					calls = append(calls, cur)
				}
			}
			cur = map[string]int64{"cw0": e.t}
			continue
		}
		if cur == nil {
			continue
		}
		set := func(k, after string) {
			if cur[k] == 0 && (after == "" || cur[after] != 0) {
				cur[k] = e.t
			}
		}
		switch {
		case e.side == 'C' && e.kind == kBack && prev == kWrite:
			set("cw1", "cw0")
		case e.side == 'S' && e.kind == kUnpark:
			set("su", "cw1")
		case e.side == 'S' && e.kind == kRun:
			set("srun", "su")
		case e.side == 'S' && e.kind == kBack && prev == kRead:
			set("sread", "srun")
		case e.side == 'S' && e.kind == kWrite:
			set("sw0", "sread")
		case e.side == 'S' && e.kind == kBack && prev == kWrite:
			set("sw1", "sw0")
		case e.side == 'C' && e.kind == kUnpark:
			set("cu", "sw1")
		case e.side == 'C' && e.kind == kRun:
			set("crun", "cu")
		case e.side == 'C' && e.kind == kBack && prev == kRead:
			set("cread", "crun")
		}
	}
	if len(calls) == 0 {
		return fmt.Errorf("no call could be followed through both traces")
	}
	median := func(f func(map[string]int64) int64) float64 {
		v := make([]float64, len(calls))
		for i, c := range calls {
			v[i] = float64(f(c)) / 1e3
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	fmt.Fprintf(w, "%-50s  %s\n", "step (median over the calls followed)", "µs")
	sum := 0.0
	for _, st := range steps {
		m := median(func(c map[string]int64) int64 { return c[st.to] - c[st.from] })
		sum += m
		fmt.Fprintf(w, "%-50s  %5.1f\n", st.name, m)
	}
	fmt.Fprintf(w, "%-50s  %5.1f (the medians' sum %.1f)\n", "a whole call, write to next write",
		median(func(c map[string]int64) int64 { return c["next"] - c["cw0"] }), sum)
	fmt.Fprintf(w, "(%d calls followed through both traces: those where each side slept in the poller)\n", len(calls))
	return nil
}

// whole says whether a call has every mark, in order.
func whole(c map[string]int64) bool {
	var prev int64
	for _, k := range marks {
		if c[k] == 0 || c[k] < prev {
			return false
		}
		prev = c[k]
	}
	return true
}
