package cluster

import (
	"fmt"
	"slices"
	"strconv"
)

// The partition state machine: who is in sync and who leads, decided
// inside Apply from the records alone, after Kafka's KRaft controller
// (KIP-497 AlterPartition, KIP-966 strict min ISR and eligible leader
// replicas).
//
// The rules, for a partition of min ISR m (elect.go is their one home):
//   - The ISR is never empty: a broker leaving it (fenced, restarted,
//     shutting down) stays when it is the last member, and the partition
//     is then offline (leader -1) until a member can lead again.
//   - When the ISR shrinks to fewer than m members the brokers removed
//     join the ELR: the high watermark only advances while the ISR has at
//     least m members, so they hold every committed record. When the ISR
//     is back at m or more the ELR is emptied (the watermark moves on
//     without them). A broker in the ISR is never in the ELR.
//   - A leader is elected only when the current one cannot lead (fenced,
//     restarted, shutting down): the first electable ISR member in
//     replica order, else the first electable ELR member (the ISR becomes
//     that one broker), else none (offline) — an out-of-sync replica only
//     when the topic sets unclean.leader.election.enable=true (the ISR
//     becomes that one broker, the ELR is emptied: what others held is no
//     longer known to be committed).
//   - The controller never adds a broker to an ISR: the leader does that
//     through AlterPartition once the follower has caught up. A returning
//     broker leads again only a partition that is offline and whose
//     ISR or ELR names it.
//   - A broker that registers after an unclean shutdown (its log may have
//     lost records it had acknowledged as a follower) leaves every ELR;
//     where it was the last ISR member and the ELR names another broker,
//     that broker replaces it in the ISR.
//   - The leader epoch is bumped at every change of leader, the partition
//     epoch at every change of leader, ISR, ELR or replicas.

// MaxReplicationFactor is the most replicas a partition may have.
const MaxReplicationFactor = 5

// The topic configs the controller acts on.
const (
	ConfigMinInsyncReplicas     = "min.insync.replicas"
	ConfigUncleanLeaderElection = "unclean.leader.election.enable"
)

// ReplicationFactor is the number of replicas of the topic's partitions (0
// for a topic without partitions): of its first partition, the replicas
// it had before a reassignment under way (Kafka's rule), so min ISR and
// under-replication do not count a replica still catching up.
func (t *Topic) ReplicationFactor() int32 {
	if len(t.Partitions) == 0 {
		return 0
	}
	return t.Partitions[0].replicationFactor()
}

// MinISR is the topic's min.insync.replicas: its own config, else the
// cluster's default capped at its replication factor (so a topic of one
// replica stays writable with acks=all under a default of 2); at least 1.
func (im *Image) MinISR(t *Topic) int32 {
	if v, ok := t.Configs[ConfigMinInsyncReplicas]; ok {
		if n, err := strconv.ParseInt(v, 10, 32); err == nil && n >= 1 {
			return int32(n)
		}
	}
	m := max(im.Defaults.MinInsyncReplicas, 1)
	if rf := t.ReplicationFactor(); rf > 0 && m > rf {
		m = rf
	}
	return m
}

// Unclean says whether the topic allows electing an out-of-sync replica.
func (t *Topic) Unclean() bool { return t.Configs[ConfigUncleanLeaderElection] == "true" }

// checkTopicConfigs refuses the values of the configs this package acts on
// that it cannot stand behind: min.insync.replicas outside 1..rf (rf 0:
// not checked against it), unclean.leader.election.enable not a boolean.
func checkTopicConfigs(configs map[string]string, rf int32) error {
	if v, ok := configs[ConfigMinInsyncReplicas]; ok {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1 || (rf > 0 && int32(n) > rf) {
			return fmt.Errorf("%w: %s=%q: want 1 to the replication factor (%d)", ErrInvalidConfig, ConfigMinInsyncReplicas, v, rf)
		}
	}
	if v, ok := configs[ConfigUncleanLeaderElection]; ok && v != "true" && v != "false" {
		return fmt.Errorf("%w: %s=%q: want true or false", ErrInvalidConfig, ConfigUncleanLeaderElection, v)
	}
	return nil
}

