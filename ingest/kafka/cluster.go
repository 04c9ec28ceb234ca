package kafka

import (
	flog "ferry/log"
)

// Cluster is the front end's view of the brokers it serves among: who they
// are, which leads each partition, who coordinates a group. A node alone
// is its own cluster (soloCluster, the default); a `ferry full` node of a
// cluster is given a view of the cluster's metadata by the node's assembly
// (edge), so this package never depends on how the metadata is agreed.
type Cluster interface {
	// Brokers are the live brokers, as clients reach them.
	Brokers() []Broker
	// Controller is the controller's broker id (-1: none known).
	Controller() int32
	// Partition is a partition's leadership; ok is false when the
	// cluster has no such partition.
	Partition(topic string, partition int32) (p PartitionView, ok bool)
	// Coordinator is the broker coordinating a group; ok is false while
	// it is not available.
	Coordinator(group string) (b Broker, ok bool)
}

// Broker is one broker as Metadata names it.
type Broker struct {
	ID   int32
	Host string
	Port int32
	Rack *string
}

// PartitionView is one partition's leadership as Metadata reports it.
type PartitionView struct {
	Leader      int32 // -1: offline
	LeaderEpoch int32
	Replicas    []int32
	ISR         []int32
	Offline     []int32 // replicas on brokers that are not live
}

// OfflineReplicas is Offline, never nil (Metadata's array is not nullable).
func (p PartitionView) OfflineReplicas() []int32 {
	if p.Offline == nil {
		return []int32{}
	}
	return p.Offline
}

// TopicAdmin changes topics: *log.Log for a node alone; a cluster's
// implementation applies each change through its controller and returns
// once the local log shows it. Every topic change of the front end
// (CreateTopics, DeleteTopics, CreatePartitions, configs, auto-creation)
// goes through it.
type TopicAdmin interface {
	CreateTopic(name string, partitions int32, configs map[string]string) (flog.TopicInfo, error)
	DeleteTopic(name string) error
	AddPartitions(name string, total int32) error
	AlterConfigs(name string, set map[string]string, remove []string) error
}

// soloCluster is a node alone: it is the only broker, leads every
// partition of its log and coordinates every group.
type soloCluster struct{ s *Server }

func (c soloCluster) self() Broker {
	host, port := c.s.advertisedHostPort()
	return Broker{ID: c.s.opts.NodeID, Host: host, Port: port}
}

func (c soloCluster) Brokers() []Broker { return []Broker{c.self()} }

func (c soloCluster) Controller() int32 { return c.s.opts.NodeID }

func (c soloCluster) Partition(topic string, partition int32) (PartitionView, bool) {
	n, err := c.s.log.PartitionCount(topic)
	if err != nil || partition < 0 || partition >= n {
		return PartitionView{}, false
	}
	id := c.s.opts.NodeID
	return PartitionView{Leader: id, Replicas: []int32{id}, ISR: []int32{id}}, true
}

func (c soloCluster) Coordinator(string) (Broker, bool) { return c.self(), true }

// leads says whether this node leads the partition (or whether the cluster
// does not know it, which the log's own error then reports).
func (s *Server) leads(topic string, partition int32) bool {
	p, ok := s.cluster.Partition(topic, partition)
	return !ok || p.Leader == s.opts.NodeID
}
