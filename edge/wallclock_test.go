package edge

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"ferry/ingest/mqtt"
	flog "ferry/log"
)

// TestNodeWallClockSeam: a node whose wall clock (Options.Now, what
// --debug-wall-clock-offset sets) runs ten minutes ahead of the machine's
// stamps by it what it stamps (a LogAppendTime topic's produce, an MQTT
// publish's ingest time, the presence event of its connect), ages
// segments by it (a CreateTime record stamped by the machine's clock is
// ten minutes old to this node, so retention.ms of five minutes deletes
// it, Kafka's rule), while the Kafka and MQTT sessions, timed on Go's
// monotonic clock, go on as usual.
func TestNodeWallClockSeam(t *testing.T) {
	const skew = 10 * time.Minute
	n, err := Start(Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
		AutoCreateTopics: true, MQTT: mqtt.Options{DefaultTopic: "mqtt", PresenceTopic: "presence"}, Logger: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return time.Now().Add(skew) }})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ahead := func(what string, ts int64, before time.Time) {
		t.Helper()
		lo, hi := before.Add(skew).UnixMilli(), time.Now().Add(skew).UnixMilli()
		if ts < lo || ts > hi {
			t.Errorf("%s: timestamp %v, want the node's clock, between %v and %v", what, time.UnixMilli(ts).UTC(), time.UnixMilli(lo).UTC(), time.UnixMilli(hi).UTC())
		}
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	appendTime, fiveMin := "LogAppendTime", "300000"
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"message.timestamp.type": &appendTime}, "stamped"); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"retention.ms": &fiveMin}, "aged"); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	for _, topic := range []string{"stamped", "aged"} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("v"), Timestamp: before}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	read := func(topic string) flog.DecodedRecord {
		t.Helper()
		p, err := n.log.Partition(topic, 0)
		if err != nil {
			t.Fatal(err)
		}
		var recs []flog.DecodedRecord
		waitUntil(t, topic+" appended to", func() bool { return p.EndOffset() > 0 })
		rr, err := p.Read(p.StartOffset(), 1<<20, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, recs, err = flog.DecodeRecords(rr.Data); err != nil || len(recs) == 0 {
			t.Fatalf("%s: %v, %d records", topic, err, len(recs))
		}
		return recs[0]
	}
	ahead("the stored LogAppendTime record", read("stamped").Timestamp, before)

	before = time.Now()
	pub, _, err := mqttConnect(t, n.MQTTAddrs()[0], &paho.Connect{ClientID: "dev1", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, &paho.Publish{Topic: "factory/line1/temp", QoS: 1, Payload: []byte("21.5")}); err != nil {
		t.Fatal(err)
	}
	pub.Disconnect(&paho.Disconnect{})
	ahead("the MQTT ingest timestamp", read("mqtt").Timestamp, before)
	ahead("the presence event", read("presence").Timestamp, before)

	aged, err := n.log.Partition("aged", 0)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := n.log.EnforceRetention(); err != nil || aged.StartOffset() != 1 {
		t.Fatalf("retention: %+v, %v; the aged topic starts at %d, want 1: a record stamped %v is ten minutes old by the node's clock, past retention.ms of 5 min",
			res, err, aged.StartOffset(), before.UTC())
	}
}
