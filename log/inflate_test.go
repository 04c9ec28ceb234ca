package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"runtime"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// codecWriter wraps w in a streaming compressor of Kafka codec c.
func codecWriter(t testing.TB, c int8, w io.Writer) io.WriteCloser {
	switch c {
	case 1:
		gw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
		return gw
	case 2:
		return &xerialWriter{w: w}
	case 3:
		return lz4.NewWriter(w)
	case 4:
		zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest))
		if err != nil {
			t.Fatal(err)
		}
		return zw
	}
	t.Fatalf("codec %d", c)
	return nil
}

// xerialWriter writes the Java client's snappy framing, 32 KiB blocks.
type xerialWriter struct {
	w       io.Writer
	started bool
	buf     []byte
}

func (x *xerialWriter) Write(p []byte) (int, error) {
	if !x.started {
		x.started = true
		if _, err := x.w.Write(append(append([]byte{}, xerialMagic...), 0, 0, 0, 1, 0, 0, 0, 1)); err != nil {
			return 0, err
		}
	}
	for n := 0; n < len(p); {
		m := min(len(p)-n, 32<<10)
		x.buf = s2.EncodeSnappy(x.buf[:cap(x.buf)], p[n:n+m])
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(x.buf)))
		if _, err := x.w.Write(append(l[:], x.buf...)); err != nil {
			return n, err
		}
		n += m
	}
	return len(p), nil
}

func (x *xerialWriter) Close() error { return nil }

// compressedBatch builds a RecordBatch of codec c whose records are n
// records of valueLen zero bytes each, compressed as a stream (so a batch
// inflating to a GiB never exists inflated).
func compressedBatch(t testing.TB, c int8, n int, valueLen int) []byte {
	var body bytes.Buffer
	w := codecWriter(t, c, &body)
	zeros := make([]byte, 1<<20)
	if c == 4 && n == 1 && valueLen >= 64<<20 {
		// zstd: the record's head as one frame, then one frame of 64 MiB
		// of zeros repeated (frames concatenate), then its tail.
		return zstdBomb(t, valueLen)
	}
	for i := 0; i < n; i++ {
		var rec []byte
		rec = append(rec, 0)                     // attributes
		rec = binary.AppendVarint(rec, 0)        // timestamp delta
		rec = binary.AppendVarint(rec, int64(i)) // offset delta
		rec = binary.AppendVarint(rec, -1)       // null key
		rec = binary.AppendVarint(rec, int64(valueLen))
		tail := binary.AppendVarint(nil, 0) // no headers
		hdr := binary.AppendVarint(nil, int64(len(rec)+valueLen+len(tail)))
		w.Write(append(hdr, rec...))
		for left := valueLen; left > 0; left -= len(zeros) {
			if _, err := w.Write(zeros[:min(left, len(zeros))]); err != nil {
				t.Fatal(err)
			}
		}
		w.Write(tail)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return batchOf(c, n, body.Bytes())
}

func zstdBomb(t testing.TB, valueLen int) []byte {
	frame := func(b []byte) []byte {
		var out bytes.Buffer
		w := codecWriter(t, 4, &out)
		w.Write(b)
		w.Close()
		return out.Bytes()
	}
	rec := []byte{0, 0, 0, 1} // attributes, timestamp delta, offset delta, null key
	rec = binary.AppendVarint(rec, int64(valueLen))
	head := append(binary.AppendVarint(nil, int64(len(rec)+valueLen+1)), rec...)
	body := frame(head)
	zeros := frame(make([]byte, 64<<20))
	for i := 0; i < valueLen/(64<<20); i++ {
		body = append(body, zeros...)
	}
	body = append(body, frame(make([]byte, valueLen%(64<<20)+1))...) // the rest, and no headers
	return batchOf(4, 1, body)
}

// batchOf is a RecordBatch of n records in body, compressed with codec c.
func batchOf(c int8, n int, body []byte) []byte {
	b := make([]byte, batchHeaderSize, batchHeaderSize+len(body))
	be := binary.BigEndian
	be.PutUint32(b[offBatchLength:], uint32(batchHeaderSize-batchLogOverhead+len(body)))
	b[offMagic] = 2
	be.PutUint16(b[offAttributes:], uint16(c))
	be.PutUint32(b[offLastDelta:], uint32(n-1))
	be.PutUint64(b[offFirstTimestamp:], 1000)
	be.PutUint64(b[offMaxTimestamp:], 1000)
	be.PutUint64(b[offProducerID:], ^uint64(0))
	be.PutUint16(b[offProducerEpoch:], 0xffff)
	be.PutUint32(b[offBaseSequence:], 0xffffffff)
	be.PutUint32(b[offNumRecords:], uint32(n))
	b = append(b, body...)
	be.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], castagnoli))
	return b
}

var codecNames = map[int8]string{1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}

