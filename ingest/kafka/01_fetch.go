package kafka

import (
	"context"
	"encoding/binary"
	"reflect"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// Fetch: v4-12
//
// Behavior:
//   - Returns stored RecordBatches unchanged, whole: a fetch at an offset
//     inside a batch returns that whole batch (consumers skip the records
//     before their offset). Each partition gets at most PartitionMaxBytes
//     and the response at most MaxBytes, except that the first batch of the
//     response is always whole, so a consumer progresses past a batch larger
//     than its limits (KIP-74).
//   - Long poll: while fewer than MinBytes are available and no partition
//     has an error, the request waits up to MaxWaitMillis and is woken by
//     the next append to any partition it asks for (no polling loop).
//   - OFFSET_OUT_OF_RANGE for an offset below the log start or past the end;
//     UNKNOWN_TOPIC_OR_PARTITION for unknown topics; CORRUPT_MESSAGE for a
//     damaged batch (reads of other ranges keep working), as Kafka answers
//     when a segment's batch cannot be read, and which consumers surface
//     as an error rather than retry silently; KAFKA_STORAGE_ERROR for other
//     read failures. A failing partition is logged at most once a minute
//     (ratelog.go), not at every fetch a stalled consumer repeats.
//   - High watermark and last stable offset are the end offset (one node,
//     no transactions); LogStartOffset is the partition's start offset.
//   - A replicated partition (Options.Replication) is served by its leader
//     only (NOT_LEADER_OR_FOLLOWER elsewhere; CurrentLeaderEpoch older than
//     the leader's is FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH). A
//     consumer reads whole batches below the high watermark, which the
//     answer carries (read_uncommitted = high watermark, no transactions).
//   - A follower's fetch (ReplicaID ≥ 0) is served only on a connection the
//     cluster listener handed over (ServeReplica); elsewhere every
//     partition is TOPIC_AUTHORIZATION_FAILED, as Kafka answers a principal
//     without CLUSTER_ACTION. It reads up to the log end; its fetch offset
//     is recorded as the follower's end (FollowerFetched, with its log
//     start) unless its
//     LastFetchedEpoch ended here before that offset or is unknown here,
//     when the answer is DivergingEpoch (KIP-320), from the leader-epoch
//     cache, and no records.
//   - Bytes are read from the segment files with pread into the response,
//     not sent with sendfile: the issue asks for kmsg as the only codec, and
//     kmsg encodes a whole response into one buffer, so splicing file ranges
//     between its pieces would mean framing the response by hand. Measured
//     consumption is 4.9 M records/s (testbed/BENCHMARKS.md).
//   - With ACLs, a topic the principal may not READ is answered
//     TOPIC_AUTHORIZATION_FAILED for each of its partitions.
//   - Fetch sessions (KIP-227) are not kept: every response has session id
//     0, which tells clients to send full requests; an incremental request
//     for a session id we never gave gets FETCH_SESSION_ID_NOT_FOUND.
//
// Version notes:
//   - v4: RecordBatch v2, LastStableOffset, IsolationLevel (ignored)
//   - v5: LogStartOffset; v7: sessions; v11: RackID; v12: flexible,
//     LastFetchedEpoch and DivergingEpoch (v13+, topic ids, and v15's
//     ReplicaState are not served: followers fetch at v12 with ReplicaID)

func init() { register(1, 4, 12, serveFetch) }

func serveFetch(s *Server, ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.FetchRequest)
	if req.Version >= 7 && req.SessionID != 0 {
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		resp.ErrorCode = kerr.FetchSessionIDNotFound.Code
		return resp, nil
	}
	var denied map[string]bool // topics the principal may not READ
	follower := int32(-1)
	if req.ReplicaID >= 0 {
		// A replica's fetch is a broker's, served only on a connection the
		// cluster listener handed over (Kafka: CLUSTER_ACTION, else
		// TOPIC_AUTHORIZATION_FAILED for every partition).
		follower = req.ReplicaID
	}
	for _, rt := range req.Topics {
		if follower >= 0 && !c.replica || follower < 0 && !c.canTopic(kmsg.ACLOperationRead, rt.Topic) {
			if denied == nil {
				denied = map[string]bool{}
			}
			denied[rt.Topic] = true
		}
	}
	deadline := time.Now().Add(time.Duration(req.MaxWaitMillis) * time.Millisecond)
	for {
		resp, total, anyErr, waits := s.fetchOnce(req, denied, follower)
		if total >= int(req.MinBytes) || anyErr || len(waits) == 0 || !time.Now().Before(deadline) {
			return s.countServed(req, resp, follower), nil
		}
		// Wait for an append to any asked-for partition, the deadline, or
		// shutdown; then read again.
		timer := time.NewTimer(time.Until(deadline))
		cases := make([]reflect.SelectCase, 0, len(waits)+2)
		cases = append(cases,
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timer.C)},
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())})
		for _, w := range waits {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(w)})
		}
		chosen, _, _ := reflect.Select(cases)
		timer.Stop()
		if chosen <= 1 {
			resp, _, _, _ := s.fetchOnce(req, denied, follower)
			return s.countServed(req, resp, follower), nil
		}
	}
}

