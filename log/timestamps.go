package log

import (
	"errors"
	"fmt"
	"io"
)

// The timestamps the log decides by. A batch header's FirstTimestamp and
// MaxTimestamp are the client's claims and may disagree with its records:
// librdkafka, given no timestamp (-1), writes FirstTimestamp -1 and
// MaxTimestamp 0. As Kafka's LogValidator does, the log takes a batch's
// maximum timestamp from its records as it walks them, never from the
// header. Stored bytes stay the client's (DESIGN.md invariant 2): the value
// lives only in the segment's running maximum and its time index.
//
// A record timestamp below zero means "none" (Kafka's NO_TIMESTAMP, -1): it
// never raises a maximum, and a batch or segment all of whose records carry
// none has maximum -1.

// storedInflateLimit bounds the inflated size of a batch already stored
// (1 TiB: any real batch; zstd accepts a window limit this large).
const storedInflateLimit = 1 << 40

// noTimestamp is Kafka's RecordBatch.NO_TIMESTAMP.
const noTimestamp = -1

// attrLogAppendTime is the batch attribute bit saying every record's
// timestamp is the header's MaxTimestamp (set by a broker, not a client).
const attrLogAppendTime = 0x08

// recordTimestamp is the timestamp of a record of the batch of header h
// whose timestamp delta is delta, or noTimestamp when it carries none (a
// negative time, or a sum past the int64 range).
func recordTimestamp(h BatchHeader, delta int64) int64 {
	if h.Attributes&attrLogAppendTime != 0 {
		return max(h.MaxTimestamp, noTimestamp)
	}
	ts := h.FirstTimestamp + delta
	if h.FirstTimestamp > 0 && delta > 0 && ts < 0 || h.FirstTimestamp < 0 && delta < 0 && ts >= 0 {
		return noTimestamp // wrapped around the int64 range
	}
	return max(ts, noTimestamp)
}

// batchTimes gathers the timestamps of a batch's records as they are
// walked: the smallest and largest that are present, each -1 if no record
// carries one.
type batchTimes struct {
	min, max int64
}

func newBatchTimes() batchTimes { return batchTimes{min: noTimestamp, max: noTimestamp} }

// add takes one record's timestamp (from recordTimestamp).
func (t *batchTimes) add(ts int64) {
	if ts < 0 {
		return
	}
	if t.min < 0 || ts < t.min {
		t.min = ts
	}
	t.max = max(t.max, ts)
}

// timesOf walks the records of a batch whose CRC is checked (decompressing
// a compressed one) and returns their timestamps. It is for the paths that
// find batches already stored (recovery, index rebuilds, lookups by time);
// Append gets the same from its validation walk.
func timesOf(b []byte, h BatchHeader) (batchTimes, error) {
	t := newBatchTimes()
	if h.NumRecords == 0 {
		return t, nil
	}
	records := b[batchHeaderSize:h.Length]
	add := func(_ int32, delta int64) bool {
		t.add(recordTimestamp(h, delta))
		return true
	}
	var err error
	if codec := h.Codec(); codec != 0 {
		// Stored batches passed their topic's cap when appended, which
		// may since have been lowered: the walk streams, so memory stays
		// bounded by the codec's window, whatever the cap was.
		_, err = walkCompressed(codec, records, storedInflateLimit, add)
	} else {
		_, err = walkRecords(records, func(od int32, delta int64, _ []byte) bool { return add(od, delta) })
	}
	return t, err
}

// BatchTimestamps returns the smallest and largest record timestamps of the
// RecordBatch at the start of b, from its records (decompressed if need
// be), not its header; -1 for each when no record carries one. It is for
// tools (ferry log dump) and status pages, not the hot path.
func BatchTimestamps(b []byte) (first, max int64, err error) {
	h, err := ParseBatch(b)
	if err != nil {
		return noTimestamp, noTimestamp, err
	}
	t, err := timesOf(b, h)
	return t.min, t.max, err
}

