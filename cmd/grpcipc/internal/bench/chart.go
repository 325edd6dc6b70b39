package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
	"unicode/utf8"
)

// ChartOptions say what Chart writes above the bars.
type ChartOptions struct {
	Title string
	Notes []string // drawn under the subtitle, in red: warnings about the run
}

// Bar colours, given to the targets drawn as bars in the order they first
// appear (Tableau 10); a target beyond the tenth takes the first again.
var barPalette = []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7", "#bab0ac"}

// Floor styles: the raw socket's lines, by their order.
var floorPalette = []struct{ color, dash string }{{"#000000", "6,3"}, {"#555555", "2,2"}, {"#000000", "10,2,2,2"}}

// Chart geometry, in pixels. Text widths are estimated (see textWidth),
// so the layout can be tested without a renderer.
const (
	chartMargin   = 12
	chartFont     = 12.0
	chartPlotW    = 440
	chartBarH     = 14
	chartBarGap   = 6
	chartGroupGap = 12
	chartLineH    = 16 // a line of 12 px text
)

// box is a rectangle: x, y its top left corner.
type box struct{ x, y, w, h float64 }

func (a box) overlaps(b box) bool {
	return a.x < b.x+b.w && b.x < a.x+a.w && a.y < b.y+b.h && b.y < a.y+a.h
}

// Roles of the chart's elements.
const (
	roleTitle   = "title"
	roleNote    = "note"    // subtitle and warnings
	roleLegend  = "legend"  // legend text and swatches
	roleTick    = "tick"    // the axis' labels
	roleHeading = "heading" // a workload's name
	roleFloor   = "floor"   // the raw socket's figures beside a heading, and its lines
	roleLabel   = "label"   // a target's name left of its bar
	roleValue   = "value"   // the ratio right of a bar
	roleBar     = "bar"
	roleGrid    = "grid"
	roleWhisker = "whisker"
	roleBack    = "background"
)

type svgText struct {
	x, y   float64 // y is the baseline
	anchor string  // start, middle or end
	size   float64
	bold   bool
	fill   string
	halo   bool // a white outline, to stay legible over the lines
	s      string
	role   string
}

// textWidth estimates a string's width in a sans-serif font: 0.62 em a
// character (0.68 bold), a little more than Helvetica's and DejaVu Sans'
// average for this text, so that estimated boxes cover the drawn ones.
func textWidth(s string, size float64, bold bool) float64 {
	em := 0.62
	if bold {
		em = 0.68
	}
	return float64(utf8.RuneCountInString(s)) * size * em
}

// box is the text's estimated extent: ascenders above the baseline,
// descenders below it.
func (t svgText) box() box {
	w := textWidth(t.s, t.size, t.bold)
	x := t.x
	switch t.anchor {
	case "end":
		x -= w
	case "middle":
		x -= w / 2
	}
	return box{x, t.y - 0.8*t.size, w, 1.05 * t.size}
}

type svgRect struct {
	box
	fill string
	role string
}

type svgLine struct {
	x1, y1, x2, y2 float64
	stroke, dash   string
	width          float64
	role           string
}

// chartLayout is the chart before it is written as SVG.
type chartLayout struct {
	width, height float64
	texts         []svgText
	rects         []svgRect
	lines         []svgLine
}

func (l *chartLayout) text(x, y float64, anchor, s, role string) *svgText {
	l.texts = append(l.texts, svgText{x: x, y: y, anchor: anchor, size: chartFont, fill: "#000000", s: s, role: role})
	return &l.texts[len(l.texts)-1]
}

// style is how a target is drawn: a bar's fill, or a floor line's colour
// and dashes.
type style struct {
	floor       bool
	color, dash string
}

// styles gives every target in results a style: bars a colour of
// barPalette, floors one of floorPalette, by the order the targets first
// appear; never none. names are the targets, bars first, for the legend.
func styles(results []Result) (names []string, by map[string]style) {
	by = map[string]style{}
	var bars, floors []string
	for _, r := range results {
		n := r.name()
		if _, ok := by[n]; ok {
			continue
		}
		if isFloor(r.Stack) {
			f := floorPalette[len(floors)%len(floorPalette)]
			by[n] = style{floor: true, color: f.color, dash: f.dash}
			floors = append(floors, n)
			continue
		}
		by[n] = style{color: barPalette[len(bars)%len(barPalette)]}
		bars = append(bars, n)
	}
	return append(bars, floors...), by
}

// axisStep picks the axis' tick step for ratios up to top: at most 8
// ticks.
func axisStep(top float64) float64 {
	for _, s := range []float64{0.25, 0.5, 1, 2, 5, 10, 20, 50} {
		if top/s <= 8 {
			return s
		}
	}
	return math.Ceil(top / 8)
}

