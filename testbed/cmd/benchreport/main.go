// Command benchreport runs every benchmark of the project and, in the same
// run on the same machine, the peers they are compared with (dd for the
// disk, a loopback TCP stream, nats-server JetStream and mosquitto through
// the testbed benchmarks that start them), then writes a report: tables of
// ferry against each peer with the ratio and the command, every result, and
// SVG charts. `make bench` runs it.
//
//	go run ./testbed/cmd/benchreport            # full (tens of minutes)
//	BENCH_QUICK=1 go run ./testbed/cmd/benchreport   # reduced, a couple of minutes
//
// It writes testbed/BENCHMARKS-generated.md and testbed/charts/*.svg (-out
// changes the directory) and prints progress as it goes. The disk
// benchmarks and dd write in $BENCH_DIR (default .bench/ of the module). A step that fails
// is reported as failed in the report and makes the command exit 1 after
// the report is written.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"
)

// step is one `go test -bench` invocation.
type step struct {
	Key       string // names the step in the report's lookups
	Title     string
	Pkg       string // ./log/
	Bench     string
	Benchtime string
	Benchmem  bool
	Timeout   string
	Env       []string
}

// args are go test's arguments (-json added when run).
func (s step) args() []string {
	a := []string{"test", "-run", "^$", "-bench", s.Bench}
	if s.Benchtime != "" {
		a = append(a, "-benchtime="+s.Benchtime)
	}
	if s.Benchmem {
		a = append(a, "-benchmem")
	}
	if s.Timeout != "" {
		a = append(a, "-timeout", s.Timeout)
	}
	return append(a, s.Pkg)
}

// command is the step as a reader would type it.
func (s step) command() string {
	env := ""
	for _, e := range s.Env {
		if !strings.HasPrefix(e, "BENCH_DIR=") {
			env += e + " "
		}
	}
	return env + "go " + joinArgs(s.args())
}

func joinArgs(a []string) string {
	q := make([]string, len(a))
	for i, s := range a {
		if strings.ContainsAny(s, " |$^*()'") {
			s = "'" + s + "'"
		}
		q[i] = s
	}
	return strings.Join(q, " ")
}

