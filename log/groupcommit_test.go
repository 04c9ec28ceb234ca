package log

import (
	"context"
	"io/fs"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// gateFS is the OS filesystem whose file fsyncs, once closed is set, each
// announce themselves on started and then wait for a value on release: a
// test sees exactly when an fsync begins and decides when it ends.
type gateFS struct {
	OSFS
	closed  atomic.Bool
	syncs   atomic.Int64 // fsyncs begun while closed
	started chan string
	release chan struct{}
}

type gateFile struct {
	File
	g *gateFS
}

func (g *gateFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := g.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return gateFile{f, g}, nil
}

func (f gateFile) Sync() error {
	if f.g.closed.Load() {
		f.g.syncs.Add(1)
		f.g.started <- f.Name()
		<-f.g.release
	}
	return f.File.Sync()
}

// waitFor runs WaitDurable(offset) in a goroutine; the channel carries its
// result.
func waitFor(p *Partition, offset int64) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- p.WaitDurable(context.Background(), offset) }()
	return ch
}

// fsyncBegins fails the test unless an fsync begins before the deadline.
func fsyncBegins(t *testing.T, g *gateFS, why string) {
	t.Helper()
	select {
	case <-g.started:
	case <-time.After(10 * time.Second):
		t.Fatalf("no fsync began %s (flush.ms is a minute)", why)
	}
}

// notAcknowledged fails the test if a waiter has already returned.
func notAcknowledged(t *testing.T, w <-chan error, what string) {
	t.Helper()
	select {
	case err := <-w:
		t.Fatalf("%s acknowledged (err %v) before its fsync ended", what, err)
	default:
	}
}

func acknowledged(t *testing.T, w <-chan error, what string) {
	t.Helper()
	select {
	case err := <-w:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s never acknowledged after its fsync ended", what)
	}
}

