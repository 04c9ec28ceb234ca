package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// Leader epochs (Kafka's KIP-101/279): a leader stamps its epoch into bytes
// 12-15 of each batch it appends (PartitionLeaderEpoch, outside the CRC, as
// the base offset is), and each partition keeps the epochs' start offsets
// in leader-epoch-checkpoint, so a follower can ask "where does epoch E
// end" (EndOffsetForEpoch; OffsetForLeaderEpoch on the wire) and truncate a
// tail it got from a deposed leader.
//
// The file is Kafka's text format: a version line (0), a count line, then
// one "epoch startOffset" line per entry, epochs and offsets strictly
// increasing. It is replaced atomically (temporary file, fsync, rename,
// directory fsync) on every change, which happens once per epoch, not per
// batch. It is written before the first batch of a new epoch, so after a
// crash it may name an epoch whose batches never made it: Open drops the
// entries at or past the end offset. A missing or damaged file is rebuilt
// from the batches' headers when the epochs are first needed.

const epochFileName = "leader-epoch-checkpoint"

// maxEpochEntries bounds what a checkpoint file may claim (a count read
// from disk); Kafka's caches stay in the tens.
const maxEpochEntries = 1 << 20

// EpochEntry is one leader epoch and the offset of its first batch.
type EpochEntry struct {
	Epoch       int32
	StartOffset int64
}

// epochCache is a partition's leader epochs, ascending in both epoch and
// start offset. Guarded by the partition's lock.
type epochCache struct {
	entries []EpochEntry
}

func (c *epochCache) latest() (EpochEntry, bool) {
	if len(c.entries) == 0 {
		return EpochEntry{}, false
	}
	return c.entries[len(c.entries)-1], true
}

// assign records that epoch starts at offset, as Kafka's
// LeaderEpochFileCache.assign does, except that an epoch older than the
// latest is ignored rather than cutting the newer ones (only a leader's
// stamps are assigned, and leaders' epochs only grow; an older one is a
// client's value in a copied batch). It reports whether anything changed.
func (c *epochCache) assign(epoch int32, offset int64) bool {
	if epoch < 0 || offset < 0 {
		return false
	}
	if l, ok := c.latest(); ok {
		if epoch < l.Epoch || (epoch == l.Epoch && offset >= l.StartOffset) {
			return false
		}
		// Entries that would break monotonicity go (Kafka's
		// maybeTruncateNonMonotonicEntries).
		n := len(c.entries)
		for n > 0 && (c.entries[n-1].Epoch >= epoch || c.entries[n-1].StartOffset >= offset) {
			n--
		}
		c.entries = c.entries[:n]
	}
	c.entries = append(c.entries, EpochEntry{Epoch: epoch, StartOffset: offset})
	return true
}

// truncateFromEnd drops the epochs that start at or after end (the log was
// cut back to end). It reports whether anything changed.
func (c *epochCache) truncateFromEnd(end int64) bool {
	n := len(c.entries)
	for n > 0 && c.entries[n-1].StartOffset >= end {
		n--
	}
	changed := n != len(c.entries)
	c.entries = c.entries[:n]
	return changed
}

// truncateFromStart forgets what lies below the log start offset, as
// Kafka's truncateFromStart: the epoch holding start now starts there and
// older ones go. Only the memory changes (a retention pass must not wait
// for an fsync under the partition's lock); Open applies it again to what
// the file holds.
func (c *epochCache) truncateFromStart(start int64) {
	k := -1
	for k+1 < len(c.entries) && c.entries[k+1].StartOffset <= start {
		k++
	}
	if k < 0 || (k == 0 && c.entries[0].StartOffset == start) {
		return
	}
	c.entries[k].StartOffset = start
	c.entries = append(c.entries[:0], c.entries[k:]...)
}

