package log

import (
	"io"
	"io/fs"
	"os"
)

// FS is the filesystem seam of the log: every file the log touches is opened
// through it. The default is the operating system (OSFS); tests substitute
// implementations that tear writes or lose what was not fsynced.
type FS interface {
	MkdirAll(path string, perm fs.FileMode) error
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	ReadDir(name string) ([]fs.DirEntry, error)
	Stat(name string) (fs.FileInfo, error)
	Remove(name string) error
	RemoveAll(path string) error
	Rename(oldpath, newpath string) error
	// SyncDir makes directory entries (created, renamed or removed files)
	// durable.
	SyncDir(path string) error
}

// File is an open file of an FS. Sync must make every byte written so far
// durable (fsync or fdatasync).
type File interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
	Sync() error
	Truncate(size int64) error
	Stat() (fs.FileInfo, error)
	Name() string
}

// OSFS is the operating system's filesystem.
type OSFS struct{}

var _ FS = OSFS{}

func (OSFS) MkdirAll(path string, perm fs.FileMode) error { return os.MkdirAll(path, perm) }
func (OSFS) ReadDir(name string) ([]fs.DirEntry, error)   { return os.ReadDir(name) }
func (OSFS) Stat(name string) (fs.FileInfo, error)        { return os.Stat(name) }
func (OSFS) Remove(name string) error                     { return os.Remove(name) }
func (OSFS) RemoveAll(path string) error                  { return os.RemoveAll(path) }
func (OSFS) Rename(oldpath, newpath string) error         { return os.Rename(oldpath, newpath) }

func (OSFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (OSFS) SyncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// osFile syncs with fdatasync where the platform has it: the data and the
// file size, not the access times.
type osFile struct{ *os.File }

func (f osFile) Sync() error { return datasync(f.File) }
