package main

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Lines as `go test -bench` printed them on the 2-core test machine
// (benchreport's quick run, 2026-12-03).
const (
	lineAppend    = "BenchmarkAppend/flush=interval/partitions=1/batch=1000-2      \t    1174\t    111706 ns/op\t1127.95 MB/s\t   8952185 records/s\t     491 B/op\t       0 allocs/op"
	linePartition = "BenchmarkPartitionForKey-2                                    \t21398373\t         5.615 ns/op\t       0 B/op\t       0 allocs/op"
	lineLatency   = "BenchmarkEndToEndLatency/rate=10000-2        \t       1\t2178883317 ns/op\t         0.1790 p50-ms\t         1.176 p99-ms\t         3.137 p99.9-ms"
	lineLight     = "BenchmarkMQTTIngestLight/qos=1/devices=100/broker=ferry-2         \t       1\t2829452131 ns/op\t       141.6 broker-cpu-%\t        14.10 broker-cpu-µs/msg\t    100466 msgs/s"
	lineFootprint = "BenchmarkFootprint-2   \t       1\t263814269075 ns/op\t        18.06 MiB-bin-amd64\t        16.63 MiB-bin-arm64\t        17.00 MiB-bin-armv7\t        25.37 MiB-rss-200dev\t         3.031 MiB-rss-anon-idle\t        14.79 MiB-rss-idle"
)

func TestParseBenchLine(t *testing.T) {
	for _, tc := range []struct {
		line  string
		name  string
		iters int64
		want  map[string]float64
		units []string
	}{
		{lineAppend, "BenchmarkAppend/flush=interval/partitions=1/batch=1000", 1174,
			map[string]float64{"ns/op": 111706, "MB/s": 1127.95, "records/s": 8952185, "B/op": 491, "allocs/op": 0},
			[]string{"ns/op", "MB/s", "records/s", "B/op", "allocs/op"}},
		{linePartition, "BenchmarkPartitionForKey", 21398373,
			map[string]float64{"ns/op": 5.615, "B/op": 0, "allocs/op": 0}, []string{"ns/op", "B/op", "allocs/op"}},
		{lineLatency, "BenchmarkEndToEndLatency/rate=10000", 1,
			map[string]float64{"ns/op": 2178883317, "p50-ms": 0.179, "p99-ms": 1.176, "p99.9-ms": 3.137},
			[]string{"ns/op", "p50-ms", "p99-ms", "p99.9-ms"}},
		{lineLight, "BenchmarkMQTTIngestLight/qos=1/devices=100/broker=ferry", 1,
			map[string]float64{"ns/op": 2829452131, "broker-cpu-%": 141.6, "broker-cpu-µs/msg": 14.1, "msgs/s": 100466},
			[]string{"ns/op", "broker-cpu-%", "broker-cpu-µs/msg", "msgs/s"}},
		{lineFootprint, "BenchmarkFootprint", 1,
			map[string]float64{"ns/op": 263814269075, "MiB-bin-amd64": 18.06, "MiB-bin-arm64": 16.63, "MiB-bin-armv7": 17,
				"MiB-rss-200dev": 25.37, "MiB-rss-anon-idle": 3.031, "MiB-rss-idle": 14.79},
			[]string{"ns/op", "MiB-bin-amd64", "MiB-bin-arm64", "MiB-bin-armv7", "MiB-rss-200dev", "MiB-rss-anon-idle", "MiB-rss-idle"}},
		// GOMAXPROCS=1: no suffix.
		{"BenchmarkRawDisk \t     100\t   2127552 ns/op\t 492.95 MB/s", "BenchmarkRawDisk", 100,
			map[string]float64{"ns/op": 2127552, "MB/s": 492.95}, []string{"ns/op", "MB/s"}},
	} {
		r, ok := parseBenchLine(tc.line)
		if !ok {
			t.Errorf("%q: not parsed", tc.line)
			continue
		}
		if r.Name != tc.name || r.Iters != tc.iters {
			t.Errorf("%q: name %q iters %d, want %q %d", tc.line, r.Name, r.Iters, tc.name, tc.iters)
		}
		if !reflect.DeepEqual(r.Metrics, tc.want) {
			t.Errorf("%s: metrics %v, want %v", tc.name, r.Metrics, tc.want)
		}
		if !reflect.DeepEqual(r.Units, tc.units) {
			t.Errorf("%s: units %v, want %v", tc.name, r.Units, tc.units)
		}
	}
}

