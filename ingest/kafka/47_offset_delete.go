package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetDelete: v0 (with the consumer-group APIs)
//
// Behavior:
//   - Deletes a group's committed offsets of the partitions named, durably
//     (groupadmin.go's deleteOffsets), as Kafka does: GROUP_ID_NOT_FOUND
//     for a group that does not exist; in a consumer group with members,
//     the partitions of a topic a member subscribes to are kept and
//     answered GROUP_SUBSCRIBED_TO_TOPIC, the others deleted; a group with
//     members of another protocol type is NON_EMPTY_GROUP. Deleting an
//     offset that was never committed is not an error.
//   - A partition the log does not have is UNKNOWN_TOPIC_OR_PARTITION.
//   - With ACLs: DELETE on the group, else GROUP_AUTHORIZATION_FAILED; READ
//     on each topic, else TOPIC_AUTHORIZATION_FAILED in its partitions.
//
// Version notes:
//   - v0 only (kmsg knows no later version)

func init() { registerGroupAPI(47, 0, 0, serveOffsetDelete) }

func serveOffsetDelete(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.OffsetDeleteRequest)
	resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
	if !c.canGroup(kmsg.ACLOperationDelete, req.Group) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp, nil
	}
	if code := s.coordinatorCode(req.Group); code != 0 {
		resp.ErrorCode = code
		return resp, nil
	}
	codes := map[string]int16{} // per topic, decided here
	want := map[string][]int32{}
	for _, t := range req.Topics {
		switch n, err := s.log.PartitionCount(t.Topic); {
		case !c.canTopic(kmsg.ACLOperationRead, t.Topic):
			codes[t.Topic] = kerr.TopicAuthorizationFailed.Code
		case err != nil:
			codes[t.Topic] = kerr.UnknownTopicOrPartition.Code
		default:
			for _, p := range t.Partitions {
				if p.Partition >= 0 && p.Partition < n {
					want[t.Topic] = append(want[t.Topic], p.Partition)
				}
			}
		}
	}
	code, deleted := s.opts.Groups.deleteOffsets(req.Group, want)
	if code != 0 {
		resp.ErrorCode = code
		return resp, nil
	}
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetDeleteResponseTopic()
		rt.Topic = t.Topic
		n, _ := s.log.PartitionCount(t.Topic)
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetDeleteResponseTopicPartition()
			rp.Partition = p.Partition
			if code, ok := codes[t.Topic]; ok {
				rp.ErrorCode = code
			} else if p.Partition < 0 || p.Partition >= n {
				rp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			} else {
				rp.ErrorCode = deleted[t.Topic]
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}
