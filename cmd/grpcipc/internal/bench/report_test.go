package bench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

// result is a fixed result whose main figure is {med, lo, hi}.
func result(stack, transport string, w Workload, heap string, rounds int, med, lo, hi float64) Result {
	r := Result{Stack: stack, Transport: transport, Workload: w.Kind, SizeBytes: w.Size, Callers: w.Callers, Heap: heap, Rounds: rounds,
		CPUusPerCall: Figure{20, 19, 21}, AllocsPerCall: Figure{14, 14, 14}}
	f := Figure{Median: med, Min: lo, Max: hi}
	switch w.Kind {
	case Unary:
		r.P50us, r.P99us = f, Figure{3 * med, 3 * med, 3 * med}
		r.CallsPerSec = Figure{1e6 / med, 1e6 / hi, 1e6 / lo}
	case Throughput:
		r.CallsPerSec = f
	default:
		r.MBPerSec = f
	}
	return r
}

var (
	unary1K = Workload{Unary, 1 << 10, 1}
	thru1K  = Workload{Throughput, 1 << 10, 32}
	strm1M  = Workload{Stream, 1 << 20, 1}
)

// fixed is a run of three rounds on Linux's targets with figures chosen
// for the tests: the fast path at 2.9x grpc-go's calls over TCP, its
// abstract socket's range overlapping grpc-go's in the stream, the raw
// socket 18x grpc-go in the stream.
func fixed() []Result {
	var rs []Result
	add := func(w Workload, heap, stack, transport string, med, lo, hi float64) {
		rs = append(rs, result(stack, transport, w, heap, 3, med, lo, hi))
	}
	add(unary1K, HeapTiny, StackRaw, "unix", 20, 19, 21)
	add(unary1K, HeapTiny, StackGRPCGo, "tcp", 80, 76, 84)
	add(unary1K, HeapTiny, StackGRPCGo, "unix", 78, 75, 82)
	add(unary1K, HeapTiny, StackGRPCIPC, "unix", 40, 38, 44)
	add(unary1K, HeapTiny, StackGRPCIPC2, "unix", 75, 72, 80)
	add(unary1K, HeapTiny, StackGRPCIPC, "unix-abstract", 50, 47, 52)
	add(thru1K, HeapTiny, StackRaw, "unix", 100000, 98000, 101000)
	add(thru1K, HeapTiny, StackGRPCGo, "tcp", 40000, 39000, 41000)
	add(thru1K, HeapTiny, StackGRPCGo, "unix", 41000, 40000, 42000)
	add(thru1K, HeapTiny, StackGRPCIPC, "unix", 116000, 110000, 120000)
	add(thru1K, HeapTiny, StackGRPCIPC2, "unix", 42000, 41000, 43000)
	add(thru1K, HeapTiny, StackGRPCIPC, "unix-abstract", 120000, 115000, 125000)
	add(strm1M, HeapService, StackRaw, "unix", 18000, 17000, 19000)
	add(strm1M, HeapService, StackRawAlloc, "unix", 3000, 2900, 3100)
	add(strm1M, HeapService, StackGRPCGo, "tcp", 1000, 950, 1050)
	add(strm1M, HeapService, StackGRPCGo, "unix", 1100, 1000, 1150)
	add(strm1M, HeapService, StackGRPCIPC, "unix", 2000, 1900, 2100)
	add(strm1M, HeapService, StackGRPCIPC2, "unix", 1500, 1400, 1600)
	add(strm1M, HeapService, StackGRPCIPC, "unix-abstract", 1100, 1000, 1200)
	return rs
}

// recorded is a real run: the one docs/bench.json held on 2026-11-26.
func recorded(t *testing.T) []Result {
	t.Helper()
	b, err := os.ReadFile("testdata/bench-2026-11-26.json")
	if err != nil {
		t.Fatal(err)
	}
	var rs []Result
	if err := json.Unmarshal(b, &rs); err != nil {
		t.Fatal(err)
	}
	return rs
}

