package adminapi

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"ferry/devices"
	"ferry/edge/cluster"
	"ferry/ingest/kafka"
	flog "ferry/log"
	"ferry/mirror"
)

// fakeNode is a Backend without a node: a log, and whatever parts a test
// gives it.
type fakeNode struct {
	log     *flog.Log
	ready   atomic.Bool
	cluster Cluster
}

func (f *fakeNode) Node() NodeInfo {
	return NodeInfo{Ready: f.ready.Load(), DataDir: "/data", DefaultPartitions: 3, Listeners: ListenersView{Kafka: "127.0.0.1:9092"}}
}
func (f *fakeNode) Log() *flog.Log                      { return f.log }
func (f *fakeNode) TopicAdmin() kafka.TopicAdmin        { return f.log }
func (f *fakeNode) Groups() Groups                      { return nil }
func (f *fakeNode) Devices() *devices.Registry          { return nil }
func (f *fakeNode) UserChanges() UserStore              { return nil }
func (f *fakeNode) MirrorSender() (mirror.Status, bool) { return mirror.Status{}, false }
func (f *fakeNode) MirrorReceiver() (mirror.ReceiverStatus, bool) {
	return mirror.ReceiverStatus{}, false
}
func (f *fakeNode) Cluster() Cluster { return f.cluster }

type fakeCluster struct{ im *cluster.Image }

func (c fakeCluster) Status() cluster.Status {
	return cluster.Status{Node: 2, Controller: 1, State: "Follower"}
}
func (c fakeCluster) Image() *cluster.Image { return c.im }

func newFake(t *testing.T) *fakeNode {
	t.Helper()
	l, err := flog.Open(flog.Options{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &fakeNode{log: l}
}

func get(t *testing.T, h http.Handler, method, path, token, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	b, _ := io.ReadAll(w.Result().Body)
	return w.Code, string(b)
}

// The API serves whatever Backend it is given, asking it per request: no
// node needed. Parts the backend does not run answer 404, the token
// guards /api/ and only /api/, and the node's figures come from NodeInfo.
func TestHandlerServesABackend(t *testing.T) {
	f := newFake(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "fake_node_total", Help: "a fake"}))
	history := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"samples":[]}`) })
	h := Handler(f, Config{Token: "t0k", Metrics: reg, History: history})

	for _, c := range []struct {
		method, path, token, body string
		code                      int
		want                      string
	}{
		{"GET", "/api/status", "", "", 401, "needs a token"},
		{"GET", "/api/debug/pprof/heap", "", "", 401, "needs a token"},
		{"GET", "/readyz", "", "", 503, "not ready"},
		{"GET", "/healthz", "", "", 200, "ok"},
		{"GET", "/metrics", "", "", 200, "fake_node_total"},
		{"GET", "/api/history", "t0k", "", 200, `"samples"`},
		{"GET", "/api/status", "t0k", "", 200, `"mode":"edge","version":"dev","ready":false`},
		{"GET", "/api/status", "t0k", "", 200, `"mqtt":[]`},
		{"GET", "/api/groups", "t0k", "", 404, "no consumer groups"},
		{"GET", "/api/devices", "t0k", "", 404, "no device registry"},
		{"GET", "/api/users", "t0k", "", 404, "no device registry"},
		{"GET", "/api/cluster", "t0k", "", 404, "not in a cluster"},
		{"GET", "/api/mirror", "t0k", "", 404, "mirrors nothing"},
		{"GET", "/api/mirror/edges", "t0k", "", 404, "receives nothing"},
		// A topic without a count gets the node's default, through
		// TopicAdmin.
		{"POST", "/api/topics", "t0k", `{"name":"telemetry"}`, 201, `"partition":2`},
		{"GET", "/api/topics/telemetry", "t0k", "", 200, `"effective_configs"`},
	} {
		if code, body := get(t, h, c.method, c.path, c.token, c.body); code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s %s: %d %s, want %d with %q", c.method, c.path, code, body, c.code, c.want)
		}
	}
	f.ready.Store(true)
	if code, body := get(t, h, "GET", "/readyz", "", ""); code != 200 || !strings.Contains(body, `"topics":1`) {
		t.Fatalf("/readyz once ready: %d %s", code, body)
	}
}

// GET /api/cluster is built from the backend's copy of the metadata: each
// broker with what it holds and leads, the partitions without a leader.
func TestClusterViewFromBackend(t *testing.T) {
	f := newFake(t)
	f.cluster = fakeCluster{&cluster.Image{
		Brokers: map[int32]*cluster.Broker{
			1: {ID: 1, Endpoints: map[string]string{"kafka": "h1:9092"}},
			2: {ID: 2, Endpoints: map[string]string{"kafka": "h2:9092"}, Fenced: true},
		},
		Topics: map[string]*cluster.Topic{
			"orders": {Name: "orders", Partitions: []cluster.PartitionState{
				{Replicas: []int32{1}, Leader: 1}, {Replicas: []int32{2}, Leader: cluster.NoLeader}, {Replicas: []int32{1}, Leader: 1}}},
		},
	}}
	code, body := get(t, Handler(f, Config{Metrics: prometheus.NewRegistry()}), "GET", "/api/cluster", "", "")
	var v ClusterView
	if err := json.Unmarshal([]byte(body), &v); code != 200 || err != nil {
		t.Fatalf("GET /api/cluster: %d %s %v", code, body, err)
	}
	if v.Node != 2 || v.Controller != 1 || v.Topics != 1 || v.Partitions != 3 || !slices.Equal(v.Offline, []string{"orders-1"}) || len(v.Brokers) != 2 ||
		v.Brokers[0].Replicas != 2 || v.Brokers[0].Leads != 2 || v.Brokers[0].Fenced ||
		v.Brokers[1].Replicas != 1 || v.Brokers[1].Leads != 0 || !v.Brokers[1].Fenced {
		t.Fatalf("GET /api/cluster: %s", body)
	}
}
