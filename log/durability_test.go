package log

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// faultFS wraps the OS filesystem to count fsyncs and to inject a full disk
// or a failing fsync.
type faultFS struct {
	OSFS
	syncs     atomic.Int64
	spaceLeft atomic.Int64 // bytes writable before ENOSPC; <0: unlimited
	failSyncs atomic.Bool
}

func newFaultFS() *faultFS {
	f := &faultFS{}
	f.spaceLeft.Store(-1)
	return f
}

type faultFile struct {
	File
	fs *faultFS
}

func (f *faultFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	file, err := f.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return faultFile{file, f}, nil
}

func (f faultFile) WriteAt(b []byte, off int64) (int, error) {
	left := f.fs.spaceLeft.Load()
	if left >= 0 && int64(len(b)) > left {
		// Write what fits, as a real full disk does, then fail.
		n, _ := f.File.WriteAt(b[:left], off)
		f.fs.spaceLeft.Store(0)
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	if left >= 0 {
		f.fs.spaceLeft.Add(-int64(len(b)))
	}
	return f.File.WriteAt(b, off)
}

func (f faultFile) Sync() error {
	f.fs.syncs.Add(1)
	if f.fs.failSyncs.Load() {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: syscall.EIO}
	}
	return f.File.Sync()
}

func TestWaitDurablePerPolicy(t *testing.T) {
	for _, policy := range []string{"always", "interval", "never"} {
		t.Run(policy, func(t *testing.T) {
			ffs := newFaultFS()
			l := openTestLog(t, Options{FS: ffs})
			l.CreateTopic("t", 1, map[string]string{ConfigFlushPolicy: policy, ConfigFlushMs: "50"})
			p, _ := l.Partition("t", 0)
			synced := ffs.syncs.Load()
			res, err := p.Append(testBatch(3, 1, "x"))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := p.WaitDurable(ctx, res.LastOffset); err != nil {
				t.Fatal(err)
			}
			switch policy {
			case "always", "interval":
				if p.DurableOffset() <= res.LastOffset || ffs.syncs.Load() == synced {
					t.Fatalf("WaitDurable returned with durable offset %d and %d new fsyncs", p.DurableOffset(), ffs.syncs.Load()-synced)
				}
			case "never":
				if ffs.syncs.Load() != synced {
					t.Fatalf("flush.policy=never fsynced %d times", ffs.syncs.Load()-synced)
				}
			}
		})
	}
}

// TestIntervalFlushRunsWithoutWaiters: the group commit runs by itself for
// appends nobody waits on (Kafka acks=1), within about one interval.
func TestIntervalFlushRunsWithoutWaiters(t *testing.T) {
	ffs := newFaultFS()
	l := openTestLog(t, Options{FS: ffs})
	l.CreateTopic("t", 1, map[string]string{ConfigFlushPolicy: "interval", ConfigFlushMs: "20"})
	p, _ := l.Partition("t", 0)
	res, _ := p.Append(testBatch(1, 1, "x"))
	// Poll the observable durable offset, bounded by a deadline.
	deadline := time.Now().Add(10 * time.Second)
	for p.DurableOffset() <= res.LastOffset {
		if time.Now().After(deadline) {
			t.Fatal("interval flush never made the append durable")
		}
		time.Sleep(time.Millisecond)
	}
	if ffs.syncs.Load() == 0 {
		t.Fatal("durable without an fsync")
	}
}

