package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"ferry/devices"
	"ferry/edge/adminapi"
	"ferry/ingest/mqtt"
	"ferry/mirror"
)

// call sends a request to the node's admin API and returns the status and
// body. Every error answer must be JSON with a message.
func call(t *testing.T, n *Node, token, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, "http://"+n.AdminAddr()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode >= 400 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(out, &e) != nil || e.Error == "" || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d answered %q, want JSON with an error message", method, path, resp.StatusCode, out)
		}
	}
	return resp.StatusCode, out
}

// apiCase is one request of a table and what must come back: the status,
// and a string the body must contain.
type apiCase struct {
	method, path string
	body         any
	code         int
	want         string
}

func runCases(t *testing.T, n *Node, token string, cases []apiCase) {
	t.Helper()
	for _, c := range cases {
		code, body := call(t, n, token, c.method, c.path, c.body)
		if code != c.code || !strings.Contains(string(body), c.want) {
			t.Errorf("%s %s %v: %d %s, want %d with %q", c.method, c.path, c.body, code, body, c.code, c.want)
		}
	}
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	return v
}

func TestAPITopics(t *testing.T) {
	n := startTestNode(t, t.TempDir())
	runCases(t, n, "", []apiCase{
		{"POST", "/api/topics", adminapi.CreateTopicRequest{Name: "telemetry", Partitions: 3, Configs: map[string]string{"retention.ms": "3600000"}}, 201, `"name":"telemetry"`},
		{"POST", "/api/topics", adminapi.CreateTopicRequest{Name: "alarms"}, 201, `"partition":0`},
		{"POST", "/api/topics", adminapi.CreateTopicRequest{Name: "telemetry"}, 409, "already exists"},
		{"POST", "/api/topics", adminapi.CreateTopicRequest{Name: "bad/name"}, 400, "invalid topic name"},
		{"POST", "/api/topics", adminapi.CreateTopicRequest{Name: "x", Partitions: -1}, 400, "invalid partition count"},
		{"POST", "/api/topics", adminapi.CreateTopicRequest{Name: "x", Configs: map[string]string{"nope": "1"}}, 400, `unknown key \"nope\"`},
		{"POST", "/api/topics", `{"name":"x","partitons":2}`, 400, "unknown field"},
		{"POST", "/api/topics", `{"name":`, 400, "request body"},
		{"POST", "/api/topics", "", 400, "needs a JSON body"},
		{"GET", "/api/topics/missing", nil, 404, "unknown topic"},
		{"PATCH", "/api/topics/telemetry/configs", adminapi.AlterConfigsRequest{Set: map[string]string{"flush.policy": "always"}, Delete: []string{"retention.ms"}}, 200, `"flush.policy":"always"`},
		{"PATCH", "/api/topics/telemetry/configs", adminapi.AlterConfigsRequest{Set: map[string]string{"retention.ms": "soon"}}, 400, "retention.ms"},
		{"PATCH", "/api/topics/telemetry/configs", adminapi.AlterConfigsRequest{Delete: []string{"nope"}}, 400, "unknown key"},
		{"PATCH", "/api/topics/telemetry/configs", adminapi.AlterConfigsRequest{}, 400, "nothing to change"},
		{"PATCH", "/api/topics/missing/configs", adminapi.AlterConfigsRequest{Set: map[string]string{"retention.ms": "1"}}, 404, "unknown topic"},
		{"POST", "/api/topics/alarms/partitions", adminapi.AddPartitionsRequest{Partitions: 2}, 200, `"partition":1`},
		{"POST", "/api/topics/alarms/partitions", adminapi.AddPartitionsRequest{Partitions: 1}, 400, "invalid partition count"},
		{"DELETE", "/api/topics/missing", nil, 404, "unknown topic"},
		{"PUT", "/api/topics", nil, 404, "no such endpoint: PUT /api/topics"},
		{"GET", "/api/nothing", nil, 404, "no such endpoint"},
	})
	// The config change is live in the log.
	cfg, err := n.Log().TopicConfig("telemetry")
	if err != nil || cfg.Flush.String() != "always" {
		t.Fatalf("flush.policy after PATCH: %+v %v", cfg.Flush, err)
	}

	p, _ := n.Log().Partition("telemetry", 1)
	produceTo(t, n, "telemetry", 1, 5)
	code, body := call(t, n, "", "GET", "/api/topics", nil)
	list := decode[[]adminapi.TopicView](t, body)
	if code != 200 || len(list) != 2 || list[0].Name != "alarms" || list[1].Name != "telemetry" || len(list[1].Partitions) != 3 {
		t.Fatalf("GET /api/topics: %d %s", code, body)
	}
	tv := list[1]
	if pv := tv.Partitions[1]; pv.EndOffset != 5 || pv.StartOffset != 0 || pv.SizeBytes != p.Size() || pv.SizeBytes == 0 || tv.Records != 5 {
		t.Fatalf("telemetry partitions: %+v", tv.Partitions)
	}
	if tv.Configs["flush.policy"] != "always" || tv.EffectiveConfigs != nil {
		t.Fatalf("the list's configs: %+v %+v", tv.Configs, tv.EffectiveConfigs)
	}
	code, body = call(t, n, "", "GET", "/api/topics/telemetry", nil)
	one := decode[adminapi.TopicView](t, body)
	if code != 200 || one.EffectiveConfigs["flush.policy"] != (adminapi.ConfigValue{Value: "always", Default: false}) || !one.EffectiveConfigs["segment.bytes"].Default {
		t.Fatalf("GET /api/topics/telemetry: %d %s", code, body)
	}
	if code, body := call(t, n, "", "DELETE", "/api/topics/telemetry", nil); code != 204 || len(body) != 0 {
		t.Fatalf("DELETE: %d %q", code, body)
	}
	if _, err := n.Log().Topic("telemetry"); err == nil {
		t.Fatal("the topic is still there")
	}
}

