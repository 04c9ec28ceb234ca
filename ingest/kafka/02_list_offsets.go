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
//   - A replicated partition (Kafka's Partition.fetchOffsetForTimestamp):
//     answered only by its leader (NOT_LEADER_OR_FOLLOWER elsewhere, unless
//     ReplicaID is -2, Kafka's debugging replica); CurrentLeaderEpoch (v4+)
//     fenced as Fetch does (FENCED_LEADER_EPOCH if older,
//     UNKNOWN_LEADER_EPOCH if newer); a lookup by time (and -3) finds only
//     records below the high watermark, -1/-1 if none; while a new
//     leader's high watermark is still below the start of its epoch,
//     latest, and a lookup by time (or -3) that finds nothing committed
//     (no record at all included), answer OFFSET_NOT_AVAILABLE
//     (retriable), so no client sees the end go back;
//     LeaderEpoch is the epoch of the offset answered (latest: the
//     leader's), -1 with no offset.
//
// Version notes:
//   - v1: single offset (v0's OldStyleOffsets are not served)
//   - v2: IsolationLevel (ignored: no transactions); v4: LeaderEpoch,
//     CurrentLeaderEpoch
//   - v6: flexible; v7: max timestamp (-3); v8: earliest local (-4)

func init() { register(2, 1, 8, serveListOffsets) }

// debugReplicaID is ListOffsets' ReplicaID of a debugging client, which
// any replica answers (Kafka's DEBUGGING_REPLICA_ID).
const debugReplicaID = -2

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
			switch {
			case err != nil:
				sp.ErrorCode = errorCode(err)
			case s.opts.Replication != nil && req.ReplicaID != debugReplicaID:
				if sp.ErrorCode = s.listReplicated(p, rt.Topic, rp, &sp); sp.ErrorCode != 0 {
					sp.LeaderEpoch = -1 // as Kafka's error answers
				}
			default:
				err := listLocal(p, rp.Timestamp, &sp)
				if err == nil && s.opts.Replication != nil { // a debugging client: each offset with its records' epoch
					sp.LeaderEpoch, err = p.EpochForOffset(sp.Offset)
				}
				sp.ErrorCode = errorCode(err)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, nil
}

// listReplicated answers one partition of a ListOffsets of a replicated
// partition as its leader (see above), and returns the error code.
func (s *Server) listReplicated(p *flog.Partition, topic string, rp kmsg.ListOffsetsRequestTopicPartition, sp *kmsg.ListOffsetsResponseTopicPartition) int16 {
	rl, ok := s.opts.Replication.Leader(topic, rp.Partition)
	if !ok {
		return kerr.NotLeaderForPartition.Code
	}
	epoch := rl.LeaderEpoch()
	if code := fenceLeaderEpoch(rp.CurrentLeaderEpoch, epoch); code != 0 {
		return code
	}
	hw := rl.HighWatermark()
	lagging := hw < rl.EpochStartOffset()
	if rp.Timestamp == -1 {
		if lagging {
			return kerr.OffsetNotAvailable.Code
		}
		sp.Offset, sp.LeaderEpoch = hw, epoch
		return 0
	}
	if err := listLocal(p, rp.Timestamp, sp); err != nil {
		return errorCode(err)
	}
	if rp.Timestamp != -2 && rp.Timestamp != -4 && (sp.Offset < 0 || sp.Offset >= hw) {
		// No committed record answers (none at all, -1, or only ones not
		// committed yet): as Kafka's leader, which keeps only an offset
		// below the high watermark and else, while lagging, fails.
		sp.Offset, sp.Timestamp = -1, -1
		if lagging {
			return kerr.OffsetNotAvailable.Code
		}
	}
	e, err := p.EpochForOffset(sp.Offset)
	if err != nil {
		return errorCode(err)
	}
	sp.LeaderEpoch = e
	return 0
}

// listLocal answers one ListOffsets timestamp from p's own log: -2 and
// -4 its start (every record is local: no tiered storage), -1 its end, -3
// its largest timestamp, else the first record at or after the time.
func listLocal(p *flog.Partition, ts int64, sp *kmsg.ListOffsetsResponseTopicPartition) (err error) {
	switch ts {
	case -2, -4:
		sp.Offset = p.StartOffset()
	case -1:
		sp.Offset = p.EndOffset()
	case -3:
		sp.Offset, sp.Timestamp, err = p.MaxTimestamp()
	default:
		sp.Offset, sp.Timestamp, err = p.OffsetForTime(ts)
	}
	return err
}
