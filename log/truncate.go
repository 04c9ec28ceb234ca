package log

import (
	"fmt"
	"os"
	"sort"
)

// TruncateTo cuts the log back so that it ends at offset, for a follower
// dropping a tail a deposed leader gave it (Kafka's UnifiedLog.truncateTo).
// A batch is never split: when offset falls inside one, that whole batch
// goes too, so the log may end below offset; the new end offset is
// returned. Nothing is cut when offset is at or past the end, but for an
// epoch noted at the end with nothing appended under it. It refuses
// (ErrBelowHighWatermark) to cut below the high watermark, which after a
// reopen is the checkpointed one: those records are committed. Segments,
// their indexes, idempotent-producer state and the leader-epoch cache are
// all cut.
//
// It is crash-safe: producer snapshots past the cut go first (they are
// only a shortcut: the state is rebuilt from the batches), then whole
// segments past the cut, newest first and each .log before its indexes
// (so what a crash leaves is always a dense prefix of the log, ending
// where it ended or at a segment boundary above the cut), then the
// indexes of the segment holding the cut and the segment's data, fsynced;
// the leader-epoch cache last (Open drops epochs past the end offset). A
// crash part-way leaves a log that ends between offset and where it
// ended, which the caller cuts again.
//
// A failure part-way disables the partition until it is reopened, as a
// failed write does; reopening recovers it.
func (p *Partition) TruncateTo(offset int64) (int64, error) {
	p.smu.Lock() // no fsync pass publishes a durable offset past the cut
	defer p.smu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hwmu.Lock() // the high watermark cannot pass the cut while it is made
	defer p.hwmu.Unlock()
	if p.closed {
		return 0, ErrClosed
	}
	if p.failed != nil {
		return 0, p.failed
	}
	end, start := p.active.next, p.logStartLocked()
	if offset >= end {
		// Nothing to cut but an epoch a deposed leader noted at its end
		// before it appended under it (Kafka's truncateTo does the same):
		// kept, a follower would report it as its last fetched epoch and
		// diverge again after every truncation.
		if err := p.ensureEpochsLocked(); err != nil {
			return end, err
		}
		if p.epochs.truncateFromEnd(end) {
			if err := p.saveEpochsLocked(); err != nil {
				return end, err
			}
		}
		return end, nil
	}
	if offset < start {
		return end, fmt.Errorf("%w: truncating %s-%d to %d, below its start offset %d", ErrOffsetOutOfRange, p.topic, p.id, offset, start)
	}
	hw := p.HighWatermark()
	if offset < hw {
		return end, fmt.Errorf("%w: truncating %s-%d to %d, high watermark %d", ErrBelowHighWatermark, p.topic, p.id, offset, hw)
	}
	i := sort.Search(len(p.segs), func(i int) bool { return p.segs[i].base > offset }) - 1
	seg := p.segs[i]
	limit, entries := seg.size, seg.idx.entries
	if seg != p.active {
		if err := seg.load(p.segs[i+1].base, p.cfg.Load().IndexIntervalBytes, p.logger); err != nil {
			return end, err
		}
		limit, entries = seg.size, seg.idx.entries
		if seg.corruptAt >= 0 {
			limit = seg.corruptAt
		}
	}
	pos, h, err := seg.findBatch(entries, offset, limit)
	if err != nil {
		return end, fmt.Errorf("truncating %s-%d to %d: %w", p.topic, p.id, offset, err)
	}
	cut := h.BaseOffset
	if cut < hw {
		return end, fmt.Errorf("%w: truncating %s-%d to %d cuts the batch at %d, high watermark %d", ErrBelowHighWatermark, p.topic, p.id, offset, cut, hw)
	}
	if err := p.ensureEpochsLocked(); err != nil { // before anything is cut
		return end, err
	}
	if err := p.truncateLocked(i, pos, cut); err != nil {
		p.failed = fmt.Errorf("partition %s-%d disabled after a failed truncation to %d: %w", p.topic, p.id, cut, err)
		p.logger.Error("partition disabled", "err", p.failed)
		p.failDurability(p.failed)
		return 0, p.failed
	}
	p.clearDamageFrom(cut)
	p.logger.Info("truncated log", "from_end_offset", end, "to_end_offset", cut, "requested", offset)
	return cut, nil
}

