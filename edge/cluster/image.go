package cluster

import (
	"sort"
)

// NoLeader is a partition's leader while none of its replicas can lead
// (Kafka's -1): the partition is offline.
const NoLeader int32 = -1

// Broker is one node as the metadata image knows it.
type Broker struct {
	ID int32 `json:"id"`
	// Incarnation changes each time the node process starts, so a record
	// about an earlier run (a late fence, say) is recognised and ignored.
	Incarnation uint64 `json:"incarnation"`
	// Endpoints by listener name: "kafka", "mirror", "admin", "cluster".
	Endpoints map[string]string `json:"endpoints"`
	// Rack is the broker's rack, as Kafka reports it (may be empty).
	Rack string `json:"rack,omitempty"`
	// Fenced brokers lead nothing and are not given new partitions.
	Fenced bool `json:"fenced"`
	// ShuttingDown is set by a controlled shutdown (OpControlledShutdown)
	// of this incarnation: the broker is still alive but is not elected
	// leader, added to an in-sync set, or given new partitions; its next
	// registration (a new incarnation) clears it.
	ShuttingDown bool `json:"shutting_down,omitempty"`
}

// electable says whether b may lead or join an in-sync set: registered,
// unfenced and not shutting down.
func (b *Broker) electable() bool { return b != nil && !b.Fenced && !b.ShuttingDown }

// PartitionState is one partition's replica set, in-sync set and
// leadership (Kafka's PartitionRecord/PartitionChangeRecord as KRaft keeps
// them). elect.go has the rules that change it.
type PartitionState struct {
	Replicas []int32 `json:"replicas"`
	// ISR is the in-sync replica set, in replica order: the leader and
	// the followers caught up with it. Never empty: the last member stays
	// even when fenced (then the partition is offline, leader -1).
	ISR []int32 `json:"isr"`
	// ELR are KIP-966's eligible leader replicas: replicas out of the ISR
	// that still hold every committed record, because they left it while
	// the ISR was below min.insync.replicas (the high watermark cannot
	// advance then). Empty whenever len(ISR) >= min ISR; never overlaps
	// the ISR.
	ELR         []int32 `json:"elr,omitempty"`
	Leader      int32   `json:"leader"`
	LeaderEpoch int32   `json:"leader_epoch"`
	// PartitionEpoch is bumped by every change of leader, ISR, ELR or
	// replicas: AlterPartition names the one it read (KIP-497's
	// partition epoch).
	PartitionEpoch int32 `json:"partition_epoch"`
	// AddingReplicas and RemovingReplicas are a reassignment under way
	// (KIP-455, reassign.go): Replicas is then the target followed by the
	// original replicas leaving, Adding the target's brokers that were not
	// replicas, Removing the original ones not in the target. Both empty:
	// no reassignment.
	AddingReplicas   []int32 `json:"adding_replicas,omitempty"`
	RemovingReplicas []int32 `json:"removing_replicas,omitempty"`
}

func (p PartitionState) clone() PartitionState {
	c := p
	c.Replicas = append([]int32(nil), p.Replicas...)
	c.ISR = append([]int32(nil), p.ISR...)
	if p.ELR != nil {
		c.ELR = append([]int32(nil), p.ELR...)
	}
	if p.AddingReplicas != nil {
		c.AddingReplicas = append([]int32(nil), p.AddingReplicas...)
	}
	if p.RemovingReplicas != nil {
		c.RemovingReplicas = append([]int32(nil), p.RemovingReplicas...)
	}
	return c
}

// Topic is one topic as the image knows it.
type Topic struct {
	Name string `json:"name"`
	// ID is Kafka's topic id, in hex, chosen by whoever proposed the
	// creation (never inside Apply).
	ID      string            `json:"id"`
	Configs map[string]string `json:"configs,omitempty"`
	// Group keeps topics together on placement: a mirrored topic's edge.
	Group      string           `json:"group,omitempty"`
	Partitions []PartitionState `json:"partitions"`
}

// MirrorSession is the one connection an edge may mirror through: a newer
// session (higher epoch) fences every older one, whichever node holds it.
type MirrorSession struct {
	Edge  string `json:"edge"`
	Node  int32  `json:"node"`
	Epoch int64  `json:"epoch"`
}

