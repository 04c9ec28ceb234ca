// Package wire owns the mirror protocol's frames, edge → center over one
// TCP (or TLS) connection that the edge dials: their types, encoding and
// decoding. It does no I/O beyond reading one frame from a buffered reader
// and never interprets what a frame asks for; the sender and receiver in
// package mirror do. Decoding is bounded: a hostile length or count
// allocates nothing.
//
// Every frame is
//
//	length uint32 (of what follows) | type uint8 | payload
//
// with big-endian integers, strings as uint16 length + bytes and byte
// strings as uint32 length + bytes. The edge says Hello; the center answers
// Welcome (where each partition resumes) or Error; then the edge streams
// Chunks (and Gaps: ranges it no longer has) and the center acknowledges
// each, in order, once durable. From version 4 the edge also reports, every
// few seconds, where its log ends (Heads), so the center knows how far
// behind each copy is.
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"
)

// Frame types.
const (
	typeHello   = 1 // edge → center: who, token, partitions
	typeWelcome = 2 // center → edge: where each partition resumes
	typeChunk   = 3 // edge → center: whole record batches of one partition
	typeAck     = 4 // center → edge: a partition is durable up to Next
	typeError   = 5 // either way: why the connection ends
	typePing    = 6 // edge → center: still here (the link is idle)
	typeGap     = 7 // edge → center: offsets the edge dropped unshipped
	typeHeads   = 8 // edge → center: where the edge's log ends (version 4)
)

const (
	// Version is the protocol version a Hello carries. Version 2 added
	// the Gap frame; 3 added Chunk.Flags, Gap.Flags, the staged tail in
	// Resume and Ack.Copied; 4 added the Heads frame, which an edge sends
	// only to a center that took a version 4 Hello.
	Version = 4
	// MinVersion is the oldest version a center still serves: an edge of
	// version 3 ships as before, without Heads.
	MinVersion = 3
	// MaxFrame bounds a frame; a larger length ends the connection before
	// anything is allocated.
	MaxFrame = 64 << 20
)

// FlagTail marks a chunk (or gap) of a live tail shipped ahead of its
// partition's backfill: the center stages it until the backfill reaches
// it, unless it continues the copy right away.
const FlagTail = 1

// Chunk codecs.
const (
	CodecNone = 0 // the batches as stored (already compressed by their producer, say)
	CodecZstd = 1 // the batches, zstd-compressed as one stream
)

// ErrMalformed is returned for a frame that does not decode.
var ErrMalformed = errors.New("mirror: malformed frame")

// Message is a frame's content.
type Message interface {
	// Encode appends the whole frame (length and type included) to
	// dst[:0].
	Encode(dst []byte) []byte
}

// PartRef names one partition of the edge's log and its topic's size.
type PartRef struct {
	Topic      string
	Partition  int32
	Partitions int32 // the topic's partition count at the edge
}

// Hello opens a connection: the edge's id, its token and its mirrored
// partitions.
type Hello struct {
	Version uint16
	Edge    string
	Token   string
	Parts   []PartRef
}

// Resume says where the center's copy of a partition ends (durably); -1
// means the copy is empty and the edge starts at its own log start.
// TailFrom..TailNext (exclusive) is a live tail the center holds staged
// beyond Next (FlagTail chunks), durably; TailFrom is -1 when there is
// none.
type Resume struct {
	Topic     string
	Partition int32
	Next      int64
	TailFrom  int64
	TailNext  int64
}

// Welcome accepts a Hello.
type Welcome struct {
	Resume []Resume
}

// Chunk is whole record batches of one partition, offsets Base..Last,
// with a CRC-32C (Checksum) of the uncompressed bytes.
type Chunk struct {
	Topic     string
	Partition int32
	Base      int64
	Last      int64
	Flags     uint8 // FlagTail
	Codec     uint8
	RawLen    uint32
	CRC       uint32
	Data      []byte
}

// Gap says that offsets From..To of a partition will never come: the edge
// dropped them before shipping (its disk budget's drop-oldest policy, or
// data lost at the edge). The center records the gap in its copy so it is
// explicit there, and acknowledges it like a chunk.
type Gap struct {
	Topic     string
	Partition int32
	From, To  int64
	Flags     uint8 // FlagTail: a gap in a live tail
	Reason    string
}

// Ack says the center holds a partition durably up to Next (exclusive):
// in its copy, or for a live tail's chunk, staged. Copied is where the
// copy itself ends once the frame is stored (a staged tail the backfill
// reached is merged by then).
type Ack struct {
	Topic     string
	Partition int32
	Next      int64
	Copied    int64
}

// Heads says where the edge's log ends, partition by partition, as the
// edge sends it every few seconds (version 4): the center's copy lag is
// End less what it holds.
type Heads struct {
	Parts []Head
}

// Head is one partition's end at the edge: End is its end offset, and
// Oldest the time (Unix ms) of the oldest record the center has not yet
// acknowledged, -1 when it has everything.
type Head struct {
	Topic     string
	Partition int32
	End       int64
	Oldest    int64
}

// Error ends a connection, saying why.
type Error struct {
	Message string
}

// Ping keeps an idle link alive.
type Ping struct{}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum is the CRC-32C a Chunk carries of its uncompressed bytes.
func Checksum(raw []byte) uint32 { return crc32.Checksum(raw, castagnoli) }

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
	return &encoder{b: append(dst[:0], 0, 0, 0, 0, t)}
}

