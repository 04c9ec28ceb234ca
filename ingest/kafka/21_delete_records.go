package kafka

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// DeleteRecords: v0-2
//
// Behavior:
//   - Moves each partition's log start offset to the offset given
//     (log.Log.DeleteRecords: persisted, so a restart keeps it), -1
//     meaning the high watermark (the end offset, as ListOffsets -1
//     answers; in a replicated cluster the leader's high watermark, so
//     only committed records go, as Kafka's deleteRecordsOnLeader), and
//     answers the log start after it (the low watermark). An offset at or
//     below the log start changes nothing; one past the high watermark,
//     or below -1, is OFFSET_OUT_OF_RANGE. Consumers fetching below
//     the new start get OFFSET_OUT_OF_RANGE; ListOffsets' earliest is it.
//     Records it removes before the mirror shipped them are told to the
//     center as a gap, as drop-oldest losses are.
//   - UNKNOWN_TOPIC_OR_PARTITION for unknown topics and partitions (the
//     internal __consumer_offsets has none); NOT_LEADER_OR_FOLLOWER for a
//     partition another broker leads. A cluster's real __consumer_offsets
//     is INVALID_TOPIC_EXCEPTION: its coordinators move its start
//     (snapshots, groupsrepl.go).
//   - With ACLs: DELETE on the topic, else TOPIC_AUTHORIZATION_FAILED.
//   - TimeoutMillis bounds the wait for the deleted records to be durable
//     (the new start is checkpointed only past durable records):
//     REQUEST_TIMED_OUT past it.
//
// Version notes:
//   - v2: flexible

func init() { register(21, 0, 2, serveDeleteRecords) }

func serveDeleteRecords(s *Server, ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteRecordsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	timeout := time.Duration(req.TimeoutMillis) * time.Millisecond
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, rt := range req.Topics {
		st := kmsg.NewDeleteRecordsResponseTopic()
		st.Topic = rt.Topic
		mayDelete := c.canTopic(kmsg.ACLOperationDelete, rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewDeleteRecordsResponseTopicPartition()
			sp.Partition, sp.LowWatermark = rp.Partition, -1
			if !mayDelete {
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			p, err := s.partition(rt.Topic, rp.Partition)
			if err == nil && s.frozenOffsetsTopic(rt.Topic) {
				err = errOffsetsTopic // the coordinators move its start (snapshots)
			}
			if err == nil {
				off, end := rp.Offset, p.EndOffset()
				if s.opts.Replication != nil {
					// A leader deletes only committed records, as Kafka's
					// deleteRecordsOnLeader: its end is the high watermark.
					if rl, ok := s.opts.Replication.Leader(rt.Topic, rp.Partition); !ok {
						err = flog.ErrNotLeader
					} else {
						end = rl.HighWatermark()
					}
				}
				if off == -1 {
					off = end
				}
				switch {
				case err != nil:
				case off < 0 || off > end:
					err = fmt.Errorf("%w: offset %d", flog.ErrOffsetOutOfRange, off)
				default:
					sp.LowWatermark, err = s.log.DeleteRecords(ctx, rt.Topic, rp.Partition, off)
				}
			}
			if err != nil {
				sp.LowWatermark, sp.ErrorCode = -1, errorCode(err)
				s.metrics.partitionError("DeleteRecords", sp.ErrorCode)
				s.logger.Info("DeleteRecords refused", "topic", rt.Topic, "partition", rp.Partition, "offset", rp.Offset, "err", err)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, nil
}
