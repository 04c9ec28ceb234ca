package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"ferry/edge"
	"ferry/edge/adminapi"
	"ferry/ingest/mqtt"
)

// The commands that act on a running node, run in-process against a node
// started on 127.0.0.1. Each table row is a command line, its exit code and
// what its output must contain; --json outputs are parsed back.

// startNode runs a node with Kafka and MQTT (--auth none) and the given
// admin token, and clears the variables the commands read so the
// environment of the test run does not leak in.
func startNode(t *testing.T, token string) (*edge.Node, string) {
	t.Helper()
	t.Setenv("FERRY_ADMIN", "")
	t.Setenv("FERRY_ADMIN_TOKEN", "")
	n, err := edge.Start(edge.Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
		AutoCreateTopics: true, MQTT: mqtt.Options{DefaultTopic: "mqtt"}, AdminToken: token, Version: "9.9.9", Logger: slog.New(slog.DiscardHandler),
		KafkaGroupInitialRebalanceDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, "http://" + n.AdminAddr()
}

type cliCase struct {
	args []string
	code int
	want string
}

func runCLICases(t *testing.T, cases []cliCase) {
	t.Helper()
	for _, tc := range cases {
		code, out, errOut := ferry(t, tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("ferry %s: exit %d (want %d), output %q lacks %q", strings.Join(tc.args, " "), code, tc.code, out+errOut, tc.want)
		}
	}
}

// ferryJSON runs a command that must succeed and decodes its output.
func ferryJSON[T any](t *testing.T, args ...string) T {
	t.Helper()
	code, out, errOut := ferry(t, args...)
	var v T
	if code != 0 {
		t.Fatalf("ferry %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("ferry %s: %v in %q", strings.Join(args, " "), err, out)
	}
	return v
}

func TestStatusCommand(t *testing.T) {
	n, admin := startNode(t, "")
	n.Log().CreateTopic("telemetry", 2, nil)
	runCLICases(t, []cliCase{
		{[]string{"status", "--admin", admin}, 0, "ferry edge 9.9.9 at " + admin + ": ready"},
		{[]string{"status", "--admin", admin}, 0, "kafka " + n.KafkaAddr()},
		{[]string{"status", "--admin", admin}, 0, "devices:    0 online, 0 registered (auth none)"},
		{[]string{"status", "--admin", strings.TrimPrefix(admin, "http://")}, 0, "ready"},
		{[]string{"status", "--admin", "ftp://x"}, 2, "want http://host:port"},
		{[]string{"status", "--admin", "http://127.0.0.1:1"}, 1, "asking http://127.0.0.1:1"},
		{[]string{"status", "extra", "--admin", admin}, 2, "want 0 argument"},
		{[]string{"status", "--help"}, 0, "--admin-token"},
	})
	st := ferryJSON[adminapi.StatusView](t, "status", "--admin", admin, "--json")
	if st.Mode != "edge" || st.Version != "9.9.9" || st.Listeners.Kafka != n.KafkaAddr() || st.Topics < 1 || st.Partitions < 2 || st.Mirror != nil {
		t.Fatalf("status --json: %+v", st)
	}
	// FERRY_ADMIN names the node when --admin does not.
	t.Setenv("FERRY_ADMIN", admin)
	runCLICases(t, []cliCase{{[]string{"status"}, 0, "ready"}})
}

func TestAdminTokenFromFlagAndEnvironment(t *testing.T) {
	_, admin := startNode(t, "s3cret")
	runCLICases(t, []cliCase{
		{[]string{"status", "--admin", admin}, 1, "needs a token"},
		{[]string{"status", "--admin", admin}, 1, "give --admin-token or set FERRY_ADMIN_TOKEN"},
		{[]string{"status", "--admin", admin, "--admin-token", "wrong"}, 1, "wrong admin token"},
		{[]string{"status", "--admin", admin, "--admin-token", "s3cret"}, 0, "admin API token"},
		{[]string{"topics", "list", "--admin", admin}, 1, "needs a token"},
		{[]string{"mirror", "status", "--admin", admin}, 1, "needs a token"},
	})
	t.Setenv("FERRY_ADMIN_TOKEN", "s3cret")
	runCLICases(t, []cliCase{
		{[]string{"status", "--admin", admin}, 0, "ready"},
		{[]string{"topics", "list", "--admin", admin}, 0, "TOPIC"},
		{[]string{"mirror", "status", "--admin", admin}, 1, "mirrors nothing"},
	})
}

func TestTopicsCommandsOnline(t *testing.T) {
	n, admin := startNode(t, "")
	dir := t.TempDir()
	runCLICases(t, []cliCase{
		{[]string{"topics", "create", "orders", "--partitions", "3", "--config", "retention.ms=3600000", "--admin", admin}, 0, "created topic orders with 3 partition(s)"},
		{[]string{"topics", "create", "alarms", "--admin", admin}, 0, "created topic alarms with 1 partition(s)"},
		{[]string{"topics", "create", "orders", "--admin", admin}, 1, "already exists"},
		{[]string{"topics", "create", "bad/name", "--admin", admin}, 1, "invalid topic name"},
		{[]string{"topics", "create", "x", "--config", "nope=1", "--admin", admin}, 1, `unknown key "nope"`},
		{[]string{"topics", "create", "x", "--admin", admin, "--data-dir", dir}, 2, "exclude each other"},
		{[]string{"topics", "describe", "missing", "--admin", admin}, 1, "unknown topic"},
		{[]string{"topics", "describe", "orders", "--admin", admin}, 0, "retention.ms"},
		{[]string{"topics", "alter", "orders", "--admin", admin}, 2, "nothing to change"},
		{[]string{"topics", "alter", "orders", "--set", "flush.policy=always", "--delete", "retention.ms", "--admin", admin}, 0, "altered topic orders: 3 partition(s), configs flush.policy=always"},
		{[]string{"topics", "alter", "orders", "--set", "retention.ms=soon", "--admin", admin}, 1, "retention.ms"},
		{[]string{"topics", "alter", "orders", "--partitions", "2", "--admin", admin}, 1, "invalid partition count"},
		{[]string{"topics", "alter", "missing", "--set", "retention.ms=1", "--admin", admin}, 1, "unknown topic"},
		{[]string{"topics", "delete", "missing", "--admin", admin}, 1, "unknown topic"},
	})
	// The alteration is live in the running node.
	if cfg, _ := n.Log().TopicConfig("orders"); cfg.Flush.String() != "always" {
		t.Fatalf("flush.policy: %v", cfg.Flush)
	}
	v := ferryJSON[adminapi.TopicView](t, "topics", "alter", "orders", "--partitions", "4", "--json", "--admin", admin)
	if len(v.Partitions) != 4 || v.Configs["flush.policy"] != "always" {
		t.Fatalf("alter --partitions --json: %+v", v)
	}
	list := ferryJSON[[]adminapi.TopicView](t, "topics", "list", "--json", "--admin", admin)
	byName := map[string]adminapi.TopicView{}
	for _, v := range list {
		byName[v.Name] = v
	}
	if len(list) != 3 || byName["alarms"].Name == "" || byName["mqtt"].Name == "" || len(byName["orders"].Partitions) != 4 {
		t.Fatalf("list --json (alarms, orders, and mqtt, the MQTT default topic): %+v", list)
	}
	if code, out, _ := ferry(t, "topics", "list", "--admin", admin); code != 0 || !regexp.MustCompile(`(?m)^orders\s+4\s+0\s+\d+$`).MatchString(out) {
		t.Fatalf("list: %d %q", code, out)
	}
	d := ferryJSON[adminapi.TopicView](t, "topics", "describe", "orders", "--json", "--admin", admin)
	if d.EffectiveConfigs["flush.policy"] != (adminapi.ConfigValue{Value: "always"}) || !d.EffectiveConfigs["retention.ms"].Default {
		t.Fatalf("describe --json: %+v", d.EffectiveConfigs)
	}
	runCLICases(t, []cliCase{
		{[]string{"topics", "delete", "orders", "--admin", admin}, 0, "deleted topic orders"},
		{[]string{"topics", "describe", "orders", "--admin", admin}, 1, "unknown topic"},
	})
}

func TestProduceAndConsume(t *testing.T) {
	n, admin := startNode(t, "")
	n.Log().CreateTopic("telemetry", 2, nil)
	withStdin(t, "dev1:21.5\ndev2:19.0\ndev1:22.0\nno key here\n")
	res := ferryJSON[produceResult](t, "produce", "telemetry", "-K", ":", "-H", "site=lyon", "-H", "line=a", "--json", "--admin", admin)
	if res.Topic != "telemetry" || res.Records != 4 {
		t.Fatalf("produce --json: %+v", res)
	}
	var total int64
	for _, p := range res.Partitions {
		total += p.Records
		if p.LastOffset-p.FirstOffset+1 != p.Records {
			t.Errorf("partition %+v", p)
		}
	}
	if total != 4 {
		t.Fatalf("produce --json partitions: %+v", res.Partitions)
	}
	runCLICases(t, []cliCase{
		{[]string{"produce", "telemetry", "--value", "x\ny", "--key", "dev3", "--partition", "1", "--brokers", n.KafkaAddr()}, 0, "produced 1 record(s) to telemetry"},
		{[]string{"produce", "telemetry", "-H", "nokv", "--brokers", n.KafkaAddr()}, 2, "want key=value"},
		{[]string{"produce", "--brokers", n.KafkaAddr()}, 2, "want 1 argument"},
	})

	// Read everything back: keys, values, headers, offsets.
	code, out, errOut := ferry(t, "consume", "telemetry", "--from-beginning", "--exit", "--json", "--admin", admin)
	if code != 0 {
		t.Fatalf("consume --json: %d %s", code, errOut)
	}
	var recs []consumedRecord
	byKey := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r consumedRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%v in %q", err, line)
		}
		recs = append(recs, r)
		k := "<nil>"
		if r.Key != nil {
			k = *r.Key
		}
		byKey[k] = append(byKey[k], *r.Value)
	}
	if len(recs) != 5 || strings.Join(byKey["dev1"], ",") != "21.5,22.0" || byKey["dev2"][0] != "19.0" || byKey["<nil>"][0] != "no key here" || byKey["dev3"][0] != "x\ny" {
		t.Fatalf("consumed %s", out)
	}
	for _, r := range recs {
		if r.Key != nil && *r.Key == "dev3" {
			if r.Partition != 1 || len(r.Headers) != 0 {
				t.Errorf("the --value record: %+v", r)
			}
			continue
		}
		if len(r.Headers) != 2 || r.Headers[0].Key != "site" || *r.Headers[0].Value != "lyon" || r.Timestamp.IsZero() {
			t.Errorf("headers of %+v", r)
		}
	}
	// Keys land where Kafka's partitioner puts them: dev1 twice on one partition.
	var dev1 []int32
	for _, r := range recs {
		if r.Key != nil && *r.Key == "dev1" {
			dev1 = append(dev1, r.Partition)
		}
	}
	if dev1[0] != dev1[1] {
		t.Fatalf("dev1 on partitions %v", dev1)
	}

	runCLICases(t, []cliCase{
		{[]string{"consume", "telemetry", "-p", "1", "-o", "beginning", "-e", "-K", "=", "--print-headers", "--brokers", n.KafkaAddr()}, 0, "dev3=x\ny\n"},
		{[]string{"consume", "telemetry", "--from-beginning", "-c", "1", "--brokers", n.KafkaAddr()}, 0, ""},
		{[]string{"consume", "telemetry", "--exit", "--brokers", n.KafkaAddr()}, 0, ""}, // from the end: nothing, at once
		{[]string{"consume", "telemetry", "-p", "7", "-e", "--brokers", n.KafkaAddr()}, 1, "no partition 7"},
		{[]string{"consume", "telemetry", "-o", "soon", "--brokers", n.KafkaAddr()}, 2, "--offset"},
		{[]string{"consume", "telemetry", "-g", "g", "-p", "1", "--brokers", n.KafkaAddr()}, 2, "without a group"},
		{[]string{"consume", "telemetry", "--from-beginning", "-o", "3", "--brokers", n.KafkaAddr()}, 2, "exclude each other"},
	})
	if _, out, _ := ferry(t, "consume", "telemetry", "--from-beginning", "-c", "2", "--brokers", n.KafkaAddr()); strings.Count(out, "\n") != 2 {
		t.Fatalf("consume -c 2 printed %q", out)
	}
	// An offset: partition 1 from its second record on.
	p1, _ := n.Log().Partition("telemetry", 1)
	if _, out, _ := ferry(t, "consume", "telemetry", "-p", "1", "-o", "1", "-e", "--json", "--brokers", n.KafkaAddr()); int64(strings.Count(out, "\n")) != p1.EndOffset()-1 {
		t.Fatalf("consume -o 1 printed %q (partition 1 ends at %d)", out, p1.EndOffset())
	}
}

