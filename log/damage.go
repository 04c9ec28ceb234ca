package log

import (
	"fmt"
	"sort"
	"time"
)

// Damage is a corrupt batch a partition cannot serve: found at open in the
// active segment (checkActive), or by a read anywhere. Reads at Offset
// answer ErrCorruptSegment until an operator cuts the partition there
// (`ferry log truncate`, CutAt); the batches before it stay readable.
type Damage struct {
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`   // the first offset the damaged batch holds (the one after the last good batch)
	Segment   string    `json:"segment"`  // the segment file
	Position  int64     `json:"position"` // the damaged batch's byte position in it
	Reason    string    `json:"reason"`
	FoundAt   time.Time `json:"found_at"`
}

// Damage returns the lowest damaged batch found in the partition, if any.
func (p *Partition) Damage() (Damage, bool) {
	d := p.damage.Load()
	if d == nil {
		return Damage{}, false
	}
	return *d, true
}

// Damaged lists every partition's damage, by topic and partition.
func (l *Log) Damaged() []Damage {
	var out []Damage
	for _, t := range l.Topics() {
		for i := int32(0); i < t.Partitions; i++ {
			if p, err := l.Partition(t.Name, i); err == nil {
				if d, ok := p.Damage(); ok {
					out = append(out, d)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out
}

// noteDamage records a damaged batch at pos of seg, holding offset, unless
// damage at or below offset is known already. It reports whether it is
// news, so that the caller logs it once rather than at every read.
func (p *Partition) noteDamage(seg *segment, pos, offset int64, cause error) bool {
	d := &Damage{Topic: p.topic, Partition: p.id, Offset: offset, Segment: seg.path + ".log", Position: pos,
		Reason: cause.Error(), FoundAt: p.now().UTC()}
	for {
		old := p.damage.Load()
		if old != nil && old.Offset <= offset {
			return false
		}
		if p.damage.CompareAndSwap(old, d) {
			return true
		}
	}
}

// clearDamageFrom forgets damage at or past offset, which a cut removed.
func (p *Partition) clearDamageFrom(offset int64) {
	if d := p.damage.Load(); d != nil && d.Offset >= offset {
		p.damage.CompareAndSwap(d, nil)
	}
}

// checkActive verifies every batch of the active segment (framing, CRC-32C,
// dense offsets) at open. Recovery trusts the part of the active segment
// its index covers and scans only the tail, so a batch damaged in the
// middle would otherwise be found only when a consumer reaches it, which
// then stalls there. Damage is recorded (Damage) and logged once, never
// cut: the batches after it were acknowledged, and an operator decides
// (`ferry log truncate`). The cost is one sequential read of the active
// segment, at most segment.bytes; sealed segments are left to `ferry log
// verify` and to their lazy validation on first read.
func (p *Partition) checkActive() {
	s := p.active
	if s.size == 0 {
		return
	}
	sc := newScanner(s.log, 0, s.size)
	expect := s.base
	for {
		pos, h, _, ok := sc.next()
		if !ok {
			if sc.err != nil {
				p.reportDamage(s, sc.pos, expect, sc.err)
			}
			return
		}
		if h.BaseOffset != expect {
			p.reportDamage(s, pos, expect, fmt.Errorf("%w: batch has base offset %d, expected %d", ErrCorruptBatch, h.BaseOffset, expect))
			return
		}
		expect = h.LastOffset() + 1
	}
}

func (p *Partition) reportDamage(s *segment, pos, offset int64, cause error) {
	if p.noteDamage(s, pos, offset, cause) {
		p.logger.Error("corrupt batch: consumers cannot read past it; `ferry log truncate` cuts the partition there (with a backup)",
			"segment", s.path+".log", "position", pos, "offset", offset, "err", cause)
	}
}

// noteReadDamage records the damage a read of a sealed segment ran into:
// load found its first bad batch at corruptAt, whose offset the headers
// before it give (its own may be what is damaged).
func (p *Partition) noteReadDamage(seg *segment, entries []indexEntry, cause error) {
	if seg.corruptAt < 0 {
		return
	}
	if off, ok := seg.offsetAt(entries, seg.corruptAt); ok && p.noteDamage(seg, seg.corruptAt, off, cause) {
		p.logger.Error("corrupt batch on read", "segment", seg.path+".log", "position", seg.corruptAt, "offset", off, "err", cause)
	}
}

// offsetAt is the offset of the batch at position pos of a loaded segment,
// walking the (valid) batch headers from the index entry before it; ok is
// false when they do not lead to pos.
func (s *segment) offsetAt(entries []indexEntry, pos int64) (int64, bool) {
	at, expect := int64(0), s.base
	for _, e := range entries {
		if int64(e.pos) > pos {
			break
		}
		at, expect = int64(e.pos), s.base+int64(e.rel)
	}
	var hb [batchHeaderSize]byte
	for at < pos {
		if _, err := s.log.ReadAt(hb[:], at); err != nil {
			return 0, false
		}
		h, err := parseHeader(hb[:])
		if err != nil || h.BaseOffset != expect || h.Length <= 0 {
			return 0, false
		}
		at += int64(h.Length)
		expect = h.LastOffset() + 1
	}
	return expect, at == pos
}
