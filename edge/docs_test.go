package edge

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"ferry/ingest/mqtt"
	"ferry/mirror"
)

// The operator's files under docs/: the Grafana dashboard and the
// Prometheus alerting rules.
const (
	dashboardPath = "../docs/grafana/ferry.json"
	alertsPath    = "../docs/prometheus/alerts.yml"
)

// TestAlertRulesPassPromtool runs Prometheus's own checker over the
// shipped rules (Debian's prometheus package; make deps installs it).
func TestAlertRulesPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not installed (make deps installs Debian's prometheus)")
		}
		t.Skip("promtool not installed (make deps installs Debian's prometheus)")
	}
	out, err := exec.Command(promtool, "check", "rules", alertsPath).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// metricFamilies reads the names of the families a node's /metrics
// exposes (its # TYPE lines) with their types.
func metricFamilies(t *testing.T, n *Node) (map[string]string, string) {
	t.Helper()
	resp, err := http.Get("http://" + n.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	families := map[string]string{}
	for _, line := range strings.Split(string(body), "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			families[f[2]] = f[3]
		}
	}
	return families, string(body)
}

// exprs collects every "expr" string in the dashboard's JSON, wherever a
// panel or a row nests it.
func exprs(v any, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "expr" {
				*out = append(*out, s)
				continue
			}
			exprs(x, out)
		}
	case []any:
		for _, x := range v {
			exprs(x, out)
		}
	}
}

// TestDocsNameOnlyRealMetrics: every ferry_ metric a dashboard panel or an
// alerting rule names exists in the /metrics of an edge or a center
// after a little of everything (Kafka produce, a group's commit, an MQTT
// publish, records mirrored), so a renamed or imagined metric cannot sit
// in a panel that stays empty or a rule that never fires. On the way:
// ferry_build_info and the fsync histogram's buckets up to 30 s.
func TestDocsNameOnlyRealMetrics(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	center, err := Start(Options{Mode: "full", DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", Logger: quiet,
		Version: "9.9.9", MirrorAddr: "127.0.0.1:0", MirrorReceiver: mirror.ReceiverOptions{Tokens: map[string]string{"gw1": "s3cret"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer center.Close()
	edge, err := Start(Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
		AutoCreateTopics: true, Logger: quiet, MQTT: mqtt.Options{DefaultTopic: "mqtt"},
		MirrorTo: mirror.SenderOptions{Center: center.MirrorAddr(), EdgeID: "gw1", Token: "s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	defer edge.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if _, err := edge.Log().CreateTopic("telemetry", 1, nil); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(edge.KafkaAddr()), kgo.DefaultProduceTopic("telemetry"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := 0; i < 5; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("21.5")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	offsets := kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: "telemetry", Partition: 0, At: 2, LeaderEpoch: -1})
	if resp, err := kadm.NewClient(cl).CommitOffsets(ctx, "dashboards", offsets); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", err, resp.Error())
	}
	c, _, err := mqttConnect(t, edge.MQTTAddrs()[0], &paho.Connect{ClientID: "dev1", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
	if _, err := c.Publish(ctx, &paho.Publish{Topic: "factory/dev1", QoS: 1, Payload: []byte("21.5")}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "telemetry mirrored", func() bool { return edge.Sender().Acked("telemetry", 0) == 5 })
	// The sender sets its backlog gauges once a second.
	waitUntil(t, "the mirror's backlog gauges", func() bool {
		fams, _ := metricFamilies(t, edge)
		_, ok := fams["ferry_mirror_backlog_records"]
		return ok
	})

	edgeFamilies, _ := metricFamilies(t, edge)
	centerFamilies, centerText := metricFamilies(t, center)
	exists := func(name string) bool {
		for _, fams := range []map[string]string{edgeFamilies, centerFamilies} {
			if _, ok := fams[name]; ok {
				return true
			}
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suffix); ok && fams[base] == "histogram" {
					return true
				}
			}
		}
		return false
	}

	var all []string
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	var panelExprs []string
	exprs(dash, &panelExprs)
	if len(panelExprs) < 20 {
		t.Fatalf("%s: only %d queries", dashboardPath, len(panelExprs))
	}
	all = append(all, panelExprs...)
	rules, err := os.ReadFile(alertsPath)
	if err != nil {
		t.Fatal(err)
	}
	all = append(all, string(rules))
	name := regexp.MustCompile(`\bferry_[a-z_]+\b`)
	checked := map[string]bool{}
	for _, e := range all {
		for _, m := range name.FindAllString(e, -1) {
			if checked[m] {
				continue
			}
			checked[m] = true
			if !exists(m) {
				t.Errorf("%s is named in docs/ but no node's /metrics has it", m)
			}
		}
	}
	if len(checked) < 20 {
		t.Fatalf("only %d metrics named in docs/", len(checked))
	}

	want := `ferry_build_info{goversion="` + runtime.Version() + `",mode="full",version="9.9.9"} 1`
	if !strings.Contains(centerText, want) {
		t.Errorf("the center's /metrics lacks %s", want)
	}
	if !strings.Contains(centerText, `ferry_log_fsync_duration_seconds_bucket{le="30"}`) ||
		!strings.Contains(centerText, `ferry_log_fsync_duration_seconds_bucket{le="13.1072"}`) {
		t.Errorf("the fsync histogram has no buckets up to 30 s")
	}
	// The per-edge panels and FerryEdgeSilentAtCenter/FerryEdgeCopyLagging
	// need the center's series labelled by edge.
	for _, want := range []string{`ferry_mirror_receiver_edge_connected{edge="gw1"} 1`, `ferry_mirror_receiver_edge_last_seen_timestamp_seconds{edge="gw1"}`,
		`ferry_mirror_receiver_edge_lag_seconds{edge="gw1",topic="telemetry"}`, `ferry_mirror_receiver_edge_records_total{edge="gw1"}`} {
		if !strings.Contains(centerText, want) {
			t.Errorf("the center's /metrics lacks %s", want)
		}
	}
}

// apiPage documents the admin listener's routes.
const apiPage = "../docs/api.md"

// Every route the admin listener registers (a "METHOD /path" pattern
// given to a ServeMux in this package's or edge/adminapi's sources) has a row in a table of
// docs/api.md, and every route a row names is registered: the page cannot
// fall behind the API, nor describe an endpoint that is gone. The
// catch-all "/api/" patterns (built, not literal) answer 404 and are
// not routes.
func TestAPIPageNamesEveryRoute(t *testing.T) {
	page, err := os.ReadFile(apiPage)
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	row := regexp.MustCompile("^\\| `([A-Z]+ /[^`]*)` \\|")
	for _, line := range strings.Split(string(page), "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			// A row may stand for a family: GET /api/debug/pprof/… is the
			// pattern GET /api/debug/pprof/.
			documented[strings.TrimSuffix(m[1], "…")] = true
		}
	}
	registered := map[string]bool{}
	pattern := regexp.MustCompile(`\.Handle(?:Func)?\("([A-Z]+ /[^"]*)"`)
	var files []string
	for _, dir := range []string{".", "adminapi"} { // the node's listener and the API's routes
		fs, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, fs...)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range pattern.FindAllStringSubmatch(string(src), -1) {
			registered[m[1]] = true
			if !documented[m[1]] {
				t.Errorf("%s: route %s has no row in %s", f, m[1], apiPage)
			}
		}
	}
	if len(registered) < 25 {
		t.Fatalf("only %d routes found in the sources: is the pattern wrong?", len(registered))
	}
	for r := range documented {
		if !registered[r] {
			t.Errorf("%s: a row for %s, which no source registers", apiPage, r)
		}
	}
}
