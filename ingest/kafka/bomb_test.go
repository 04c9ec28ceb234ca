package kafka

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// TestCompressedProduceEveryCodec: a franz-go producer's compressed
// batches (gzip, snappy, lz4, zstd) are stored and read back whole.
func TestCompressedProduceEveryCodec(t *testing.T) {
	b := startBroker(t, nil)
	codecs := map[string]kgo.CompressionCodec{"gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
		"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression()}
	for name, codec := range codecs {
		t.Run(name, func(t *testing.T) {
			topic := "c-" + name
			if _, err := b.log.CreateTopic(topic, 1, nil); err != nil {
				t.Fatal(err)
			}
			cl := b.client(t, kgo.ProducerBatchCompression(codec), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(50*time.Millisecond))
			var recs []*kgo.Record
			for i := range 200 {
				recs = append(recs, &kgo.Record{Value: bytes.Repeat([]byte(fmt.Sprintf("v%d,", i)), 500)})
			}
			if err := cl.ProduceSync(ctxT(t), recs...).FirstErr(); err != nil {
				t.Fatalf("produce with %s: %v", name, err)
			}
			p, _ := b.log.Partition(topic, 0)
			if p.EndOffset() != 200 {
				t.Fatalf("%d records stored, want 200", p.EndOffset())
			}
			rr, err := p.Read(0, 64<<20, nil)
			if err != nil {
				t.Fatal(err)
			}
			h, err := flog.ParseBatchHeader(rr.Data)
			if err != nil || h.Codec() == 0 {
				t.Fatalf("first stored batch: codec %d, %v; want compressed", h.Codec(), err)
			}
			_, got, err := flog.DecodeRecords(rr.Data[:h.Length])
			if err != nil || !bytes.Equal(got[0].Value, recs[0].Value) {
				t.Fatalf("read back: %v", err)
			}
		})
	}
}

// TestDecompressionBombProduce: a raw Produce (acks=-1) of one batch whose
// record inflates to 1 GiB of zeros (zstd; 64 MiB for gzip and lz4, 16 MiB for snappy,
// whose 20:1 at best must fit max.message.bytes)
// is answered RECORD_LIST_TOO_LARGE, counted, and nothing is stored; the
// broker allocates at most twice the cap (max.inflated.bytes) handling it.
// Before, the whole payload was inflated (CORRUPT_MESSAGE after 1.4 s and
// 1.13 GB for the zstd one).
func TestDecompressionBombProduce(t *testing.T) {
	b := startBroker(t, nil)
	if _, err := b.log.CreateTopic("bomb", 1, nil); err != nil {
		t.Fatal(err)
	}
	cl := b.client(t)
	for codec := int8(1); codec <= 4; codec++ {
		size := 64 << 20
		switch codec {
		case 2:
			size = 16 << 20 // snappy packs zeros 20:1 at best: under max.message.bytes
		case 4:
			size = 1 << 30
		}
		batch := bombBatch(t, codec, size)
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = -1, 5000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = "bomb"
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = batch
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		resp, err := req.RequestWith(ctxT(t), cl)
		runtime.ReadMemStats(&after)
		if err != nil || resp.Topics[0].Partitions[0].ErrorCode != kerr.RecordListTooLarge.Code {
			t.Fatalf("codec %d bomb of %d bytes: %+v %v; want RECORD_LIST_TOO_LARGE", codec, len(batch), resp, err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2*flog.DefaultMaxInflatedBytes {
			t.Fatalf("codec %d: %d bytes allocated answering a bomb, more than twice the cap", codec, alloc)
		} else {
			t.Logf("codec %d: %d-byte bomb refused, %d KiB allocated (client and broker)", codec, len(batch), alloc>>10)
		}
		if got := testutil.ToFloat64(b.srv.metrics.partErrors.WithLabelValues("Produce", "RECORD_LIST_TOO_LARGE")); got != float64(codec) {
			t.Fatalf("RECORD_LIST_TOO_LARGE counted %v times after %d bombs", got, codec)
		}
	}
	if p, _ := b.log.Partition("bomb", 0); p.EndOffset() != 0 {
		t.Fatalf("a bomb was stored")
	}
}

// bombBatch is a RecordBatch of codec c holding one record of size zero
// bytes, compressed as a stream (zstd: 64 MiB frames repeated), so the
// inflated payload never exists.
func bombBatch(t testing.TB, c int8, size int) []byte {
	rec := []byte{0, 0, 0, 1} // attributes, timestamp delta, offset delta, null key
	rec = binary.AppendVarint(rec, int64(size))
	head := append(binary.AppendVarint(nil, int64(len(rec)+size+1)), rec...)
	compress := func(parts ...[]byte) []byte {
		var out bytes.Buffer
		var w io.WriteCloser
		switch c {
		case 1:
			w = gzip.NewWriter(&out)
		case 3:
			w = lz4.NewWriter(&out)
		case 4:
			w, _ = zstd.NewWriter(&out, zstd.WithEncoderLevel(zstd.SpeedFastest))
		}
		if c == 2 { // Kafka's snappy from Java: xerial framing, 32 KiB blocks
			out.Write([]byte{130, 'S', 'N', 'A', 'P', 'P', 'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1})
			for _, p := range parts {
				for len(p) > 0 {
					n := min(len(p), 32<<10)
					blk := s2.EncodeSnappy(nil, p[:n])
					out.Write(binary.BigEndian.AppendUint32(nil, uint32(len(blk))))
					out.Write(blk)
					p = p[n:]
				}
			}
			return out.Bytes()
		}
		for _, p := range parts {
			w.Write(p)
		}
		w.Close()
		return out.Bytes()
	}
	var body []byte
	if c == 4 {
		body = compress(head)
		zeros := compress(make([]byte, 64<<20))
		for range size / (64 << 20) {
			body = append(body, zeros...)
		}
		body = append(body, compress(make([]byte, size%(64<<20)+1))...)
	} else {
		body = compress(head, make([]byte, size), []byte{0})
	}
	rb := kmsg.RecordBatch{Magic: 2, Attributes: int16(c), LastOffsetDelta: 0, FirstTimestamp: 1000, MaxTimestamp: 1000,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 1, Records: body}
	rb.Length = int32(61 - 12 + len(body))
	out := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(out[17:], crc32.Checksum(out[21:], crc32.MakeTable(crc32.Castagnoli)))
	return out
}