func TestGroupsCommands(t *testing.T) {
	n, admin := startNode(t, "")
	n.Log().CreateTopic("orders", 2, nil)
	withStdin(t, "a\nb\nc\nd\n")
	runCLICases(t, []cliCase{{[]string{"produce", "orders", "-p", "0", "--admin", admin}, 0, "produced 4 record(s)"}})
	withStdin(t, "e\nf\n")
	runCLICases(t, []cliCase{
		{[]string{"produce", "orders", "-p", "1", "--admin", admin}, 0, "produced 2 record(s)"},
		{[]string{"groups", "list", "--admin", admin}, 0, "GROUP"},
		// Consume as a group up to the end: the group commits its offsets.
		{[]string{"consume", "orders", "--group", "billing", "--from-beginning", "--exit", "--admin", admin}, 0, ""},
		{[]string{"groups", "list", "--admin", admin}, 0, "billing"},
		{[]string{"groups", "describe", "billing", "--admin", admin}, 0, "Group: billing  state: Empty"},
		{[]string{"groups", "describe", "nobody", "--admin", admin}, 1, "unknown group"},
		{[]string{"groups", "reset-offsets", "billing", "--admin", admin}, 2, "give --topic and --to"},
		{[]string{"groups", "reset-offsets", "billing", "--topic", "orders", "--to", "yesterday", "--admin", admin}, 1, "want earliest, latest"},
		{[]string{"groups", "reset-offsets", "billing", "--topic", "nope", "--to", "earliest", "--admin", admin}, 1, "unknown topic"},
		{[]string{"groups", "reset-offsets", "billing", "--topic", "orders", "--to", "earliest", "--dry-run", "--admin", admin}, 0, "would reset (dry run"},
		// Without --execute a reset is a dry run, as Kafka's tool has it.
		{[]string{"groups", "reset-offsets", "billing", "--topic", "orders", "--to", "earliest", "--admin", admin}, 0, "would reset (dry run, nothing committed: --execute commits it)"},
		{[]string{"groups", "reset-offsets", "billing", "--topic", "orders", "--to", "earliest", "--execute", "--dry-run", "--admin", admin}, 2, "exclude each other"},
	})
	gs := ferryJSON[[]adminapi.GroupSummary](t, "groups", "list", "--json", "--admin", admin)
	if len(gs) != 1 || gs[0] != (adminapi.GroupSummary{Group: "billing", State: "Empty", ProtocolType: "consumer", Lag: 0}) {
		t.Fatalf("groups list --json after consuming: %+v", gs)
	}
	g := ferryJSON[adminapi.GroupView](t, "groups", "describe", "billing", "--json", "--admin", admin)
	if len(g.Offsets) != 2 || g.Lag != 0 || *g.Offsets[0].CommittedOffset != 4 || *g.Offsets[1].CommittedOffset != 2 {
		t.Fatalf("groups describe --json: %+v", g)
	}

	if res := ferryJSON[adminapi.ResetOffsetsResult](t, "groups", "reset-offsets", "billing", "--topic", "orders", "--to", "earliest", "--json", "--admin", admin); !res.DryRun {
		t.Fatalf("reset-offsets without --execute committed: %+v", res)
	}
	res := ferryJSON[adminapi.ResetOffsetsResult](t, "groups", "reset-offsets", "billing", "--topic", "orders", "--to", "earliest", "--execute", "--json", "--admin", admin)
	if res.DryRun || len(res.Partitions) != 2 || res.Partitions[0].Offset != 0 || *res.Partitions[0].Previous != *g.Offsets[0].CommittedOffset {
		t.Fatalf("reset-offsets --json: %+v", res)
	}
	if g := ferryJSON[adminapi.GroupView](t, "groups", "describe", "billing", "--json", "--admin", admin); g.Lag != 6 {
		t.Fatalf("lag after resetting to earliest: %+v", g)
	}
	// A time in the future: the end.
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if code, out, errOut := ferry(t, "groups", "reset-offsets", "billing", "--topic", "orders", "--partition", "1", "--to", future, "--execute", "--admin", admin); code != 0 ||
		!regexp.MustCompile(`(?m)^1\s+0\s+2$`).MatchString(out) {
		t.Fatalf("reset-offsets --to TIME: %d %q %q", code, out, errOut)
	}
	// The group reads again from where it was reset.
	code, out, errOut := ferry(t, "consume", "orders", "--group", "billing", "--exit", "--admin", admin)
	if code != 0 || out != "a\nb\nc\nd\n" {
		t.Fatalf("consume after the reset: %d %q %q", code, out, errOut)
	}
	runCLICases(t, []cliCase{
		{[]string{"groups", "delete", "billing", "--admin", admin}, 0, "deleted group billing"},
		{[]string{"groups", "delete", "billing", "--admin", admin}, 1, "unknown group"},
	})
	if gs := ferryJSON[[]adminapi.GroupSummary](t, "groups", "list", "--json", "--admin", admin); len(gs) != 0 {
		t.Fatalf("groups after delete: %+v", gs)
	}
}