// truncateLocked cuts the log at position pos of segment i, the start of
// the batch at offset cut. p.smu, p.mu and p.hwmu are held.
func (p *Partition) truncateLocked(i int, pos, cut int64) error {
	// 1. Producer snapshots past the cut: a later reopen must not load
	// the state of records that are gone.
	snaps, err := listSnapshots(p.fs, p.dir)
	if err != nil {
		return err
	}
	for _, off := range snaps {
		if off > cut {
			if err := p.fs.Remove(snapshotPath(p.dir, off)); err != nil {
				return err
			}
		}
	}
	// 2. Whole segments past the cut, newest first. The in-memory list
	// changes only once every file operation has succeeded: a failure
	// leaves the partition disabled but its segments as readers know them.
	seg := p.segs[i]
	for j := len(p.segs) - 1; j > i; j-- {
		if err := p.segs[j].remove(); err != nil {
			return err
		}
	}
	if err := p.fs.SyncDir(p.dir); err != nil {
		return err
	}
	// 3. The segment holding the cut: its indexes, then its data, each
	// fsynced; then it is reopened as the active segment, which recovery
	// of an active segment already knows how to do.
	n := sort.Search(len(seg.idx.entries), func(k int) bool { return int64(seg.idx.entries[k].pos) >= pos })
	if err := truncateIndexFiles(p.fs, seg.path, n); err != nil {
		return err
	}
	if err := truncateFile(p.fs, seg.path+".log", pos); err != nil {
		return err
	}
	s, err := recoverActive(p.fs, p.dir, seg.base, p.now().UnixMilli(), p.cfg.Load().IndexIntervalBytes, p.logger)
	if err != nil {
		return err
	}
	if s.next != cut {
		s.closeFiles()
		return fmt.Errorf("segment %s ends at %d after truncation, not %d", seg.path+".log", s.next, cut)
	}
	var total int64
	for _, old := range p.segs[i:] {
		old.release() // readers holding one keep their descriptors
	}
	p.segs = append(p.segs[:i:i], s)
	p.active = s
	for _, x := range p.segs {
		total += x.size
	}
	// Sealed segments below the cut not yet fsynced stay for the flusher;
	// the cut segment was fsynced whole by its truncation.
	kept := p.unsynced[:0]
	for _, x := range p.unsynced {
		if x.base < seg.base {
			kept = append(kept, x)
		}
	}
	p.unsynced = kept
	p.totalSize.Store(total)
	p.endOff.Store(s.next)
	if p.hw.Load() > cut {
		p.hw.Store(cut)
	}
	if p.durable.Load() > cut {
		p.durable.Store(cut)
	}
	if p.syncingTo.Load() > cut {
		p.syncingTo.Store(cut)
	}
	// 4. Producer state, from the newest snapshot at or below the cut.
	if err := p.loadProducers(); err != nil {
		return fmt.Errorf("rebuilding producer state: %w", err)
	}
	// 5. Leader epochs.
	if p.epochs.truncateFromEnd(cut) {
		return p.saveEpochsLocked()
	}
	return nil
}

// truncateIndexFiles keeps the first n entries of a segment's index files
// on disk, fsynced.
func truncateIndexFiles(fsys FS, basePath string, n int) error {
	if err := truncateFile(fsys, basePath+".index", int64(n)*offsetEntrySize); err != nil {
		return err
	}
	return truncateFile(fsys, basePath+".timeindex", int64(n)*timeEntrySize)
}

// truncateFile cuts a file to size and fsyncs it; a missing file is left
// missing (an index is rebuilt when absent).
func truncateFile(fsys FS, path string, size int64) error {
	f, err := fsys.OpenFile(path, os.O_RDWR, 0)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err == nil && st.Size() > size {
		err = f.Truncate(size)
		if err == nil {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
