package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// CreatePartitions: v0-3
//
// Behavior:
//   - Grows a topic to Count partitions; INVALID_PARTITIONS for a count not
//     above the current one; manual assignments are INVALID_REQUEST;
//     ValidateOnly changes nothing. The internal __consumer_offsets
//     (internal.go) has no partitions to grow: INVALID_TOPIC_EXCEPTION.
//
// Version notes:
//   - v2: flexible

func init() { register(37, 0, 3, serveCreatePartitions) }

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
		if s.virtualOffsetsTopic(rt.Topic) {
			err = errOffsetsTopic
		}
		switch {
		case err != nil:
			st.ErrorCode, st.ErrorMessage = errorCode(err), errorMessage(err)
		case len(rt.Assignment) > 0:
			st.ErrorCode, st.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr("manual replica assignment is not supported")
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