func TestDevicesCommandsOnline(t *testing.T) {
	_, admin := startNode(t, "")
	withStdin(t, "pw one\n")
	runCLICases(t, []cliCase{
		{[]string{"devices", "add", "cam1", "--cert-cn", "cam1.factory", "--publish", "cams/{device}", "--rate", "5", "--burst", "10", "--admin", admin}, 0, "added device cam1"},
		{[]string{"devices", "add", "dev1", "--password-stdin", "--publish", "factory/+/{device}/#", "--admin", admin}, 0, "added device dev1"},
		{[]string{"devices", "add", "dev1", "--cert-cn", "x", "--admin", admin}, 1, "already exists"},
		{[]string{"devices", "add", "a/b", "--cert-cn", "y", "--admin", admin}, 1, "invalid device id"},
		{[]string{"devices", "add", "dev9", "--admin", admin}, 2, "--password-stdin"},
		{[]string{"devices", "show", "nope", "--admin", admin}, 1, "device not found"},
		{[]string{"devices", "show", "cam1", "--admin", admin}, 0, "5 msg/s, burst 10"},
		{[]string{"devices", "disable", "cam1", "--admin", admin}, 0, "disabled device cam1"},
		{[]string{"devices", "disable", "nope", "--admin", admin}, 1, "device not found"},
	})
	list := ferryJSON[[]adminapi.DeviceView](t, "devices", "list", "--json", "--admin", admin)
	if len(list) != 2 || list[0].ID != "cam1" || list[0].Enabled || list[0].CertCN != "cam1.factory" || !list[1].HasPassword || list[1].LastSeen != nil {
		t.Fatalf("devices list --json: %+v", list)
	}
	if code, out, _ := ferry(t, "devices", "list", "--admin", admin); code != 0 || !regexp.MustCompile(`(?m)^cam1\s+false\s+false\s+never\s+0$`).MatchString(out) {
		t.Fatalf("devices list: %d %q", code, out)
	}
	withStdin(t, "pw two\n")
	runCLICases(t, []cliCase{
		{[]string{"devices", "enable", "cam1", "--admin", admin}, 0, "enabled device cam1"},
		{[]string{"devices", "passwd", "dev1", "--password-stdin", "--admin", admin}, 0, "password of device dev1 changed"},
		{[]string{"devices", "delete", "dev1", "--admin", admin}, 0, "deleted device dev1"},
		{[]string{"devices", "delete", "dev1", "--admin", admin}, 1, "device not found"},
	})
	if v := ferryJSON[adminapi.DeviceView](t, "devices", "show", "cam1", "--json", "--admin", admin); !v.Enabled || v.ACL.Publish[0] != "cams/{device}" {
		t.Fatalf("devices show --json: %+v", v)
	}

	// A node without MQTT has no registry to manage.
	bare, err := edge.Start(edge.Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	runCLICases(t, []cliCase{{[]string{"devices", "list", "--admin", "http://" + bare.AdminAddr()}, 1, "no device registry"}})
}

// signalWriter tells when something was written.
type signalWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case w.wrote <- struct{}{}:
	default:
	}
	return w.buf.Write(p)
}