// TestCompressedBatchesUnderTheCap: every codec's batches validate, with
// their records counted, up to the cap; one byte of cap less refuses them
// with ErrInflatedTooLarge.
func TestCompressedBatchesUnderTheCap(t *testing.T) {
	for c := int8(1); c <= 4; c++ {
		t.Run(codecNames[c], func(t *testing.T) {
			b := compressedBatch(t, c, 50, 10_000)
			raw, err := inflateAll(c, b[batchHeaderSize:], maxInflatedLimit)
			if err != nil {
				t.Fatal(err)
			}
			inflated := int64(len(raw))
			if min := int64(50 * 10_000); inflated < min {
				t.Fatalf("inflated to %d bytes, less than the values (%d)", inflated, min)
			}
			if _, err := ValidateBatchCapped(b, inflated); err != nil {
				t.Fatalf("a batch inflating to exactly the cap: %v", err)
			}
			if _, _, err := DecodeRecords(b); err != nil {
				t.Fatalf("DecodeRecords: %v", err)
			}
			if _, err := ValidateBatchCapped(b, inflated-1); !errors.Is(err, ErrInflatedTooLarge) {
				t.Fatalf("a batch inflating to one byte past the cap: %v, want ErrInflatedTooLarge", err)
			}
			// A record count that does not match is still corrupt.
			bad := bytes.Clone(b)
			binary.BigEndian.PutUint32(bad[offNumRecords:], 51)
			binary.BigEndian.PutUint32(bad[offLastDelta:], 50)
			binary.BigEndian.PutUint32(bad[offCRC:], crc32.Checksum(bad[offAttributes:], castagnoli))
			if _, err := ValidateBatch(bad); !errors.Is(err, ErrCorruptBatch) {
				t.Fatalf("51 records claimed, 50 present: %v", err)
			}
		})
	}
}

// TestDecompressionBombRefused: a batch whose one record inflates to 1 GiB
// of zeros (zstd; 64 MiB for the slower codecs) is refused with
// ErrInflatedTooLarge, allocating no more than twice the cap while it is
// checked. Before streaming validation the whole payload was inflated.
func TestDecompressionBombRefused(t *testing.T) {
	const limit = DefaultMaxInflatedBytes
	for c := int8(1); c <= 4; c++ {
		t.Run(codecNames[c], func(t *testing.T) {
			size := 64 << 20
			if c == 4 {
				size = 1 << 30
			}
			b := compressedBatch(t, c, 1, size)
			t.Logf("%s: %d bytes inflating to %d", codecNames[c], len(b), size)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := ValidateBatchCapped(b, limit)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrInflatedTooLarge) {
				t.Fatalf("bomb: %v, want ErrInflatedTooLarge", err)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("allocated %d KiB validating it (cap %d KiB)", alloc>>10, limit>>10)
			if alloc > 2*limit {
				t.Fatalf("allocated %d bytes validating a bomb, more than twice the cap (%d)", alloc, limit)
			}
		})
	}
}

// TestSnappyDeclaredLengthPastCap: a raw snappy block declaring more than
// the cap is refused before anything is decoded.
func TestSnappyDeclaredLengthPastCap(t *testing.T) {
	if _, err := ValidateBatch(snappyBomb()); !errors.Is(err, ErrInflatedTooLarge) {
		t.Fatalf("snappy block declaring 2 GiB: %v, want ErrInflatedTooLarge", err)
	}
}

// snappyBomb is a batch of one raw snappy block declaring 2 GiB.
func snappyBomb() []byte {
	body := binary.AppendUvarint(nil, 1<<31) // the block's decoded length
	body = append(body, 0, 0, 0, 0)
	return batchOf(2, 1, body)
}

// TestMaxInflatedBytesConfig: the key's default follows max.message.bytes
// and a topic's value is applied by Append.
func TestMaxInflatedBytesConfig(t *testing.T) {
	c, err := ParseTopicConfig(map[string]string{ConfigMaxMessageBytes: "2000"}, nil)
	if err != nil || c.MaxInflatedBytes != 16000 {
		t.Fatalf("default: %d, %v; want 8 x max.message.bytes", c.MaxInflatedBytes, err)
	}
	if _, err := ParseTopicConfig(map[string]string{ConfigMaxInflatedBytes: "100"}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("100: %v", err)
	}
	l := openTestLog(t, Options{Dir: t.TempDir(), TopicDefaults: map[string]string{ConfigMaxInflatedBytes: "400000"}})
	if _, err := l.CreateTopic("t", 1, nil); err != nil {
		t.Fatal(err)
	}
	p, err := l.Partition("t", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Append(compressedBatch(t, 4, 1, 300_000)); err != nil {
		t.Fatalf("under the node default: %v", err)
	}
	if _, err := p.Append(compressedBatch(t, 4, 1, 500_000)); !errors.Is(err, ErrInflatedTooLarge) {
		t.Fatalf("past the node default: %v", err)
	}
	if err := l.AlterConfigs("t", map[string]string{ConfigMaxInflatedBytes: "1000000"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Append(compressedBatch(t, 4, 1, 500_000)); err != nil {
		t.Fatalf("under the topic's own cap: %v", err)
	}
}

// BenchmarkValidateCompressed: validating a batch of 1,000 records of
// 1 KiB (about 1 MiB inflated), per codec.
func BenchmarkValidateCompressed(b *testing.B) {
	for c := int8(1); c <= 4; c++ {
		b.Run(codecNames[c], func(b *testing.B) {
			batch := compressedBatch(b, c, 1000, 1024)
			b.SetBytes(1000 * 1024)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ValidateBatch(batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