// endOffsetFor answers Kafka's endOffsetFor: the largest epoch at or below
// epoch and the start offset of the first epoch after it (the log end
// offset if epoch is the latest), or (-1, -1) when the cache knows no
// epoch at or after it.
func (c *epochCache) endOffsetFor(epoch int32, logEnd int64) (int32, int64) {
	if epoch < 0 {
		return -1, -1
	}
	if l, ok := c.latest(); ok && l.Epoch == epoch {
		return epoch, logEnd
	}
	// The first entry with a larger epoch.
	i := 0
	for i < len(c.entries) && c.entries[i].Epoch <= epoch {
		i++
	}
	if i == len(c.entries) {
		return -1, -1
	}
	if i == 0 {
		// Older than every epoch known: it ended where the first one
		// began.
		return epoch, c.entries[0].StartOffset
	}
	return c.entries[i-1].Epoch, c.entries[i].StartOffset
}

func encodeEpochs(entries []EpochEntry) []byte {
	b := []byte("0\n")
	b = strconv.AppendInt(b, int64(len(entries)), 10)
	b = append(b, '\n')
	for _, e := range entries {
		b = strconv.AppendInt(b, int64(e.Epoch), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, e.StartOffset, 10)
		b = append(b, '\n')
	}
	return b
}

// decodeEpochs parses a leader-epoch-checkpoint file. The count line must
// match the lines that follow, so a count is never trusted beyond the
// bytes that carry it.
func decodeEpochs(b []byte) ([]EpochEntry, error) {
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) < 3 || len(lines[len(lines)-1]) != 0 {
		return nil, errors.New("truncated file")
	}
	lines = lines[:len(lines)-1]
	if string(lines[0]) != "0" {
		return nil, fmt.Errorf("unknown version %q", lines[0])
	}
	n, err := strconv.Atoi(string(lines[1]))
	if err != nil || n < 0 || n > maxEpochEntries || n != len(lines)-2 {
		return nil, fmt.Errorf("count %q does not match %d entries", lines[1], len(lines)-2)
	}
	out := make([]EpochEntry, 0, n)
	for _, l := range lines[2:] {
		es, os, ok := bytes.Cut(l, []byte(" "))
		if !ok {
			return nil, fmt.Errorf("bad entry %q", l)
		}
		e, err1 := strconv.ParseInt(string(es), 10, 32)
		o, err2 := strconv.ParseInt(string(os), 10, 64)
		if err1 != nil || err2 != nil || e < 0 || o < 0 {
			return nil, fmt.Errorf("bad entry %q", l)
		}
		if k := len(out); k > 0 && (int32(e) <= out[k-1].Epoch || o <= out[k-1].StartOffset) {
			return nil, fmt.Errorf("entry %q does not follow %d %d", l, out[k-1].Epoch, out[k-1].StartOffset)
		}
		out = append(out, EpochEntry{Epoch: int32(e), StartOffset: o})
	}
	return out, nil
}

// writeFileAtomic replaces dir/name with b: a temporary file, fsynced,
// renamed into place, the directory fsynced. A crash leaves the old file
// or the new one, never a mix.
func writeFileAtomic(fsys FS, dir, name string, b []byte) error {
	path := filepath.Join(dir, name)
	tmp := path + ".tmp"
	f, err := fsys.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(b, 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, path)
	}
	if err != nil {
		fsys.Remove(tmp)
		return err
	}
	return fsys.SyncDir(dir)
}

// readSmallFile reads a checkpoint file; fs.ErrNotExist when there is none.
func readSmallFile(fsys FS, path string) ([]byte, error) {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAll(f)
}

// saveEpochsLocked writes the cache to its file. p.mu is held.
func (p *Partition) saveEpochsLocked() error {
	if err := writeFileAtomic(p.fs, p.dir, epochFileName, encodeEpochs(p.epochs.entries)); err != nil {
		return fmt.Errorf("writing %s of %s-%d: %w", epochFileName, p.topic, p.id, err)
	}
	return nil
}

