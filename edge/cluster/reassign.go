package cluster

import (
	"context"
	"fmt"
	"slices"
)

// Partition reassignment, after Kafka's KIP-455 as its KRaft controller
// applies it (reassign_partitions records, decided inside Apply):
//
//   - Starting one with target replicas T on a partition whose replicas
//     are O (the original ones: Replicas less any AddingReplicas of a
//     reassignment under way, which the new one replaces): Replicas
//     becomes T followed by the members of O not in T, AddingReplicas
//     T−O, RemovingReplicas O−T. The ISR and ELR keep their members that
//     are still replicas (the ISR never empties: a target that would cut
//     every in-sync member is refused). A leader cut out is replaced by
//     the election rules of elect.go.
//   - The brokers added follow the leader like any replica; the leader
//     adds each to the ISR with AlterPartition once it has caught up.
//   - The reassignment completes in the record that makes the ISR cover
//     T (AlterPartition, or the start itself when T is already in sync):
//     Replicas = T, ISR = T, the ELR keeps its members in T, the removing
//     replicas are gone, and a leader being removed is replaced by the
//     first electable member of T. (It would wait while the leader is
//     being removed and no member of T could lead, so that completing
//     never takes a partition offline; but an ISR of more than one member
//     holds only brokers that can lead.)
//   - Cancelling restores O (in the order Replicas holds them, as Kafka
//     reverts): Replicas = O, the ISR and ELR cut back to O
//     (Kafka's rule), refused when no in-sync member would be left — the
//     records only the added replicas hold would be lost otherwise.
//   - Every change bumps the partition epoch; the leader epoch moves only
//     with the leader, as everywhere in elect.go.
//
// Completion is applied inside Apply rather than proposed by the
// controller: every node reaches it from the same records, there is no
// window in which a controller that crashed leaves a covered
// reassignment pending, and the leader's AlterPartition answer already
// shows the finished state (KRaft's ReplicationControlManager does the
// same in the AlterPartition's own PartitionChangeRecord).

// OpReassignPartitions starts, replaces or cancels the reassignment of one
// partition (Topic, Partition; Target, or Cancel).
const OpReassignPartitions Op = "reassign_partitions"

// ErrNoReassignment: cancelling a partition that is not being reassigned
// (Kafka's NO_REASSIGNMENT_IN_PROGRESS).
var ErrNoReassignment = fmt.Errorf("cluster: no reassignment in progress")

// Reassigning says whether a reassignment is under way.
func (p PartitionState) Reassigning() bool {
	return len(p.AddingReplicas) > 0 || len(p.RemovingReplicas) > 0
}

// Target is the replica set a reassignment under way moves to (Replicas
// when none is).
func (p PartitionState) Target() []int32 { return minus(p.Replicas, p.RemovingReplicas) }

// Original is the replica set before the reassignment under way (Replicas
// when none is).
func (p PartitionState) Original() []int32 { return minus(p.Replicas, p.AddingReplicas) }

// replicationFactor counts the original replicas, as Kafka does during a
// reassignment.
func (p PartitionState) replicationFactor() int32 { return int32(len(p.Original())) }

// checkTarget: 1..MaxReplicationFactor distinct registered brokers, and
// not fewer than the topic's own min.insync.replicas (acks=all could
// never be met).
func (im *Image) checkTarget(t *Topic, target []int32) error {
	if len(target) == 0 || len(target) > MaxReplicationFactor {
		return fmt.Errorf("%w: %d replicas (1 to %d)", ErrInvalidAssignment, len(target), MaxReplicationFactor)
	}
	seen := map[int32]bool{}
	for _, id := range target {
		if seen[id] {
			return fmt.Errorf("%w: broker %d twice", ErrInvalidAssignment, id)
		}
		seen[id] = true
		if im.Brokers[id] == nil {
			return fmt.Errorf("%w: broker %d is not registered", ErrInvalidAssignment, id)
		}
	}
	if _, set := t.Configs[ConfigMinInsyncReplicas]; set {
		if m := im.MinISR(t); int32(len(target)) < m {
			return fmt.Errorf("%w: %d replicas, below the topic's %s=%d", ErrInvalidAssignment, len(target), ConfigMinInsyncReplicas, m)
		}
	}
	return nil
}

