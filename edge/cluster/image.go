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
}

// PartitionState is one partition's replica set and leadership.
type PartitionState struct {
	Replicas    []int32 `json:"replicas"`
	Leader      int32   `json:"leader"`
	LeaderEpoch int32   `json:"leader_epoch"`
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
	c.Index, c.NextProducerID = im.Index, im.NextProducerID
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
			nt.Partitions[i] = PartitionState{Replicas: append([]int32(nil), p.Replicas...), Leader: p.Leader, LeaderEpoch: p.LeaderEpoch}
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

// electable is the first replica of p that is registered and unfenced, or
// NoLeader. At replication factor 1 that is the one replica or nobody.
func (im *Image) electable(p PartitionState) int32 {
	for _, r := range p.Replicas {
		if b := im.Brokers[r]; b != nil && !b.Fenced {
			return r
		}
	}
	return NoLeader
}

// reelect gives every partition whose leader is not electable any more the
// first electable replica (or none), bumping the leader epoch on each
// change; it is how fencing and unfencing move leadership, inside Apply.
func (im *Image) reelect() {
	for _, name := range im.TopicNames() {
		t := im.Topics[name]
		for i := range t.Partitions {
			p := &t.Partitions[i]
			if p.Leader != NoLeader {
				if b := im.Brokers[p.Leader]; b != nil && !b.Fenced {
					continue
				}
			}
			if next := im.electable(*p); next != p.Leader {
				p.Leader = next
				p.LeaderEpoch++
			}
		}
	}
}
