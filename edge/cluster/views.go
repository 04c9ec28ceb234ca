package cluster

// ReplicaAssignment is one partition with a replica on a broker, as the
// data path needs it: whom to follow or lead, at which epochs, and how
// many in-sync replicas acks=all needs.
type ReplicaAssignment struct {
	Topic          string  `json:"topic"`
	TopicID        string  `json:"topic_id"`
	Partition      int32   `json:"partition"`
	Replicas       []int32 `json:"replicas"`
	ISR            []int32 `json:"isr"`
	ELR            []int32 `json:"elr,omitempty"`
	Leader         int32   `json:"leader"`
	LeaderEpoch    int32   `json:"leader_epoch"`
	PartitionEpoch int32   `json:"partition_epoch"`
	// MinISR is the topic's min.insync.replicas, or the cluster's default
	// capped at the replication factor.
	MinISR int32 `json:"min_isr"`
	// AddingReplicas and RemovingReplicas: a reassignment under way
	// (reassign.go); the adding ones follow the leader as any replica.
	AddingReplicas   []int32 `json:"adding_replicas,omitempty"`
	RemovingReplicas []int32 `json:"removing_replicas,omitempty"`
}

// Replicas lists every partition with a replica on broker, by topic name
// then partition. The slices are copies.
func (im *Image) Replicas(broker int32) []ReplicaAssignment {
	var out []ReplicaAssignment
	for _, name := range im.TopicNames() {
		t := im.Topics[name]
		minISR := im.MinISR(t)
		for i, p := range t.Partitions {
			has := false
			for _, r := range p.Replicas {
				has = has || r == broker
			}
			if has {
				out = append(out, assignmentOf(t, int32(i), p, minISR))
			}
		}
	}
	return out
}

func assignmentOf(t *Topic, i int32, p PartitionState, minISR int32) ReplicaAssignment {
	c := p.clone()
	return ReplicaAssignment{Topic: t.Name, TopicID: t.ID, Partition: i, Replicas: c.Replicas, ISR: c.ISR, ELR: c.ELR,
		Leader: c.Leader, LeaderEpoch: c.LeaderEpoch, PartitionEpoch: c.PartitionEpoch, MinISR: minISR,
		AddingReplicas: c.AddingReplicas, RemovingReplicas: c.RemovingReplicas}
}

// ClusterAddr is the broker's cluster listener (its "cluster" endpoint):
// where followers dial a leader's replica stream.
func (im *Image) ClusterAddr(broker int32) (string, bool) {
	b := im.Brokers[broker]
	if b == nil || b.Endpoints["cluster"] == "" {
		return "", false
	}
	return b.Endpoints["cluster"], true
}

// ReplicationCounts are the partitions not fully replicated.
type ReplicationCounts struct {
	// UnderReplicated: fewer in-sync replicas than replicas (the original
	// ones during a reassignment, as Kafka counts).
	UnderReplicated int `json:"under_replicated_partitions"`
	// UnderMinISR: fewer in-sync replicas than min.insync.replicas
	// (acks=all is refused).
	UnderMinISR int `json:"under_min_isr_partitions"`
	// Offline: no leader.
	Offline int `json:"offline_partitions"`
}

// Replication counts the partitions not fully replicated: those led by
// leader, or all of them when leader is NoLeader. Offline partitions have
// no leader, so they are counted only for all.
func (im *Image) Replication(leader int32) ReplicationCounts {
	var c ReplicationCounts
	for _, t := range im.Topics {
		minISR := im.MinISR(t)
		for _, p := range t.Partitions {
			if leader != NoLeader && p.Leader != leader {
				continue
			}
			if p.Leader == NoLeader {
				c.Offline++
			}
			if int32(len(p.ISR)) < p.replicationFactor() {
				c.UnderReplicated++
			}
			if int32(len(p.ISR)) < minISR {
				c.UnderMinISR++
			}
		}
	}
	return c
}

// PartitionStatus is one partition in `ferry cluster status`.
type PartitionStatus struct {
	ReplicaAssignment
	UnderReplicated bool `json:"under_replicated,omitempty"`
	UnderMinISR     bool `json:"under_min_isr,omitempty"`
}

// PartitionStatuses are every partition's replication state, by topic
// then partition.
func (im *Image) PartitionStatuses() []PartitionStatus {
	out := []PartitionStatus{}
	for _, name := range im.TopicNames() {
		t := im.Topics[name]
		minISR := im.MinISR(t)
		for i, p := range t.Partitions {
			out = append(out, PartitionStatus{ReplicaAssignment: assignmentOf(t, int32(i), p, minISR),
				UnderReplicated: int32(len(p.ISR)) < p.replicationFactor(), UnderMinISR: int32(len(p.ISR)) < minISR})
		}
	}
	return out
}
