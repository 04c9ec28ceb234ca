package mirror

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
	"ferry/mirror/wire"
)

// rejectedChunks is the receiver's count of refusals, every reason
// (ferry_mirror_receiver_rejected_total).
func rejectedChunks(t testing.TB, r *Receiver) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(r.metrics.rejected)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			n += m.GetCounter().GetValue()
		}
	}
	return n
}

var batchEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))

// zstdBatch is an uncompressed batch as a producer compressing with zstd
// sends it: its records compressed, codec 4 in its attributes, its CRC
// computed anew.
func zstdBatch(t testing.TB, plain []byte) []byte {
	const headerSize = 61 // up to the records
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(plain); err != nil {
		t.Fatal(err)
	}
	rb.Attributes |= 4
	rb.Records = batchEncoder.EncodeAll(plain[headerSize:], nil)
	rb.Length = int32(headerSize - 12 + len(rb.Records))
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[17:], wire.Checksum(b[21:]))
	return b
}

// Issue 13: an edge shipping several partitions live, under ingest, over a
// clean link had chunks refused by the center (zstd: CRC check failed,
// unexpected EOF, match offset bigger than current history), each one
// dropping the link. Four partitions take a few thousand records a second
// for a bounded time while the sender ships them as they become durable;
// the center must refuse nothing, the link must never fail, and the copy
// must end exact. MIRROR_LIVE_SECONDS sets the run (default 10).
func TestMirrorLiveUnderIngestRefusesNothing(t *testing.T) {
	run := 10 * time.Second
	if v, err := time.ParseDuration(os.Getenv("MIRROR_LIVE_SECONDS") + "s"); err == nil && v > 0 {
		run = v
	}
	const parts = 4
	edgeLog := openLog(t, t.TempDir())
	if _, err := edgeLog.CreateTopic("telemetry", parts, nil); err != nil {
		t.Fatal(err)
	}
	c := startCenter(t, nil, "")
	e := startSender(t, edgeLog, t.TempDir(), c.addr)

	// Ingest: each partition gets a batch every 20 ms, about 5,000
	// records/s in all, as the MQTT and Kafka front ends append them.
	ctx, cancel := context.WithTimeout(context.Background(), run)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, parts)
	for p := int32(0); p < parts; p++ {
		part, err := edgeLog.Partition("telemetry", p)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			var batch []byte
			for i := 0; ; i++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				// A partition's batches mix: MQTT's records arrive a
				// few at a time, uncompressed; a Kafka producer's come
				// in larger batches it compressed (franz-go sends a
				// batch compression does not shrink as it is).
				n := 5
				if i%25 == 0 {
					n = 500
				}
				recs := make([]flog.Record, n)
				for j := range recs {
					recs[j] = flog.Record{Key: fmt.Appendf(nil, "dev%d", j%17),
						Value:     fmt.Appendf(nil, `{"device":"dev%d","seq":%d,"partition":%d,"temperature":%.2f}`, j%17, i, p, 20+float64(j%50)/10),
						Timestamp: time.Now().UnixMilli()}
				}
				batch = flog.AppendBatch(batch[:0], recs)
				if n > 5 {
					batch = zstdBatch(t, batch)
				}
				if _, err := part.Append(batch); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitCopied(t, edgeLog, c.log, "telemetry")
	if n := rejectedChunks(t, c.recv); n != 0 {
		t.Errorf("the center refused %v chunks or connections on a clean link", n)
	}
	var failures float64
	for _, r := range linkErrorReasons {
		failures += testutil.ToFloat64(e.sender.metrics.linkErrs.WithLabelValues(r))
	}
	if failures != 0 || testutil.ToFloat64(e.sender.metrics.reconnect) != 1 {
		t.Errorf("%v link failures, %v connections on a clean link (want 0, 1)", failures, testutil.ToFloat64(e.sender.metrics.reconnect))
	}
	var records int64
	for p := int32(0); p < parts; p++ {
		part, _ := edgeLog.Partition("telemetry", p)
		records += part.EndOffset()
	}
	t.Logf("%d records shipped live in %v, %v chunks", records, run, testutil.ToFloat64(e.sender.metrics.chunks))
}

// batchOf is an uncompressed batch of n sensor readings at base.
func batchOf(base int64, n int, tag string) []byte {
	recs := make([]flog.Record, n)
	for i := range recs {
		recs[i] = flog.Record{Key: fmt.Appendf(nil, "dev%d", i%17),
			Value:     fmt.Appendf(nil, `{"device":"dev%d","seq":"%s-%d","temperature":%.2f}`, i%17, tag, base+int64(i), 20+float64(i%50)/10),
			Timestamp: 1_795_609_262_273 + int64(i)}
	}
	b := flog.AppendBatch(nil, recs)
	binary.BigEndian.PutUint64(b, uint64(base))
	return b
}

// A chunk the edge sends as stored (CodecNone: its batches compressed by
// their producer) followed by a zstd chunk on the same connection: the
// receiver must not decompress the second into the frame buffer the first
// was read into, which is the one the second's compressed bytes are in.
// Refused before the fix (zstd: CRC check failed, unexpected EOF, match
// offset bigger than current history), by size.
func TestReceiverZstdChunkAfterAStoredOne(t *testing.T) {
	c := startCenter(t, nil, "")
	r := dialCenter(t, c.addr)
	r.send((&wire.Hello{Version: wire.Version, Edge: "gw1", Token: "s3cret", Parts: []wire.PartRef{{Topic: "telemetry", Partition: 0, Partitions: 1}}}).Encode(nil))
	if _, ok := r.read().(*wire.Welcome); !ok {
		t.Fatal("no welcome")
	}
	next := int64(0)
	send := func(ch *wire.Chunk) {
		t.Helper()
		r.send(ch.Encode(nil))
		switch m := r.read().(type) {
		case *wire.Ack:
			if m.Next != ch.Last+1 {
				t.Fatalf("ack to %d, want %d", m.Next, ch.Last+1)
			}
		case *wire.Error:
			t.Fatalf("chunk %d..%d (codec %d, %d bytes raw) refused: %s", ch.Base, ch.Last, ch.Codec, ch.RawLen, m.Message)
		default:
			t.Fatalf("got %T", m)
		}
	}
	for _, n := range []int{50, 500, 2000, 6000} {
		// As stored: one producer-compressed batch, large enough that the
		// next frame fits in the buffer it was read into.
		stored := zstdBatch(t, batchOf(next, 8000, "stored"))
		binary.BigEndian.PutUint64(stored, uint64(next))
		send(&wire.Chunk{Topic: "telemetry", Partition: 0, Base: next, Last: next + 7999, Codec: wire.CodecNone, RawLen: uint32(len(stored)), CRC: wire.Checksum(stored), Data: stored})
		next += 8000
		raw := batchOf(next, n, "live")
		send(&wire.Chunk{Topic: "telemetry", Partition: 0, Base: next, Last: next + int64(n) - 1, Codec: wire.CodecZstd, RawLen: uint32(len(raw)), CRC: wire.Checksum(raw),
			Data: batchEncoder.EncodeAll(raw, nil)})
		next += int64(n)
	}
	if n := rejectedChunks(t, c.recv); n != 0 {
		t.Errorf("%v refusals", n)
	}
	if end := partEnd(t, c.log); end != next {
		t.Errorf("copy ends at %d, want %d", end, next)
	}
}
