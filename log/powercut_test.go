package log_test

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ferry/log"
	"ferry/log/logtest"
)

// The power-cut tests are an external test package: they use the power-cut
// filesystem of log/logtest, which imports log.

// powerCutRun appends from several writers (each waiting for durability when
// wait is set) while a roller seals segments, cuts the power once at least
// cutAfter batches are acknowledged, and returns what was acknowledged (the
// batch, as stored, by base offset) and the durable offset seen just before
// the cut.
type powerCutResult struct {
	acked      map[int64][]byte
	durableCut int64
	dir        string
}

func powerCutRun(t *testing.T, policy string, wait bool, cutAfter int) powerCutResult {
	t.Helper()
	cfs := logtest.NewPowerCutFS()
	dir := t.TempDir()
	l, err := log.Open(log.Options{Dir: dir, FS: cfs, RetentionCheckInterval: -1, Logger: log.QuietLogger})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateTopic("p", 1, map[string]string{log.ConfigFlushPolicy: policy, log.ConfigFlushMs: "5", log.ConfigIndexIntervalBytes: "256"}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("p", 0)

	var mu sync.Mutex
	res := powerCutResult{acked: map[int64][]byte{}, dir: dir}
	var nacked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				b := log.TestBatch(1+i%3, int64(1000+i), string(rune('a'+w)))
				r, err := p.Append(b)
				if err == nil && wait {
					err = p.WaitDurable(context.Background(), r.LastOffset)
				}
				if err != nil {
					return // the power is off
				}
				log.SetBaseOffset(b, r.BaseOffset)
				mu.Lock()
				res.acked[r.BaseOffset] = b
				mu.Unlock()
				nacked.Add(1)
			}
		}()
	}
	wg.Add(1)
	go func() { // seal segments now and then, so the cut finds sealed segments not yet fsynced
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
			}
			if p.Roll() != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for nacked.Load() < int64(cutAfter) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d batches acknowledged in 30s", nacked.Load())
		}
		time.Sleep(time.Millisecond)
	}
	res.durableCut = p.DurableOffset()
	lost := cfs.Cut(t)
	close(stop)
	wg.Wait()
	l.Close() // fails to flush: the power is off
	t.Logf("%s: %d batches acknowledged, durable offset %d, end offset %d at the cut, %d bytes lost",
		policy, len(res.acked), res.durableCut, p.EndOffset(), lost)
	return res
}

// reopenAfterCut opens the log after the power came back and checks that
// its offsets are dense from 0: every batch up to the end is readable.
func reopenAfterCut(t *testing.T, dir string) *log.Partition {
	t.Helper()
	l, err := log.Open(log.Options{Dir: dir, RetentionCheckInterval: -1, Logger: log.QuietLogger})
	if err != nil {
		t.Fatalf("reopen after the power cut: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	p, err := l.Partition("p", 0)
	if err != nil {
		t.Fatal(err)
	}
	for off := p.StartOffset(); off < p.EndOffset(); {
		r, err := p.Read(off, 1, nil)
		if err != nil || len(r.Data) == 0 {
			t.Fatalf("offset %d of %d unreadable after the power cut: %v", off, p.EndOffset(), err)
		}
		h, _ := log.ParseBatch(r.Data)
		off = h.LastOffset() + 1
	}
	if r, err := p.Append(log.TestBatch(1, 1, "after")); err != nil || r.BaseOffset != p.EndOffset()-1 {
		t.Fatalf("append after the power cut: %+v %v", r, err)
	}
	return p
}

// TestPowerCutFlushAlways: under flush.policy=always every batch whose
// WaitDurable returned (Kafka acks=all, MQTT QoS 1) survives a power cut,
// byte for byte at its offset.
func TestPowerCutFlushAlways(t *testing.T) {
	res := powerCutRun(t, "always", true, 400)
	p := reopenAfterCut(t, res.dir)
	for off, want := range res.acked {
		r, err := p.Read(off, 1, nil)
		if err != nil || !bytes.Equal(r.Data, want) {
			t.Fatalf("acknowledged batch at offset %d lost in the power cut (end offset %d): %v", off, p.EndOffset(), err)
		}
	}
}

// TestPowerCutFlushInterval: under flush.policy=interval appends that did
// not wait (acks=1) may be lost, but only those past the durable offset at
// the cut: everything below it survives.
func TestPowerCutFlushInterval(t *testing.T) {
	res := powerCutRun(t, "interval", false, 3000)
	p := reopenAfterCut(t, res.dir)
	if p.EndOffset()-1 < res.durableCut {
		t.Fatalf("end offset %d after the cut, below the durable offset %d at the cut", p.EndOffset()-1, res.durableCut)
	}
	for off, want := range res.acked {
		if off >= res.durableCut {
			continue
		}
		r, err := p.Read(off, 1, nil)
		if err != nil || !bytes.Equal(r.Data, want) {
			t.Fatalf("batch at offset %d, below the durable offset %d at the cut, lost: %v", off, res.durableCut, err)
		}
	}
}

// TestPowerCutModelLosesUnsynced checks the seam itself: without fsyncs
// (flush.policy=never) a cut loses what was appended, so the tests above
// would notice a log that acknowledged before fsyncing.
func TestPowerCutModelLosesUnsynced(t *testing.T) {
	cfs := logtest.NewPowerCutFS()
	dir := t.TempDir()
	l, err := log.Open(log.Options{Dir: dir, FS: cfs, RetentionCheckInterval: -1, Logger: log.QuietLogger})
	if err != nil {
		t.Fatal(err)
	}
	l.CreateTopic("p", 1, map[string]string{log.ConfigFlushPolicy: "never"})
	p, _ := l.Partition("p", 0)
	for i := 0; i < 50; i++ {
		r, err := p.Append(log.TestBatch(2, int64(i), "x"))
		if err == nil {
			err = p.WaitDurable(context.Background(), r.LastOffset)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if lost := cfs.Cut(t); lost == 0 {
		t.Fatal("the power cut lost nothing of 50 unsynced appends")
	}
	l.Close()
	p = reopenAfterCut(t, dir)
	if p.EndOffset() != 1 {
		t.Fatalf("end offset %d after losing every unsynced append, want 1 (the append after the cut)", p.EndOffset())
	}
}
