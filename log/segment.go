package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// segment is one .log file with its two sparse indexes. The active segment
// (the last of a partition) is appended to under the partition's lock;
// sealed segments are immutable and are opened and validated lazily, on
// first use, so that opening a log with many segments costs one stat each.
type segment struct {
	fs   FS
	base int64
	path string // directory/<20-digit base>, no extension

	// Guarded by the partition's lock while active; immutable once the
	// segment is sealed and loaded.
	log        File
	idx        index
	size       int64 // bytes of whole batches
	next       int64 // offset after the last batch; base when empty
	maxTs      int64 // running max of the records' timestamps (timestamps.go), -1 when none carries one
	sinceIndex int64 // bytes appended since the last index entry
	lastPos    int64 // position of the last batch, -1 when empty
	rollAtMs   int64 // wall-clock ms the segment's age is measured from (active)
	// writtenMs is the wall-clock ms of the last write to the .log file:
	// the partition's clock at each append, the file's modification time
	// once reopened. Retention ages a segment by it when no timestamp of
	// its records can be believed (agedAt).
	writtenMs atomic.Int64
	sealed    bool
	synced    bool // everything written is fsynced (guarded by the partition's lock)

	// Lazy loading of a sealed segment.
	loadMu    sync.Mutex
	loaded    atomic.Bool
	corruptAt int64 // position of the first bad batch, -1 if none (set by load)
	corrupt   error // why, for ErrCorruptSegment

	// refs counts users of the open files: the partition holds one until it
	// drops the segment; each read holds one while it reads.
	refs atomic.Int32
}

func segmentPath(dir string, base int64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d", base))
}

// parseSegmentName returns the base offset of a "<20 digits>.log" name.
func parseSegmentName(name string) (int64, bool) {
	stem, ok := strings.CutSuffix(name, ".log")
	if !ok || len(stem) != 20 {
		return 0, false
	}
	n, err := strconv.ParseInt(stem, 10, 64)
	return n, err == nil && n >= 0
}

func newSegmentStub(fsys FS, dir string, base, size int64) *segment {
	s := &segment{fs: fsys, base: base, path: segmentPath(dir, base), size: size, next: -1, maxTs: -1, lastPos: -1, corruptAt: -1}
	s.refs.Store(1)
	return s
}

// createSegment makes a new, empty active segment.
func createSegment(fsys FS, dir string, base int64, nowMs int64) (*segment, error) {
	s := newSegmentStub(fsys, dir, base, 0)
	f, err := fsys.OpenFile(s.path+".log", os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating segment: %w", err)
	}
	s.log = f
	// Index files may survive from a segment that was deleted half-way;
	// start them afresh.
	for _, ext := range []string{".index", ".timeindex"} {
		if err := fsys.Remove(s.path + ext); err != nil && !errors.Is(err, fs.ErrNotExist) {
			f.Close()
			return nil, err
		}
	}
	if s.idx, _, err = loadIndex(fsys, s.path, 0, true); err != nil {
		f.Close()
		return nil, err
	}
	s.next, s.rollAtMs, s.synced = base, nowMs, true
	s.writtenMs.Store(nowMs)
	s.loaded.Store(true)
	return s, nil
}

// modTimeMs is a file's modification time in Unix ms, or orElse when the
// file system gives none.
func modTimeMs(info fs.FileInfo, orElse int64) int64 {
	if ms := info.ModTime().UnixMilli(); !info.ModTime().IsZero() && ms > 0 {
		return ms
	}
	return orElse
}