// layoutChart places every element of the chart: for each workload with a
// grpc-go TCP result, a bar per target with its ratio to it, the raw
// socket as a line (or, beyond the scale, only its figure by the heading).
func layoutChart(results []Result, o ChartOptions) *chartLayout {
	l := &chartLayout{}
	names, st := styles(results)
	n := rounds(results)

	// The scale: the bars and their whiskers, never the floor.
	type row struct {
		r            Result
		v, low, high float64 // the ratio, and its range over the rounds
	}
	type block struct {
		g      *group
		bars   []row
		floors []row
	}
	var blocks []block
	top := 1.0
	labelW := 0.0
	for _, g := range groups(results) {
		base, ok := g.base()
		if !ok || base.main().Median == 0 {
			continue
		}
		b := block{g: g}
		for _, r := range g.rows {
			m := r.main()
			x := row{r: r, v: Speedup(r, base)}
			x.low, x.high = x.v, x.v
			if r.Rounds > 1 && m.Min > 0 {
				a, c := speedupOf(r, m.Min, base), speedupOf(r, m.Max, base)
				x.low, x.high = min(a, c), max(a, c)
			}
			if isFloor(r.Stack) {
				b.floors = append(b.floors, x)
				continue
			}
			b.bars = append(b.bars, x)
			top = max(top, x.high)
			labelW = max(labelW, textWidth(r.name(), chartFont, false))
		}
		blocks = append(blocks, b)
	}
	step := axisStep(top)
	top = math.Ceil(top/step-1e-9) * step
	left := chartMargin + labelW + 8
	scale := chartPlotW / top
	valueW := textWidth("x00.00", chartFont, false) + 8
	l.width = math.Ceil(max(left+chartPlotW+valueW+chartMargin, 640))
	right := l.width - chartMargin

	// Title, subtitle, notes.
	l.rects = append(l.rects, svgRect{box: box{0, 0, l.width, 0}, fill: "#ffffff", role: roleBack})
	t := l.text(chartMargin, 24, "start", o.Title, roleTitle)
	t.size, t.bold = 15, true
	y := 24.0 + 6
	sub := "Each target's figure as a multiple of grpc-go's (default options) over TCP loopback, the baseline (1x): " +
		"its p50 latency over the target's for unary calls, the target's calls/s or MB/s over its for the others; " +
		"longer is better. Bars: the median of the " + roundsText(n) + "; whiskers: the target's lowest and highest round. " +
		"The raw socket, the best any RPC could do, is a line (its figure beside each heading)."
	perLine := int((right - chartMargin) / (chartFont * 0.62))
	for _, s := range wrap(sub, perLine, "", "") {
		y += chartLineH
		l.text(chartMargin, y, "start", s, roleNote).fill = "#555555"
	}
	for _, note := range o.Notes {
		for _, s := range wrap(note, perLine, "", "") {
			y += chartLineH
			l.text(chartMargin, y, "start", s, roleNote).fill = "#b03000"
		}
	}

	// Legend: a swatch and a name per target, in rows.
	y += 10
	x := float64(chartMargin)
	legendRow := y
	for _, name := range names {
		s := st[name]
		label := name
		switch {
		case name == (Target{Stack: StackGRPCGo, Transport: "tcp"}).Name():
			label += " (baseline, 1x)"
		case s.floor:
			label += " (bare socket)"
		}
		w := 22 + textWidth(label, chartFont, false)
		if x > chartMargin && x+w > right {
			x, legendRow = chartMargin, legendRow+chartLineH+4
		}
		if s.floor {
			l.lines = append(l.lines, svgLine{x, legendRow + 6, x + 16, legendRow + 6, s.color, s.dash, 2, roleLegend})
		} else {
			l.rects = append(l.rects, svgRect{box: box{x, legendRow, 16, 12}, fill: s.color, role: roleLegend})
		}
		l.text(x+20, legendRow+10.5, "start", label, roleLegend)
		x += w + 16
	}
	y = legendRow + chartLineH + 10

	// The axis' labels, once at the top.
	y += chartLineH
	for v := 0.0; v <= top+1e-9; v += step {
		l.text(left+v*scale, y, "middle", fmt.Sprintf("%gx", v), roleTick).fill = "#555555"
	}
	y += 6

	for _, b := range blocks {
		// The heading on a line of its own; the floor's figures after it,
		// or on the next line if they do not fit.
		y += chartLineH
		h := l.text(chartMargin, y, "start", b.g.title()+" ("+mainName(b.g.w.Kind)+")", roleHeading)
		h.bold = true
		var fl []string
		for _, f := range b.floors {
			s := fmt.Sprintf("%s %.2fx", f.r.name(), f.v)
			if f.v > top {
				s += " (beyond the scale)"
			}
			fl = append(fl, s)
		}
		if len(fl) > 0 {
			note := "bare socket: " + strings.Join(fl, ", ")
			nx := chartMargin + textWidth(h.s, chartFont, true) + 12
			if nx+textWidth(note, chartFont, false) > right {
				y += chartLineH
				nx = chartMargin + 12
			}
			l.text(nx, y, "start", note, roleFloor).fill = "#555555"
		}
		y += 8
		first := y
		for _, r := range b.bars {
			l.text(left-6, y+11, "end", r.r.name(), roleLabel)
			l.rects = append(l.rects, svgRect{box: box{left, y, r.v * scale, chartBarH}, fill: st[r.r.name()].color, role: roleBar})
			end := left + r.v*scale
			if r.high > r.low {
				lo, hi := left+r.low*scale, left+r.high*scale
				mid := y + chartBarH/2
				l.lines = append(l.lines,
					svgLine{lo, mid, hi, mid, "#333333", "", 1, roleWhisker},
					svgLine{lo, mid - 4, lo, mid + 4, "#333333", "", 1, roleWhisker},
					svgLine{hi, mid - 4, hi, mid + 4, "#333333", "", 1, roleWhisker})
				end = max(end, hi)
			}
			l.text(end+4, y+11, "start", fmt.Sprintf("%.2fx", r.v), roleValue).halo = true
			y += chartBarH + chartBarGap
		}
		last := y - chartBarGap
		if len(b.bars) > 0 {
			for v := 0.0; v <= top+1e-9; v += step {
				c, w := "#dddddd", 1.0
				if v == 1 {
					c, w = "#888888", 1.5
				}
				l.lines = append(l.lines, svgLine{left + v*scale, first - 3, left + v*scale, last + 3, c, "", w, roleGrid})
			}
			for _, f := range b.floors {
				if f.v <= top {
					s := st[f.r.name()]
					l.lines = append(l.lines, svgLine{left + f.v*scale, first - 3, left + f.v*scale, last + 3, s.color, s.dash, 2, roleFloor})
				}
			}
		}
		y = last + chartGroupGap
	}
	l.height = math.Ceil(y + chartMargin)
	l.rects[0].h = l.height
	return l
}

