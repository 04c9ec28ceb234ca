package log

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

// compression.type other than producer stores every batch in the topic's
// codec whatever the client sent: the records (offsets, timestamps, keys,
// values) are the client's, the CRC is valid, and producer keeps the
// client's bytes.
func TestCompressionTypeRecompressesOnAppend(t *testing.T) {
	l := openTestLog(t, Options{})
	sources := map[string][]byte{"uncompressed": testBatch(5, 1000, "v")}
	for c := int8(1); c <= 4; c++ {
		sources[codecNames[c]] = compressedBatch(t, c, 4, 3000)
	}
	for target, want := range compressionCodecs {
		topic := "ct-" + target
		if _, err := l.CreateTopic(topic, 1, map[string]string{ConfigCompressionType: target}); err != nil {
			t.Fatal(err)
		}
		p, _ := l.Partition(topic, 0)
		for name, src := range sources {
			src = bytes.Clone(src)
			_, wantRecs, err := DecodeRecords(src)
			if err != nil {
				t.Fatal(err)
			}
			srcCodec := int8(src[offAttributes+1] & codecMask)
			res, err := p.Append(bytes.Clone(src))
			if err != nil {
				t.Fatalf("%s into %s: %v", name, target, err)
			}
			rr, err := p.Read(res.BaseOffset, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			h, err := ParseBatch(rr.Data) // the CRC too
			if err != nil {
				t.Fatalf("%s into %s: %v", name, target, err)
			}
			stored := rr.Data[:h.Length]
			wantCodec := want
			if want == compressionProducer {
				wantCodec = srcCodec
			}
			if h.Codec() != wantCodec {
				t.Fatalf("%s into %s: stored as codec %d, want %d", name, target, h.Codec(), wantCodec)
			}
			if wantCodec == srcCodec && !bytes.Equal(stored[offMagic:], src[offMagic:]) {
				t.Fatalf("%s into %s: a batch already in the topic's codec was rewritten", name, target)
			}
			if _, err := ValidateBatch(stored); err != nil {
				t.Fatalf("%s into %s: stored batch invalid: %v", name, target, err)
			}
			_, got, err := DecodeRecords(stored)
			if err != nil {
				t.Fatalf("%s into %s: %v", name, target, err)
			}
			for i := range wantRecs {
				wantRecs[i].Offset += res.BaseOffset
			}
			if !reflect.DeepEqual(got, wantRecs) {
				t.Fatalf("%s into %s: records differ:\n got %+v\nwant %+v", name, target, got[:1], wantRecs[:1])
			}
		}
	}
	if _, err := l.CreateTopic("ct-bad", 1, map[string]string{ConfigCompressionType: "brotli"}); err == nil {
		t.Fatal("compression.type=brotli accepted")
	}
}

// A batch whose recompression no longer fits max.message.bytes is refused
// (ErrBatchTooLarge), as in Kafka.
func TestRecompressedBatchOverMaxMessageBytes(t *testing.T) {
	l := openTestLog(t, Options{})
	if _, err := l.CreateTopic("ct", 1, map[string]string{ConfigCompressionType: "uncompressed", ConfigMaxMessageBytes: "10000"}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("ct", 0)
	src := compressedBatch(t, 4, 4, 3000) // small compressed, 12 kB of records
	if len(src) > 10000 {
		t.Fatalf("fixture of %d bytes", len(src))
	}
	if _, err := p.Append(src); !errors.Is(err, ErrBatchTooLarge) {
		t.Fatalf("%v, want ErrBatchTooLarge", err)
	}
}

// message.timestamp.type=LogAppendTime: each appended batch carries the
// append time as its MaxTimestamp with the LogAppendTime bit, so every
// record reads as appended then; the time index and ListOffsets by time
// go by it; CreateTime keeps the producer's.
func TestLogAppendTimeStampsTheAppend(t *testing.T) {
	clock := &fakeClock{}
	clock.set(time.UnixMilli(5_000_000))
	l := openTestLog(t, Options{Now: clock.now})
	if _, err := l.CreateTopic("lat", 1, map[string]string{ConfigMessageTimestampType: "LogAppendTime", ConfigCompressionType: "lz4"}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateTopic("ct", 1, map[string]string{ConfigMessageTimestampType: "CreateTime"}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("lat", 0)
	res, err := p.Append(testBatch(3, 1000, "a")) // stamped 1000..1002 by the producer
	if err != nil {
		t.Fatal(err)
	}
	if res.LogAppendTime != 5_000_000 {
		t.Fatalf("append result's LogAppendTime %d, want 5000000", res.LogAppendTime)
	}
	rr, _ := p.Read(0, 1, nil)
	h, recs, err := DecodeRecords(rr.Data)
	if err != nil {
		t.Fatal(err)
	}
	if h.Attributes&attrLogAppendTime == 0 || h.MaxTimestamp != 5_000_000 || h.Codec() != 3 {
		t.Fatalf("stored header: attributes %#x, max timestamp %d", h.Attributes, h.MaxTimestamp)
	}
	for _, r := range recs {
		if r.Timestamp != 5_000_000 {
			t.Fatalf("record %d reads as %d, want the append time", r.Offset, r.Timestamp)
		}
	}
	if off, ts, err := p.OffsetForTime(4_000_000); err != nil || off != 0 || ts != 5_000_000 {
		t.Fatalf("by time: %d at %d, %v", off, ts, err)
	}
	c, _ := l.Partition("ct", 0)
	if res, err := c.Append(testBatch(1, 1000, "b")); err != nil || res.LogAppendTime != 0 {
		t.Fatalf("CreateTime append: %+v %v", res, err)
	}
	rr, _ = c.Read(0, 1, nil)
	if _, recs, _ := DecodeRecords(rr.Data); len(recs) != 1 || recs[0].Timestamp != 1000 {
		t.Fatalf("CreateTime record: %+v", recs)
	}
	if _, err := l.CreateTopic("bad", 1, map[string]string{ConfigMessageTimestampType: "Now"}); err == nil {
		t.Fatal("message.timestamp.type=Now accepted")
	}
}
