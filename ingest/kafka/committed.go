package kafka

import (
	"cmp"
	"encoding/json"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// CommittedOffset is one group's committed offset for one partition.
type CommittedOffset struct {
	Group     string
	Topic     string
	Partition int32
	Offset    int64
}

// AllCommitted returns every group's committed offsets, ordered by group,
// topic and partition, in one read of the offsets file. Operators' views
// (the status page's consumer lag) use it; it does not take the
// coordinator's lock. In a cluster they are the offsets of the groups
// this broker coordinates.
func (g *Groups) AllCommitted() ([]CommittedOffset, error) { return g.store.all() }

func (b boltStore) all() ([]CommittedOffset, error) {
	var out []CommittedOffset
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(offsetsBucket).ForEach(func(k, v []byte) error {
			gid, topic, p, ok := parseOffsetKey(k)
			if !ok {
				return nil
			}
			var co committedOffset
			if json.Unmarshal(v, &co) != nil {
				return nil
			}
			out = append(out, CommittedOffset{Group: gid, Topic: topic, Partition: p, Offset: co.Offset})
			return nil
		})
	})
	return out, err
}

// sortCommitted orders offsets by group, topic and partition.
func sortCommitted(cs []CommittedOffset) {
	slices.SortFunc(cs, func(a, b CommittedOffset) int {
		return cmp.Or(strings.Compare(a.Group, b.Group), strings.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
}
