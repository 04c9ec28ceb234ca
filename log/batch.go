package log

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Layout of a Kafka RecordBatch (magic 2) header. Every batch the log stores
// is kept byte for byte as a client sent it, except the base offset (and the
// partition leader epoch), which lie outside the CRC, and what the topic's
// compression.type and message.timestamp.type rewrite (with a new CRC).
const (
	batchHeaderSize   = 61 // bytes before the first record
	batchLogOverhead  = 12 // base offset + batch length, not counted in the length field
	offBaseOffset     = 0
	offBatchLength    = 8
	offLeaderEpoch    = 12
	offMagic          = 16
	offCRC            = 17
	offAttributes     = 21
	offLastDelta      = 23
	offFirstTimestamp = 27
	offMaxTimestamp   = 35
	offProducerID     = 43
	offProducerEpoch  = 51
	offBaseSequence   = 53
	offNumRecords     = 57

	codecMask = 0x07
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// BatchHeader is the fixed header of a RecordBatch.
type BatchHeader struct {
	BaseOffset      int64
	Length          int32 // total bytes of the batch, including base offset and length
	LeaderEpoch     int32
	Magic           int8
	CRC             uint32
	Attributes      int16
	LastOffsetDelta int32
	FirstTimestamp  int64
	MaxTimestamp    int64
	ProducerID      int64
	ProducerEpoch   int16
	BaseSequence    int32
	NumRecords      int32
}

// LastOffset is the offset of the batch's last record.
func (h BatchHeader) LastOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) }

// Codec is the compression codec: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
func (h BatchHeader) Codec() int8 { return int8(h.Attributes & codecMask) }

// IsControl reports whether this is a transaction control batch.
func (h BatchHeader) IsControl() bool { return h.Attributes&0x20 != 0 }

// parseHeader reads the fixed header from b, which must hold at least
// batchHeaderSize bytes. It checks only what can be checked without the body.
func parseHeader(b []byte) (BatchHeader, error) {
	if len(b) < batchHeaderSize {
		return BatchHeader{}, fmt.Errorf("%w: %d bytes, shorter than a batch header", ErrCorruptBatch, len(b))
	}
	be := binary.BigEndian
	h := BatchHeader{
		BaseOffset:      int64(be.Uint64(b[offBaseOffset:])),
		Length:          int32(be.Uint32(b[offBatchLength:])),
		LeaderEpoch:     int32(be.Uint32(b[offLeaderEpoch:])),
		Magic:           int8(b[offMagic]),
		CRC:             be.Uint32(b[offCRC:]),
		Attributes:      int16(be.Uint16(b[offAttributes:])),
		LastOffsetDelta: int32(be.Uint32(b[offLastDelta:])),
		FirstTimestamp:  int64(be.Uint64(b[offFirstTimestamp:])),
		MaxTimestamp:    int64(be.Uint64(b[offMaxTimestamp:])),
		ProducerID:      int64(be.Uint64(b[offProducerID:])),
		ProducerEpoch:   int16(be.Uint16(b[offProducerEpoch:])),
		BaseSequence:    int32(be.Uint32(b[offBaseSequence:])),
		NumRecords:      int32(be.Uint32(b[offNumRecords:])),
	}
	// The length field counts the bytes after itself.
	if h.Length < batchHeaderSize-batchLogOverhead || h.Length > 1<<30 {
		return h, fmt.Errorf("%w: batch length %d", ErrCorruptBatch, h.Length)
	}
	h.Length += batchLogOverhead
	if h.Magic != 2 {
		return h, fmt.Errorf("%w: magic %d, only RecordBatch v2 is supported", ErrCorruptBatch, h.Magic)
	}
	if h.LastOffsetDelta < 0 {
		return h, fmt.Errorf("%w: negative last offset delta %d", ErrCorruptBatch, h.LastOffsetDelta)
	}
	return h, nil
}

// checkCRC verifies the CRC-32C over the attributes and everything after them.
func checkCRC(b []byte, h BatchHeader) error {
	if got := crc32.Checksum(b[offAttributes:h.Length], castagnoli); got != h.CRC {
		return fmt.Errorf("%w: CRC-32C mismatch at base offset %d: stored %08x, computed %08x",
			ErrCorruptBatch, h.BaseOffset, h.CRC, got)
	}
	return nil
}

// ParseBatch parses one RecordBatch at the start of b and validates its
// framing and CRC. It does not look inside the records.
func ParseBatch(b []byte) (BatchHeader, error) {
	h, err := ParseBatchHeader(b)
	if err != nil {
		return h, err
	}
	return h, checkCRC(b, h)
}