// staleTimeIndex reports whether a segment's last time-index entry may come
// from a batch header rather than the records: exactly 0, what librdkafka
// writes as MaxTimestamp when no record has a timestamp, and what indexes
// written before the log took timestamps from the records hold for such
// segments. The index is then rebuilt from the records, once; a real
// timestamp of 0 (1970-01-01T00:00:00Z) only costs that rebuild.
func staleTimeIndex(last indexEntry) bool { return last.maxTs == 0 }

// agedAt is the time by which retention ages a segment (Unix ms) at nowMs:
// the largest record timestamp in it, or, when no record carries one, the
// time of the segment's last write, as Kafka's LogSegment.largestTimestamp
// does with the file's modification time. Unlike Kafka, a largest timestamp
// still in the future is not believed either (the last write stands in
// until the clock reaches it): a record from 2100 would otherwise keep its
// segment, and every later one, for as long as retention.ms after 2100.
// The test is against now, not the write: an edge gateway whose clock ran
// behind when it stored records stamped by correct clocks must not have
// them deleted once its clock is set right.
func agedAt(maxTs, writtenMs, nowMs int64) int64 {
	if maxTs < 0 || maxTs > nowMs {
		return writtenMs
	}
	return maxTs
}

// AgedAt returns the time (Unix ms) by which the log ages the record at
// offset, as retention ages segments (agedAt): the record's own timestamp,
// unless it carries none or one in the future, when the last write to its
// segment stands in (so the age of a record without a timestamp in the
// active segment reads low). It is for "how old is this record" displays
// (the mirror's oldest unshipped record): never 1970 for a record without
// a timestamp, never 2100. offset must be held (ErrOffsetOutOfRange).
func (p *Partition) AgedAt(offset int64) (int64, error) {
	seg, limit, entries, _, start, end, err := p.segmentFor(offset)
	if err != nil {
		return 0, err
	}
	if seg == nil {
		return 0, fmt.Errorf("%w: offset %d, partition %s-%d holds [%d, %d)", ErrOffsetOutOfRange, offset, p.topic, p.id, start, end)
	}
	defer seg.release()
	written := seg.writtenMs.Load()
	pos, h, err := seg.findBatch(entries, offset, limit)
	if err != nil {
		if err == io.EOF {
			err = seg.corruptError(pos, errors.New("offset not found in its segment"))
		}
		return 0, err
	}
	if pos+int64(h.Length) > limit {
		return 0, seg.corruptError(pos, fmt.Errorf("batch of %d bytes runs past the readable end %d", h.Length, limit))
	}
	b := make([]byte, h.Length)
	if _, err := seg.log.ReadAt(b, pos); err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("reading %s: %w", seg.log.Name(), err)
	}
	if err := checkCRC(b, h); err != nil {
		return 0, seg.corruptError(pos, err)
	}
	_, recs, err := DecodeRecords(b)
	if err != nil {
		return 0, seg.corruptError(pos, err)
	}
	ts := int64(noTimestamp)
	for _, r := range recs {
		if r.Offset == offset {
			ts = r.Timestamp
			break
		}
	}
	return agedAt(ts, written, p.now().UnixMilli()), nil
}

// MaxTimestamp returns the offset and timestamp of the first record holding
// the largest timestamp in the partition, or (-1, -1) if no record carries
// one (Kafka's ListOffsets with the max-timestamp spec, -3, KIP-734). It
// takes each segment's running maximum, then looks that timestamp up as
// OffsetForTime does; a record appended meanwhile with a larger timestamp
// does not change the answer, which is still a record at that maximum.
func (p *Partition) MaxTimestamp() (int64, int64, error) {
	p.mu.RLock()
	bases := make([]int64, len(p.segs))
	for i, s := range p.segs {
		bases[i] = s.base
	}
	p.mu.RUnlock()
	most := int64(noTimestamp)
	for _, base := range bases {
		seg, _, _, _, _, _, err := p.segmentFor(base)
		if err != nil {
			return -1, -1, err
		}
		if seg == nil {
			continue // deleted meanwhile, or the empty active segment
		}
		p.mu.RLock() // the active segment's maximum moves under it
		most = max(most, seg.maxTs)
		p.mu.RUnlock()
		seg.release()
	}
	if most < 0 {
		return -1, -1, nil
	}
	return p.OffsetForTime(most)
}