// steps are the benchmarks of a full or a quick run.
func steps(quick bool, benchDir string) []step {
	if quick {
		return []step{
			// Each level of a -bench pattern is matched unanchored:
			// "partitions=1" alone would match partitions=16 too.
			{Key: "log", Title: "Storage engine: append, raw disk from Go, partitioner", Pkg: "./log/",
				Bench: "BenchmarkAppend/./partitions=1$|BenchmarkRawDisk|BenchmarkPartitionForKey", Benchtime: "100ms",
				Benchmem: true, Env: []string{"BENCH_DIR=" + benchDir}},
			{Key: "produce", Title: "Kafka produce", Pkg: "./ingest/kafka", Bench: "BenchmarkProduce/acks=1/partitions=1$", Benchtime: "200000x"},
			{Key: "latency", Title: "Kafka end-to-end latency", Pkg: "./ingest/kafka", Bench: "BenchmarkEndToEndLatency", Benchtime: "1x"},
			{Key: "acks-all-latency", Title: "Kafka acks=all latency, pipelined produce", Pkg: "./ingest/kafka", Bench: "BenchmarkAcksAllLatency", Benchtime: "1x"},
			{Key: "decode", Title: "Kafka decoding of hostile frames", Pkg: "./ingest/kafka", Bench: "BenchmarkDecodeHostile", Benchtime: "5x"},
			{Key: "jetstream", Title: "nats-server JetStream persistent publish (peer)", Pkg: "./testbed", Bench: "BenchmarkJetStreamPublish", Benchtime: "200000x"},
			{Key: "mqtt-light", Title: "MQTT QoS 1 ingest, light clients, ferry and mosquitto", Pkg: "./testbed",
				Bench: "BenchmarkMQTTIngestLight/qos=1/devices=100$", Benchtime: "1x", Timeout: "5m", Env: []string{"MQTT_BENCH_SECONDS=2"}},
			{Key: "mqtt", Title: "MQTT QoS 0 ingest, paho clients, ferry and mosquitto", Pkg: "./testbed",
				Bench: "BenchmarkMQTTIngest$/qos=0/devices=100$", Benchtime: "1x", Timeout: "5m", Env: []string{"MQTT_BENCH_SECONDS=2"}},
			{Key: "mqtt-1inflight", Title: "MQTT QoS 1, one publish in flight per device, ferry and mosquitto", Pkg: "./testbed",
				Bench: "BenchmarkMQTTOneInFlight/devices=100$", Benchtime: "1x", Timeout: "5m", Env: []string{"MQTT_BENCH_SECONDS=2"}},
			{Key: "mirror", Title: "Mirror edge → center on loopback, default level", Pkg: "./testbed", Bench: "BenchmarkMirror$/zstd=default",
				Benchtime: "1x", Timeout: "5m", Env: []string{"MIRROR_BENCH_RECORDS=200000"}},
			{Key: "mirror-live", Title: "Mirror live under ingest, refused chunks", Pkg: "./testbed", Bench: "BenchmarkMirrorLive",
				Benchtime: "1x", Timeout: "5m", Env: []string{"MIRROR_LIVE_SECONDS=10"}},
			{Key: "footprint", Title: "Footprint", Pkg: "./testbed", Bench: "BenchmarkFootprint", Benchtime: "1x", Timeout: "5m",
				Env: []string{"FOOTPRINT_DEVICES=200", "FOOTPRINT_IDLE_SECONDS=2"}},
			{Key: "acks-all", Title: "Kafka acks=all delivery and end-to-end latency, ferry edge process, default topic", Pkg: "./testbed",
				Bench: "BenchmarkAcksAllDelivery|BenchmarkEndToEndAcksAll", Benchtime: "1x", Timeout: "5m",
				Env: []string{"LATENCY_BENCH_RECORDS=500", "E2E_BENCH_SECONDS=2"}},
			{Key: "cpu", Title: "Broker CPU per million batched records, ferry and nats-server JetStream", Pkg: "./testbed",
				Bench: "BenchmarkProduceCPU", Benchtime: "1x", Timeout: "5m", Env: []string{"CPU_BENCH_RECORDS=200000"}},
			{Key: "bombs", Title: "Decompression bombs: peak RSS of ferry edge under 4 parallel 1 GiB zstd bombs", Pkg: "./testbed",
				Bench: "BenchmarkDecompressionBombs", Benchtime: "1x", Timeout: "5m"},
			{Key: "cluster-produce", Title: "Center cluster: produce through three ferry full processes vs one", Pkg: "./testbed",
				Bench: "BenchmarkClusterProduce", Benchtime: "1x", Timeout: "5m", Env: []string{"CLUSTER_BENCH_RECORDS=50000"}},
			{Key: "cluster-failover", Title: "Center cluster: broker fenced and controller re-elected after kill -9", Pkg: "./testbed",
				Bench: "BenchmarkClusterFailover", Benchtime: "1x", Timeout: "10m", Env: []string{"CLUSTER_BENCH_KILLS=2"}},
			{Key: "replicated-produce", Title: "Replicated partitions: acks=all at RF 3 vs one node vs nats-server JetStream R3", Pkg: "./testbed",
				Bench: "BenchmarkReplicatedProduce", Benchtime: "1x", Timeout: "5m", Env: []string{"REPL_BENCH_RECORDS=50000"}},
			{Key: "leader-kill", Title: "Replicated partitions: producer unavailability on leader kill -9", Pkg: "./testbed",
				Bench: "BenchmarkLeaderKillUnavailability", Benchtime: "1x", Timeout: "10m", Env: []string{"REPL_BENCH_KILLS=3"}},
		}
	}
	return []step{
		{Key: "log", Title: "Storage engine: append, raw disk from Go, read, partitioner", Pkg: "./log/",
			Bench: "BenchmarkAppend|BenchmarkRawDisk|BenchmarkRead$|BenchmarkPartitionForKey", Benchmem: true, Env: []string{"BENCH_DIR=" + benchDir}},
		{Key: "validate", Title: "Storage engine: validating compressed batches", Pkg: "./log/", Bench: "BenchmarkValidateCompressed",
			Benchtime: "2000x", Benchmem: true},
		{Key: "reopen", Title: "Storage engine: reopen", Pkg: "./log/", Bench: "BenchmarkReopen", Benchtime: "20x", Env: []string{"BENCH_DIR=" + benchDir}},
		{Key: "produce", Title: "Kafka produce and consume", Pkg: "./ingest/kafka", Bench: "BenchmarkProduce|BenchmarkConsume", Benchtime: "2000000x"},
		{Key: "latency", Title: "Kafka end-to-end latency", Pkg: "./ingest/kafka", Bench: "BenchmarkEndToEndLatency", Benchtime: "1x"},
		{Key: "acks-all-latency", Title: "Kafka acks=all latency, pipelined produce", Pkg: "./ingest/kafka", Bench: "BenchmarkAcksAllLatency", Benchtime: "1x"},
		{Key: "decode", Title: "Kafka decoding of hostile frames", Pkg: "./ingest/kafka", Bench: "BenchmarkDecodeHostile", Benchtime: "10x"},
		{Key: "jetstream", Title: "nats-server JetStream persistent publish (peer)", Pkg: "./testbed", Bench: "BenchmarkJetStreamPublish", Benchtime: "2000000x"},
		{Key: "mqtt", Title: "MQTT ingest, paho and light clients, ferry and mosquitto", Pkg: "./testbed", Bench: "BenchmarkMQTTIngest", Benchtime: "1x", Timeout: "15m"},
		{Key: "mqtt-1inflight", Title: "MQTT QoS 1, one publish in flight per device, ferry and mosquitto", Pkg: "./testbed",
			Bench: "BenchmarkMQTTOneInFlight", Benchtime: "1x", Timeout: "10m"},
		{Key: "mqtt-idle", Title: "MQTT idle memory, ferry and mosquitto", Pkg: "./testbed", Bench: "BenchmarkMQTTIdleMemory", Benchtime: "1x", Timeout: "10m"},
		{Key: "mirror", Title: "Mirror edge → center on loopback", Pkg: "./testbed", Bench: "BenchmarkMirror$", Benchtime: "1x", Timeout: "15m",
			Env: []string{"MIRROR_BENCH_RECORDS=2000000"}},
		{Key: "mirror-cap", Title: "Mirror under a capped link", Pkg: "./testbed", Bench: "BenchmarkMirrorCappedLink", Benchtime: "1x", Timeout: "10m"},
		{Key: "mirror-live", Title: "Mirror live under ingest, refused chunks", Pkg: "./testbed", Bench: "BenchmarkMirrorLive", Benchtime: "1x", Timeout: "10m"},
		{Key: "ship", Title: "Mirror shipping in one process", Pkg: "./mirror", Bench: "BenchmarkShip$", Benchtime: "1x", Timeout: "10m"},
		{Key: "ship-kafka", Title: "Mirror into a Kafka target (kfake) in one process, and resume after a kill -9", Pkg: "./mirror",
			Bench: "BenchmarkShipKafka", Benchtime: "1x", Timeout: "10m"},
		{Key: "footprint", Title: "Footprint", Pkg: "./testbed", Bench: "BenchmarkFootprint", Benchtime: "1x", Timeout: "15m"},
		{Key: "acks-all", Title: "Kafka acks=all delivery and end-to-end latency, ferry edge process, default topic", Pkg: "./testbed",
			Bench: "BenchmarkAcksAllDelivery|BenchmarkEndToEndAcksAll", Benchtime: "1x", Timeout: "10m"},
		{Key: "cpu", Title: "Broker CPU per million batched records, ferry and nats-server JetStream", Pkg: "./testbed",
			Bench: "BenchmarkProduceCPU", Benchtime: "1x", Timeout: "10m"},
		{Key: "bombs", Title: "Decompression bombs: peak RSS of ferry edge under 4 parallel 1 GiB zstd bombs", Pkg: "./testbed",
			Bench: "BenchmarkDecompressionBombs", Benchtime: "1x", Timeout: "5m"},
		{Key: "cluster-produce", Title: "Center cluster: produce through three ferry full processes vs one", Pkg: "./testbed",
			Bench: "BenchmarkClusterProduce", Benchtime: "1x", Timeout: "10m"},
		{Key: "cluster-failover", Title: "Center cluster: broker fenced and controller re-elected after kill -9 (10 each)", Pkg: "./testbed",
			Bench: "BenchmarkClusterFailover", Benchtime: "1x", Timeout: "25m"},
		{Key: "replicated-produce", Title: "Replicated partitions: acks=all at RF 3 vs one node vs nats-server JetStream R3", Pkg: "./testbed",
			Bench: "BenchmarkReplicatedProduce", Benchtime: "1x", Timeout: "15m"},
		{Key: "leader-kill", Title: "Replicated partitions: producer unavailability on leader kill -9 (20 kills)", Pkg: "./testbed",
			Bench: "BenchmarkLeaderKillUnavailability", Benchtime: "1x", Timeout: "30m"},
	}
}

