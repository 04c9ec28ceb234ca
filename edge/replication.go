package edge

import (
	"ferry/edge/replica"
	"ferry/ingest/kafka"
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