// noteEpochLocked records, before a stamped batch of epoch at base is
// written, that epoch starts there if it is new. p.mu is held.
func (p *Partition) noteEpochLocked(epoch int32, base int64) error {
	if err := p.ensureEpochsLocked(); err != nil {
		return err
	}
	if l, ok := p.epochs.latest(); ok && epoch <= l.Epoch {
		return nil // the common case: no change, no allocation
	}
	before := append([]EpochEntry(nil), p.epochs.entries...)
	if !p.epochs.assign(epoch, base) {
		return nil
	}
	if err := p.saveEpochsLocked(); err != nil {
		p.epochs.entries = before // the file and memory stay alike
		return err
	}
	return nil
}

// noteEpochsLocked records the epochs copied batches carry (negative ones
// are no epoch: a node alone's clients' values), writing the file at most
// once for them all. p.mu is held.
func (p *Partition) noteEpochsLocked(hs []BatchHeader) error {
	var latest int32 = -1
	if l, ok := p.epochs.latest(); ok && p.epochsReady {
		latest = l.Epoch
	}
	need := false
	for _, h := range hs {
		need = need || h.LeaderEpoch > latest
	}
	if !need {
		return nil // the common case: no new epoch, no allocation
	}
	if err := p.ensureEpochsLocked(); err != nil {
		return err
	}
	before := append([]EpochEntry(nil), p.epochs.entries...)
	changed := false
	for _, h := range hs {
		changed = p.epochs.assign(h.LeaderEpoch, h.BaseOffset) || changed
	}
	if !changed {
		return nil
	}
	if err := p.saveEpochsLocked(); err != nil {
		p.epochs.entries = before // nothing is written: nothing changes
		return err
	}
	return nil
}