// reassign is OpReassignPartitions' rule.
func (im *Image) reassign(rec Record) Result {
	t := im.Topics[rec.Topic]
	if t == nil || rec.Partition < 0 || int(rec.Partition) >= len(t.Partitions) {
		return Result{Err: fmt.Errorf("%w: %s-%d", ErrUnknownTopic, rec.Topic, rec.Partition)}
	}
	p := &t.Partitions[rec.Partition]
	r := im.rulesFor(t)
	before := p.clone()
	var err error
	if rec.Cancel {
		err = r.cancelReassignment(p)
	} else {
		if err = im.checkTarget(t, rec.Target); err == nil {
			err = r.startReassignment(p, rec.Target)
		}
	}
	if err != nil {
		*p = before
		return Result{Err: err}
	}
	if changed(before, *p) {
		p.PartitionEpoch = before.PartitionEpoch + 1
	}
	return Result{Value: int64(p.PartitionEpoch)}
}

// startReassignment moves p towards target (checked), replacing a
// reassignment under way.
func (r partitionRules) startReassignment(p *PartitionState, target []int32) error {
	orig := p.Original()
	replicas := append(slices.Clone(target), minus(orig, target)...)
	if err := r.cutTo(p, replicas); err != nil {
		return err
	}
	p.AddingReplicas, p.RemovingReplicas = minus(target, orig), minus(orig, target)
	r.completeReassignment(p)
	return nil
}

// cancelReassignment restores the original replicas.
func (r partitionRules) cancelReassignment(p *PartitionState) error {
	if !p.Reassigning() {
		return ErrNoReassignment
	}
	if err := r.cutTo(p, p.Original()); err != nil {
		return err
	}
	p.AddingReplicas, p.RemovingReplicas = nil, nil
	return nil
}

// cutTo makes replicas p's replica set, keeping the ISR and ELR members
// that are among them and replacing a leader that is not; refused when
// no in-sync member would be left.
func (r partitionRules) cutTo(p *PartitionState, replicas []int32) error {
	isr := inReplicaOrder(replicas, p.ISR)
	if len(isr) == 0 {
		return fmt.Errorf("%w: replicas %v would keep none of the in-sync replicas %v", ErrInvalidAssignment, replicas, p.ISR)
	}
	p.Replicas, p.ISR, p.ELR = replicas, isr, inReplicaOrder(replicas, p.ELR)
	if int32(len(p.ISR)) >= r.minISR {
		p.ELR = nil
	}
	if !slices.Contains(p.ISR, p.Leader) {
		r.replaceLeader(p)
	}
	return nil
}

// replaceLeader elects a leader in place of the current one (which is
// no longer a replica in sync), moving the leader epoch once.
func (r partitionRules) replaceLeader(p *PartitionState) {
	old := p.Leader
	p.Leader = NoLeader
	r.elect(p)
	if p.Leader == NoLeader && old != NoLeader {
		p.LeaderEpoch++
	}
}

// completeReassignment finishes a reassignment whose target the ISR
// covers (see the rules above).
func (r partitionRules) completeReassignment(p *PartitionState) {
	if !p.Reassigning() {
		return
	}
	target := p.Target()
	for _, id := range target {
		if !slices.Contains(p.ISR, id) {
			return
		}
	}
	if p.Leader != NoLeader && !slices.Contains(target, p.Leader) && r.first(target, target) == NoLeader {
		return // completing now would leave the partition without a leader
	}
	p.Replicas, p.ISR, p.ELR = target, slices.Clone(target), inReplicaOrder(target, p.ELR)
	if int32(len(p.ISR)) >= r.minISR {
		p.ELR = nil
	}
	p.AddingReplicas, p.RemovingReplicas = nil, nil
	if !slices.Contains(p.ISR, p.Leader) {
		r.replaceLeader(p)
	}
}

