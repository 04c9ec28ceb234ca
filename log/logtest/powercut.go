// Package logtest holds test seams for the log: filesystems (log.FS) that
// fail the way machines do, for the tests of log and of the packages above
// it. It is never imported by production code.
package logtest

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"ferry/log"
)

// PowerCutFS is a filesystem that can lose power. It writes through to the
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
//
// After a Cut, the files are what a machine would find when the power came
// back: open them again with a new filesystem (log.OSFS, or a new
// PowerCutFS to cut again).
type PowerCutFS struct {
	log.OSFS
	mu    sync.Mutex
	files map[string]*cutState // by path
	dead  bool
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

var _ log.FS = (*PowerCutFS)(nil)

// NewPowerCutFS returns a PowerCutFS with the power on.
func NewPowerCutFS() *PowerCutFS { return &PowerCutFS{files: map[string]*cutState{}} }

var errPowerOff = &os.PathError{Op: "write", Path: "(power cut)", Err: syscall.EIO}

// state returns the file's state, snapshotting a file the FS has not seen
// yet as durable. Call with mu held.
func (c *PowerCutFS) state(name string) *cutState {
	if s := c.files[name]; s != nil {
		return s
	}
	b, _ := os.ReadFile(name)
	s := &cutState{durable: b, dir: filepath.Dir(name)}
	c.files[name] = s
	return s
}

func (c *PowerCutFS) OpenFile(name string, flag int, perm fs.FileMode) (log.File, error) {
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

func (c *PowerCutFS) Remove(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return errPowerOff
	}
	delete(c.files, name)
	return c.OSFS.Remove(name)
}

func (c *PowerCutFS) RemoveAll(path string) error {
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

func (c *PowerCutFS) Rename(oldpath, newpath string) error {
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

func (c *PowerCutFS) SyncDir(path string) error {
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
// fails every later change. It returns how many bytes were lost. A file it
// cannot revert fails the test (t.Error: Cut may run on any goroutine,
// inside the log's own calls). Cutting again does nothing.
func (c *PowerCutFS) Cut(t testing.TB) (lost int64) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return 0
	}
	c.dead = true
	for name, s := range c.files {
		st, err := os.Stat(name)
		if err != nil {
			continue
		}
		if s.newEntry {
			lost += st.Size()
			if err := os.Remove(name); err != nil {
				t.Error(err)
			}
			continue
		}
		lost += max(0, st.Size()-int64(len(s.durable)))
		if err := os.WriteFile(name, s.durable, 0o644); err != nil {
			t.Error(err)
		}
	}
	return lost
}

// IsCut says whether the power was cut.
func (c *PowerCutFS) IsCut() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

type cutFile struct {
	log.File
	fs   *PowerCutFS
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
