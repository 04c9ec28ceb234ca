package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// reportName is the report's file name in the output directory; its charts
// go in charts/ beside it.
const reportName = "BENCHMARKS-generated.md"

// report is what one run measured, arranged for reading: ferry against
// each peer, the targets, the detail tables and charts, the failures and
// every raw result.
type report struct {
	m        machine
	ix       *index // the results, for the figures the tables need
	peers    peerRun
	runs     []stepRun
	comps    []comparison
	targets  []target
	appends  []appendRow
	latency  []latencyRow
	charts   []namedChart
	noCharts []string // a chart that could not be drawn, and why
}

// comparison is one row of the ferry-against-its-peers table.
type comparison struct {
	What, Peer    string
	Ferry, Other  figure
	Ratio         figure // Ferry / Other
	LowerIsBetter bool
}

// target is one of the project's goals with the figure that decides it.
type target struct {
	What   string
	Fig    figure
	AtMost bool // the figure must be at most Limit; otherwise at least
	Limit  float64
}

func (t target) verdict() string {
	switch {
	case !t.Fig.OK:
		return "—"
	case t.AtMost && t.Fig.V <= t.Limit, !t.AtMost && t.Fig.V >= t.Limit:
		return "met"
	}
	return "**not met**"
}

type appendRow struct {
	Flush, Partitions, Batch string
	Records, MBs, Allocs     figure
	VsRaw, VsDD              figure
}

type latencyRow struct {
	Rate           string
	P50, P99, P999 figure
}

type comparisonSpec struct {
	what, peer   string
	ferry, other source
	lower        bool
}

