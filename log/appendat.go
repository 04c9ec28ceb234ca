package log

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// AppendAt appends batches at the offsets they already carry, for copies
// of another log (the mirror's receiver; replication later): the first
// batch's base offset must be the partition's end offset and each next one
// must follow the last, so the copy keeps the source's offsets and stays
// dense. An empty partition may instead start at a higher base offset (the
// source's log start): its start offset moves there. Every batch is
// validated (ValidateBatchCapped, with the topic's max.inflated.bytes)
// before any is written, so a bad one refuses them all. The topic's
// max.message.bytes does not apply: it bounds what producers send, and the
// source accepted these. Idempotent-producer state
// is recorded from the batches but not checked (the source checked it).
// Durability is as for Append.
//
// It returns ErrOffsetMismatch when the offsets are not where the copy can
// continue.
func (p *Partition) AppendAt(batches ...[]byte) (AppendResult, error) {
	return p.appendAt(false, batches)
}

// AppendAtStamped is AppendAt for a leader storing a copy of its own (the
// mirror receiver on a replicated center): each batch keeps its offsets
// but is stamped, in place, with the leader epoch Append stamps
// (SetLeaderEpoch) in bytes 12-15, outside the CRC, so that the leader's
// epoch cache covers it and its followers can find where their logs
// diverge. A partition given no leader epoch stores the batches as
// AppendAt does.
func (p *Partition) AppendAtStamped(batches ...[]byte) (AppendResult, error) {
	return p.appendAt(true, batches)
}

func (p *Partition) appendAt(stamp bool, batches [][]byte) (AppendResult, error) {
	if len(batches) == 0 {
		return AppendResult{}, fmt.Errorf("%w: no batches", ErrCorruptBatch)
	}
	hs := make([]BatchHeader, len(batches))
	maxTs := make([]int64, len(batches))
	cfg := p.cfg.Load()
	for i, b := range batches {
		times := newBatchTimes()
		h, err := validateBatch(b, cfg.MaxInflatedBytes, &times)
		maxTs[i] = times.max
		if err != nil {
			return AppendResult{}, err
		}
		if i > 0 && h.BaseOffset != hs[i-1].LastOffset()+1 {
			return AppendResult{}, fmt.Errorf("%w: batch at %d after one ending at %d", ErrOffsetMismatch, h.BaseOffset, hs[i-1].LastOffset())
		}
		hs[i] = h
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.continueAtLocked(hs[0].BaseOffset); err != nil {
		return AppendResult{}, err
	}
	if stamp && p.leaderEpoch >= 0 {
		for i, b := range batches {
			binary.BigEndian.PutUint32(b[offLeaderEpoch:], uint32(p.leaderEpoch))
			hs[i].LeaderEpoch = p.leaderEpoch
		}
	}
	// A copy keeps the epoch the source stamped (bytes 12-15 are written
	// as they came, unless stamped above) and learns where each epoch
	// starts, before the batches are written.
	if err := p.noteEpochsLocked(hs); err != nil {
		return AppendResult{}, err
	}
	var res AppendResult
	for i, b := range batches {
		r, err := p.writeLocked(b, hs[i], maxTs[i], cfg)
		if err != nil {
			return res, err
		}
		if i == 0 {
			res = r
		}
		res.LastOffset = r.LastOffset
	}
	return res, nil
}

// continueAtLocked checks that a copy may continue at base: the end
// offset, or any offset if the partition is empty (it restarts there).
// p.mu is held.
func (p *Partition) continueAtLocked(base int64) error {
	if err := p.writableLocked(); err != nil {
		return err
	}
	end := p.active.next
	switch {
	case base == end:
		return nil
	case base > end && end == p.startOff.Load() && p.totalSize.Load() == 0:
		return p.restartAtLocked(base)
	}
	return fmt.Errorf("%w: batch at %d, partition %s-%d ends at %d", ErrOffsetMismatch, base, p.topic, p.id, end)
}

// AppendGap records in a copy that offsets from..to (inclusive) of the
// source will never come (the source dropped them unshipped): it appends
// record batches that hold no records but span those offsets, as Kafka's
// compaction leaves them, so consumers step over the gap and the copy
// stays dense. from must be where the copy can continue (see AppendAt).
// Durability is as for Append.
func (p *Partition) AppendGap(from, to int64, timestamp int64) (AppendResult, error) {
	if to < from {
		return AppendResult{}, fmt.Errorf("%w: gap %d..%d", ErrOffsetMismatch, from, to)
	}
	cfg := p.cfg.Load()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.continueAtLocked(from); err != nil {
		return AppendResult{}, err
	}
	var res AppendResult
	for base := from; base <= to; {
		last := min(to, base+math.MaxInt32-1)
		batch := emptyBatch(base, int32(last-base), timestamp)
		if p.leaderEpoch >= 0 {
			// The gap is this node's own batch: a leader stamps it.
			binary.BigEndian.PutUint32(batch[offLeaderEpoch:], uint32(p.leaderEpoch))
		}
		h, err := ParseBatch(batch)
		if err != nil {
			return res, err
		}
		if h.LeaderEpoch >= 0 {
			if err := p.noteEpochLocked(h.LeaderEpoch, h.BaseOffset); err != nil {
				return res, err
			}
		}
		r, err := p.writeLocked(batch, h, noTimestamp, cfg) // no records, no timestamps
		if err != nil {
			return res, err
		}
		if base == from {
			res = r
		}
		res.LastOffset = r.LastOffset
		base = last + 1
	}
	return res, nil
}

// emptyBatch is a RecordBatch with no records spanning offsets
// base..base+lastDelta.
func emptyBatch(base int64, lastDelta int32, timestamp int64) []byte {
	rb := kmsg.RecordBatch{
		FirstOffset:     base,
		Length:          int32(batchHeaderSize - batchLogOverhead),
		Magic:           2,
		LastOffsetDelta: lastDelta,
		FirstTimestamp:  timestamp,
		MaxTimestamp:    timestamp,
		ProducerID:      -1,
		ProducerEpoch:   -1,
		FirstSequence:   -1,
		// Kafka's NO_PARTITION_LEADER_EPOCH unless a leader stamps it.
		PartitionLeaderEpoch: -1,
	}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], castagnoli))
	return b
}

