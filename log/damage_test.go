package log

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// flipByte damages one byte of a segment file in place.
func flipByte(t testing.TB, path string, at int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b[:], at); err != nil {
		t.Fatal(err)
	}
}

// A batch damaged in the part of the active segment its index covers is
// found at open: recovery trusts that part and scans only the tail, so
// before checkActive the partition opened clean and the damage surfaced
// only as a read error at every fetch of a stalled consumer.
func TestCorruptBatchInActiveSegmentFoundAtOpen(t *testing.T) {
	f := buildLog(t, 40, 0) // an index entry every 200 bytes
	victim := 5
	h, _ := ParseBatch(f.batches[victim])
	flipByte(t, f.active(t), f.pos[victim]+int64(len(f.batches[victim]))-2) // inside the records, under the CRC

	l, p := f.reopen(t)
	d, ok := p.Damage()
	if !ok {
		t.Fatal("damage in the active segment not found at open")
	}
	if d.Offset != h.BaseOffset || d.Position != f.pos[victim] || d.Segment != f.active(t) || d.Topic != "d" || d.Partition != 0 {
		t.Fatalf("damage %+v, want offset %d at position %d of %s", d, h.BaseOffset, f.pos[victim], f.active(t))
	}
	if got := l.Damaged(); len(got) != 1 || got[0].Offset != d.Offset {
		t.Fatalf("Log.Damaged() = %+v", got)
	}
	// Nothing is cut: the batches after the damage were acknowledged.
	last, _ := ParseBatch(f.batches[len(f.batches)-1])
	if p.EndOffset() != last.LastOffset()+1 {
		t.Fatalf("end offset %d, want %d: recovery cut acknowledged batches", p.EndOffset(), last.LastOffset()+1)
	}
	if _, err := p.Read(h.BaseOffset, 1<<20, nil); !errors.Is(err, ErrCorruptSegment) {
		t.Fatalf("read at the damage: %v, want ErrCorruptSegment", err)
	}
	before, _ := ParseBatch(f.batches[victim-1])
	if r, err := p.Read(0, 1<<20, nil); err != nil || len(r.Data) == 0 {
		t.Fatalf("read before the damage: %v", err)
	} else if got, _ := ParseBatch(r.Data[len(r.Data)-int(before.Length):]); got.BaseOffset != before.BaseOffset {
		t.Fatalf("read from 0 ends at batch %d, want the one before the damage (%d)", got.BaseOffset, before.BaseOffset)
	}

	// Cutting there clears it, and appends continue at the damaged offset.
	if end, err := p.TruncateTo(h.BaseOffset); err != nil || end != h.BaseOffset {
		t.Fatalf("TruncateTo(%d) = %d, %v", h.BaseOffset, end, err)
	}
	if _, ok := p.Damage(); ok {
		t.Fatal("damage still reported after the cut")
	}
	if res, err := p.Append(testBatch(1, 5, "after")); err != nil || res.BaseOffset != h.BaseOffset {
		t.Fatalf("append after the cut: %+v %v", res, err)
	}
}

// A damaged batch found by a read (a sealed segment's) is recorded once,
// so its log line is not repeated at every fetch.
func TestCorruptBatchOnReadRecordedOnce(t *testing.T) {
	f := buildLog(t, 12, 6)
	segs := f.segments(t)
	// Damage the first batch's records in the sealed segment.
	h0, _ := ParseBatch(f.batches[0])
	flipByte(t, segs[0], int64(len(f.batches[0]))-2)
	_, p := f.reopen(t)
	if _, ok := p.Damage(); ok {
		t.Fatal("a sealed segment was scanned at open")
	}
	for range 3 {
		if _, err := p.Read(0, 1<<20, nil); !errors.Is(err, ErrCorruptSegment) {
			t.Fatalf("read at the damage: %v", err)
		}
	}
	d, ok := p.Damage()
	if !ok || d.Offset != h0.BaseOffset || d.Segment != segs[0] {
		t.Fatalf("damage after reads: %+v %v", d, ok)
	}
	if p.noteDamage(p.segs[0], 0, 0, errors.New("again")) {
		t.Fatal("the same damage counted as news twice")
	}
}

// A batch whose header is damaged (its base offset) cannot be found by
// offset; CutAt cuts at the position the damage was found at, after
// BackupFrom copied what the cut changes.
func TestCutAtDamagedHeaderWithBackup(t *testing.T) {
	f := buildLog(t, 30, 0)
	victim := 7
	h, _ := ParseBatch(f.batches[victim])
	flipByte(t, f.active(t), f.pos[victim]+7) // the base offset's low byte
	_, p := f.reopen(t)
	d, ok := p.Damage()
	if !ok || d.Offset != h.BaseOffset {
		t.Fatalf("damage %+v %v, want offset %d", d, ok, h.BaseOffset)
	}
	if _, err := p.TruncateTo(h.BaseOffset); !errors.Is(err, ErrCorruptSegment) {
		t.Fatalf("TruncateTo at a damaged header: %v, want ErrCorruptSegment", err)
	}
	want, _ := os.ReadFile(f.active(t))
	dst := t.TempDir() + "/backup"
	var last, total int64
	files, err := p.BackupFrom(h.BaseOffset, dst, func(d, t int64) { last, total = d, t })
	if err != nil || len(files) == 0 || last != total || total < int64(len(want)) {
		t.Fatalf("BackupFrom: %v %v, progress %d/%d", files, err, last, total)
	}
	if got, err := os.ReadFile(dst + "/" + filepath.Base(f.active(t))); err != nil || string(got) != string(want) {
		t.Fatalf("backup of the segment differs: %v", err)
	}
	if end, err := p.CutAt(h.BaseOffset); err != nil || end != h.BaseOffset {
		t.Fatalf("CutAt(%d) = %d, %v", h.BaseOffset, end, err)
	}
	if _, ok := p.Damage(); ok {
		t.Fatal("damage still reported after the cut")
	}
	f.expectKept(t, p, victim)
}

// Damage in a sealed segment, found by a read, is recorded with its
// offset, and CutAt cuts there (the sealed segment becomes the active
// one, the later segments go).
func TestCutAtDamageInASealedSegment(t *testing.T) {
	f := buildLog(t, 12, 6)
	segs := f.segments(t)
	victim := 3
	h, _ := ParseBatch(f.batches[victim])
	// f.pos holds the active segment's positions; the sealed one's are
	// the sums of the batches before.
	var pos int64
	for _, b := range f.batches[:victim] {
		pos += int64(len(b))
	}
	flipByte(t, segs[0], pos+int64(len(f.batches[victim]))-2)
	_, p := f.reopen(t)
	if _, err := p.Read(h.BaseOffset, 1<<20, nil); !errors.Is(err, ErrCorruptSegment) {
		t.Fatalf("read at the damage: %v", err)
	}
	d, ok := p.Damage()
	if !ok || d.Offset != h.BaseOffset || d.Position != pos || d.Segment != segs[0] {
		t.Fatalf("damage %+v %v, want offset %d at %d of %s", d, ok, h.BaseOffset, pos, segs[0])
	}
	if end, err := p.CutAt(h.BaseOffset); err != nil || end != h.BaseOffset {
		t.Fatalf("CutAt(%d) = %d, %v", h.BaseOffset, end, err)
	}
	if _, ok := p.Damage(); ok {
		t.Fatal("damage still reported after the cut")
	}
	f.expectKept(t, p, victim)
}
