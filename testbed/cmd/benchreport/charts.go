package main

import (
	"fmt"
	"sort"
	"strconv"
)

// namedChart is a chart with its file name in charts/ and a line saying
// what it shows.
type namedChart struct {
	File  string
	About string
	Chart chart
}

// chartFiles are every chart benchreport draws; write removes those a run
// could not draw, so no stale chart stays beside a new report.
var chartFiles = []string{"append-throughput.svg", "latency.svg", "produce.svg", "mqtt-ingest.svg"}

// buildCharts draws what the run's results allow, and says why for the
// charts it cannot draw.
func buildCharts(ix *index) ([]namedChart, []string) {
	var charts []namedChart
	var missing []string
	for _, f := range []func(*index) (namedChart, string){appendChart, latencyChart, produceChart, mqttChart} {
		c, why := f(ix)
		if why != "" {
			missing = append(missing, fmt.Sprintf("%s: %s", c.File, why))
			continue
		}
		charts = append(charts, c)
	}
	return charts, missing
}

// seriesSet collects points by series name, keeping the order in which
// series first appear.
type seriesSet struct {
	order []string
	by    map[string]*series
}

func (s *seriesSet) add(name string, x, y float64) {
	if s.by == nil {
		s.by = map[string]*series{}
	}
	se, ok := s.by[name]
	if !ok {
		se = &series{Name: name}
		s.by[name] = se
		s.order = append(s.order, name)
	}
	se.X = append(se.X, x)
	se.Y = append(se.Y, y)
}

// list is the series in order, each one's points sorted by x.
func (s *seriesSet) list() []series {
	var out []series
	for _, n := range s.order {
		se := *s.by[n]
		idx := make([]int, len(se.X))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return se.X[idx[a]] < se.X[idx[b]] })
		x, y := make([]float64, len(idx)), make([]float64, len(idx))
		for i, j := range idx {
			x[i], y[i] = se.X[j], se.Y[j]
		}
		out = append(out, series{Name: se.Name, X: x, Y: y})
	}
	return out
}

func atof(s string) (float64, bool) {
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil
}

// appendChart: append MB/s against the batch size, one line per flush
// policy and partition count, the raw disk as reference lines. The records
// are always 100 bytes; the batch is what varies the size of a write.
func appendChart(ix *index) (namedChart, string) {
	nc := namedChart{File: "append-throughput.svg",
		About: "Append throughput (MB/s, log scale) against records per append, 100-byte records, 4 writers per partition " +
			"(BenchmarkAppend); dashed: the raw disk measured in the same run (BenchmarkRawDisk and dd)."}
	var set seriesSet
	for _, res := range resultsUnder(ix.runs, "BenchmarkAppend/") {
		p := params(res.Name)
		batch, ok1 := atof(p["batch"])
		mbs, ok2 := res.Metrics["MB/s"]
		if !ok1 || !ok2 {
			continue
		}
		set.add(fmt.Sprintf("%s, p=%s", p["flush"], p["partitions"]), batch, mbs)
	}
	if len(set.order) == 0 {
		why, _ := ix.missing("BenchmarkAppend/flush=interval/partitions=1/batch=1")
		return nc, "no BenchmarkAppend results (" + why + ")"
	}
	nc.Chart = chart{Title: "Append throughput vs batch size (100-byte records)", XLabel: "records per append",
		YLabel: "MB/s", LogX: true, LogY: true, Series: set.list()}
	if f := ix.bench("BenchmarkRawDisk", "MB/s"); f.OK {
		nc.Chart.HLines = append(nc.Chart.HLines, series{Name: "raw disk, Go: " + fmtNum(f.V) + " MB/s", Y: []float64{f.V}})
	}
	if f := ix.dd(); f.OK {
		nc.Chart.HLines = append(nc.Chart.HLines, series{Name: "dd: " + fmtNum(f.V) + " MB/s", Y: []float64{f.V}})
	}
	return nc, ""
}