// TestGroupCommitOnDemand: under flush.policy=interval with flush.ms at its
// maximum (a minute), a waiter gets an fsync at once instead of at the next
// interval; appends that arrive while it runs are covered together by the
// next fsync, which begins as soon as the running one ends; and no waiter is
// acknowledged before the fsync covering its data has ended.
func TestGroupCommitOnDemand(t *testing.T) {
	g := &gateFS{started: make(chan string, 16), release: make(chan struct{})}
	l := openTestLog(t, Options{FS: g})
	if _, err := l.CreateTopic("t", 1, map[string]string{ConfigFlushPolicy: "interval", ConfigFlushMs: "60000"}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("t", 0)
	t.Cleanup(func() { g.closed.Store(false); close(g.release) })

	// A first group commit, so the next interval is a minute away.
	a, _ := p.Append(testBatch(1, 1, "a"))
	if err := p.WaitDurable(context.Background(), a.LastOffset); err != nil {
		t.Fatal(err)
	}
	g.closed.Store(true)

	b, _ := p.Append(testBatch(1, 1, "b"))
	wb := waitFor(p, b.LastOffset)
	fsyncBegins(t, g, "for a waiter")
	notAcknowledged(t, wb, "b")

	// Two appends, each with a waiter, while b's fsync runs.
	c, _ := p.Append(testBatch(1, 1, "c"))
	d, _ := p.Append(testBatch(2, 1, "d"))
	wc, wd := waitFor(p, c.LastOffset), waitFor(p, d.LastOffset)
	notAcknowledged(t, wb, "b")
	notAcknowledged(t, wc, "c")

	g.release <- struct{}{} // b's fsync ends
	acknowledged(t, wb, "b")
	if got := p.DurableOffset(); got != b.LastOffset+1 {
		t.Fatalf("durable offset %d after b's fsync, want %d: it covers only what was appended before it began", got, b.LastOffset+1)
	}
	fsyncBegins(t, g, "for c and d once b's ended")
	notAcknowledged(t, wc, "c")
	notAcknowledged(t, wd, "d")
	g.release <- struct{}{}
	acknowledged(t, wc, "c")
	acknowledged(t, wd, "d")
	if got := p.DurableOffset(); got != d.LastOffset+1 {
		t.Fatalf("durable offset %d, want %d", got, d.LastOffset+1)
	}
	if n := g.syncs.Load(); n != 2 {
		t.Fatalf("%d fsyncs for b, then c and d together; want 2", n)
	}
}

// TestGroupCommitOnDemandAlways: flush.policy=always keeps its meaning: an
// append nobody waits for is fsynced at once too.
func TestGroupCommitOnDemandAlways(t *testing.T) {
	g := &gateFS{started: make(chan string, 16), release: make(chan struct{})}
	l := openTestLog(t, Options{FS: g})
	if _, err := l.CreateTopic("t", 1, map[string]string{ConfigFlushPolicy: "always"}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("t", 0)
	t.Cleanup(func() { g.closed.Store(false); close(g.release) })
	g.closed.Store(true)
	a, _ := p.Append(testBatch(1, 1, "a"))
	fsyncBegins(t, g, "for an append under always")
	g.release <- struct{}{}
	if err := p.WaitDurable(context.Background(), a.LastOffset); err != nil {
		t.Fatal(err)
	}
}

// TestUnwaitedDataSyncedWithinFlushMs: data nobody waits for (Kafka
// acks=1) is fsynced by the interval group commit no later than flush.ms
// after the previous pass began, and no earlier: the fake clock of a
// synctest bubble shows both, with no timing in the assertions.
func TestUnwaitedDataSyncedWithinFlushMs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ffs := newFaultFS()
		l := openTestLog(t, Options{FS: ffs})
		if _, err := l.CreateTopic("t", 1, map[string]string{ConfigFlushPolicy: "interval", ConfigFlushMs: "50"}); err != nil {
			t.Fatal(err)
		}
		p, _ := l.Partition("t", 0)
		a, _ := p.Append(testBatch(1, 1, "a"))
		synctest.Wait() // the first pass, begun at once: none ran before
		if p.DurableOffset() <= a.LastOffset {
			t.Fatalf("durable offset %d: the first append was not synced", p.DurableOffset())
		}
		b, _ := p.Append(testBatch(1, 1, "b"))
		time.Sleep(49 * time.Millisecond)
		synctest.Wait()
		if p.DurableOffset() > b.LastOffset {
			t.Fatal("unwaited data synced before flush.ms elapsed: the interval does not batch")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if p.DurableOffset() <= b.LastOffset {
			t.Fatalf("durable offset %d, want past %d once flush.ms elapsed", p.DurableOffset(), b.LastOffset)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSyncSoonOverlapsPartitionsFsyncs: a caller waiting on two partitions
// asks both with SyncSoon before it waits, so the second partition's fsync
// begins while the first's is still held, not once it returns (under
// flush.ms of a minute nothing else would start it). SyncSoon itself never
// waits, and asks nothing of a partition already durable.
func TestSyncSoonOverlapsPartitionsFsyncs(t *testing.T) {
	g := &gateFS{started: make(chan string, 16), release: make(chan struct{})}
	l := openTestLog(t, Options{FS: g})
	if _, err := l.CreateTopic("t", 2, map[string]string{ConfigFlushPolicy: "interval", ConfigFlushMs: "60000"}); err != nil {
		t.Fatal(err)
	}
	p0, _ := l.Partition("t", 0)
	p1, _ := l.Partition("t", 1)
	t.Cleanup(func() { g.closed.Store(false); close(g.release) })
	// A first group commit on each, so the next interval is a minute away.
	for _, p := range []*Partition{p0, p1} {
		a, _ := p.Append(testBatch(1, 1, "warm"))
		if err := p.WaitDurable(context.Background(), a.LastOffset); err != nil {
			t.Fatal(err)
		}
		p.SyncSoon(a.LastOffset) // durable already: no fsync
	}
	g.closed.Store(true)

	a0, _ := p0.Append(testBatch(1, 1, "a0"))
	a1, _ := p1.Append(testBatch(1, 1, "a1"))
	p0.SyncSoon(a0.LastOffset)
	p1.SyncSoon(a1.LastOffset)
	// Nobody waits yet: the asks alone start both fsyncs.
	fsyncBegins(t, g, "for the first partition")
	fsyncBegins(t, g, "for the second partition while the first's is held")
	w0, w1 := waitFor(p0, a0.LastOffset), waitFor(p1, a1.LastOffset)
	notAcknowledged(t, w0, "partition 0")
	notAcknowledged(t, w1, "partition 1")
	g.release <- struct{}{}
	g.release <- struct{}{}
	acknowledged(t, w0, "partition 0")
	acknowledged(t, w1, "partition 1")
	if n := g.syncs.Load(); n != 2 {
		t.Fatalf("%d fsyncs, want one per partition", n)
	}
}
