package log

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"testing"
)

// FuzzTornTail damages the active segment of a closed log at an arbitrary
// point, by truncation or by overwriting bytes, and reopens it. Open must
// succeed; every batch wholly before the damage must be kept byte-identical;
// no read may ever return bytes that differ from what was appended (a batch
// is either served intact or reported as ErrCorruptSegment); and an append
// must land at the end offset, which is the end of some whole batch.
func FuzzTornTail(f *testing.F) {
	f.Add(uint8(5), true, uint32(300), []byte{})
	f.Add(uint8(8), false, uint32(100), []byte{0xff})
	f.Add(uint8(3), false, uint32(0), []byte("\x00\x00\x00\x00\x00\x00\x00\x07"))
	f.Add(uint8(12), false, uint32(700), []byte("garbage garbage garbage"))
	f.Add(uint8(1), true, uint32(10), []byte{})
	f.Fuzz(func(t *testing.T, n uint8, truncate bool, at uint32, data []byte) {
		batches := 1 + int(n%12)
		fx := buildLogIndexed(t, batches, 0, 150)
		seg := fx.active(t)
		orig, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		damaged := append([]byte(nil), orig...)
		d := int64(at) % int64(len(orig)+1) // first damaged byte
		if truncate {
			damaged = damaged[:d]
		} else {
			if len(data) > 64 {
				data = data[:64]
			}
			for i, c := range data {
				if int(d)+i < len(damaged) {
					damaged[int(d)+i] = c
				} else {
					damaged = append(damaged, c)
				}
			}
			for d < int64(len(orig)) && damaged[d] == orig[d] {
				d++
			}
		}
		if err := os.WriteFile(seg, damaged, 0o644); err != nil {
			t.Fatal(err)
		}
		_, p := fx.reopen(t)

		ends := map[int64]bool{0: true} // offsets at which a whole batch ends
		for i, want := range fx.batches {
			h, _ := ParseBatch(want)
			ends[h.LastOffset()+1] = true
			r, err := p.Read(h.BaseOffset, 1, nil)
			whole := fx.pos[i]+int64(len(want)) <= d
			switch {
			case err == nil && len(r.Data) > 0:
				// Bytes 12..16 (leader epoch) are outside the CRC and unused.
				got := append([]byte(nil), r.Data...)
				copy(got[12:16], want[12:16])
				if !bytes.Equal(got, want) {
					t.Fatalf("batch %d served with different bytes", i)
				}
			case whole:
				t.Fatalf("batch %d lies before the damage at %d but reads %d bytes, %v", i, d, len(r.Data), err)
			case err != nil && !errors.Is(err, ErrCorruptSegment) && !errors.Is(err, ErrOffsetOutOfRange):
				t.Fatalf("batch %d: unexpected error %v", i, err)
			}
		}
		end := p.EndOffset()
		if !ends[end] {
			t.Fatalf("end offset %d is not the end of a whole batch", end)
		}
		res, err := p.Append(testBatch(1, 5, "after"))
		if err != nil || res.BaseOffset != end {
			t.Fatalf("append after recovery: %+v %v, want offset %d", res, err, end)
		}
	})
}

// FuzzValidateBatch feeds arbitrary bytes to the batch decoders: no panic,
// what ValidateBatch accepts, ParseBatch and DecodeRecords accept too, and
// what ParseBatch accepts, ParseBatchHeader does, with the same header.
// Memory budget: validating allocates at most twice the inflate cap
// (decompression bombs, one per codec, are seeds).
func FuzzValidateBatch(f *testing.F) {
	f.Add(testBatch(1, 1000, "a"))
	f.Add(testBatch(5, 1000, "bb"))
	f.Add(AppendBatch(nil, []Record{{Key: nil, Value: nil, Timestamp: -1}}))
	f.Add([]byte{})
	for c := int8(1); c <= 4; c++ {
		f.Add(compressedBatch(f, c, 3, 100)) // valid
		if c != 2 {
			f.Add(compressedBatch(f, c, 1, 16<<20)) // a bomb: twice the cap, in 1-64 KiB
		}
	}
	f.Add(snappyBomb()) // a raw snappy block declaring 2 GiB
	f.Fuzz(func(t *testing.T, b []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		h, err := ValidateBatch(b)
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2*DefaultMaxInflatedBytes {
			t.Fatalf("validating %d bytes allocated %d, past the budget of twice the cap", len(b), alloc)
		}
		if hp, perr := ParseBatch(b); perr == nil {
			if hh, herr := ParseBatchHeader(b); herr != nil || hh != hp {
				t.Fatalf("ParseBatch accepted what ParseBatchHeader rejects: %v", herr)
			}
		}
		decodeRecords(b, DefaultMaxInflatedBytes)
		walkRecords(b, func(int32, int64, []byte) bool { return true })
		if err != nil {
			return
		}
		h2, err := ParseBatch(b)
		if err != nil || h2 != h {
			t.Fatalf("ValidateBatch accepted what ParseBatch rejects: %v", err)
		}
		_, recs, err := decodeRecords(b, DefaultMaxInflatedBytes)
		if err != nil || len(recs) != int(h.NumRecords) {
			t.Fatalf("DecodeRecords on a valid batch: %d records, %v", len(recs), err)
		}
	})
}