// stepRun is what a step produced.
type stepRun struct {
	step    step
	results []result
	elapsed time.Duration
	err     error
	tail    []string // the last output lines, for a failure
	// skips and fails map a skipped or failed benchmark's name to the
	// last line it logged (its reason, usually).
	skips, fails map[string]string
}

// peerRun holds the peers measured by the generator itself.
type peerRun struct {
	ddMBs       float64
	ddCmd       string
	ddErr       error
	loopbackMBs float64
	loopErr     error
}

func main() {
	quick := flag.Bool("quick", os.Getenv("BENCH_QUICK") == "1", "reduced run (also BENCH_QUICK=1)")
	outDir := flag.String("out", "", "directory for BENCHMARKS-generated.md and charts/ (default: testbed/ of the module)")
	flag.Parse()
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(2)
	}
	if *outDir == "" {
		*outDir = filepath.Join(root, "testbed")
	}
	ok, err := run(root, *outDir, *quick, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

// moduleRoot is the directory of the go.mod the working directory is in.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module")
	}
	return filepath.Dir(mod), nil
}

// run runs every step and the peers, writes the report into outDir and
// reports whether every step passed.
func run(root, outDir string, quick bool, progress io.Writer) (bool, error) {
	start := time.Now()
	benchDir := os.Getenv("BENCH_DIR") // where the disk benchmarks write; `make bench` sets it
	if benchDir == "" {
		benchDir = filepath.Join(root, ".bench")
	}
	if err := os.MkdirAll(benchDir, 0o755); err != nil {
		return false, err
	}
	defer os.Remove(benchDir) // only if empty, as `make bench` did
	mode := "full"
	if quick {
		mode = "quick"
	}
	all := steps(quick, benchDir)
	total := len(all) + 2
	fmt.Fprintf(progress, "benchreport: %s run, %d steps, report in %s\n", mode, total, outDir)

	var peers peerRun
	fmt.Fprintf(progress, "[1/%d] raw disk: dd sequential write with fdatasync\n", total)
	ddMiB := 1024
	if quick {
		ddMiB = 128
	}
	peers.ddMBs, peers.ddCmd, peers.ddErr = ddRate(benchDir, ddMiB)
	fmt.Fprintf(progress, "    dd: %.0f MB/s %v\n", peers.ddMBs, errString(peers.ddErr))
	fmt.Fprintf(progress, "[2/%d] loopback TCP bandwidth, one stream\n", total)
	loopFor := 3 * time.Second
	if quick {
		loopFor = time.Second
	}
	peers.loopbackMBs, peers.loopErr = loopbackTCP(loopFor)
	fmt.Fprintf(progress, "    loopback TCP: %.0f MB/s %v\n", peers.loopbackMBs, errString(peers.loopErr))

	runs := make([]stepRun, 0, len(all))
	ok := peers.ddErr == nil && peers.loopErr == nil
	for i, s := range all {
		fmt.Fprintf(progress, "[%d/%d] %s: %s (%s elapsed)\n", i+3, total, s.Title, s.command(), time.Since(start).Round(time.Second))
		r := runStep(root, s, progress)
		if r.err != nil {
			ok = false
			fmt.Fprintf(progress, "    FAILED after %v: %v\n", r.elapsed.Round(time.Second), r.err)
		} else {
			fmt.Fprintf(progress, "    done in %v, %s\n", r.elapsed.Round(time.Second), plural(len(r.results), "result"))
		}
		runs = append(runs, r)
	}
	rep := buildReport(runs, peers, machineInfo(root, mode, time.Since(start)))
	if err := rep.write(outDir); err != nil {
		return false, err
	}
	fmt.Fprintf(progress, "benchreport: wrote %s and %d charts in %v\n", filepath.Join(outDir, reportName), len(rep.charts), time.Since(start).Round(time.Second))
	return ok, nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return "(" + err.Error() + ")"
}

