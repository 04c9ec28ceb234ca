package log

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ScannedBatch is one batch found by ScanSegmentFile.
type ScannedBatch struct {
	Position int64
	Header   BatchHeader
}

// ScanSummary is the outcome of scanning a segment file.
type ScanSummary struct {
	Path        string
	BaseOffset  int64 // from the file name
	Size        int64 // bytes in the file
	ValidBytes  int64 // bytes of whole batches with good CRCs and dense offsets, from the start
	Batches     int
	Records     int64
	NextOffset  int64 // offset after the last valid batch
	FirstTs     int64
	MaxTs       int64
	Problem     string // why scanning stopped before the end; empty when the file is whole
	ProblemTorn bool   // the problem is a batch cut short by the end of the file
}

// OK reports whether the whole file is valid.
func (s ScanSummary) OK() bool { return s.Problem == "" }

// ScanSegmentFile reads a segment's .log file from the start, checking every
// batch's framing, CRC-32C and that offsets continue densely from the base
// offset in the file name, and calls fn for each valid batch (fn returning
// false stops early). It never modifies the file: it is what `ferry log
// dump` and `ferry log verify` run, safe on a live broker's files.
func ScanSegmentFile(path string, fn func(ScannedBatch) bool) (ScanSummary, error) {
	sum := ScanSummary{Path: path, FirstTs: -1, MaxTs: -1}
	base, ok := parseSegmentName(filepath.Base(path))
	if !ok {
		return sum, fmt.Errorf("%s: not a segment file (want <20-digit base offset>.log)", path)
	}
	sum.BaseOffset, sum.NextOffset = base, base
	f, err := OSFS{}.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return sum, err
	}
	sum.Size = st.Size()
	sc := newScanner(f, 0, sum.Size)
	for {
		pos, h, _, ok := sc.next()
		if !ok {
			break
		}
		if h.BaseOffset != sum.NextOffset {
			sc.err = fmt.Errorf("%w: batch at position %d has base offset %d, expected %d", ErrCorruptBatch, pos, h.BaseOffset, sum.NextOffset)
			break
		}
		sum.Batches++
		sum.Records += int64(h.NumRecords)
		sum.NextOffset = h.LastOffset() + 1
		sum.ValidBytes = pos + int64(h.Length)
		if sum.FirstTs < 0 {
			sum.FirstTs = h.FirstTimestamp
		}
		sum.MaxTs = max(sum.MaxTs, h.MaxTimestamp)
		if fn != nil && !fn(ScannedBatch{Position: pos, Header: h}) {
			return sum, nil
		}
	}
	if sc.err != nil {
		if !errors.Is(sc.err, ErrCorruptBatch) && !errors.Is(sc.err, errTornBatch) {
			return sum, sc.err
		}
		sum.Problem = sc.err.Error()
		sum.ProblemTorn = errors.Is(sc.err, errTornBatch)
	}
	return sum, nil
}