// Image is the cluster's metadata: what every node's FSM holds after
// applying the same records. Its zero value is an empty cluster.
type Image struct {
	// Index is the raft index of the last record applied (0: none).
	Index   uint64                    `json:"index"`
	Brokers map[int32]*Broker         `json:"brokers"`
	Topics  map[string]*Topic         `json:"topics"`
	Mirror  map[string]*MirrorSession `json:"mirror"`
	// NextProducerID is the first producer id not yet handed out.
	NextProducerID int64 `json:"next_producer_id"`
	// Deleted are the ids of deleted topics (hex) and the index that
	// deleted each: a node deletes its local copy of a topic only when its
	// id is here, never a local topic the cluster never knew.
	Deleted map[string]uint64 `json:"deleted,omitempty"`
	// Security: the Kafka users and ACLs (security.go).
	Security Security `json:"security"`
	// Defaults are the cluster-wide topic defaults the controller set
	// (OpClusterDefaults): in the image, not in each node's flags, so
	// every node applies the same min ISR rule.
	Defaults Defaults `json:"defaults"`
}

// Defaults are the cluster's topic defaults. Zero values (an image from
// before they existed) mean replication factor 1 and min ISR 1.
type Defaults struct {
	ReplicationFactor int32 `json:"replication_factor,omitempty"`
	MinInsyncReplicas int32 `json:"min_insync_replicas,omitempty"`
}

func newImage() *Image {
	return &Image{
		Brokers: map[int32]*Broker{},
		Topics:  map[string]*Topic{},
		Mirror:  map[string]*MirrorSession{},
		Deleted: map[string]uint64{},
	}
}

// clone is a deep copy: the FSM hands clones to readers, so its own image
// is never shared with a caller.
func (im *Image) clone() *Image {
	c := newImage()
	c.Index, c.NextProducerID, c.Defaults = im.Index, im.NextProducerID, im.Defaults
	for id, b := range im.Brokers {
		nb := *b
		nb.Endpoints = copyMap(b.Endpoints)
		c.Brokers[id] = &nb
	}
	for name, t := range im.Topics {
		nt := *t
		nt.Configs = copyMap(t.Configs)
		nt.Partitions = make([]PartitionState, len(t.Partitions))
		for i, p := range t.Partitions {
			nt.Partitions[i] = p.clone()
		}
		c.Topics[name] = &nt
	}
	for e, s := range im.Mirror {
		ns := *s
		c.Mirror[e] = &ns
	}
	for id, idx := range im.Deleted {
		c.Deleted[id] = idx
	}
	c.Security = im.Security.clone()
	return c
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// BrokerIDs are the brokers' ids in ascending order; live only the
// unfenced ones when live is set.
func (im *Image) BrokerIDs(live bool) []int32 {
	ids := make([]int32, 0, len(im.Brokers))
	for id, b := range im.Brokers {
		if !live || !b.Fenced {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// TopicNames are the topics' names in order.
func (im *Image) TopicNames() []string {
	names := make([]string, 0, len(im.Topics))
	for n := range im.Topics {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Leader is the leader and leader epoch of a partition; ok is false when
// the image has no such partition.
func (im *Image) Leader(topic string, partition int32) (leader, epoch int32, ok bool) {
	t := im.Topics[topic]
	if t == nil || partition < 0 || int(partition) >= len(t.Partitions) {
		return NoLeader, 0, false
	}
	p := t.Partitions[partition]
	return p.Leader, p.LeaderEpoch, true
}

// PartitionsPerBroker counts the partitions each broker holds a replica
// of, and those it leads.
func (im *Image) PartitionsPerBroker() (replicas, leads map[int32]int) {
	replicas, leads = map[int32]int{}, map[int32]int{}
	for _, t := range im.Topics {
		for _, p := range t.Partitions {
			for _, r := range p.Replicas {
				replicas[r]++
			}
			if p.Leader != NoLeader {
				leads[p.Leader]++
			}
		}
	}
	return replicas, leads
}

// Offline counts partitions with no leader.
func (im *Image) Offline() int {
	n := 0
	for _, t := range im.Topics {
		for _, p := range t.Partitions {
			if p.Leader == NoLeader {
				n++
			}
		}
	}
	return n
}
