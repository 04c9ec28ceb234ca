package replica

import (
	"context"
	"net"
	"slices"
)

// Assignment is one partition with a replica on this node, as the metadata
// says now.
type Assignment struct {
	Topic     string
	TopicID   [16]byte
	Partition int32
	// Replicas are the brokers holding a replica, the preferred leader
	// first; ISR is the in-sync set the controller last committed.
	Replicas, ISR []int32
	// Leader is the leading broker (-1: none, the partition is offline)
	// at LeaderEpoch; PartitionEpoch counts every change of the
	// partition's state (leader or ISR), as Kafka's partition epoch.
	Leader, LeaderEpoch, PartitionEpoch int32
	// MinISR is the topic's min.insync.replicas (0 counts as 1).
	MinISR int
}

// Metadata is the cluster's metadata as one node's replica manager sees
// it; the node's assembly implements it over the raft image
// (edge/cluster), tests with a fake they control. It must be safe for
// concurrent use.
type Metadata interface {
	// Self is this node's broker id.
	Self() int32
	// Assignments are the partitions with a replica on this node now, and
	// a channel closed at the next change of the metadata.
	Assignments() ([]Assignment, <-chan struct{})
	// AlterPartition proposes isr as the in-sync set of a partition this
	// node leads (Kafka's AlterPartition), at the leader and partition
	// epochs it knows; it returns once the controller has committed the
	// change, with the new partition epoch, or an error (a fenced leader
	// epoch, a stale partition epoch, an ineligible replica, no
	// controller): the replica manager retries after the next metadata
	// change.
	AlterPartition(ctx context.Context, topic string, partition, leaderEpoch, partitionEpoch int32, isr []int32) (int32, error)
	// Dial opens a replica-fetch connection to a broker's cluster listener
	// (mutually authenticated there), on which that broker serves Kafka
	// frames (kafka.Server.ServeReplica).
	Dial(ctx context.Context, broker int32) (net.Conn, error)
}

func (a Assignment) minISR() int { return max(a.MinISR, 1) }

func (a Assignment) hasReplica(id int32) bool { return slices.Contains(a.Replicas, id) }
