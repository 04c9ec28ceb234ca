package log_test

import (
	"io/fs"
	"os"
	"reflect"
	"sync"
	"testing"

	"ferry/log"
	"ferry/log/logtest"
)

// cutAtFS counts the changes the log makes through it once armed, and
// cuts the power of the powerCutFS beneath it just before the at-th.
type cutAtFS struct {
	*logtest.PowerCutFS
	t     testing.TB
	mu    sync.Mutex
	armed bool
	n, at int
}

func (c *cutAtFS) step() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.armed {
		return
	}
	c.n++
	if c.n == c.at {
		c.PowerCutFS.Cut(c.t)
	}
}

func (c *cutAtFS) OpenFile(name string, flag int, perm fs.FileMode) (log.File, error) {
	if flag&(os.O_CREATE|os.O_TRUNC) != 0 {
		c.step()
	}
	f, err := c.PowerCutFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return cutAtFile{f, c}, nil
}
func (c *cutAtFS) Remove(name string) error { c.step(); return c.PowerCutFS.Remove(name) }
func (c *cutAtFS) Rename(a, b string) error { c.step(); return c.PowerCutFS.Rename(a, b) }
func (c *cutAtFS) SyncDir(path string) error {
	c.step()
	return c.PowerCutFS.SyncDir(path)
}

type cutAtFile struct {
	log.File
	c *cutAtFS
}

func (f cutAtFile) WriteAt(b []byte, off int64) (int, error) {
	f.c.step()
	return f.File.WriteAt(b, off)
}
func (f cutAtFile) Truncate(size int64) error { f.c.step(); return f.File.Truncate(size) }
func (f cutAtFile) Sync() error               { f.c.step(); return f.File.Sync() }

// A power cut at every step of a truncation leaves a log that reopens
// dense, holding a prefix of what it held that ends between the cut and
// where it ended, with leader epochs and producer state that match its
// batches; truncating again then ends exactly at the cut.
func TestTruncateToPowerCut(t *testing.T) {
	const target = 16 // inside the batch at 15, in a sealed segment
	wantEpochs := []log.EpochEntry{{1, 0}, {2, 12}}
	for at := 1; ; at++ {
		dir := t.TempDir()
		cfs := &cutAtFS{PowerCutFS: logtest.NewPowerCutFS(), t: t, at: at}
		l, p, stored := log.TruncFixture(t, dir, cfs)
		if err := p.Sync(); err != nil {
			t.Fatal(err)
		}
		cfs.mu.Lock()
		cfs.armed = true
		cfs.mu.Unlock()
		_, terr := p.TruncateTo(target)
		l.Close()
		cfs.mu.Lock()
		steps, cut := cfs.n, cfs.n >= at
		cfs.mu.Unlock()
		if !cut {
			if terr != nil {
				t.Fatalf("truncation without a power cut: %v", terr)
			}
			t.Logf("a truncation takes %d steps; cut at each of them", steps)
			if at < 5 {
				t.Fatalf("only %d steps: the seam does not see the truncation", steps)
			}
			return
		}
		l, err := log.Open(log.Options{Dir: dir, RetentionCheckInterval: -1, Logger: log.QuietLogger})
		if err != nil {
			t.Fatalf("cut at step %d: reopen: %v", at, err)
		}
		p, _ = l.Partition("t", 0)
		if end := p.EndOffset(); end < 15 || end > 36 {
			t.Fatalf("cut at step %d: end offset %d, want between 15 and 36", at, end)
		}
		log.CheckPrefix(t, p, stored)
		for _, e := range p.LeaderEpochs() {
			if e.StartOffset >= p.EndOffset() {
				t.Fatalf("cut at step %d: epoch %v starts past the end %d", at, e, p.EndOffset())
			}
		}
		if end, err := p.TruncateTo(target); err != nil || end != 15 {
			t.Fatalf("cut at step %d: truncating again: %d, %v", at, end, err)
		}
		if got := p.LeaderEpochs(); !reflect.DeepEqual(got, wantEpochs) {
			t.Fatalf("cut at step %d: epochs %v, want %v", at, got, wantEpochs)
		}
		if r, err := p.Append(log.WithProducer(log.TestBatch(3, 1, "again"), 9, 0, 15)); err != nil || r.BaseOffset != 15 {
			t.Fatalf("cut at step %d: producer state after truncation: %+v %v", at, r, err)
		}
		l.Close()
	}
}
