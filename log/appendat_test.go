package log

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"
)

// withBase returns a copy of batch carrying base offset base.
func withBase(batch []byte, base int64) []byte {
	b := append([]byte(nil), batch...)
	binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(base))
	return b
}

// A copy made with AppendAt keeps the source's offsets, may start where the
// source's log starts, refuses gaps and overlaps, and reopens as it was.
func TestAppendAtKeepsOffsets(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, Options{Dir: dir})
	if _, err := l.CreateTopic("copy", 1, map[string]string{ConfigFlushPolicy: "always"}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("copy", 0)
	// The source's log starts at 500 (older segments deleted).
	res, err := p.AppendAt(withBase(testBatch(3, 1000, "a"), 500))
	if err != nil {
		t.Fatal(err)
	}
	if res.BaseOffset != 500 || res.LastOffset != 502 || p.StartOffset() != 500 || p.EndOffset() != 503 {
		t.Fatalf("first copy: %+v start %d end %d", res, p.StartOffset(), p.EndOffset())
	}
	if _, err := p.AppendAt(withBase(testBatch(2, 1001, "b"), 503)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []int64{501, 503, 506, 0} { // overlap, replay, gap, the past
		if _, err := p.AppendAt(withBase(testBatch(1, 1002, "x"), bad)); !errors.Is(err, ErrOffsetMismatch) {
			t.Errorf("batch at %d: %v, want ErrOffsetMismatch", bad, err)
		}
	}
	if err := p.WaitDurable(context.Background(), 504); err != nil {
		t.Fatal(err)
	}
	// A plain append goes on from there.
	if res, err := p.Append(testBatch(1, 1003, "c")); err != nil || res.BaseOffset != 505 {
		t.Fatalf("append after the copy: %+v %v", res, err)
	}
	l.Close()

	l2 := openTestLog(t, Options{Dir: dir})
	p2, _ := l2.Partition("copy", 0)
	if p2.StartOffset() != 500 || p2.EndOffset() != 506 {
		t.Fatalf("reopened: start %d end %d, want 500 and 506", p2.StartOffset(), p2.EndOffset())
	}
	rr, err := p2.Read(503, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, recs, err := DecodeRecords(rr.Data)
	if err != nil || recs[0].Offset != 503 || !bytes.Equal(recs[0].Value, []byte("b-0")) {
		t.Fatalf("read 503: %+v %v", recs, err)
	}
}

// A gap in a copy is a batch with no records spanning the offsets the
// source dropped: reads step over it, the copy goes on after it, and it
// survives a reopen. An empty copy may start with a gap.
func TestAppendGapSpansDroppedOffsets(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, Options{Dir: dir})
	if _, err := l.CreateTopic("copy", 2, nil); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("copy", 0)
	if _, err := p.AppendAt(withBase(testBatch(10, 1000, "a"), 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.AppendGap(11, 49, 1001); !errors.Is(err, ErrOffsetMismatch) {
		t.Fatalf("a gap that leaves a hole: %v, want ErrOffsetMismatch", err)
	}
	res, err := p.AppendGap(10, 49, 1001)
	if err != nil || res.BaseOffset != 10 || res.LastOffset != 49 || p.EndOffset() != 50 {
		t.Fatalf("gap: %+v %v, end %d", res, err, p.EndOffset())
	}
	if _, err := p.AppendAt(withBase(testBatch(5, 1002, "b"), 50)); err != nil {
		t.Fatal(err)
	}
	// An empty partition starts at the end of a gap.
	q, _ := l.Partition("copy", 1)
	if _, err := q.AppendGap(100, 199, 1003); err != nil || q.StartOffset() != 100 || q.EndOffset() != 200 {
		t.Fatalf("gap into an empty copy: %v start %d end %d", err, q.StartOffset(), q.EndOffset())
	}
	l.Close()

	l2 := openTestLog(t, Options{Dir: dir})
	p2, _ := l2.Partition("copy", 0)
	if p2.EndOffset() != 55 {
		t.Fatalf("reopened: end %d, want 55", p2.EndOffset())
	}
	rr, err := p2.Read(20, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	var offsets []int64
	var gapLast int64 = -1
	for b := rr.Data; len(b) > 0; {
		h, recs, err := DecodeRecords(b)
		if err != nil {
			t.Fatal(err)
		}
		if h.NumRecords == 0 {
			gapLast = h.LastOffset()
		}
		for _, r := range recs {
			offsets = append(offsets, r.Offset)
		}
		b = b[h.Length:]
	}
	if gapLast != 49 || len(offsets) != 5 || offsets[0] != 50 || offsets[4] != 54 {
		t.Fatalf("read at 20: gap to %d, records %v; want the gap to 49 then 50..54", gapLast, offsets)
	}
	if _, err := ValidateBatch(emptyBatch(0, 9, 1)); err == nil {
		t.Fatal("Append would take a batch with no records from a producer")
	}
}

// Clear empties a partition at its end offset, over several segments; a
// copy then restarts anywhere above, and a reopen finds it as left.
func TestClearEmptiesAtTheEnd(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, Options{Dir: dir})
	if _, err := l.CreateTopic("stage", 1, map[string]string{ConfigSegmentBytes: "1048576"}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("stage", 0)
	for i := 0; i < 30; i++ {
		if _, err := p.AppendAt(withBase(AppendBatch(nil, []Record{{Value: bytes.Repeat([]byte{'x'}, 100_000), Timestamp: int64(i)}}), 1000+int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	if len(p.Segments()) < 2 {
		t.Fatal("want several segments")
	}
	held, err := p.Read(1005, 1, nil) // a reader in the middle of it
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Clear(); err != nil {
		t.Fatal(err)
	}
	if p.StartOffset() != 1030 || p.EndOffset() != 1030 || p.Size() != 0 || len(p.Segments()) != 1 {
		t.Fatalf("cleared: start %d end %d size %d segments %d", p.StartOffset(), p.EndOffset(), p.Size(), len(p.Segments()))
	}
	if len(held.Data) == 0 {
		t.Fatal("the read before Clear lost its data")
	}
	if err := p.Clear(); err != nil { // again, on an empty partition
		t.Fatal(err)
	}
	if _, err := p.AppendAt(withBase(testBatch(2, 1, "y"), 5000)); err != nil {
		t.Fatalf("restarting the cleared copy higher up: %v", err)
	}
	l.Close()
	l2 := openTestLog(t, Options{Dir: dir})
	p2, _ := l2.Partition("stage", 0)
	if p2.StartOffset() != 5000 || p2.EndOffset() != 5002 {
		t.Fatalf("reopened: start %d end %d, want 5000 and 5002", p2.StartOffset(), p2.EndOffset())
	}
}

// A reset interrupted after creating its new segment and before removing
// the old ones leaves an empty segment before the last: reopening removes
// it, and the partition reads and takes a copy's batches as if the reset
// had finished.
func TestReopenAfterAnInterruptedReset(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, Options{Dir: dir})
	if _, err := l.CreateTopic("copy", 1, nil); err != nil {
		t.Fatal(err)
	}
	l.Close()
	// The state the crash leaves: the empty segment 0 and an empty 100.
	pdir := filepath.Join(dir, partitionDirName("copy", 0))
	for _, ext := range []string{".log", ".index", ".timeindex"} {
		if err := os.WriteFile(segmentPath(pdir, 100)+ext, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l2 := openTestLog(t, Options{Dir: dir})
	p, _ := l2.Partition("copy", 0)
	if p.StartOffset() != 100 || p.EndOffset() != 100 || len(p.Segments()) != 1 {
		t.Fatalf("reopened: start %d end %d segments %d, want one empty segment at 100", p.StartOffset(), p.EndOffset(), len(p.Segments()))
	}
	if _, err := p.AppendAt(withBase(testBatch(2, 1, "a"), 250)); err != nil {
		t.Fatalf("a copy restarting at 250: %v", err)
	}
	if _, err := p.Read(250, 1<<20, nil); err != nil {
		t.Fatal(err)
	}
}

// Clear raises the durable offset to the end and wakes whoever waits for
// an offset below it (a flush that will now never come).
func TestClearWakesDurabilityWaiters(t *testing.T) {
	l := openTestLog(t, Options{})
	if _, err := l.CreateTopic("stage", 1, map[string]string{ConfigFlushPolicy: "interval", ConfigFlushMs: "60000"}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("stage", 0)
	if _, err := p.AppendAt(withBase(testBatch(4, 1, "a"), 100)); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // the next flush is 60 s away
		defer cancel()
		waited <- p.WaitDurable(ctx, 103)
	}()
	if err := p.Clear(); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
}

// AppendAtStamped keeps a copy's offsets but stamps the leader's epoch, as
// Append does, so the epoch cache covers the copied batches; without a
// leader epoch it stores the bytes as they came.
func TestAppendAtStamped(t *testing.T) {
	l, err := Open(Options{Dir: t.TempDir(), RetentionCheckInterval: -1, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.CreateTopic("s", 1, nil); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("s", 0)
	b := AppendBatch(nil, []Record{{Value: []byte("a")}, {Value: []byte("b")}})
	binary.BigEndian.PutUint64(b, 10)
	binary.BigEndian.PutUint32(b[offLeaderEpoch:], 0xFFFFFFFF) // a client's -1
	if _, err := p.AppendAtStamped(slices.Clone(b)); err != nil {
		t.Fatal(err)
	}
	if r, _ := p.Read(10, 1<<20, nil); !bytes.Equal(r.Data, b) {
		t.Fatal("without a leader epoch, AppendAtStamped changed the bytes")
	}
	if err := p.SetLeaderEpoch(7); err != nil {
		t.Fatal(err)
	}
	c := AppendBatch(nil, []Record{{Value: []byte("c")}})
	binary.BigEndian.PutUint64(c, 12)
	if _, err := p.AppendAtStamped(c); err != nil {
		t.Fatal(err)
	}
	r, _ := p.Read(12, 1<<20, nil)
	if h, err := ParseBatch(r.Data); err != nil || h.LeaderEpoch != 7 || h.BaseOffset != 12 {
		t.Fatalf("stamped batch: %+v, %v; want epoch 7 at 12", h, err)
	}
	if e, end, _ := p.EndOffsetForEpoch(7); e != 7 || end != 13 {
		t.Fatalf("EndOffsetForEpoch(7) = %d, %d; want 7, 13", e, end)
	}
	if got := p.LeaderEpochs(); len(got) != 1 || got[0] != (EpochEntry{7, 12}) {
		t.Fatalf("epochs %v, want [{7 12}]", got)
	}
}

// Clear keeps the latest leader epoch, from the end on (as DeleteRecords
// does): a follower fetching with its last epoch is answered where it
// stands, not that the leader knows no epoch (which would stop it ever
// taking the cleared start).
func TestClearKeepsTheLatestEpoch(t *testing.T) {
	l := openTestLog(t, Options{})
	if _, err := l.CreateTopic("stage", 1, nil); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("stage", 0)
	for _, e := range []int32{3, 5} {
		if err := p.SetLeaderEpoch(e); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Append(testBatch(2, 1, "x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Clear(); err != nil {
		t.Fatal(err)
	}
	if got := p.LeaderEpochs(); !reflect.DeepEqual(got, []EpochEntry{{Epoch: 5, StartOffset: 4}}) {
		t.Fatalf("epochs after Clear: %v, want epoch 5 from the end 4", got)
	}
	if e, end, err := p.EndOffsetForEpoch(5); err != nil || e != 5 || end != 4 {
		t.Fatalf("EndOffsetForEpoch(5) after Clear: %d %d %v", e, end, err)
	}
}