func (e *encoder) finish() []byte {
	binary.BigEndian.PutUint32(e.b, uint32(len(e.b)-4))
	return e.b
}

func (m *Hello) Encode(dst []byte) []byte {
	e := frame(dst, typeHello)
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

func (m *Welcome) Encode(dst []byte) []byte {
	e := frame(dst, typeWelcome)
	e.u32(uint32(len(m.Resume)))
	for _, r := range m.Resume {
		e.str(r.Topic)
		e.i32(r.Partition)
		e.i64(r.Next)
		e.i64(r.TailFrom)
		e.i64(r.TailNext)
	}
	return e.finish()
}

func (m *Chunk) Encode(dst []byte) []byte {
	e := frame(dst, typeChunk)
	e.str(m.Topic)
	e.i32(m.Partition)
	e.i64(m.Base)
	e.i64(m.Last)
	e.u8(m.Flags)
	e.u8(m.Codec)
	e.u32(m.RawLen)
	e.u32(m.CRC)
	e.bytes(m.Data)
	return e.finish()
}

func (m *Gap) Encode(dst []byte) []byte {
	e := frame(dst, typeGap)
	e.str(m.Topic)
	e.i32(m.Partition)
	e.i64(m.From)
	e.i64(m.To)
	e.u8(m.Flags)
	e.str(m.Reason)
	return e.finish()
}

func (m *Ack) Encode(dst []byte) []byte {
	e := frame(dst, typeAck)
	e.str(m.Topic)
	e.i32(m.Partition)
	e.i64(m.Next)
	e.i64(m.Copied)
	return e.finish()
}

func (m *Heads) Encode(dst []byte) []byte {
	e := frame(dst, typeHeads)
	e.u32(uint32(len(m.Parts)))
	for _, h := range m.Parts {
		e.str(h.Topic)
		e.i32(h.Partition)
		e.i64(h.End)
		e.i64(h.Oldest)
	}
	return e.finish()
}

func (m *Ping) Encode(dst []byte) []byte { return frame(dst, typePing).finish() }

func (m *Error) Encode(dst []byte) []byte {
	e := frame(dst, typeError)
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

// decode decodes one frame's type and payload into its message.
func decode(t uint8, payload []byte) (Message, error) {
	d := &decoder{b: payload}
	switch t {
	case typeHello:
		m := &Hello{Version: d.u16(), Edge: d.str(), Token: d.str()}
		n := d.count(10)
		for i := 0; i < n; i++ {
			m.Parts = append(m.Parts, PartRef{Topic: d.str(), Partition: d.i32(), Partitions: d.i32()})
		}
		return m, d.done()
	case typeWelcome:
		m := &Welcome{}
		n := d.count(30)
		for i := 0; i < n; i++ {
			m.Resume = append(m.Resume, Resume{Topic: d.str(), Partition: d.i32(), Next: d.i64(), TailFrom: d.i64(), TailNext: d.i64()})
		}
		return m, d.done()
	case typeChunk:
		m := &Chunk{Topic: d.str(), Partition: d.i32(), Base: d.i64(), Last: d.i64(), Flags: d.u8(), Codec: d.u8(), RawLen: d.u32(), CRC: d.u32()}
		m.Data = d.bytes()
		return m, d.done()
	case typeGap:
		m := &Gap{Topic: d.str(), Partition: d.i32(), From: d.i64(), To: d.i64(), Flags: d.u8(), Reason: d.str()}
		return m, d.done()
	case typeAck:
		m := &Ack{Topic: d.str(), Partition: d.i32(), Next: d.i64(), Copied: d.i64()}
		return m, d.done()
	case typeError:
		m := &Error{Message: d.str()}
		return m, d.done()
	case typePing:
		return &Ping{}, d.done()
	case typeHeads:
		m := &Heads{}
		n := d.count(22)
		for i := 0; i < n; i++ {
			m.Parts = append(m.Parts, Head{Topic: d.str(), Partition: d.i32(), End: d.i64(), Oldest: d.i64()})
		}
		return m, d.done()
	}
	return nil, fmt.Errorf("%w: unknown frame type %d", ErrMalformed, t)
}

// ReadFrame reads one frame. buf is reused for the payload when large
// enough; the returned message may point into it (a Chunk's Data does).
// A larger payload is read into a buffer that grows with the bytes that
// came (at most doubling), so a length alone, such as a stranger's first
// frame declaring MaxFrame, allocates no more than the bytes sent.
func ReadFrame(r *bufio.Reader, buf []byte) (Message, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, buf, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 1 || n > MaxFrame {
		return nil, buf, fmt.Errorf("%w: frame length %d (at most %d)", ErrMalformed, n, MaxFrame)
	}
	size := int(n - 1)
	if cap(buf) >= size {
		buf = buf[:size]
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, buf, err
		}
	} else {
		var err error
		if buf, err = readGrowing(r, buf[:0], size); err != nil {
			return nil, buf, err
		}
	}
	m, err := decode(hdr[4], buf)
	return m, buf, err
}

// readGrowing appends size bytes from r to buf, growing it by at most its
// length (or 64 KiB) before each read.
func readGrowing(r io.Reader, buf []byte, size int) ([]byte, error) {
	for len(buf) < size {
		step := min(size-len(buf), max(len(buf), 64<<10))
		buf = slices.Grow(buf, step)
		got, err := io.ReadFull(r, buf[len(buf):len(buf)+step])
		buf = buf[:len(buf)+got]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}
