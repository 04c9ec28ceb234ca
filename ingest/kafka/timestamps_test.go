package kafka

import (
	"bytes"
	"encoding/binary"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// rawBatch builds a RecordBatch as a client library writes it, with the
// header timestamps it chose (first, max) and one record per timestamp
// delta, lz4-compressed when lz4 is set. For CreateTime -1 librdkafka writes
// first -1, max 0 and deltas 0.
func rawBatch(t *testing.T, first, max int64, deltas []int64, lz4 bool) []byte {
	t.Helper()
	var body []byte
	for i, d := range deltas {
		r := kmsg.Record{TimestampDelta64: d, OffsetDelta: int32(i), Value: []byte("reading")}
		enc := r.AppendTo(nil) // a length of 0 (one byte) in front
		body = binary.AppendVarint(body, int64(len(enc)-1))
		body = append(body, enc[1:]...)
	}
	var attrs int16
	if lz4 {
		c, err := kgo.DefaultCompressor(kgo.Lz4Compression())
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		out, codec := c.Compress(&buf, body)
		body, attrs = append([]byte(nil), out...), int16(codec)
	}
	rb := kmsg.RecordBatch{
		Length: int32(49 + len(body)), Magic: 2, Attributes: attrs,
		LastOffsetDelta: int32(len(deltas) - 1), FirstTimestamp: first, MaxTimestamp: max,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: int32(len(deltas)), Records: body,
	}
	b := rb.AppendTo(nil)
	recomputeCRC(b)
	return b
}

// TestRecordsWithoutTimestampsSurviveRetention: librdkafka producing with
// CreateTime -1 sends batches whose header says MaxTimestamp 0 (1970); a
// batch mixing records without a timestamp and records from half an hour
// ago (lz4); and one from 2100. Produced through the Kafka listener into
// topics with retention.ms of an hour, with retention passes driven by the
// log's clock: every record is consumable a minute later (the pass
// deleted all 200), the mixed batch goes once its newest real timestamp is
// an hour old, the others once their write is (Kafka ages a segment without
// timestamps by its last write; ferry does the same for one from the
// future), and a lookup by time finds only records that carry one.
func TestRecordsWithoutTimestampsSurviveRetention(t *testing.T) {
	t0 := time.Now().Truncate(time.Millisecond)
	var clockMs atomic.Int64
	clockMs.Store(t0.UnixMilli())
	b := startBrokerLog(t, func(o *flog.Options) { o.Now = func() time.Time { return time.UnixMilli(clockMs.Load()) } }, nil, nil)

	halfHourAgo := t0.Add(-30 * time.Minute).UnixMilli()
	year2100 := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	const n = 200
	mixed := make([]int64, n) // even records: none; odd: half an hour ago
	for i := 1; i < n; i += 2 {
		mixed[i] = halfHourAgo + 1 // delta from the first record's -1
	}
	cases := []struct {
		topic string
		batch []byte
		goes  time.Duration // after t0
	}{
		{"notime", rawBatch(t, -1, 0, make([]int64, n), false), time.Hour},
		{"mixed", rawBatch(t, -1, halfHourAgo, mixed, true), 30 * time.Minute},
		{"future", rawBatch(t, year2100, year2100, make([]int64, n), false), time.Hour},
	}
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 5000
	for _, c := range cases {
		if _, err := b.log.CreateTopic(c.topic, 1, map[string]string{flog.ConfigRetentionMs: "3600000"}); err != nil {
			t.Fatal(err)
		}
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = c.topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = c.batch
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
	}
	cl := b.client(t)
	resp, err := req.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range resp.Topics {
		if code := rt.Partitions[0].ErrorCode; code != 0 {
			t.Fatalf("produce to %s: error %d", rt.Topic, code)
		}
	}

	// ListOffsets by time: the records without a timestamp are never the
	// answer; the mixed batch's first real record is.
	lreq := kmsg.NewPtrListOffsetsRequest()
	lreq.ReplicaID = -1
	for _, topic := range []string{"notime", "mixed"} {
		lt := kmsg.NewListOffsetsRequestTopic()
		lt.Topic = topic
		lp := kmsg.NewListOffsetsRequestTopicPartition()
		lp.Timestamp = 0
		lt.Partitions = append(lt.Partitions, lp)
		lreq.Topics = append(lreq.Topics, lt)
	}
	lresp, err := lreq.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]int64{"notime": {-1, -1}, "mixed": {1, halfHourAgo}}
	for _, lt := range lresp.Topics {
		p := lt.Partitions[0]
		if w := want[lt.Topic]; p.ErrorCode != 0 || p.Offset != w[0] || p.Timestamp != w[1] {
			t.Errorf("ListOffsets(%s, 0) = offset %d at %d (error %d), want %d at %d", lt.Topic, p.Offset, p.Timestamp, p.ErrorCode, w[0], w[1])
		}
	}

	pass := func(after time.Duration) {
		t.Helper()
		clockMs.Store(t0.Add(after).UnixMilli())
		if _, err := b.log.EnforceRetention(); err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			p, err := b.log.Partition(c.topic, 0)
			if err != nil {
				t.Fatal(err)
			}
			kept, wantKept := p.StartOffset() == 0 && p.EndOffset() == n, after < c.goes
			if kept != wantKept {
				t.Errorf("retention pass %v after the write: %s holds [%d, %d), kept=%v, want kept=%v",
					after, c.topic, p.StartOffset(), p.EndOffset(), kept, wantKept)
			}
		}
	}
	pass(time.Minute)
	for _, c := range cases {
		if got := len(consume(t, b, c.topic, n)); got != n {
			t.Fatalf("consumed %d of %d records of %s", got, n, c.topic)
		}
	}
	pass(29 * time.Minute)
	pass(31 * time.Minute)
	pass(59 * time.Minute)
	pass(61 * time.Minute)
}
