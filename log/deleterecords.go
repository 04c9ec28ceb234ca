package log

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
)

// DeleteRecords (Kafka's API 21) moves a partition's log start offset
// forward, possibly into the middle of a segment: reads below it answer
// ErrOffsetOutOfRange and ListOffsets' earliest is it, while the segment
// holding it stays until every record of it is below the start. The new
// start is kept in log-start-offset-checkpoint in the partition's
// directory (Kafka keeps one such file per log directory; ferry one per
// partition, as high-watermark-checkpoint), "0\n<offset>\n", replaced
// atomically, so a restart keeps it. Retention and the disk budget, which
// delete whole segments, move the start to the next segment's base; the
// start is the larger of that and the checkpoint.

const logStartFileName = "log-start-offset-checkpoint"

// DeleteObserver is an optional interface of the Shipper: told, before the
// log start moves, that DeleteRecords is deleting offsets From..To
// (inclusive) of a partition, so it can record durably which of them it
// had not shipped (a gap to tell, as for WillDrop).
type DeleteObserver interface {
	WillDelete(topic string, partition int32, from, to int64)
}

// logStartLocked is the log start offset: the first segment's base, or
// the DeleteRecords checkpoint when that is above it. p.mu is held.
func (p *Partition) logStartLocked() int64 { return max(p.segs[0].base, p.recStart) }

// loadLogStart reads the checkpoint at open (none: the first segment's
// base). A checkpoint past the end offset (the records it deleted were
// lost in a power cut before they were durable) is capped at the end.
func (p *Partition) loadLogStart() error {
	path := filepath.Join(p.dir, logStartFileName)
	b, err := readSmallFile(p.fs, path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	v, err := decodeHighWatermark(b) // the same format
	if err != nil {
		return fmt.Errorf("damaged %s: %w", path, err)
	}
	if end := p.active.next; v > end {
		p.logger.Warn("log-start checkpoint is past the end offset; starting at the end", "checkpoint", v, "end_offset", end)
		v = end
	}
	p.recStart = v
	p.startOff.Store(p.logStartLocked())
	return nil
}

// DeleteRecords moves the log start of a partition to offset (Kafka's
// DeleteRecords) and returns the log start after it (Kafka's low
// watermark). An offset at or below the start changes nothing; one past
// the end offset is ErrOffsetOutOfRange. The records below offset are
// made durable first, the shipper (DeleteObserver) is told, then the
// checkpoint is written before readers see the new start; segments left
// wholly below it are deleted at once.
func (l *Log) DeleteRecords(ctx context.Context, topic string, partition int32, offset int64) (int64, error) {
	p, err := l.Partition(topic, partition)
	if err != nil {
		return -1, err
	}
	l.mu.RLock()
	obs, _ := l.shipper.(DeleteObserver)
	l.mu.RUnlock()
	var tell func(from, to int64)
	if obs != nil {
		tell = func(from, to int64) { obs.WillDelete(topic, partition, from, to) }
	}
	return p.deleteRecords(ctx, offset, tell)
}

func (p *Partition) deleteRecords(ctx context.Context, offset int64, willDelete func(from, to int64)) (int64, error) {
	p.delmu.Lock()
	defer p.delmu.Unlock()
	start, end := p.StartOffset(), p.EndOffset()
	if offset < 0 || offset > end {
		return start, fmt.Errorf("%w: deleting records of %s-%d before %d, partition holds [%d, %d)", ErrOffsetOutOfRange, p.topic, p.id, offset, start, end)
	}
	if offset <= start {
		return start, nil
	}
	// A start checkpointed past what a power cut keeps would hand out
	// its offsets again after the restart.
	if err := p.WaitDurable(ctx, offset-1); err != nil {
		return start, err
	}
	if willDelete != nil {
		willDelete(start, offset-1) // not under p.mu: observers take their own locks
	}
	if err := writeFileAtomic(p.fs, p.dir, logStartFileName, []byte("0\n"+strconv.FormatInt(offset, 10)+"\n")); err != nil {
		return start, fmt.Errorf("checkpointing log start of %s-%d: %w", p.topic, p.id, err)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return start, ErrClosed
	}
	p.recStart = max(p.recStart, offset)
	var gone []*segment
	var ends []int64
	for len(p.segs) > 1 && p.segs[1].base <= p.recStart {
		head := p.segs[0]
		gone, ends = append(gone, head), append(ends, p.segs[1].base)
		p.detachHeadLocked(head)
	}
	newStart := p.logStartLocked()
	p.startOff.Store(newStart)
	if p.epochsReady {
		p.epochs.truncateFromStart(newStart)
	}
	p.mu.Unlock()
	p.logger.Info("log start moved by DeleteRecords", "from_offset", start, "start_offset", newStart)
	var err error
	for i, s := range gone {
		if derr := p.deleteSegment(s, ends[i], "DeleteRecords"); derr != nil && err == nil {
			err = derr
		}
	}
	if len(gone) > 0 && err == nil {
		err = p.fs.SyncDir(p.dir)
	}
	return newStart, err
}