// runStep runs one step with -json, streaming its output lines as progress.
func runStep(root string, s step, progress io.Writer) stepRun {
	t0 := time.Now()
	args := append([]string{s.args()[0], "-json"}, s.args()[1:]...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), s.Env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return stepRun{step: s, err: err}
	}
	if err := cmd.Start(); err != nil {
		return stepRun{step: s, err: err}
	}
	o := newStepOutput()
	results, rerr := readEvents(out, func(line string) {
		if o.add(line) {
			fmt.Fprintf(progress, "    %s\n", line)
		}
	})
	err = cmd.Wait()
	if err == nil {
		err = rerr
	}
	if err != nil && stderr.Len() > 0 {
		err = fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stepRun{step: s, results: results, elapsed: time.Since(t0), err: err, tail: o.tail, skips: o.skips, fails: o.fails}
}

// stepOutput follows a step's output lines: it keeps the last ones, for a
// failure, and the reason each skipped or failed benchmark logged.
type stepOutput struct {
	tail         []string
	lastLog      string // the last line logged since the last verdict
	skips, fails map[string]string
}

func newStepOutput() *stepOutput {
	return &stepOutput{skips: map[string]string{}, fails: map[string]string{}}
}

// add takes one line and reports whether it is worth showing as progress.
func (o *stepOutput) add(line string) bool {
	switch {
	case strings.HasPrefix(line, "=== RUN"):
		o.lastLog = ""
	case strings.HasPrefix(line, "--- SKIP: "), strings.HasPrefix(line, "--- FAIL: "):
		// A benchmark's log lines come before its verdict.
		f := strings.Fields(line[len("--- SKIP: "):])
		if len(f) > 0 && o.lastLog != "" {
			name := procSuffix.ReplaceAllString(f[0], "")
			if strings.HasPrefix(line, "--- SKIP") {
				o.skips[name] = o.lastLog
			} else {
				o.fails[name] = o.lastLog
			}
		}
		o.lastLog = ""
	case logLine.MatchString(line):
		o.lastLog = logLine.ReplaceAllString(line, "")
	}
	if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "=== ") {
		return false
	}
	o.tail = append(o.tail, line)
	if len(o.tail) > 20 {
		o.tail = o.tail[1:]
	}
	return true
}

