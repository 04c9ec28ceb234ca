package kafka

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	flog "ferry/log"
)

// TestKafkajsTutorial runs the kafkajs getting-started example
// (testbed/kafkajs/tutorial.js: keyed JSON events to user-events, a consumer
// in analytics-group printing partition, offset and event) against the
// broker, and checks that every event arrives, in order per key, on the
// partition Kafka's partitioner picks.
func TestKafkajsTutorial(t *testing.T) {
	node := requireTool(t, "node")
	dir, _ := filepath.Abs("../../testbed/kafkajs")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "kafkajs")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("kafkajs is not installed in %s (make deps runs npm ci there): %v", dir, err)
		}
		t.Skipf("kafkajs not installed in %s (make deps installs it)", dir)
	}
	b := startBroker(t, func(o *Options) { o.DefaultPartitions = 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const events = 30
	cmd := exec.CommandContext(ctx, node, "tutorial.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "FERRY_BROKER="+b.addr, "EVENTS=30")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("tutorial.js: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	}
	type line struct {
		Partition int32  `json:"partition"`
		Offset    string `json:"offset"`
		Key       string `json:"key"`
		Event     struct {
			UserID string `json:"userId"`
			Seq    int    `json:"seq"`
		} `json:"event"`
	}
	last := map[string]int{}
	n := 0
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var l line
		if !strings.HasPrefix(sc.Text(), "{") || json.Unmarshal(sc.Bytes(), &l) != nil || l.Event.UserID == "" {
			continue // kafkajs's own log lines
		}
		n++
		info, _ := b.log.Topic("user-events")
		// kafkajs's default partitioner is Java-compatible murmur2.
		if want := flog.PartitionForKey([]byte(l.Key), info.Partitions); l.Partition != want {
			t.Fatalf("key %s on partition %d, Kafka's partitioner says %d", l.Key, l.Partition, want)
		}
		if prev, ok := last[l.Key]; ok && l.Event.Seq <= prev {
			t.Fatalf("key %s out of order: %d after %d", l.Key, l.Event.Seq, prev)
		}
		last[l.Key] = l.Event.Seq
	}
	if n != events {
		t.Fatalf("the consumer printed %d of %d events:\n%s\n%s", n, events, out.String(), errOut.String())
	}
	committed, err := b.srv.opts.Groups.Committed("analytics-group")
	if err != nil || len(committed["user-events"]) == 0 {
		t.Fatalf("analytics-group committed nothing: %v %v", committed, err)
	}
}
