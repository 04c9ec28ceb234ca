package mirror

import (
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"ferry/mirror/wire"
)

// The center's view of its fleet: what the receiver remembers of every
// edge that authenticated, for ReceiverStatus (GET /api/mirror, ferry
// status, the status page) and for the metrics labelled by edge, which are
// derived from the same state at scrape time. An edge gone for longer than
// ReceiverOptions.EdgeRetention is forgotten, its series with it, so the
// label's values stay bounded by the edges seen in that time.

// DefaultEdgeRetention is how long the center remembers an edge that has
// disconnected (ferry full --mirror-edge-retention).
const DefaultEdgeRetention = 24 * time.Hour

// rateWindow is the shortest interval an edge's records per second are
// measured over.
const rateWindow = 10 * time.Second

// edgeState is what the receiver remembers of an edge. The receiver's mu
// guards the map holding it; its own mu guards its fields.
type edgeState struct {
	mu        sync.Mutex
	connected bool
	since     time.Time // of the last connection or disconnection
	version   uint16    // the protocol version of its last hello
	parts     map[partKey]Copy
	tails     map[partKey]string    // staging topic of each partition
	heads     map[partKey]wire.Head // the edge's ends, as last reported
	headsAt   time.Time
	lastSeen  time.Time // any frame
	lastChunk time.Time
	// Since the center started (or since it last forgot the edge).
	records, wireBytes, gapRecords, errors int64
	lastErr                                *EdgeError
	// The rate: records at rateAt, and the rate measured then.
	rateAt   time.Time
	rateBase int64
	rate     float64
}