// roundsText is "one round" or "N rounds".
func roundsText(n int) string {
	if n == 1 {
		return "one round"
	}
	return fmt.Sprintf("%d rounds", n)
}

// Chart writes an SVG chart of the results: for each workload, each
// target's speed as a multiple of grpc-go's over TCP loopback, a legend,
// and the raw socket as a line (see layoutChart).
func Chart(w io.Writer, results []Result, o ChartOptions) error {
	l := layoutChart(results, o)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" font-family="sans-serif" font-size="%g">`+"\n", l.width, l.height, chartFont)
	// Background and grid first, then the bars, the lines over them, the text.
	for _, r := range l.rects {
		if r.role == roleBack {
			fmt.Fprintf(&b, `<rect x="0" y="0" width="%g" height="%g" fill="%s"/>`+"\n", r.w, r.h, r.fill)
		}
	}
	writeLines(&b, l.lines, func(x svgLine) bool { return x.role == roleGrid })
	for _, r := range l.rects {
		if r.role != roleBack {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", r.x, r.y, max(r.w, 0), r.h, r.fill)
		}
	}
	writeLines(&b, l.lines, func(x svgLine) bool { return x.role != roleGrid })
	for _, t := range l.texts {
		attrs := ""
		if t.anchor != "start" {
			attrs += fmt.Sprintf(` text-anchor="%s"`, t.anchor)
		}
		if t.size != chartFont {
			attrs += fmt.Sprintf(` font-size="%g"`, t.size)
		}
		if t.bold {
			attrs += ` font-weight="bold"`
		}
		if t.halo {
			attrs += ` stroke="#ffffff" stroke-width="3" paint-order="stroke"`
		}
		if t.fill != "#000000" {
			attrs += fmt.Sprintf(` fill="%s"`, t.fill)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f"%s>%s</text>`+"\n", t.x, t.y, attrs, html.EscapeString(t.s))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writeLines(b *strings.Builder, lines []svgLine, keep func(svgLine) bool) {
	for _, x := range lines {
		if !keep(x) {
			continue
		}
		dash := ""
		if x.dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, x.dash)
		}
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%g"%s/>`+"\n", x.x1, x.y1, x.x2, x.y2, x.stroke, x.width, dash)
	}
}
