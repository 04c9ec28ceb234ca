package log

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// Damage tests: each builds a log through the API, damages its files the way
// a crash, a bad disk or an operator would, reopens it, and checks what was
// kept, what was reported and that appends continue at the right offset.

// damageFixture is a closed one-partition log with its batches' positions.
type damageFixture struct {
	dir     string // the log's directory
	partDir string
	batches [][]byte // as stored, base offsets set
	pos     []int64  // file position of each batch in the active segment
}

// buildLog appends n batches to topic "d" partition 0, rolling after every
// rollEvery batches (0: never), and closes the log. The index gets an entry
// every 200 bytes.
func buildLog(t testing.TB, n, rollEvery int) damageFixture {
	return buildLogIndexed(t, n, rollEvery, 200)
}

func buildLogIndexed(t testing.TB, n, rollEvery, indexInterval int) damageFixture {
	t.Helper()
	f := damageFixture{dir: t.TempDir()}
	l, err := Open(Options{Dir: f.dir, RetentionCheckInterval: -1, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateTopic("d", 1, map[string]string{ConfigIndexIntervalBytes: strconv.Itoa(indexInterval), ConfigRetentionMs: "-1"}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("d", 0)
	f.partDir = p.Dir()
	for i := 0; i < n; i++ {
		if rollEvery > 0 && i > 0 && i%rollEvery == 0 {
			if err := p.Roll(); err != nil {
				t.Fatal(err)
			}
			f.pos = nil
		}
		b := testBatch(1+i%3, int64(1000+10*i), string(rune('a'+i%26)))
		res, err := p.Append(b)
		if err != nil {
			t.Fatal(err)
		}
		f.batches = append(f.batches, b)
		f.pos = append(f.pos, res.Position)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f damageFixture) segments(t testing.TB) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(f.partDir, "*.log"))
	return m
}

func (f damageFixture) active(t testing.TB) string {
	s := f.segments(t)
	return s[len(s)-1]
}

func (f damageFixture) reopen(t testing.TB) (*Log, *Partition) {
	t.Helper()
	l, err := Open(Options{Dir: f.dir, RetentionCheckInterval: -1, Logger: quietLogger})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	p, _ := l.Partition("d", 0)
	return l, p
}

// expectKept checks that exactly the first kept batches are readable,
// byte-identical, and that an append lands right after them.
func (f damageFixture) expectKept(t testing.TB, p *Partition, kept int) {
	t.Helper()
	end := int64(0)
	for i := 0; i < kept; i++ {
		h, _ := ParseBatch(f.batches[i])
		r, err := p.Read(h.BaseOffset, 1, nil)
		if err != nil || !bytes.Equal(r.Data, f.batches[i]) {
			t.Fatalf("batch %d (offset %d) not kept intact: %v", i, h.BaseOffset, err)
		}
		end = h.LastOffset() + 1
	}
	if p.EndOffset() != end {
		t.Fatalf("end offset %d, want %d (after %d kept batches)", p.EndOffset(), end, kept)
	}
	res, err := p.Append(testBatch(1, 5, "next"))
	if err != nil || res.BaseOffset != end {
		t.Fatalf("append after recovery: %+v %v, want offset %d", res, err, end)
	}
}

func TestTornTailAtEveryByteOfTheLastBatch(t *testing.T) {
	base := buildLog(t, 6, 0)
	seg := base.active(t)
	full, _ := os.ReadFile(seg)
	last := base.pos[len(base.pos)-1]
	for cut := last; cut < int64(len(full)); cut++ {
		f := base
		f.dir = t.TempDir()
		copyDir(t, base.dir, f.dir)
		f.partDir = filepath.Join(f.dir, "d-0")
		if err := os.Truncate(filepath.Join(f.partDir, filepath.Base(seg)), cut); err != nil {
			t.Fatal(err)
		}
		_, p := f.reopen(t)
		st, _ := os.Stat(filepath.Join(f.partDir, filepath.Base(seg)))
		if st.Size() != last {
			t.Fatalf("cut at %d: segment is %d bytes, want %d: the torn batch gone", cut, st.Size(), last)
		}
		f.expectKept(t, p, 5)
	}
}

func TestGarbageAfterTheLastBatch(t *testing.T) {
	for name, tail := range map[string][]byte{
		"random": []byte("this is not a record batch, it is what a half-written page leaves behind"),
		"zeros":  make([]byte, 4096),
	} {
		t.Run(name, func(t *testing.T) {
			f := buildLog(t, 5, 0)
			appendFile(t, f.active(t), tail)
			_, p := f.reopen(t)
			f.expectKept(t, p, 5)
		})
	}
}

// Recovery scans the active segment from its last index entry: damage in
// that tail is truncated away, damage before it is left in place and
// reported by reads, and nothing else is lost.
func TestMiddleBatchOfActiveSegmentOverwritten(t *testing.T) {
	t.Run("in the scanned tail", func(t *testing.T) {
		f := buildLogIndexed(t, 8, 0, 1<<20) // no index entries: the whole segment is the tail
		seg := f.active(t)
		b, _ := os.ReadFile(seg)
		b[f.pos[4]+batchHeaderSize+2] ^= 0x55 // inside batch 4's records: its CRC fails
		os.WriteFile(seg, b, 0o644)
		if sum, _ := ScanSegmentFile(seg, nil); sum.OK() || sum.Batches != 4 || sum.ProblemTorn {
			t.Fatalf("scan of the damaged file: %+v", sum)
		}
		_, p := f.reopen(t)
		f.expectKept(t, p, 4)
	})
	t.Run("before the last index entry", func(t *testing.T) {
		f := buildLogIndexed(t, 8, 0, 100)
		seg := f.active(t)
		b, _ := os.ReadFile(seg)
		b[f.pos[2]+batchHeaderSize+2] ^= 0x55
		os.WriteFile(seg, b, 0o644)
		_, p := f.reopen(t)
		for i, want := range f.batches {
			h, _ := ParseBatch(want)
			r, err := p.Read(h.BaseOffset, 1, nil)
			if i == 2 {
				if !errors.Is(err, ErrCorruptSegment) {
					t.Fatalf("damaged batch: %v", err)
				}
				continue
			}
			if err != nil || !bytes.Equal(r.Data, want) {
				t.Fatalf("batch %d: %v", i, err)
			}
		}
		hLast, _ := ParseBatch(f.batches[7])
		if res, err := p.Append(testBatch(1, 5, "next")); err != nil || res.BaseOffset != hLast.LastOffset()+1 {
			t.Fatalf("append: %+v %v", res, err)
		}
	})
}

func TestActiveSegmentIndexesMissing(t *testing.T) {
	f := buildLog(t, 40, 0)
	stem := f.active(t)[:len(f.active(t))-len(".log")]
	os.Remove(stem + ".index")
	os.Remove(stem + ".timeindex")
	_, p := f.reopen(t)
	checkAllReadable(t, p, f.batches)
	checkTimeLookup(t, p, f.batches)
	if st, err := os.Stat(stem + ".index"); err != nil || st.Size() == 0 {
		t.Fatalf("index not rebuilt: %v", err)
	}
}

func TestIndexWithGarbageEntries(t *testing.T) {
	f := buildLog(t, 40, 0)
	stem := f.active(t)[:len(f.active(t))-len(".log")]
	idx, _ := os.ReadFile(stem + ".index")
	if len(idx) < 3*offsetEntrySize {
		t.Fatalf("fixture has only %d index bytes", len(idx))
	}
	// Entry 1 points far past the end; then a partial entry.
	copy(idx[offsetEntrySize:], []byte{0, 0, 0, 9, 0x7f, 0xff, 0xff, 0xff})
	os.WriteFile(stem+".index", append(idx, 1, 2, 3), 0o644)
	_, p := f.reopen(t)
	checkAllReadable(t, p, f.batches)
	checkTimeLookup(t, p, f.batches)
}

func TestSealedSegmentIndexesMissing(t *testing.T) {
	f := buildLog(t, 30, 10)
	segs := f.segments(t)
	stem := segs[0][:len(segs[0])-len(".log")]
	os.Remove(stem + ".index")
	os.WriteFile(stem+".timeindex", []byte("garbage!garbage!"), 0o644)
	_, p := f.reopen(t)
	checkAllReadable(t, p, f.batches)
	checkTimeLookup(t, p, f.batches)
	if st, err := os.Stat(stem + ".index"); err != nil || st.Size() == 0 {
		t.Fatalf("sealed index not rebuilt: %v", err)
	}
}

func TestOrphanIndexFilesRemoved(t *testing.T) {
	f := buildLog(t, 3, 0)
	orphan := filepath.Join(f.partDir, "00000000000000000999.index")
	os.WriteFile(orphan, make([]byte, 16), 0o644)
	_, p := f.reopen(t)
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("orphan index still there: %v", err)
	}
	f.expectKept(t, p, 3)
}

func TestCorruptByteInSealedSegment(t *testing.T) {
	f := buildLog(t, 30, 10) // segments at 0, ~20 and ~40: batches 0-9, 10-19, 20-29
	segs := f.segments(t)
	mid := segs[1]
	b, _ := os.ReadFile(mid)
	// Damage the fourth batch of the middle segment.
	pos := int64(0)
	var hs []BatchHeader
	ScanSegmentFile(mid, func(sb ScannedBatch) bool { hs = append(hs, sb.Header); return true })
	for _, h := range hs[:3] {
		pos += int64(h.Length)
	}
	b[pos+batchHeaderSize+1] ^= 0xff
	os.WriteFile(mid, b, 0o644)
	before, _ := os.ReadFile(mid)

	_, p := f.reopen(t)
	for i, want := range f.batches {
		h, _ := ParseBatch(want)
		r, err := p.Read(h.BaseOffset, 1, nil)
		if i == 13 {
			if !errors.Is(err, ErrCorruptSegment) {
				t.Fatalf("damaged batch read: %v", err)
			}
			continue
		}
		if err != nil || !bytes.Equal(r.Data, want) {
			t.Fatalf("batch %d unreadable beside the damage: %v", i, err)
		}
	}
	// A read that starts before the damage stops short of it.
	h12, _ := ParseBatch(f.batches[12])
	r, err := p.Read(h12.BaseOffset, 1<<20, nil)
	if err != nil || !bytes.Equal(r.Data, f.batches[12]) {
		t.Fatalf("read up to the damage: %d bytes, %v", len(r.Data), err)
	}
	after, _ := os.ReadFile(mid)
	if !bytes.Equal(before, after) {
		t.Fatal("the damaged sealed segment was modified")
	}
}

func TestSealedSegmentMissingItsTail(t *testing.T) {
	f := buildLog(t, 30, 10)
	segs := f.segments(t)
	st, _ := os.Stat(segs[0])
	os.Truncate(segs[0], st.Size()-20)
	_, p := f.reopen(t)
	h9, _ := ParseBatch(f.batches[9])
	if _, err := p.Read(h9.BaseOffset, 1, nil); !errors.Is(err, ErrCorruptSegment) {
		t.Fatalf("read of the lost tail: %v", err)
	}
	for _, i := range []int{0, 8, 10, 29} {
		h, _ := ParseBatch(f.batches[i])
		if r, err := p.Read(h.BaseOffset, 1, nil); err != nil || !bytes.Equal(r.Data, f.batches[i]) {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	if sum, _ := ScanSegmentFile(segs[0], nil); sum.OK() || !sum.ProblemTorn {
		t.Fatalf("scan: %+v", sum)
	}
}

func TestLeftoverDirectories(t *testing.T) {
	f := buildLog(t, 2, 0)
	deleting := filepath.Join(f.dir, "gone-0.abc-delete")
	stray := filepath.Join(f.dir, "stray-0")
	os.MkdirAll(deleting, 0o755)
	os.MkdirAll(stray, 0o755)
	os.WriteFile(filepath.Join(stray, "00000000000000000000.log"), []byte("keep me"), 0o644)
	f.reopen(t)
	if _, err := os.Stat(deleting); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("interrupted deletion not finished")
	}
	if b, err := os.ReadFile(filepath.Join(stray, "00000000000000000000.log")); err != nil || string(b) != "keep me" {
		t.Fatal("a directory without metadata was touched")
	}
}

// checkAllReadable reads the partition from the start and compares every
// batch.
func checkAllReadable(t *testing.T, p *Partition, batches [][]byte) {
	t.Helper()
	for i, want := range batches {
		h, _ := ParseBatch(want)
		for _, off := range []int64{h.BaseOffset, h.LastOffset()} {
			r, err := p.Read(off, 1, nil)
			if err != nil || !bytes.Equal(r.Data, want) {
				t.Fatalf("batch %d at offset %d: %v", i, off, err)
			}
		}
	}
}

// checkTimeLookup checks OffsetForTime against a scan of record timestamps
// (testBatch gives record j of a batch the timestamp ts+j).
func checkTimeLookup(t *testing.T, p *Partition, batches [][]byte) {
	t.Helper()
	var offs, tss []int64
	for _, b := range batches {
		_, recs, err := DecodeRecords(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			offs, tss = append(offs, r.Offset), append(tss, r.Timestamp)
		}
	}
	for target := tss[0] - 5; target <= tss[len(tss)-1]+5; target += 3 {
		wantOff, wantTs := int64(-1), int64(-1)
		for i := range tss {
			if tss[i] >= target {
				wantOff, wantTs = offs[i], tss[i]
				break
			}
		}
		off, ts, err := p.OffsetForTime(target)
		if err != nil || off != wantOff || ts != wantTs {
			t.Fatalf("OffsetForTime(%d) = %d, %d, %v; want %d, %d", target, off, ts, err, wantOff, wantTs)
		}
	}
}

func appendFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func copyDir(t testing.TB, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