// recoverActive opens the last segment of a partition for appending. It
// trusts the index up to its last entry that points at a real batch, scans
// the log from there, and truncates whatever follows the last valid batch.
func recoverActive(fsys FS, dir string, base int64, nowMs int64, interval int32, logger *slog.Logger) (*segment, error) {
	s := newSegmentStub(fsys, dir, base, 0)
	f, err := fsys.OpenFile(s.path+".log", os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	s.log = f
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	fileSize := st.Size()
	s.writtenMs.Store(modTimeMs(st, nowMs))
	idx, dropped, err := loadIndex(fsys, s.path, fileSize, true)
	if err != nil {
		f.Close()
		return nil, err
	}
	s.idx = idx
	// Walk back from the last entry until one points at the batch it names.
	for len(s.idx.entries) > 0 {
		e, _ := s.idx.last()
		var hb [batchHeaderSize]byte
		if _, err := f.ReadAt(hb[:], int64(e.pos)); err == nil {
			if h, err := parseHeader(hb[:]); err == nil && h.BaseOffset == base+int64(e.rel) {
				break
			}
		}
		s.idx.entries = s.idx.entries[:len(s.idx.entries)-1]
		dropped++
	}
	if e, ok := s.idx.last(); ok && staleTimeIndex(e) {
		logger.Warn("time index written from batch headers (before timestamps came from the records); rebuilding it",
			"segment", s.path+".log")
		dropped += len(s.idx.entries)
		s.idx.entries = s.idx.entries[:0]
	} else if dropped > 0 {
		logger.Warn("index entries dropped on recovery; rebuilding them from the log",
			"segment", s.path+".log", "entries", dropped)
	}
	from, expect := int64(0), base
	if e, ok := s.idx.last(); ok {
		from, expect = int64(e.pos), base+int64(e.rel)
		s.maxTs = e.maxTs
		// The entry's batch is re-scanned below; drop its entry so the scan
		// re-adds it with the same values.
		s.idx.entries = s.idx.entries[:len(s.idx.entries)-1]
	}
	if err := s.idx.truncate(len(s.idx.entries)); err != nil {
		f.Close()
		return nil, err
	}
	s.next, s.size = expect, from
	// Rebuild entries from the scan on the segment's usual cadence; the
	// first scanned batch always gets one (it had one, or it is at 0).
	sc := newScanner(f, from, fileSize)
	first := true
	var scanErr error
	for {
		pos, h, b, ok := sc.next()
		if !ok {
			scanErr = sc.err
			break
		}
		if h.BaseOffset != s.next {
			scanErr = fmt.Errorf("%w: batch at position %d has base offset %d, expected %d", ErrCorruptBatch, pos, h.BaseOffset, s.next)
			break
		}
		// A batch whose CRC holds was validated when appended; should
		// its records not walk, it counts as carrying no timestamp.
		times, _ := timesOf(b, h)
		if err := s.noteBatch(h, times.max, pos, first && pos > 0, interval); err != nil {
			f.Close()
			return nil, err
		}
		first = false
	}
	if s.size < fileSize {
		logger.Warn("truncating damaged tail of active segment to the last valid batch",
			"segment", s.path+".log", "valid_bytes", s.size, "dropped_bytes", fileSize-s.size,
			"next_offset", s.next, "cause", scanErr)
		if err := f.Truncate(s.size); err != nil {
			f.Close()
			return nil, fmt.Errorf("truncating %s: %w", f.Name(), err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, err
		}
	} else if scanErr != nil {
		// Read error, not damage: refuse rather than guess.
		f.Close()
		return nil, scanErr
	}
	if err := s.idx.sync(); err != nil {
		f.Close()
		return nil, err
	}
	s.rollAtMs = nowMs
	if s.size > 0 {
		// Measure the segment's age from its first batch's largest record
		// timestamp, as Kafka does, unless it has none or it lies in the
		// future: then from now, as Kafka does from the segment's creation.
		sc := newScanner(f, 0, s.size)
		if _, h, b, ok := sc.next(); ok {
			if t, err := timesOf(b, h); err == nil && t.max > 0 && t.max < nowMs {
				s.rollAtMs = t.max
			}
		}
	}
	s.synced = true
	s.loaded.Store(true)
	return s, nil
}

// noteBatch records a batch of header h just written (or found) at pos:
// size, next offset, and an index entry when the interval is due or force.
// maxTs is the batch's largest record timestamp (-1 if none).
func (s *segment) noteBatch(h BatchHeader, maxTs, pos int64, force bool, interval int32) error {
	s.maxTs = max(s.maxTs, maxTs)
	if force || (s.sinceIndex >= int64(interval) && pos > 0) {
		if err := s.idx.add(indexEntry{rel: uint32(h.BaseOffset - s.base), pos: uint32(pos), maxTs: s.maxTs}); err != nil {
			return err
		}
		s.sinceIndex = 0
	}
	s.sinceIndex += int64(h.Length)
	s.size = pos + int64(h.Length)
	s.next = h.LastOffset() + 1
	s.lastPos = pos
	return nil
}

// seal marks the active segment read-only: it indexes the last batch, so the
// time index ends with the segment's max timestamp.
func (s *segment) seal() error {
	if s.lastPos >= 0 {
		if e, ok := s.idx.last(); !ok || int64(e.pos) != s.lastPos {
			var hb [batchHeaderSize]byte
			if _, err := s.log.ReadAt(hb[:], s.lastPos); err != nil {
				return err
			}
			h, err := parseHeader(hb[:])
			if err != nil {
				return err
			}
			if err := s.idx.add(indexEntry{rel: uint32(h.BaseOffset - s.base), pos: uint32(s.lastPos), maxTs: s.maxTs}); err != nil {
				return err
			}
		}
	}
	s.sealed = true
	return nil
}

// load opens and validates a sealed segment once. nextBase is the base
// offset of the segment after it, which its last batch must lead to.
// Problems with the index are repaired; problems with the data are recorded
// in corruptAt and reported by reads.
func (s *segment) load(nextBase int64, interval int32, logger *slog.Logger) error {
	if s.loaded.Load() {
		return nil
	}
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	if s.loaded.Load() {
		return nil
	}
	f, err := s.fs.OpenFile(s.path+".log", os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("opening sealed segment: %w", err)
	}
	// s.size is the size the directory listing gave at open: a sealed
	// segment does not change, and readers (Segments) read it under the
	// partition's lock, not this one, so it is not written here.
	s.log = f
	idx, dropped, err := loadIndex(s.fs, s.path, s.size, false)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		f.Close()
		return err
	}
	rebuild := err != nil || dropped > 0
	if e, ok := idx.last(); ok && staleTimeIndex(e) {
		logger.Warn("time index written from batch headers (before timestamps came from the records); rebuilding it",
			"segment", s.path+".log")
		rebuild = true
	}
	from, expect := int64(0), s.base
	if !rebuild {
		if e, ok := idx.last(); ok {
			var hb [batchHeaderSize]byte
			_, rerr := f.ReadAt(hb[:], int64(e.pos))
			h, perr := parseHeader(hb[:])
			if rerr != nil || perr != nil || h.BaseOffset != s.base+int64(e.rel) {
				rebuild = true
			} else {
				from, expect, s.maxTs = int64(e.pos), h.BaseOffset, e.maxTs
			}
		}
	}
	if rebuild {
		logger.Warn("rebuilding missing or damaged index of sealed segment", "segment", s.path+".log", "dropped_entries", dropped)
		idx = index{}
		from, expect, s.maxTs = 0, s.base, -1
	}
	s.idx = idx
	sc := newScanner(f, from, s.size)
	var built []indexEntry
	var since int64
	next, valid := expect, from
	for {
		pos, h, b, ok := sc.next()
		if !ok {
			break
		}
		if h.BaseOffset != next {
			sc.err = fmt.Errorf("%w: batch at position %d has base offset %d, expected %d", ErrCorruptBatch, pos, h.BaseOffset, next)
			break
		}
		times, _ := timesOf(b, h) // as in recoverActive
		s.maxTs = max(s.maxTs, times.max)
		if rebuild && (pos == 0 || since >= int64(interval)) {
			built = append(built, indexEntry{rel: uint32(h.BaseOffset - s.base), pos: uint32(pos), maxTs: s.maxTs})
			since = 0
		}
		since += int64(h.Length)
		next, valid = h.LastOffset()+1, pos+int64(h.Length)
	}
	if sc.err == nil && nextBase >= 0 && next != nextBase {
		sc.err = fmt.Errorf("%w: segment ends at offset %d but the next segment starts at %d", ErrCorruptBatch, next, nextBase)
	}
	s.next = next
	if sc.err != nil {
		s.corruptAt = valid
		s.corrupt = sc.err
		logger.Error("CORRUPT SEALED SEGMENT: reads of the damaged range will fail; the file is kept untouched",
			"segment", s.path+".log", "valid_bytes", valid, "size", s.size, "next_offset", next, "cause", sc.err)
	}
	if rebuild {
		s.idx.entries = built
		if err := s.writeIndex(); err != nil {
			logger.Warn("could not write rebuilt index; it stays in memory", "segment", s.path, "err", err)
		}
	}
	s.sealed = true
	s.loaded.Store(true)
	return nil
}

// writeIndex replaces a sealed segment's index files with its in-memory
// entries, atomically through a rename.
func (s *segment) writeIndex() error {
	off := make([]byte, 0, len(s.idx.entries)*offsetEntrySize)
	ts := make([]byte, 0, len(s.idx.entries)*timeEntrySize)
	for _, e := range s.idx.entries {
		off = binary.BigEndian.AppendUint32(off, e.rel)
		off = binary.BigEndian.AppendUint32(off, e.pos)
		ts = binary.BigEndian.AppendUint64(ts, uint64(e.maxTs))
		ts = binary.BigEndian.AppendUint32(ts, e.rel)
	}
	for _, w := range []struct {
		ext string
		b   []byte
	}{{".index", off}, {".timeindex", ts}} {
		tmp := s.path + w.ext + ".tmp"
		f, err := s.fs.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		_, err = f.WriteAt(w.b, 0)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = s.fs.Rename(tmp, s.path+w.ext)
		}
		if err != nil {
			s.fs.Remove(tmp)
			return err
		}
	}
	return nil
}

