package log

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// powerCutFS is a filesystem that can lose power. It writes through to the
// operating system, and remembers, for every file the log touches, its
// content as of its last fsync and whether its directory entry has been made
// durable (SyncDir) since the file was created or renamed into place. Cut
// simulates a power cut: from then on every write, sync, truncate, create,
// rename and remove fails with EIO (the machine is off), each file reverts
// to its content as of its last fsync, and files whose directory entry was
// never made durable vanish.
//
// The model is the harshest legal one: no write that was not fsynced
// survives. (A rename not followed by SyncDir loses the target, where a real
// disk might keep the old file; removals are treated as durable at once.)
// Files that exist before the FS first opens them count as durable.
type powerCutFS struct {
	OSFS
	mu    sync.Mutex
	files map[string]*cutState // by path
	dead  bool
	syncs atomic.Int64
}

// cutState is what the FS knows of one file.
type cutState struct {
	durable  []byte  // content as of the last fsync
	pending  []cutOp // writes and truncates since then, in order
	newEntry bool    // created or renamed since its directory's last SyncDir
	dir      string  // its directory
}

// cutOp is one write (data at off) or truncate (data nil, to off).
type cutOp struct {
	off  int64
	data []byte
}

func newPowerCutFS() *powerCutFS { return &powerCutFS{files: map[string]*cutState{}} }

var errPowerOff = &os.PathError{Op: "write", Path: "(power cut)", Err: syscall.EIO}

// state returns the file's state, snapshotting a file the FS has not seen
// yet as durable. Call with mu held.
func (c *powerCutFS) state(name string) *cutState {
	if s := c.files[name]; s != nil {
		return s
	}
	b, _ := os.ReadFile(name)
	s := &cutState{durable: b, dir: filepath.Dir(name)}
	c.files[name] = s
	return s
}

func (c *powerCutFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead && flag&(os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_RDWR) != 0 {
		return nil, errPowerOff
	}
	_, statErr := os.Stat(name)
	f, err := c.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	if flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		return f, nil
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		c.files[name] = &cutState{newEntry: true, dir: filepath.Dir(name)}
	} else {
		s := c.state(name)
		if flag&os.O_TRUNC != 0 {
			s.pending = append(s.pending, cutOp{off: 0})
		}
	}
	return &cutFile{File: f, fs: c, name: name}, nil
}

func (c *powerCutFS) Remove(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return errPowerOff
	}
	delete(c.files, name)
	return c.OSFS.Remove(name)
}

func (c *powerCutFS) RemoveAll(path string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return errPowerOff
	}
	for name := range c.files {
		if name == path || filepath.Dir(name) == path {
			delete(c.files, name)
		}
	}
	return c.OSFS.RemoveAll(path)
}

func (c *powerCutFS) Rename(oldpath, newpath string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return errPowerOff
	}
	s := c.state(oldpath)
	if err := c.OSFS.Rename(oldpath, newpath); err != nil {
		return err
	}
	delete(c.files, oldpath)
	s.newEntry, s.dir = true, filepath.Dir(newpath)
	c.files[newpath] = s
	return nil
}

func (c *powerCutFS) SyncDir(path string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return errPowerOff
	}
	for _, s := range c.files {
		if s.dir == path {
			s.newEntry = false
		}
	}
	return nil
}

// Cut turns the power off: it reverts every file to what was durable and
// fails every later change. It returns how many bytes were lost.
func (c *powerCutFS) Cut(t testing.TB) (lost int64) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dead = true
	for name, s := range c.files {
		st, err := os.Stat(name)
		if err != nil {
			continue
		}
		if s.newEntry {
			lost += st.Size()
			if err := os.Remove(name); err != nil {
				t.Fatal(err)
			}
			continue
		}
		lost += max(0, st.Size()-int64(len(s.durable)))
		if err := os.WriteFile(name, s.durable, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return lost
}

type cutFile struct {
	File
	fs   *powerCutFS
	name string
}

func (f *cutFile) WriteAt(b []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.dead {
		return 0, errPowerOff
	}
	n, err := f.File.WriteAt(b, off)
	if s := f.fs.files[f.name]; s != nil && n > 0 {
		s.pending = append(s.pending, cutOp{off: off, data: bytes.Clone(b[:n])})
	}
	return n, err
}

func (f *cutFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.dead {
		return errPowerOff
	}
	if err := f.File.Truncate(size); err != nil {
		return err
	}
	if s := f.fs.files[f.name]; s != nil {
		s.pending = append(s.pending, cutOp{off: size})
	}
	return nil
}

// Sync makes the file's pending writes durable. The real fsync is skipped:
// the power cut is simulated, and the test's speed should not depend on the
// disk.
func (f *cutFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.dead {
		return &os.PathError{Op: "fdatasync", Path: f.name, Err: syscall.EIO}
	}
	f.fs.syncs.Add(1)
	s := f.fs.files[f.name]
	if s == nil {
		return nil
	}
	for _, op := range s.pending {
		if op.data == nil {
			if op.off < int64(len(s.durable)) {
				s.durable = s.durable[:op.off]
			} else {
				s.durable = append(s.durable, make([]byte, op.off-int64(len(s.durable)))...)
			}
			continue
		}
		if end := op.off + int64(len(op.data)); end > int64(len(s.durable)) {
			s.durable = append(s.durable, make([]byte, end-int64(len(s.durable)))...)
		}
		copy(s.durable[op.off:], op.data)
	}
	s.pending = nil
	return nil
}

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
	cfs := newPowerCutFS()
	dir := t.TempDir()
	l, err := Open(Options{Dir: dir, FS: cfs, RetentionCheckInterval: -1, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateTopic("p", 1, map[string]string{ConfigFlushPolicy: policy, ConfigFlushMs: "5", ConfigIndexIntervalBytes: "256"}); err != nil {
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
				b := testBatch(1+i%3, int64(1000+i), string(rune('a'+w)))
				r, err := p.Append(b)
				if err == nil && wait {
					err = p.WaitDurable(context.Background(), r.LastOffset)
				}
				if err != nil {
					return // the power is off
				}
				setBaseOffset(b, r.BaseOffset)
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

// setBaseOffset writes the offset the log gave a batch into its header, as
// the log stores it (the base offset is outside the CRC).
func setBaseOffset(b []byte, off int64) {
	for i := 0; i < 8; i++ {
		b[7-i] = byte(off >> (8 * i))
	}
}

// reopenAfterCut opens the log after the power came back and checks that
// its offsets are dense from 0: every batch up to the end is readable.
func reopenAfterCut(t *testing.T, dir string) *Partition {
	t.Helper()
	l, err := Open(Options{Dir: dir, RetentionCheckInterval: -1, Logger: quietLogger})
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
		h, _ := ParseBatch(r.Data)
		off = h.LastOffset() + 1
	}
	if r, err := p.Append(testBatch(1, 1, "after")); err != nil || r.BaseOffset != p.EndOffset()-1 {
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
	cfs := newPowerCutFS()
	dir := t.TempDir()
	l, err := Open(Options{Dir: dir, FS: cfs, RetentionCheckInterval: -1, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	l.CreateTopic("p", 1, map[string]string{ConfigFlushPolicy: "never"})
	p, _ := l.Partition("p", 0)
	for i := 0; i < 50; i++ {
		r, err := p.Append(testBatch(2, int64(i), "x"))
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
