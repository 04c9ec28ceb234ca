package main

import (
	"bufio"
	"encoding/json"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// result is one benchmark's line of `go test -bench` output: its full name
// (GOMAXPROCS suffix removed) and every metric it reported, by unit.
type result struct {
	Name    string
	Iters   int64
	Metrics map[string]float64
	Units   []string // in the order printed
}

// testEvent is the part of a test2json event the generator reads.
type testEvent struct {
	Action  string
	Package string
	Test    string
	Output  string
}

var (
	benchLine = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+(\d+)\s+(.+)$`)
	// benchName is a result line's name alone, "BenchmarkX/y-2 \t",
	// possibly followed by output that came between it and its figures.
	benchName = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s*\t`)
	// benchFigures is a result line's figures without its name.
	benchFigures = regexp.MustCompile(`^\s*\d+\t`)
)

// parseBenchLine parses "BenchmarkX/y-2   1   123 ns/op   4.5 MB/s".
func parseBenchLine(line string) (result, bool) {
	m := benchLine.FindStringSubmatch(strings.TrimSpace(line))
	if m == nil {
		return result{}, false
	}
	iters, err := strconv.ParseInt(m[3], 10, 64)
	if err != nil {
		return result{}, false
	}
	f := strings.Fields(m[4])
	if len(f) < 2 || len(f)%2 != 0 {
		return result{}, false
	}
	r := result{Name: m[1], Iters: iters, Metrics: map[string]float64{}}
	for i := 0; i < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return result{}, false
		}
		if _, dup := r.Metrics[f[i+1]]; !dup {
			r.Units = append(r.Units, f[i+1])
		}
		r.Metrics[f[i+1]] = v
	}
	return r, true
}

// readEvents reads a `go test -json` stream. Output is joined across events
// before it is split into lines (a benchmark's name and its figures can come
// in separate events); each complete line goes to onLine, and every
// benchmark result line is returned parsed. Should something the benchmark
// wrote to stderr land between a result's name and its figures, the
// figures' line is parsed under the name seen last.
func readEvents(r io.Reader, onLine func(string)) ([]result, error) {
	var results []result
	var pending strings.Builder
	var orphanName string // a name whose figures have not come yet
	flush := func(s string) {
		if onLine != nil {
			onLine(s)
		}
		if res, ok := parseBenchLine(s); ok {
			results = append(results, res)
			orphanName = ""
			return
		}
		if m := benchName.FindStringSubmatch(s); m != nil {
			orphanName = m[1]
			return
		}
		if orphanName != "" && benchFigures.MatchString(s) {
			if res, ok := parseBenchLine(orphanName + "\t" + s); ok {
				results = append(results, res)
				orphanName = ""
			}
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var ev testEvent
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			// Not an event (a build error, say): pass it on.
			flush(sc.Text())
			continue
		}
		// Since Go 1.24 a build error comes as build-output events.
		if ev.Action != "output" && ev.Action != "build-output" {
			continue
		}
		pending.WriteString(ev.Output)
		s := pending.String()
		for {
			i := strings.IndexByte(s, '\n')
			if i < 0 {
				break
			}
			flush(s[:i])
			s = s[i+1:]
		}
		pending.Reset()
		pending.WriteString(s)
	}
	if pending.Len() > 0 {
		flush(pending.String())
	}
	return results, sc.Err()
}