// ParseBatchHeader is ParseBatch without the CRC: it parses the header of
// the RecordBatch at the start of b and checks its framing (length, magic,
// the batch present whole in b). It is for bytes whose CRC was checked
// already (Partition.Read returns only such) or will be before anything
// relies on their content (AppendAt validates every batch before writing
// any): the header's fields inside the CRC are not yet to be trusted.
func ParseBatchHeader(b []byte) (BatchHeader, error) {
	h, err := parseHeader(b)
	if err != nil {
		return h, err
	}
	if int(h.Length) > len(b) {
		return h, fmt.Errorf("%w: batch of %d bytes, only %d present", ErrCorruptBatch, h.Length, len(b))
	}
	return h, nil
}

// ValidateBatch checks that b is exactly one well-formed RecordBatch: header,
// CRC-32C, and the framing of every record (decompressing compressed
// batches), with a record count and offset deltas matching the header. This
// is what Append runs on every batch, with the topic's max.inflated.bytes
// as the cap (ValidateBatchCapped); ValidateBatch applies
// DefaultMaxInflatedBytes.
func ValidateBatch(b []byte) (BatchHeader, error) {
	return validateBatch(b, DefaultMaxInflatedBytes, nil)
}

// ValidateBatchCapped is ValidateBatch with the records of a compressed
// batch inflating to at most maxInflated bytes: they are streamed, never
// held whole, and a batch inflating further is refused with
// ErrInflatedTooLarge as soon as the cap is passed.
func ValidateBatchCapped(b []byte, maxInflated int64) (BatchHeader, error) {
	return validateBatch(b, maxInflated, nil)
}

// validateBatch is ValidateBatchCapped, giving each record's timestamp to
// times (when not nil) as the records are walked (timestamps.go).
func validateBatch(b []byte, maxInflated int64, times *batchTimes) (BatchHeader, error) {
	h, err := ParseBatch(b)
	if err != nil {
		return h, err
	}
	if int(h.Length) != len(b) {
		return h, fmt.Errorf("%w: %d trailing bytes after the batch", ErrCorruptBatch, len(b)-int(h.Length))
	}
	if h.NumRecords <= 0 || h.LastOffsetDelta != h.NumRecords-1 {
		return h, fmt.Errorf("%w: %d records with last offset delta %d", ErrCorruptBatch, h.NumRecords, h.LastOffsetDelta)
	}
	if h.MaxTimestamp < h.FirstTimestamp && h.MaxTimestamp != -1 {
		return h, fmt.Errorf("%w: max timestamp %d before first timestamp %d", ErrCorruptBatch, h.MaxTimestamp, h.FirstTimestamp)
	}
	records := b[batchHeaderSize:h.Length]
	add := func(_ int32, tsDelta int64) bool {
		if times != nil {
			times.add(recordTimestamp(h, tsDelta))
		}
		return true
	}
	var n int32
	if codec := h.Codec(); codec != 0 {
		n, err = walkCompressed(codec, records, maxInflated, add)
	} else {
		n, err = walkRecords(records, func(od int32, tsDelta int64, _ []byte) bool { return add(od, tsDelta) })
	}
	if err != nil {
		return h, err
	}
	if n != h.NumRecords {
		return h, fmt.Errorf("%w: header says %d records, body holds %d", ErrCorruptBatch, h.NumRecords, n)
	}
	return h, nil
}

// walkRecords walks the framing of uncompressed records, calling fn with each
// record's offset delta, timestamp delta and bytes (length prefix excluded).
// It checks that offset deltas count up from zero and that the records fill
// the body exactly. fn returning false stops the walk.
func walkRecords(body []byte, fn func(offsetDelta int32, tsDelta int64, rec []byte) bool) (int32, error) {
	var n int32
	for len(body) > 0 {
		l, w := binary.Varint(body)
		if w <= 0 || l < 0 || l > int64(len(body)-w) {
			return n, fmt.Errorf("%w: record %d: bad length", ErrCorruptBatch, n)
		}
		rec := body[w : w+int(l)]
		body = body[w+int(l):]
		// attributes int8, timestampDelta varlong, offsetDelta varint
		if len(rec) < 1 {
			return n, fmt.Errorf("%w: record %d: empty", ErrCorruptBatch, n)
		}
		ts, w1 := binary.Varint(rec[1:])
		if w1 <= 0 {
			return n, fmt.Errorf("%w: record %d: bad timestamp delta", ErrCorruptBatch, n)
		}
		od, w2 := binary.Varint(rec[1+w1:])
		if w2 <= 0 || od != int64(n) {
			return n, fmt.Errorf("%w: record %d: offset delta %d", ErrCorruptBatch, n, od)
		}
		if !fn(int32(od), ts, rec) {
			return n + 1, nil
		}
		n++
	}
	return n, nil
}

