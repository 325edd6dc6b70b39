package bench

import (
	"fmt"
	"html"
	"io"
	"strings"
	"text/tabwriter"
)

// baseline finds the result of the same workload, with the same heap, on
// another target.
func baseline(results []Result, r Result, stack, transport string) (Result, bool) {
	for _, b := range results {
		if b.workload == r.workload && b.Heap == r.Heap && b.Stack == stack && (transport == "" || b.Transport == transport) {
			return b, true
		}
	}
	return Result{}, false
}

// main is a result's main figure: p50 for a unary workload, calls/s for
// throughput, MB/s for a stream.
func (r Result) main() Figure {
	switch r.Workload {
	case Unary:
		return r.P50us
	case Throughput:
		return r.CallsPerSec
	}
	return r.MBPerSec
}

// Speedup is how many times better r does than b at its workload's main
// figure: shorter p50, more calls, more MB per second.
func Speedup(r, b Result) float64 {
	rm, bm := r.main().Median, b.main().Median
	if rm == 0 || bm == 0 {
		return 0
	}
	if r.Workload == Unary {
		return bm / rm
	}
	return rm / bm
}

// Table writes the results with their ratios to grpc-go over TCP loopback
// and to the raw socket. "x2.00" means twice as good (half the latency,
// twice the calls or bytes); CPU is the ratio of CPU time per operation;
// "range" is the main figure's min-max over the rounds.
func Table(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\theap\tstack transport\tp50\tp99\tcalls/s\tMB/s\tCPU/op\tallocs/op\trange\tvs grpc-go tcp\tCPU vs tcp\tvs raw\t")
	last := ""
	for _, r := range results {
		name := r.workload.String() + "\t" + r.Heap
		if name == last {
			name = "\t"
		} else {
			last = name
		}
		m := r.main()
		rng := ""
		if m.Median > 0 {
			rng = fmt.Sprintf("%.0f%%-%.0f%%", 100*m.Min/m.Median, 100*m.Max/m.Median)
		}
		cells := []string{name, r.target.Name(), us(r.P50us.Median), us(r.P99us.Median), num(r.CallsPerSec.Median), num(r.MBPerSec.Median),
			cpuString(r), allocString(r), rng}
		tcp, ok := baseline(results, r, StackGRPCGo, "tcp")
		cells = append(cells, ratio(ok, Speedup(r, tcp)))
		if ok && tcp.CPUusPerCall.Median > 0 && r.CPUusPerCall.Median > 0 {
			cells = append(cells, fmt.Sprintf("%.2f", r.CPUusPerCall.Median/tcp.CPUusPerCall.Median))
		} else {
			cells = append(cells, "")
		}
		raw, ok := baseline(results, r, StackRaw, "")
		cells = append(cells, ratio(ok, Speedup(r, raw)))
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	tw.Flush()
}

func ratio(ok bool, x float64) string {
	if !ok || x == 0 {
		return ""
	}
	return fmt.Sprintf("x%.2f", x)
}

func us(v float64) string {
	switch {
	case v == 0:
		return ""
	case v >= 1000:
		return fmt.Sprintf("%.2fms", v/1000)
	}
	return fmt.Sprintf("%.1fµs", v)
}

func num(v float64) string {
	if v == 0 {
		return ""
	}
	return fmt.Sprintf("%.0f", v)
}

func cpuString(r Result) string {
	v := r.CPUusPerCall.Median
	if v == 0 {
		return ""
	}
	if r.Workload == Stream {
		return fmt.Sprintf("%.0fµs/MiB", v)
	}
	return fmt.Sprintf("%.1fµs", v)
}

func allocString(r Result) string {
	v := r.AllocsPerCall.Median
	if r.Workload == Stream {
		return fmt.Sprintf("%.1f/MiB", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// Chart writes an SVG bar chart: for each workload, each target's speed
// relative to grpc-go over TCP loopback (1 = the same; longer is better).
func Chart(w io.Writer, results []Result, title string) error {
	const (
		barH, gap, left, width = 16, 6, 230, 420
	)
	var rows []Result
	maxV := 1.0
	for _, r := range results {
		tcp, ok := baseline(results, r, StackGRPCGo, "tcp")
		if !ok {
			continue
		}
		if v := Speedup(r, tcp); v > maxV {
			maxV = v
		}
		rows = append(rows, r)
	}
	height := 60 + len(rows)*(barH+gap) + 40
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", left+width+80, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="10" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="10" y="40" fill="#555">speed relative to grpc-go (default options) over TCP loopback; longer is better</text>`+"\n")
	x1 := left + int(float64(width)/maxV)
	colors := map[string]string{StackRaw: "#999999", StackRawAlloc: "#bbbbbb", StackGRPCGo: "#d9822b", StackGRPCIPC: "#2b6cd9"}
	y := 56
	last := ""
	for _, r := range rows {
		tcp, _ := baseline(results, r, StackGRPCGo, "tcp")
		v := Speedup(r, tcp)
		if name := r.workload.String() + " (" + r.Heap + " heap)"; name != last {
			last = name
			fmt.Fprintf(&b, `<text x="10" y="%d" font-weight="bold">%s</text>`+"\n", y+12, html.EscapeString(name))
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-6, y+12, html.EscapeString(r.target.Name()))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`+"\n", left, y, int(v/maxV*float64(width)), barH, colors[r.Stack])
		fmt.Fprintf(&b, `<text x="%d" y="%d">x%.2f</text>`+"\n", left+int(v/maxV*float64(width))+4, y+12, v)
		y += barH + gap
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="50" x2="%d" y2="%d" stroke="black" stroke-dasharray="3,3"/>`+"\n", x1, x1, y)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
