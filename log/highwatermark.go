package log

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
)

// The high watermark of a replicated partition (Kafka's): the end of what
// the in-sync replicas all hold. Replication advances it
// (AdvanceHighWatermark) and checkpoints it now and then
// (CheckpointHighWatermark) into high-watermark-checkpoint in the
// partition's directory, the per-partition counterpart of Kafka's
// replication-offset-checkpoint: "0\n<offset>\n", replaced atomically. A
// reopened partition starts from its checkpoint, never above its end
// offset, so a restarted node never exposes more than it had checkpointed;
// TruncateTo never cuts below it.
//
// A node alone never advances it (its committed end is DurableOffset) and
// writes no file; reads do not look at it.

const hwFileName = "high-watermark-checkpoint"

// loadHighWatermark reads the checkpoint at open. No file: the log start
// offset. A damaged file is an error, as in Kafka: guessing low could let
// a truncation cut committed records, guessing high could expose
// uncommitted ones.
func (p *Partition) loadHighWatermark() error {
	start, end := p.logStartLocked(), p.active.next
	b, err := readSmallFile(p.fs, filepath.Join(p.dir, hwFileName))
	if errors.Is(err, fs.ErrNotExist) {
		p.hw.Store(start)
		p.hwSaved = start // nothing below the start can be cut anyway
		return nil
	}
	if err != nil {
		return err
	}
	hw, err := decodeHighWatermark(b)
	if err != nil {
		return fmt.Errorf("damaged %s: %w", filepath.Join(p.dir, hwFileName), err)
	}
	p.hwSaved = hw
	if hw > end {
		p.logger.Warn("high-watermark checkpoint is past the end offset; starting from the end", "checkpoint", hw, "end_offset", end)
		hw = end
	}
	p.hw.Store(max(hw, start))
	return nil
}

func decodeHighWatermark(b []byte) (int64, error) {
	v, rest, ok := strings.Cut(string(b), "\n")
	if !ok || v != "0" {
		return 0, errors.New("unknown version")
	}
	s, rest, ok := strings.Cut(rest, "\n")
	if !ok || rest != "" {
		return 0, errors.New("truncated")
	}
	hw, err := strconv.ParseInt(s, 10, 64)
	if err != nil || hw < 0 {
		return 0, fmt.Errorf("bad offset %q", s)
	}
	return hw, nil
}

// HighWatermark is the partition's high watermark: never above the end
// offset nor below the start offset. On a node alone nothing advances it.
func (p *Partition) HighWatermark() int64 {
	return max(p.hw.Load(), p.startOff.Load())
}

// AdvanceHighWatermark moves the high watermark up to offset, capped at
// the end offset (a follower's is the leader's, bounded by what it holds);
// it never moves back. It returns the high watermark. A move closes the
// channel Wait returned, as an append does.
func (p *Partition) AdvanceHighWatermark(offset int64) int64 {
	// hwmu, not mu: appends do not wait for it; TruncateTo moves the end
	// offset and clamps hw under it, so hw never passes the end.
	p.hwmu.Lock()
	moved := false
	if next := min(offset, p.endOff.Load()); next > p.hw.Load() {
		p.hw.Store(next)
		moved = true
	}
	hw := p.HighWatermark()
	p.hwmu.Unlock()
	if moved {
		// Readers bounded by the high watermark (consumers of a
		// replicated partition) long-poll on Wait: wake them.
		p.mu.Lock()
		if p.waitCh != nil {
			close(p.waitCh)
			p.waitCh = nil
		}
		p.mu.Unlock()
	}
	return hw
}

// CheckpointHighWatermark writes the high watermark to the partition's
// checkpoint file, capped at the durable offset so that a power cut never
// leaves a checkpoint above what the log kept. It writes nothing when the
// value has not changed since the last checkpoint.
func (p *Partition) CheckpointHighWatermark() error {
	p.ckmu.Lock()
	defer p.ckmu.Unlock()
	hw := min(p.hw.Load(), p.DurableOffset())
	if hw <= p.hwSaved {
		return nil
	}
	if err := writeFileAtomic(p.fs, p.dir, hwFileName, []byte("0\n"+strconv.FormatInt(hw, 10)+"\n")); err != nil {
		return fmt.Errorf("checkpointing high watermark of %s-%d: %w", p.topic, p.id, err)
	}
	p.hwSaved = hw
	return nil
}

// CheckpointedHighWatermark is the high watermark as last checkpointed
// (the log start offset at open if never).
func (p *Partition) CheckpointedHighWatermark() int64 {
	p.ckmu.Lock()
	defer p.ckmu.Unlock()
	return p.hwSaved
}
