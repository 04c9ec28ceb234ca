package mirror

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// The mirror protocol, edge → center over one TCP (or TLS) connection that
// the edge dials. Every frame is
//
//	length uint32 (of what follows) | type uint8 | payload
//
// with big-endian integers, strings as uint16 length + bytes and byte
// strings as uint32 length + bytes. The edge says hello; the center
// answers welcome (where each partition resumes) or error; then the edge
// streams chunks and the center acknowledges each once durable, in order.
const (
	frameHello   = 1 // edge → center: who, token, partitions
	frameWelcome = 2 // center → edge: where each partition resumes
	frameChunk   = 3 // edge → center: whole record batches of one partition
	frameAck     = 4 // center → edge: a partition is durable up to Next
	frameError   = 5 // either way: why the connection ends
	framePing    = 6 // edge → center: still here (the link is idle)

	protocolVersion = 1
	// maxFrame bounds a frame; a larger length ends the connection before
	// anything is allocated.
	maxFrame = 64 << 20
)

// Chunk codecs.
const (
	codecNone = 0 // the batches as stored (already compressed by their producer, say)
	codecZstd = 1 // the batches, zstd-compressed as one stream
)

// ErrMalformed is returned for a frame that does not decode.
var ErrMalformed = errors.New("mirror: malformed frame")

// partRef names one partition of the edge's log and its topic's size.
type partRef struct {
	Topic      string
	Partition  int32
	Partitions int32 // the topic's partition count at the edge
}

type hello struct {
	Version uint16
	Edge    string
	Token   string
	Parts   []partRef
}

// resume says where the center's copy of a partition ends (durably).
type resume struct {
	Topic     string
	Partition int32
	Next      int64
}

type welcome struct {
	Resume []resume
}

// chunk is whole record batches of one partition, offsets Base..Last, with
// a CRC-32C of the uncompressed bytes.
type chunk struct {
	Topic     string
	Partition int32
	Base      int64
	Last      int64
	Codec     uint8
	RawLen    uint32
	CRC       uint32
	Data      []byte
}

type ack struct {
	Topic     string
	Partition int32
	Next      int64
}

type errorFrame struct {
	Message string
}

type ping struct{}

// encoder appends fields to a frame.
type encoder struct{ b []byte }

func (e *encoder) u8(v uint8)   { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16) { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *encoder) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *encoder) i32(v int32)  { e.u32(uint32(v)) }
func (e *encoder) i64(v int64)  { e.b = binary.BigEndian.AppendUint64(e.b, uint64(v)) }
func (e *encoder) str(s string) {
	if len(s) > math.MaxUint16 {
		s = s[:math.MaxUint16]
	}
	e.u16(uint16(len(s)))
	e.b = append(e.b, s...)
}
func (e *encoder) bytes(p []byte) { e.u32(uint32(len(p))); e.b = append(e.b, p...) }

// frame starts a frame of type t in dst; finish fills in its length.
func frame(dst []byte, t uint8) *encoder {
	e := &encoder{b: append(dst[:0], 0, 0, 0, 0, t)}
	return e
}

func (e *encoder) finish() []byte {
	binary.BigEndian.PutUint32(e.b, uint32(len(e.b)-4))
	return e.b
}

func (m *hello) encode(dst []byte) []byte {
	e := frame(dst, frameHello)
	e.u16(m.Version)
	e.str(m.Edge)
	e.str(m.Token)
	e.u32(uint32(len(m.Parts)))
	for _, p := range m.Parts {
		e.str(p.Topic)
		e.i32(p.Partition)
		e.i32(p.Partitions)
	}
	return e.finish()
}

func (m *welcome) encode(dst []byte) []byte {
	e := frame(dst, frameWelcome)
	e.u32(uint32(len(m.Resume)))
	for _, r := range m.Resume {
		e.str(r.Topic)
		e.i32(r.Partition)
		e.i64(r.Next)
	}
	return e.finish()
}

