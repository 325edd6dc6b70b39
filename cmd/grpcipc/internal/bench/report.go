package bench

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// Report layout: what Table and Chart print, and when they warn.
const (
	// TableWidth is the widest line Table prints by default, for names up
	// to 27 characters ("grpcipc-http2 unix-abstract").
	TableWidth = 100
	// wideRange: a figure whose lowest or highest round is more than 20%
	// from its median is flagged. Three rounds on an idle machine stay
	// within about ±10% (the bench's own history: docs/bench.json of
	// 2026-11-26), so beyond twice that the rounds disagree.
	wideRange = 0.20
)

// TableOptions say what Table prints besides the results.
type TableOptions struct {
	Wide bool // every column: the main figure's min and max, the ratio to the raw socket, unary calls/s
	Load Load // the machine's load during the run; its line and warning are left out if unknown
}

// wl is the result's workload.
func (r Result) wl() Workload {
	return Workload{Kind: r.Workload, Size: r.SizeBytes, Callers: r.Callers}
}

// name is the result's target as the table and the chart show it.
func (r Result) name() string { return Target{Stack: r.Stack, Transport: r.Transport}.Name() }

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

// mainName names a workload kind's main figure.
func mainName(kind string) string {
	switch kind {
	case Unary:
		return "p50"
	case Throughput:
		return "calls/s"
	}
	return "MB/s"
}

// Speedup is how many times better r does than b at its workload's main
// figure: shorter p50, more calls, more MB per second.
func Speedup(r, b Result) float64 {
	return speedupOf(r, r.main().Median, b)
}

// speedupOf is Speedup for the value v of r's main figure (its median, min
// or max) against b's median.
func speedupOf(r Result, v float64, b Result) float64 {
	bm := b.main().Median
	if v == 0 || bm == 0 {
		return 0
	}
	if r.Workload == Unary {
		return bm / v
	}
	return v / bm
}

// isFloor says whether a stack is the bare socket, which no gRPC stack
// can pass (one call per round trip aside): the chart draws it as a line.
func isFloor(stack string) bool { return stack == StackRaw || stack == StackRawAlloc }

// group is one workload with one heap: a section of the table, a block of
// the chart.
type group struct {
	w    Workload
	heap string
	rows []Result
}

// groups splits results by workload and heap, in their order.
func groups(results []Result) []*group {
	var out []*group
	for _, r := range results {
		var g *group
		for _, o := range out {
			if o.w == r.wl() && o.heap == r.Heap {
				g = o
			}
		}
		if g == nil {
			g = &group{w: r.wl(), heap: r.Heap}
			out = append(out, g)
		}
		g.rows = append(g.rows, r)
	}
	return out
}

// find is the group's result for a stack over a transport ("": any).
func (g *group) find(stack, transport string) (Result, bool) {
	for _, r := range g.rows {
		if r.Stack == stack && (transport == "" || r.Transport == transport) {
			return r, true
		}
	}
	return Result{}, false
}

// base is the group's baseline: grpc-go over TCP loopback.
func (g *group) base() (Result, bool) { return g.find(StackGRPCGo, "tcp") }

// title names the group: the workload, its heaps for a stream, and what
// its main figure is.
func (g *group) title() string {
	s := g.w.String()
	if g.w.Kind == Stream {
		s += ", " + heapName(g.heap)
	}
	return s
}

func heapName(heap string) string {
	if heap == HeapService {
		return "64 MiB heaps"
	}
	return heap + " heaps"
}

// rounds is the most rounds any result of the run has.
func rounds(results []Result) int {
	n := 0
	for _, r := range results {
		n = max(n, r.Rounds)
	}
	return n
}

