package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"ferry/ingest/mqtt"
	flog "ferry/log"
	"ferry/mirror"
)

// With the disk budget full of records the center has not acknowledged
// (here the center is never reachable), producers get back-pressure: Kafka
// THROTTLING_QUOTA_EXCEEDED, MQTT 5 PUBACK "quota exceeded". Nothing is
// dropped.
func TestDiskBudgetBackPressure(t *testing.T) {
	n, err := Start(Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
		AutoCreateTopics: true, MaxDiskBytes: 2 << 20, Logger: slog.New(slog.DiscardHandler),
		MQTT:     mqtt.Options{Rules: []mqtt.Rule{{Filter: "factory/+site/+device/telemetry", Topic: "telemetry", Key: "{device}"}}},
		MirrorTo: mirror.SenderOptions{Center: "127.0.0.1:1", EdgeID: "gw1", Token: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Log().AlterConfigs("telemetry", map[string]string{flog.ConfigSegmentBytes: "1048576"}, nil); err != nil {
		t.Fatal(err)
	}
	p, _ := n.Log().Partition("telemetry", 0)
	// 3 MB: the budget pass appends ask for may block the last ones.
	for i := 0; i < 30; i++ {
		if _, err := p.Append(flog.AppendBatch(nil, []flog.Record{{Value: []byte(fmt.Sprintf("%0100000d", i)), Timestamp: time.Now().UnixMilli()}})); err != nil && !errors.Is(err, flog.ErrDiskBudget) {
			t.Fatal(err)
		}
	}
	if _, blocked := n.Log().EnforceBudget(); !blocked {
		t.Fatal("unshipped records over a 2 MB budget did not block")
	}
	before := p.EndOffset()

	cl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()), kgo.DefaultProduceTopic("telemetry"), kgo.RecordRetries(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr(); !errors.Is(err, kerr.ThrottlingQuotaExceeded) {
		t.Errorf("Kafka produce over the budget: %v, want THROTTLING_QUOTA_EXCEEDED", err)
	}

	c, _, err := mqttConnect(t, n.MQTTAddrs()[0], &paho.Connect{ClientID: "dev1", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	resp, err := c.Publish(ctx, &paho.Publish{Topic: "factory/a/dev1/telemetry", QoS: 1, Payload: []byte("21.5")})
	if err == nil || resp == nil || resp.ReasonCode != 0x97 {
		t.Errorf("MQTT 5 publish over the budget: %+v %v, want PUBACK 0x97", resp, err)
	}
	if p.EndOffset() != before || p.StartOffset() != 0 {
		t.Fatalf("the log changed while blocked: [%d, %d), was [0, %d)", p.StartOffset(), p.EndOffset(), before)
	}
	if got := scrape(t, n, "ferry_log_appends_blocked"); got != 1 {
		t.Errorf("ferry_log_appends_blocked = %v while blocked", got)
	}
	if used, budget := scrape(t, n, "ferry_log_disk_bytes"), scrape(t, n, "ferry_log_disk_budget_bytes"); budget != 2<<20 || used <= budget {
		t.Errorf("ferry_log_disk_bytes %v against ferry_log_disk_budget_bytes %v while blocked", used, budget)
	}
}