// comparisons are ferry's figures against the peer measured in the same
// run. Every row is shown; a figure the run lacks shows as "—" and why.
var comparisons = []comparisonSpec{
	{"Center cluster: produce through 3 ferry full processes on this machine (acks=all, 6 partitions)", "one ferry full alone",
		bench("BenchmarkClusterProduce/nodes=3", "records/s"), bench("BenchmarkClusterProduce/nodes=1", "records/s"), false},
	{"Replicated partitions: acks=all produce at RF 3, min ISR 2, 3 ferry full processes on this machine", "nats-server JetStream, R3 stream on a 3-node cluster",
		bench("BenchmarkReplicatedProduce/ferry=rf3", "records/s"), bench("BenchmarkReplicatedProduce/jetstream=r3", "records/s"), false},
	{"Replicated partitions: acks=all produce at RF 3, min ISR 2, 3 ferry full processes on this machine", "one ferry full alone",
		bench("BenchmarkReplicatedProduce/ferry=rf3", "records/s"), bench("BenchmarkReplicatedProduce/ferry=1node", "records/s"), false},
	{"Kafka produce, acks=1 (page cache), 1 partition", "nats-server JetStream publish, file store",
		bench("BenchmarkProduce/acks=1/partitions=1", "records/s"), bench("BenchmarkJetStreamPublish", "records/s"), false},
	{"Kafka produce, acks=1, 8 partitions", "nats-server JetStream publish, file store",
		bench("BenchmarkProduce/acks=1/partitions=8", "records/s"), bench("BenchmarkJetStreamPublish", "records/s"), false},
	{"Kafka produce, acks=all (fsynced), 1 partition", "nats-server JetStream publish, file store",
		bench("BenchmarkProduce/acks=all/partitions=1", "records/s"), bench("BenchmarkJetStreamPublish", "records/s"), false},
	{"Kafka produce, acks=all, 8 partitions", "nats-server JetStream publish, file store",
		bench("BenchmarkProduce/acks=all/partitions=8", "records/s"), bench("BenchmarkJetStreamPublish", "records/s"), false},
	{"MQTT QoS 1 ingest, light clients, 100 devices", "mosquitto",
		bench("BenchmarkMQTTIngestLight/qos=1/devices=100/broker=ferry", "msgs/s"),
		bench("BenchmarkMQTTIngestLight/qos=1/devices=100/broker=mosquitto", "msgs/s"), false},
	{"MQTT QoS 1 ingest, light clients, 1,000 devices", "mosquitto",
		bench("BenchmarkMQTTIngestLight/qos=1/devices=1000/broker=ferry", "msgs/s"),
		bench("BenchmarkMQTTIngestLight/qos=1/devices=1000/broker=mosquitto", "msgs/s"), false},
	{"MQTT QoS 1 ingest, paho clients, 100 devices", "mosquitto",
		bench("BenchmarkMQTTIngest/qos=1/devices=100/broker=ferry", "msgs/s"),
		bench("BenchmarkMQTTIngest/qos=1/devices=100/broker=mosquitto", "msgs/s"), false},
	{"MQTT QoS 1 ingest, paho clients, 1,000 devices", "mosquitto",
		bench("BenchmarkMQTTIngest/qos=1/devices=1000/broker=ferry", "msgs/s"),
		bench("BenchmarkMQTTIngest/qos=1/devices=1000/broker=mosquitto", "msgs/s"), false},
	{"MQTT QoS 0 ingest, paho clients, 100 devices", "mosquitto",
		bench("BenchmarkMQTTIngest/qos=0/devices=100/broker=ferry", "msgs/s"),
		bench("BenchmarkMQTTIngest/qos=0/devices=100/broker=mosquitto", "msgs/s"), false},
	{"MQTT QoS 0 ingest, paho clients, 1,000 devices", "mosquitto",
		bench("BenchmarkMQTTIngest/qos=0/devices=1000/broker=ferry", "msgs/s"),
		bench("BenchmarkMQTTIngest/qos=0/devices=1000/broker=mosquitto", "msgs/s"), false},
	{"MQTT QoS 1, one publish in flight per device (PUBACK awaited), 100 devices", "mosquitto",
		bench("BenchmarkMQTTOneInFlight/devices=100/broker=ferry", "msgs/s"),
		bench("BenchmarkMQTTOneInFlight/devices=100/broker=mosquitto", "msgs/s"), false},
	{"MQTT QoS 1, one publish in flight per device, 1,000 devices", "mosquitto",
		bench("BenchmarkMQTTOneInFlight/devices=1000/broker=ferry", "msgs/s"),
		bench("BenchmarkMQTTOneInFlight/devices=1000/broker=mosquitto", "msgs/s"), false},
	{"MQTT broker CPU-seconds per million QoS 1 messages, one in flight, 100 devices, lower is better", "mosquitto",
		bench("BenchmarkMQTTOneInFlight/devices=100/broker=ferry", "broker-cpu-s/Mmsg"),
		bench("BenchmarkMQTTOneInFlight/devices=100/broker=mosquitto", "broker-cpu-s/Mmsg"), true},
	{"MQTT broker CPU-seconds per million QoS 1 messages, one in flight, 1,000 devices, lower is better", "mosquitto",
		bench("BenchmarkMQTTOneInFlight/devices=1000/broker=ferry", "broker-cpu-s/Mmsg"),
		bench("BenchmarkMQTTOneInFlight/devices=1000/broker=mosquitto", "broker-cpu-s/Mmsg"), true},
	{"MQTT idle devices (MQTT_BENCH_IDLE, 10,000 by default): RSS after 10 s idle, lower is better", "mosquitto",
		bench("BenchmarkMQTTIdleMemory/broker=ferry", "MiB-rss-idle10s"),
		bench("BenchmarkMQTTIdleMemory/broker=mosquitto", "MiB-rss-idle10s"), true},
	{"append, flush=interval, 1 partition, batches of 1,000 records", "raw disk from Go (BenchmarkRawDisk)",
		bench("BenchmarkAppend/flush=interval/partitions=1/batch=1000", "MB/s"), bench("BenchmarkRawDisk", "MB/s"), false},
	{"append, flush=always, 1 partition, batches of 1,000 records", "raw disk from Go (BenchmarkRawDisk)",
		bench("BenchmarkAppend/flush=always/partitions=1/batch=1000", "MB/s"), bench("BenchmarkRawDisk", "MB/s"), false},
	{"append, flush=interval, 1 partition, batches of 1,000 records", "dd, 1 MiB blocks, fdatasync",
		bench("BenchmarkAppend/flush=interval/partitions=1/batch=1000", "MB/s"), ddSource, false},
	{"mirror edge → center, zstd default, MB/s of stored records, transfer alone", "loopback TCP, one stream, uncompressed",
		bench("BenchmarkMirror/zstd=default", "MB/s-moving"), loopbackSource, false},
	{"mirror edge → center, zstd default, from the edge's restart", "loopback TCP, one stream, uncompressed",
		bench("BenchmarkMirror/zstd=default", "MB/s"), loopbackSource, false},
	{"mirror edge → center, zstd fastest, transfer alone", "loopback TCP, one stream, uncompressed",
		bench("BenchmarkMirror/zstd=fastest", "MB/s-moving"), loopbackSource, false},
	{"Kafka end-to-end latency p99 at 10,000 records/s, lower is better", "JetStream",
		bench("BenchmarkEndToEndLatency/rate=10000", "p99-ms"), none("no peer latency benchmark yet"), true},
	{"broker CPU-seconds per million batched records (Kafka acks=all, 100 bytes), lower is better", "nats-server JetStream async publish, file store",
		bench("BenchmarkProduceCPU/broker=ferry", "cpu-s/Mrec"), bench("BenchmarkProduceCPU/broker=jetstream", "cpu-s/Mrec"), true},
}

