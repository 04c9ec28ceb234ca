package kafka

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// CreatePartitions: v0-3
//
// Behavior:
//   - Grows a topic to Count partitions; INVALID_PARTITIONS for a count not
//     above the current one; ValidateOnly changes nothing. Explicit
//     assignments are accepted when there is one per new partition and
//     each names live brokers (this node, once); otherwise
//     INVALID_REPLICA_ASSIGNMENT with the reason. The internal __consumer_offsets
//     (internal.go) has no partitions to grow: INVALID_TOPIC_EXCEPTION.
//
// Version notes:
//   - v2: flexible

func init() { register(37, 0, 3, serveCreatePartitions) }

// checkPartitionAssignment checks CreatePartitions' assignments of the
// added new partitions, returning why they cannot be honoured ("" if they
// can).
func (s *Server) checkPartitionAssignment(as []kmsg.CreatePartitionsRequestTopicAssignment, added int32) string {
	if int32(len(as)) != added {
		return fmt.Sprintf("%d assignments for %d new partitions", len(as), added)
	}
	for i, a := range as {
		if msg := s.checkReplicas(a.Replicas); msg != "" {
			return fmt.Sprintf("new partition %d: %s", i, msg)
		}
	}
	return ""
}

func serveCreatePartitions(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.CreatePartitionsRequest)
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewCreatePartitionsResponseTopic()
		st.Topic = rt.Topic
		if !c.canTopic(kmsg.ACLOperationAlter, rt.Topic) {
			st.ErrorCode = kerr.TopicAuthorizationFailed.Code
			resp.Topics = append(resp.Topics, st)
			continue
		}
		info, err := s.log.Topic(rt.Topic)
		if s.frozenOffsetsTopic(rt.Topic) {
			err = errOffsetsTopic
		}
		switch {
		case err != nil:
			st.ErrorCode, st.ErrorMessage = errorCode(err), errorMessage(err)
		case len(rt.Assignment) > 0 && rt.Count > info.Partitions && s.checkPartitionAssignment(rt.Assignment, rt.Count-info.Partitions) != "":
			st.ErrorCode = kerr.InvalidReplicaAssignment.Code
			st.ErrorMessage = kmsg.StringPtr(s.checkPartitionAssignment(rt.Assignment, rt.Count-info.Partitions))
		case req.ValidateOnly:
			if rt.Count <= info.Partitions {
				st.ErrorCode, st.ErrorMessage = kerr.InvalidPartitions.Code, kmsg.StringPtr("the partition count can only grow")
			}
		default:
			if err := s.topics.AddPartitions(rt.Topic, rt.Count); err != nil {
				st.ErrorCode, st.ErrorMessage = errorCode(err), errorMessage(err)
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, nil
}