// On a terminal, a long-running command rewrites a progress line and
// erases it when it ends.
func TestProgressLine(t *testing.T) {
	w := &signalWriter{wrote: make(chan struct{}, 1)}
	p := startProgress(w, time.Millisecond, func() string { return "produced 3 record(s)" })
	<-w.wrote
	p.end()
	w.mu.Lock()
	defer w.mu.Unlock()
	if s := w.buf.String(); !strings.HasPrefix(s, "\rproduced 3 record(s)") || !strings.HasSuffix(s, "\r\033[K") {
		t.Fatalf("progress wrote %q", s)
	}
	startProgress(nil, time.Millisecond, func() string { return "" }).end() // not a terminal: nothing
}

// The Kafka seed `ferry produce` and `ferry consume` take from the admin
// API: a listener bound to every interface is reached on the admin host.
func TestKafkaSeed(t *testing.T) {
	t.Setenv("FERRY_ADMIN", "")
	for _, tc := range []struct{ admin, listener, want string }{
		{"http://gw1:8080", "[::]:9092", "gw1:9092"},
		{"http://gw1:8080", "0.0.0.0:9092", "gw1:9092"},
		{"gw1:8080", ":9092", "gw1:9092"},
		{"http://gw1:8080", "10.0.0.5:9092", "10.0.0.5:9092"},
		{"http://[fd00::1]:8080", "[::]:9092", "[fd00::1]:9092"},
	} {
		admin := tc.admin
		o := &adminOptions{url: &admin, token: new(string)}
		c, err := o.client()
		if err != nil {
			t.Fatal(err)
		}
		if got := c.kafkaSeed(tc.listener); got != tc.want {
			t.Errorf("admin %s, listener %s: seed %s, want %s", tc.admin, tc.listener, got, tc.want)
		}
	}
}
