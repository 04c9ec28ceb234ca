package main

import (
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func res(name string, kv ...any) result {
	r := result{Name: name, Iters: 1, Metrics: map[string]float64{}}
	for i := 0; i < len(kv); i += 2 {
		u := kv[i].(string)
		r.Metrics[u] = kv[i+1].(float64)
		r.Units = append(r.Units, u)
	}
	return r
}

func stepByKey(t *testing.T, quick bool, key string) step {
	t.Helper()
	for _, s := range steps(quick, "/tmp/bench") {
		if s.Key == key {
			return s
		}
	}
	t.Fatalf("no step %q", key)
	return step{}
}

// fixture is a quick run by hand: the log step and produce passed, the
// JetStream peer passed, the MQTT step failed with mosquitto's case, the
// latency step was skipped entirely by its benchmark, and the mirror and
// footprint steps are missing.
func fixture(t *testing.T) ([]stepRun, peerRun, machine) {
	runs := []stepRun{
		{step: stepByKey(t, true, "log"), elapsed: 3 * time.Second, results: []result{
			res("BenchmarkAppend/flush=interval/partitions=1/batch=1", "MB/s", 74.0, "records/s", 397718.0, "allocs/op", 0.0),
			res("BenchmarkAppend/flush=interval/partitions=1/batch=1000", "MB/s", 680.0, "records/s", 5.4e6, "allocs/op", 0.0),
			res("BenchmarkAppend/flush=always/partitions=1/batch=1000", "MB/s", 170.0, "records/s", 1.3e6, "allocs/op", 0.0),
			res("BenchmarkRawDisk", "ns/op", 2e6, "MB/s", 340.0),
			res("BenchmarkPartitionForKey", "ns/op", 7.8),
		}},
		{step: stepByKey(t, true, "produce"), elapsed: 7 * time.Second, results: []result{
			res("BenchmarkProduce/acks=1/partitions=1", "ns/op", 630.0, "records/s", 1.5e6),
		}},
		{step: stepByKey(t, true, "latency"), elapsed: time.Second,
			skips: map[string]string{"BenchmarkEndToEndLatency": "no loopback here"}},
		{step: stepByKey(t, true, "jetstream"), elapsed: 7 * time.Second, results: []result{
			res("BenchmarkJetStreamPublish", "records/s", 250000.0),
		}},
		{step: stepByKey(t, true, "mqtt-light"), elapsed: 9 * time.Second, err: errors.New("exit status 1"),
			results: []result{res("BenchmarkMQTTIngestLight/qos=1/devices=100/broker=ferry", "msgs/s", 120000.0)},
			fails:   map[string]string{"BenchmarkMQTTIngestLight/qos=1/devices=100/broker=mosquitto": "mosquitto did not start: exit status 3"},
			tail:    []string{"--- FAIL: BenchmarkMQTTIngestLight/qos=1/devices=100/broker=mosquitto", "FAIL\tferry/testbed\t9.1s"}},
	}
	peers := peerRun{ddMBs: 400, ddCmd: "dd if=/dev/zero of=/tmp/bench/dd.raw bs=1M count=128 conv=fdatasync", loopbackMBs: 2000}
	m := machine{When: "2026-12-03 19:00 UTC", Commit: "abc1234", GoVersion: "go1.26.8 linux/amd64", CPU: "AMD EPYC", Mode: "quick",
		Cores: 2, MemGiB: 23.5, Took: 2 * time.Minute, Tools: []string{"nats-server: v2.9.10"}}
	return runs, peers, m
}

func findComp(t *testing.T, r report, what, peer string) comparison {
	t.Helper()
	for _, c := range r.comps {
		if c.What == what && strings.HasPrefix(c.Peer, peer) {
			return c
		}
	}
	t.Fatalf("no comparison %q against %q", what, peer)
	return comparison{}
}

func TestBuildReportRatiosAndMissing(t *testing.T) {
	r := buildReport(fixture(t))

	c := findComp(t, r, "Kafka produce, acks=1 (page cache), 1 partition", "nats-server")
	if !c.Ratio.OK || c.Ratio.V != 6 {
		t.Errorf("produce vs JetStream ratio %+v, want 6", c.Ratio)
	}
	c = findComp(t, r, "append, flush=interval, 1 partition, batches of 1,000 records", "raw disk from Go")
	if !c.Ratio.OK || c.Ratio.V != 2 {
		t.Errorf("append vs raw disk ratio %+v, want 2", c.Ratio)
	}
	c = findComp(t, r, "append, flush=interval, 1 partition, batches of 1,000 records", "dd")
	if !c.Ratio.OK || c.Ratio.V != 1.7 {
		t.Errorf("append vs dd ratio %+v, want 1.7", c.Ratio)
	}

	// The peer's case failed: the ferry figure stands, the peer's and the
	// ratio are missing with the failure as the reason.
	c = findComp(t, r, "MQTT QoS 1 ingest, light clients, 100 devices", "mosquitto")
	if !c.Ferry.OK || c.Ferry.V != 120000 {
		t.Errorf("ferry MQTT figure %+v", c.Ferry)
	}
	if c.Other.OK || c.Ratio.OK || c.Other.Why != "failed: mosquitto did not start: exit status 3" {
		t.Errorf("mosquitto figure %+v, ratio %+v", c.Other, c.Ratio)
	}
	// Not in the quick run at all.
	c = findComp(t, r, "Kafka produce, acks=all, 8 partitions", "nats-server")
	if c.Ferry.OK || c.Ratio.OK || c.Ferry.Why != "not in the quick run" {
		t.Errorf("acks=all/8 figure %+v, ratio %+v", c.Ferry, c.Ratio)
	}
	// Skipped by the benchmark.
	c = findComp(t, r, "Kafka end-to-end latency p99 at 10,000 records/s, lower is better", "JetStream")
	if c.Ferry.OK || c.Ferry.Why != "skipped: no loopback here" {
		t.Errorf("latency figure %+v", c.Ferry)
	}
	// The loopback peer is there, the mirror is not.
	c = findComp(t, r, "mirror edge → center, zstd default, MB/s of stored records, transfer alone", "loopback")
	if !c.Other.OK || c.Other.V != 2000 || c.Ferry.OK || c.Ratio.OK {
		t.Errorf("mirror row %+v", c)
	}

	for _, tg := range r.targets {
		switch tg.What {
		case "Kafka produce ≥ 2× JetStream's persistent publish (acks=1, 1 partition)":
			if tg.verdict() != "met" || tg.Fig.V != 6 {
				t.Errorf("%s: %+v %s", tg.What, tg.Fig, tg.verdict())
			}
		case "batched append ≥ 80% of raw sequential bandwidth (flush=interval, 1 partition, batch 1,000, against BenchmarkRawDisk)":
			if tg.verdict() != "met" {
				t.Errorf("%s: %+v %s", tg.What, tg.Fig, tg.verdict())
			}
		case "end-to-end p99 ≤ 5 ms at 10,000 records/s":
			if tg.verdict() != "—" {
				t.Errorf("%s: %+v %s", tg.What, tg.Fig, tg.verdict())
			}
		}
	}
	if len(r.appends) != 3 || r.appends[1].VsRaw.V != 2 || r.appends[1].Batch != "1000" || r.appends[1].Flush != "interval" {
		t.Errorf("append rows %+v", r.appends)
	}
}

// cells is the markdown table row that starts with first, split into cells.
func cells(t *testing.T, md, first string) []string {
	t.Helper()
	for _, l := range strings.Split(md, "\n") {
		if strings.HasPrefix(l, "| "+first+" |") {
			var out []string
			for _, c := range strings.Split(strings.Trim(l, "|"), " | ") {
				out = append(out, strings.TrimSpace(c))
			}
			return out
		}
	}
	t.Fatalf("no row %q in\n%s", first, md)
	return nil
}

func TestReportMarkdown(t *testing.T) {
	md := buildReport(fixture(t)).markdown()

	row := cells(t, md, "Kafka produce, acks=1 (page cache), 1 partition")
	if row[1] != "1,500,000 records/s" || row[3] != "250,000 records/s" || row[4] != "6.00×" {
		t.Errorf("produce row %q", row)
	}
	if !strings.Contains(row[5], `BenchmarkProduce/acks=1/partitions=1$`) || !strings.Contains(row[5], "BenchmarkJetStreamPublish") {
		t.Errorf("produce row's commands %q", row[5])
	}
	row = cells(t, md, "Kafka produce, acks=1, 8 partitions")
	if row[1] != "— (not in the quick run)" || row[4] != "—" {
		t.Errorf("missing produce row %q", row)
	}
	row = cells(t, md, "MQTT QoS 1 ingest, light clients, 100 devices")
	if row[3] != "— (failed: mosquitto did not start: exit status 3)" || row[4] != "—" {
		t.Errorf("failed MQTT row %q", row)
	}
	// A pipe in a command is escaped so the table keeps its columns.
	row = cells(t, md, "append, flush=interval, 1 partition, batches of 1,000 records")
	if len(row) != 6 || !strings.Contains(row[5], `partitions=1$\|BenchmarkRawDisk`) {
		t.Errorf("append row %q", row)
	}

	for _, want := range []string{
		"**1 of 7 steps failed**",
		"### MQTT QoS 1 ingest, light clients, ferry and mosquitto",
		"FAIL\tferry/testbed\t9.1s", // its last output lines
		"- skipped BenchmarkEndToEndLatency: no loopback here",
		"BenchmarkProduce/acks=1/partitions=1\t1\t630 ns/op\t1500000 records/s",
		"No BenchmarkEndToEndLatency results: skipped: no loopback here.",
		"| interval | 1 | 1000 | 5,400,000 | 680 | 2.00× | 1.70× | 0 |",
		"![Append throughput vs batch size (100-byte records)](charts/append-throughput.svg)",
		"- No chart latency.svg: no BenchmarkEndToEndLatency results (skipped: no loopback here)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if strings.Contains(md, "NaN") || strings.Contains(md, "Inf") {
		t.Errorf("the report has a NaN or Inf")
	}
}

// wellFormed decodes s as XML to its end.
func wellFormed(t *testing.T, name, s string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	root := ""
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: not well-formed XML: %v\n%s", name, err, s)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
			if se.Name.Space != "http://www.w3.org/2000/svg" {
				t.Errorf("%s: root namespace %q", name, se.Name.Space)
			}
		}
	}
	if root != "svg" {
		t.Errorf("%s: root element %q", name, root)
	}
	if strings.Contains(s, "NaN") || strings.Contains(s, "Inf") {
		t.Errorf("%s: NaN or Inf in the SVG", name)
	}
}