// RecordsServed is how many records fetches have returned since the server
// started: for each partition of a response, the offsets from the one asked
// for to the end of the last batch returned (the records of a whole batch
// before the fetch offset, which consumers skip, are not counted).
func (s *Server) RecordsServed() int64 { return s.recordsServed.Load() }

// countServed adds the records of a fetch response to RecordsServed and
// returns the response; a follower's (replication, not consumption) are
// not counted. fetchOnce answers every asked-for partition, in the
// request's order.
func (s *Server) countServed(req *kmsg.FetchRequest, resp *kmsg.FetchResponse, follower int32) *kmsg.FetchResponse {
	if follower >= 0 {
		return resp
	}
	var n int64
	for i, t := range resp.Topics {
		for j, p := range t.Partitions {
			if len(p.RecordBatches) > 0 && i < len(req.Topics) && j < len(req.Topics[i].Partitions) {
				n += recordsFrom(p.RecordBatches, req.Topics[i].Partitions[j].FetchOffset)
			}
		}
	}
	if n > 0 {
		s.recordsServed.Add(n)
	}
	return resp
}

// recordsFrom counts the offsets from offset to the end of the last whole
// batch in data, walking the batches' headers only.
func recordsFrom(data []byte, offset int64) int64 {
	const headerLen = 61 // RecordBatch v2 header up to the record count
	first, end := int64(-1), int64(-1)
	for len(data) >= headerLen {
		base := int64(binary.BigEndian.Uint64(data[0:8]))
		size := int(binary.BigEndian.Uint32(data[8:12])) + 12
		if size < headerLen || size > len(data) {
			break
		}
		if first < 0 {
			first = base
		}
		end = base + int64(int32(binary.BigEndian.Uint32(data[23:27]))) + 1
		data = data[size:]
	}
	if end < 0 {
		return 0
	}
	return max(end-max(first, offset), 0)
}