type targetSpec struct {
	what   string
	fig    source
	atMost bool
	limit  float64
}

// targets are the goals of the project's issues, as BENCHMARKS.md
// states them.
var targets = []targetSpec{
	{"Kafka produce with acks=1 and batching ≥ 1,000,000 records/s (1 partition)",
		bench("BenchmarkProduce/acks=1/partitions=1", "records/s"), false, 1e6},
	{"Kafka produce ≥ 2× JetStream's persistent publish (acks=1, 1 partition)",
		ratioOf(bench("BenchmarkProduce/acks=1/partitions=1", "records/s"), bench("BenchmarkJetStreamPublish", "records/s")), false, 2},
	{"MQTT QoS 1 ingest into the durable log ≥ mosquitto's QoS 1 rate (light clients, 100 devices)",
		ratioOf(bench("BenchmarkMQTTIngestLight/qos=1/devices=100/broker=ferry", "msgs/s"),
			bench("BenchmarkMQTTIngestLight/qos=1/devices=100/broker=mosquitto", "msgs/s")), false, 1},
	{"MQTT QoS 1 ingest ≥ mosquitto's (light clients, 1,000 devices)",
		ratioOf(bench("BenchmarkMQTTIngestLight/qos=1/devices=1000/broker=ferry", "msgs/s"),
			bench("BenchmarkMQTTIngestLight/qos=1/devices=1000/broker=mosquitto", "msgs/s")), false, 1},
	{"MQTT QoS 1 with one publish in flight per device, acknowledged once durable, ≥ 1.5× mosquitto's rate (100 devices)",
		ratioOf(bench("BenchmarkMQTTOneInFlight/devices=100/broker=ferry", "msgs/s"),
			bench("BenchmarkMQTTOneInFlight/devices=100/broker=mosquitto", "msgs/s")), false, 1.5},
	{"MQTT QoS 1 with one publish in flight per device ≥ 1.5× mosquitto's rate (1,000 devices)",
		ratioOf(bench("BenchmarkMQTTOneInFlight/devices=1000/broker=ferry", "msgs/s"),
			bench("BenchmarkMQTTOneInFlight/devices=1000/broker=mosquitto", "msgs/s")), false, 1.5},
	{"MQTT broker CPU per QoS 1 message ≤ 1.25× mosquitto's (one in flight, 100 devices)",
		ratioOf(bench("BenchmarkMQTTOneInFlight/devices=100/broker=ferry", "broker-cpu-s/Mmsg"),
			bench("BenchmarkMQTTOneInFlight/devices=100/broker=mosquitto", "broker-cpu-s/Mmsg")), true, 1.25},
	{"MQTT broker CPU per QoS 1 message ≤ 1.25× mosquitto's (one in flight, 1,000 devices)",
		ratioOf(bench("BenchmarkMQTTOneInFlight/devices=1000/broker=ferry", "broker-cpu-s/Mmsg"),
			bench("BenchmarkMQTTOneInFlight/devices=1000/broker=mosquitto", "broker-cpu-s/Mmsg")), true, 1.25},
	{"batched append ≥ 80% of raw sequential bandwidth (flush=interval, 1 partition, batch 1,000, against BenchmarkRawDisk)",
		ratioOf(bench("BenchmarkAppend/flush=interval/partitions=1/batch=1000", "MB/s"), bench("BenchmarkRawDisk", "MB/s")), false, 0.8},
	{"end-to-end p99 ≤ 5 ms at 10,000 records/s",
		bench("BenchmarkEndToEndLatency/rate=10000", "p99-ms"), true, 5},
	{"Kafka: no frame ≤ 64 KiB costs over 1 ms to decode or refuse (worst hostile frame, every key and version)",
		scaled(bench("BenchmarkDecodeHostile", "worst-ns/frame"), 1e-6, "worst-ms"), true, 1},
	{"reopen of a 1,001-segment log under 1 s",
		scaled(bench("BenchmarkReopen", "ns/op"), 1e-9, "s"), true, 1},
	{"mirror: ≥ 5× fewer bytes on the wire than stored, zstd default",
		bench("BenchmarkMirror/zstd=default", "ratio-vs-stored"), false, 5},
	{"mirror: ≥ 200 MB/s uncapped on loopback, zstd default, transfer alone",
		bench("BenchmarkMirror/zstd=default", "MB/s-moving"), false, 200},
	{"mirror over a capped link: ≥ 95% of the cap carrying records",
		bench("BenchmarkMirrorCappedLink", "%-of-cap"), false, 95},
	{"mirror live on a clean link (2,200 records/s into 4 partitions, two producers): no chunk refused by the center",
		bench("BenchmarkMirrorLive", "refused-chunks"), true, 0},
	{"mirror catching up a backlog, zstd default: no chunk refused by the center",
		bench("BenchmarkMirror/zstd=default", "refused-chunks"), true, 0},
	{"end-to-end p99 ≤ 3 ms at 10,000 records/s, acks=all, default topic, consumer fetch wait 500 ms (ferry edge process)",
		bench("BenchmarkEndToEndAcksAll/rate=10000", "p99-ms"), true, 3},
	{"acks=all single-record delivery ≤ 2 ms on average (linger 0, one record at a time, default topic)",
		bench("BenchmarkAcksAllDelivery", "avg-ms"), true, 2},
	{"broker CPU ≤ 0.3 CPU-seconds per million batched Kafka records (acks=all)",
		bench("BenchmarkProduceCPU/broker=ferry", "cpu-s/Mrec"), true, 0.3},
	{"binary ≤ 30 MiB (linux/amd64, stripped, static)",
		bench("BenchmarkFootprint", "MiB-bin-amd64"), true, 30},
	{"idle RSS of ferry edge ≤ 30 MiB",
		bench("BenchmarkFootprint", "MiB-rss-idle"), true, 30},
	{"RSS with 10,000 idle MQTT devices ≤ 150 MiB",
		bench("BenchmarkFootprint", "MiB-rss-10000dev"), true, 150},
	{"4 parallel 1 GiB decompression bombs: ferry edge's peak RSS < 200 MiB",
		bench("BenchmarkDecompressionBombs", "MiB-hwm-4bombs"), true, 200},
}