// latencyChart: the end-to-end percentiles against the produce rate.
func latencyChart(ix *index) (namedChart, string) {
	nc := namedChart{File: "latency.svg",
		About: "Kafka end-to-end latency, produce to consume, at fixed rates (BenchmarkEndToEndLatency, acks=1, 2 s per rate); " +
			"dashed: the target for p99 at 10,000 records/s."}
	var set seriesSet
	for _, res := range resultsUnder(ix.runs, "BenchmarkEndToEndLatency/") {
		rate, ok := atof(params(res.Name)["rate"])
		if !ok {
			continue
		}
		for _, u := range []string{"p50-ms", "p99-ms", "p99.9-ms"} {
			if v, ok := res.Metrics[u]; ok {
				set.add(u[:len(u)-3], rate, v)
			}
		}
	}
	if len(set.order) == 0 {
		why, _ := ix.missing("BenchmarkEndToEndLatency/rate=10000")
		return nc, "no BenchmarkEndToEndLatency results (" + why + ")"
	}
	nc.Chart = chart{Title: "End-to-end latency vs rate (Kafka, acks=1)", XLabel: "records/s", YLabel: "ms",
		LogX: true, Series: set.list(), HLines: []series{{Name: "target: p99 ≤ 5 ms", Y: []float64{5}}}}
	return nc, ""
}

// produceChart: Kafka produce records/s against partitions, JetStream's
// publish rate as the reference line.
func produceChart(ix *index) (namedChart, string) {
	nc := namedChart{File: "produce.svg",
		About: "Kafka produce of 100-byte records with franz-go's default batching (BenchmarkProduce) against partitions; " +
			"dashed: nats-server JetStream's persistent publish in the same run (BenchmarkJetStreamPublish)."}
	var set seriesSet
	for _, res := range resultsUnder(ix.runs, "BenchmarkProduce/") {
		p := params(res.Name)
		parts, ok := atof(p["partitions"])
		v, ok2 := res.Metrics["records/s"]
		if ok && ok2 {
			set.add("ferry acks="+p["acks"], parts, v)
		}
	}
	if len(set.order) == 0 {
		why, _ := ix.missing("BenchmarkProduce/acks=1/partitions=1")
		return nc, "no BenchmarkProduce results (" + why + ")"
	}
	nc.Chart = chart{Title: "Kafka produce vs JetStream publish (100-byte records)", XLabel: "partitions",
		YLabel: "records/s", IntX: true, Series: set.list()}
	if f := ix.bench("BenchmarkJetStreamPublish", "records/s"); f.OK {
		nc.Chart.HLines = []series{{Name: "JetStream: " + fmtNum(f.V), Y: []float64{f.V}}}
	}
	return nc, ""
}

// mqttChart: MQTT ingest msgs/s against connected devices, ferry and
// mosquitto, per client and QoS.
func mqttChart(ix *index) (namedChart, string) {
	nc := namedChart{File: "mqtt-ingest.svg",
		About: "MQTT publishes per second into ferry (durable log) and mosquitto (nothing stored) against devices, " +
			"each device its own connection with 16 QoS 1 publishes in flight (BenchmarkMQTTIngestLight: raw pre-encoded clients; " +
			"BenchmarkMQTTIngest: paho clients, QoS 0 and 1)."}
	var set seriesSet
	add := func(prefix, client string) {
		for _, res := range resultsUnder(ix.runs, prefix) {
			p := params(res.Name)
			n, ok := atof(p["devices"])
			v, ok2 := res.Metrics["msgs/s"]
			if ok && ok2 {
				set.add(fmt.Sprintf("%s QoS %s %s", p["broker"], p["qos"], client), n, v)
			}
		}
	}
	add("BenchmarkMQTTIngestLight/", "light")
	add("BenchmarkMQTTIngest/", "paho")
	if len(set.order) == 0 {
		why, _ := ix.missing("BenchmarkMQTTIngestLight/qos=1/devices=100/broker=ferry")
		return nc, "no MQTT ingest results (" + why + ")"
	}
	nc.Chart = chart{Title: "MQTT ingest: ferry vs mosquitto", XLabel: "devices (one connection each)", YLabel: "msgs/s",
		LogX: true, Series: set.list()}
	return nc, ""
}
