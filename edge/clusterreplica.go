package edge

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"

	"ferry/edge/cluster"
	"ferry/edge/replica"
)

// replicaMetadata is the cluster's raft image as this node's replica
// manager reads it (replica.Metadata): the partitions with a replica here,
// the leader's ISR proposals through the controller, and replica streams
// to the other brokers' cluster listeners.
type replicaMetadata struct {
	c  *cluster.Node
	tr *cluster.Transport
}

func (m replicaMetadata) Self() int32 { return m.c.ID() }

func (m replicaMetadata) Assignments() ([]replica.Assignment, <-chan struct{}) {
	changed := m.c.FSM().Changed()
	var out []replica.Assignment
	m.c.FSM().View(func(im *cluster.Image) {
		for _, ra := range im.Replicas(m.c.ID()) {
			a := replica.Assignment{Topic: ra.Topic, Partition: ra.Partition, Replicas: ra.Replicas, ISR: ra.ISR,
				Leader: ra.Leader, LeaderEpoch: ra.LeaderEpoch, PartitionEpoch: ra.PartitionEpoch, MinISR: int(ra.MinISR)}
			if id, err := hex.DecodeString(ra.TopicID); err == nil && len(id) == len(a.TopicID) {
				copy(a.TopicID[:], id)
			}
			out = append(out, a)
		}
	})
	return out, changed
}

func (m replicaMetadata) AlterPartition(ctx context.Context, topic string, partition, leaderEpoch, partitionEpoch int32, isr []int32) (int32, error) {
	return m.c.AlterPartition(ctx, topic, partition, leaderEpoch, partitionEpoch, isr)
}

func (m replicaMetadata) Dial(ctx context.Context, broker int32) (net.Conn, error) {
	var addr string
	var ok bool
	m.c.FSM().View(func(im *cluster.Image) { addr, ok = im.ClusterAddr(broker) })
	if !ok {
		return nil, fmt.Errorf("cluster: broker %d has no cluster address", broker)
	}
	return m.tr.DialReplica(ctx, addr)
}