// ratioOf is a / b with both commands.
func ratioOf(a, b source) source {
	return func(ix *index) figure {
		fa, fb := a(ix), b(ix)
		r := ratio(fa, fb)
		r.Cmd = joinCmds(fa.Cmd, fb.Cmd)
		return r
	}
}

func joinCmds(cmds ...string) string {
	var out []string
	for _, c := range cmds {
		if c == "" {
			continue
		}
		dup := false
		for _, o := range out {
			dup = dup || o == c
		}
		if !dup {
			out = append(out, c)
		}
	}
	return strings.Join(out, "\n")
}

// buildReport arranges what the steps and the peers measured.
func buildReport(runs []stepRun, peers peerRun, m machine) report {
	ix := &index{runs: runs, peers: peers, quick: m.Mode == "quick"}
	r := report{m: m, ix: ix, peers: peers, runs: runs}
	for _, c := range comparisons {
		f, o := c.ferry(ix), c.other(ix)
		r.comps = append(r.comps, comparison{What: c.what, Peer: c.peer, Ferry: f, Other: o, Ratio: ratio(f, o), LowerIsBetter: c.lower})
	}
	for _, t := range targets {
		r.targets = append(r.targets, target{What: t.what, Fig: t.fig(ix), AtMost: t.atMost, Limit: t.limit})
	}
	raw, dd := ix.bench("BenchmarkRawDisk", "MB/s"), ix.dd()
	for _, res := range resultsUnder(runs, "BenchmarkAppend/") {
		p := params(res.Name)
		mbs := ix.bench(res.Name, "MB/s")
		r.appends = append(r.appends, appendRow{Flush: p["flush"], Partitions: p["partitions"], Batch: p["batch"],
			Records: ix.bench(res.Name, "records/s"), MBs: mbs, Allocs: ix.bench(res.Name, "allocs/op"),
			VsRaw: ratio(mbs, raw), VsDD: ratio(mbs, dd)})
	}
	for _, res := range resultsUnder(runs, "BenchmarkEndToEndLatency/") {
		r.latency = append(r.latency, latencyRow{Rate: params(res.Name)["rate"],
			P50: ix.bench(res.Name, "p50-ms"), P99: ix.bench(res.Name, "p99-ms"), P999: ix.bench(res.Name, "p99.9-ms")})
	}
	r.charts, r.noCharts = buildCharts(ix)
	return r
}

