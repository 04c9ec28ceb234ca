package adminapi

import (
	"fmt"
	"net/http"
	"strings"

	flog "ferry/log"
)

// TopicView is a topic as the admin API and `ferry topics` show it, for a
// running node and a stopped node's data directory alike.
type TopicView struct {
	Name string `json:"name"`
	ID   string `json:"id"`
	// Internal topics' names start with "__" (presence, mirror staging).
	Internal   bool            `json:"internal"`
	Partitions []PartitionView `json:"partitions"`
	// Records is the sum over partitions of end minus start offset;
	// SizeBytes the sum of their segment files.
	Records   int64 `json:"records"`
	SizeBytes int64 `json:"size_bytes"`
	// Configs holds the keys the topic sets itself; the others take the
	// node's defaults.
	Configs map[string]string `json:"configs"`
	// EffectiveConfigs is every key with its value and where it comes
	// from; only in a single topic's description.
	EffectiveConfigs map[string]ConfigValue `json:"effective_configs,omitempty"`
}

// PartitionView is one partition: its offsets and size on disk.
type PartitionView struct {
	Partition     int32 `json:"partition"`
	StartOffset   int64 `json:"start_offset"`
	EndOffset     int64 `json:"end_offset"`
	DurableOffset int64 `json:"durable_offset"`
	SizeBytes     int64 `json:"size_bytes"`
	Segments      int   `json:"segments"`
	// Damaged is the corrupt batch consumers stop at (as in /readyz);
	// absent when the partition has none.
	Damaged *DamageView `json:"damaged,omitempty"`
}

// ConfigValue is a topic config's value and whether it is a default.
type ConfigValue struct {
	Value   string `json:"value"`
	Default bool   `json:"default"`
}

// TopicViews describes every topic of l, by name (without effective
// configs).
func TopicViews(l *flog.Log) []TopicView {
	topics := l.Topics()
	out := make([]TopicView, 0, len(topics))
	for _, t := range topics {
		out = append(out, topicView(l, t))
	}
	return out
}

// DescribeTopic describes one topic of l, with its effective configs.
func DescribeTopic(l *flog.Log, name string) (TopicView, error) {
	t, err := l.Topic(name)
	if err != nil {
		return TopicView{}, err
	}
	v := topicView(l, t)
	vals, explicit, err := l.EffectiveConfigs(name)
	if err != nil {
		return v, err
	}
	v.EffectiveConfigs = make(map[string]ConfigValue, len(vals))
	for k, val := range vals {
		v.EffectiveConfigs[k] = ConfigValue{Value: val, Default: !explicit[k]}
	}
	return v, nil
}

func topicView(l *flog.Log, t flog.TopicInfo) TopicView {
	v := TopicView{Name: t.Name, ID: fmt.Sprintf("%x", t.ID[:]), Internal: strings.HasPrefix(t.Name, "__"),
		Partitions: make([]PartitionView, 0, t.Partitions), Configs: t.Configs}
	if v.Configs == nil {
		v.Configs = map[string]string{}
	}
	for i := int32(0); i < t.Partitions; i++ {
		p, err := l.Partition(t.Name, i)
		if err != nil {
			continue // deleted meanwhile
		}
		pv := PartitionView{Partition: i, StartOffset: p.StartOffset(), EndOffset: p.EndOffset(), DurableOffset: p.DurableOffset(),
			SizeBytes: p.Size(), Segments: len(p.Segments())}
		if d, ok := p.Damage(); ok {
			dv := damageView(d)
			pv.Damaged = &dv
		}
		v.Partitions = append(v.Partitions, pv)
		v.Records += pv.EndOffset - pv.StartOffset
		v.SizeBytes += pv.SizeBytes
	}
	return v
}

// CreateTopicRequest is the body of POST /api/topics.
type CreateTopicRequest struct {
	Name       string            `json:"name"`
	Partitions int32             `json:"partitions"` // 0: the node's default partitions
	Configs    map[string]string `json:"configs,omitempty"`
}

// AlterConfigsRequest is the body of PATCH /api/topics/{name}/configs:
// keys to set and keys to return to their defaults, applied at once
// (Kafka's IncrementalAlterConfigs).
type AlterConfigsRequest struct {
	Set    map[string]string `json:"set,omitempty"`
	Delete []string          `json:"delete,omitempty"`
}

// AddPartitionsRequest is the body of POST /api/topics/{name}/partitions:
// the topic's new partition count (Kafka's CreatePartitions).
type AddPartitionsRequest struct {
	Partitions int32 `json:"partitions"`
}

func (s *server) registerTopicsAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/topics", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, TopicViews(s.b.Log()))
	})
	mux.HandleFunc("GET /api/topics/{name}", func(w http.ResponseWriter, r *http.Request) {
		s.answerTopic(w, http.StatusOK, r.PathValue("name"), nil)
	})
	mux.HandleFunc("POST /api/topics", func(w http.ResponseWriter, r *http.Request) {
		var req CreateTopicRequest
		if err := decodeBody(r, &req); err != nil {
			writeErr(w, err)
			return
		}
		if req.Partitions == 0 {
			req.Partitions = max(s.b.Node().DefaultPartitions, 1)
		}
		_, err := s.b.TopicAdmin().CreateTopic(req.Name, req.Partitions, req.Configs)
		s.answerTopic(w, http.StatusCreated, req.Name, err)
	})
	mux.HandleFunc("DELETE /api/topics/{name}", func(w http.ResponseWriter, r *http.Request) {
		if err := s.b.TopicAdmin().DeleteTopic(r.PathValue("name")); err != nil {
			writeErr(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PATCH /api/topics/{name}/configs", func(w http.ResponseWriter, r *http.Request) {
		var req AlterConfigsRequest
		if err := decodeBody(r, &req); err != nil {
			writeErr(w, err)
			return
		}
		if len(req.Set) == 0 && len(req.Delete) == 0 {
			writeErr(w, badRequest(`nothing to change: give "set" or "delete"`))
			return
		}
		name := r.PathValue("name")
		s.answerTopic(w, http.StatusOK, name, s.b.TopicAdmin().AlterConfigs(name, req.Set, req.Delete))
	})
	mux.HandleFunc("POST /api/topics/{name}/partitions", func(w http.ResponseWriter, r *http.Request) {
		var req AddPartitionsRequest
		if err := decodeBody(r, &req); err != nil {
			writeErr(w, err)
			return
		}
		name := r.PathValue("name")
		s.answerTopic(w, http.StatusOK, name, s.b.TopicAdmin().AddPartitions(name, req.Partitions))
	})
}

// answerTopic answers err, or else the topic's description with code.
func (s *server) answerTopic(w http.ResponseWriter, code int, name string, err error) {
	if err != nil {
		writeErr(w, err)
		return
	}
	v, err := DescribeTopic(s.b.Log(), name)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, code, v)
}
