package kafka

import (
	"context"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// AlterPartitionReassignments: v0-1
//
// Behavior:
//   - Needs ALTER on the cluster (else CLUSTER_AUTHORIZATION_FAILED for the
//     whole request, as Kafka answers).
//   - Per partition: Replicas moves it (KIP-455: the new replicas catch up
//     as followers, the reassignment completes when they are all in sync),
//     null cancels the reassignment under way (NO_REASSIGNMENT_IN_PROGRESS
//     when there is none). Replicas that are empty, name a broker twice or
//     a broker the cluster does not have: INVALID_REPLICA_ASSIGNMENT; an
//     unknown topic or partition: UNKNOWN_TOPIC_OR_PARTITION.
//   - In a cluster the change goes through the controller (the TopicAdmin's
//     Reassigner); a node alone is a cluster of one broker: replicas other
//     than its own id are INVALID_REPLICA_ASSIGNMENT, its own id changes
//     nothing, and there is never a reassignment to cancel.
//
// Version notes:
//   - v0: flexible
//   - v1: AllowReplicationFactorChange (KIP-860): false refuses a change of
//     a partition's number of replicas with INVALID_REPLICATION_FACTOR

func init() { register(45, 0, 1, serveAlterPartitionReassignments) }

func serveAlterPartitionReassignments(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.AlterPartitionAssignmentsRequest)
	resp := req.ResponseKind().(*kmsg.AlterPartitionAssignmentsResponse)
	resp.AllowReplicationFactorChange = req.AllowReplicationFactorChange
	if !c.canCluster(kmsg.ACLOperationAlter) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return resp, nil
	}
	allowRF := req.Version < 1 || req.AllowReplicationFactorChange
	for _, rt := range req.Topics {
		st := kmsg.NewAlterPartitionAssignmentsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewAlterPartitionAssignmentsResponseTopicPartition()
			sp.Partition = rp.Partition
			if err := s.reassign(rt.Topic, rp.Partition, rp.Replicas, allowRF); err != nil {
				sp.ErrorCode, sp.ErrorMessage = errorCode(err), errorMessage(err)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, nil
}

// reassign checks and applies one partition's reassignment (replicas nil:
// cancel).
func (s *Server) reassign(topic string, partition int32, replicas []int32, allowRF bool) error {
	pv, ok := s.cluster.Partition(topic, partition)
	if !ok || s.virtualOffsetsTopic(topic) {
		return fmt.Errorf("%w: %s-%d", flog.ErrUnknownTopic, topic, partition)
	}
	cancel := replicas == nil
	if !cancel {
		if len(replicas) == 0 {
			return fmt.Errorf("%w: no replicas", ErrInvalidReplicaAssignment)
		}
		for i, r := range replicas {
			if slices.Contains(replicas[:i], r) {
				return fmt.Errorf("%w: broker %d twice", ErrInvalidReplicaAssignment, r)
			}
		}
	}
	ra, ok := s.topics.(Reassigner)
	if !ok {
		// A cluster of one broker: nothing to move to, nothing under way.
		if cancel {
			return fmt.Errorf("%w: %s-%d", ErrNoReassignment, topic, partition)
		}
		for _, r := range replicas {
			if r != s.opts.NodeID {
				return fmt.Errorf("%w: broker %d does not exist (this cluster is broker %d alone)", ErrInvalidReplicaAssignment, r, s.opts.NodeID)
			}
		}
		return nil
	}
	if !cancel && !allowRF {
		current := pv.Replicas
		for _, r := range ra.Reassignments() {
			if r.Topic == topic && r.Partition == partition {
				current = minusIDs(r.Replicas, r.Adding)
			}
		}
		if len(current) != len(replicas) {
			return fmt.Errorf("%w: %d replicas for %s-%d, which has %d, and the request does not allow a change of replication factor", ErrReplicationFactor, len(replicas), topic, partition, len(current))
		}
	}
	return ra.ReassignPartition(topic, partition, replicas, cancel)
}

// minusIDs is a without the members of b.
func minusIDs(a, b []int32) []int32 {
	var out []int32
	for _, id := range a {
		if !slices.Contains(b, id) {
			out = append(out, id)
		}
	}
	return out
}
