package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// ListOffsets: v1-8
//
// Behavior:
//   - Timestamp -2: the log start offset; -1: the end offset (the high
//     watermark: of a replicated partition, the committed end below which
//     consumers read); -3 (v7+): the first record holding the partition's
//     largest timestamp, with that timestamp, or -1/-1 if no record carries
//     one (KIP-734); -4 (v8+, the earliest local offset): the log start
//     offset, since every record is local (no tiered storage); otherwise
//     the offset of the first record whose timestamp is at or after it,
//     with that record's timestamp, or -1/-1 if none.
//     Timestamps are the records' (a batch header that disagrees is not
//     believed); a record without one (-1) is never the answer.
//   - UNKNOWN_TOPIC_OR_PARTITION for unknown topics and partitions.
//
// Version notes:
//   - v1: single offset (v0's OldStyleOffsets are not served)
//   - v2: IsolationLevel (ignored: no transactions); v4: LeaderEpoch
//   - v6: flexible; v7: max timestamp (-3); v8: earliest local (-4)

func init() { register(2, 1, 8, serveListOffsets) }

func serveListOffsets(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ListOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		mayDescribe := c.canTopic(kmsg.ACLOperationDescribe, rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition, sp.Timestamp, sp.Offset, sp.LeaderEpoch = rp.Partition, -1, -1, 0
			if !mayDescribe {
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			p, err := s.partition(rt.Topic, rp.Partition)
			if err == nil {
				switch rp.Timestamp {
				case -2:
					sp.Offset = p.StartOffset()
				case -3:
					sp.Offset, sp.Timestamp, err = p.MaxTimestamp()
				case -4:
					sp.Offset = p.StartOffset()
				case -1:
					sp.Offset = p.EndOffset()
					if s.opts.Replication != nil {
						// Replicated: the latest offset is the high
						// watermark, what consumers may read up to.
						if rl, ok := s.opts.Replication.Leader(rt.Topic, rp.Partition); ok {
							sp.Offset = rl.HighWatermark()
						} else {
							err = flog.ErrNotLeader
						}
					}
				default:
					sp.Offset, sp.Timestamp, err = p.OffsetForTime(rp.Timestamp)
				}
			}
			sp.ErrorCode = errorCode(err)
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, nil
}