// resultsUnder are the results whose name starts with prefix, in the
// order they were reported.
func resultsUnder(runs []stepRun, prefix string) []result {
	var out []result
	for _, r := range runs {
		for _, res := range r.results {
			if strings.HasPrefix(res.Name, prefix) {
				out = append(out, res)
			}
		}
	}
	return out
}

// params are a sub-benchmark's key=value levels.
func params(name string) map[string]string {
	p := map[string]string{}
	for _, lv := range strings.Split(name, "/") {
		if k, v, ok := strings.Cut(lv, "="); ok {
			p[k] = v
		}
	}
	return p
}

// write writes the report and its charts into dir, removing charts of an
// earlier run that this one could not draw.
func (r report) write(dir string) error {
	cdir := filepath.Join(dir, "charts")
	if err := os.MkdirAll(cdir, 0o755); err != nil {
		return err
	}
	drawn := map[string]bool{}
	for _, c := range r.charts {
		drawn[c.File] = true
		if err := os.WriteFile(filepath.Join(cdir, c.File), []byte(c.Chart.svg()), 0o644); err != nil {
			return err
		}
	}
	for _, name := range chartFiles {
		if !drawn[name] {
			if err := os.Remove(filepath.Join(cdir, name)); err != nil && !os.IsNotExist(err) {
				return err
			}
		}
	}
	return os.WriteFile(filepath.Join(dir, reportName), []byte(r.markdown()), 0o644)
}