// renamed gives every target a longer name, as a new target might have.
func renamed(rs []Result) []Result {
	out := append([]Result(nil), rs...)
	for i := range out {
		if out[i].Stack == StackGRPCIPC2 {
			out[i].Transport = "unix-abstract" // "grpcipc-http2 unix-abstract": 27 characters
		}
	}
	return out
}

func table(rs []Result, o TableOptions) string {
	var b strings.Builder
	Table(&b, rs, o)
	return b.String()
}

func TestTableFitsWidth(t *testing.T) {
	busy := Load{Known: true, CPUs: 2, Before: 6, Max: 8}
	for name, rs := range map[string][]Result{"fixed": fixed(), "recorded": recorded(t), "long names": renamed(recorded(t))} {
		t.Run(name, func(t *testing.T) {
			out := table(rs, TableOptions{Load: busy})
			for _, line := range strings.Split(out, "\n") {
				if n := utf8.RuneCountInString(line); n > TableWidth {
					t.Errorf("a line of %d columns (at most %d):\n%s", n, TableWidth, line)
				}
			}
			wide := table(rs, TableOptions{Wide: true})
			for _, col := range []string{"min", "max", "vs raw", "calls/s"} {
				if !strings.Contains(wide, col) || strings.Contains(strings.SplitN(out, "\n\n", 2)[1], "  "+col+"  ") {
					t.Errorf("column %q: not only in --wide", col)
				}
			}
		})
	}
}

func TestTableExplainsRange(t *testing.T) {
	out := table(fixed(), TableOptions{})
	for _, want := range []string{
		"range: the lowest and the highest of the 3 rounds as percentages of the median",
		"beyond ±20% is flagged",
		"vs tcp: how many times better than grpc-go over TCP loopback",
	} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
			t.Errorf("the table does not say %q:\n%s", want, out)
		}
	}
	// Its figures: 38/40 and 44/40 of the fast path's p50.
	if !strings.Contains(out, "95-110%") {
		t.Errorf("no range 95-110%% for grpcipc unix's unary p50:\n%s", out)
	}
	one := fixed()
	for i := range one {
		one[i].Rounds = 1
	}
	if out := table(one, TableOptions{}); !strings.Contains(out, "range: none with one round") {
		t.Errorf("with one round, the table does not say that it has no range:\n%s", out)
	}
}

// summaries returns the table's summary lines, each joined from its
// wrapped lines.
func summaries(out string) []string {
	var got []string
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "  summary: "):
			got = append(got, strings.TrimPrefix(line, "  "))
		case strings.HasPrefix(line, "    ") && len(got) > 0:
			got[len(got)-1] += " " + strings.TrimSpace(line)
		}
	}
	return got
}

func TestTableSummaries(t *testing.T) {
	want := []string{
		// 80/40 = 2.00, 80/50 = 1.60; raw 80/20 = 4.00; 40/20 = 2.00, 50/20 = 2.50
		"summary: fast path 2.00x (unix) and 1.60x (unix-abstract) the speed of grpc-go over TCP here (p50 40.0µs and 50.0µs vs 80.0µs); the bare socket (the best possible): 4.00x; the fast path's p50 is 2.00x (unix) and 2.50x (unix-abstract) the bare socket's round trip",
		// 116000/40000 = 2.90; 116000/100000 = 1.16
		"summary: fast path 2.90x (unix) and 3.00x (unix-abstract) the calls/s of grpc-go over TCP here (116,000 and 120,000 vs 40,000); the bare socket (the best possible): 2.50x; the fast path reaches 1.16x (unix) and 1.20x (unix-abstract) the bare socket's calls/s",
		// unix-abstract's 1000-1200 overlaps grpc-go's 950-1050; 2000/18000 = 0.11
		"summary: fast path 2.00x (unix) and 1.10x (unix-abstract) the MB/s of grpc-go over TCP here (2,000 and 1,100 vs 1,000); over unix-abstract its rounds' range overlaps grpc-go's: no clear difference there; the bare socket (the best possible): 18.00x; the fast path reaches 0.11x (unix) and 0.06x (unix-abstract) the bare socket's MB/s",
	}
	got := summaries(table(fixed(), TableOptions{}))
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("summaries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := summaries(table(recorded(t), TableOptions{})); len(got) != len(groups(recorded(t))) {
		t.Errorf("%d summary lines for %d workloads: %q", len(got), len(groups(recorded(t))), got)
	}
	// Without grpc-go over TCP there is nothing to compare with.
	var noBase []Result
	for _, r := range fixed() {
		if r.Stack != StackGRPCGo {
			noBase = append(noBase, r)
		}
	}
	if got := summaries(table(noBase, TableOptions{})); len(got) != 0 {
		t.Errorf("summaries without a baseline: %q", got)
	}
}