// partitionRules is what the rules need to know about a partition's topic
// and the brokers.
type partitionRules struct {
	im      *Image
	minISR  int32
	unclean bool
}

func (im *Image) rulesFor(t *Topic) partitionRules {
	return partitionRules{im: im, minISR: im.MinISR(t), unclean: t.Unclean()}
}

// eachPartition runs fn on every partition of every topic (in name order),
// completing the reassignments whose target the ISR then covers, bumping
// the partition epoch of each that changed.
func (im *Image) eachPartition(fn func(r partitionRules, p *PartitionState)) {
	for _, name := range im.TopicNames() {
		im.topicPartitions(im.Topics[name], fn)
	}
}

// topicPartitions is eachPartition for one topic.
func (im *Image) topicPartitions(t *Topic, fn func(r partitionRules, p *PartitionState)) {
	r := im.rulesFor(t)
	for i := range t.Partitions {
		p := &t.Partitions[i]
		before := p.clone()
		fn(r, p)
		// An election may bring a reassignment's target into the ISR
		// (an ELR or unclean one): it completes then too.
		r.completeReassignment(p)
		if changed(before, *p) {
			p.PartitionEpoch = before.PartitionEpoch + 1
		}
	}
}

func changed(a, b PartitionState) bool {
	return a.Leader != b.Leader || !slices.Equal(a.Replicas, b.Replicas) || !slices.Equal(a.ISR, b.ISR) || !slices.Equal(a.ELR, b.ELR) ||
		!slices.Equal(a.AddingReplicas, b.AddingReplicas) || !slices.Equal(a.RemovingReplicas, b.RemovingReplicas)
}

// setISR replaces the ISR and keeps the ELR by KIP-966's rule.
func (r partitionRules) setISR(p *PartitionState, isr []int32) {
	removed := minus(p.ISR, isr)
	p.ISR = inReplicaOrder(p.Replicas, isr)
	if int32(len(p.ISR)) >= r.minISR {
		p.ELR = nil
		return
	}
	p.ELR = inReplicaOrder(p.Replicas, append(minus(p.ELR, isr), removed...))
}

// leave takes broker b, which can no longer lead or follow in this
// incarnation, out of the ISR (unless it is the last member) and elects
// a leader if it led.
func (r partitionRules) leave(p *PartitionState, b int32) {
	if slices.Contains(p.ISR, b) && len(p.ISR) > 1 {
		r.setISR(p, minus(p.ISR, []int32{b}))
	}
	r.elect(p)
}

// drop is leave without the election: the leadership b held is vacated
// (a new leader epoch) and left to the caller to fill, so a restarting
// broker's partitions are not elected (perhaps uncleanly) before its new
// run is registered and may lead them again.
func (r partitionRules) drop(p *PartitionState, b int32) {
	if slices.Contains(p.ISR, b) && len(p.ISR) > 1 {
		r.setISR(p, minus(p.ISR, []int32{b}))
	}
	if p.Leader == b {
		p.Leader = NoLeader
		p.LeaderEpoch++
	}
}

// elect gives the partition a leader when its current one cannot lead.
func (r partitionRules) elect(p *PartitionState) {
	if p.Leader != NoLeader && r.im.Brokers[p.Leader].electable() {
		return
	}
	next := NoLeader
	if c := r.first(p.Replicas, p.ISR); c != NoLeader {
		next = c
	} else if c := r.first(p.Replicas, p.ELR); c != NoLeader {
		next = c
		r.setISR(p, []int32{c})
		p.ELR = minus(p.ELR, []int32{c})
	} else if c := r.first(p.Replicas, p.Replicas); c != NoLeader && r.unclean {
		next = c
		p.ISR, p.ELR = []int32{c}, nil
	}
	if next != p.Leader {
		p.Leader = next
		p.LeaderEpoch++
	}
}

// first is the first electable broker of replicas (in their order) that
// is among set, or NoLeader.
func (r partitionRules) first(replicas, set []int32) int32 {
	for _, id := range replicas {
		if slices.Contains(set, id) && r.im.Brokers[id].electable() {
			return id
		}
	}
	return NoLeader
}

