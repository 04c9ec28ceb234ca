package log

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// truncFixture builds partition "t"-0 in dir: batches of 3 records, one
// idempotent producer (pid 9, sequences following on), epochs 1, 2 and 4
// stamped, segments rolled every 3 batches. It returns every stored batch
// by base offset (as stored).
func truncFixture(t *testing.T, dir string, fsys FS) (*Log, *Partition, map[int64][]byte) {
	t.Helper()
	l, err := Open(Options{Dir: dir, FS: fsys, RetentionCheckInterval: -1, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateTopic("t", 1, map[string]string{ConfigIndexIntervalBytes: "100"}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("t", 0)
	stored := map[int64][]byte{}
	epochs := []int32{1, 1, 1, 1, 2, 2, 2, 4, 4, 4, 4, 4}
	for i, e := range epochs {
		if i == 0 || e != epochs[i-1] {
			if err := p.SetLeaderEpoch(e); err != nil {
				t.Fatal(err)
			}
		}
		b := withProducer(testBatch(3, int64(1000+i), "v"), 9, 0, int32(3*i))
		r, err := p.Append(b)
		if err != nil {
			t.Fatal(err)
		}
		stored[r.BaseOffset] = b
		if i%3 == 2 {
			if err := p.Roll(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return l, p, stored
}

// checkPrefix checks that the partition holds exactly the fixture's batches
// below its end, byte for byte, and that offsets are dense.
func checkPrefix(t *testing.T, p *Partition, stored map[int64][]byte) {
	t.Helper()
	off := p.StartOffset()
	for off < p.EndOffset() {
		r, err := p.Read(off, 1, nil)
		if err != nil || len(r.Data) == 0 {
			t.Fatalf("offset %d of %d unreadable: %v", off, p.EndOffset(), err)
		}
		h, _ := ParseBatch(r.Data)
		if want, ok := stored[off]; !ok || !bytes.Equal(r.Data[:h.Length], want) {
			t.Fatalf("batch at %d differs from the one appended there", off)
		}
		off = h.LastOffset() + 1
	}
	if off != p.EndOffset() {
		t.Fatalf("batches end at %d, end offset %d", off, p.EndOffset())
	}
}

func TestTruncateTo(t *testing.T) {
	dir := t.TempDir()
	l, p, stored := truncFixture(t, dir, nil)
	defer func() { l.Close() }()
	if p.EndOffset() != 36 || len(p.Segments()) != 5 {
		t.Fatalf("fixture: end %d, %d segments", p.EndOffset(), len(p.Segments()))
	}
	// Offset 16 lies inside the batch 15..17 of a sealed segment (15..17 in
	// segment 9): the whole batch goes, the log ends at 15.
	end, err := p.TruncateTo(16)
	if err != nil || end != 15 || p.EndOffset() != 15 {
		t.Fatalf("TruncateTo(16) = %d, %v; end offset %d", end, err, p.EndOffset())
	}
	checkPrefix(t, p, stored)
	if got, want := p.LeaderEpochs(), []EpochEntry{{1, 0}, {2, 12}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("epochs %v, want %v", got, want)
	}
	if e, off, _ := p.EndOffsetForEpoch(4); e != -1 || off != -1 {
		t.Fatalf("epoch 4 after its batches went: %d %d", e, off)
	}
	if _, err := os.Stat(snapshotPath(p.Dir(), 18)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("producer snapshot past the cut kept: %v", err)
	}
	// Producer state is back at the cut: sequence 15 is the next one, and
	// what was cut may be appended again.
	if _, err := p.Append(withProducer(testBatch(3, 1, "again"), 9, 0, 18)); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("sequence past the cut: %v", err)
	}
	again := withProducer(testBatch(3, 1, "again"), 9, 0, 15)
	r, err := p.Append(again)
	if err != nil || r.BaseOffset != 15 {
		t.Fatalf("append after truncation: %+v %v", r, err)
	}
	stored[15] = again
	checkPrefix(t, p, stored)

	// Reopen: the same log.
	l.Close()
	l, err = Open(Options{Dir: dir, RetentionCheckInterval: -1, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	p, _ = l.Partition("t", 0)
	if p.EndOffset() != 18 {
		t.Fatalf("end offset %d after reopen, want 18", p.EndOffset())
	}
	checkPrefix(t, p, stored)

	// Cutting at a segment's first offset, and at the log start.
	if end, err := p.TruncateTo(9); err != nil || end != 9 {
		t.Fatalf("TruncateTo(9) = %d, %v", end, err)
	}
	if end, err := p.TruncateTo(0); err != nil || end != 0 || p.Size() != 0 {
		t.Fatalf("TruncateTo(0) = %d, %v, size %d", end, err, p.Size())
	}
	if got := p.LeaderEpochs(); len(got) != 0 {
		t.Fatalf("epochs left in an empty log: %v", got)
	}
	if r, err := p.Append(testBatch(1, 1, "first")); err != nil || r.BaseOffset != 0 {
		t.Fatalf("append to the emptied log: %+v %v", r, err)
	}
	l.Close()
}

// TruncateTo never cuts below the high watermark, the checkpointed one
// after a reopen, and a reopened node never exposes more than its
// checkpoint.
func TestTruncateToRefusesBelowHighWatermark(t *testing.T) {
	dir := t.TempDir()
	l, p, stored := truncFixture(t, dir, nil)
	if hw := p.HighWatermark(); hw != 0 {
		t.Fatalf("high watermark %d before any advance", hw)
	}
	if got := p.AdvanceHighWatermark(1000); got != 36 {
		t.Fatalf("advanced to %d, want the end offset 36", got)
	}
	if got := p.AdvanceHighWatermark(10); got != 36 {
		t.Fatalf("the high watermark moved back to %d", got)
	}
	if _, err := p.TruncateTo(30); !errors.Is(err, ErrBelowHighWatermark) {
		t.Fatalf("truncation below the in-memory high watermark: %v", err)
	}
	l.Close() // checkpoints it
	l, err := Open(Options{Dir: dir, RetentionCheckInterval: -1, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	p, _ = l.Partition("t", 0)
	if hw := p.HighWatermark(); hw != 36 {
		t.Fatalf("high watermark %d after reopen, want 36", hw)
	}
	l.Close()

	// An older checkpoint: the reopened node starts from it, and a cut
	// between it and the end is allowed, one below it is not.
	os.WriteFile(filepath.Join(p.Dir(), hwFileName), []byte("0\n24\n"), 0o644)
	l, err = Open(Options{Dir: dir, RetentionCheckInterval: -1, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p, _ = l.Partition("t", 0)
	if hw := p.HighWatermark(); hw != 24 {
		t.Fatalf("high watermark %d after reopen, want the checkpoint's 24", hw)
	}
	if _, err := p.TruncateTo(23); !errors.Is(err, ErrBelowHighWatermark) {
		t.Fatalf("truncation below the checkpoint: %v", err)
	}
	if end, err := p.TruncateTo(25); !errors.Is(err, ErrBelowHighWatermark) {
		// 25 is inside the batch at 24: cutting it whole stays at 24.
		if err != nil || end != 24 {
			t.Fatalf("TruncateTo(25) = %d, %v", end, err)
		}
	}
	checkPrefix(t, p, stored)
	if p.EndOffset() != 24 {
		t.Fatalf("end offset %d, want 24", p.EndOffset())
	}
	// A damaged checkpoint refuses to open rather than guess.
	l.Close()
	os.WriteFile(filepath.Join(p.Dir(), hwFileName), []byte("0\nx\n"), 0o644)
	if l2, err := Open(Options{Dir: dir, RetentionCheckInterval: -1, Logger: quietLogger}); err == nil {
		l2.Close()
		t.Fatal("opened with a damaged high-watermark checkpoint")
	}
}

// A node alone never writes a high-watermark checkpoint: its files are as
// before.
func TestHighWatermarkUntouchedAlone(t *testing.T) {
	dir := t.TempDir()
	l, p, _ := truncFixture(t, dir, nil)
	l.Close()
	if _, err := os.Stat(filepath.Join(p.Dir(), hwFileName)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a partition whose high watermark never moved wrote a checkpoint: %v", err)
	}
}

// holdLogSyncFS holds every fsync of a .log file while held is set.
type holdLogSyncFS struct {
	OSFS
	held    atomic.Bool
	release chan struct{}
}

type holdLogSyncFile struct {
	File
	h *holdLogSyncFS
}

func (h *holdLogSyncFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := h.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return holdLogSyncFile{f, h}, nil
}

func (f holdLogSyncFile) Sync() error {
	if f.h.held.Load() && strings.HasSuffix(f.Name(), ".log") {
		<-f.h.release
	}
	return f.File.Sync()
}

// The checkpoint never passes the durable offset: a power cut cannot leave
// it above what the log kept.
func TestHighWatermarkCheckpointIsDurable(t *testing.T) {
	hfs := &holdLogSyncFS{release: make(chan struct{})}
	l := openTestLog(t, Options{FS: hfs})
	if _, err := l.CreateTopic("h", 1, nil); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("h", 0)
	p.Append(testBatch(4, 1, "x"))
	if err := p.WaitDurable(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	hfs.held.Store(true)
	defer close(hfs.release)
	p.Append(testBatch(4, 1, "y")) // its fsync is held: durable stays 4
	if got := p.AdvanceHighWatermark(8); got != 8 {
		t.Fatalf("advanced to %d", got)
	}
	if err := p.CheckpointHighWatermark(); err != nil {
		t.Fatal(err)
	}
	if got := p.CheckpointedHighWatermark(); got != 4 {
		t.Fatalf("checkpointed %d, want the durable offset 4 (durable now %d)", got, p.DurableOffset())
	}
	b, _ := os.ReadFile(filepath.Join(p.Dir(), hwFileName))
	if string(b) != "0\n4\n" {
		t.Fatalf("checkpoint file %q", b)
	}
}

// Reads, high-watermark advances and appends racing truncations see whole,
// valid batches or an error, and the high watermark never passes the end.
func TestTruncateToUnderConcurrentUse(t *testing.T) {
	l := openTestLog(t, Options{Logger: quietLogger})
	if _, err := l.CreateTopic("c", 1, map[string]string{ConfigIndexIntervalBytes: "100"}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("c", 0)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() { // reader
		defer wg.Done()
		var buf []byte
		for i := int64(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			end := p.EndOffset()
			if end == 0 {
				continue
			}
			r, err := p.Read(i%end, 4096, buf)
			if err != nil {
				continue // cut meanwhile: out of range
			}
			buf = r.Data
			for b := r.Data; len(b) > 0; {
				h, err := ParseBatch(b)
				if err != nil {
					errs <- fmt.Errorf("read returned a bad batch: %v", err)
					return
				}
				b = b[h.Length:]
			}
		}
	}()
	go func() { // high watermark
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if hw := p.AdvanceHighWatermark(p.EndOffset() - 3); hw > p.EndOffset() {
				errs <- fmt.Errorf("high watermark %d past the end %d", hw, p.EndOffset())
				return
			}
		}
	}()
	for round := 0; round < 100; round++ {
		for i := 0; i < 5; i++ {
			if _, err := p.Append(testBatch(2, 1, "r")); err != nil {
				t.Fatal(err)
			}
		}
		if round%7 == 0 {
			p.Roll()
		}
		hw := p.HighWatermark()
		if _, err := p.TruncateTo(hw + (p.EndOffset()-hw)/2); err != nil && !errors.Is(err, ErrBelowHighWatermark) {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if p.HighWatermark() > p.EndOffset() {
		t.Fatalf("high watermark %d past the end %d", p.HighWatermark(), p.EndOffset())
	}
}

// A deposed leader noted its epoch at its end and appended nothing under
// it: truncating to the end (a follower's cut at the divergence point)
// drops that epoch, else the follower would report it as its last fetched
// epoch and diverge again after each cut.
func TestTruncateToEndDropsEpochNotedAtEnd(t *testing.T) {
	l, p, _ := truncFixture(t, t.TempDir(), nil)
	defer l.Close()
	end := p.EndOffset()
	if err := p.SetLeaderEpoch(7); err != nil {
		t.Fatal(err)
	}
	if got := p.LeaderEpochs(); got[len(got)-1] != (EpochEntry{Epoch: 7, StartOffset: end}) {
		t.Fatalf("epochs after SetLeaderEpoch(7): %v", got)
	}
	if n, err := p.TruncateTo(end); err != nil || n != end {
		t.Fatalf("TruncateTo(end) = %d, %v", n, err)
	}
	if got := p.LeaderEpochs(); got[len(got)-1].Epoch != 4 {
		t.Fatalf("epoch 7 kept at the end after TruncateTo(end): %v", got)
	}
}

// A consumer long-polling a replicated partition waits for the high
// watermark: its advance wakes Wait as an append does.
func TestAdvanceHighWatermarkWakesWait(t *testing.T) {
	l, p, _ := truncFixture(t, t.TempDir(), nil)
	defer l.Close()
	ch := p.Wait()
	p.AdvanceHighWatermark(3)
	select {
	case <-ch:
	default:
		t.Fatal("Wait's channel not closed by a high-watermark advance")
	}
	ch = p.Wait()
	p.AdvanceHighWatermark(3) // no move: no wake
	select {
	case <-ch:
		t.Fatal("Wait's channel closed without a move")
	default:
	}
}

// StartOver empties a follower's log at its leader's log start; it never
// moves the log back.
func TestStartOver(t *testing.T) {
	l, p, _ := truncFixture(t, t.TempDir(), nil)
	defer l.Close()
	end := p.EndOffset()
	if err := p.StartOver(end - 1); !errors.Is(err, ErrOffsetMismatch) {
		t.Fatalf("StartOver below the end: %v, want ErrOffsetMismatch", err)
	}
	if err := p.StartOver(end + 10); err != nil {
		t.Fatal(err)
	}
	if p.StartOffset() != end+10 || p.EndOffset() != end+10 || p.HighWatermark() != end+10 || len(p.LeaderEpochs()) != 0 {
		t.Fatalf("after StartOver: [%d, %d) HW %d epochs %v", p.StartOffset(), p.EndOffset(), p.HighWatermark(), p.LeaderEpochs())
	}
	b := testBatch(1, 5, "x")
	binary.BigEndian.PutUint64(b, uint64(end+10))
	if _, err := p.AppendAt(b); err != nil {
		t.Fatalf("AppendAt at the new start: %v", err)
	}
}
