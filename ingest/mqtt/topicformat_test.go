package mqtt

import (
	"testing"

	"github.com/eclipse/paho.golang/paho"

	flog "ferry/log"
)

// MQTT ingest appends through the log as Kafka produce does, so a topic's
// compression.type and message.timestamp.type apply to what devices
// publish: stored zstd-compressed, flagged LogAppendTime.
func TestMQTTIngestHonoursTopicFormatConfigs(t *testing.T) {
	b := startBroker(t, "", nil)
	if err := b.log.AlterConfigs("mqtt", map[string]string{
		flog.ConfigCompressionType: "zstd", flog.ConfigMessageTimestampType: "LogAppendTime"}, nil); err != nil {
		t.Fatal(err)
	}
	c := b.connect(t, &paho.Connect{ClientID: "dev1", CleanStart: true}, nil)
	pub(t, c, &paho.Publish{Topic: "elsewhere/dev1", QoS: 1, Payload: []byte(`{"t":21.5}`)})
	n, _ := b.log.PartitionCount("mqtt")
	p, _ := b.log.Partition("mqtt", flog.PartitionForKey([]byte("dev1"), n))
	rr, err := p.Read(0, 1, nil)
	if err != nil || len(rr.Data) == 0 {
		t.Fatalf("read: %v", err)
	}
	h, recs, err := flog.DecodeRecords(rr.Data)
	if err != nil {
		t.Fatal(err)
	}
	if h.Codec() != 4 || h.Attributes&0x08 == 0 {
		t.Fatalf("stored attributes %#x: want zstd (4) with the LogAppendTime bit (0x08)", h.Attributes)
	}
	if len(recs) != 1 || string(recs[0].Value) != `{"t":21.5}` || recs[0].Timestamp != h.MaxTimestamp {
		t.Fatalf("records %+v, max timestamp %d", recs, h.MaxTimestamp)
	}
}
