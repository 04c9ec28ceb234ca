package mirror

import (
	"errors"
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
	r, err := NewReceiver(ReceiverOptions{Log: l, Registerer: prometheus.NewRegistry(), MaxChunkBytes: 8 << 20, Logger: slog.New(slog.DiscardHandler)})
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