// markdown is the report as GitHub-flavoured markdown.
func (r report) markdown() string {
	var b strings.Builder
	m := r.m
	fmt.Fprintf(&b, "# ferry benchmarks (generated)\n\n")
	fmt.Fprintf(&b, "Written by `go run ./testbed/cmd/benchreport` (`make bench`; `make bench-quick` for the reduced run) "+
		"on %s, a %s run that took %s. The next run overwrites this file; the hand-written analysis is "+
		"[BENCHMARKS.md](BENCHMARKS.md). Every peer figure was measured in the same run on the same machine. "+
		"A figure the run did not produce shows as \"—\" with the reason.\n\n", m.When, m.Mode, m.Took.Round(time.Second))
	if m.Mode == "quick" {
		b.WriteString("**Quick run**: fewer cases, shorter runs and smaller loads than `make bench`; " +
			"its figures are a smoke test, not the project's numbers.\n\n")
	}
	failed := r.failedSteps()
	switch {
	case len(failed) == 0 && r.peers.ddErr == nil && r.peers.loopErr == nil:
		fmt.Fprintf(&b, "All %d steps passed.\n\n", len(r.runs)+2)
	default:
		fmt.Fprintf(&b, "**%d of %d steps failed**: see [Failed steps](#failed-steps).\n\n", len(failed)+countErrs(r.peers.ddErr, r.peers.loopErr), len(r.runs)+2)
	}
	b.WriteString("| machine | |\n|---|---|\n")
	fmt.Fprintf(&b, "| commit | `%s` |\n", orDash(m.Commit))
	fmt.Fprintf(&b, "| Go | %s |\n", cell(m.GoVersion))
	fmt.Fprintf(&b, "| CPU | %s, %d cores |\n", cell(orDash(m.CPU)), m.Cores)
	fmt.Fprintf(&b, "| memory | %.1f GiB |\n", m.MemGiB)
	fmt.Fprintf(&b, "| peers | %s |\n\n", cell(strings.Join(m.Tools, "; ")))

	b.WriteString("## ferry against its peers\n\n")
	b.WriteString("| what | ferry | peer | figure | ferry / peer | commands |\n|---|---|---|---|---|---|\n")
	for _, c := range r.comps {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", cell(c.What), cell(fmtFigure(c.Ferry)), cell(c.Peer),
			cell(fmtFigure(c.Other)), fmtRatio(c.Ratio), cmdCell(c.Ferry.Cmd, c.Other.Cmd))
	}
	b.WriteString("\nA ratio above 1 means ferry is faster, except in rows marked \"lower is better\".\n\n")

	b.WriteString("## Targets\n\n| target | figure | verdict | command |\n|---|---|---|---|\n")
	for _, t := range r.targets {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", cell(t.What), cell(fmtFigure(t.Fig)), t.verdict(), cmdCell(t.Fig.Cmd))
	}
	b.WriteString("\n")

	r.writeAppend(&b)
	r.writeLatency(&b)

	b.WriteString("## Charts\n\n")
	for _, c := range r.charts {
		fmt.Fprintf(&b, "![%s](charts/%s)\n\n%s\n\n", c.Chart.Title, c.File, c.About)
	}
	for _, s := range r.noCharts {
		fmt.Fprintf(&b, "- No chart %s\n", s)
	}
	if len(r.noCharts) > 0 {
		b.WriteString("\n")
	}

	b.WriteString("## Failed steps\n\n")
	if len(failed) == 0 && r.peers.ddErr == nil && r.peers.loopErr == nil {
		b.WriteString("None.\n\n")
	}
	if r.peers.ddErr != nil {
		fmt.Fprintf(&b, "### Raw disk (dd)\n\n```text\n%s\n```\n\n", strings.TrimSpace(r.peers.ddErr.Error()))
	}
	if r.peers.loopErr != nil {
		fmt.Fprintf(&b, "### Loopback TCP\n\n```text\n%s\n```\n\n", strings.TrimSpace(r.peers.loopErr.Error()))
	}
	for _, s := range failed {
		fmt.Fprintf(&b, "### %s\n\n`%s` failed after %s: %s\n\n", s.step.Title, s.step.command(), s.elapsed.Round(time.Second), firstLine(s.err.Error()))
		if len(s.tail) > 0 {
			fmt.Fprintf(&b, "Its last output lines:\n\n```text\n%s\n```\n\n", strings.Join(s.tail, "\n"))
		}
	}

	r.writeRaw(&b)
	return b.String()
}

