package adminapi

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"

	"ferry/ingest/kafka"
	flog "ferry/log"
)

// GroupSummary is one line of GET /api/groups.
type GroupSummary struct {
	Group        string `json:"group"`
	State        string `json:"state"`
	ProtocolType string `json:"protocol_type"`
	Members      int    `json:"members"`
	// Lag sums, over the partitions the group has committed offsets for,
	// how far the partition's end is past the committed offset.
	Lag int64 `json:"lag"`
}

// GroupView is GET /api/groups/{id}: the coordinator's view of the group
// and, per partition of the topics it commits or is assigned, its
// committed offset, the partition's end and the lag.
type GroupView struct {
	kafka.GroupInfo
	Offsets []GroupOffset `json:"offsets"`
	Lag     int64         `json:"lag"`
}

// GroupOffset is one partition of a group. CommittedOffset and Lag are
// null where the group has committed nothing (as Kafka's tools show "-").
type GroupOffset struct {
	Topic           string `json:"topic"`
	Partition       int32  `json:"partition"`
	CommittedOffset *int64 `json:"committed_offset"`
	EndOffset       int64  `json:"end_offset"`
	Lag             *int64 `json:"lag"`
	// Member is the member assigned the partition, if any.
	Member string `json:"member,omitempty"`
}

// ResetOffsetsRequest is the body of POST /api/groups/{id}/reset-offsets.
type ResetOffsetsRequest struct {
	Topic string `json:"topic"`
	// To is earliest, latest, offset:N (clamped into the partition's
	// range, as Kafka does) or timestamp:MS (the first record at or after
	// MS; the end where there is none).
	To string `json:"to"`
	// Partitions limits the reset to these; empty: every partition.
	Partitions []int32 `json:"partitions,omitempty"`
	// DryRun answers what would be committed without committing it.
	DryRun bool `json:"dry_run,omitempty"`
}

// ResetOffsetsResult is the answer to a reset: per partition the offset
// committed before (null: none) and the new one.
type ResetOffsetsResult struct {
	Group      string             `json:"group"`
	Topic      string             `json:"topic"`
	DryRun     bool               `json:"dry_run"`
	Partitions []ResetOffsetsItem `json:"partitions"`
}

// ResetOffsetsItem is one partition of a reset.
type ResetOffsetsItem struct {
	Partition int32  `json:"partition"`
	Previous  *int64 `json:"previous"`
	Offset    int64  `json:"offset"`
}

var errNoGroups = requestError{http.StatusNotFound, "this node has no consumer groups (its Kafka listener is off)"}

func (s *server) registerGroupsAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/groups", func(w http.ResponseWriter, r *http.Request) {
		groups := s.b.Groups()
		if groups == nil {
			writeErr(w, errNoGroups)
			return
		}
		out := []GroupSummary{}
		for _, g := range groups.List() {
			v, err := groupView(groups, s.b.Log(), g)
			if err != nil {
				writeErr(w, err)
				return
			}
			out = append(out, GroupSummary{Group: g.Group, State: g.State, ProtocolType: g.ProtocolType, Members: len(g.Members), Lag: v.Lag})
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /api/groups/{id}", func(w http.ResponseWriter, r *http.Request) {
		groups := s.b.Groups()
		if groups == nil {
			writeErr(w, errNoGroups)
			return
		}
		g, err := groups.Group(r.PathValue("id"))
		if err != nil {
			writeErr(w, err)
			return
		}
		v, err := groupView(groups, s.b.Log(), g)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	})
	mux.HandleFunc("DELETE /api/groups/{id}", func(w http.ResponseWriter, r *http.Request) {
		groups := s.b.Groups()
		if groups == nil {
			writeErr(w, errNoGroups)
			return
		}
		if err := groups.Delete(r.PathValue("id")); err != nil {
			writeErr(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /api/groups/{id}/reset-offsets", func(w http.ResponseWriter, r *http.Request) {
		groups := s.b.Groups()
		if groups == nil {
			writeErr(w, errNoGroups)
			return
		}
		var req ResetOffsetsRequest
		if err := decodeBody(r, &req); err != nil {
			writeErr(w, err)
			return
		}
		res, err := resetOffsets(groups, s.b.Log(), r.PathValue("id"), req)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
}

// groupView joins the coordinator's view of a group with its committed
// offsets and the log's end offsets.
func groupView(groups Groups, l *flog.Log, g kafka.GroupInfo) (GroupView, error) {
	committed, err := groups.CommittedOffsets(g.Group)
	if err != nil {
		return GroupView{}, err
	}
	type tp struct {
		topic string
		part  int32
	}
	owner := map[tp]string{}
	for _, m := range g.Members {
		for t, ps := range m.Assignment {
			for _, p := range ps {
				owner[tp{t, p}] = m.ID
			}
		}
	}
	parts := map[tp]bool{}
	for k := range owner {
		parts[k] = true
	}
	for t, ps := range committed {
		for p := range ps {
			parts[tp{t, p}] = true
		}
	}
	keys := make([]tp, 0, len(parts))
	for k := range parts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].topic != keys[j].topic {
			return keys[i].topic < keys[j].topic
		}
		return keys[i].part < keys[j].part
	})
	v := GroupView{GroupInfo: g, Offsets: make([]GroupOffset, 0, len(keys))}
	for _, k := range keys {
		o := GroupOffset{Topic: k.topic, Partition: k.part, EndOffset: -1, Member: owner[k]}
		if p, err := l.Partition(k.topic, k.part); err == nil {
			o.EndOffset = p.EndOffset()
		}
		if c, ok := committed[k.topic][k.part]; ok {
			o.CommittedOffset = &c
			if o.EndOffset >= 0 {
				lag := max(o.EndOffset-c, 0)
				o.Lag = &lag
				v.Lag += lag
			}
		}
		v.Offsets = append(v.Offsets, o)
	}
	return v, nil
}

