package mirror

import (
	"time"

	flog "ferry/log"
)

// Status is what the mirror of an edge is doing, for operators
// (`ferry mirror status`, the admin API).
type Status struct {
	EdgeID     string            `json:"edge_id"`
	Center     string            `json:"center"`
	LinkUp     bool              `json:"link_up"`
	LastAck    *time.Time        `json:"last_ack,omitempty"`
	WireBytes  float64           `json:"wire_bytes"`
	RawBytes   float64           `json:"raw_bytes"`
	Partitions []PartitionStatus `json:"partitions"`
}

// PartitionStatus is one mirrored partition: where the edge's log ends,
// how far the center has acknowledged, and what is still to ship.
type PartitionStatus struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	EndOffset int64  `json:"end_offset"`
	Acked     int64  `json:"acked"`
	// BacklogRecords and BacklogBytes are what the center has not
	// acknowledged; bytes are counted in whole segments past the one
	// holding the first unshipped record, plus that one from its start
	// (an upper bound). OldestUnshippedAge is the age of the first
	// unshipped record's batch.
	BacklogRecords     int64   `json:"backlog_records"`
	BacklogBytes       int64   `json:"backlog_bytes"`
	OldestUnshippedAge float64 `json:"oldest_unshipped_age_seconds,omitempty"`
	// LiveTailFrom is where a live tail shipped ahead of the backfill
	// starts (live-tail-first catch-up), and LiveTailAcked how far the
	// center holds it; 0 when the partition ships in order.
	LiveTailFrom  int64 `json:"live_tail_from,omitempty"`
	LiveTailAcked int64 `json:"live_tail_acked,omitempty"`
}

// Status reports the mirror's state now.
func (s *Sender) Status() Status {
	st := Status{EdgeID: s.edge, Center: s.opts.Center, LinkUp: s.state.up.Load(),
		WireBytes: float64(s.state.wireBytes.Load()), RawBytes: float64(s.state.rawBytes.Load())}
	if ns := s.state.lastAckNs.Load(); ns > 0 {
		at := time.Unix(0, ns)
		st.LastAck = &at
	}
	now := time.Now()
	for _, t := range s.opts.Log.Topics() {
		if !s.mirrored(t.Name) {
			continue
		}
		for p := int32(0); p < t.Partitions; p++ {
			part, err := s.opts.Log.Partition(t.Name, p)
			if err != nil {
				continue
			}
			ps := PartitionStatus{Topic: t.Name, Partition: p, EndOffset: part.EndOffset(), Acked: s.Acked(t.Name, p)}
			s.mu.Lock()
			if sp := s.splits[partKey{t.Name, p}]; sp != nil {
				ps.LiveTailFrom, ps.LiveTailAcked = sp.at, sp.tailAcked
			}
			s.mu.Unlock()
			from := max(ps.Acked, part.StartOffset())
			ps.BacklogRecords = max(ps.EndOffset-from, 0)
			if ps.BacklogRecords > 0 {
				ps.BacklogBytes = backlogBytes(part, from)
				if rr, err := part.Read(from, 1, nil); err == nil {
					if h, err := flog.ParseBatch(rr.Data); err == nil {
						ps.OldestUnshippedAge = now.Sub(time.UnixMilli(h.FirstTimestamp)).Seconds()
					}
				}
			}
			st.Partitions = append(st.Partitions, ps)
		}
	}
	return st
}

// backlogBytes bounds the bytes of a partition from offset from on: whole
// segments past the one holding it, plus that one from its start.
func backlogBytes(part *flog.Partition, from int64) int64 {
	var n int64
	segs := part.Segments()
	for i, sg := range segs {
		if i+1 < len(segs) && segs[i+1].BaseOffset <= from {
			continue // wholly before from
		}
		n += sg.Size
	}
	return n
}
