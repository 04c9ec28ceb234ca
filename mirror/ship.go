package mirror

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync"

	flog "ferry/log"
	"ferry/mirror/wire"
)

// A partition's shipper (ship) is a small ordered pipeline, so that
// compressing chunks, most of the edge's work, uses every core while one
// partition catches up, and overlaps with the link:
//
//   - readShipments reads durable, batch-aligned chunks in offset order and
//     hands each to a goroutine of its own that checksums, compresses (the
//     encoder runs at most GOMAXPROCS at once) and frames it;
//   - writeShipments sends the frames in the order they were read, each
//     once it is ready, through the link's gate (window, shares, rate cap),
//     so the link and the center see exactly what a serial shipper sent.
//
// At most shipDepth chunks of a partition are between the two; buffers come
// from pools, so an idle partition holds none.

// shipDepth is how many chunks of one partition may be read ahead of the
// link: one per core compressing, one waiting for the gate or being sent.
var shipDepth = runtime.GOMAXPROCS(0) + 1

// shipment is a chunk (or gap) of one partition on its way to the link.
type shipment struct {
	ready chan struct{} // closed once frame is complete
	frame *[]byte       // from framePool
	sc    sentChunk
	raw   int  // the chunk's uncompressed bytes (0 for a gap)
	gap   bool // a wire.Gap, not a chunk
}

// readPool holds read buffers (a chunk as stored, up to ChunkBytes or a
// larger batch), framePool encoded frames and compression scratch.
var readPool, framePool = sync.Pool{New: func() any { return new([]byte) }}, sync.Pool{New: func() any { return new([]byte) }}

// ship sends one partition from next up to limit (exclusive; it then
// returns nil once everything before limit is sent): each chunk is whole
// batches that are durable at the edge. flags mark the chunks (wire.FlagTail
// for a live tail).
func (l *link) ship(ctx context.Context, key partKey, part *flog.Partition, next, limit int64, flags uint8) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var once sync.Once
	var cause error // the first failure, which stops both sides
	fail := func(err error) {
		once.Do(func() { cause = err; cancel() })
	}
	lvl := level(classOf(l.s.opts.Classes, key.topic), limit != math.MaxInt64)
	queue := make(chan *shipment, shipDepth)
	slots := make(chan struct{}, shipDepth) // a slot per shipment between read and sent
	written := make(chan struct{})
	go func() {
		defer close(written)
		if err := l.writeShipments(ctx, lvl, queue, slots); err != nil {
			fail(err)
		}
	}()
	var local *storageError
	if err := l.readShipments(ctx, key, part, next, limit, flags, queue, slots); errors.As(err, &local) {
		// What was read before the damage still goes; then this
		// partition stops.
		close(queue)
		<-written
		if cause == nil {
			cause = local
		}
		return cause
	} else if err != nil {
		fail(err)
	}
	close(queue)
	<-written
	return cause
}

// storageError is a partition the edge cannot read at offset at: a
// corrupt segment, or a partition disabled after a failed fsync. The
// shipper of that partition stops there; the link goes on.
type storageError struct {
	at  int64
	err error
}

func (e *storageError) Error() string { return fmt.Sprintf("reading the log at %d: %v", e.at, e.err) }
func (e *storageError) Unwrap() error { return e.err }

