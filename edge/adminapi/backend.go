package adminapi

import (
	"time"

	"ferry/devices"
	"ferry/edge/cluster"
	"ferry/ingest/kafka"
	flog "ferry/log"
	"ferry/mirror"
)

// Backend is the node as the admin API sees it. Every method is called
// per request and answers the node as it is now; a part the node does not
// run answers nil (or false), never a typed nil.
type Backend interface {
	// Node is the node's identity, readiness and listeners.
	Node() NodeInfo
	// Log is the node's storage engine: topics, partitions and their
	// offsets are read from it.
	Log() *flog.Log
	// TopicAdmin is where topic changes go: the cluster's controller in a
	// cluster, else the log.
	TopicAdmin() kafka.TopicAdmin
	// Groups is the consumer-group coordinator; nil without a Kafka
	// listener.
	Groups() Groups
	// Devices is the device registry (devices, Kafka users and ACLs); nil
	// when the node runs none.
	Devices() *devices.Registry
	// UserChanges is where changes to Kafka users and ACLs go when they
	// are not the registry's own: the cluster's metadata, for a node of a
	// cluster (the registry follows it). nil: the registry.
	UserChanges() UserStore
	// MirrorSender is the edge's link to its center; false when the node
	// mirrors nothing.
	MirrorSender() (mirror.Status, bool)
	// MirrorReceiver is a center's copies of each edge; false when the
	// node receives nothing.
	MirrorReceiver() (mirror.ReceiverStatus, bool)
	// Cluster is the node's copy of the cluster's metadata; nil for a node
	// alone.
	Cluster() Cluster
}

// NodeInfo is what the node says of itself in GET /api/status and
// /readyz.
type NodeInfo struct {
	Mode      string // edge or full; "" is edge
	Version   string // "" is dev
	Ready     bool
	StartedAt time.Time
	DataDir   string
	// AdminAuth says whether the admin API needs a bearer token.
	AdminAuth bool
	Listeners ListenersView
	// DefaultPartitions is what a topic created without a count gets (0
	// means 1).
	DefaultPartitions int32
	// Auth is the MQTT authentication mode and DevicesOnline the MQTT
	// clients connected now; "" and 0 without MQTT.
	Auth          string
	DevicesOnline int64
}

// Groups is the coordinator's side of the groups API
// (ingest/kafka/groupadmin.go); *kafka.Groups is one.
type Groups interface {
	List() []kafka.GroupInfo
	Group(id string) (kafka.GroupInfo, error)
	Delete(id string) error
	CommittedOffsets(group string) (map[string]map[int32]int64, error)
	ResetOffsets(group, topic string, offsets map[int32]int64) error
}

// UserStore changes Kafka users and ACLs; *devices.Registry is one.
type UserStore interface {
	AddUser(name, password string) error
	SetUserPassword(name, password string) error
	DeleteUser(name string) error
	AddKafkaACLs(acls []devices.KafkaACL) error
	DeleteKafkaACLs(f devices.KafkaACLFilter) ([]devices.KafkaACL, error)
}

// Cluster is the node's copy of the cluster's metadata; *cluster.Node is
// one.
type Cluster interface {
	Status() cluster.Status
	Image() *cluster.Image
}
