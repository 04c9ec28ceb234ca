package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetForLeaderEpoch: v2-4
//
// Behavior:
//   - For each partition, the end offset of the requested leader epoch,
//     from the log's leader-epoch cache (flog.Partition.EndOffsetForEpoch,
//     Kafka's endOffsetFor): the largest epoch at or below the one asked
//     for, and where it ended (the next epoch's start, or the log end for
//     the latest); an epoch older than any known is answered with itself
//     and the first known epoch's start; -1/-1 (UNDEFINED) when the log
//     knows no epoch at or after it. A follower truncates to the answer
//     (KIP-101/279); a consumer checks it for truncation after a leader
//     change (KIP-320).
//   - The epoch this broker leads the partition at ends at the log end even
//     when the log has no entry for it yet, as in Kafka, whose leader
//     records its epoch on becoming leader.
//   - A partition this broker never stamped with a leader epoch (a node
//     alone: flog.Partition.LeaderEpoch is -1) has never been cut back by
//     a leader change, and its batches carry their clients' bytes 12-15,
//     not epochs: every epoch is answered with itself and the log end
//     offset, so a consumer validating a committed offset (franz-go does,
//     with the epoch of the records it read) finds no truncation, as
//     before this API was served. Its cache is not read.
//   - CurrentLeaderEpoch, when not -1, fences: older than the partition's
//     epoch is FENCED_LEADER_EPOCH, newer is UNKNOWN_LEADER_EPOCH (the
//     client's metadata is ahead of this broker's).
//   - Only the leader answers (NOT_LEADER_OR_FOLLOWER otherwise);
//     UNKNOWN_TOPIC_OR_PARTITION for unknown topics and partitions.
//   - Authorisation: CLUSTER_ACTION on the cluster (brokers), else
//     DESCRIBE on each topic (consumers), as Kafka checks. Partition errors
//     are counted in ferry_kafka_partition_errors_total.
//
// Version notes:
//   - v0-v1 are not served (Kafka 4 removed them, KIP-896): v1 added the
//     epoch to the answer, v2 CurrentLeaderEpoch and ThrottleMillis
//   - v3: ReplicaID (-1 consumers, a broker id for followers; not used to
//     decide anything); v4: flexible

func init() { register(23, 2, 4, serveOffsetForLeaderEpoch) }

func serveOffsetForLeaderEpoch(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.OffsetForLeaderEpochRequest)
	resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	broker := c.allowedQuiet(kmsg.ACLOperationClusterAction, kmsg.ACLResourceTypeCluster, clusterName)
	for _, rt := range req.Topics {
		st := kmsg.NewOffsetForLeaderEpochResponseTopic()
		st.Topic = rt.Topic
		mayDescribe := broker || c.canTopic(kmsg.ACLOperationDescribe, rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			sp.Partition, sp.LeaderEpoch, sp.EndOffset = rp.Partition, -1, -1
			if !mayDescribe {
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			} else {
				sp.LeaderEpoch, sp.EndOffset, sp.ErrorCode = s.endOffsetForEpoch(rt.Topic, rp)
			}
			if sp.ErrorCode != 0 {
				s.metrics.partitionError("OffsetForLeaderEpoch", sp.ErrorCode)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, nil
}

// endOffsetForEpoch answers one partition of OffsetForLeaderEpoch.
func (s *Server) endOffsetForEpoch(topic string, rp kmsg.OffsetForLeaderEpochRequestTopicPartition) (int32, int64, int16) {
	p, err := s.partition(topic, rp.Partition)
	if err != nil {
		return -1, -1, errorCode(err)
	}
	current := int32(0) // a node alone, or a partition the cluster does not know yet
	if pv, ok := s.cluster.Partition(topic, rp.Partition); ok {
		current = pv.LeaderEpoch
	}
	if code := fenceLeaderEpoch(rp.CurrentLeaderEpoch, current); code != 0 {
		return -1, -1, code
	}
	if rp.LeaderEpoch < 0 {
		return -1, -1, 0 // UNDEFINED, as Kafka answers it
	}
	if p.LeaderEpoch() < 0 {
		// Never stamped: nothing was ever cut by a leader change.
		return rp.LeaderEpoch, p.EndOffset(), 0
	}
	epoch, end, err := p.EndOffsetForEpoch(rp.LeaderEpoch)
	if err != nil {
		return -1, -1, errorCode(err)
	}
	if epoch < 0 && rp.LeaderEpoch == current {
		// The epoch this broker leads at, not recorded in the log yet.
		return current, p.EndOffset(), 0
	}
	return epoch, end, 0
}
