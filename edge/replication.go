package edge

import (
	"fmt"

	"ferry/edge/replica"
	"ferry/ingest/kafka"
	flog "ferry/log"
	"ferry/mirror"
)

// KafkaReplication is a replica manager as the Kafka front end's
// Replication (Options.Replication): its *replica.Leader has the methods
// of kafka.ReplicaLeader, but the interface's Leader must return the
// front end's type, which edge/replica may not import.
func KafkaReplication(m *replica.Manager) kafka.Replication { return kafkaReplication{m} }

type kafkaReplication struct{ m *replica.Manager }

func (r kafkaReplication) Leader(topic string, partition int32) (kafka.ReplicaLeader, bool) {
	l, ok := r.m.Leader(topic, partition)
	if !ok {
		return nil, false
	}
	return l, true
}

// ReplicatedMirrorTarget is the mirror receiver's Target (ReceiverOptions.Log)
// on a node with a replica manager: a partition replicated here is written
// only while this node leads it, through replica.CommittedCopy (stamped
// with the leader epoch, acknowledged once committed, resumed from the
// committed end); one the metadata does not replicate here is the log's
// own.
func ReplicatedMirrorTarget(l *flog.Log, m *replica.Manager) mirror.Target {
	return replicatedTarget{mirror.LogTarget{Log: l}, m}
}

type replicatedTarget struct {
	mirror.LogTarget
	m *replica.Manager
}

func (t replicatedTarget) Partition(topic string, partition int32) (mirror.Copy, error) {
	if c, ok := t.m.Copy(topic, partition); ok {
		return c, nil
	}
	if t.m.Replicates(topic, partition) {
		return nil, fmt.Errorf("%w: %s-%d", flog.ErrNotLeader, topic, partition)
	}
	return t.LogTarget.Partition(topic, partition)
}
