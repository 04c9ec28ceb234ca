package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetCommit: v0-8
//
// Behavior:
//   - Stores offsets durably (bbolt, fsynced) before answering. Members
//     commit with their generation (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION,
//     REBALANCE_IN_PROGRESS while assignments are being synced); a simple
//     commit (generation -1, no member) is allowed while the group has no
//     members, as Kafka allows it for admin tools. A commit with an
//     instance id (v7+) is a member's: FENCED_INSTANCE_ID for a static
//     member's replaced member id (static.go).
//   - With ACLs: READ on the group, else GROUP_AUTHORIZATION_FAILED in every
//     partition; READ on each topic, else TOPIC_AUTHORIZATION_FAILED in its
//     partitions (the others are committed).
//
// Version notes:
//   - v1: generation, member; v2-4: retention time (ignored); v6: leader
//     epoch; v7: InstanceID; v8: flexible

func init() { registerGroupAPI(8, 0, 8, serveOffsetCommit) }

func serveOffsetCommit(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.OffsetCommitRequest)
	if !c.canGroup(kmsg.ACLOperationRead, req.Group) {
		return commitRefused(req, req.Topics, kerr.GroupAuthorizationFailed.Code, nil), nil
	}
	var denied []kmsg.OffsetCommitRequestTopic
	if s.authorizing() {
		kept := make([]kmsg.OffsetCommitRequestTopic, 0, len(req.Topics))
		for _, t := range req.Topics {
			if c.canTopic(kmsg.ACLOperationRead, t.Topic) {
				kept = append(kept, t)
			} else {
				denied = append(denied, t)
			}
		}
		req.Topics = kept
	}
	resp := s.opts.Groups.commit(req)
	if len(denied) > 0 {
		commitRefused(req, denied, kerr.TopicAuthorizationFailed.Code, resp)
	}
	return resp, nil
}

// commitRefused answers every partition of topics with code, in resp (a new
// response when nil).
func commitRefused(req *kmsg.OffsetCommitRequest, topics []kmsg.OffsetCommitRequestTopic, code int16, resp *kmsg.OffsetCommitResponse) *kmsg.OffsetCommitResponse {
	if resp == nil {
		resp = req.ResponseKind().(*kmsg.OffsetCommitResponse)
	}
	for _, t := range topics {
		st := kmsg.NewOffsetCommitResponseTopic()
		st.Topic = t.Topic
		for _, p := range t.Partitions {
			sp := kmsg.NewOffsetCommitResponseTopicPartition()
			sp.Partition, sp.ErrorCode = p.Partition, code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
