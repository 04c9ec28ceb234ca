package kafka

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// Produce: v3-11
//
// Behavior:
//   - Each partition's records must be exactly one RecordBatch v2; the log
//     validates framing, CRC-32C and record count (streaming the records of
//     gzip, snappy, lz4, zstd batches, never inflating them whole) and
//     stores the batch as sent, assigning its offsets, unless the topic's
//     compression.type recompresses it or its message.timestamp.type is
//     LogAppendTime (the append time is then in the answer's
//     LogAppendTime, else -1; log/recompress.go, appendtime.go). Errors per
//     partition: UNKNOWN_TOPIC_OR_PARTITION, CORRUPT_MESSAGE,
//     MESSAGE_TOO_LARGE (max.message.bytes), RECORD_LIST_TOO_LARGE (records
//     inflating past max.inflated.bytes: a decompression bomb),
//     KAFKA_STORAGE_ERROR for I/O failures.
//   - acks=0: no response is sent. acks=1: answered once the batch is
//     appended (page cache; survives a crash of ferry, not of the machine).
//     acks=-1: answered once every batch of the request is durable under its
//     topic's flush.policy, or REQUEST_TIMED_OUT after TimeoutMillis.
//   - A replicated partition (Options.Replication) is appended through its
//     leader (NOT_LEADER_OR_FOLLOWER elsewhere); acks=-1 is refused with
//     NOT_ENOUGH_REPLICAS, nothing appended, while the in-sync set is below
//     min.insync.replicas, and answered once the high watermark passes the
//     batch (every in-sync replica holds it; the leader's durable end
//     bounds the high watermark), NOT_ENOUGH_REPLICAS_AFTER_APPEND if the
//     in-sync set fell below min.insync.replicas first, REQUEST_TIMED_OUT
//     after TimeoutMillis. acks=1 is answered after the leader's append, as
//     in Kafka. The
//     appends happen in request order as the request is read; the wait for
//     durability does not hold the connection, which reads and appends the
//     next produce meanwhile, and answers still leave in request order
//     (pipeline.go). A failed fsync fails every produce waiting on the
//     partition, those appended behind the first included.
//   - Idempotent producers: the log checks producer id, epoch and sequence
//     atomically with the append. A retry of one of the last five batches is
//     answered with success and the original offsets, as Kafka does; a gap is
//     OUT_OF_ORDER_SEQUENCE_NUMBER; an old epoch INVALID_PRODUCER_EPOCH.
//   - Transactions are not supported (nor advertised): a transactional
//     produce is refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
//   - Unknown topics are created first when auto-creation is on (and, with
//     ACLs, the principal may CREATE: acl.go).
//   - With ACLs, a topic the principal may not WRITE is answered
//     TOPIC_AUTHORIZATION_FAILED for each of its partitions.
//   - __consumer_offsets is internal: INVALID_TOPIC_EXCEPTION, as Kafka
//     refuses appends to internal topics from clients.
//   - With a produce quota (quota.go), the record bytes are charged to the
//     principal; over quota the records are still appended, the answer
//     carries ThrottleMillis and the connection is muted for that long.
//
// Version notes:
//   - v3: RecordBatch v2 only (v0-2 carried the old message formats)
//   - v5: LogStartOffset; v8: ErrorRecords, ErrorMessage; v9: flexible
//   - v6: ThrottleMillis is applied by the client after the answer (before
//     v6 the answer itself is delayed)
//   - v10: CurrentLeader (tagged, left empty)

func init() { register(0, 3, 11, serveProduce) }

func serveProduce(s *Server, ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	var waits []durableWait
	if s.quotas != nil {
		n := 0
		for _, rt := range req.Topics {
			for _, rp := range rt.Partitions {
				n += len(rp.Records)
			}
		}
		resp.ThrottleMillis = c.throttleProduce(n)
	}
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		mayWrite := c.canTopic(kmsg.ACLOperationWrite, rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition, sp.BaseOffset, sp.LogAppendTime, sp.LogStartOffset = rp.Partition, -1, -1, -1
			if req.TransactionID != nil || !mayWrite {
				sp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
				if !mayWrite {
					sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				}
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			p, err := s.partitionForProduce(c, rt.Topic, rp.Partition)
			var res flog.AppendResult
			var rl ReplicaLeader
			switch {
			case err != nil:
			case s.opts.Replication != nil:
				// A replicated partition: appended as its leader, which
				// refuses an acks=all produce while the in-sync set is
				// below min.insync.replicas.
				var ok bool
				if rl, ok = s.opts.Replication.Leader(rt.Topic, rp.Partition); !ok {
					err = flog.ErrNotLeader
				} else {
					res, err = rl.Append(rp.Records, req.Acks == -1)
				}
			default:
				res, err = p.Append(rp.Records)
			}
			switch {
			case err == nil:
				sp.BaseOffset, sp.LogStartOffset = res.BaseOffset, res.LogStartOffset
				if res.LogAppendTime > 0 { // message.timestamp.type=LogAppendTime
					sp.LogAppendTime = res.LogAppendTime
				}
				waits = append(waits, durableWait{p, rl, res.LastOffset, len(resp.Topics), len(st.Partitions)})
			case errors.Is(err, flog.ErrDuplicateSequence):
				// Already stored: success with the original offsets.
				sp.BaseOffset, sp.LogStartOffset = res.BaseOffset, res.LogStartOffset
				waits = append(waits, durableWait{p, rl, res.LastOffset, len(resp.Topics), len(st.Partitions)})
			default:
				sp.ErrorCode = errorCode(err)
				s.metrics.partitionError("Produce", sp.ErrorCode)
				if req.Version >= 8 {
					sp.ErrorMessage = errorMessage(err)
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	switch req.Acks {
	case 0:
		return nil, nil
	case -1:
		// The answer waits for durability outside the connection's
		// reader, which goes on to the next request (pipeline.go); what is
		// durable already needs no wait.
		c.durable = nil
		for _, w := range waits {
			if w.rl != nil && w.rl.HighWatermark() <= w.last || w.rl == nil && w.p.DurableOffset() <= w.last {
				c.durable = append(c.durable, w)
			}
		}
		c.durableTimeout = time.Duration(req.TimeoutMillis) * time.Millisecond
		if c.durableTimeout <= 0 {
			c.durableTimeout = 30 * time.Second
		}
	}
	return resp, nil
}

// partitionForProduce finds a partition, creating its topic first when
// auto-creation is on.
func (s *Server) partitionForProduce(c *conn, topic string, partition int32) (*flog.Partition, error) {
	if topic == offsetsTopic { // Kafka refuses appends to internal topics
		return nil, errOffsetsTopic
	}
	p, err := s.partition(topic, partition)
	if errors.Is(err, flog.ErrUnknownTopic) && s.opts.AutoCreateTopics && c.canCreateTopic(topic) {
		if _, err = s.createTopic(topic, s.opts.DefaultPartitions, nil); err == nil {
			p, err = s.partition(topic, partition)
		}
	}
	return p, err
}
