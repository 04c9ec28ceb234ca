package adminapi

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"ferry/edge/cluster"
)

// ClusterAdmin is what the cluster's operations routes change: partition
// reassignments and the voter set. *cluster.Node is one; a Cluster
// without it answers those routes 501.
type ClusterAdmin interface {
	ReassignPartition(ctx context.Context, topic string, partition int32, target []int32, cancel bool) error
	Voters() ([]cluster.VoterStatus, error)
	AddVoter(ctx context.Context, id int32, addr string) error
	RemoveVoter(ctx context.Context, id int32) error
}

// ReassignRequest is POST /api/cluster/reassignments: the partitions to
// move (kafka-reassign-partitions' plan: topic, partition, replicas), or
// a topic and the replication factor to give each of its partitions (the
// node plans the moves: cluster.Image.PlanReplicationFactor). Cancel
// cancels the reassignments of the partitions named (or of the topic's
// partitions under way). DryRun answers the plan and changes nothing.
type ReassignRequest struct {
	Partitions        []cluster.PartitionTarget `json:"partitions,omitempty"`
	Topic             string                    `json:"topic,omitempty"`
	ReplicationFactor int32                     `json:"replication_factor,omitempty"`
	Cancel            bool                      `json:"cancel,omitempty"`
	DryRun            bool                      `json:"dry_run,omitempty"`
}

// ReassignResult answers a ReassignRequest: per partition its replicas
// before, the target, and the error that refused it.
type ReassignResult struct {
	DryRun     bool                    `json:"dry_run"`
	Partitions []ReassignPartitionView `json:"partitions"`
}

// ReassignPartitionView is one partition of a ReassignResult.
type ReassignPartitionView struct {
	Topic     string  `json:"topic"`
	Partition int32   `json:"partition"`
	Current   []int32 `json:"current"`
	Target    []int32 `json:"target,omitempty"`
	Error     string  `json:"error,omitempty"`
}

// AddVoterRequest is POST /api/cluster/voters.
type AddVoterRequest struct {
	ID   int32  `json:"id"`
	Addr string `json:"addr"`
}

// maxReassignPartitions bounds one request's partitions.
const maxReassignPartitions = 10000

// clusterOpTimeout bounds a change through the controller.
const clusterOpTimeout = 30 * time.Second

var errNoClusterAdmin = requestError{http.StatusNotImplemented, "this node's cluster cannot change reassignments or voters"}

// clusterAdmin is the node's cluster and its operations, or the error to
// answer.
func (s *server) clusterAdmin() (Cluster, ClusterAdmin, error) {
	c := s.b.Cluster()
	if c == nil {
		return nil, nil, requestError{http.StatusNotFound, "this node is not in a cluster (ferry full --cluster-voters)"}
	}
	ca, ok := c.(ClusterAdmin)
	if !ok {
		return nil, nil, errNoClusterAdmin
	}
	return c, ca, nil
}

