package edge

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestPartitionCapsOnEveryPath: the caps on partitions per topic and per
// node answer 400 on the admin API and INVALID_PARTITIONS or
// POLICY_VIOLATION on Kafka's CreateTopics and CreatePartitions, and a
// refused create leaves no directory behind.
func TestPartitionCapsOnEveryPath(t *testing.T) {
	n, err := Start(Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0",
		MaxPartitionsPerTopic: 8, MaxPartitions: 12, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	code, body := call(t, n, "", http.MethodPost, "/api/topics", map[string]any{"name": "huge", "partitions": 10000})
	if code != http.StatusBadRequest || !strings.Contains(string(body), "max-partitions-per-topic") {
		t.Errorf("admin create of 10000 partitions: %d %s, want 400 naming the cap", code, body)
	}
	if code, body := call(t, n, "", http.MethodPost, "/api/topics", map[string]any{"name": "a", "partitions": 8}); code >= 300 {
		t.Fatalf("admin create: %d %s", code, body)
	}
	code, body = call(t, n, "", http.MethodPost, "/api/topics/a/partitions", map[string]any{"partitions": 9})
	if code != http.StatusBadRequest {
		t.Errorf("admin grow past the cap per topic: %d %s, want 400", code, body)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	vr, err := adm.ValidateCreateTopics(ctx, 9, 1, nil, "k9")
	if err != nil {
		t.Fatal(err)
	}
	if r := vr["k9"]; r.Err != kerr.InvalidPartitions {
		t.Errorf("validate-only CreateTopics of 9 with a cap of 8 per topic: %v, want INVALID_PARTITIONS", r.Err)
	}
	res, err := adm.CreateTopic(ctx, 9, 1, nil, "k9")
	if err != nil && res.Err == nil {
		t.Fatal(err)
	}
	if res.Err != kerr.InvalidPartitions {
		t.Errorf("CreateTopics of 9 with a cap of 8 per topic: %v, want INVALID_PARTITIONS", res.Err)
	}
	res, err = adm.CreateTopic(ctx, 5, 1, nil, "k5") // 8 + 5 > 12
	if err != nil && res.Err == nil {
		t.Fatal(err)
	}
	if res.Err != kerr.PolicyViolation {
		t.Errorf("CreateTopics past the node's cap: %v, want POLICY_VIOLATION", res.Err)
	}
	if res, err := adm.CreateTopic(ctx, 4, 1, nil, "k4"); err != nil || res.Err != nil {
		t.Fatalf("CreateTopics within the caps: %v %v", err, res.Err)
	}
	pr, err := adm.UpdatePartitions(ctx, 5, "k4")
	if err != nil {
		t.Fatal(err)
	}
	if r := pr["k4"]; r.Err != kerr.PolicyViolation {
		t.Errorf("CreatePartitions past the node's cap: %v, want POLICY_VIOLATION", r.Err)
	}
	entries, err := os.ReadDir(LogDir(n.opts.DataDir))
	if err != nil {
		t.Fatal(err)
	}
	var dirs int
	for _, e := range entries {
		if e.IsDir() {
			dirs++
		}
	}
	if dirs != 12 {
		t.Errorf("%d partition directories, want the 12 of a and k4", dirs)
	}
}