// resetOffsets works out the offsets a reset asks for and has the
// coordinator commit them (it refuses while the group has members).
func resetOffsets(groups Groups, l *flog.Log, group string, req ResetOffsetsRequest) (ResetOffsetsResult, error) {
	res := ResetOffsetsResult{Group: group, Topic: req.Topic, DryRun: req.DryRun, Partitions: []ResetOffsetsItem{}}
	if req.Topic == "" {
		return res, badRequest(`reset-offsets needs a "topic"`)
	}
	to, err := parseResetTarget(req.To)
	if err != nil {
		return res, err
	}
	count, err := l.PartitionCount(req.Topic)
	if err != nil {
		return res, err
	}
	parts := slices.Clone(req.Partitions)
	if len(parts) == 0 {
		for p := range count {
			parts = append(parts, p)
		}
	}
	slices.Sort(parts)
	parts = slices.Compact(parts)
	committed, err := groups.CommittedOffsets(group)
	if err != nil {
		return res, err
	}
	offsets := map[int32]int64{}
	for _, p := range parts {
		part, err := l.Partition(req.Topic, p)
		if err != nil {
			return res, err
		}
		off, err := to.offset(part)
		if err != nil {
			return res, err
		}
		item := ResetOffsetsItem{Partition: p, Offset: off}
		if c, ok := committed[req.Topic][p]; ok {
			item.Previous = &c
		}
		offsets[p] = off
		res.Partitions = append(res.Partitions, item)
	}
	if req.DryRun {
		if g, err := groups.Group(group); err == nil && len(g.Members) > 0 {
			return res, fmt.Errorf("%w (group %q has %d)", kafka.ErrGroupNotEmpty, group, len(g.Members))
		}
		return res, nil
	}
	return res, groups.ResetOffsets(group, req.Topic, offsets)
}

// resetTarget is a parsed "to" of a reset.
type resetTarget struct {
	kind string // earliest, latest, offset, timestamp
	n    int64
}

func parseResetTarget(s string) (resetTarget, error) {
	switch s {
	case "earliest", "latest":
		return resetTarget{kind: s}, nil
	}
	kind, num, ok := strings.Cut(s, ":")
	if ok && (kind == "offset" || kind == "timestamp") {
		if v, err := strconv.ParseInt(num, 10, 64); err == nil && v >= 0 {
			return resetTarget{kind: kind, n: v}, nil
		}
	}
	return resetTarget{}, badRequest(`"to" %q: want earliest, latest, offset:N or timestamp:MS`, s)
}

func (t resetTarget) offset(p *flog.Partition) (int64, error) {
	start, end := p.StartOffset(), p.EndOffset()
	switch t.kind {
	case "earliest":
		return start, nil
	case "latest":
		return end, nil
	case "offset":
		return min(max(t.n, start), end), nil
	}
	off, _, err := p.OffsetForTime(t.n)
	if err != nil {
		return 0, err
	}
	if off < 0 {
		return end, nil
	}
	return max(off, start), nil
}