// loadEpochs reads the partition's leader-epoch checkpoint at open and
// drops epochs that start at or past the end offset (written before a
// crash cut the log). A missing or damaged file is rebuilt from the
// batches, but only when the epochs are first needed (ensureEpochsLocked):
// the rebuild reads every batch header, and a node alone, whose batches
// carry no epochs, never needs them (a partition written before this file
// existed opens as fast as before). Called at open, before the partition
// is shared.
func (p *Partition) loadEpochs() error {
	path := filepath.Join(p.dir, epochFileName)
	b, err := readSmallFile(p.fs, path)
	var entries []EpochEntry
	if err == nil {
		entries, err = decodeEpochs(b)
		if err != nil {
			p.logger.Warn("damaged leader-epoch checkpoint; it is rebuilt from the batches when first needed", "file", path, "err", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err != nil && p.totalSize.Load() == 0 {
		// A new (or empty) partition: nothing to rebuild from.
		p.epochs = epochCache{}
		p.epochsReady = true
		return p.saveEpochsLocked()
	}
	if err != nil {
		return nil // rebuilt when first needed
	}
	p.epochs = epochCache{entries: entries}
	p.epochsReady = true
	p.epochs.truncateFromStart(p.logStartLocked())
	if p.epochs.truncateFromEnd(p.active.next) {
		return p.saveEpochsLocked()
	}
	return nil
}

// ensureEpochsLocked rebuilds the epoch cache from the batches if open
// found no valid checkpoint, and saves it. p.mu is held for writing.
func (p *Partition) ensureEpochsLocked() error {
	if p.epochsReady {
		return nil
	}
	c, err := p.rebuildEpochs()
	if err != nil {
		return err
	}
	c.truncateFromStart(p.logStartLocked())
	c.truncateFromEnd(p.active.next)
	p.epochs = c
	if err := p.saveEpochsLocked(); err != nil {
		return err
	}
	p.epochsReady = true
	return nil
}

// readEpochs runs fn on the ready epoch cache under the read lock,
// rebuilding it first if it must.
func (p *Partition) readEpochs(fn func()) error {
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return ErrClosed
	}
	if p.epochsReady {
		fn()
		p.mu.RUnlock()
		return nil
	}
	p.mu.RUnlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if err := p.ensureEpochsLocked(); err != nil {
		return err
	}
	fn()
	return nil
}

// rebuildEpochs walks every batch header of the partition and assigns the
// epochs they carry. It reads 27 bytes per batch and stops at the first
// header that does not continue the log (damage is for reads to report).
// A log never stamped (a node alone) holds its clients' values there, -1
// from most: those with a negative epoch are skipped.
func (p *Partition) rebuildEpochs() (epochCache, error) {
	var c epochCache
	for _, seg := range p.segs {
		size := seg.size
		f, err := p.fs.OpenFile(seg.path+".log", os.O_RDONLY, 0)
		if err != nil {
			return c, fmt.Errorf("rebuilding leader epochs: %w", err)
		}
		var hb [offLastDelta + 4]byte
		expect := seg.base
		for pos := int64(0); pos+batchHeaderSize <= size; {
			if _, err := f.ReadAt(hb[:], pos); err != nil && !errors.Is(err, io.EOF) {
				f.Close()
				return c, fmt.Errorf("rebuilding leader epochs: %w", err)
			}
			base := int64(binary.BigEndian.Uint64(hb[offBaseOffset:]))
			length := int64(int32(binary.BigEndian.Uint32(hb[offBatchLength:])))
			if base != expect || hb[offMagic] != 2 || length < batchHeaderSize-batchLogOverhead || pos+length+batchLogOverhead > size {
				break
			}
			epoch := int32(binary.BigEndian.Uint32(hb[offLeaderEpoch:]))
			c.assign(epoch, base)
			expect = base + int64(int32(binary.BigEndian.Uint32(hb[offLastDelta:]))) + 1
			pos += length + batchLogOverhead
		}
		f.Close()
	}
	p.logger.Info("rebuilt leader-epoch checkpoint from the batches", "epochs", len(c.entries))
	return c, nil
}

// SetLeaderEpoch makes this partition a leader at epoch (the node's
// assembly tells it what the cluster's metadata decided): every batch
// Append writes from now on carries epoch in its PartitionLeaderEpoch
// field, and the epoch starts at the current end offset (Kafka's
// makeLeader). An epoch older than the current one is refused. Until it is
// first called, Append leaves the field as the client sent it, as a node
// alone always has.
func (p *Partition) SetLeaderEpoch(epoch int32) error {
	if epoch < 0 {
		return fmt.Errorf("log: leader epoch %d is negative", epoch)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if epoch < p.leaderEpoch {
		return fmt.Errorf("%w: %d, partition %s-%d is at %d", ErrStaleLeaderEpoch, epoch, p.topic, p.id, p.leaderEpoch)
	}
	p.leaderEpoch = epoch
	return p.noteEpochLocked(epoch, p.active.next)
}

// LeaderEpoch is the epoch Append stamps, -1 when it stamps none.
func (p *Partition) LeaderEpoch() int32 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.leaderEpoch
}

// LeaderEpochs returns the partition's leader-epoch cache, oldest first
// (nil if it cannot be rebuilt, or the partition is closed).
func (p *Partition) LeaderEpochs() []EpochEntry {
	var out []EpochEntry
	p.readEpochs(func() { out = append(out, p.epochs.entries...) })
	return out
}

// EpochForOffset is the leader epoch whose records hold offset, -1 if
// none does (or offset is negative): Kafka's epochForOffset.
func (p *Partition) EpochForOffset(offset int64) (int32, error) {
	e := int32(-1)
	if offset < 0 {
		return e, nil
	}
	err := p.readEpochs(func() {
		for _, en := range p.epochs.entries {
			if en.StartOffset > offset {
				break
			}
			e = en.Epoch
		}
	})
	return e, err
}

// EndOffsetForEpoch answers Kafka's OffsetForLeaderEpoch for one
// partition: the largest epoch at or below epoch this log knows, and the
// offset where it ended (the start of the next epoch, or the end offset if
// it is the latest). An epoch older than any known is answered with itself
// and the first known epoch's start. (-1, -1) means the log knows no epoch
// at or after it (Kafka's UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET).
func (p *Partition) EndOffsetForEpoch(epoch int32) (int32, int64, error) {
	e, off := int32(-1), int64(-1)
	err := p.readEpochs(func() { e, off = p.epochs.endOffsetFor(epoch, p.active.next) })
	return e, off, err
}
