package log

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// compression.type (Kafka's rule): producer keeps the batch as the client
// compressed it; uncompressed, gzip, snappy, lz4 or zstd store every batch
// in that codec, recompressing on append a batch that came in another:
// its records are inflated under the topic's max.inflated.bytes (a bomb is
// refused as in validation) and deflated again with the topic's codec at
// the codec's default level, the header's codec bits, length and CRC
// rewritten. Offsets, timestamps and producer fields are the client's.
// Control batches are kept as they are. A recompressed batch must still
// fit max.message.bytes, as in Kafka. Only Append recompresses: copies
// (AppendAt) keep their source's bytes.

// compressionProducer is TopicConfig.Compression for compression.type=producer.
const compressionProducer = -1

// compressionCodecs are compression.type's values, by codec number.
var compressionCodecs = map[string]int8{"producer": compressionProducer, "uncompressed": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

func init() {
	configSpecs[ConfigCompressionType] = configSpec{"producer",
		"the codec batches are stored in: producer (as the client compressed them), or uncompressed, gzip, snappy, lz4 or zstd (recompressed on append)",
		func(c *TopicConfig, v string) error {
			codec, ok := compressionCodecs[v]
			if !ok {
				return fmt.Errorf("%w: %s=%q: want producer, uncompressed, gzip, snappy, lz4 or zstd", ErrInvalidConfig, ConfigCompressionType, v)
			}
			c.Compression = codec
			return nil
		}}
}

// recompress returns batch in the topic's codec: batch itself when it is
// already in it (or the topic keeps the producer's), else a new batch.
func recompress(batch []byte, h BatchHeader, cfg *TopicConfig) ([]byte, BatchHeader, error) {
	want := cfg.Compression
	if want == compressionProducer || h.Codec() == want || h.IsControl() {
		return batch, h, nil
	}
	raw := batch[batchHeaderSize:]
	if h.Codec() != 0 {
		var err error
		if raw, err = inflateAll(h.Codec(), raw, cfg.MaxInflatedBytes); err != nil {
			return nil, h, err
		}
	}
	out := make([]byte, batchHeaderSize, batchHeaderSize+len(raw)/2+64)
	copy(out, batch[:batchHeaderSize])
	var err error
	if out, err = deflate(want, out, raw); err != nil {
		return nil, h, fmt.Errorf("recompressing a batch as codec %d: %w", want, err)
	}
	if len(out) > int(cfg.MaxMessageBytes) {
		return nil, h, fmt.Errorf("%w: %d bytes once recompressed as codec %d, limit %d", ErrBatchTooLarge, len(out), want, cfg.MaxMessageBytes)
	}
	h.Attributes = h.Attributes&^codecMask | int16(want)
	h.Length = int32(len(out))
	binary.BigEndian.PutUint16(out[offAttributes:], uint16(h.Attributes))
	binary.BigEndian.PutUint32(out[offBatchLength:], uint32(len(out)-batchLogOverhead))
	h.CRC = crc32.Checksum(out[offAttributes:], castagnoli)
	binary.BigEndian.PutUint32(out[offCRC:], h.CRC)
	return out, h, nil
}

var (
	zstdEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	gzipWriters    = sync.Pool{New: func() any { return gzip.NewWriter(nil) }}
	lz4Writers     = sync.Pool{New: func() any { return lz4.NewWriter(nil) }}
)

// deflate appends raw compressed with codec to dst.
func deflate(codec int8, dst, raw []byte) ([]byte, error) {
	switch codec {
	case 0:
		return append(dst, raw...), nil
	case 2:
		// One raw snappy block, as librdkafka and franz-go write it.
		n := s2.MaxEncodedLen(len(raw))
		if n < 0 {
			return nil, fmt.Errorf("%d bytes are too many for snappy", len(raw))
		}
		return append(dst, s2.EncodeSnappy(make([]byte, n), raw)...), nil
	case 4:
		return zstdEncoder.EncodeAll(raw, dst), nil
	}
	buf := bytes.NewBuffer(dst)
	switch codec {
	case 1:
		w := gzipWriters.Get().(*gzip.Writer)
		defer gzipWriters.Put(w)
		w.Reset(buf)
		if _, err := w.Write(raw); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
	case 3:
		w := lz4Writers.Get().(*lz4.Writer)
		defer lz4Writers.Put(w)
		w.Reset(buf)
		if _, err := w.Write(raw); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown codec %d", codec)
	}
	return buf.Bytes(), nil
}
