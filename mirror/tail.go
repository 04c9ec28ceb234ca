package mirror

import (
	"errors"
	"fmt"

	flog "ferry/log"
	"ferry/mirror/wire"
)

// Live tail first, the center's half. After an outage an edge may ship a
// partition's newest records (FlagTail chunks) ahead of its backlog. The
// copy at the center must stay complete and in offset order, so a tail
// chunk that does not continue the copy is staged in the partition of the
// same number of the topic "__tail.<center topic>" (readable over Kafka,
// for consumers that want the newest records now), with the edge's
// offsets. When the backfill reaches the staged tail, the center moves it
// into the copy itself (nothing is sent twice), and clears the staging once
// the copy holds it durably (at a replicated center, Copy.Clear returns
// once every in-sync replica of the staging has cleared it: a replica
// elected later holds no stale tail). How far each copy is contiguous, and
// what is staged beyond, is in Receiver.Status.

// stagingConfigs keep a staging topic's records until the merge clears
// them: no retention by age or size.
var stagingConfigs = map[string]string{flog.ConfigRetentionMs: "-1", flog.ConfigRetentionBytes: "-1"}

// tailTopic names the staging topic of an edge topic's live tail.
func (r *Receiver) tailTopic(edge, topic string) string {
	return "__tail." + r.centerTopic(edge, topic)
}

// staging returns the staging partition of key, nil when its topic does
// not exist and create is false.
func (e *edgeConn) staging(key partKey, create bool) (Copy, error) {
	if t := e.tails[key]; t != nil {
		return t, nil
	}
	name := e.r.tailTopic(e.edge, key.topic)
	if _, err := e.r.opts.Log.PartitionCount(name); errors.Is(err, flog.ErrUnknownTopic) && !create {
		return nil, nil
	}
	// Nothing but a merge may delete what is staged: the edge counts it as
	// the center's once the backfill meets it.
	if err := e.r.ensureTopic(e.edge, name, e.counts[key.topic], stagingConfigs); err != nil {
		return nil, err
	}
	t, err := e.r.opts.Log.Partition(name, key.partition)
	if err != nil {
		return nil, err
	}
	e.tails[key] = t
	return t, nil
}

// route picks where a chunk or gap starting at base goes: the copy, or,
// for a tail's that does not continue the copy, the staging.
func (e *edgeConn) route(key partKey, flags uint8, base int64) (Copy, error) {
	part := e.parts[key]
	if flags&wire.FlagTail == 0 || base <= part.EndOffset() {
		return part, nil
	}
	return e.staging(key, true)
}

// resumeTail finishes a merge a restart interrupted and says what is staged
// beyond the copy: TailFrom..TailNext, the durable part; -1, -1 for
// nothing.
func (e *edgeConn) resumeTail(key partKey) (from, next int64, err error) {
	tail, err := e.staging(key, false)
	if tail == nil || err != nil {
		return -1, -1, err
	}
	if err := e.mergeTail(key); err != nil {
		return -1, -1, err
	}
	if tail.Size() == 0 || tail.EndOffset() <= e.parts[key].EndOffset() {
		return -1, -1, nil
	}
	return tail.StartOffset(), tail.DurableOffset(), nil
}

// mergeTail moves the staged tail into the copy once the copy has reached
// it, batch by batch with their offsets, and clears the staging once the
// copy holds all of it durably.
func (e *edgeConn) mergeTail(key partKey) error {
	tail := e.tails[key]
	if tail == nil || tail.Size() == 0 {
		return nil
	}
	dst := e.parts[key]
	if dst.EndOffset() < tail.StartOffset() {
		return nil // the backfill has not reached it
	}
	var buf []byte
	for dst.EndOffset() < tail.EndOffset() {
		at := dst.EndOffset()
		rr, err := tail.Read(at, 1<<20, buf)
		if err != nil {
			return fmt.Errorf("reading the staged tail of %s-%d at %d: %w", key.topic, key.partition, at, err)
		}
		buf = rr.Data[:0]
		for data := rr.Data; len(data) > 0; {
			h, err := flog.ParseBatch(data)
			if err != nil || int(h.Length) > len(data) {
				break // a batch cut by the read's size: read again from it
			}
			batch := data[:h.Length]
			data = data[h.Length:]
			switch end := dst.EndOffset(); {
			case h.LastOffset() < end:
				continue
			case h.BaseOffset != end:
				return fmt.Errorf("staged batch %d..%d of %s-%d straddles the copy's end %d", h.BaseOffset, h.LastOffset(), key.topic, key.partition, end)
			case h.NumRecords == 0:
				_, err = dst.AppendGap(h.BaseOffset, h.LastOffset(), h.MaxTimestamp)
			default:
				_, err = dst.AppendAt(batch)
			}
			if err != nil {
				return fmt.Errorf("merging the staged tail of %s-%d at %d: %w", key.topic, key.partition, h.BaseOffset, err)
			}
		}
		if dst.EndOffset() == at {
			return fmt.Errorf("merging the staged tail of %s-%d: no progress at %d", key.topic, key.partition, at)
		}
	}
	if dst.DurableOffset() < tail.EndOffset() {
		return nil // cleared on a later call, once durable
	}
	e.logger.Info("mirror: the backfill reached the staged live tail; merged", "topic", key.topic, "partition", key.partition,
		"tail_from", tail.StartOffset(), "tail_end", tail.EndOffset())
	return tail.Clear()
}