// TestGroupCommitSharesFsyncs: concurrent appenders under flush=always share
// fsyncs, so there are fewer fsyncs than acknowledged appends.
func TestGroupCommitSharesFsyncs(t *testing.T) {
	ffs := newFaultFS()
	l := openTestLog(t, Options{FS: ffs})
	l.CreateTopic("t", 1, map[string]string{ConfigFlushPolicy: "always"})
	p, _ := l.Partition("t", 0)
	before := ffs.syncs.Load()
	const writers, each = 8, 200
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				res, err := p.Append(testBatch(1, 1, "x"))
				if err == nil {
					err = p.WaitDurable(context.Background(), res.LastOffset)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	syncs := ffs.syncs.Load() - before
	if p.DurableOffset() != writers*each {
		t.Fatalf("durable offset %d, want %d", p.DurableOffset(), writers*each)
	}
	if syncs >= writers*each {
		t.Fatalf("%d fsyncs for %d appends: no group commit", syncs, writers*each)
	}
	t.Logf("%d appends acknowledged durable with %d fsyncs", writers*each, syncs)
}

// TestDiskFull: a write that runs out of space fails cleanly, leaves no
// partial batch, keeps what was there, and appends work again once space is
// back.
func TestDiskFull(t *testing.T) {
	ffs := newFaultFS()
	dir := t.TempDir()
	l := openTestLog(t, Options{Dir: dir, FS: ffs})
	l.CreateTopic("t", 1, map[string]string{ConfigIndexIntervalBytes: "0"})
	p, _ := l.Partition("t", 0)
	var kept [][]byte
	for i := 0; i < 5; i++ {
		b := testBatch(2, 1, "before")
		if _, err := p.Append(b); err != nil {
			t.Fatal(err)
		}
		kept = append(kept, b)
	}
	ffs.spaceLeft.Store(30) // less than a batch
	if _, err := p.Append(testBatch(2, 1, "full")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append on a full disk: %v", err)
	}
	if p.EndOffset() != 10 {
		t.Fatalf("end offset moved to %d", p.EndOffset())
	}
	checkAllReadable(t, p, kept)
	ffs.spaceLeft.Store(-1)
	res, err := p.Append(testBatch(1, 1, "after"))
	if err != nil || res.BaseOffset != 10 {
		t.Fatalf("append after space returned: %+v %v", res, err)
	}
	l.Close()
	segs, _ := os.ReadDir(p.Dir())
	for _, e := range segs {
		if s, ok := parseSegmentName(e.Name()); ok {
			sum, _ := ScanSegmentFile(segmentPath(p.Dir(), s)+".log", nil)
			if !sum.OK() || sum.ValidBytes != sum.Size || sum.NextOffset != 11 {
				t.Fatalf("segment after a full disk: %+v", sum)
			}
		}
	}
}

// TestFailedFsyncDisablesThePartition: after a failed fsync nothing more is
// acknowledged.
func TestFailedFsyncDisablesThePartition(t *testing.T) {
	ffs := newFaultFS()
	l := openTestLog(t, Options{FS: ffs})
	l.CreateTopic("t", 1, map[string]string{ConfigFlushPolicy: "always"})
	p, _ := l.Partition("t", 0)
	ffs.failSyncs.Store(true)
	res, err := p.Append(testBatch(1, 1, "x"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitDurable(ctx, res.LastOffset); !errors.Is(err, syscall.EIO) {
		t.Fatalf("WaitDurable after a failed fsync: %v", err)
	}
	if p.DurableOffset() > res.LastOffset {
		t.Fatal("durable offset advanced past a failed fsync")
	}
	if _, err := p.Append(testBatch(1, 1, "y")); err == nil {
		t.Fatal("append accepted after a failed fsync")
	}
}

func TestWaitDurableHonoursContext(t *testing.T) {
	l := openTestLog(t, Options{})
	l.CreateTopic("t", 1, map[string]string{ConfigFlushPolicy: "interval", ConfigFlushMs: "60000"})
	p, _ := l.Partition("t", 0)
	res, _ := p.Append(testBatch(1, 1, "x"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.WaitDurable(ctx, res.LastOffset); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitDurable with a cancelled context: %v", err)
	}
}

// Options.OnSync hears of every group commit that fsyncs something, and of
// no pass that had nothing to fsync.
func TestOnSyncObservesEachGroupCommit(t *testing.T) {
	var mu sync.Mutex
	var seen []time.Duration
	l := openTestLog(t, Options{OnSync: func(d time.Duration) {
		mu.Lock()
		seen = append(seen, d)
		mu.Unlock()
	}})
	if _, err := l.CreateTopic("t", 1, map[string]string{ConfigFlushPolicy: "always"}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("t", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 5; i++ {
		res, err := p.Append(AppendBatch(nil, []Record{{Value: []byte("v")}}))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.WaitDurable(ctx, res.LastOffset); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Sync(); err != nil { // nothing left to fsync
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 5 {
		t.Fatalf("OnSync called %d times for 5 appends each waited durable, want 5", len(seen))
	}
	for _, d := range seen {
		if d < 0 {
			t.Fatalf("negative fsync time %v", d)
		}
	}
}
