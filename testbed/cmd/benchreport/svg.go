package main

import (
	"fmt"
	"math"
	"strings"
)

// series is one line of a chart.
type series struct {
	Name string
	X, Y []float64
}

// chart is a line chart rendered as a standalone SVG.
type chart struct {
	Title, XLabel, YLabel string
	LogX, LogY            bool
	IntX                  bool // x is a count: no ticks between integers
	Series                []series
	HLines                []series // horizontal reference lines: Name and Y[0]
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"}

// dashes tell the reference lines apart.
var dashes = []string{"6,4", "2,3", "10,3,2,3"}

func xmlEscape(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")
	return r.Replace(s)
}

// svg renders the chart, 720×420, axes with ticks, a legend on the right.
func (c chart) svg() string {
	const w, h = 720.0, 420.0
	const left, right, top, bottom = 80.0, 190.0, 40.0, 60.0
	pw, ph := w-left-right, h-top-bottom
	tx := func(v float64, log bool) float64 {
		if log {
			if v <= 0 {
				return math.NaN()
			}
			return math.Log10(v)
		}
		return v
	}
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		for i := range s.X {
			x, y := tx(s.X[i], c.LogX), tx(s.Y[i], c.LogY)
			if math.IsNaN(x) || math.IsNaN(y) {
				continue
			}
			xmin, xmax = math.Min(xmin, x), math.Max(xmax, x)
			ymin, ymax = math.Min(ymin, y), math.Max(ymax, y)
		}
	}
	for _, s := range c.HLines {
		if y := tx(s.Y[0], c.LogY); !math.IsNaN(y) {
			ymin, ymax = math.Min(ymin, y), math.Max(ymax, y)
		}
	}
	if math.IsInf(xmin, 0) {
		xmin, xmax, ymin, ymax = 0, 1, 0, 1
	}
	if !c.LogY && ymin > 0 {
		ymin = 0
	}
	if c.LogY {
		ymin = math.Floor(ymin) // down to a decade, so the lowest point has a tick below it
	}
	if xmax == xmin {
		xmin, xmax = xmin-1, xmax+1
	}
	if ymax == ymin {
		ymax = ymin + 1
	}
	ymax += (ymax - ymin) * 0.05
	px := func(x float64) float64 { return left + (x-xmin)/(xmax-xmin)*pw }
	py := func(y float64) float64 { return top + ph - (y-ymin)/(ymax-ymin)*ph }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%.0f" height="%.0f" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", left, xmlEscape(c.Title))
	fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#444"/>`+"\n", left, top, pw, ph)
	for _, t := range ticks(xmin, xmax, c.LogX) {
		if c.IntX && !c.LogX && t != math.Round(t) {
			continue
		}
		x := px(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x, top, x, top+ph)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, top+ph+16, xmlEscape(tickLabel(t, c.LogX)))
	}
	for _, t := range ticks(ymin, ymax, c.LogY) {
		y := py(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, y, left+pw, y)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, xmlEscape(tickLabel(t, c.LogY)))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", left+pw/2, h-18, xmlEscape(c.XLabel))
	fmt.Fprintf(&b, `<text transform="translate(18,%.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", top+ph/2, xmlEscape(c.YLabel))
	legendY := top + 10
	for i, s := range c.Series {
		col := palette[i%len(palette)]
		var pts []string
		for j := range s.X {
			x, y := tx(s.X[j], c.LogX), tx(s.Y[j], c.LogY)
			if math.IsNaN(x) || math.IsNaN(y) {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(x), py(y)))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", px(x), py(y), col)
		}
		if len(pts) > 1 {
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), col)
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", left+pw+12, legendY, left+pw+32, legendY, col)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", left+pw+38, legendY+4, xmlEscape(s.Name))
		legendY += 18
	}
	for i, s := range c.HLines {
		y := tx(s.Y[0], c.LogY)
		if math.IsNaN(y) {
			continue
		}
		dash := dashes[i%len(dashes)]
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333" stroke-width="1.5" stroke-dasharray="%s"/>`+"\n", left, py(y), left+pw, py(y), dash)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333" stroke-width="1.5" stroke-dasharray="%s"/>`+"\n", left+pw+12, legendY, left+pw+32, legendY, dash)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", left+pw+38, legendY+4, xmlEscape(s.Name))
		legendY += 18
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// ticks are about five round values in [lo, hi] (in log10 units when log:
// the decades, and 2 and 5 times them when fewer than three decades show).
func ticks(lo, hi float64, log bool) []float64 {
	if log {
		var out []float64
		for e := math.Ceil(lo - 1e-9); e <= hi+1e-9; e++ {
			out = append(out, e)
		}
		if len(out) < 3 {
			out = out[:0]
			for e := math.Floor(lo); e <= hi+1e-9; e++ {
				for _, t := range []float64{e, e + math.Log10(2), e + math.Log10(5)} {
					if t >= lo-1e-9 && t <= hi+1e-9 {
						out = append(out, t)
					}
				}
			}
		}
		if len(out) == 0 {
			out = append(out, lo)
		}
		return out
	}
	step := math.Pow(10, math.Floor(math.Log10((hi-lo)/5)))
	for _, m := range []float64{1, 2, 5, 10} {
		if (hi-lo)/(step*m) <= 6 {
			step *= m
			break
		}
	}
	var out []float64
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		out = append(out, v)
	}
	return out
}

func tickLabel(v float64, log bool) string {
	if log {
		v = math.Pow(10, v)
	}
	return humanNumber(v)
}

// humanNumber: 1200000 → "1.2M", 2500 → "2.5k", 0.25 → "0.25".
func humanNumber(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e9:
		return trimZeros(fmt.Sprintf("%.2f", v/1e9)) + "G"
	case a >= 1e6:
		return trimZeros(fmt.Sprintf("%.2f", v/1e6)) + "M"
	case a >= 1e3:
		return trimZeros(fmt.Sprintf("%.2f", v/1e3)) + "k"
	case a >= 1 || a == 0:
		return trimZeros(fmt.Sprintf("%.2f", v))
	default:
		return trimZeros(fmt.Sprintf("%.3g", v))
	}
}

func trimZeros(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