// Table writes the results, one section per workload and heap, each with
// a summary line, after a paragraph that says how to read them, and
// warnings when the machine was busy or the rounds disagreed. It fits
// TableWidth columns unless o.Wide.
func Table(w io.Writer, results []Result, o TableOptions) {
	var b strings.Builder
	n := rounds(results)
	for _, line := range wrap(legendText(n, o.Wide), TableWidth, "", "") {
		b.WriteString(line + "\n")
	}
	b.WriteString("\n")
	head := []string{"", "median", "range", "vs tcp", "p99", "CPU/op", "CPU vs tcp", "allocs"}
	if o.Wide {
		head = []string{"", "median", "min", "max", "range", "vs tcp", "vs raw", "p99", "calls/s", "CPU/op", "CPU vs tcp", "allocs"}
	}
	// One set of column widths for every section, so that they line up.
	gs := groups(results)
	cells := map[*group][][]string{}
	widths := make([]int, len(head))
	grow := func(row []string) {
		for i, c := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	grow(head)
	for _, g := range gs {
		for _, r := range g.rows {
			row := tableRow(g, r, o.Wide)
			grow(row)
			cells[g] = append(cells[g], row)
		}
	}
	b.WriteString(formatRow(head, widths) + "\n")
	for _, g := range gs {
		fmt.Fprintf(&b, "%s: %s\n", g.title(), mainText(g.w.Kind))
		for _, row := range cells[g] {
			b.WriteString(formatRow(row, widths) + "\n")
		}
		if s := summary(g); s != "" {
			for _, line := range wrap("summary: "+s, TableWidth, "  ", "    ") {
				b.WriteString(line + "\n")
			}
		}
	}
	var tail []string
	if s := o.Load.String(); s != "" {
		tail = append(tail, s+".")
	}
	tail = append(tail, warnings(results, o.Load)...)
	if len(tail) > 0 {
		b.WriteString("\n")
	}
	for _, t := range tail {
		for _, line := range wrap(t, TableWidth, "", "  ") {
			b.WriteString(line + "\n")
		}
	}
	io.WriteString(w, b.String())
}

// legendText says how to read the table.
func legendText(rounds int, wide bool) string {
	rng := fmt.Sprintf("range: the lowest and the highest of the %d rounds as percentages of the median "+
		"(90-110%%: every round within 10%% of it; beyond ±%.0f%% is flagged at the end).", rounds, 100*wideRange)
	if rounds < 2 {
		rng = "range: none with one round (--reps 3 or more shows how much the rounds vary)."
	}
	s := fmt.Sprintf("How to read it: a section per workload, a row per target. median: of the %s, "+
		"the workload's main figure: p50 latency for unary calls (lower is better), calls/s or MB/s for "+
		"the others (higher is better). %s vs tcp: how many times better than grpc-go over TCP loopback, "+
		"the baseline (x2.00: half the latency, or twice the calls or MB/s). CPU/op and allocs: client "+
		"and server together, per op (a call, or a MiB streamed); CPU vs tcp: that CPU over the "+
		"baseline's (0.50: half). raw is the bare socket, the best possible.", roundsText(rounds), rng)
	if wide {
		s += " min, max: the main figure's lowest and highest round; vs raw: the ratio to the raw socket; " +
			"calls/s: for unary calls, one caller's."
	}
	return s
}

// mainText says what a section's median is.
func mainText(kind string) string {
	if kind == Unary {
		return "median is p50 latency, lower is better"
	}
	return "median is " + mainName(kind) + ", higher is better"
}

// tableRow is one result's cells.
func tableRow(g *group, r Result, wide bool) []string {
	m := r.main()
	median, lo, hi := mainString(r, m.Median), mainString(r, m.Min), mainString(r, m.Max)
	rng := "-"
	if r.Rounds > 1 && m.Median > 0 {
		rng = fmt.Sprintf("%.0f-%.0f%%", 100*m.Min/m.Median, 100*m.Max/m.Median)
	}
	vsTCP, cpuTCP, vsRaw := "", "", ""
	if base, ok := g.base(); ok {
		vsTCP = ratio(Speedup(r, base))
		if base.CPUusPerCall.Median > 0 && r.CPUusPerCall.Median > 0 {
			cpuTCP = fmt.Sprintf("%.2f", r.CPUusPerCall.Median/base.CPUusPerCall.Median)
		}
	}
	if raw, ok := g.find(StackRaw, ""); ok {
		vsRaw = ratio(Speedup(r, raw))
	}
	allocs := fmt.Sprintf("%.1f", r.AllocsPerCall.Median)
	if !wide {
		return []string{"  " + r.name(), median, rng, vsTCP, us(r.P99us.Median), cpuString(r), cpuTCP, allocs}
	}
	calls := ""
	if r.Workload == Unary {
		calls = num(r.CallsPerSec.Median)
	}
	return []string{"  " + r.name(), median, lo, hi, rng, vsTCP, vsRaw, us(r.P99us.Median), calls, cpuString(r), cpuTCP, allocs}
}

// formatRow pads the first cell on the right and the others on the left.
func formatRow(cells []string, widths []int) string {
	var b strings.Builder
	for i, c := range cells {
		pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
		if i == 0 {
			b.WriteString(c + pad)
			continue
		}
		b.WriteString("  " + pad + c)
	}
	return strings.TrimRight(b.String(), " ")
}

// mainString writes a value of r's main figure.
func mainString(r Result, v float64) string {
	if r.Workload == Unary {
		return us(v)
	}
	return num(v)
}

// summary is a section's conclusion: the fast path against grpc-go over
// TCP, with the raw socket's ratio for scale; "" without both.
func summary(g *group) string {
	base, ok := g.base()
	if !ok || base.main().Median == 0 {
		return ""
	}
	var ratios, values, overlap []string
	for _, r := range g.rows {
		if r.Stack != StackGRPCIPC || r.main().Median == 0 {
			continue
		}
		ratios = append(ratios, fmt.Sprintf("%.2fx (%s)", Speedup(r, base), r.Transport))
		values = append(values, mainString(r, r.main().Median))
		if overlaps(r.main(), base.main(), r.Rounds) {
			overlap = append(overlap, r.Transport)
		}
	}
	if len(ratios) == 0 {
		return ""
	}
	what := "the " + mainName(g.w.Kind) + " of"
	if g.w.Kind == Unary {
		what = "the speed of"
	}
	s := fmt.Sprintf("fast path %s %s grpc-go over TCP here (%s%s vs %s)", and(ratios), what,
		map[bool]string{true: "p50 "}[g.w.Kind == Unary], and(values), mainString(base, base.main().Median))
	if len(overlap) > 0 {
		s += fmt.Sprintf("; over %s its rounds' range overlaps grpc-go's: no clear difference there", and(overlap))
	}
	if raw, ok := g.find(StackRaw, ""); ok && raw.main().Median > 0 {
		s += fmt.Sprintf("; the bare socket (the best possible): %.2fx", Speedup(raw, base))
		var vsRaw []string
		for _, r := range g.rows {
			if r.Stack == StackGRPCIPC && r.main().Median > 0 {
				vsRaw = append(vsRaw, fmt.Sprintf("%.2fx (%s)", r.main().Median/raw.main().Median, r.Transport))
			}
		}
		if g.w.Kind == Unary {
			s += fmt.Sprintf("; the fast path's p50 is %s the bare socket's round trip", and(vsRaw))
		} else {
			s += fmt.Sprintf("; the fast path reaches %s the bare socket's %s", and(vsRaw), mainName(g.w.Kind))
		}
	}
	return s
}

// overlaps says whether two figures' ranges over the rounds overlap (with
// one round they have none).
func overlaps(a, b Figure, rounds int) bool {
	return rounds > 1 && a.Min <= b.Max && b.Min <= a.Max
}

// and joins words as a list: "a", "a and b", "a, b and c".
func and(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// warnings are the report's closing warnings: a busy machine, rounds that
// disagree.
func warnings(results []Result, load Load) []string {
	var out []string
	if load.Busy() {
		out = append(out, fmt.Sprintf("warning: the machine was busy: the load average reached %.2f on %d CPUs "+
			"(above %.0f, the CPUs plus two for the bench's own client and server, other programs were "+
			"competing for the CPUs): the figures include their waits and the ratios may be off by more "+
			"than the ranges show; run again on an idle machine.", load.Max, load.CPUs, float64(load.CPUs)+busyMargin))
	}
	type wide struct {
		what string
		dev  float64
	}
	var ws []wide
	counted := 0
	for _, g := range groups(results) {
		for _, r := range g.rows {
			m := r.main()
			if r.Rounds < 2 || m.Median == 0 {
				continue
			}
			counted++
			if dev := max(m.Max/m.Median-1, 1-m.Min/m.Median); dev > wideRange {
				ws = append(ws, wide{fmt.Sprintf("%s in %s, %.0f-%.0f%%", r.name(), g.title(), 100*m.Min/m.Median, 100*m.Max/m.Median), dev})
			}
		}
	}
	if len(ws) > 0 {
		// The widest first, at most three named.
		slices.SortStableFunc(ws, func(a, b wide) int { return cmp.Compare(b.dev, a.dev) })
		var names []string
		for _, w := range ws[:min(3, len(ws))] {
			names = append(names, w.what)
		}
		out = append(out, fmt.Sprintf("warning: %d of %d figures have a round more than %.0f%% from their median "+
			"(widest: %s): their ratios are uncertain by as much; run again with more --reps or on an idle machine.",
			len(ws), counted, 100*wideRange, strings.Join(names, "; ")))
	}
	return out
}

// wrap breaks text into lines of at most width runes, the first starting
// with first and the others with rest.
func wrap(text string, width int, first, rest string) []string {
	var lines []string
	line := first
	empty := true
	for _, word := range strings.Fields(text) {
		if !empty && utf8.RuneCountInString(line)+1+utf8.RuneCountInString(word) > width {
			lines = append(lines, line)
			line, empty = rest, true
		}
		if !empty {
			line += " "
		}
		line += word
		empty = false
	}
	if !empty {
		lines = append(lines, line)
	}
	return lines
}

func ratio(x float64) string {
	if x == 0 {
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

// num writes a count with thousands separators: 30,529.
func num(v float64) string {
	if v == 0 {
		return ""
	}
	s := fmt.Sprintf("%.0f", v)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func cpuString(r Result) string {
	v := r.CPUusPerCall.Median
	switch {
	case v == 0:
		return ""
	case r.Workload == Stream:
		return fmt.Sprintf("%.0fµs", v)
	}
	return us(v)
}
