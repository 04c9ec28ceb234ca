package edge

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"ferry/ingest/kafka"
)

type throttleHook struct{ n atomic.Int64 }

func (h *throttleHook) OnBrokerThrottle(_ kgo.BrokerMetadata, d time.Duration, _ bool) {
	if d > 0 {
		h.n.Add(1)
	}
}

// The node passes --kafka-produce-quota and --kafka-idle-timeout to its
// Kafka listener: under SASL the quota is the user's (another user with
// the same client id is not throttled), and a silent connection is closed.
func TestKafkaLimitsThroughTheNode(t *testing.T) {
	n, err := Start(Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", AutoCreateTopics: true,
		KafkaSASL: []string{kafka.SASLSCRAMSHA256}, KafkaSuperUsers: []string{"alice", "bob"},
		KafkaProduceQuota: 1 << 10, KafkaIdleTimeout: 300 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	for _, u := range []string{"alice", "bob"} {
		if err := n.devices.AddUser(u, "pw-"+u); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	produce := func(user string, size int) int64 {
		var h throttleHook
		cl := scramClient(t, n, user, "pw-"+user, kgo.DefaultProduceTopic("metered"), kgo.AllowAutoTopicCreation(),
			kgo.ClientID("shared"), kgo.WithHooks(&h), kgo.ProducerBatchCompression(kgo.NoCompression()))
		v := make([]byte, size)
		rand.Read(v)
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: v}).FirstErr(); err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		return h.n.Load()
	}
	if got := produce("alice", 4<<10); got == 0 {
		t.Fatal("4 KiB at a 1 KiB/s quota was not throttled")
	}
	if got := produce("bob", 100); got != 0 {
		t.Fatal("another user, same client id, was throttled: the quota is not per user")
	}
	resp, err := http.Get("http://" + n.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "ferry_kafka_throttled_requests_total 1") {
		t.Fatalf("/metrics lacks the throttled request:\n%s", body)
	}

	c, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("a silent connection outlived --kafka-idle-timeout")
	}
}
