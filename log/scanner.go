package log

import (
	"errors"
	"fmt"
	"io"
)

// errTornBatch marks a batch cut short by the end of the file: what a crash
// in the middle of a write leaves behind.
var errTornBatch = errors.New("torn batch at end of file")

// scanner walks the batches of a segment file sequentially through a read
// buffer, validating each header and CRC. It stops at the first problem and
// keeps it in err: errTornBatch wrapped for a batch cut by the end of the
// range, ErrCorruptBatch wrapped for anything else.
type scanner struct {
	f        File
	pos, end int64
	buf      []byte
	bufStart int64
	bufLen   int
	err      error
}

const scanBufSize = 256 << 10

func newScanner(f File, from, end int64) *scanner {
	return &scanner{f: f, pos: from, end: end, buf: make([]byte, scanBufSize), bufStart: from}
}

// fill makes [s.pos, s.pos+n) available in the buffer, or reports how many
// bytes the file has left.
func (s *scanner) fill(n int) (ok bool, err error) {
	if s.pos+int64(n) > s.end {
		return false, nil
	}
	if s.pos >= s.bufStart && s.pos+int64(n) <= s.bufStart+int64(s.bufLen) {
		return true, nil
	}
	if n > len(s.buf) {
		s.buf = make([]byte, n)
	}
	want := int64(len(s.buf))
	if rest := s.end - s.pos; rest < want {
		want = rest
	}
	got, err := s.f.ReadAt(s.buf[:want], s.pos)
	if err != nil && !(errors.Is(err, io.EOF) && int64(got) == want) {
		return false, fmt.Errorf("reading %s at %d: %w", s.f.Name(), s.pos, err)
	}
	s.bufStart, s.bufLen = s.pos, got
	return true, nil
}

// next returns the next valid batch: its position, header and bytes (valid
// until the following call). ok is false at the end of the range or at the
// first problem (then s.err is set).
func (s *scanner) next() (pos int64, h BatchHeader, b []byte, ok bool) {
	if s.err != nil || s.pos >= s.end {
		return 0, h, nil, false
	}
	have, err := s.fill(batchHeaderSize)
	if err != nil {
		s.err = err
		return 0, h, nil, false
	}
	if !have {
		s.err = fmt.Errorf("%w: %d bytes left at position %d, less than a batch header", errTornBatch, s.end-s.pos, s.pos)
		return 0, h, nil, false
	}
	off := int(s.pos - s.bufStart)
	h, err = parseHeader(s.buf[off : off+batchHeaderSize])
	if err != nil {
		s.err = fmt.Errorf("at position %d: %w", s.pos, err)
		return 0, h, nil, false
	}
	if have, err = s.fill(int(h.Length)); err != nil {
		s.err = err
		return 0, h, nil, false
	} else if !have {
		s.err = fmt.Errorf("%w: batch of %d bytes at position %d, %d bytes left", errTornBatch, h.Length, s.pos, s.end-s.pos)
		return 0, h, nil, false
	}
	off = int(s.pos - s.bufStart)
	b = s.buf[off : off+int(h.Length)]
	if err := checkCRC(b, h); err != nil {
		s.err = fmt.Errorf("at position %d: %w", s.pos, err)
		return 0, h, nil, false
	}
	pos = s.pos
	s.pos += int64(h.Length)
	return pos, h, b, true
}