func TestLoadWarning(t *testing.T) {
	for _, tc := range []struct {
		load       Load
		line, warn bool
	}{
		{Load{Known: true, CPUs: 2, Before: 6.1, Max: 8.0}, true, true}, // the machine
		{Load{Known: true, CPUs: 2, Before: 0.3, Max: 4.2}, true, true},
		{Load{Known: true, CPUs: 2, Before: 0.3, Max: 3.9}, true, false}, // the bench alone, and a little
		{Load{Known: true, CPUs: 8, Before: 1, Max: 9.5}, true, false},
		{Load{Known: true, CPUs: 8, Before: 10.1, Max: 10.1}, true, true},
		{Load{CPUs: 2}, false, false}, // not Linux: nothing said
	} {
		out := table(fixed(), TableOptions{Load: tc.load})
		if got := strings.Contains(out, "load average (1 min)"); got != tc.line {
			t.Errorf("%+v: load line %v, want %v", tc.load, got, tc.line)
		}
		if got := strings.Contains(out, "warning: the machine was busy"); got != tc.warn {
			t.Errorf("%+v: busy warning %v, want %v:\n%s", tc.load, got, tc.warn, out)
		}
	}
	if out := table(fixed(), TableOptions{Load: Load{Known: true, CPUs: 2, Before: 6.1, Max: 8}}); !strings.Contains(out, "reached 8.00 on 2 CPUs") {
		t.Errorf("the warning does not say how busy:\n%s", out)
	}
}

func TestRangeWarning(t *testing.T) {
	if out := table(fixed(), TableOptions{}); strings.Contains(out, "warning") {
		t.Errorf("a warning for ranges within ±20%%:\n%s", out)
	}
	rs := fixed()
	rs[0].P50us = Figure{Median: 20, Min: 19, Max: 33} // raw unix: 95-165%
	rs[9].CallsPerSec = Figure{116000, 80000, 120000}  // grpcipc unix: 69-103%
	rs[10].CallsPerSec = Figure{42000, 33700, 43000}   // grpcipc-http2 unix: 80.2-102%: within
	out := strings.Join(strings.Fields(table(rs, TableOptions{})), " ")
	want := "warning: 2 of 19 figures have a round more than 20% from their median (widest: raw unix in unary 1 KiB, 95-165%; grpcipc unix in throughput 1 KiB x32, 69-103%)"
	if !strings.Contains(out, want) {
		t.Errorf("no %q in\n%s", want, out)
	}
	for i := range rs {
		rs[i].Rounds = 1
	}
	if out := table(rs, TableOptions{}); strings.Contains(out, "warning") {
		t.Errorf("a range warning with one round:\n%s", out)
	}
}

