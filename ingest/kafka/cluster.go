package kafka

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"

	flog "ferry/log"
)

// Errors a cluster's TopicAdmin returns, which the front end answers with
// Kafka's codes.
var (
	// ErrNoController: no controller can apply the change now
	// (NOT_CONTROLLER, which clients retry).
	ErrNoController = errors.New("kafka: no controller available")
	// ErrReplicationFactor: more replicas than live brokers, or a factor
	// the cluster does not offer (INVALID_REPLICATION_FACTOR).
	ErrReplicationFactor = errors.New("kafka: replication factor not possible")
	// ErrInvalidReplicaAssignment: replicas a reassignment cannot move to
	// (INVALID_REPLICA_ASSIGNMENT).
	ErrInvalidReplicaAssignment = errors.New("kafka: invalid replica assignment")
	// ErrNoReassignment: cancelling a reassignment that is not under way
	// (NO_REASSIGNMENT_IN_PROGRESS).
	ErrNoReassignment = errors.New("kafka: no reassignment in progress")
)

// AdvertisedAddr is the host:port this broker gives clients.
func (s *Server) AdvertisedAddr() string {
	host, port := s.advertisedHostPort()
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

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

// Reassigner is a TopicAdmin that moves partitions between brokers (a
// cluster's, through its controller): AlterPartitionReassignments and
// ListPartitionReassignments. A node alone has none, and answers as a
// Kafka cluster of one broker would.
type Reassigner interface {
	// ReassignPartition moves a partition to replicas, or with cancel
	// restores the replicas it had before the reassignment under way;
	// returns once the change is applied (ErrInvalidReplicaAssignment,
	// ErrNoReassignment, log.ErrUnknownTopic, ErrNoController).
	ReassignPartition(topic string, partition int32, replicas []int32, cancel bool) error
	// Reassignments are the partitions being reassigned.
	Reassignments() []Reassignment
}

// Reassignment is one partition under reassignment: Replicas is the
// target followed by the replicas leaving.
type Reassignment struct {
	Topic                      string
	Partition                  int32
	Replicas, Adding, Removing []int32
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

// errNotLeader: the partition is led by another broker, or by none
// (NOT_LEADER_OR_FOLLOWER: the client refreshes its metadata and goes to
// the leader).
var errNotLeader = errors.New("kafka: this broker does not lead the partition")

// partition is the log's partition when this broker leads it. A partition
// the cluster does not know (yet) is the log's to answer for.
func (s *Server) partition(topic string, partition int32) (*flog.Partition, error) {
	p, err := s.log.Partition(topic, partition)
	if err != nil || s.opts.Cluster == nil {
		return p, err // alone, this node leads every partition it has
	}
	if pv, ok := s.cluster.Partition(topic, partition); ok && pv.Leader != s.opts.NodeID {
		return nil, fmt.Errorf("%w: %s-%d is led by broker %d", errNotLeader, topic, partition, pv.Leader)
	}
	return p, nil
}

// coordinatorCode says whether this broker coordinates group now: 0 if it
// does (always, alone); NOT_COORDINATOR if the Cluster names another (the
// client asks FindCoordinator again); COORDINATOR_LOAD_IN_PROGRESS while
// it leads the group's offsets partition but has not loaded it (the client
// retries here).
func (s *Server) coordinatorCode(group string) int16 {
	if s.opts.Cluster != nil {
		if b, ok := s.cluster.Coordinator(group); !ok || b.ID != s.opts.NodeID {
			return kerr.NotCoordinator.Code
		}
	}
	return s.opts.Groups.loadCode(group)
}