func TestParseBenchLineRejects(t *testing.T) {
	for _, line := range []string{
		"BenchmarkAppend/flush=interval/partitions=1/batch=1", // the name alone, as -json prints it first
		"BenchmarkRawDisk-2           \t",                     // the name before its figures arrive
		"    footprint_bench_test.go:147: binary linux/amd64 (stripped, static): 18.1 MiB (target ≤ 30 MiB: met)",
		"      BenchmarkMQTTIngest/qos=0/devices=100/broker=ferry   1.0s     196034 msgs    193551 msgs/s", // its progress on stderr
		"BenchmarkX/n=1-2         \t  progress 1",
		"PASS",
		"ok  \tferry/log\t0.296s",
		"--- FAIL: BenchmarkY/a=1",
		"",
	} {
		if r, ok := parseBenchLine(line); ok {
			t.Errorf("%q parsed as %+v", line, r)
		}
	}
}

// A `go test -json` stream recorded from
// `go test -json -run '^$' -bench 'BenchmarkPartitionForKey|BenchmarkRawDisk' -benchtime=100x -benchmem ./log/`:
// BenchmarkRawDisk's name and figures arrive in two output events.
const recordedJSON = `{"Time":"2026-12-03T18:53:14.620928663Z","Action":"start","Package":"ferry/log"}
{"Time":"2026-12-03T18:53:14.646819548Z","Action":"output","Package":"ferry/log","Output":"goos: linux\n"}
{"Time":"2026-12-03T18:53:14.646877166Z","Action":"output","Package":"ferry/log","Output":"cpu: Oxide Virtual Turin-like Processor             \n"}
{"Time":"2026-12-03T18:53:14.646930658Z","Action":"run","Package":"ferry/log","Test":"BenchmarkRawDisk"}
{"Time":"2026-12-03T18:53:14.646933914Z","Action":"output","Package":"ferry/log","Test":"BenchmarkRawDisk","Output":"=== RUN   BenchmarkRawDisk\n"}
{"Time":"2026-12-03T18:53:14.646937231Z","Action":"output","Package":"ferry/log","Test":"BenchmarkRawDisk","Output":"BenchmarkRawDisk\n"}
{"Time":"2026-12-03T18:53:14.904522611Z","Action":"output","Package":"ferry/log","Test":"BenchmarkRawDisk","Output":"BenchmarkRawDisk-2           \t"}
{"Time":"2026-12-03T18:53:14.905259757Z","Action":"output","Package":"ferry/log","Test":"BenchmarkRawDisk","Output":"     100\t   2127552 ns/op\t 492.95 MB/s\t       0 B/op\t       0 allocs/op\n"}
{"Time":"2026-12-03T18:53:14.905279124Z","Action":"run","Package":"ferry/log","Test":"BenchmarkPartitionForKey"}
{"Time":"2026-12-03T18:53:14.905297388Z","Action":"output","Package":"ferry/log","Test":"BenchmarkPartitionForKey","Output":"=== RUN   BenchmarkPartitionForKey\n"}
{"Time":"2026-12-03T18:53:14.905304001Z","Action":"output","Package":"ferry/log","Test":"BenchmarkPartitionForKey","Output":"BenchmarkPartitionForKey\n"}
{"Time":"2026-12-03T18:53:14.917251283Z","Action":"output","Package":"ferry/log","Test":"BenchmarkPartitionForKey","Output":"BenchmarkPartitionForKey-2   \t     100\t        17.23 ns/op\t       0 B/op\t       0 allocs/op\n"}
{"Time":"2026-12-03T18:53:14.917301899Z","Action":"output","Package":"ferry/log","Output":"PASS\n"}
{"Time":"2026-12-03T18:53:14.917775906Z","Action":"output","Package":"ferry/log","Output":"ok  \tferry/log\t0.296s\n"}
{"Time":"2026-12-03T18:53:14.917810732Z","Action":"pass","Package":"ferry/log","Elapsed":0.297}
`

func TestReadEventsJoinsSplitOutput(t *testing.T) {
	var lines []string
	results, err := readEvents(strings.NewReader(recordedJSON), func(l string) { lines = append(lines, l) })
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 {
		t.Fatalf("%d results, want 2: %+v", len(results), results)
	}
	if r := results[0]; r.Name != "BenchmarkRawDisk" || r.Iters != 100 || r.Metrics["MB/s"] != 492.95 || r.Metrics["ns/op"] != 2127552 {
		t.Errorf("BenchmarkRawDisk parsed as %+v", r)
	}
	if r := results[1]; r.Name != "BenchmarkPartitionForKey" || r.Metrics["ns/op"] != 17.23 {
		t.Errorf("BenchmarkPartitionForKey parsed as %+v", r)
	}
	want := "BenchmarkRawDisk-2           \t     100\t   2127552 ns/op\t 492.95 MB/s\t       0 B/op\t       0 allocs/op"
	found := false
	for _, l := range lines {
		found = found || l == want
	}
	if !found {
		t.Errorf("the joined line %q was not passed on; got %q", want, lines)
	}
}