func TestParseLoadavg(t *testing.T) {
	for in, want := range map[string]float64{"0.52 0.58 0.59 1/467 12345\n": 0.52, "7.94 6.10 3.00 9/300 1": 7.94} {
		if got, err := parseLoadavg(in); err != nil || got != want {
			t.Errorf("parseLoadavg(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x 1 2", "-1 0 0"} {
		if _, err := parseLoadavg(in); err == nil {
			t.Errorf("parseLoadavg(%q): no error", in)
		}
	}
	if v, ok := readLoad(); ok && v < 0 {
		t.Errorf("readLoad() = %v", v)
	}
}

// svgElem is an element of the chart as encoding/xml reads it.
type svgElem struct {
	name  string
	attrs map[string]string
	text  string
}

// parseSVG reads the chart as XML, failing the test if it is not.
func parseSVG(t *testing.T, svg []byte) []svgElem {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(svg))
	d.Strict = true
	var out []svgElem
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the chart is not XML: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			e := svgElem{name: tok.Name.Local, attrs: map[string]string{}}
			for _, a := range tok.Attr {
				e.attrs[a.Name.Local] = a.Value
			}
			out = append(out, e)
		case xml.CharData:
			if len(out) > 0 {
				out[len(out)-1].text += string(tok)
			}
		}
	}
	if len(out) == 0 || out[0].name != "svg" {
		t.Fatalf("the chart does not start with <svg>")
	}
	return out
}

// many is the fixed results with twelve more targets drawn as bars, more
// than the palette's colours.
func many() []Result {
	rs := fixed()
	for i := range 12 {
		for _, w := range []Workload{unary1K, thru1K} {
			med := 30.0 + float64(i)
			if w.Kind == Throughput {
				med = 50000 + 1000*float64(i)
			}
			rs = append(rs, result(fmt.Sprintf("future%d", i), "unix", w, HeapTiny, 3, med, med*0.95, med*1.05))
		}
	}
	return rs
}

func chart(t *testing.T, rs []Result, o ChartOptions) []svgElem {
	t.Helper()
	var b bytes.Buffer
	if err := Chart(&b, rs, o); err != nil {
		t.Fatal(err)
	}
	return parseSVG(t, b.Bytes())
}

func TestChartFillsEveryRect(t *testing.T) {
	for name, rs := range map[string][]Result{"fixed": fixed(), "recorded": recorded(t), "more targets than colours": many()} {
		t.Run(name, func(t *testing.T) {
			rects := 0
			for _, e := range chart(t, rs, ChartOptions{Title: `a "title" <with> & marks`}) {
				if e.name != "rect" {
					continue
				}
				rects++
				if f := e.attrs["fill"]; f == "" || f == "none" {
					t.Errorf("a rect without a fill: %v", e.attrs)
				}
			}
			if rects < 2 {
				t.Errorf("%d rects", rects)
			}
			// Every target has a style; the first ten bars' colours differ.
			names, st := styles(rs)
			seen := map[string]string{}
			for i, n := range names {
				s := st[n]
				if s.color == "" || s.floor && s.dash == "" {
					t.Errorf("%s: style %+v", n, s)
				}
				if !s.floor && i < len(barPalette) {
					if o, ok := seen[s.color]; ok {
						t.Errorf("%s and %s share %s", n, o, s.color)
					}
					seen[s.color] = n
				}
			}
		})
	}
}

func TestChartLegend(t *testing.T) {
	rs := fixed()
	l := layoutChart(rs, ChartOptions{Title: "t"})
	names, _ := styles(rs)
	for _, n := range names {
		found := false
		for _, x := range l.texts {
			found = found || x.role == roleLegend && strings.HasPrefix(x.s, n+" ") || x.role == roleLegend && x.s == n
		}
		if !found {
			t.Errorf("no legend entry for %s", n)
		}
	}
	swatches := 0
	for _, r := range l.rects {
		if r.role == roleLegend {
			swatches++
		}
	}
	for _, x := range l.lines {
		if x.role == roleLegend {
			swatches++
		}
	}
	if swatches != len(names) {
		t.Errorf("%d swatches for %d targets", swatches, len(names))
	}
	svg := chart(t, rs, ChartOptions{Title: "t"})
	var texts []string
	for _, e := range svg {
		if e.name == "text" {
			texts = append(texts, e.text)
		}
	}
	for _, want := range []string{"grpc-go tcp (baseline, 1x)", "grpcipc unix", "raw unix (bare socket)", "raw-alloc unix (bare socket)"} {
		if !strings.Contains(strings.Join(texts, "\n"), want) {
			t.Errorf("the chart's text lacks %q", want)
		}
	}
}