var (
	// logLine is a line a test logged: "    file_test.go:12: message".
	logLine = regexp.MustCompile(`^\s+\S+_test\.go:\d+: `)
	// procSuffix is the -GOMAXPROCS suffix of a benchmark's name.
	procSuffix = regexp.MustCompile(`-\d+$`)
)

// machine describes where and when the run happened.
type machine struct {
	When, Commit, GoVersion, CPU, Mode string
	Cores                              int
	MemGiB                             float64
	Took                               time.Duration
	Tools                              []string // the peers' versions, "nats-server: v2.9.10"
}

func machineInfo(root, mode string, took time.Duration) machine {
	m := machine{When: time.Now().UTC().Format("2006-01-02 15:04 UTC"), GoVersion: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		Cores: runtime.NumCPU(), Mode: mode, Took: took}
	if out, err := exec.Command("git", "-C", root, "describe", "--always", "--dirty").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				if i := strings.IndexByte(l, ':'); i >= 0 {
					m.CPU = strings.TrimSpace(l[i+1:])
				}
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		kb := parseMeminfo(string(b))
		m.MemGiB = float64(kb) / (1 << 20)
	}
	m.Tools = toolVersions()
	return m
}

// toolVersions are the first line of each peer's version output, or why
// there is none.
func toolVersions() []string {
	var out []string
	for _, t := range []struct{ name, path, arg string }{
		{"nats-server", "nats-server", "--version"},
		{"mosquitto", "/usr/sbin/mosquitto", "-h"}, // prints its version in its help, exits 3
		{"dd", "dd", "--version"},
	} {
		p := t.path
		if _, err := os.Stat(p); err != nil {
			if p, err = exec.LookPath(t.name); err != nil {
				out = append(out, t.name+": not installed")
				continue
			}
		}
		b, _ := exec.Command(p, t.arg).CombinedOutput()
		line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		switch {
		case line == "":
			line = t.name + ": version unknown"
		case !strings.Contains(line, t.name):
			line = t.name + " " + line
		}
		out = append(out, line)
	}
	return out
}

func parseMeminfo(s string) int64 {
	for _, l := range strings.Split(s, "\n") {
		var kb int64
		if n, _ := fmt.Sscanf(l, "MemTotal: %d kB", &kb); n == 1 {
			return kb
		}
	}
	return 0
}