func (s *server) registerClusterOpsAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/cluster/reassignments", func(w http.ResponseWriter, r *http.Request) {
		c := s.b.Cluster()
		if c == nil {
			writeError(w, http.StatusNotFound, "this node is not in a cluster (ferry full --cluster-voters)")
			return
		}
		var topics []string
		if t := r.URL.Query().Get("topic"); t != "" {
			topics = append(topics, t)
		}
		writeJSON(w, http.StatusOK, c.Image().Reassignments(topics...))
	})
	mux.HandleFunc("POST /api/cluster/reassignments", func(w http.ResponseWriter, r *http.Request) {
		c, ca, err := s.clusterAdmin()
		if err != nil {
			writeErr(w, err)
			return
		}
		var req ReassignRequest
		if err := decodeBody(r, &req); err != nil {
			writeErr(w, err)
			return
		}
		res, err := reassign(r.Context(), c.Image(), ca, req)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("GET /api/cluster/voters", func(w http.ResponseWriter, r *http.Request) {
		_, ca, err := s.clusterAdmin()
		if err != nil {
			writeErr(w, err)
			return
		}
		vs, err := ca.Voters()
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, vs)
	})
	mux.HandleFunc("POST /api/cluster/voters", func(w http.ResponseWriter, r *http.Request) {
		_, ca, err := s.clusterAdmin()
		if err != nil {
			writeErr(w, err)
			return
		}
		var req AddVoterRequest
		if err := decodeBody(r, &req); err != nil {
			writeErr(w, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), clusterOpTimeout)
		defer cancel()
		if err := ca.AddVoter(ctx, req.ID, req.Addr); err != nil {
			writeErr(w, err)
			return
		}
		vs, err := ca.Voters()
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, vs)
	})
	mux.HandleFunc("DELETE /api/cluster/voters/{id}", func(w http.ResponseWriter, r *http.Request) {
		_, ca, err := s.clusterAdmin()
		if err != nil {
			writeErr(w, err)
			return
		}
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 32)
		if err != nil {
			writeErr(w, badRequest("voter id %q: want a number", r.PathValue("id")))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), clusterOpTimeout)
		defer cancel()
		if err := ca.RemoveVoter(ctx, int32(id)); err != nil {
			writeErr(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// reassign plans a ReassignRequest against im and, unless it is a dry
// run, applies it partition by partition (each answered with its own
// error).
func reassign(ctx context.Context, im *cluster.Image, ca ClusterAdmin, req ReassignRequest) (ReassignResult, error) {
	res := ReassignResult{DryRun: req.DryRun, Partitions: []ReassignPartitionView{}}
	plan := req.Partitions
	switch {
	case len(plan) > 0 && req.ReplicationFactor != 0:
		return res, badRequest("give partitions or a replication factor, not both")
	case len(plan) > maxReassignPartitions:
		return res, badRequest("%d partitions: at most %d in one request", len(plan), maxReassignPartitions)
	case req.ReplicationFactor != 0:
		if req.Topic == "" || req.Cancel {
			return res, badRequest("a replication factor needs a topic, and is not a cancel")
		}
		var err error
		if plan, err = im.PlanReplicationFactor(req.Topic, req.ReplicationFactor); err != nil {
			return res, planError(err)
		}
	case len(plan) == 0 && req.Cancel && req.Topic != "":
		for _, r := range im.Reassignments(req.Topic) {
			plan = append(plan, cluster.PartitionTarget{Topic: r.Topic, Partition: r.Partition})
		}
	case len(plan) == 0:
		return res, badRequest("nothing to reassign: give partitions, or a topic with a replication factor (or cancel)")
	}
	for _, p := range plan {
		v := ReassignPartitionView{Topic: p.Topic, Partition: p.Partition, Current: []int32{}}
		if !req.Cancel {
			v.Target = slices.Clone(p.Replicas)
		}
		if t := im.Topics[p.Topic]; t != nil && p.Partition >= 0 && int(p.Partition) < len(t.Partitions) {
			cur := t.Partitions[p.Partition]
			v.Current = cur.Replicas
			if req.Cancel {
				v.Target = cur.Original()
			}
		}
		if !req.DryRun {
			cctx, cancel := context.WithTimeout(ctx, clusterOpTimeout)
			if err := ca.ReassignPartition(cctx, p.Topic, p.Partition, p.Replicas, req.Cancel); err != nil {
				v.Error = err.Error()
			}
			cancel()
		}
		res.Partitions = append(res.Partitions, v)
	}
	return res, nil
}

// planError maps a planning error to its status.
func planError(err error) error {
	switch {
	case errors.Is(err, cluster.ErrUnknownTopic):
		return requestError{http.StatusNotFound, err.Error()}
	case errors.Is(err, cluster.ErrInvalidAssignment), errors.Is(err, cluster.ErrNotEnoughBrokers):
		return requestError{http.StatusBadRequest, err.Error()}
	}
	return err
}
