package kafka

import (
	"context"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetCommit: v0-8
//
// Behavior:
//   - Stores offsets durably before answering: alone in bbolt (fsynced);
//     in a cluster as records of the group's __consumer_offsets partition,
//     answered once committed (groupsrepl.go; REQUEST_TIMED_OUT after
//     5 s, Kafka's offsets.commit.timeout.ms; COORDINATOR_LOAD_IN_PROGRESS
//     while the partition loads; NOT_COORDINATOR if its leadership moved
//     before the record was committed). Members
//     commit with their generation (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION,
//     REBALANCE_IN_PROGRESS while assignments are being synced); a simple
//     commit (generation -1, no member) is allowed while the group has no
//     members, as Kafka allows it for admin tools. A commit with an
//     instance id (v7+) is a member's: FENCED_INSTANCE_ID for a static
//     member's replaced member id (static.go).
//   - A partition the log does not have (an unknown topic, or a partition
//     number past the topic's count) is answered UNKNOWN_TOPIC_OR_PARTITION
//     and nothing is stored for it, as Kafka does; the other partitions of
//     the request are committed (or refused) as usual. This holds for
//     admin tools' commits too (kadm's CommitOffsets, Kafka's
//     alterConsumerGroupOffsets).
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
	if code := s.coordinatorCode(req.Group); code != 0 {
		return commitRefused(req, req.Topics, code, nil), nil
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
	var unknown []kmsg.OffsetCommitRequestTopic
	req.Topics, unknown = s.knownPartitions(req.Topics)
	resp := s.opts.Groups.commit(req)
	if len(denied) > 0 {
		commitRefused(req, denied, kerr.TopicAuthorizationFailed.Code, resp)
	}
	if len(unknown) > 0 {
		commitRefused(req, unknown, kerr.UnknownTopicOrPartition.Code, resp)
	}
	return resp, nil
}

// knownPartitions splits a commit's topics into the partitions the log has
// and those it does not.
func (s *Server) knownPartitions(topics []kmsg.OffsetCommitRequestTopic) (known, unknown []kmsg.OffsetCommitRequestTopic) {
	known = make([]kmsg.OffsetCommitRequestTopic, 0, len(topics))
	for _, t := range topics {
		n, err := s.log.PartitionCount(t.Topic)
		if err != nil {
			unknown = append(unknown, t)
			continue
		}
		kt, ut := t, t
		kt.Partitions, ut.Partitions = nil, nil
		for _, p := range t.Partitions {
			if p.Partition >= 0 && p.Partition < n {
				kt.Partitions = append(kt.Partitions, p)
			} else {
				ut.Partitions = append(ut.Partitions, p)
			}
		}
		if len(kt.Partitions) > 0 {
			known = append(known, kt)
		}
		if len(ut.Partitions) > 0 {
			unknown = append(unknown, ut)
		}
	}
	return known, unknown
}

// commitRefused answers every partition of topics with code, in resp (a new
// response when nil).
func commitRefused(req *kmsg.OffsetCommitRequest, topics []kmsg.OffsetCommitRequestTopic, code int16, resp *kmsg.OffsetCommitResponse) *kmsg.OffsetCommitResponse {
	if resp == nil {
		resp = req.ResponseKind().(*kmsg.OffsetCommitResponse)
	}
	for _, t := range topics {
		// A topic already answered (some of its partitions committed)
		// gets these partitions in the same entry.
		i := slices.IndexFunc(resp.Topics, func(rt kmsg.OffsetCommitResponseTopic) bool { return rt.Topic == t.Topic })
		if i < 0 {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = t.Topic
			resp.Topics = append(resp.Topics, st)
			i = len(resp.Topics) - 1
		}
		for _, p := range t.Partitions {
			sp := kmsg.NewOffsetCommitResponseTopicPartition()
			sp.Partition, sp.ErrorCode = p.Partition, code
			resp.Topics[i].Partitions = append(resp.Topics[i].Partitions, sp)
		}
	}
	return resp
}