// restartAtLocked moves an empty partition to start at base. p.mu is
// held.
func (p *Partition) restartAtLocked(base int64) error {
	if err := p.resetLocked(base); err != nil {
		return err
	}
	p.producers = producerState{}
	p.logger.Info("partition restarted at the copied log's start", "topic", p.topic, "partition", p.id, "start_offset", base)
	return nil
}

// Clear deletes every record of the partition, leaving it empty at its end
// offset, from where a copy (AppendAt, AppendGap) may restart at any
// higher offset. It is for staging areas, such as the mirror receiver's
// live tail once merged into the main copy; readers holding a segment keep
// reading it. The latest leader epoch stays, from the end on (as
// DeleteRecords keeps it: Kafka's truncateFromStart), so a follower that
// fetches with it is told where it stands, not that the epoch is unknown.
func (p *Partition) Clear() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if p.failed != nil {
		return p.failed
	}
	end := p.active.next
	latest, hasEpoch := EpochEntry{}, false
	if err := p.ensureEpochsLocked(); err == nil {
		latest, hasEpoch = p.epochs.latest()
	}
	if err := p.resetLocked(end); err != nil {
		return err
	}
	if hasEpoch {
		return p.noteEpochLocked(latest.Epoch, end)
	}
	return nil
}

// StartOver deletes every record and makes the partition start, empty,
// at offset (Kafka's truncateFullyAndStartAt): a follower whose end lies
// below its leader's log start (retention deleted what it would continue
// with) starts over there. offset must not be below the end offset, so no
// committed offset is ever reused.
func (p *Partition) StartOver(offset int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if p.failed != nil {
		return p.failed
	}
	if end := p.active.next; offset < end {
		return fmt.Errorf("%w: starting %s-%d over at %d, below its end offset %d", ErrOffsetMismatch, p.topic, p.id, offset, end)
	}
	if err := p.resetLocked(offset); err != nil {
		return err
	}
	p.producers = producerState{}
	p.hwmu.Lock()
	if p.hw.Load() < offset {
		p.hw.Store(offset)
	}
	p.hwmu.Unlock()
	p.logger.Info("partition started over at its leader's log start", "topic", p.topic, "partition", p.id, "start_offset", offset)
	return nil
}

// resetLocked replaces every segment with one empty segment at base
// (reusing the active one when it is already that). p.mu is held.
func (p *Partition) resetLocked(base int64) error {
	keep := p.active
	if keep.size != 0 || keep.base != base {
		s, err := createSegment(p.fs, p.dir, base, p.now().UnixMilli())
		if err != nil {
			return err
		}
		if err := p.fs.SyncDir(p.dir); err != nil {
			s.closeFiles()
			s.remove()
			return fmt.Errorf("syncing %s: %w", p.dir, err)
		}
		keep = s
	}
	old := p.segs
	p.segs, p.active, p.unsynced = []*segment{keep}, keep, nil
	if !p.epochsReady || len(p.epochs.entries) > 0 {
		// Nothing is left of any epoch (Kafka's truncateFullyAndStartAt).
		p.epochs.entries = nil
		if err := p.saveEpochsLocked(); err != nil {
			p.logger.Warn("clearing leader epochs", "err", err)
		} else {
			p.epochsReady = true
		}
	}
	p.totalSize.Store(0)
	p.startOff.Store(base)
	p.endOff.Store(base)
	if base > p.durable.Load() {
		p.durable.Store(base)
		p.dmu.Lock()
		close(p.durableCh) // wake WaitDurable: nothing below base is left to sync
		p.durableCh = make(chan struct{})
		p.dmu.Unlock()
	}
	for _, s := range old {
		if s == keep {
			continue
		}
		s.release()
		if err := s.remove(); err != nil {
			p.logger.Warn("could not remove a segment of a reset partition", "segment", s.path, "err", err)
		}
	}
	return p.fs.SyncDir(p.dir)
}