// readShipments reads a partition's chunks and gaps in order into queue
// until limit, an error or the end of ctx; each chunk is compressed by a
// goroutine of its own.
func (l *link) readShipments(ctx context.Context, key partKey, part *flog.Partition, next, limit int64, flags uint8, queue chan<- *shipment, slots chan struct{}) error {
	s := l.s
	tail := flags&wire.FlagTail != 0
	for next < limit {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		if start := part.StartOffset(); next < start {
			to := min(start, limit) - 1
			queue <- l.gapShipment(key, flags, next, to)
			next = to + 1
			continue
		}
		if err := part.WaitDurable(ctx, next); err != nil {
			if ctx.Err() == nil {
				return &storageError{at: next, err: err}
			}
			return err
		}
		durable := part.DurableOffset()
		rbuf := readPool.Get().(*[]byte)
		rr, err := part.Read(next, s.opts.ChunkBytes, *rbuf)
		*rbuf = rr.Data[:0]
		if errors.Is(err, flog.ErrOffsetOutOfRange) && next < part.StartOffset() {
			readPool.Put(rbuf)
			<-slots
			continue // dropped while we waited: a gap
		}
		var raw []byte
		var last int64
		var compressed bool
		if err == nil {
			raw, last, compressed, err = wholeBatches(rr.Data, next, min(durable, limit))
		}
		if err != nil { // the read, or the batches it returned
			readPool.Put(rbuf)
			<-slots
			return &storageError{at: next, err: err}
		}
		sh := &shipment{ready: make(chan struct{}), raw: len(raw), sc: sentChunk{key: key, next: last + 1, tail: tail}}
		ch := wire.Chunk{Topic: key.topic, Partition: key.partition, Base: next, Last: last, Flags: flags, RawLen: uint32(len(raw)), Data: raw}
		go func() {
			defer close(sh.ready)
			sh.frame = framePool.Get().(*[]byte)
			ch.CRC = wire.Checksum(raw)
			var packed *[]byte
			if !compressed {
				packed = framePool.Get().(*[]byte)
				*packed = s.enc.EncodeAll(raw, (*packed)[:0])
				ch.Codec, ch.Data = wire.CodecZstd, *packed
			}
			*sh.frame = ch.Encode(*sh.frame)
			sh.sc.wire = len(ch.Data)
			readPool.Put(rbuf)
			if packed != nil {
				framePool.Put(packed)
			}
		}()
		queue <- sh
		next = last + 1
	}
	return nil
}

// writeShipments sends the shipments of queue in order, each once it is
// ready, and frees its slot; after a failure it only drains the queue.
func (l *link) writeShipments(ctx context.Context, lvl int, queue <-chan *shipment, slots <-chan struct{}) error {
	s := l.s
	var err error
	for sh := range queue {
		<-sh.ready
		if err == nil {
			err = l.send(ctx, lvl, *sh.frame, sh.sc)
			if err == nil && sh.gap {
				s.metrics.gaps.Inc()
			} else if err == nil {
				s.metrics.chunks.Inc()
				s.state.wireBytes.Add(int64(sh.sc.wire))
				s.state.rawBytes.Add(int64(sh.raw))
			}
		}
		framePool.Put(sh.frame)
		<-slots
	}
	return err
}

// gapShipment tells the center that offsets from..to of a partition will
// never come: the edge's log starts past them.
func (l *link) gapShipment(key partKey, flags uint8, from, to int64) *shipment {
	s := l.s
	reason := "not at the edge: its log starts at " + strconv.FormatInt(to+1, 10)
	s.mu.Lock()
	if lost, ok := s.lost[key]; ok && lost <= from {
		reason = "dropped at the edge by the disk budget (max.disk.bytes, drop-oldest)"
	}
	if del, ok := s.deleted[key]; ok && del <= from {
		reason = "deleted at the edge by DeleteRecords before it was shipped"
	}
	s.mu.Unlock()
	s.logger.Warn("mirror: telling the center of a gap", "topic", key.topic, "partition", key.partition, "from_offset", from, "to_offset", to, "reason", reason)
	frame := framePool.Get().(*[]byte)
	*frame = (&wire.Gap{Topic: key.topic, Partition: key.partition, From: from, To: to, Flags: flags, Reason: reason}).Encode(*frame)
	sh := &shipment{ready: make(chan struct{}), frame: frame, gap: true,
		sc: sentChunk{key: key, next: to + 1, wire: len(*frame), tail: flags&wire.FlagTail != 0}}
	close(sh.ready)
	return sh
}
