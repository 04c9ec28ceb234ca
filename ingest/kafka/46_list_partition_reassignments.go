package kafka

import (
	"context"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ListPartitionReassignments: v0
//
// Behavior:
//   - Needs DESCRIBE on the cluster (else CLUSTER_AUTHORIZATION_FAILED for
//     the whole request).
//   - The partitions under reassignment (the TopicAdmin's Reassigner), each
//     with its replicas (the target, then those leaving), adding and
//     removing replicas; only those of the topics and partitions named, or
//     all when Topics is null. Partitions named that are not being
//     reassigned, or do not exist, are left out, as Kafka does. A node
//     alone has none.
//
// Version notes:
//   - v0: flexible

func init() { register(46, 0, 0, serveListPartitionReassignments) }

func serveListPartitionReassignments(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ListPartitionReassignmentsRequest)
	resp := req.ResponseKind().(*kmsg.ListPartitionReassignmentsResponse)
	if !c.canCluster(kmsg.ACLOperationDescribe) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return resp, nil
	}
	ra, ok := s.topics.(Reassigner)
	if !ok {
		return resp, nil
	}
	wanted := func(topic string, partition int32) bool {
		if req.Topics == nil {
			return true
		}
		for _, t := range req.Topics {
			if t.Topic == topic && slices.Contains(t.Partitions, partition) {
				return true
			}
		}
		return false
	}
	for _, r := range ra.Reassignments() {
		if !wanted(r.Topic, r.Partition) {
			continue
		}
		if n := len(resp.Topics); n == 0 || resp.Topics[n-1].Topic != r.Topic {
			st := kmsg.NewListPartitionReassignmentsResponseTopic()
			st.Topic = r.Topic
			resp.Topics = append(resp.Topics, st)
		}
		sp := kmsg.NewListPartitionReassignmentsResponseTopicPartition()
		sp.Partition = r.Partition
		sp.Replicas, sp.AddingReplicas, sp.RemovingReplicas = ids(r.Replicas), ids(r.Adding), ids(r.Removing)
		st := &resp.Topics[len(resp.Topics)-1]
		st.Partitions = append(st.Partitions, sp)
	}
	return resp, nil
}

// ids is s, never nil (the response's arrays are not nullable).
func ids(s []int32) []int32 {
	if s == nil {
		return []int32{}
	}
	return s
}
