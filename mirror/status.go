package mirror

import (
	"time"

	flog "ferry/log"
)

// Status is what the mirror of an edge is doing, for operators
// (`ferry mirror status`, the admin API).
type Status struct {
	EdgeID    string     `json:"edge_id"`
	Center    string     `json:"center"`
	LinkUp    bool       `json:"link_up"`
	LastAck   *time.Time `json:"last_ack,omitempty"`
	WireBytes float64    `json:"wire_bytes"`
	RawBytes  float64    `json:"raw_bytes"`
	// Failures counts connections to the center that failed or ended in
	// an error; LastError is the latest, with its reason, when it happened
	// and when the next attempt was due (each is retried after a jittered
	// exponential backoff).
	Failures  int64      `json:"failures"`
	LastError *LinkError `json:"last_error,omitempty"`
	// DroppedUnreported counts the records the disk budget's drop-oldest
	// policy deleted before the center had them and that the center has
	// not yet been told of (a gap), over every partition; each partition's
	// range is in its GapFrom and GapRecords.
	DroppedUnreported int64             `json:"dropped_unreported_records"`
	Partitions        []PartitionStatus `json:"partitions"`
}

// LinkError is a failure of the link to the center.
type LinkError struct {
	Reason  string    `json:"reason"` // dial, tls, refused, ack_timeout, center, protocol, link
	Message string    `json:"message"`
	At      time.Time `json:"at"`
	RetryAt time.Time `json:"retry_at"`
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
	// unshipped record, by its timestamp or, if it has none or one in the
	// future, by its segment's last write (log.Partition.AgedAt).
	BacklogRecords     int64   `json:"backlog_records"`
	BacklogBytes       int64   `json:"backlog_bytes"`
	OldestUnshippedAge float64 `json:"oldest_unshipped_age_seconds,omitempty"`
	// LiveTailFrom is where a live tail shipped ahead of the backfill
	// starts (live-tail-first catch-up), and LiveTailAcked how far the
	// center holds it; 0 when the partition ships in order.
	LiveTailFrom  int64 `json:"live_tail_from,omitempty"`
	LiveTailAcked int64 `json:"live_tail_acked,omitempty"`
	// Error is why shipping stopped at BlockedAt this session: the edge
	// cannot read its own log there (a corrupt segment: see ferry log
	// verify).
	Error     string `json:"error,omitempty"`
	BlockedAt *int64 `json:"blocked_at,omitempty"`
	// GapFrom is the first offset the disk budget dropped (drop-oldest)
	// before the center had it, and GapRecords how many records from there
	// on are gone, up to the log's start: a loss the center has not been
	// told yet (it is, as a gap, when the link is next up). Absent when
	// nothing is pending.
	GapFrom    *int64 `json:"gap_from,omitempty"`
	GapRecords int64  `json:"gap_records,omitempty"`
}

// Status reports the mirror's state now.
func (s *Sender) Status() Status {
	st := Status{EdgeID: s.edge, Center: s.opts.Center, LinkUp: s.state.up.Load(),
		WireBytes: float64(s.state.wireBytes.Load()), RawBytes: float64(s.state.rawBytes.Load())}
	st.Failures = s.state.errs.failures.Load()
	if le := s.state.errs.last.Load(); le != nil {
		cp := *le
		st.LastError = &cp
	}
	if ns := s.state.lastAckNs.Load(); ns > 0 {
		at := time.Unix(0, ns)
		st.LastAck = &at
	}
	now := s.opts.Now()
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
			if b := s.blocked[partKey{t.Name, p}]; b != nil {
				at := b.at
				ps.Error, ps.BlockedAt = b.err.Error(), &at
			}
			lost, pending := s.lost[partKey{t.Name, p}]
			s.mu.Unlock()
			if start := part.StartOffset(); pending && start > lost {
				ps.GapFrom, ps.GapRecords = &lost, start-lost
				st.DroppedUnreported += ps.GapRecords
			}
			from := max(ps.Acked, part.StartOffset())
			ps.BacklogRecords = max(ps.EndOffset-from, 0)
			if ps.BacklogRecords > 0 {
				ps.BacklogBytes = backlogBytes(part, from)
				// By the log's rule, as retention ages it: a record without
				// a timestamp (-1) or with one from the future is as old as
				// its segment's last write, not 56 years or less than 0.
				if at, err := part.AgedAt(from); err == nil {
					ps.OldestUnshippedAge = max(now.Sub(time.UnixMilli(at)).Seconds(), 0)
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
