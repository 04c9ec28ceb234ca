package kafka

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// TestCompressionTypeAndLogAppendTime, with franz-go: a topic with
// compression.type=zstd stores a snappy producer's batches as zstd, and a
// consumer reads the producer's records; a topic with
// message.timestamp.type=LogAppendTime answers the produce with the append
// time, and a consumer sees each record at that time, flagged as
// LogAppendTime. Both set through kadm, as a Kafka tool would.
func TestCompressionTypeAndLogAppendTime(t *testing.T) {
	b := startBroker(t, nil)
	ctx := ctxT(t)
	adm := kadm.NewClient(b.client(t))
	for topic, cfg := range map[string]map[string]*string{
		"zs":  {"compression.type": kmsg.StringPtr("zstd")},
		"lat": {"message.timestamp.type": kmsg.StringPtr("LogAppendTime")},
	} {
		if r, err := adm.CreateTopic(ctx, 1, 1, cfg, topic); err != nil || r.Err != nil {
			t.Fatalf("create %s: %+v %v", topic, r, err)
		}
	}
	prod := b.client(t, kgo.ProducerBatchCompression(kgo.SnappyCompression()), kgo.ProducerLinger(0))
	old := time.Now().Add(-24 * time.Hour)
	var recs []*kgo.Record
	for i := range 20 {
		recs = append(recs, &kgo.Record{Topic: "zs", Key: []byte(fmt.Sprint(i)), Value: bytes.Repeat([]byte{byte('a' + i)}, 200), Timestamp: old.Add(time.Duration(i) * time.Millisecond)})
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Millisecond)
	lat := &kgo.Record{Topic: "lat", Value: []byte("x"), Timestamp: old}
	if err := prod.ProduceSync(ctx, lat).FirstErr(); err != nil {
		t.Fatal(err)
	}
	after := time.Now().Add(time.Millisecond)

	p, _ := b.log.Partition("zs", 0)
	for off := int64(0); off < p.EndOffset(); {
		rr, err := p.Read(off, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		h, err := flog.ParseBatch(rr.Data)
		if err != nil {
			t.Fatal(err)
		}
		if h.Codec() != 4 {
			t.Fatalf("batch at %d stored as codec %d, want zstd (4)", off, h.Codec())
		}
		off = h.LastOffset() + 1
	}

	cons := b.client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		"zs": {0: kgo.NewOffset().AtStart()}, "lat": {0: kgo.NewOffset().AtStart()}}))
	var got []*kgo.Record
	for len(got) < 21 {
		fs := cons.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		got = append(got, fs.Records()...)
	}
	i := 0
	for _, r := range got {
		if r.Topic == "lat" {
			if r.Attrs.TimestampType() != 1 || r.Timestamp.Before(before) || r.Timestamp.After(after) {
				t.Fatalf("LogAppendTime record: type %d at %v, want 1 between %v and %v", r.Attrs.TimestampType(), r.Timestamp, before, after)
			}
			continue
		}
		w := recs[i]
		if string(r.Key) != string(w.Key) || !bytes.Equal(r.Value, w.Value) || !r.Timestamp.Equal(w.Timestamp) || r.Offset != int64(i) {
			t.Fatalf("record %d: %s@%d %v, want %s %v", i, r.Key, r.Offset, r.Timestamp, w.Key, w.Timestamp)
		}
		i++
	}

	// The produce answer carries the append time (LogAppendTime, v2+).
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "lat"
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = flog.AppendBatch(nil, []flog.Record{{Value: []byte("y"), Timestamp: old.UnixMilli()}})
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	start := time.Now().UnixMilli()
	resp, err := req.RequestWith(ctx, b.client(t))
	if err != nil {
		t.Fatal(err)
	}
	if at := resp.Topics[0].Partitions[0].LogAppendTime; at < start || at > time.Now().UnixMilli() {
		t.Fatalf("produce answered LogAppendTime %d, want the append time (>= %d)", at, start)
	}
}
