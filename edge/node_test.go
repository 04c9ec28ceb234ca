package edge

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"errors"
	"io"
	"log/slog"
	"net/http"
	"testing"

	flog "ferry/log"
)

func startTestNode(t *testing.T, dir string) *Node {
	t.Helper()
	n, err := Start(Options{DataDir: dir, AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", AutoCreateTopics: true, Logger: slog.New(slog.DiscardHandler),
		KafkaGroupInitialRebalanceDelay: 50 * time.Millisecond}) // not Kafka's 3 s for every new group
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// TestNodeServesKafka produces and consumes through the node's Kafka
// listener, and finds the traffic in /metrics.
func TestNodeServesKafka(t *testing.T) {
	n := startTestNode(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()), kgo.DefaultProduceTopic("edge-events"), kgo.AllowAutoTopicCreation(),
		kgo.ConsumeTopics("edge-events"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("dev1"), Value: []byte("21.5")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	fs := cl.PollFetches(ctx)
	if recs := fs.Records(); len(recs) != 1 || string(recs[0].Value) != "21.5" {
		t.Fatalf("consumed %v, errors %v", recs, fs.Errors())
	}
	resp, err := http.Get("http://" + n.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `ferry_kafka_requests_total{api="Produce"} 1`) {
		t.Fatalf("/metrics lacks the produce request:\n%s", body)
	}
}

func getJSON(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v in %q", url, err, b)
	}
	return resp.StatusCode, m
}

func TestNodeHealthAndReadiness(t *testing.T) {
	n := startTestNode(t, t.TempDir())
	if code, m := getJSON(t, "http://"+n.AdminAddr()+"/healthz"); code != 200 || m["status"] != "ok" {
		t.Fatalf("healthz: %d %v", code, m)
	}
	if code, m := getJSON(t, "http://"+n.AdminAddr()+"/readyz"); code != 200 || m["status"] != "ready" {
		t.Fatalf("readyz: %d %v", code, m)
	}
	// Not ready once shutdown begins; the handler answers 503 before the
	// listener goes.
	n.ready.Store(false)
	if code, _ := getJSON(t, "http://"+n.AdminAddr()+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz while stopping: %d", code)
	}
}

func TestNodeCloseFlushesAndReleasesTheDataDir(t *testing.T) {
	dir := t.TempDir()
	n := startTestNode(t, dir)
	if _, err := n.Log().CreateTopic("t", 1, nil); err != nil {
		t.Fatal(err)
	}
	p, _ := n.Log().Partition("t", 0)
	if _, err := p.Append(flog.AppendBatch(nil, []flog.Record{{Value: []byte("v"), Timestamp: 1}})); err != nil {
		t.Fatal(err)
	}
	addr := n.AdminAddr()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Fatal("admin listener still accepting after Close")
	}
	// The directory is free again and holds the record.
	l, err := flog.Open(flog.Options{Dir: LogDir(dir), RetentionCheckInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p2, _ := l.Partition("t", 0)
	if p2.EndOffset() != 1 {
		t.Fatalf("end offset %d after restart", p2.EndOffset())
	}
}

func TestNodeRefusesAHeldDataDir(t *testing.T) {
	dir := t.TempDir()
	startTestNode(t, dir)
	_, err := Start(Options{DataDir: dir, AdminAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if !errors.Is(err, flog.ErrDataDirLocked) {
		t.Fatalf("second node on the same dir: %v", err)
	}
}

// TestCommittedOffsetsSurviveANodeRestart commits a group's offsets through
// the Kafka listener, restarts the node on the same data directory, and
// reads them back.
func TestCommittedOffsetsSurviveANodeRestart(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := startTestNode(t, dir)
	n.Log().CreateTopic("orders", 2, nil)
	cl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()))
	if err != nil {
		t.Fatal(err)
	}
	offs := kadm.Offsets{}
	offs.AddOffset("orders", 0, 17, -1)
	offs.AddOffset("orders", 1, 4, -1)
	if resp, err := kadm.NewClient(cl).CommitOffsets(ctx, "billing", offs); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", resp, err)
	}
	cl.Close()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n2 := startTestNode(t, dir)
	cl2, err := kgo.NewClient(kgo.SeedBrokers(n2.KafkaAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	got, err := kadm.NewClient(cl2).FetchOffsets(ctx, "billing")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := got.Lookup("orders", 0); o.At != 17 {
		t.Fatalf("orders-0 committed %d after restart, want 17", o.At)
	}
	if o, _ := got.Lookup("orders", 1); o.At != 4 {
		t.Fatalf("orders-1 committed %d after restart, want 4", o.At)
	}
}
