package mirror

import (
	"sort"
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

// edgeState is what the receiver remembers of an edge for its status: the
// partitions it announced and where their copies and staged tails live.
type edgeState struct {
	connected bool
	since     time.Time // of the last connection or disconnection
	parts     map[partKey]*flog.Partition
	tails     map[partKey]string // staging topic of each partition
}

// noteEdge records a handshake's edge as connected; its partitions are
// final by then.
func (r *Receiver) noteEdge(e *edgeConn) {
	st := &edgeState{connected: true, since: time.Now(), parts: map[partKey]*flog.Partition{}, tails: map[partKey]string{}}
	for k, p := range e.parts {
		st.parts[k] = p
		st.tails[k] = r.tailTopic(e.edge, k.topic)
	}
	r.mu.Lock()
	r.known[e.edge] = st
	r.mu.Unlock()
}

// noteGone marks an edge disconnected unless a newer connection took over.
func (r *Receiver) noteGone(e *edgeConn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st := r.known[e.edge]; st != nil && r.edges[e.edge] == e.slot {
		st.connected, st.since = false, time.Now()
	}
}

// ReceiverStatus is what the center holds of each edge that connected
// since it started.
type ReceiverStatus struct {
	Edges []EdgeStatus `json:"edges"`
}

// EdgeStatus is one edge at the center.
type EdgeStatus struct {
	Edge       string       `json:"edge"`
	Connected  bool         `json:"connected"`
	Since      time.Time    `json:"since"`
	Partitions []CopyStatus `json:"partitions"`
}

// CopyStatus is the center's copy of one edge partition: how far it is
// contiguous (every offset below ContiguousEnd is there, records or an
// explicit gap), how far durable, and the live tail staged beyond it.
type CopyStatus struct {
	Topic         string `json:"topic"`
	Partition     int32  `json:"partition"`
	CopyTopic     string `json:"copy_topic"`
	StartOffset   int64  `json:"start_offset"`
	ContiguousEnd int64  `json:"contiguous_end"`
	DurableEnd    int64  `json:"durable_end"`
	// StagedTopic, StagedFrom and StagedEnd say where a live tail waits
	// for the backfill (live-tail-first), when one does.
	StagedTopic string `json:"staged_topic,omitempty"`
	StagedFrom  int64  `json:"staged_from,omitempty"`
	StagedEnd   int64  `json:"staged_end,omitempty"`
}

// Status reports every known edge's copies, sorted by edge, topic and
// partition.
func (r *Receiver) Status() ReceiverStatus {
	r.mu.Lock()
	type snap struct {
		edge string
		st   edgeState
	}
	var edges []snap
	for id, st := range r.known {
		edges = append(edges, snap{id, *st})
	}
	r.mu.Unlock()
	sort.Slice(edges, func(i, j int) bool { return edges[i].edge < edges[j].edge })
	out := ReceiverStatus{Edges: []EdgeStatus{}}
	for _, e := range edges {
		es := EdgeStatus{Edge: e.edge, Connected: e.st.connected, Since: e.st.since}
		for k, p := range e.st.parts {
			cs := CopyStatus{Topic: k.topic, Partition: k.partition, CopyTopic: r.centerTopic(e.edge, k.topic),
				StartOffset: p.StartOffset(), ContiguousEnd: p.EndOffset(), DurableEnd: p.DurableOffset()}
			if t, err := r.opts.Log.Partition(e.st.tails[k], k.partition); err == nil && t.Size() > 0 && t.EndOffset() > cs.ContiguousEnd {
				cs.StagedTopic, cs.StagedFrom, cs.StagedEnd = e.st.tails[k], t.StartOffset(), t.EndOffset()
			}
			es.Partitions = append(es.Partitions, cs)
		}
		sort.Slice(es.Partitions, func(i, j int) bool {
			a, b := es.Partitions[i], es.Partitions[j]
			return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
		})
		out.Edges = append(out.Edges, es)
	}
	return out
}