// Record is one record to encode with AppendBatch.
type Record struct {
	Key     []byte // nil for a null key
	Value   []byte // nil for a null value (a tombstone)
	Headers []kmsg.Header
	// Timestamp in Unix milliseconds.
	Timestamp int64
}

// batchScratch holds AppendBatch's working buffers between calls.
var batchScratch = sync.Pool{New: func() any { return new([2][]byte) }}

// AppendBatch encodes recs as one uncompressed RecordBatch (base offset 0,
// no producer id) appended to dst. It is how ferry's own front ends and tools
// build batches; Kafka clients bring their own.
func AppendBatch(dst []byte, recs []Record) []byte {
	if len(recs) == 0 {
		return dst
	}
	first, max := recs[0].Timestamp, recs[0].Timestamp
	for _, r := range recs {
		if r.Timestamp < first {
			first = r.Timestamp
		}
		if r.Timestamp > max {
			max = r.Timestamp
		}
	}
	bufs := batchScratch.Get().(*[2][]byte)
	defer batchScratch.Put(bufs)
	body, scratch := bufs[0][:0], bufs[1][:0]
	for i, r := range recs {
		kr := kmsg.Record{
			TimestampDelta64: r.Timestamp - first,
			OffsetDelta:      int32(i),
			Key:              r.Key,
			Value:            r.Value,
			Headers:          r.Headers,
		}
		// Length is everything after the length varint: encode with a
		// zero length (one byte) and measure the rest.
		scratch = kr.AppendTo(scratch[:0])
		body = binary.AppendVarint(body, int64(len(scratch)-1))
		body = append(body, scratch[1:]...)
	}
	bufs[0], bufs[1] = body, scratch
	rb := kmsg.RecordBatch{
		FirstOffset:     0,
		Length:          int32(batchHeaderSize - batchLogOverhead + len(body)),
		Magic:           2,
		LastOffsetDelta: int32(len(recs) - 1),
		FirstTimestamp:  first,
		MaxTimestamp:    max,
		ProducerID:      -1,
		ProducerEpoch:   -1,
		FirstSequence:   -1,
		NumRecords:      int32(len(recs)),
		Records:         body,
	}
	start := len(dst)
	dst = rb.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start+offCRC:], crc32.Checksum(dst[start+offAttributes:], castagnoli))
	return dst
}

// DecodeRecords decodes the records of one batch (decompressing if needed),
// with absolute offsets and timestamps. It is for tools and tests, not the hot
// path.
func DecodeRecords(batch []byte) (BatchHeader, []DecodedRecord, error) {
	return decodeRecords(batch, maxInflatedLimit)
}

// decodeRecords is DecodeRecords inflating at most maxInflated bytes.
func decodeRecords(batch []byte, maxInflated int64) (BatchHeader, []DecodedRecord, error) {
	h, err := ParseBatch(batch)
	if err != nil {
		return h, nil, err
	}
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(batch[:h.Length]); err != nil {
		return h, nil, fmt.Errorf("%w: %v", ErrCorruptBatch, err)
	}
	body := rb.Records
	if codec := h.Codec(); codec != 0 {
		if body, err = inflateAll(codec, body, maxInflated); err != nil {
			return h, nil, err
		}
	}
	out := make([]DecodedRecord, 0, h.NumRecords)
	for len(body) > 0 {
		l, w := binary.Varint(body)
		if w <= 0 || l < 0 || l > int64(len(body)-w) {
			return h, out, fmt.Errorf("%w: record %d: bad length", ErrCorruptBatch, len(out))
		}
		var kr kmsg.Record
		if err := kr.ReadFrom(body[:w+int(l)]); err != nil {
			return h, out, fmt.Errorf("%w: record %d: %v", ErrCorruptBatch, len(out), err)
		}
		body = body[w+int(l):]
		out = append(out, DecodedRecord{
			Offset:    h.BaseOffset + int64(kr.OffsetDelta),
			Timestamp: recordTimestamp(h, kr.TimestampDelta64),
			Key:       kr.Key,
			Value:     kr.Value,
			Headers:   kr.Headers,
		})
	}
	return h, out, nil
}

// DecodedRecord is a record read back from the log.
type DecodedRecord struct {
	Offset    int64
	Timestamp int64
	Key       []byte
	Value     []byte
	Headers   []kmsg.Header
}
