package log

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Idempotent producers. A batch whose producer id is not -1 carries an epoch
// and a base sequence; per partition the log remembers, for every producer,
// its epoch and its last five batches, and Append (under the partition's
// lock, so atomically with the write) rejects a batch that repeats one of
// them (ErrDuplicateSequence, with the original offsets) or skips ahead
// (ErrOutOfOrderSequence), as Kafka's broker does. A producer unknown to the
// partition may start at any sequence: its state may have been expired.
//
// The state is snapshotted to <dir>/<20-digit offset>.snapshot when a segment
// is rolled and when the partition is closed, and rebuilt on open from the
// newest snapshot at or below the end offset plus the batches after it, so
// retries are recognised across restarts and crashes.

const (
	producerWindow = 5 // batches remembered per producer, as in Kafka
	// producerExpiry drops producers idle for longer than this (by the
	// wall clock at append, not by the batches' timestamps, which devices
	// set from clocks of their own) when a snapshot is written.
	producerExpiryMs = 7 * 24 * 3600 * 1000
	snapshotsKept    = 2
)

type producerBatch struct {
	FirstSeq   int32 `json:"first_seq"`
	LastSeq    int32 `json:"last_seq"`
	BaseOffset int64 `json:"base"`
	LastOffset int64 `json:"last"`
}

type producerEntry struct {
	ID      int64           `json:"id"`
	Epoch   int16           `json:"epoch"`
	Batches []producerBatch `json:"batches"`      // oldest first, at most producerWindow
	LastTs  int64           `json:"last_seen_ms"` // wall clock of the last append
}

type producerState map[int64]*producerEntry

// check decides whether batch h may be appended. For a duplicate it returns
// the batch already stored.
func (ps producerState) check(h BatchHeader) (dup producerBatch, err error) {
	if h.ProducerID < 0 {
		return dup, nil
	}
	e := ps[h.ProducerID]
	if e == nil {
		return dup, nil
	}
	switch {
	case h.ProducerEpoch < e.Epoch:
		return dup, fmt.Errorf("%w: producer %d epoch %d, current %d", ErrProducerFenced, h.ProducerID, h.ProducerEpoch, e.Epoch)
	case h.ProducerEpoch > e.Epoch:
		if h.BaseSequence != 0 {
			return dup, fmt.Errorf("%w: producer %d new epoch %d must start at sequence 0, got %d", ErrOutOfOrderSequence, h.ProducerID, h.ProducerEpoch, h.BaseSequence)
		}
		return dup, nil
	}
	last := lastSeqOf(h)
	for _, b := range e.Batches {
		if b.FirstSeq == h.BaseSequence && b.LastSeq == last {
			return b, fmt.Errorf("%w: producer %d sequence %d..%d stored at offset %d", ErrDuplicateSequence, h.ProducerID, b.FirstSeq, b.LastSeq, b.BaseOffset)
		}
	}
	if n := len(e.Batches); n > 0 {
		want := nextSeq(e.Batches[n-1].LastSeq)
		if h.BaseSequence != want {
			return dup, fmt.Errorf("%w: producer %d epoch %d sent sequence %d, expected %d", ErrOutOfOrderSequence, h.ProducerID, h.ProducerEpoch, h.BaseSequence, want)
		}
	}
	return dup, nil
}

// record notes an appended batch (h with its assigned offsets), appended
// at wall-clock time nowMs.
func (ps producerState) record(h BatchHeader, nowMs int64) {
	if h.ProducerID < 0 {
		return
	}
	e := ps[h.ProducerID]
	if e == nil || h.ProducerEpoch > e.Epoch {
		e = &producerEntry{ID: h.ProducerID, Epoch: h.ProducerEpoch}
		ps[h.ProducerID] = e
	}
	if len(e.Batches) == producerWindow {
		copy(e.Batches, e.Batches[1:])
		e.Batches = e.Batches[:producerWindow-1]
	}
	e.Batches = append(e.Batches, producerBatch{FirstSeq: h.BaseSequence, LastSeq: lastSeqOf(h), BaseOffset: h.BaseOffset, LastOffset: h.LastOffset()})
	e.LastTs = max(e.LastTs, nowMs)
}

func lastSeqOf(h BatchHeader) int32 {
	return int32((int64(h.BaseSequence) + int64(h.LastOffsetDelta)) % (math.MaxInt32 + 1))
}

func nextSeq(s int32) int32 {
	if s == math.MaxInt32 {
		return 0
	}
	return s + 1
}

type snapshotFile struct {
	Offset    int64            `json:"offset"`
	Producers []*producerEntry `json:"producers"`
}

func snapshotPath(dir string, offset int64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d.snapshot", offset))
}

// writeSnapshot saves the state as of offset (every batch below it applied)
// atomically, expiring idle producers, and keeps the newest snapshotsKept.
func (ps producerState) writeSnapshot(fsys FS, dir string, offset, nowMs int64) error {
	s := snapshotFile{Offset: offset}
	for id, e := range ps {
		if e.LastTs > 0 && nowMs-e.LastTs > producerExpiryMs {
			delete(ps, id)
			continue
		}
		s.Producers = append(s.Producers, e)
	}
	sort.Slice(s.Producers, func(i, j int) bool { return s.Producers[i].ID < s.Producers[j].ID })
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(fsys, dir, filepath.Base(snapshotPath(dir, offset)), b); err != nil {
		return err
	}
	offsets, err := listSnapshots(fsys, dir)
	if err != nil {
		return err
	}
	for i := 0; i+snapshotsKept < len(offsets); i++ {
		fsys.Remove(snapshotPath(dir, offsets[i]))
	}
	return nil
}

// listSnapshots returns the offsets of the snapshot files in dir, ascending.
func listSnapshots(fsys FS, dir string) ([]int64, error) {
	entries, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []int64
	for _, e := range entries {
		stem, ok := strings.CutSuffix(e.Name(), ".snapshot")
		if !ok || len(stem) != 20 {
			continue
		}
		if n, ok := parseSegmentName(stem + ".log"); ok {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// loadSnapshot reads the newest readable snapshot at or below end. ok is
// false when there is none (the state must then be rebuilt from the start).
func loadSnapshot(fsys FS, dir string, end int64) (ps producerState, offset int64, ok bool, err error) {
	offsets, err := listSnapshots(fsys, dir)
	if err != nil {
		return nil, 0, false, err
	}
	for i := len(offsets) - 1; i >= 0; i-- {
		if offsets[i] > end {
			continue // written before a crash truncated the log below it
		}
		f, err := fsys.OpenFile(snapshotPath(dir, offsets[i]), os.O_RDONLY, 0)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, 0, false, err
		}
		b, err := readAll(f)
		f.Close()
		if err != nil {
			return nil, 0, false, err
		}
		var s snapshotFile
		if json.Unmarshal(b, &s) != nil || s.Offset != offsets[i] {
			continue // damaged: an older one, or a rebuild, will do
		}
		ps = producerState{}
		for _, e := range s.Producers {
			ps[e.ID] = e
		}
		return ps, s.Offset, true, nil
	}
	return nil, 0, false, nil
}
