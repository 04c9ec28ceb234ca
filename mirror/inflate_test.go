package mirror

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"log/slog"
	"runtime"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"

	flog "ferry/log"
	"ferry/mirror/wire"
)

// TestReceiverRefusesChunkBombs: a chunk declaring more than MaxChunkBytes
// is refused before it is inflated, and one whose zstd data inflates past
// what it declared (256 MiB of zeros declared as 1000 bytes) is refused as
// the decoder passes the declared size, allocating about that, not the
// payload; both with the reason "inflated".
func TestReceiverRefusesChunkBombs(t *testing.T) {
	l, err := flog.Open(flog.Options{Dir: t.TempDir(), RetentionCheckInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r, err := NewReceiver(ReceiverOptions{Log: LogTarget{l}, Registerer: prometheus.NewRegistry(), MaxChunkBytes: 8 << 20, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	zeros := make([]byte, 256<<20)
	bomb := enc.EncodeAll(zeros, nil)
	zeros = nil
	reason := func(err error) string {
		var rej rejectError
		if errors.As(err, &rej) {
			return rej.reason
		}
		return "not a refusal: " + err.Error()
	}
	big := &wire.Chunk{Topic: "t", Codec: wire.CodecZstd, RawLen: 9 << 20, Data: bomb}
	if _, err := r.unpack(big, new([]byte)); err == nil || reason(err) != "inflated" {
		t.Fatalf("a chunk declaring 9 MiB over an 8 MiB cap: %v", err)
	}
	lying := &wire.Chunk{Topic: "t", Codec: wire.CodecZstd, RawLen: 1000, Data: bomb}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err = r.unpack(lying, new([]byte))
	runtime.ReadMemStats(&after)
	if err == nil || reason(err) != "inflated" {
		t.Fatalf("256 MiB of zeros declared as 1000 bytes: %v", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Fatalf("unpacking a lying chunk allocated %d bytes", alloc)
	}
}

// TestReceiverRefusesBatchPastCenterCap: a chunk whose batch inflates past
// the center topic's max.inflated.bytes is refused with the reason
// "inflated", and nothing of it is stored.
func TestReceiverRefusesBatchPastCenterCap(t *testing.T) {
	l, err := flog.Open(flog.Options{Dir: t.TempDir(), RetentionCheckInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.CreateTopic("gw.t", 1, map[string]string{flog.ConfigMaxInflatedBytes: "4096"}); err != nil {
		t.Fatal(err)
	}
	part, err := l.Partition("gw.t", 0)
	if err != nil {
		t.Fatal(err)
	}
	// One record of 8 KiB, its body zstd-compressed into a batch.
	plain := flog.AppendBatch(nil, []flog.Record{{Value: bytes.Repeat([]byte("x"), 8<<10), Timestamp: 1000}})
	enc, _ := zstd.NewWriter(nil)
	body := enc.EncodeAll(plain[61:], nil)
	batch := append(bytes.Clone(plain[:61]), body...)
	binary.BigEndian.PutUint32(batch[8:], uint32(len(batch)-12))
	binary.BigEndian.PutUint16(batch[21:], 4)
	binary.BigEndian.PutUint32(batch[17:], crc32.Checksum(batch[21:], crc32.MakeTable(crc32.Castagnoli)))
	ch := &wire.Chunk{Topic: "t", Base: 0, Last: 0, RawLen: uint32(len(batch))}
	_, err = appendChunk(part, ch, batch)
	var rej rejectError
	if !errors.As(err, &rej) || rej.reason != "inflated" {
		t.Fatalf("a batch inflating to 8 KiB under a 4 KiB cap: %v, want a refusal for \"inflated\"", err)
	}
	if part.EndOffset() != 0 {
		t.Fatalf("stored %d records of a refused chunk", part.EndOffset())
	}
}