func TestChartsAreWellFormedSVG(t *testing.T) {
	runs, peers, m := fixture(t)
	runs = append(runs, stepRun{step: stepByKey(t, false, "latency"), results: []result{
		res("BenchmarkEndToEndLatency/rate=1000", "p50-ms", 0.11, "p99-ms", 0.41, "p99.9-ms", 1.3),
		res("BenchmarkEndToEndLatency/rate=10000", "p50-ms", 0.10, "p99-ms", 0.62, "p99.9-ms", 4.33),
	}})
	r := buildReport(runs, peers, m)
	if len(r.charts) != 4 {
		t.Fatalf("%d charts, want 4 (missing: %q)", len(r.charts), r.noCharts)
	}
	for _, c := range r.charts {
		wellFormed(t, c.File, c.Chart.svg())
	}
	// Names that need escaping, a log axis with a zero, a single point,
	// nothing at all.
	for _, c := range []chart{
		{Title: `a <b> & "c"`, XLabel: "x < y", YLabel: "ms & more", LogX: true, LogY: true,
			Series: []series{{Name: "p99 <& p50>", X: []float64{0, 1, 10}, Y: []float64{1, 0, 5}}},
			HLines: []series{{Name: "target & <limit>", Y: []float64{3}}, {Name: "zero", Y: []float64{0}}}},
		{Title: "one point", IntX: true, Series: []series{{Name: "a", X: []float64{1}, Y: []float64{5}}}},
		{Title: "empty"},
	} {
		wellFormed(t, c.Title, c.svg())
	}
}