// EdgeError is why the center last ended an edge's connection: a refusal
// (its reason as in ferry_mirror_receiver_rejected_total) or the center's
// own failure storing what it sent.
type EdgeError struct {
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

func (r *Receiver) now() time.Time {
	if r.opts.Now != nil {
		return r.opts.Now()
	}
	return time.Now()
}

// state returns the edge's state, made if it is new; r.mu is held.
func (r *Receiver) stateLocked(edge string) *edgeState {
	st := r.known[edge]
	if st == nil {
		st = &edgeState{}
		r.known[edge] = st
	}
	return st
}

// expireLocked forgets the edges disconnected for longer than the
// retention; r.mu is held.
func (r *Receiver) expireLocked(now time.Time) {
	for id, st := range r.known {
		st.mu.Lock()
		gone := !st.connected && now.Sub(st.since) > r.opts.EdgeRetention
		st.mu.Unlock()
		if gone {
			delete(r.known, id)
		}
	}
}

// noteEdge records a handshake's edge as connected; its partitions are
// final by then. Its counters carry on from its earlier connections.
func (r *Receiver) noteEdge(e *edgeConn, version uint16) {
	now := r.now()
	r.mu.Lock()
	r.expireLocked(now)
	st := r.stateLocked(e.edge)
	r.mu.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.connected, st.since, st.version, st.lastSeen = true, now, version, now
	st.parts, st.tails, st.heads, st.headsAt = map[partKey]Copy{}, map[partKey]string{}, map[partKey]wire.Head{}, time.Time{}
	for k, p := range e.parts {
		st.parts[k] = p
		st.tails[k] = r.tailTopic(e.edge, k.topic)
	}
	e.st = st
}

// noteGone marks an edge disconnected unless a newer connection took over.
func (r *Receiver) noteGone(e *edgeConn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st := r.known[e.edge]; st != nil && r.edges[e.edge] == e.slot {
		st.mu.Lock()
		st.connected, st.since = false, r.now()
		st.mu.Unlock()
	}
}

// noteError records why the center ended an authenticated edge's
// connection.
func (r *Receiver) noteError(edge, reason string, err error) {
	now := r.now()
	r.mu.Lock()
	st := r.stateLocked(edge)
	r.mu.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.since.IsZero() {
		st.since = now // refused before it ever connected
	}
	st.errors++
	st.lastErr = &EdgeError{Reason: reason, Message: err.Error(), At: now}
}

// seen notes a frame from the edge.
func (st *edgeState) seen(now time.Time) {
	st.mu.Lock()
	st.lastSeen = now
	st.mu.Unlock()
}

// noteChunk counts a chunk stored: records new to the center, wire bytes.
func (st *edgeState) noteChunk(now time.Time, records int64, wireBytes int) {
	st.mu.Lock()
	st.lastChunk = now
	st.records += max(records, 0)
	st.wireBytes += int64(wireBytes)
	st.mu.Unlock()
}

func (st *edgeState) noteGap(records int64) {
	st.mu.Lock()
	st.gapRecords += records
	st.mu.Unlock()
}

// noteHeads keeps the ends the edge reported; every partition named must
// be one it announced.
func (e *edgeConn) noteHeads(h *wire.Heads, now time.Time) error {
	for _, p := range h.Parts {
		if _, ok := e.parts[partKey{p.Topic, p.Partition}]; !ok {
			return rejectf("heads for %s-%d, which the edge did not announce", p.Topic, p.Partition)
		}
	}
	e.st.mu.Lock()
	defer e.st.mu.Unlock()
	for _, p := range h.Parts {
		e.st.heads[partKey{p.Topic, p.Partition}] = p
	}
	e.st.headsAt = now
	return nil
}

// ReceiverStatus is what the center holds of each edge it remembers: those
// connected and those gone for less than the retention.
type ReceiverStatus struct {
	Edges []EdgeStatus `json:"edges"`
	// RetentionSeconds is how long an edge that disconnected is kept.
	RetentionSeconds float64 `json:"retention_seconds"`
}

// EdgeStatus is one edge at the center. Counters (Records, WireBytes,
// GapRecords, Errors) run from when the center started, or last forgot
// the edge.
type EdgeStatus struct {
	Edge      string    `json:"edge"`
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since"`
	// ProtocolVersion is the mirror protocol its last hello spoke.
	ProtocolVersion int        `json:"protocol_version"`
	LastSeen        *time.Time `json:"last_seen,omitempty"`
	LastChunk       *time.Time `json:"last_chunk,omitempty"`
	// Records counts the offsets stored in its copies; RecordsPerSecond
	// is their rate over the last ten seconds or more.
	Records          int64      `json:"records"`
	WireBytes        int64      `json:"wire_bytes"`
	RecordsPerSecond float64    `json:"records_per_second"`
	GapRecords       int64      `json:"gap_records"`
	Errors           int64      `json:"errors"`
	LastError        *EdgeError `json:"last_error,omitempty"`
	// LagKnown says the edge reports where its log ends (protocol 4, every
	// few seconds; HeadsAt is the last report). LagRecords is then what
	// its copies lack of that, summed over partitions, and LagSeconds the
	// age of the oldest record missing (the largest over partitions): as
	// of the last report, so an edge cut off keeps the lag it had, aging.
	LagKnown   bool              `json:"lag_known"`
	HeadsAt    *time.Time        `json:"heads_at,omitempty"`
	LagRecords int64             `json:"lag_records"`
	LagSeconds float64           `json:"lag_seconds"`
	Topics     []TopicCopyStatus `json:"topics"`
	Partitions []CopyStatus      `json:"partitions"`
}

// TopicCopyStatus is the center's copy of one edge topic, its partitions
// summed.
type TopicCopyStatus struct {
	Topic      string  `json:"topic"`
	CopyTopic  string  `json:"copy_topic"`
	Partitions int     `json:"partitions"`
	LagRecords int64   `json:"lag_records"`
	LagSeconds float64 `json:"lag_seconds"`
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
	// EdgeEnd is where the edge's partition ended at its last report,
	// LagRecords and LagSeconds how far the copy is behind it; absent when
	// the edge does not report (protocol 3).
	EdgeEnd    *int64   `json:"edge_end,omitempty"`
	LagRecords *int64   `json:"lag_records,omitempty"`
	LagSeconds *float64 `json:"lag_seconds,omitempty"`
	// StagedTopic, StagedFrom and StagedEnd say where a live tail waits
	// for the backfill (live-tail-first), when one does.
	StagedTopic string `json:"staged_topic,omitempty"`
	StagedFrom  int64  `json:"staged_from,omitempty"`
	StagedEnd   int64  `json:"staged_end,omitempty"`
}

// Status reports every edge remembered, sorted by edge, topic and
// partition.
func (r *Receiver) Status() ReceiverStatus {
	now := r.now()
	r.mu.Lock()
	r.expireLocked(now)
	ids := make([]string, 0, len(r.known))
	states := map[string]*edgeState{}
	for id, st := range r.known {
		ids = append(ids, id)
		states[id] = st
	}
	r.mu.Unlock()
	sort.Strings(ids)
	out := ReceiverStatus{Edges: []EdgeStatus{}, RetentionSeconds: r.opts.EdgeRetention.Seconds()}
	for _, id := range ids {
		out.Edges = append(out.Edges, r.edgeStatus(id, states[id], now))
	}
	return out
}

func (r *Receiver) edgeStatus(id string, st *edgeState, now time.Time) EdgeStatus {
	st.mu.Lock()
	defer st.mu.Unlock()
	es := EdgeStatus{Edge: id, Connected: st.connected, Since: st.since, ProtocolVersion: int(st.version),
		Records: st.records, WireBytes: st.wireBytes, GapRecords: st.gapRecords, Errors: st.errors,
		Topics: []TopicCopyStatus{}, Partitions: []CopyStatus{}}
	at := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	es.LastSeen, es.LastChunk, es.HeadsAt = at(st.lastSeen), at(st.lastChunk), at(st.headsAt)
	if st.lastErr != nil {
		cp := *st.lastErr
		es.LastError = &cp
	}
	switch {
	case st.rateAt.IsZero():
		st.rateAt, st.rateBase = now, st.records
	case now.Sub(st.rateAt) >= rateWindow:
		st.rate = float64(st.records-st.rateBase) / now.Sub(st.rateAt).Seconds()
		st.rateAt, st.rateBase = now, st.records
	}
	es.RecordsPerSecond = st.rate
	es.LagKnown = !st.headsAt.IsZero()
	topics := map[string]*TopicCopyStatus{}
	for k, p := range st.parts {
		cs := CopyStatus{Topic: k.topic, Partition: k.partition, CopyTopic: r.centerTopic(id, k.topic),
			StartOffset: p.StartOffset(), ContiguousEnd: p.EndOffset(), DurableEnd: p.DurableOffset()}
		if t, err := r.opts.Log.Partition(st.tails[k], k.partition); err == nil && t.Size() > 0 && t.EndOffset() > cs.ContiguousEnd {
			cs.StagedTopic, cs.StagedFrom, cs.StagedEnd = st.tails[k], t.StartOffset(), t.EndOffset()
		}
		tc := topics[k.topic]
		if tc == nil {
			tc = &TopicCopyStatus{Topic: k.topic, CopyTopic: cs.CopyTopic}
			topics[k.topic] = tc
		}
		tc.Partitions++
		if h, ok := st.heads[k]; ok {
			end, lag, age := h.End, max(h.End-cs.ContiguousEnd, 0), 0.0
			if lag > 0 {
				since := st.headsAt
				if h.Oldest >= 0 {
					since = time.UnixMilli(h.Oldest)
				}
				age = max(now.Sub(since).Seconds(), 0)
			}
			cs.EdgeEnd, cs.LagRecords, cs.LagSeconds = &end, &lag, &age
			tc.LagRecords += lag
			tc.LagSeconds = max(tc.LagSeconds, age)
			es.LagRecords += lag
			es.LagSeconds = max(es.LagSeconds, age)
		}
		es.Partitions = append(es.Partitions, cs)
	}
	sort.Slice(es.Partitions, func(i, j int) bool {
		a, b := es.Partitions[i], es.Partitions[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	for _, tc := range topics {
		es.Topics = append(es.Topics, *tc)
	}
	sort.Slice(es.Topics, func(i, j int) bool { return es.Topics[i].Topic < es.Topics[j].Topic })
	return es
}

// fleetCollector exposes the fleet by edge, read from Status at scrape
// time: an edge forgotten is absent from the next scrape.
type fleetCollector struct{ r *Receiver }

var (
	descEdgeConnected = prometheus.NewDesc("ferry_mirror_receiver_edge_connected",
		"1 while the edge is connected to this center, 0 once it has gone (kept for --mirror-edge-retention).", []string{"edge"}, nil)
	descEdgeLastSeen = prometheus.NewDesc("ferry_mirror_receiver_edge_last_seen_timestamp_seconds",
		"When the edge last sent anything (a chunk, a gap, a ping, its ends).", []string{"edge"}, nil)
	descEdgeLastChunk = prometheus.NewDesc("ferry_mirror_receiver_edge_last_chunk_timestamp_seconds",
		"When the center last stored a chunk of the edge's (absent until one).", []string{"edge"}, nil)
	descEdgeRecords = prometheus.NewDesc("ferry_mirror_receiver_edge_records_total",
		"Offsets of the edge's stored in its copies.", []string{"edge"}, nil)
	descEdgeWireBytes = prometheus.NewDesc("ferry_mirror_receiver_edge_wire_bytes_total",
		"Chunk bytes received from the edge (compressed).", []string{"edge"}, nil)
	descEdgeGapRecords = prometheus.NewDesc("ferry_mirror_receiver_gap_records_total",
		"Offsets edges dropped before shipping them (their disk budget's drop-oldest policy, or a DeleteRecords request), recorded as gaps in the copies.", []string{"edge"}, nil)
	descEdgeErrors = prometheus.NewDesc("ferry_mirror_receiver_edge_errors_total",
		"Connections of the edge the center ended after it authenticated: a refusal of what it sent, or the center's failure storing it.", []string{"edge"}, nil)
	descEdgeLagRecords = prometheus.NewDesc("ferry_mirror_receiver_edge_lag_records",
		"Records of the edge's topic its copy lacks, as of the edge's last report of its ends (edges of protocol 4).", []string{"edge", "topic"}, nil)
	descEdgeLagSeconds = prometheus.NewDesc("ferry_mirror_receiver_edge_lag_seconds",
		"Age of the oldest record of the edge's topic its copy lacks (0: none), as of the edge's last report.", []string{"edge", "topic"}, nil)
)

func (c fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEdgeConnected, descEdgeLastSeen, descEdgeLastChunk, descEdgeRecords, descEdgeWireBytes,
		descEdgeGapRecords, descEdgeErrors, descEdgeLagRecords, descEdgeLagSeconds} {
		ch <- d
	}
}

func (c fleetCollector) Collect(ch chan<- prometheus.Metric) {
	unix := func(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
	for _, e := range c.r.Status().Edges {
		connected := 0.0
		if e.Connected {
			connected = 1
		}
		ch <- prometheus.MustNewConstMetric(descEdgeConnected, prometheus.GaugeValue, connected, e.Edge)
		if e.LastSeen != nil {
			ch <- prometheus.MustNewConstMetric(descEdgeLastSeen, prometheus.GaugeValue, unix(*e.LastSeen), e.Edge)
		}
		if e.LastChunk != nil {
			ch <- prometheus.MustNewConstMetric(descEdgeLastChunk, prometheus.GaugeValue, unix(*e.LastChunk), e.Edge)
		}
		ch <- prometheus.MustNewConstMetric(descEdgeRecords, prometheus.CounterValue, float64(e.Records), e.Edge)
		ch <- prometheus.MustNewConstMetric(descEdgeWireBytes, prometheus.CounterValue, float64(e.WireBytes), e.Edge)
		ch <- prometheus.MustNewConstMetric(descEdgeGapRecords, prometheus.CounterValue, float64(e.GapRecords), e.Edge)
		ch <- prometheus.MustNewConstMetric(descEdgeErrors, prometheus.CounterValue, float64(e.Errors), e.Edge)
		if !e.LagKnown {
			continue
		}
		for _, t := range e.Topics {
			ch <- prometheus.MustNewConstMetric(descEdgeLagRecords, prometheus.GaugeValue, float64(t.LagRecords), e.Edge, t.Topic)
			ch <- prometheus.MustNewConstMetric(descEdgeLagSeconds, prometheus.GaugeValue, t.LagSeconds, e.Edge, t.Topic)
		}
	}
}