// Live tail first, the edge's half.

// CatchUp is the order a backlog ships in.
type CatchUp string

const (
	// CatchUpOldestFirst ships every partition in offset order.
	CatchUpOldestFirst CatchUp = "oldest-first"
	// CatchUpLiveTailFirst ships a large backlog's newest records first
	// and the backlog behind them.
	CatchUpLiveTailFirst CatchUp = "live-tail-first"
)

// ParseCatchUp reads "oldest-first" or "live-tail-first".
func ParseCatchUp(s string) (CatchUp, error) {
	switch c := CatchUp(s); c {
	case CatchUpOldestFirst, CatchUpLiveTailFirst:
		return c, nil
	}
	return "", fmt.Errorf("mirror: catch-up order %q: want oldest-first or live-tail-first", s)
}

// split is a partition shipping its live tail from at on, ahead of the
// backfill below at.
type split struct {
	at        int64 // where the live tail starts
	tailAcked int64 // the center holds the tail up to here (staged)
}

// splitAt decides, as a session starts, whether a partition ships its tail
// first: it goes on with a tail the center already stages, or, under
// CatchUpLiveTailFirst, starts one at the durable end when the backlog
// from next is more than a window of chunks. A center whose copy is empty
// gets everything oldest first (a tail staged for a copy since deleted is
// superseded). s.mu is held.
func (s *Sender) splitAt(r wire.Resume, part *flog.Partition, next int64) *split {
	if r.Next < 0 {
		return nil
	}
	if r.TailFrom > next {
		return &split{at: r.TailFrom, tailAcked: r.TailNext}
	}
	if s.opts.CatchUp != CatchUpLiveTailFirst {
		return nil
	}
	at := part.DurableOffset()
	if at <= next || backlogBytes(part, next) <= int64(s.opts.Window)*int64(s.opts.ChunkBytes) {
		return nil
	}
	return &split{at: at, tailAcked: at}
}

// acknowledged applies the center's acknowledgement of a sent chunk up to
// next; copied is where the center's copy ends. A live tail's
// acknowledgements wait in its split; when the backfill reaches the tail,
// the copy holds what the center had staged (merged), and the whole range
// counts as acknowledged. If the copy does not reach the tail (the staging
// lost records), only the copy counts, and the session ends so that the
// next one ships the missing records again (an error).
func (s *Sender) acknowledged(sc sentChunk, next, copied int64) error {
	s.mu.Lock()
	var err error
	if sp := s.splits[sc.key]; sp != nil {
		if sc.tail {
			sp.tailAcked = max(sp.tailAcked, next)
			s.mu.Unlock()
			return nil
		}
		if next >= sp.at {
			delete(s.splits, sc.key)
			if copied >= sp.tailAcked {
				next = max(next, sp.tailAcked)
				s.logger.Info("mirror: the backfill reached the live tail", "topic", sc.key.topic, "partition", sc.key.partition, "acked", next)
			} else {
				next = max(next, copied)
				err = fmt.Errorf("%s-%d: the center's copy ends at %d, short of the live tail it acknowledged to %d; shipping the rest again",
					sc.key.topic, sc.key.partition, copied, sp.tailAcked)
			}
		}
	}
	s.mu.Unlock()
	s.advance(sc.key, next)
	return err
}
