package cluster

import (
	"errors"
	"fmt"
	"sort"
)

// ErrNotEnoughBrokers is returned when a topic asks for more replicas than
// there are unfenced brokers.
var ErrNotEnoughBrokers = errors.New("cluster: not enough live brokers")

// Place chooses the replicas of count new partitions. Each partition's
// first replica (its preferred leader) is the unfenced broker leading the
// fewest partitions, then holding the fewest replicas, counting those this
// placement gives it, ties to the lowest id; further replicas are the
// least loaded others (so at replication factor 3 on three brokers the
// leaders still spread).
// A topic with a group (a mirrored topic's edge) goes where that group's
// topics already are, when that broker is live, so one edge's partitions
// stay together and one node receives its mirror stream.
func (im *Image) Place(count, replicationFactor int, group string) ([][]int32, error) {
	if count <= 0 {
		return nil, fmt.Errorf("%w: %d partitions", ErrInvalidAssignment, count)
	}
	if replicationFactor <= 0 {
		replicationFactor = 1
	}
	if replicationFactor > MaxReplicationFactor {
		return nil, fmt.Errorf("%w: replication factor %d (at most %d)", ErrInvalidAssignment, replicationFactor, MaxReplicationFactor)
	}
	var live []int32
	for _, id := range im.BrokerIDs(true) {
		if !im.Brokers[id].ShuttingDown {
			live = append(live, id)
		}
	}
	if len(live) < replicationFactor {
		return nil, fmt.Errorf("%w: replication factor %d, %d unfenced broker(s)", ErrNotEnoughBrokers, replicationFactor, len(live))
	}
	load, leads := im.PartitionsPerBroker()
	home := im.groupHome(group)
	out := make([][]int32, count)
	for i := range out {
		order := append([]int32(nil), live...)
		sort.SliceStable(order, func(a, b int) bool {
			if (order[a] == home) != (order[b] == home) {
				return order[a] == home
			}
			if leads[order[a]] != leads[order[b]] {
				return leads[order[a]] < leads[order[b]]
			}
			return load[order[a]] < load[order[b]]
		})
		rest := order[1:]
		sort.SliceStable(rest, func(a, b int) bool { return load[rest[a]] < load[rest[b]] })
		out[i] = append([]int32(nil), order[:replicationFactor]...)
		leads[out[i][0]]++
		for _, r := range out[i] {
			load[r]++
		}
	}
	return out, nil
}

// groupHome is the live broker leading the most partitions of the group's
// topics (ties to the lowest id); for a group with none, the live broker
// holding the mirror session of the edge the group is named after (an
// edge's first topics go where it connected); else NoLeader.
func (im *Image) groupHome(group string) int32 {
	if group == "" {
		return NoLeader
	}
	led := map[int32]int{}
	for _, t := range im.Topics {
		if t.Group != group {
			continue
		}
		for _, p := range t.Partitions {
			if p.Leader != NoLeader {
				led[p.Leader]++
			}
		}
	}
	home, most := NoLeader, 0
	for _, id := range im.BrokerIDs(true) {
		if led[id] > most {
			home, most = id, led[id]
		}
	}
	if home == NoLeader {
		if s := im.Mirror[group]; s != nil {
			if b := im.Brokers[s.Node]; b != nil && !b.Fenced {
				home = s.Node
			}
		}
	}
	return home
}
