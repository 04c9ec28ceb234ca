package main

import (
	"fmt"
	"regexp"
	"strings"
)

// figure is one number of the report with its unit and the command that
// produced it, or, when OK is false, why there is none.
type figure struct {
	V    float64
	Unit string
	OK   bool
	Why  string // when !OK: "not in the quick run", "skipped: …"
	Cmd  string // the command that produced it (or would have)
}

// index finds figures in a run's results by benchmark name and unit.
type index struct {
	runs  []stepRun
	peers peerRun
	quick bool
}

// loopbackCmd names what measured the loopback bandwidth: benchreport
// itself, as nothing else on the machine does it.
const loopbackCmd = "go run ./testbed/cmd/benchreport (one TCP stream of 1 MiB writes over 127.0.0.1)"

// bench is the figure a benchmark reported in unit.
func (ix *index) bench(name, unit string) figure {
	for _, r := range ix.runs {
		for _, res := range r.results {
			if res.Name != name {
				continue
			}
			v, ok := res.Metrics[unit]
			if !ok {
				why := fmt.Sprintf("%s reported no %s", name, unit)
				if ix.quick {
					why = "not in the quick run: " + why
				}
				return figure{Unit: unit, Why: why, Cmd: r.step.command()}
			}
			return figure{V: v, Unit: unit, OK: true, Cmd: r.step.command()}
		}
	}
	why, cmd := ix.missing(name)
	return figure{Unit: unit, Why: why, Cmd: cmd}
}

// missing says why a benchmark has no result, and which step's command
// should have produced it.
func (ix *index) missing(name string) (why, cmd string) {
	for _, r := range ix.runs {
		if !benchMatches(r.step.Bench, name) {
			continue
		}
		cmd = r.step.command()
		if msg, ok := byPrefix(r.skips, name); ok {
			return "skipped: " + msg, cmd
		}
		if msg, ok := byPrefix(r.fails, name); ok {
			return "failed: " + msg, cmd
		}
		if r.err != nil {
			return "its step failed: " + firstLine(r.err.Error()), cmd
		}
		return "not reported, though its step passed", cmd
	}
	if ix.quick {
		return "not in the quick run", ""
	}
	return "not run", ""
}

// byPrefix finds name, or the benchmark it is a sub-benchmark of, in m.
func byPrefix(m map[string]string, name string) (string, bool) {
	for n := name; ; {
		if msg, ok := m[n]; ok {
			return msg, true
		}
		i := strings.LastIndexByte(n, '/')
		if i < 0 {
			return "", false
		}
		n = n[:i]
	}
}

func (ix *index) dd() figure {
	p := ix.peers
	switch {
	case p.ddErr != nil:
		return figure{Unit: "MB/s", Why: "dd failed: " + firstLine(p.ddErr.Error()), Cmd: p.ddCmd}
	case p.ddMBs <= 0:
		return figure{Unit: "MB/s", Why: "dd not run or its rate not found in its output", Cmd: p.ddCmd}
	}
	return figure{V: p.ddMBs, Unit: "MB/s", OK: true, Cmd: p.ddCmd}
}

func (ix *index) loopback() figure {
	p := ix.peers
	switch {
	case p.loopErr != nil:
		return figure{Unit: "MB/s", Why: "loopback test failed: " + firstLine(p.loopErr.Error()), Cmd: loopbackCmd}
	case p.loopbackMBs <= 0:
		return figure{Unit: "MB/s", Why: "loopback test not run", Cmd: loopbackCmd}
	}
	return figure{V: p.loopbackMBs, Unit: "MB/s", OK: true, Cmd: loopbackCmd}
}

// source finds one figure.
type source func(ix *index) figure

func bench(name, unit string) source {
	return func(ix *index) figure { return ix.bench(name, unit) }
}

func ddSource(ix *index) figure       { return ix.dd() }
func loopbackSource(ix *index) figure { return ix.loopback() }

// none is a figure nothing measures yet, with the reason.
func none(why string) source {
	return func(*index) figure { return figure{Why: why} }
}

// scaled is s times k, in unit: nanoseconds to milliseconds, say.
func scaled(s source, k float64, unit string) source {
	return func(ix *index) figure {
		f := s(ix)
		f.V *= k
		f.Unit = unit
		return f
	}
}

// ratio is a / b, or why it cannot be had.
func ratio(a, b figure) figure {
	switch {
	case !a.OK:
		return figure{Unit: "×", Why: a.Why}
	case !b.OK:
		return figure{Unit: "×", Why: b.Why}
	case b.V == 0:
		return figure{Unit: "×", Why: "the peer figure is 0"}
	}
	return figure{V: a.V / b.V, Unit: "×", OK: true}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}

// benchMatches reports whether `go test -bench pattern` runs the
// benchmark name (a sub-benchmark's full name), as the testing package
// matches: the pattern's top-level alternatives are split on '/' into one
// unanchored expression per level, and a name matches an alternative if
// each of its levels matches that level's expression.
func benchMatches(pattern, name string) bool {
	levels := strings.Split(name, "/")
	for _, alt := range splitPattern(pattern) {
		ok := true
		for i, lv := range levels {
			if i >= len(alt) {
				break
			}
			re, err := regexp.Compile(alt[i])
			if err != nil || !re.MatchString(lv) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// splitPattern splits a -bench pattern at the '|' and '/' that are
// outside brackets and parentheses: alternatives of levels.
func splitPattern(s string) [][]string {
	var alts [][]string
	var levels []string
	brackets, parens := 0, 0
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			brackets++
		case ']':
			if brackets > 0 {
				brackets--
			}
		case '(':
			if brackets == 0 {
				parens++
			}
		case ')':
			if brackets == 0 {
				parens--
			}
		case '\\':
			i++
		case '/', '|':
			if brackets == 0 && parens == 0 {
				levels = append(levels, s[start:i])
				start = i + 1
				if s[i] == '|' {
					alts = append(alts, levels)
					levels = nil
				}
			}
		}
	}
	return append(alts, append(levels, s[start:]))
}
