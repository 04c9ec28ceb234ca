package log

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Compressed batches are validated by streaming: the body is inflated
// through a reader whose output is counted against the topic's
// max.inflated.bytes, and the records are walked from it through a small
// buffer, so nothing holds the inflated payload. What each codec holds
// besides is bounded too: gzip its 32 KiB window, lz4 its frame's block
// (4 MiB at most), zstd its window (the decoder refuses a window or a
// declared content size past the cap, or past 8 MiB for a smaller cap), snappy one block, whose decoded
// length is checked against the cap before it is decoded. A decompression
// bomb costs at most the cap in CPU and about the cap in memory, and is
// refused with ErrInflatedTooLarge.

// DefaultMaxInflatedBytes is the cap ValidateBatch applies: 8 times the
// default max.message.bytes, as max.inflated.bytes=0 means for a topic.
const DefaultMaxInflatedBytes = 8 * defaultMaxMessageBytes

const (
	defaultMaxMessageBytes = 1048588
	maxInflatedLimit       = 1 << 32 // the largest max.inflated.bytes
	recordHeadMax          = 1 + binary.MaxVarintLen64 + binary.MaxVarintLen32
	// zstdMinMaxWindow is the zstd window accepted whatever the cap:
	// streaming encoders pick windows larger than what they compress
	// (zstd-jni up to level 19, klauspost's writer: 8 MiB).
	zstdMinMaxWindow = 8 << 20
)

// errInflateLimit is what the counting reader returns past the cap.
var errInflateLimit = errors.New("inflate limit")

// capReader passes r through, failing once more than n bytes came.
type capReader struct {
	r io.Reader
	n int64 // bytes still allowed
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n < 0 {
		return 0, errInflateLimit
	}
	if int64(len(p)) > c.n+1 {
		p = p[:c.n+1]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	if c.n < 0 {
		return n, errInflateLimit
	}
	return n, err
}

// inflater holds one validation's readers; pooled.
type inflater struct {
	src   bytes.Reader
	cr    capReader
	br    *bufio.Reader
	gz    gzip.Reader
	lz    *lz4.Reader
	sn    snappyReader
	head  [recordHeadMax]byte
	empty bytes.Reader
}

var inflaters = sync.Pool{New: func() any {
	return &inflater{br: bufio.NewReaderSize(nil, 16<<10), lz: lz4.NewReader(nil)}
}}

// zstdDecoder is a streaming zstd decoder for one cap: its window and any
// declared frame size are bounded by the cap (or zstdMinMaxWindow, for a
// small cap), so it allocates no more.
type zstdDecoder struct{ d *zstd.Decoder }

// zstdPools holds a pool of decoders per cap (topics rarely use more
// than a few caps).
var zstdPools sync.Map // int64 → *sync.Pool

func getZstd(limit int64) (*zstdDecoder, *sync.Pool, error) {
	p, ok := zstdPools.Load(limit)
	if !ok {
		p, _ = zstdPools.LoadOrStore(limit, new(sync.Pool))
	}
	pool := p.(*sync.Pool)
	if z, ok := pool.Get().(*zstdDecoder); ok {
		return z, pool, nil
	}
	window := uint64(max(limit, zstdMinMaxWindow))
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecodeBuffersBelow(0),
		zstd.WithDecoderMaxMemory(window), zstd.WithDecoderMaxWindow(window))
	if err != nil {
		return nil, nil, err
	}
	z := &zstdDecoder{d}
	runtime.SetFinalizer(z, func(z *zstdDecoder) { z.d.Close() })
	return z, pool, nil
}

// walkCompressed walks the records of a compressed batch body as
// walkRecords does uncompressed ones, inflating at most limit bytes:
// past them it returns ErrInflatedTooLarge. fn gets each record's offset
// and timestamp deltas; returning false stops the walk.
func walkCompressed(codec int8, body []byte, limit int64, fn func(offsetDelta int32, tsDelta int64) bool) (int32, error) {
	return inflate(codec, body, limit, fn, nil)
}

// walkCompressedReader hands read the inflating reader of body instead.
func walkCompressedReader(codec int8, body []byte, limit int64, read func(io.Reader) error) (int32, error) {
	return inflate(codec, body, limit, nil, read)
}

func inflate(codec int8, body []byte, limit int64, fn func(offsetDelta int32, tsDelta int64) bool, read func(io.Reader) error) (int32, error) {
	in := inflaters.Get().(*inflater)
	defer inflaters.Put(in)
	in.src.Reset(body)
	defer in.src.Reset(nil)
	var r io.Reader
	switch codec {
	case 1:
		if err := in.gz.Reset(&in.src); err != nil {
			return 0, fmt.Errorf("%w: gzip: %v", ErrCorruptBatch, err)
		}
		r = &in.gz
	case 2:
		in.sn.reset(body, limit)
		defer in.sn.reset(nil, 0)
		r = &in.sn
	case 3:
		in.lz.Reset(&in.src)
		defer in.lz.Reset(&in.empty)
		r = in.lz
	case 4:
		z, pool, err := getZstd(limit)
		if err != nil {
			return 0, err
		}
		if err := z.d.Reset(&in.src); err != nil {
			return 0, inflateError(codec, err, limit)
		}
		defer func() {
			z.d.Reset(&in.empty)
			pool.Put(z)
		}()
		r = z.d
	default:
		return 0, fmt.Errorf("%w: unknown compression codec %d", ErrCorruptBatch, codec)
	}
	in.cr = capReader{r: r, n: limit}
	defer func() { in.cr.r = nil }()
	if read != nil {
		return 0, inflateError(codec, read(&in.cr), limit)
	}
	in.br.Reset(&in.cr)
	defer in.br.Reset(nil)
	n, err := walkStream(in.br, in.head[:], fn)
	if err != nil {
		return n, inflateError(codec, err, limit)
	}
	return n, nil
}

