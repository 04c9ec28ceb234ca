package adminapi

import (
	"net/http"
	"time"

	flog "ferry/log"
)

// StatusView is GET /api/status: the node at a glance.
type StatusView struct {
	Mode          string    `json:"mode"` // edge or full
	Version       string    `json:"version"`
	Ready         bool      `json:"ready"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds int64     `json:"uptime_seconds"`
	DataDir       string    `json:"data_dir"`
	// AdminAuth says whether the admin API needs a bearer token.
	AdminAuth bool          `json:"admin_auth"`
	Listeners ListenersView `json:"listeners"`

	Topics     int   `json:"topics"`
	Partitions int   `json:"partitions"`
	Records    int64 `json:"records"`
	// DiskBytes is what the log's segments take; DiskBudgetBytes the
	// --max-disk-bytes budget (0: none); AppendsBlocked is true while the
	// block policy refuses appends at the budget.
	DiskBytes       int64 `json:"disk_bytes"`
	DiskBudgetBytes int64 `json:"disk_budget_bytes"`
	AppendsBlocked  bool  `json:"appends_blocked"`

	// Damaged lists the partitions holding a corrupt batch consumers
	// cannot read past (log.Damage); empty when none. Any makes the node
	// not ready (/readyz).
	Damaged []DamageView `json:"damaged"`

	// Groups counts consumer groups (with members or committed offsets).
	Groups int `json:"groups"`

	// Auth is the MQTT authentication mode (none, registry; "" without
	// MQTT). DevicesOnline counts the MQTT clients connected now (under
	// --auth registry, every one is a registered device);
	// DevicesRegistered counts the registry's devices.
	Auth              string `json:"auth"`
	DevicesOnline     int64  `json:"devices_online"`
	DevicesRegistered int    `json:"devices_registered"`

	// Mirror is the edge's link to its center; null when the node mirrors
	// nothing.
	Mirror *MirrorSummary `json:"mirror"`
	// Fleet is a center's view of the edges that ship to it; null on a
	// node without a mirror receiver.
	Fleet *FleetSummary `json:"fleet"`
}

// FleetSummary sums up a center's edges, one line each (GET /api/mirror
// has each one's copies, partition by partition).
type FleetSummary struct {
	Edges     int `json:"edges"`
	Connected int `json:"connected"`
	// LagRecords sums the copy lag of the edges that report it.
	LagRecords int64         `json:"lag_records"`
	Members    []EdgeSummary `json:"members"`
}

// EdgeSummary is one edge at the center (mirror.EdgeStatus, without its
// partitions).
type EdgeSummary struct {
	Edge             string     `json:"edge"`
	Connected        bool       `json:"connected"`
	Since            time.Time  `json:"since"`
	LastChunk        *time.Time `json:"last_chunk,omitempty"`
	RecordsPerSecond float64    `json:"records_per_second"`
	LagKnown         bool       `json:"lag_known"`
	LagRecords       int64      `json:"lag_records"`
	LagSeconds       float64    `json:"lag_seconds"`
	GapRecords       int64      `json:"gap_records"`
	Errors           int64      `json:"errors"`
}

// DamageView is a damaged partition in GET /api/status and /readyz: the
// offset of the first batch that cannot be read, where it is, why, and
// since when. `ferry log truncate` cuts the partition there.
type DamageView struct {
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Segment   string    `json:"segment"`
	Position  int64     `json:"position"`
	Reason    string    `json:"reason"`
	FoundAt   time.Time `json:"found_at"`
}

// damagedViews lists l's damaged partitions (never nil, for JSON's []).
func damagedViews(l *flog.Log) []DamageView {
	out := []DamageView{}
	if l == nil {
		return out
	}
	for _, d := range l.Damaged() {
		out = append(out, damageView(d))
	}
	return out
}

func damageView(d flog.Damage) DamageView {
	return DamageView{Topic: d.Topic, Partition: d.Partition, Offset: d.Offset, Segment: d.Segment,
		Position: d.Position, Reason: d.Reason, FoundAt: d.FoundAt}
}

// ListenersView holds the bound addresses of the node's listeners; ""
// (or empty) for those it does not run.
type ListenersView struct {
	Kafka         string   `json:"kafka"`
	MQTT          []string `json:"mqtt"`
	MQTTWebSocket string   `json:"mqtt_ws,omitempty"`
	Admin         string   `json:"admin"`
	Mirror        string   `json:"mirror"` // the mirror receiver (ferry full)
}

// MirrorSummary sums up the mirror sender's status (GET /api/mirror has
// it per partition).
type MirrorSummary struct {
	EdgeID         string     `json:"edge_id"`
	Center         string     `json:"center"`
	LinkUp         bool       `json:"link_up"`
	LastAck        *time.Time `json:"last_ack,omitempty"`
	BacklogRecords int64      `json:"backlog_records"`
	BacklogBytes   int64      `json:"backlog_bytes"`
}

// Status reports the node now.
func Status(b Backend) StatusView {
	info := b.Node()
	l := b.Log()
	mode := info.Mode
	if mode == "" {
		mode = "edge"
	}
	max, blocked := l.DiskBudget()
	damaged := damagedViews(l)
	st := StatusView{
		Mode: mode, Version: info.Version, Ready: info.Ready && len(damaged) == 0, StartedAt: info.StartedAt.UTC(),
		UptimeSeconds: int64(time.Since(info.StartedAt).Seconds()), DataDir: info.DataDir, AdminAuth: info.AdminAuth,
		Listeners: info.Listeners, DiskBytes: l.Size(), DiskBudgetBytes: max, AppendsBlocked: blocked,
		Auth: info.Auth, DevicesOnline: info.DevicesOnline, Damaged: damaged,
	}
	if st.Version == "" {
		st.Version = "dev"
	}
	if st.Listeners.MQTT == nil {
		st.Listeners.MQTT = []string{}
	}
	for _, t := range l.Topics() {
		st.Topics++
		st.Partitions += int(t.Partitions)
		for i := int32(0); i < t.Partitions; i++ {
			if p, err := l.Partition(t.Name, i); err == nil {
				st.Records += p.EndOffset() - p.StartOffset()
			}
		}
	}
	if g := b.Groups(); g != nil {
		st.Groups = len(g.List())
	}
	if reg := b.Devices(); reg != nil {
		if ds, err := reg.List(); err == nil {
			st.DevicesRegistered = len(ds)
		}
	}
	if ms, ok := b.MirrorSender(); ok {
		m := &MirrorSummary{EdgeID: ms.EdgeID, Center: ms.Center, LinkUp: ms.LinkUp, LastAck: ms.LastAck}
		for _, p := range ms.Partitions {
			m.BacklogRecords += p.BacklogRecords
			m.BacklogBytes += p.BacklogBytes
		}
		st.Mirror = m
	}
	if rs, ok := b.MirrorReceiver(); ok {
		f := &FleetSummary{Members: []EdgeSummary{}}
		for _, e := range rs.Edges {
			f.Edges++
			if e.Connected {
				f.Connected++
			}
			f.LagRecords += e.LagRecords
			f.Members = append(f.Members, EdgeSummary{Edge: e.Edge, Connected: e.Connected, Since: e.Since, LastChunk: e.LastChunk,
				RecordsPerSecond: e.RecordsPerSecond, LagKnown: e.LagKnown, LagRecords: e.LagRecords, LagSeconds: e.LagSeconds,
				GapRecords: e.GapRecords, Errors: e.Errors})
		}
		st.Fleet = f
	}
	return st
}

func (s *server) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Status(s.b))
}