// Something the benchmark wrote to stderr while it ran lands between its
// name and its figures; so does a line that is not JSON (a build error).
func TestReadEventsOutputBetweenNameAndFigures(t *testing.T) {
	stream := `{"Action":"output","Test":"BenchmarkMQTTIdleMemory/broker=ferry","Output":"BenchmarkMQTTIdleMemory/broker=ferry-2 \t"}
{"Action":"output","Test":"BenchmarkMQTTIdleMemory/broker=ferry","Output":"  BenchmarkMQTTIdleMemory/broker=ferry  11.0s  10000 connected, broker RSS 299.7 MiB\n"}
{"Action":"output","Test":"BenchmarkMQTTIdleMemory/broker=ferry","Output":"       1\t21000000000 ns/op\t 428.5 MiB-rss-idle10s\t 42.4 KiB/device\n"}
# ferry/log [ferry/log.test]
{"Action":"output","Output":"FAIL\n"}
`
	var lines []string
	results, err := readEvents(strings.NewReader(stream), func(l string) { lines = append(lines, l) })
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 || results[0].Name != "BenchmarkMQTTIdleMemory/broker=ferry" || results[0].Metrics["MiB-rss-idle10s"] != 428.5 {
		t.Fatalf("results %+v, want BenchmarkMQTTIdleMemory/broker=ferry with 428.5 MiB-rss-idle10s", results)
	}
	if len(lines) != 4 || lines[2] != "# ferry/log [ferry/log.test]" {
		t.Errorf("lines %q", lines)
	}
}

// A package that does not build, as go test -json (Go 1.24 on) reports it:
// the compiler's errors are build-output events, and they must reach the
// step's last lines.
func TestReadEventsBuildFailure(t *testing.T) {
	stream := `{"ImportPath":"ferry/log [ferry/log.test]","Action":"build-output","Output":"# ferry/log [ferry/log.test]\n"}
{"ImportPath":"ferry/log [ferry/log.test]","Action":"build-output","Output":"log/bench_test.go:2:17: undefined: undefined\n"}
{"ImportPath":"ferry/log [ferry/log.test]","Action":"build-fail"}
{"Time":"2026-12-03T19:09:24.381932986Z","Action":"start","Package":"ferry/log"}
{"Time":"2026-12-03T19:09:24.382077631Z","Action":"output","Package":"ferry/log","Output":"FAIL\tferry/log [build failed]\n"}
{"Time":"2026-12-03T19:09:24.38209318Z","Action":"fail","Package":"ferry/log","Elapsed":0,"FailedBuild":"ferry/log [ferry/log.test]"}
`
	var lines []string
	results, err := readEvents(strings.NewReader(stream), func(l string) { lines = append(lines, l) })
	if err != nil || len(results) != 0 {
		t.Fatalf("results %v, err %v", results, err)
	}
	want := []string{"# ferry/log [ferry/log.test]", "log/bench_test.go:2:17: undefined: undefined", "FAIL\tferry/log [build failed]"}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("lines %q, want %q", lines, want)
	}
}

// The verdict lines of a step, as go test -json prints them: the
// benchmark's log lines first, then "--- SKIP" or "--- FAIL".
func TestStepOutputReasons(t *testing.T) {
	o := newStepOutput()
	for _, l := range []string{
		"=== RUN   BenchmarkJetStreamPublish",
		"BenchmarkJetStreamPublish",
		"    jetstream_bench_test.go:23: nats-server not installed (apt-get install nats-server)",
		"--- SKIP: BenchmarkJetStreamPublish",
		"=== RUN   BenchmarkMQTTIngestLight/qos=1/devices=100/broker=mosquitto",
		"    mqtt_bench_test.go:101: load average before the run: 1.2 0.9 0.8",
		"    mqttbench_helpers_test.go:80: mosquitto did not start: exit status 3",
		"--- FAIL: BenchmarkMQTTIngestLight/qos=1/devices=100/broker=mosquitto",
		"--- FAIL: BenchmarkMQTTIngestLight", // the parent: nothing of its own
		"FAIL",
	} {
		o.add(l)
	}
	if got := o.skips["BenchmarkJetStreamPublish"]; got != "nats-server not installed (apt-get install nats-server)" {
		t.Errorf("skip reason %q", got)
	}
	if got := o.fails["BenchmarkMQTTIngestLight/qos=1/devices=100/broker=mosquitto"]; got != "mosquitto did not start: exit status 3" {
		t.Errorf("fail reason %q", got)
	}
	if _, ok := o.fails["BenchmarkMQTTIngestLight"]; ok {
		t.Errorf("the parent got a reason: %v", o.fails)
	}
	for _, l := range o.tail {
		if strings.HasPrefix(l, "=== ") {
			t.Errorf("tail keeps %q", l)
		}
	}
}

