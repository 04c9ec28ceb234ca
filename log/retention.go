package log

import (
	"math"
)

// RetentionResult says what one retention pass deleted from a partition.
type RetentionResult struct {
	Segments int
	Bytes    int64
	// NewStart is the partition's start offset after the pass.
	NewStart int64
}

// enforceRetention deletes whole segments from the head of the partition
// while retention.ms or retention.bytes says so and nothing at or above
// floor would go. A segment's age is measured from agedAt (timestamps.go):
// its records' largest timestamp, else (none, or one in the future) its
// last write. An expired active segment is rolled first, so an idle
// topic ages out too; size-based retention never deletes the active segment.
func (p *Partition) enforceRetention(nowMs, floor int64) (RetentionResult, error) {
	var res RetentionResult
	for {
		cfg := p.cfg.Load()
		if cfg.RetentionAge < 0 && cfg.RetentionBytes < 0 {
			break
		}
		// Load the head segment outside the lock: it may need I/O.
		p.mu.RLock()
		if p.closed {
			p.mu.RUnlock()
			return res, ErrClosed
		}
		head := p.segs[0]
		nextBase := int64(-1)
		if len(p.segs) > 1 {
			nextBase = p.segs[1].base
		}
		head.acquire()
		p.mu.RUnlock()
		var err error
		if nextBase >= 0 {
			err = head.load(nextBase, cfg.IndexIntervalBytes, p.logger)
		}
		head.release()
		if err != nil {
			return res, err
		}

		p.mu.Lock()
		if p.closed || p.segs[0] != head {
			p.mu.Unlock()
			continue
		}
		isActive := head == p.active
		end := head.next
		if !isActive {
			end = p.segs[1].base
		}
		expired := cfg.RetentionAge >= 0 && agedAt(head.maxTs, head.writtenMs.Load(), nowMs) < nowMs-cfg.RetentionAge.Milliseconds()
		tooBig := cfg.RetentionBytes >= 0 && !isActive && p.totalSize.Load()-head.size >= cfg.RetentionBytes
		if head.size == 0 || end > floor || !(expired || tooBig) {
			p.mu.Unlock()
			break
		}
		if isActive {
			if err := p.rollLocked(nowMs); err != nil {
				p.mu.Unlock()
				return res, err
			}
		}
		p.detachHeadLocked(head)
		p.mu.Unlock()

		reason := "retention.ms"
		if !expired {
			reason = "retention.bytes"
		}
		if err := p.deleteSegment(head, end, reason); err != nil {
			return res, err
		}
		res.Segments++
		res.Bytes += head.size
	}
	if res.Segments > 0 {
		if err := p.fs.SyncDir(p.dir); err != nil {
			return res, err
		}
	}
	res.NewStart = p.startOff.Load()
	return res, nil
}

// SetAppliesRetention says whether this replica applies retention.ms and
// retention.bytes itself. In a replicated log (Options.Replicated) only
// the leader does, by its own clock and size, and only below the high
// watermark (EnforceRetention); a follower's copy is cut
// where the leader's is (replication moves its start to the leader's log
// start, up to the high watermark, with DeleteRecords), so replicas never
// hold different starts, and a follower whose clock runs ahead (or whose
// copy counts differently) deletes nothing its leader still serves. The
// replica manager sets it as roles change; until then a replicated log's
// partitions apply none. A log alone ignores it: each partition is its
// own leader. Kafka's followers apply retention themselves as well.
// The disk budget (max.disk.bytes) is the node's own and always applies.
func (p *Partition) SetAppliesRetention(on bool) { p.appliesRetention.Store(on) }

// detachHeadLocked takes the head segment out of the partition. p.mu is
// held; deleteSegment removes its files afterwards.
func (p *Partition) detachHeadLocked(head *segment) {
	p.segs = p.segs[1:]
	for i, s := range p.unsynced {
		if s == head {
			p.unsynced = append(p.unsynced[:i], p.unsynced[i+1:]...)
			break
		}
	}
	p.totalSize.Add(-head.size)
	p.startOff.Store(p.logStartLocked())
	if p.epochsReady { // else the rebuild reads only what is left
		p.epochs.truncateFromStart(p.logStartLocked())
	}
}

// deleteSegment removes a detached segment's files (readers holding it
// keep reading) and says why.
func (p *Partition) deleteSegment(head *segment, end int64, reason string) error {
	p.logger.Info("deleting segment", "base_offset", head.base, "next_offset", end, "bytes", head.size, "reason", reason)
	err := head.remove()
	head.release()
	return err
}

// dropHeadForBudget deletes the oldest segment if it is sealed and the
// shipper does not pin it (its records are all below floor), returning the bytes
// freed: 0 when it may not. willDrop, when set, is told the segment's
// offsets before anything of it goes (readers still find the records), so
// an observer records the loss before a reader can see the new start.
func (p *Partition) dropHeadForBudget(floor int64, willDrop func(from, to int64)) (int64, error) {
	p.mu.Lock()
	if p.closed || len(p.segs) < 2 {
		p.mu.Unlock()
		return 0, nil
	}
	head, end := p.segs[0], p.segs[1].base
	if end > floor || head.size == 0 {
		p.mu.Unlock()
		return 0, nil
	}
	if willDrop != nil {
		p.mu.Unlock()
		willDrop(head.base, end-1) // not under p.mu: observers take their own locks, then p.mu
		p.mu.Lock()
		if p.closed || len(p.segs) < 2 || p.segs[0] != head {
			p.mu.Unlock()
			return 0, nil // the head went meanwhile (a reset)
		}
	}
	p.detachHeadLocked(head)
	p.mu.Unlock()
	if err := p.deleteSegment(head, end, "max.disk.bytes"); err != nil {
		return head.size, err
	}
	return head.size, p.fs.SyncDir(p.dir)
}

// noFloor is the floor that pins nothing.
const noFloor = math.MaxInt64