// produceTo appends count records keyed k0, k1... to one partition.
func produceTo(t *testing.T, n *Node, topic string, partition int32, count int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range count {
		r := &kgo.Record{Topic: topic, Partition: partition, Key: []byte{'k', byte('0' + i%10)}, Value: []byte("v"), Timestamp: time.UnixMilli(int64(1000 * (i + 1)))}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAPIGroups(t *testing.T) {
	n := startTestNode(t, t.TempDir())
	if _, err := n.Log().CreateTopic("orders", 2, nil); err != nil {
		t.Fatal(err)
	}
	produceTo(t, n, "orders", 0, 10)
	produceTo(t, n, "orders", 1, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	offs := kadm.Offsets{}
	offs.AddOffset("orders", 0, 7, -1)
	if resp, err := kadm.NewClient(admin).CommitOffsets(ctx, "billing", offs); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", resp, err)
	}

	code, body := call(t, n, "", "GET", "/api/groups", nil)
	if sums := decode[[]adminapi.GroupSummary](t, body); code != 200 || len(sums) != 1 || sums[0] != (adminapi.GroupSummary{Group: "billing", State: "Empty", Lag: 3}) {
		t.Fatalf("GET /api/groups: %d %s", code, body)
	}
	code, body = call(t, n, "", "GET", "/api/groups/billing", nil)
	g := decode[adminapi.GroupView](t, body)
	if code != 200 || g.Lag != 3 || len(g.Offsets) != 1 || *g.Offsets[0].CommittedOffset != 7 || g.Offsets[0].EndOffset != 10 || *g.Offsets[0].Lag != 3 {
		t.Fatalf("GET /api/groups/billing: %d %s", code, body)
	}

	ts := func(ms int64) string { return "timestamp:" + itoa(ms) }
	runCases(t, n, "", []apiCase{
		{"GET", "/api/groups/nobody", nil, 404, "unknown group"},
		{"POST", "/api/groups/billing/reset-offsets", adminapi.ResetOffsetsRequest{Topic: "orders", To: "earliest", DryRun: true}, 200, `"dry_run":true,"partitions":[{"partition":0,"previous":7,"offset":0},{"partition":1,"previous":null,"offset":0}]`},
		{"POST", "/api/groups/billing/reset-offsets", adminapi.ResetOffsetsRequest{Topic: "orders", To: "offset:2", Partitions: []int32{1}}, 200, `[{"partition":1,"previous":null,"offset":2}]`},
		{"POST", "/api/groups/billing/reset-offsets", adminapi.ResetOffsetsRequest{Topic: "orders", To: "offset:99", Partitions: []int32{0}}, 200, `"offset":10`},
		{"POST", "/api/groups/billing/reset-offsets", adminapi.ResetOffsetsRequest{Topic: "orders", To: ts(4000), Partitions: []int32{0}}, 200, `"previous":10,"offset":3`},
		{"POST", "/api/groups/billing/reset-offsets", adminapi.ResetOffsetsRequest{Topic: "orders", To: ts(99000), Partitions: []int32{0}}, 200, `"offset":10`},
		{"POST", "/api/groups/billing/reset-offsets", adminapi.ResetOffsetsRequest{Topic: "orders", To: "latest", Partitions: []int32{0}}, 200, `"previous":10,"offset":10`},
		{"POST", "/api/groups/billing/reset-offsets", adminapi.ResetOffsetsRequest{Topic: "orders", To: "earliest", Partitions: []int32{0}}, 200, `"offset":0`},
		{"POST", "/api/groups/billing/reset-offsets", adminapi.ResetOffsetsRequest{Topic: "orders", To: "yesterday"}, 400, "want earliest, latest"},
		{"POST", "/api/groups/billing/reset-offsets", adminapi.ResetOffsetsRequest{Topic: "orders", To: "offset:-1"}, 400, "want earliest"},
		{"POST", "/api/groups/billing/reset-offsets", adminapi.ResetOffsetsRequest{To: "earliest"}, 400, `needs a \"topic\"`},
		{"POST", "/api/groups/billing/reset-offsets", adminapi.ResetOffsetsRequest{Topic: "nope", To: "earliest"}, 404, "unknown topic"},
		{"POST", "/api/groups/billing/reset-offsets", adminapi.ResetOffsetsRequest{Topic: "orders", To: "earliest", Partitions: []int32{5}}, 404, "unknown partition"},
	})
	got, err := kadm.NewClient(admin).FetchOffsets(ctx, "billing")
	if err != nil {
		t.Fatal(err)
	}
	if o0, _ := got.Lookup("orders", 0); o0.At != 0 {
		t.Fatalf("orders-0 after the resets: %+v", o0)
	}
	if o1, _ := got.Lookup("orders", 1); o1.At != 2 {
		t.Fatalf("orders-1 after the resets: %+v", o1)
	}

	// A running member: the group is described with its assignment, and
	// resets are refused.
	assigned := make(chan struct{}, 1)
	member, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()), kgo.ConsumerGroup("billing"), kgo.ConsumeTopics("orders"), kgo.ClientID("billing-app"),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
			select {
			case assigned <- struct{}{}:
			default:
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close()
	go member.PollFetches(ctx)
	select {
	case <-assigned:
	case <-ctx.Done():
		t.Fatal("the member was never assigned partitions")
	}
	code, body = call(t, n, "", "GET", "/api/groups/billing", nil)
	g = decode[adminapi.GroupView](t, body)
	if code != 200 || g.State != "Stable" || len(g.Members) != 1 || g.Members[0].ClientID != "billing-app" ||
		len(g.Members[0].Assignment["orders"]) != 2 || g.Offsets[0].Member != g.Members[0].ID {
		t.Fatalf("GET /api/groups/billing with a member: %d %s", code, body)
	}
	runCases(t, n, "", []apiCase{
		{"POST", "/api/groups/billing/reset-offsets", adminapi.ResetOffsetsRequest{Topic: "orders", To: "earliest"}, 409, "active members"},
		{"POST", "/api/groups/billing/reset-offsets", adminapi.ResetOffsetsRequest{Topic: "orders", To: "earliest", DryRun: true}, 409, "active members"},
		{"DELETE", "/api/groups/billing", nil, 409, "active members"},
	})
	member.Close()
	runCases(t, n, "", []apiCase{
		{"DELETE", "/api/groups/billing", nil, 204, ""},
		{"DELETE", "/api/groups/billing", nil, 404, "unknown group"},
		{"GET", "/api/groups", nil, 200, "[]"},
	})

	// A node without a Kafka listener has no groups.
	bare, err := Start(Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	runCases(t, bare, "", []apiCase{
		{"GET", "/api/groups", nil, 404, "no consumer groups"},
		{"GET", "/api/groups/billing", nil, 404, "no consumer groups"},
		{"POST", "/api/groups/billing/reset-offsets", adminapi.ResetOffsetsRequest{Topic: "orders", To: "earliest"}, 404, "no consumer groups"},
	})
}

func itoa(v int64) string { b, _ := json.Marshal(v); return string(b) }

func startMQTTNode(t *testing.T, token string) *Node {
	t.Helper()
	n, err := Start(Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
		MQTT: mqtt.Options{DefaultTopic: "mqtt"}, AdminToken: token, Version: "1.2.3", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func TestAPIDevices(t *testing.T) {
	n := startMQTTNode(t, "")
	acl := devices.ACL{Publish: []string{"factory/+/{device}/#"}, Subscribe: []string{}}
	runCases(t, n, "", []apiCase{
		{"GET", "/api/devices", nil, 200, "[]"},
		{"POST", "/api/devices", adminapi.AddDeviceRequest{ID: "cam1", CertCN: "cam1.factory", ACL: acl, RateLimit: 5, Burst: 10}, 201, `"id":"cam1","enabled":true,"online":false,"last_seen":null`},
		{"POST", "/api/devices", adminapi.AddDeviceRequest{ID: "dev1", Password: "s3cret", ACL: acl}, 201, `"has_password":true`},
		{"POST", "/api/devices", adminapi.AddDeviceRequest{ID: "dev2", CertCN: "dev2.factory", Enabled: new(bool)}, 201, `"enabled":false`},
		{"POST", "/api/devices", adminapi.AddDeviceRequest{ID: "dev1"}, 409, "already exists"},
		{"POST", "/api/devices", adminapi.AddDeviceRequest{ID: "a/b"}, 400, "invalid device id"},
		{"POST", "/api/devices", adminapi.AddDeviceRequest{ID: "dev9", ACL: devices.ACL{Publish: []string{"a/#/b"}}}, 400, "invalid topic filter"},
		{"POST", "/api/devices", adminapi.AddDeviceRequest{ID: "dev9", RateLimit: -1}, 400, "invalid device"},
		{"POST", "/api/devices", `{"id":"dev9","password_hash":"x"}`, 400, "unknown field"},
		{"GET", "/api/devices/nope", nil, 404, "device not found"},
		{"PATCH", "/api/devices/cam1", adminapi.ChangeDeviceRequest{Enabled: new(bool)}, 200, `"enabled":false`},
		{"PATCH", "/api/devices/cam1", adminapi.ChangeDeviceRequest{ACL: &devices.ACL{Publish: []string{"cams/{device}"}}}, 200, `"publish":["cams/{device}"]`},
		{"PATCH", "/api/devices/cam1", adminapi.ChangeDeviceRequest{ACL: &devices.ACL{Publish: []string{"a/#/b"}}}, 400, "invalid topic filter"},
		{"PATCH", "/api/devices/cam1", adminapi.ChangeDeviceRequest{}, 400, "nothing to change"},
		{"PATCH", "/api/devices/nope", adminapi.ChangeDeviceRequest{Enabled: new(bool)}, 404, "device not found"},
		{"DELETE", "/api/devices/dev2", nil, 204, ""},
		{"DELETE", "/api/devices/dev2", nil, 404, "device not found"},
	})
	if err := n.devices.Authenticate("dev1", "s3cret"); err != nil {
		t.Fatalf("the password given to POST: %v", err)
	}

	// dev1 connects (--auth none still keeps registered devices' presence).
	c, _, err := mqttConnect(t, n.MQTTAddrs()[0], &paho.Connect{ClientID: "dev1", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The PUBACK comes after the session was established, and with it the
	// presence.
	if _, err := c.Publish(ctx, &paho.Publish{Topic: "factory/lyon/dev1/telemetry", QoS: 1, Payload: []byte("21.5")}); err != nil {
		t.Fatal(err)
	}
	code, body := call(t, n, "", "GET", "/api/devices", nil)
	list := decode[[]adminapi.DeviceView](t, body)
	if code != 200 || len(list) != 2 || list[0].ID != "cam1" || list[1].ID != "dev1" || !list[1].Online || list[1].LastSeen == nil ||
		list[1].ConnectedAt == nil || list[1].MessagesIn != 1 || list[0].Online || list[0].Enabled {
		t.Fatalf("GET /api/devices: %d %s", code, body)
	}
	if strings.Contains(string(body), "$2a$") || strings.Contains(string(body), "s3cret") {
		t.Fatalf("the list shows a password or its hash: %s", body)
	}
	code, body = call(t, n, "", "GET", "/api/devices/dev1", nil)
	if d := decode[adminapi.DeviceView](t, body); code != 200 || !d.Online || d.RemoteAddr == "" || d.ACL.Publish[0] != "factory/+/{device}/#" {
		t.Fatalf("GET /api/devices/dev1: %d %s", code, body)
	}
	code, body = call(t, n, "", "GET", "/api/status", nil)
	if st := decode[adminapi.StatusView](t, body); code != 200 || st.DevicesOnline != 1 || st.DevicesRegistered != 2 || st.Auth != "none" {
		t.Fatalf("status with a device online: %d %s", code, body)
	}

	// A node without MQTT has no registry.
	bare := startTestNode(t, t.TempDir())
	runCases(t, bare, "", []apiCase{
		{"GET", "/api/devices", nil, 404, "no device registry"},
		{"POST", "/api/devices", adminapi.AddDeviceRequest{ID: "dev1"}, 404, "no device registry"},
		{"DELETE", "/api/devices/dev1", nil, 404, "no device registry"},
	})
}

func TestAPIStatus(t *testing.T) {
	n := startMQTTNode(t, "")
	if _, err := n.Log().CreateTopic("telemetry", 2, nil); err != nil {
		t.Fatal(err)
	}
	produceTo(t, n, "telemetry", 0, 3)
	code, body := call(t, n, "", "GET", "/api/status", nil)
	st := decode[adminapi.StatusView](t, body)
	if code != 200 || st.Mode != "edge" || st.Version != "1.2.3" || !st.Ready || st.Listeners.Kafka != n.KafkaAddr() ||
		len(st.Listeners.MQTT) != 1 || st.Listeners.MQTT[0] != n.MQTTAddrs()[0] || st.Listeners.Admin != n.AdminAddr() || st.Listeners.Mirror != "" ||
		st.Topics < 2 || st.Partitions < 3 || st.Records < 3 || st.DiskBytes != n.Log().Size() || st.DiskBudgetBytes != 0 || st.AppendsBlocked ||
		st.Mirror != nil || st.AdminAuth || st.StartedAt.IsZero() {
		t.Fatalf("GET /api/status: %d %s", code, body)
	}
	// The contract's keys, as the status page reads them.
	m := decode[map[string]any](t, body)
	for _, k := range []string{"mode", "version", "uptime_seconds", "listeners", "topics", "partitions", "disk_bytes", "disk_budget_bytes",
		"appends_blocked", "devices_online", "mirror"} {
		if _, ok := m[k]; !ok {
			t.Errorf("/api/status lacks %q", k)
		}
	}

	// An edge whose center is unreachable: everything is backlog.
	e, err := Start(Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
		MirrorTo: mirror.SenderOptions{Center: "127.0.0.1:1", EdgeID: "gw7", Token: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.Log().CreateTopic("telemetry", 1, nil)
	produceTo(t, e, "telemetry", 0, 4)
	code, body = call(t, e, "", "GET", "/api/status", nil)
	st = decode[adminapi.StatusView](t, body)
	if code != 200 || st.Mirror == nil || st.Mirror.LinkUp || st.Mirror.EdgeID != "gw7" || st.Mirror.BacklogRecords != 4 || st.Version != "dev" ||
		st.Auth != "" || len(st.Listeners.MQTT) != 0 {
		t.Fatalf("GET /api/status of a mirroring edge: %d %s", code, body)
	}
}

func TestAPIAuth(t *testing.T) {
	n := startMQTTNode(t, "s3cret")
	for _, tc := range []struct {
		method, path, token string
		code                int
		want                string
	}{
		{"GET", "/api/status", "", 401, "needs a token"},
		{"GET", "/api/status", "wrong", 401, "wrong admin token"},
		{"GET", "/api/topics", "", 401, "needs a token"},
		{"POST", "/api/topics", "", 401, "needs a token"},
		{"GET", "/api/devices", "", 401, "needs a token"},
		{"GET", "/api/groups", "", 401, "needs a token"},
		{"GET", "/api/mirror", "", 401, "needs a token"},
		{"GET", "/api/nothing", "", 401, "needs a token"},
		{"GET", "/api/status", "s3cret", 200, `"admin_auth":true`},
		{"GET", "/api/nothing", "s3cret", 404, "no such endpoint"},
		{"GET", "/healthz", "", 200, "ok"},
		{"GET", "/readyz", "", 200, "ready"},
		{"GET", "/metrics", "", 200, "go_goroutines"},
	} {
		code, body := call(t, n, tc.token, tc.method, tc.path, nil)
		if code != tc.code || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s %s with token %q: %d %s, want %d with %q", tc.method, tc.path, tc.token, code, body, tc.code, tc.want)
		}
	}
	// Without a token configured, the API is open.
	if code, _ := call(t, startTestNode(t, t.TempDir()), "", "GET", "/api/status", nil); code != 200 {
		t.Fatalf("no token configured: %d", code)
	}
}

// Go's profiles are served on the admin listener under /api/debug/pprof/,
// behind the admin token like the rest of the API.
func TestPprofBehindAdminToken(t *testing.T) {
	n := startMQTTNode(t, "s3cret")
	if code, _ := call(t, n, "", "GET", "/api/debug/pprof/heap", nil); code != 401 {
		t.Fatalf("heap profile without the token: %d, want 401", code)
	}
	code, body := call(t, n, "s3cret", "GET", "/api/debug/pprof/heap", nil)
	if code != 200 || len(body) < 2 || body[0] != 0x1f || body[1] != 0x8b {
		t.Fatalf("heap profile with the token: %d, %d bytes (want 200, a gzipped profile)", code, len(body))
	}
	code, body = call(t, n, "s3cret", "GET", "/api/debug/pprof/goroutine?debug=1", nil)
	if code != 200 || !strings.Contains(string(body), "goroutine profile:") {
		t.Fatalf("goroutine dump: %d %.200s", code, body)
	}
}