func (m *chunk) encode(dst []byte) []byte {
	e := frame(dst, frameChunk)
	e.str(m.Topic)
	e.i32(m.Partition)
	e.i64(m.Base)
	e.i64(m.Last)
	e.u8(m.Codec)
	e.u32(m.RawLen)
	e.u32(m.CRC)
	e.bytes(m.Data)
	return e.finish()
}

func (m *ack) encode(dst []byte) []byte {
	e := frame(dst, frameAck)
	e.str(m.Topic)
	e.i32(m.Partition)
	e.i64(m.Next)
	return e.finish()
}

func (m *ping) encode(dst []byte) []byte { return frame(dst, framePing).finish() }

func (m *errorFrame) encode(dst []byte) []byte {
	e := frame(dst, frameError)
	e.str(m.Message)
	return e.finish()
}

// decoder reads fields from a frame's payload; the first failure sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) need(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b) < n {
		d.err = fmt.Errorf("%w: %d bytes short", ErrMalformed, n-len(d.b))
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) u8() uint8 {
	if p := d.need(1); p != nil {
		return p[0]
	}
	return 0
}
func (d *decoder) u16() uint16 {
	if p := d.need(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}
func (d *decoder) u32() uint32 {
	if p := d.need(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}
func (d *decoder) i32() int32 { return int32(d.u32()) }
func (d *decoder) i64() int64 {
	if p := d.need(8); p != nil {
		return int64(binary.BigEndian.Uint64(p))
	}
	return 0
}
func (d *decoder) str() string   { return string(d.need(int(d.u16()))) }
func (d *decoder) bytes() []byte { return d.need(int(d.u32())) }

// count reads a list length and checks that the rest of the payload could
// hold that many items of at least min bytes: a hostile count allocates
// nothing.
func (d *decoder) count(min int) int {
	n := int(d.u32())
	if d.err == nil && n > len(d.b)/min {
		d.err = fmt.Errorf("%w: %d items cannot fit in %d bytes", ErrMalformed, n, len(d.b))
	}
	if d.err != nil {
		return 0
	}
	return n
}

func (d *decoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b))
	}
	return d.err
}

// decodeFrame decodes one frame's type and payload into its message.
func decodeFrame(t uint8, payload []byte) (any, error) {
	d := &decoder{b: payload}
	switch t {
	case frameHello:
		m := &hello{Version: d.u16(), Edge: d.str(), Token: d.str()}
		n := d.count(10)
		for i := 0; i < n; i++ {
			m.Parts = append(m.Parts, partRef{Topic: d.str(), Partition: d.i32(), Partitions: d.i32()})
		}
		return m, d.done()
	case frameWelcome:
		m := &welcome{}
		n := d.count(14)
		for i := 0; i < n; i++ {
			m.Resume = append(m.Resume, resume{Topic: d.str(), Partition: d.i32(), Next: d.i64()})
		}
		return m, d.done()
	case frameChunk:
		m := &chunk{Topic: d.str(), Partition: d.i32(), Base: d.i64(), Last: d.i64(), Codec: d.u8(), RawLen: d.u32(), CRC: d.u32()}
		m.Data = d.bytes()
		return m, d.done()
	case frameAck:
		m := &ack{Topic: d.str(), Partition: d.i32(), Next: d.i64()}
		return m, d.done()
	case frameError:
		m := &errorFrame{Message: d.str()}
		return m, d.done()
	case framePing:
		return &ping{}, d.done()
	}
	return nil, fmt.Errorf("%w: unknown frame type %d", ErrMalformed, t)
}

// readFrame reads one frame. buf is reused for the payload when large
// enough; the returned message may point into it.
func readFrame(r *bufio.Reader, buf []byte) (any, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, buf, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 1 || n > maxFrame {
		return nil, buf, fmt.Errorf("%w: frame length %d (at most %d)", ErrMalformed, n, maxFrame)
	}
	if cap(buf) < int(n-1) {
		buf = make([]byte, n-1)
	}
	buf = buf[:n-1]
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, buf, err
	}
	m, err := decodeFrame(hdr[4], buf)
	return m, buf, err
}