// forgetUnclean applies an unclean restart of broker b: out of the ELR,
// and, where b is the last ISR member of a partition the ELR still has an
// eligible member for, replaced in the ISR by that member.
func (r partitionRules) forgetUnclean(p *PartitionState, b int32) {
	p.ELR = minus(p.ELR, []int32{b})
	if len(p.ELR) > 0 && len(p.ISR) == 1 && p.ISR[0] == b && p.Leader == NoLeader {
		p.ISR = []int32{p.ELR[0]}
		p.ELR = minus(p.ELR, p.ISR)
		if len(p.ELR) == 0 {
			p.ELR = nil
		}
	}
}

// settle re-applies the ELR rule after a change of min ISR and elects
// where a leader is missing (an unclean election just allowed).
func (r partitionRules) settle(p *PartitionState) {
	if int32(len(p.ISR)) >= r.minISR {
		p.ELR = nil
	}
	r.elect(p)
}

// alterPartition is OpAlterPartition's rule (KIP-497): the leader of the
// partition, at its current leader and partition epochs, replaces the ISR.
func (im *Image) alterPartition(rec Record) Result {
	t := im.Topics[rec.Topic]
	if t == nil || rec.Partition < 0 || int(rec.Partition) >= len(t.Partitions) {
		return Result{Err: fmt.Errorf("%w: %s-%d", ErrUnknownTopic, rec.Topic, rec.Partition)}
	}
	p := &t.Partitions[rec.Partition]
	if rec.Broker != p.Leader || rec.LeaderEpoch != p.LeaderEpoch {
		return Result{Err: fmt.Errorf("%w: broker %d at leader epoch %d; the partition is led by %d at %d", ErrFencedLeaderEpoch, rec.Broker, rec.LeaderEpoch, p.Leader, p.LeaderEpoch)}
	}
	if rec.PartitionEpoch != p.PartitionEpoch {
		return Result{Err: fmt.Errorf("%w: partition epoch %d, the partition is at %d", ErrInvalidUpdateVersion, rec.PartitionEpoch, p.PartitionEpoch)}
	}
	if !slices.Contains(rec.ISR, p.Leader) {
		return Result{Err: fmt.Errorf("%w: the new ISR %v does not hold the leader %d", ErrInvalidRecord, rec.ISR, p.Leader)}
	}
	seen := map[int32]bool{}
	for _, id := range rec.ISR {
		if seen[id] || !slices.Contains(p.Replicas, id) {
			return Result{Err: fmt.Errorf("%w: the new ISR %v is not a set of the replicas %v", ErrInvalidRecord, rec.ISR, p.Replicas)}
		}
		seen[id] = true
		if !slices.Contains(p.ISR, id) && !im.Brokers[id].electable() {
			return Result{Err: fmt.Errorf("%w: broker %d is fenced, shutting down or not registered", ErrIneligibleReplica, id)}
		}
	}
	r := im.rulesFor(t)
	r.setISR(p, rec.ISR)
	// The ISR covering a reassignment's target completes it, in the same
	// record (reassign.go).
	r.completeReassignment(p)
	p.PartitionEpoch++
	return Result{Value: int64(p.PartitionEpoch)}
}

// minus is a without the members of b, in a's order.
func minus(a, b []int32) []int32 {
	var out []int32
	for _, id := range a {
		if !slices.Contains(b, id) {
			out = append(out, id)
		}
	}
	return out
}

// inReplicaOrder is the members of set that are replicas, in replica
// order, each once (nil for none).
func inReplicaOrder(replicas, set []int32) []int32 {
	var out []int32
	for _, id := range replicas {
		if slices.Contains(set, id) {
			out = append(out, id)
		}
	}
	return out
}

// normalize gives a partition loaded from an image of part 1 (no ISR
// field) the ISR this code needs: the leader alone when there is one —
// part 1 never replicated, so a follower holds nothing the leader
// acknowledged and calling it in sync could elect it and lose the
// leader's records — else every replica (none is known to be behind
// another, and an empty ISR could never be led again without an unclean
// election). At replication factor 1 both are the one replica.
func (p *PartitionState) normalize() {
	if p.ISR != nil {
		return
	}
	if p.Leader != NoLeader && slices.Contains(p.Replicas, p.Leader) {
		p.ISR = []int32{p.Leader}
		return
	}
	p.ISR = append([]int32(nil), p.Replicas...)
}
