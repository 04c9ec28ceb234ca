package log

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sort"
)

// The sparse indexes of a segment. They are kept in lockstep: entry i of the
// offset index and entry i of the time index name the same batch, so a
// recovery can check one against the other. An entry is added for the first
// batch written after index.interval.bytes of log since the previous entry,
// and one more for the last batch when a segment is sealed.
//
//	.index      entry: relative base offset uint32, file position uint32  (8 bytes)
//	.timeindex  entry: max timestamp through this batch int64, relative base offset uint32  (12 bytes)
//
// The time index holds a running maximum, so its timestamps never decrease.
const (
	offsetEntrySize = 8
	timeEntrySize   = 12
)

type indexEntry struct {
	rel   uint32 // batch base offset minus the segment's base offset
	pos   uint32 // file position of the batch
	maxTs int64  // largest record timestamp in this batch and every batch before it in the segment
}

// index is a segment's pair of sparse index files with their entries held
// in memory. The active segment's index is mutated under the partition's
// lock; a sealed segment's never changes once loaded.
type index struct {
	entries []indexEntry
	offFile File // nil once sealed and closed
	tsFile  File
	scratch [timeEntrySize]byte // encoding buffer for add, so appends do not allocate
}

// lookup returns the last entry whose batch starts at or before offset rel,
// or ok=false if the wanted batch lies before the first entry.
func (x *index) lookup(rel uint32) (indexEntry, bool) {
	i := sort.Search(len(x.entries), func(i int) bool { return x.entries[i].rel > rel })
	if i == 0 {
		return indexEntry{}, false
	}
	return x.entries[i-1], true
}

// lookupTime returns the last entry whose running max timestamp is below ts:
// every record up to and including that entry's batch is older than ts, so a
// search for the first record at or after ts can start there.
func (x *index) lookupTime(ts int64) (indexEntry, bool) {
	i := sort.Search(len(x.entries), func(i int) bool { return x.entries[i].maxTs >= ts })
	if i == 0 {
		return indexEntry{}, false
	}
	return x.entries[i-1], true
}

func (x *index) last() (indexEntry, bool) {
	if len(x.entries) == 0 {
		return indexEntry{}, false
	}
	return x.entries[len(x.entries)-1], true
}

// add appends an entry to memory and both files. The files are written
// through the page cache and synced with the segment; an entry lost in a
// crash is rebuilt by recovery.
func (x *index) add(e indexEntry) error {
	b := &x.scratch
	n := int64(len(x.entries))
	binary.BigEndian.PutUint32(b[0:], e.rel)
	binary.BigEndian.PutUint32(b[4:], e.pos)
	if _, err := x.offFile.WriteAt(b[:offsetEntrySize], n*offsetEntrySize); err != nil {
		return err
	}
	binary.BigEndian.PutUint64(b[0:], uint64(e.maxTs))
	binary.BigEndian.PutUint32(b[8:], e.rel)
	if _, err := x.tsFile.WriteAt(b[:timeEntrySize], n*timeEntrySize); err != nil {
		return err
	}
	x.entries = append(x.entries, e)
	return nil
}

// truncate keeps the first n entries, in memory and on disk.
func (x *index) truncate(n int) error {
	x.entries = x.entries[:n]
	if err := x.offFile.Truncate(int64(n) * offsetEntrySize); err != nil {
		return err
	}
	return x.tsFile.Truncate(int64(n) * timeEntrySize)
}

func (x *index) sync() error {
	if x.offFile == nil {
		return nil
	}
	if err := x.offFile.Sync(); err != nil {
		return err
	}
	return x.tsFile.Sync()
}

func (x *index) close() error {
	if x.offFile == nil {
		return nil
	}
	err1 := x.offFile.Close()
	err2 := x.tsFile.Close()
	x.offFile, x.tsFile = nil, nil
	if err1 != nil {
		return err1
	}
	return err2
}

// loadIndex reads both index files of a segment whose log holds logSize
// bytes, and returns the longest prefix of entries that is consistent:
// both files agree on relative offsets, offsets and positions strictly
// increase, timestamps never decrease, and positions fall inside the log.
// Whether the last entry really points at a batch is the caller's check.
// dropped counts entries discarded as inconsistent.
func loadIndex(fsys FS, basePath string, logSize int64, writable bool) (x index, dropped int, err error) {
	flag := os.O_RDONLY
	if writable {
		flag = os.O_RDWR | os.O_CREATE
	}
	off, err := fsys.OpenFile(basePath+".index", flag, 0o644)
	if err != nil {
		return x, 0, err
	}
	ts, err := fsys.OpenFile(basePath+".timeindex", flag, 0o644)
	if err != nil {
		off.Close()
		return x, 0, err
	}
	offBytes, err1 := readAll(off)
	tsBytes, err2 := readAll(ts)
	if !writable {
		off.Close()
		ts.Close()
	} else {
		x.offFile, x.tsFile = off, ts
	}
	if err1 != nil {
		return x, 0, err1
	}
	if err2 != nil {
		return x, 0, err2
	}
	n := len(offBytes) / offsetEntrySize
	if m := len(tsBytes) / timeEntrySize; m < n {
		dropped += n - m
		n = m
	} else {
		dropped += m - n
	}
	x.entries = make([]indexEntry, 0, n)
	for i := 0; i < n; i++ {
		e := indexEntry{
			rel:   binary.BigEndian.Uint32(offBytes[i*offsetEntrySize:]),
			pos:   binary.BigEndian.Uint32(offBytes[i*offsetEntrySize+4:]),
			maxTs: int64(binary.BigEndian.Uint64(tsBytes[i*timeEntrySize:])),
		}
		tsRel := binary.BigEndian.Uint32(tsBytes[i*timeEntrySize+8:])
		ok := tsRel == e.rel && int64(e.pos)+batchHeaderSize <= logSize
		if ok && i > 0 {
			p := x.entries[i-1]
			ok = e.rel > p.rel && e.pos > p.pos && e.maxTs >= p.maxTs
		}
		if !ok {
			dropped += n - i
			break
		}
		x.entries = append(x.entries, e)
	}
	// Partial trailing entries are dropped silently: they are what a crash
	// in the middle of an index write leaves.
	return x, dropped, nil
}

func readAll(f File) ([]byte, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b := make([]byte, st.Size())
	n, err := f.ReadAt(b, 0)
	if err == io.EOF && int64(n) == st.Size() {
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	return b, nil
}
