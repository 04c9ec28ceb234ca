package edge

import (
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

	"ferry/edge/statuspage"
	"ferry/ingest/mqtt"
)

// TestStatusHistory: the node's sampler records what the node does —
// records in, Kafka records served, MQTT messages delivered, devices
// online, disk used and consumer lag — and GET /api/history serves it,
// beside the page at /.
func TestStatusHistory(t *testing.T) {
	n, err := Start(Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
		AutoCreateTopics: true, MQTT: mqtt.Options{DefaultTopic: "mqtt"}, StatusInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// 10 records over Kafka, a group committed at 4, all read back once.
	cl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()), kgo.DefaultProduceTopic("events"), kgo.AllowAutoTopicCreation(),
		kgo.ConsumeTopics("events"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 10 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	var offs kadm.Offsets
	offs.Add(kadm.Offset{Topic: "events", Partition: 0, At: 4, LeaderEpoch: -1})
	if resp, err := kadm.NewClient(cl).CommitOffsets(ctx, "readers", offs); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", err, resp.Error())
	}
	for read := 0; read < 10; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("reading the records back: ", ctx.Err())
		}
		read += len(fs.Records())
	}

	// Over MQTT: a subscriber and a publisher online, one message stored
	// (into "mqtt") and delivered to the subscriber.
	sub, _, err := mqttConnect(t, n.MQTTAddrs()[0], &paho.Connect{ClientID: "sub", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Disconnect(&paho.Disconnect{})
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "room/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	pub, _, err := mqttConnect(t, n.MQTTAddrs()[0], &paho.Connect{ClientID: "pub", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Disconnect(&paho.Disconnect{})
	if _, err := pub.Publish(ctx, &paho.Publish{Topic: "room/1", QoS: 1, Payload: []byte("21.5")}); err != nil {
		t.Fatal(err)
	}

	url := "http://" + n.AdminAddr()
	var last statuspage.Sample
	deadline := time.Now().Add(20 * time.Second)
	for {
		h := getHistory(t, url+"/api/history")
		if h.IntervalSeconds != 0.02 || h.Node.Mode != "edge" || h.Node.KafkaAddr != n.KafkaAddr() {
			t.Fatalf("history of %+v every %v s", h.Node, h.IntervalSeconds)
		}
		last = h.Samples[len(h.Samples)-1]
		if last.RecordsIn == 11 && last.KafkaOut >= 10 && last.MQTTOut >= 1 && last.DevicesOnline == 2 &&
			last.ConsumerLag == 6 && last.GroupLag["readers"] == 6 && last.DiskBytes > 0 && last.Mirror == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("latest sample %+v, want 11 records in, ≥10 Kafka and ≥1 MQTT out, 2 devices online, lag 6, disk used", last)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if last.KafkaOut != 10 {
		t.Errorf("Kafka records out %d, want 10: each record was read once", last.KafkaOut)
	}

	resp, err := http.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "<title>ferry status</title>") {
		t.Fatalf("GET /: %d %.200s", resp.StatusCode, body)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
}

func getHistory(t *testing.T, url string) statuspage.History {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h statuspage.History
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	if len(h.Samples) == 0 {
		t.Fatal("no samples: the sampler records one at start")
	}
	return h
}
