package kafka

import (
	"context"
	"net"
	"time"

	flog "ferry/log"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Replication is this node's replica manager as the front end sees it
// (edge/replica implements it; the node's assembly sets it in Options).
// With it, the front end serves a partition only while the replica manager
// says this node leads it: producers append through it (it holds the
// leadership during the append and stamps the leader epoch), consumers
// read only below the high watermark, and followers' fetches on a replica
// connection (ServeReplica) report how far each follower has copied. Nil
// (a node alone, or a cluster that does not replicate) keeps the front end
// as it was: every offset up to the end offset is readable.
type Replication interface {
	// Leader is this node's leadership of a replicated partition; ok is
	// false when this node does not lead it now (NOT_LEADER_OR_FOLLOWER:
	// the client asks the metadata again).
	Leader(topic string, partition int32) (l ReplicaLeader, ok bool)
}

// ReplicaLeader is one partition this node leads. Its methods return
// flog.ErrNotLeader once the leadership has ended.
type ReplicaLeader interface {
	// LeaderEpoch is the epoch this node leads at (stamped into every
	// batch it appends); requests that carry another CurrentLeaderEpoch
	// are fenced (older) or told UNKNOWN_LEADER_EPOCH (newer).
	LeaderEpoch() int32
	// Append appends a producer's batch as leader, holding the leadership
	// meanwhile (a change of role waits for it). With acksAll it first
	// refuses with flog.ErrNotEnoughReplicas when the in-sync set is
	// smaller than min.insync.replicas, appending nothing (Kafka's
	// appendRecordsToLeader).
	Append(batch []byte, acksAll bool) (flog.AppendResult, error)
	// FollowerFetched records that replica fetched at fetchOffset: its log
	// holds everything below it (durably, in the replica manager's durable
	// mode), from logStart on (the fetch's LogStartOffset; -1 unknown). It
	// may advance the high watermark and take the follower back into the
	// in-sync set. An error means replica is not a replica of the
	// partition, or the leadership ended.
	FollowerFetched(replica int32, fetchOffset, logStart int64) error
	// HighWatermark is the committed end: consumers read below it.
	HighWatermark() int64
	// EpochStartOffset is the log's end offset when this node became
	// leader at LeaderEpoch (Kafka's leaderEpochStartOffset): until the
	// high watermark reaches it, the leader is catching up on what the
	// previous leader committed.
	EpochStartOffset() int64
	// WaitCommitted waits until the high watermark passes offset (nil),
	// the in-sync set falls below min.insync.replicas first
	// (flog.ErrNotEnoughReplicasAfterAppend), the leadership ends
	// (flog.ErrNotLeader), or ctx ends (its error).
	WaitCommitted(ctx context.Context, offset int64) error
}

// ServeReplica serves Kafka frames on a connection the node's cluster
// listener accepted from another broker (mutually authenticated there) and
// handed over, until the connection ends or the server closes. Only on
// such a connection is a Fetch from a replica (ReplicaID ≥ 0) served as a
// follower's fetch; the connection has no SASL exchange and no ACLs (it is
// a broker's, as Kafka's inter-broker principal is a super user). It
// returns when the connection has ended.
func (s *Server) ServeReplica(nc net.Conn) {
	c := newConn(s, nc)
	c.replica, c.super, c.principal = true, true, "User:broker"
	c.authBy = time.Time{} // no SASL on a broker's connection
	if !s.track(c) {
		nc.Close()
		return
	}
	defer s.untrack(c)
	c.serve()
}

// fenceLeaderEpoch checks a request's CurrentLeaderEpoch against the
// partition's leader epoch as Kafka's leader does for Fetch, ListOffsets
// and OffsetForLeaderEpoch: -1 (not sent) passes, an older one is
// FENCED_LEADER_EPOCH, a newer one UNKNOWN_LEADER_EPOCH (the client knows
// metadata this node does not yet). It returns 0 when it passes.
func fenceLeaderEpoch(current, leader int32) int16 {
	switch {
	case current < 0:
	case current < leader:
		return kerr.FencedLeaderEpoch.Code
	case current > leader:
		return kerr.UnknownLeaderEpoch.Code
	}
	return 0
}