func (r report) failedSteps() []stepRun {
	var out []stepRun
	for _, s := range r.runs {
		if s.err != nil {
			out = append(out, s)
		}
	}
	return out
}

func countErrs(errs ...error) int {
	n := 0
	for _, e := range errs {
		if e != nil {
			n++
		}
	}
	return n
}

func (r report) writeAppend(b *strings.Builder) {
	b.WriteString("## Storage engine: append, 100-byte records, 4 writers per partition\n\n")
	if len(r.appends) == 0 {
		why, _ := r.ix.missing("BenchmarkAppend/flush=interval/partitions=1/batch=1")
		fmt.Fprintf(b, "No BenchmarkAppend results: %s.\n\n", why)
		return
	}
	raw, dd := r.ix.bench("BenchmarkRawDisk", "MB/s"), r.ix.dd()
	fmt.Fprintf(b, "Raw disk: %s from Go (BenchmarkRawDisk), %s with `%s`.\n\n", fmtFigure(raw), fmtFigure(dd), orDash(r.peers.ddCmd))
	b.WriteString("| flush | partitions | batch | records/s | MB/s | vs raw disk from Go | vs dd | allocs/op |\n|---|---|---|---|---|---|---|---|\n")
	for _, a := range r.appends {
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", a.Flush, a.Partitions, a.Batch,
			fmtValue(a.Records), fmtValue(a.MBs), fmtRatio(a.VsRaw), fmtRatio(a.VsDD), fmtValue(a.Allocs))
	}
	fmt.Fprintf(b, "\nCommand: %s\n\n", cmdCell(r.appends[0].MBs.Cmd))
}

func (r report) writeLatency(b *strings.Builder) {
	b.WriteString("## Kafka end-to-end latency (acks=1, paced every millisecond, 2 s per rate)\n\n")
	if len(r.latency) == 0 {
		why, _ := r.ix.missing("BenchmarkEndToEndLatency/rate=1000")
		fmt.Fprintf(b, "No BenchmarkEndToEndLatency results: %s.\n\n", why)
		return
	}
	b.WriteString("| records/s | p50 | p99 | p99.9 |\n|---|---|---|---|\n")
	for _, l := range r.latency {
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", fmtInt(l.Rate), fmtFigure(l.P50), fmtFigure(l.P99), fmtFigure(l.P999))
	}
	fmt.Fprintf(b, "\nCommand: %s\n\n", cmdCell(r.latency[0].P99.Cmd))
}

// writeRaw lists every result of every step in go test's own format
// (benchstat reads it), with the peers' figures first.
func (r report) writeRaw(b *strings.Builder) {
	b.WriteString("## All results\n\n### Peers measured by benchreport\n\n")
	fmt.Fprintf(b, "- raw disk: %s — `%s`\n", fmtFigure(r.ix.dd()), orDash(r.peers.ddCmd))
	fmt.Fprintf(b, "- loopback TCP: %s — %s\n\n", fmtFigure(r.ix.loopback()), cmdCell(loopbackCmd))
	for _, s := range r.runs {
		status := fmt.Sprintf("passed in %s, %s", s.elapsed.Round(time.Second), plural(len(s.results), "result"))
		if s.err != nil {
			status = fmt.Sprintf("**failed** after %s (%s before it did)", s.elapsed.Round(time.Second), plural(len(s.results), "result"))
		}
		fmt.Fprintf(b, "### %s\n\n`%s`: %s.\n\n", s.step.Title, s.step.command(), status)
		for _, name := range sortedKeys(s.skips) {
			fmt.Fprintf(b, "- skipped %s: %s\n", name, s.skips[name])
		}
		for _, name := range sortedKeys(s.fails) {
			fmt.Fprintf(b, "- failed %s: %s\n", name, s.fails[name])
		}
		if len(s.skips)+len(s.fails) > 0 {
			b.WriteString("\n")
		}
		if len(s.results) == 0 {
			continue
		}
		b.WriteString("```text\n")
		for _, res := range s.results {
			b.WriteString(res.line())
			b.WriteString("\n")
		}
		b.WriteString("```\n\n")
	}
}