func TestWriteReport(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "charts", "latency.svg")
	if err := os.MkdirAll(filepath.Dir(stale), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale, []byte("<svg/>"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := buildReport(fixture(t))
	if err := r.write(dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, reportName))
	if err != nil {
		t.Fatal(err)
	}
	if string(md) != r.markdown() {
		t.Errorf("the file differs from the report")
	}
	for _, c := range r.charts {
		b, err := os.ReadFile(filepath.Join(dir, "charts", c.File))
		if err != nil {
			t.Fatal(err)
		}
		wellFormed(t, c.File, string(b))
	}
	// This run drew no latency chart: the last run's must not stay.
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale latency.svg kept: %v", err)
	}
}

// Every figure the report looks up is produced by some step of the full
// run: a renamed benchmark or a narrowed -bench pattern shows here, not
// as a "—" in the next report.
func TestEveryFigureHasAFullStep(t *testing.T) {
	var runs []stepRun
	for _, s := range steps(false, "/tmp/bench") {
		runs = append(runs, stepRun{step: s})
	}
	ix := &index{runs: runs, peers: peerRun{ddMBs: 1, loopbackMBs: 1}}
	check := func(what string, f figure) {
		if !f.OK && f.Why != "not reported, though its step passed" && !strings.HasPrefix(f.Why, "no peer") {
			t.Errorf("%s: %q", what, f.Why)
		}
	}
	for _, c := range comparisons {
		check(c.what, c.ferry(ix))
		check(c.what+" (peer)", c.other(ix))
	}
	for _, tg := range targets {
		check(tg.what, tg.fig(ix))
	}
}

func TestFormatting(t *testing.T) {
	for _, tc := range []struct {
		f    figure
		want string
	}{
		{figure{V: 1588095.4, Unit: "records/s", OK: true}, "1,588,095 records/s"},
		{figure{V: 0.41, Unit: "p99-ms", OK: true}, "0.41 ms"},
		{figure{V: 300.6, Unit: "MB/s-moving", OK: true}, "301 MB/s"},
		{figure{V: 18.06, Unit: "MiB-bin-amd64", OK: true}, "18.1 MiB"},
		{figure{V: 8.011, Unit: "ratio-vs-stored", OK: true}, "8.01×"},
		{figure{V: 99.6, Unit: "%-of-cap", OK: true}, "99.6%"},
		{figure{V: 7.8, Unit: "ns/op", OK: true}, "7.80 ns/op"},
		{figure{Why: "not run"}, "— (not run)"},
	} {
		if got := fmtFigure(tc.f); got != tc.want {
			t.Errorf("fmtFigure(%+v) = %q, want %q", tc.f, got, tc.want)
		}
	}
	if got := fmtRatio(figure{V: 0.0019, OK: true}); got != "0.002×" {
		t.Errorf("small ratio %q", got)
	}
}