// fetchOnce reads every asked-for partition once. It returns the response,
// the bytes in it, whether any partition had an error, and for each
// partition a channel that an append closes, taken before the read so no
// append is missed. Topics in denied are answered TOPIC_AUTHORIZATION_FAILED.
func (s *Server) fetchOnce(req *kmsg.FetchRequest, denied map[string]bool, follower int32) (*kmsg.FetchResponse, int, bool, []<-chan struct{}) {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	budget := int(req.MaxBytes)
	if req.Version < 3 || budget <= 0 {
		budget = 1 << 30
	}
	total, anyErr := 0, false
	var waits []<-chan struct{}
	for _, rt := range req.Topics {
		name := rt.Topic
		st := kmsg.NewFetchResponseTopic()
		st.Topic, st.TopicID = name, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			// Empty, not null: librdkafka rejects a null record set.
			sp.RecordBatches = []byte{}
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
			if denied[name] {
				sp.ErrorCode, anyErr = kerr.TopicAuthorizationFailed.Code, true
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			p, err := s.partition(name, rp.Partition)
			if err != nil {
				sp.ErrorCode, anyErr = errorCode(err), true
				s.metrics.partitionError("Fetch", sp.ErrorCode)
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			waits = append(waits, p.Wait())
			var rl ReplicaLeader
			if s.opts.Replication != nil || follower >= 0 {
				var code int16
				rl, code = s.replicaFetch(name, p, rp, follower, &sp)
				if code != 0 || sp.DivergingEpoch.Epoch >= 0 {
					// An error, or a follower told where its log diverges:
					// answered at once.
					sp.ErrorCode, anyErr = code, true
					if code != 0 {
						s.metrics.partitionError("Fetch", code)
					}
					st.Partitions = append(st.Partitions, sp)
					continue
				}
			}
			// A consumer of a replicated partition reads below the high
			// watermark; a follower up to the end.
			hw := int64(-1)
			if rl != nil {
				hw = rl.HighWatermark()
			}
			max := int(rp.PartitionMaxBytes)
			if max > budget {
				max = budget
			}
			if total > 0 && max <= 0 {
				// Out of budget: report offsets only.
				sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = p.EndOffset(), p.EndOffset(), p.StartOffset()
				if hw >= 0 {
					sp.HighWatermark, sp.LastStableOffset = hw, hw
				}
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			if total > 0 && max < 1 {
				max = 1
			}
			r, err := p.Read(rp.FetchOffset, max, nil)
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = r.EndOffset, r.EndOffset, r.StartOffset
			if hw >= 0 {
				sp.HighWatermark, sp.LastStableOffset = hw, hw
				if follower < 0 {
					r.Data = below(r.Data, hw)
				}
			}
			if err != nil {
				sp.ErrorCode, anyErr = errorCode(err), true
				s.metrics.partitionError("Fetch", sp.ErrorCode)
				if sp.ErrorCode != kerr.OffsetOutOfRange.Code {
					if ok, n := s.fetchWarn.allow(fetchWarnKey{name, rp.Partition, sp.ErrorCode}, time.Now()); ok {
						s.logger.Warn("fetch failed", "topic", name, "partition", rp.Partition, "offset", rp.FetchOffset, "err", err, "not_logged_since", n)
					}
				}
			} else if total > 0 && len(r.Data) > max {
				// Only the response's first batch may exceed the limits.
			} else if len(r.Data) > 0 {
				sp.RecordBatches = r.Data
				total += len(r.Data)
				budget -= len(r.Data)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, total, anyErr, waits
}

// replicaFetch checks one partition of a fetch of a replicated partition
// (Kafka's Partition.fetchRecords): the leadership and CurrentLeaderEpoch
// (FENCED_LEADER_EPOCH if older, UNKNOWN_LEADER_EPOCH if newer); for a
// follower, whether its log diverges from the leader's (KIP-320: the epoch
// of its last fetched batch ended, here, before its fetch offset or is not
// an epoch here; answered in sp.DivergingEpoch with no records, and its
// fetch offset not taken as its end), else its fetch offset is recorded.
// It returns the partition's leader and an error code.
func (s *Server) replicaFetch(topic string, p *flog.Partition, rp kmsg.FetchRequestTopicPartition, follower int32, sp *kmsg.FetchResponseTopicPartition) (ReplicaLeader, int16) {
	if s.opts.Replication == nil {
		return nil, kerr.NotLeaderForPartition.Code // nothing here is replicated
	}
	rl, ok := s.opts.Replication.Leader(topic, rp.Partition)
	if !ok {
		return nil, kerr.NotLeaderForPartition.Code
	}
	sp.LogStartOffset = p.StartOffset()
	sp.HighWatermark = rl.HighWatermark()
	sp.LastStableOffset = sp.HighWatermark
	if code := fenceLeaderEpoch(rp.CurrentLeaderEpoch, rl.LeaderEpoch()); code != 0 {
		return nil, code
	}
	if follower < 0 {
		return rl, 0
	}
	if rp.LastFetchedEpoch >= 0 {
		epoch, end, err := p.EndOffsetForEpoch(rp.LastFetchedEpoch)
		switch {
		case err != nil:
			return nil, errorCode(err)
		case epoch < 0 || end < 0:
			return nil, kerr.OffsetOutOfRange.Code
		case epoch < rp.LastFetchedEpoch || end < rp.FetchOffset:
			sp.DivergingEpoch.Epoch, sp.DivergingEpoch.EndOffset = epoch, end
			return rl, 0
		}
	}
	if rp.FetchOffset > p.EndOffset() || rp.FetchOffset < p.StartOffset() {
		// Not an end this log can vouch for: never recorded (it would
		// count the follower as caught up).
		return nil, kerr.OffsetOutOfRange.Code
	}
	if err := rl.FollowerFetched(follower, rp.FetchOffset, rp.LogStartOffset); err != nil {
		return nil, errorCode(err)
	}
	sp.HighWatermark = rl.HighWatermark()
	sp.LastStableOffset = sp.HighWatermark
	return rl, 0
}

// below keeps the whole batches of data that end below offset (a
// consumer's read of a replicated partition stops at the high watermark,
// which falls between batches).
func below(data []byte, offset int64) []byte {
	const headerLen = 61
	keep := 0
	for rest := data; len(rest) >= headerLen; {
		base := int64(binary.BigEndian.Uint64(rest[0:8]))
		size := int(binary.BigEndian.Uint32(rest[8:12])) + 12
		if size < headerLen || size > len(rest) {
			break
		}
		if base+int64(int32(binary.BigEndian.Uint32(rest[23:27]))) >= offset {
			break
		}
		keep += size
		rest = rest[size:]
	}
	return data[:keep]
}