// line is the result as go test prints it, without the -GOMAXPROCS
// suffix.
func (res result) line() string {
	parts := []string{res.Name, strconv.FormatInt(res.Iters, 10)}
	for _, u := range res.Units {
		parts = append(parts, strconv.FormatFloat(res.Metrics[u], 'f', -1, 64)+" "+u)
	}
	return strings.Join(parts, "\t")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// fmtFigure is "1,588,095 records/s", or "— (why)".
func fmtFigure(f figure) string {
	if !f.OK {
		if f.Why == "" {
			return "—"
		}
		return "— (" + f.Why + ")"
	}
	switch u := displayUnit(f.Unit); u {
	case "":
		return fmtNum(f.V)
	case "×", "%":
		return fmtNum(f.V) + u
	default:
		return fmtNum(f.V) + " " + u
	}
}

// displayUnit is how a benchmark's unit reads beside a number: "p99-ms"
// is "ms", "MiB-bin-amd64" "MiB", "MB/s-moving" "MB/s", a ratio "×".
func displayUnit(u string) string {
	switch {
	case u == "×" || strings.HasPrefix(u, "ratio"):
		return "×"
	case strings.HasPrefix(u, "%"):
		return "%"
	case strings.HasSuffix(u, "-ms"):
		return "ms"
	case strings.HasPrefix(u, "MiB-"):
		return "MiB"
	case strings.HasPrefix(u, "MB/s-"):
		return "MB/s"
	}
	return u
}

// fmtValue is the number alone, for a table whose header names the unit.
func fmtValue(f figure) string {
	if !f.OK {
		return "—"
	}
	return fmtNum(f.V)
}

func fmtRatio(f figure) string {
	if !f.OK {
		return "—"
	}
	switch {
	case f.V >= 10:
		return fmt.Sprintf("%.1f×", f.V)
	case f.V < 0.01:
		return fmt.Sprintf("%.3f×", f.V)
	}
	return fmt.Sprintf("%.2f×", f.V)
}

// fmtNum is a figure to about three significant digits, with thousands
// separators from 1,000 on.
func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1000:
		return fmtInt(strconv.FormatInt(int64(math.Round(v)), 10))
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	case a == 0:
		return "0"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// fmtInt puts thousands separators in a decimal integer; anything else
// is returned as it is.
func fmtInt(s string) string {
	neg := strings.HasPrefix(s, "-")
	d := strings.TrimPrefix(s, "-")
	if _, err := strconv.ParseUint(d, 10, 64); err != nil {
		return s
	}
	var b strings.Builder
	for i, c := range d {
		if i > 0 && (len(d)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// cell makes s safe inside a table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

// cmdCell is each distinct command as code, one per line of the cell.
func cmdCell(cmds ...string) string {
	all := joinCmds(cmds...)
	if all == "" {
		return "—"
	}
	var out []string
	for _, c := range strings.Split(all, "\n") {
		if strings.HasPrefix(c, "go run ./testbed/cmd/benchreport (") {
			// The loopback peer: the command and what it does.
			i := strings.Index(c, " (")
			out = append(out, "`"+cell(c[:i])+"`"+cell(c[i:]))
			continue
		}
		out = append(out, "`"+cell(c)+"`")
	}
	return strings.Join(out, "<br>")
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
