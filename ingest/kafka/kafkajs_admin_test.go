package kafka

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestKafkajsAdmin runs testbed/kafkajs/admin.js: kafkajs's
// deleteTopicRecords moves the low watermark fetchTopicOffsets reports and
// is refused past the end (OFFSET_OUT_OF_RANGE); alterConfigs and
// describeConfigs work on a topic (compression.type honoured) and on the
// broker (log.retention.ms dynamic; num.partitions read-only, refused with
// INVALID_REQUEST).
func TestKafkajsAdmin(t *testing.T) {
	node := requireTool(t, "node")
	dir, _ := filepath.Abs("../../testbed/kafkajs")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "kafkajs")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("kafkajs is not installed in %s (make deps runs npm ci there): %v", dir, err)
		}
		t.Skipf("kafkajs not installed in %s (make deps installs it)", dir)
	}
	b := startBroker(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "admin.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "FERRY_BROKER="+b.addr, "FERRY_NODE_ID=0")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("admin.js: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	}
	type entry struct {
		ConfigName  string `json:"configName"`
		ConfigValue string `json:"configValue"`
		ReadOnly    bool   `json:"readOnly"`
		ConfigSrc   int    `json:"configSource"`
	}
	var got struct {
		AfterDelete []struct {
			Partition int    `json:"partition"`
			Low       string `json:"low"`
			High      string `json:"high"`
		} `json:"afterDelete"`
		PastEnd       []string `json:"pastEnd"`
		TopicConfigs  []entry  `json:"topicConfigs"`
		BrokerConfigs []entry  `json:"brokerConfigs"`
		ReadOnly      string   `json:"readOnly"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &got); err != nil {
		t.Fatalf("admin.js printed %q: %v", out.String(), err)
	}
	if len(got.AfterDelete) != 1 || got.AfterDelete[0].Low != "4" || got.AfterDelete[0].High != "10" {
		t.Fatalf("fetchTopicOffsets after deleteTopicRecords: %+v, want low 4 high 10", got.AfterDelete)
	}
	if len(got.PastEnd) != 1 || got.PastEnd[0] != "OFFSET_OUT_OF_RANGE" {
		t.Fatalf("deleteTopicRecords past the end: %v, want OFFSET_OUT_OF_RANGE", got.PastEnd)
	}
	cfg := func(es []entry) map[string]entry {
		m := map[string]entry{}
		for _, e := range es {
			m[e.ConfigName] = e
		}
		return m
	}
	tc := cfg(got.TopicConfigs)
	if tc["retention.ms"].ConfigValue != "3600000" || tc["compression.type"].ConfigValue != "zstd" || tc["cleanup.policy"].ConfigValue != "delete" {
		t.Fatalf("topic configs: %+v", tc)
	}
	bc := cfg(got.BrokerConfigs)
	if e := bc["log.retention.ms"]; e.ConfigValue != "60000" || e.ReadOnly {
		t.Fatalf("broker log.retention.ms: %+v", e)
	}
	if e := bc["num.partitions"]; !e.ReadOnly {
		t.Fatalf("broker num.partitions: %+v, want read-only", e)
	}
	if got.ReadOnly != "INVALID_REQUEST" {
		t.Fatalf("altering num.partitions: %q, want INVALID_REQUEST", got.ReadOnly)
	}
	if c, _ := b.log.TopicConfig("js-admin"); c.Compression != 4 {
		t.Fatalf("js-admin compression after alterConfigs: %d", c.Compression)
	}
}