// Reassignment is one partition's reassignment under way, as
// ListPartitionReassignments reports it.
type Reassignment struct {
	Topic     string  `json:"topic"`
	Partition int32   `json:"partition"`
	Replicas  []int32 `json:"replicas"`
	Adding    []int32 `json:"adding_replicas"`
	Removing  []int32 `json:"removing_replicas"`
	ISR       []int32 `json:"isr"`
}

// Reassignments are the partitions being reassigned, by topic then
// partition; only those of topics when it is not empty.
func (im *Image) Reassignments(topics ...string) []Reassignment {
	out := []Reassignment{}
	for _, name := range im.TopicNames() {
		if len(topics) > 0 && !slices.Contains(topics, name) {
			continue
		}
		for i, p := range im.Topics[name].Partitions {
			if !p.Reassigning() {
				continue
			}
			c := p.clone()
			out = append(out, Reassignment{Topic: name, Partition: int32(i), Replicas: c.Replicas,
				Adding: nonNil(c.AddingReplicas), Removing: nonNil(c.RemovingReplicas), ISR: c.ISR})
		}
	}
	return out
}

func nonNil(s []int32) []int32 {
	if s == nil {
		return []int32{}
	}
	return s
}

// PartitionTarget is one partition's replicas in a reassignment plan
// (kafka-reassign-partitions' JSON: topic, partition, replicas).
type PartitionTarget struct {
	Topic     string  `json:"topic"`
	Partition int32   `json:"partition"`
	Replicas  []int32 `json:"replicas"`
}

// PlanReplicationFactor is the reassignment that gives every partition of
// topic rf replicas, changing as little as it can: a partition keeps its
// replicas (its target, when one is being reassigned) in order; growing
// adds the live brokers holding the fewest replicas (counting this plan's,
// ties to the lowest id); shrinking drops the last ones, never the leader.
// Partitions already at rf are not in the plan.
func (im *Image) PlanReplicationFactor(topic string, rf int32) ([]PartitionTarget, error) {
	t := im.Topics[topic]
	if t == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownTopic, topic)
	}
	if rf < 1 || rf > MaxReplicationFactor {
		return nil, fmt.Errorf("%w: replication factor %d (1 to %d)", ErrInvalidAssignment, rf, MaxReplicationFactor)
	}
	var live []int32
	for _, id := range im.BrokerIDs(true) {
		if !im.Brokers[id].ShuttingDown {
			live = append(live, id)
		}
	}
	load, _ := im.PartitionsPerBroker()
	out := []PartitionTarget{}
	for i, p := range t.Partitions {
		cur := p.Target()
		next := slices.Clone(cur)
		switch {
		case int32(len(cur)) > rf:
			next = next[:rf]
			if p.Leader != NoLeader && slices.Contains(cur, p.Leader) && !slices.Contains(next, p.Leader) {
				next[rf-1] = p.Leader
			}
		case int32(len(cur)) < rf:
			cand := minus(live, cur)
			if int32(len(cur)+len(cand)) < rf {
				return nil, fmt.Errorf("%w: %s-%d needs %d more replicas, %d live broker(s) hold none of it", ErrNotEnoughBrokers, topic, i, int(rf)-len(cur), len(cand))
			}
			for int32(len(next)) < rf {
				slices.SortStableFunc(cand, func(a, b int32) int {
					if load[a] != load[b] {
						return load[a] - load[b]
					}
					return int(a - b)
				})
				next = append(next, cand[0])
				load[cand[0]]++
				cand = cand[1:]
			}
		default:
			continue
		}
		out = append(out, PartitionTarget{Topic: topic, Partition: int32(i), Replicas: next})
	}
	return out, nil
}

// ReassignPartition starts (target) or, with cancel, cancels the
// reassignment of one partition through the controller, from any node;
// it returns once this node's image shows it (perhaps completed already:
// a target the ISR covers completes at once).
func (n *Node) ReassignPartition(ctx context.Context, topic string, partition int32, target []int32, cancel bool) error {
	r := Record{Op: OpReassignPartitions, Topic: topic, Partition: partition, Cancel: cancel}
	if !cancel {
		r.Target = slices.Clone(target)
	}
	res, err := n.Propose(ctx, r)
	if err == nil {
		err = res.Err
	}
	return err
}
