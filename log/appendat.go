package log

import (
	"fmt"
)

// AppendAt appends a batch at the offsets it already carries, for copies of
// another log (the mirror's receiver; replication later): the batch's base
// offset must be the partition's end offset, so the copy keeps the source's
// offsets and stays dense. An empty partition may instead start at a higher
// base offset (the source's log start): its start offset moves there.
// Idempotent-producer state is recorded from the batch but not checked (the
// source checked it). Durability is as for Append.
//
// It returns ErrOffsetMismatch when the base offset is not where the copy
// can continue.
func (p *Partition) AppendAt(batch []byte) (AppendResult, error) {
	h, cfg, err := p.checkBatch(batch)
	if err != nil {
		return AppendResult{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.writableLocked(); err != nil {
		return AppendResult{}, err
	}
	end := p.active.next
	switch {
	case h.BaseOffset == end:
	case h.BaseOffset > end && end == p.startOff.Load() && p.totalSize.Load() == 0:
		if err := p.restartAtLocked(h.BaseOffset); err != nil {
			return AppendResult{}, err
		}
	default:
		return AppendResult{}, fmt.Errorf("%w: batch at %d, partition %s-%d ends at %d", ErrOffsetMismatch, h.BaseOffset, p.topic, p.id, end)
	}
	return p.writeLocked(batch, h, cfg)
}

// restartAtLocked moves an empty partition to start at base: its one,
// empty segment is replaced by one named base. p.mu is held.
func (p *Partition) restartAtLocked(base int64) error {
	old := p.active
	s, err := createSegment(p.fs, p.dir, base, p.now().UnixMilli())
	if err != nil {
		return err
	}
	if err := p.fs.SyncDir(p.dir); err != nil {
		s.closeFiles()
		s.remove()
		return fmt.Errorf("syncing %s: %w", p.dir, err)
	}
	p.segs, p.active, p.unsynced = []*segment{s}, s, nil
	old.release()
	if err := old.remove(); err != nil {
		p.logger.Warn("could not remove the empty segment a copy replaced", "segment", old.path, "err", err)
	}
	p.startOff.Store(base)
	p.endOff.Store(base)
	p.producers = producerState{}
	if base > p.durable.Load() {
		p.durable.Store(base)
	}
	p.logger.Info("partition restarted at the copied log's start", "topic", p.topic, "partition", p.id, "start_offset", base)
	return nil
}
