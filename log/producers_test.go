package log

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
)

// withProducer stamps an idempotent producer's id, epoch and base sequence
// on a batch, as a Kafka client does, and recomputes its CRC.
func withProducer(b []byte, pid int64, epoch int16, seq int32) []byte {
	b = append([]byte(nil), b...)
	binary.BigEndian.PutUint64(b[offProducerID:], uint64(pid))
	binary.BigEndian.PutUint16(b[offProducerEpoch:], uint16(epoch))
	binary.BigEndian.PutUint32(b[offBaseSequence:], uint32(seq))
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], castagnoli))
	return b
}

func TestIdempotentProducer(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, Options{Dir: dir})
	if _, err := l.CreateTopic("idem", 1, nil); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("idem", 0)
	appendSeq := func(p *Partition, pid int64, epoch int16, seq int32, n int) (AppendResult, error) {
		return p.Append(withProducer(testBatch(n, 1000, "x"), pid, epoch, seq))
	}
	first, err := appendSeq(p, 7, 0, 0, 3) // sequences 0..2
	if err != nil {
		t.Fatal(err)
	}
	if _, err := appendSeq(p, 7, 0, 3, 2); err != nil { // 3..4
		t.Fatal(err)
	}
	end := p.EndOffset()

	// A retry of the first batch is recognised: original offsets, nothing written.
	res, err := appendSeq(p, 7, 0, 0, 3)
	if !errors.Is(err, ErrDuplicateSequence) || res.BaseOffset != first.BaseOffset || res.LastOffset != first.LastOffset {
		t.Fatalf("duplicate: %+v %v", res, err)
	}
	if p.EndOffset() != end {
		t.Fatalf("duplicate was written: end %d -> %d", end, p.EndOffset())
	}
	// A gap is refused.
	if _, err := appendSeq(p, 7, 0, 9, 1); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("gap: %v", err)
	}
	// Another producer is independent; an unknown one may start anywhere.
	if _, err := appendSeq(p, 8, 0, 42, 1); err != nil {
		t.Fatal(err)
	}
	// A new epoch must start at 0 and fences the old one.
	if _, err := appendSeq(p, 7, 1, 5, 1); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("new epoch not at 0: %v", err)
	}
	if _, err := appendSeq(p, 7, 1, 0, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := appendSeq(p, 7, 0, 5, 1); !errors.Is(err, ErrProducerFenced) {
		t.Fatalf("old epoch: %v", err)
	}
	// Non-idempotent batches are never checked.
	if _, err := p.Append(testBatch(1, 1000, "plain")); err != nil {
		t.Fatal(err)
	}

	check := func(p *Partition) {
		t.Helper()
		if _, err := appendSeq(p, 8, 0, 42, 1); !errors.Is(err, ErrDuplicateSequence) {
			t.Fatalf("duplicate after reopen not recognised: %v", err)
		}
		if _, err := appendSeq(p, 7, 1, 0, 1); !errors.Is(err, ErrDuplicateSequence) {
			t.Fatalf("duplicate after reopen not recognised: %v", err)
		}
		if _, err := appendSeq(p, 7, 0, 5, 1); !errors.Is(err, ErrProducerFenced) {
			t.Fatalf("fencing lost after reopen: %v", err)
		}
	}
	// Clean close: the snapshot at the end offset restores the state.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := openTestLog(t, Options{Dir: dir})
	p2, _ := l2.Partition("idem", 0)
	check(p2)
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}

	// Snapshots lost (as after a crash before any was written): the state is
	// rebuilt by replaying the batches.
	snaps, _ := filepath.Glob(filepath.Join(dir, "idem-0", "*.snapshot"))
	if len(snaps) == 0 {
		t.Fatal("no snapshot written on close")
	}
	for _, s := range snaps {
		os.Remove(s)
	}
	l3 := openTestLog(t, Options{Dir: dir})
	p3, _ := l3.Partition("idem", 0)
	check(p3)
}

func TestProducerStateAcrossRolls(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, Options{Dir: dir})
	l.CreateTopic("idem", 1, nil)
	p, _ := l.Partition("idem", 0)
	seq := int32(0)
	for i := 0; i < 12; i++ {
		if _, err := p.Append(withProducer(testBatch(2, 1000, "r"), 3, 0, seq)); err != nil {
			t.Fatal(err)
		}
		seq += 2
		if i%3 == 2 {
			if err := p.Roll(); err != nil {
				t.Fatal(err)
			}
		}
	}
	snaps, _ := filepath.Glob(filepath.Join(dir, "idem-0", "*.snapshot"))
	if len(snaps) != snapshotsKept {
		t.Fatalf("%d snapshots kept, want %d", len(snaps), snapshotsKept)
	}
	// Crash: the partition is never closed, so no end snapshot exists; the
	// newest roll snapshot plus a replay of the active segment must do.
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	l.db.Close()
	l2, err := Open(Options{Dir: dir, RetentionCheckInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	p2, _ := l2.Partition("idem", 0)
	if _, err := p2.Append(withProducer(testBatch(2, 1000, "r"), 3, 0, seq-2)); !errors.Is(err, ErrDuplicateSequence) {
		t.Fatalf("last batch retry after crash: %v", err)
	}
	if _, err := p2.Append(withProducer(testBatch(1, 1000, "r"), 3, 0, seq)); err != nil {
		t.Fatalf("next sequence after crash: %v", err)
	}
}