// inflateError says why inflating failed: the cap, or bad bytes.
func inflateError(codec int8, err error, limit int64) error {
	if err == nil || errors.Is(err, ErrCorruptBatch) {
		return err
	}
	if pastCap(err) {
		return fmt.Errorf("%w: codec %d: more than %d bytes inflated", ErrInflatedTooLarge, codec, limit)
	}
	return fmt.Errorf("%w: decompressing codec %d: %v", ErrCorruptBatch, codec, err)
}

// pastCap reports whether err is a codec's refusal to inflate past the cap.
func pastCap(err error) bool {
	return errors.Is(err, errInflateLimit) || errors.Is(err, zstd.ErrDecoderSizeExceeded) ||
		errors.Is(err, zstd.ErrWindowSizeExceeded) || errors.Is(err, errSnappyLimit)
}

// walkStream walks records from r as walkRecords does from a slice: each
// record's length, then its attributes, timestamp delta and offset delta
// read into head; the rest of the record is skipped unread.
func walkStream(r *bufio.Reader, head []byte, fn func(offsetDelta int32, tsDelta int64) bool) (int32, error) {
	var n int32
	for {
		if _, err := r.Peek(1); err == io.EOF {
			return n, nil
		} else if err != nil {
			return n, streamErr(n, err)
		}
		l, err := binary.ReadVarint(r)
		if err != nil {
			return n, streamErr(n, err)
		}
		if l < 0 || l > maxInflatedLimit {
			return n, fmt.Errorf("%w: record %d: bad length", ErrCorruptBatch, n)
		}
		h := head[:min(int(l), len(head))]
		if _, err := io.ReadFull(r, h); err != nil {
			return n, streamErr(n, err)
		}
		if len(h) < 1 {
			return n, fmt.Errorf("%w: record %d: empty", ErrCorruptBatch, n)
		}
		ts, w1 := binary.Varint(h[1:])
		if w1 <= 0 {
			return n, fmt.Errorf("%w: record %d: bad timestamp delta", ErrCorruptBatch, n)
		}
		od, w2 := binary.Varint(h[1+w1:])
		if w2 <= 0 || od != int64(n) {
			return n, fmt.Errorf("%w: record %d: offset delta %d", ErrCorruptBatch, n, od)
		}
		if _, err := r.Discard(int(l) - len(h)); err != nil {
			return n, streamErr(n, err)
		}
		if !fn(int32(od), ts) {
			return n + 1, nil
		}
		n++
	}
}

func streamErr(n int32, err error) error {
	if pastCap(err) {
		return err
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w: record %d: bad length: %v", ErrCorruptBatch, n, err)
}

// Kafka's snappy is either one raw snappy block or, from the Java client,
// xerial framing: a 16-byte header, then blocks each prefixed by its
// big-endian length.
var xerialMagic = []byte{130, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

var errSnappyLimit = errors.New("snappy block past the cap")

// snappyReader inflates a snappy body block by block, checking each
// block's declared length against what the cap leaves before decoding it.
type snappyReader struct {
	src    []byte
	left   int64 // cap left
	xerial bool
	buf    []byte
	out    []byte
}

func (s *snappyReader) reset(src []byte, limit int64) {
	s.src, s.left, s.out = src, limit, nil
	s.xerial = len(src) > 16 && bytes.HasPrefix(src, xerialMagic)
	if s.xerial {
		s.src = src[16:]
	}
	if src == nil && cap(s.buf) > 1<<20 {
		s.buf = nil // keep no large block in the pool
	}
}

func (s *snappyReader) Read(p []byte) (int, error) {
	for len(s.out) == 0 {
		if len(s.src) == 0 {
			return 0, io.EOF
		}
		block := s.src
		if s.xerial {
			if len(s.src) < 4 {
				return 0, errors.New("xerial: truncated block length")
			}
			size := binary.BigEndian.Uint32(s.src)
			if uint64(size) > uint64(len(s.src)-4) {
				return 0, errors.New("xerial: block past the body")
			}
			block, s.src = s.src[4:4+size], s.src[4+size:]
		} else {
			s.src = nil
		}
		l, err := s2.DecodedLen(block)
		if err != nil {
			return 0, err
		}
		if int64(l) > s.left {
			return 0, errSnappyLimit
		}
		s.left -= int64(l)
		if cap(s.buf) < l {
			s.buf = make([]byte, l)
		}
		if s.out, err = s2.Decode(s.buf[:l], block); err != nil {
			return 0, err
		}
	}
	n := copy(p, s.out)
	s.out = s.out[n:]
	return n, nil
}

// inflateAll inflates a compressed body whole, refusing more than limit
// bytes. It is for DecodeRecords (tools and tests), which hand out the
// records; validation streams instead.
func inflateAll(codec int8, body []byte, limit int64) ([]byte, error) {
	var out bytes.Buffer
	_, err := walkCompressedReader(codec, body, limit, func(r io.Reader) error {
		_, err := out.ReadFrom(r)
		return err
	})
	return out.Bytes(), err
}