// TestChartNothingOverlaps: no text's box overlaps another's or a bar,
// headings above all (from the layout's estimated text widths).
func TestChartNothingOverlaps(t *testing.T) {
	busy := ChartOptions{Title: "grpcipc bench, linux/amd64, 2 CPUs, 2026-12-03", Notes: []string{"Measured on a busy machine: the load average reached 8.00 on 2 CPUs."}}
	for name, rs := range map[string][]Result{"fixed": fixed(), "recorded": recorded(t), "long names": renamed(recorded(t)), "many": many()} {
		t.Run(name, func(t *testing.T) {
			l := layoutChart(rs, busy)
			headings := 0
			for i, a := range l.texts {
				if a.role == roleHeading {
					headings++
				}
				ab := a.box()
				if ab.x < 0 || ab.x+ab.w > l.width || ab.y < 0 || ab.y+ab.h > l.height {
					t.Errorf("%s %q (%v) is outside the chart (%v x %v)", a.role, a.s, ab, l.width, l.height)
				}
				for _, b := range l.texts[i+1:] {
					if ab.overlaps(b.box()) {
						t.Errorf("%s %q (%v) overlaps %s %q (%v)", a.role, a.s, ab, b.role, b.s, b.box())
					}
				}
				for _, r := range l.rects {
					if r.role != roleBack && ab.overlaps(r.box) {
						t.Errorf("%s %q (%v) overlaps a %s (%v)", a.role, a.s, ab, r.role, r.box)
					}
				}
				if a.role != roleHeading {
					continue
				}
				for _, x := range l.lines {
					if (box{min(x.x1, x.x2), min(x.y1, x.y2), max(abs(x.x2-x.x1), 1), max(abs(x.y2-x.y1), 1)}).overlaps(ab) {
						t.Errorf("heading %q (%v) is crossed by a %s line", a.s, ab, x.role)
					}
				}
			}
			if want := len(groups(rs)); headings != want {
				t.Errorf("%d headings for %d workloads", headings, want)
			}
		})
	}
}

func abs(x float64) float64 { return max(x, -x) }

// TestChartFloorIsALine: the raw socket is no bar; at 18x grpc-go it does
// not set the scale, and its heading says so.
func TestChartFloorIsALine(t *testing.T) {
	rs := fixed()
	l := layoutChart(rs, ChartOptions{Title: "t"})
	bars := 0
	maxW := 0.0
	for _, r := range l.rects {
		if r.role == roleBar {
			bars++
			maxW = max(maxW, r.w)
		}
	}
	if want := len(rs) - 4; bars != want { // 3 raw, 1 raw-alloc
		t.Errorf("%d bars, want %d (none for the raw socket)", bars, want)
	}
	// The widest bar, the fast path's 3.00x calls (its whisker to 3.125x),
	// fills most of the plot: the scale ends at 3.5x.
	if maxW < chartPlotW*3/3.5-1 || maxW > chartPlotW {
		t.Errorf("the widest bar is %.0f of %d pixels", maxW, chartPlotW)
	}
	var notes []string
	for _, x := range l.texts {
		if x.role == roleFloor {
			notes = append(notes, x.s)
		}
	}
	want := []string{"bare socket: raw unix 4.00x (beyond the scale)", "bare socket: raw unix 2.50x", "bare socket: raw unix 18.00x (beyond the scale), raw-alloc unix 3.00x"}
	if strings.Join(notes, "\n") != strings.Join(want, "\n") {
		t.Errorf("floor notes:\n%s\nwant:\n%s", strings.Join(notes, "\n"), strings.Join(want, "\n"))
	}
	floorLines := 0
	for _, x := range l.lines {
		if x.role == roleFloor {
			floorLines++
		}
	}
	if floorLines != 2 { // throughput's raw at 2.50x, the stream's raw-alloc at 3.00x
		t.Errorf("%d floor lines, want 2", floorLines)
	}
}