// acquire takes a reference for a read. Only call it while the segment is
// known to be held by the partition (under the partition's lock).
func (s *segment) acquire() { s.refs.Add(1) }

// release drops a reference; the last one closes the files.
func (s *segment) release() {
	if s.refs.Add(-1) == 0 {
		s.closeFiles()
	}
}

func (s *segment) closeFiles() error {
	var err error
	if s.log != nil {
		err = s.log.Close()
	}
	if ierr := s.idx.close(); err == nil {
		err = ierr
	}
	return err
}

// remove deletes the segment's files. Readers holding a reference keep
// reading from the open descriptors.
func (s *segment) remove() error {
	var first error
	for _, ext := range []string{".log", ".index", ".timeindex"} {
		if err := s.fs.Remove(s.path + ext); err != nil && !errors.Is(err, fs.ErrNotExist) && first == nil {
			first = err
		}
	}
	return first
}

// findBatch returns the position and header of the batch holding offset,
// scanning forward from the index entry at or before it. limit is the
// readable size of the segment.
func (s *segment) findBatch(entries []indexEntry, offset, limit int64) (int64, BatchHeader, error) {
	pos := int64(0)
	rel := offset - s.base
	if rel > math.MaxUint32 {
		rel = math.MaxUint32
	}
	x := index{entries: entries}
	expect := s.base
	if e, ok := x.lookup(uint32(rel)); ok {
		pos, expect = int64(e.pos), s.base+int64(e.rel)
	}
	// Base offsets lie outside the CRC: check that they continue densely
	// from the index entry, so a damaged one is reported, not served.
	var hb [batchHeaderSize]byte
	for pos < limit {
		if _, err := s.log.ReadAt(hb[:], pos); err != nil && !errors.Is(err, io.EOF) {
			return 0, BatchHeader{}, err
		}
		h, err := parseHeader(hb[:])
		if err == nil && h.BaseOffset != expect {
			err = fmt.Errorf("batch has base offset %d, expected %d", h.BaseOffset, expect)
		}
		if err != nil {
			return pos, h, s.corruptError(pos, err)
		}
		if h.LastOffset() >= offset {
			return pos, h, nil
		}
		pos += int64(h.Length)
		expect = h.LastOffset() + 1
	}
	return pos, BatchHeader{}, io.EOF
}

func (s *segment) corruptError(pos int64, cause error) error {
	return fmt.Errorf("%w: %s at position %d: %v", ErrCorruptSegment, s.path+".log", pos, cause)
}