// What dd printed on the test machine for
// `dd if=/dev/zero of=/tmp/x bs=1M count=8 conv=fdatasync`.
const recordedDD = "8+0 records in\n8+0 records out\n8388608 bytes (8.4 MB, 8.0 MiB) copied, 0.0385864 s, 217 MB/s\n"

func TestParseDD(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want float64
	}{
		{recordedDD, 217},
		{"1073741824 bytes (1.1 GB, 1.0 GiB) copied, 0.82 s, 1.3 GB/s\n", 1300},
		{"1073741824 Bytes (1,1 GB, 1,0 GiB) kopiert, 3,13919 s, 342 MB/s\n", 342}, // a German locale
		{"8388608 bytes (8.4 MB, 8.0 MiB) copied, 0.5 s, 16.8 kB/s\n", 0.0168},
		{"dd: failed to open '/nope/x': No such file or directory\n", 0},
	} {
		if got := parseDD(tc.out); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("parseDD(%q) = %v, want %v", tc.out, got, tc.want)
		}
	}
}

func TestDDRateRuns(t *testing.T) {
	if _, err := exec.LookPath("dd"); err != nil {
		t.Skip("no dd")
	}
	dir := t.TempDir()
	mbs, cmd, err := ddRate(dir, 8)
	if err != nil {
		t.Fatal(err)
	}
	if mbs <= 0 {
		t.Errorf("dd rate %v from %s", mbs, cmd)
	}
	if !strings.Contains(cmd, "conv=fdatasync") || !strings.Contains(cmd, "count=8") {
		t.Errorf("command %q", cmd)
	}
	if _, err := os.Stat(filepath.Join(dir, "dd.raw")); !os.IsNotExist(err) {
		t.Errorf("dd.raw left behind: %v", err)
	}
}

func TestBenchMatches(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"BenchmarkAppend/./partitions=1$|BenchmarkRawDisk|BenchmarkPartitionForKey", "BenchmarkAppend/flush=always/partitions=1/batch=100", true},
		{"BenchmarkAppend/./partitions=1$|BenchmarkRawDisk|BenchmarkPartitionForKey", "BenchmarkAppend/flush=always/partitions=16/batch=100", false},
		{"BenchmarkAppend/./partitions=1$|BenchmarkRawDisk|BenchmarkPartitionForKey", "BenchmarkRawDisk", true},
		{"BenchmarkAppend/./partitions=1$|BenchmarkRawDisk|BenchmarkPartitionForKey", "BenchmarkRead", false},
		{"BenchmarkAppend/flush=interval/partitions=1/", "BenchmarkAppend/flush=interval/partitions=16/batch=1", true}, // unanchored
		{"BenchmarkMQTTIngest$/qos=0/devices=100$", "BenchmarkMQTTIngestLight/qos=1/devices=100/broker=ferry", false},
		{"BenchmarkMQTTIngest$/qos=0/devices=100$", "BenchmarkMQTTIngest/qos=0/devices=100/broker=mosquitto", true},
		{"BenchmarkMQTTIngest$/qos=0/devices=100$", "BenchmarkMQTTIngest/qos=0/devices=1000/broker=mosquitto", false},
		{"BenchmarkMQTTIngest", "BenchmarkMQTTIngestLight/qos=1/devices=1000/broker=ferry", true},
		{"BenchmarkMirror$", "BenchmarkMirror/zstd=better", true},
		{"BenchmarkMirror$", "BenchmarkMirrorCappedLink", false},
		{"Benchmark(Produce|Consume)/acks=1", "BenchmarkProduce/acks=1/partitions=8", true},
		{"Benchmark(Produce|Consume)/acks=1", "BenchmarkConsume", true},
	} {
		if got := benchMatches(tc.pattern, tc.name); got != tc.want {
			t.Errorf("benchMatches(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}
