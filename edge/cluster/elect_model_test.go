package cluster

import (
	"errors"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// TestPartitionStateMachineModel is issue 16's scenario 10: random
// sequences of fence, unfence, restart (clean or not), controlled
// shutdown and AlterPartition (valid, stale, ineligible) applied to the
// image, beside a reference model of the data the brokers hold: each
// replica's log (record ids), the high watermark as the data path computes
// it (advancing only while the ISR has min ISR members, to the prefix every
// member shares with the leader), the committed records it witnessed, and
// which broker lost records in an unclean restart. After every step:
//   - the leader is in the ISR, or -1; ISR and ELR are sets of replicas,
//     disjoint, the ISR never empty, the ELR empty at min ISR;
//   - a new leader was in the ISR or the ELR before the record, unless the
//     topic allows unclean election;
//   - epochs never go back; the leader epoch moves with the leader (and
//     when a leader restarts), the partition epoch with any change;
//   - a leader that did not lose records itself holds every committed
//     record (no election loses an acknowledged record).
func TestPartitionStateMachineModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		rf := rapid.IntRange(1, MaxReplicationFactor).Draw(rt, "rf")
		m := &model{
			rt:      rt,
			im:      newImage(),
			brokers: int32(rf + 1), // one broker that holds no replica
			minISR:  int32(rapid.IntRange(1, rf).Draw(rt, "minISR")),
			unclean: rapid.IntRange(0, 3).Draw(rt, "unclean") == 0,
			logs:    map[int32][]int{},
			dirty:   map[int32]bool{},
			inc:     map[int32]uint64{},
		}
		m.start(rf)
		steps := rapid.IntRange(1, 80).Draw(rt, "steps")
		for range steps {
			m.step()
		}
	})
}

type model struct {
	rt      *rapid.T
	im      *Image
	brokers int32
	minISR  int32
	unclean bool

	logs      map[int32][]int // by broker: the partition's records
	dirty     map[int32]bool  // lost records in an unclean restart, not caught up since
	inc       map[int32]uint64
	next      int   // the next record id
	committed []int // records the high watermark passed, in order
	uncleanEl bool  // an unclean election happened: losses allowed
	vouched   int32 // the broker the step's AlterPartition added (caught up), or NoLeader
}

func (m *model) apply(r Record) Result {
	m.im.Index++
	return m.im.apply(r)
}

func (m *model) part() *PartitionState { return &m.im.Topics["t"].Partitions[0] }

func (m *model) start(rf int) {
	for id := int32(1); id <= m.brokers; id++ {
		m.inc[id] = 1
		m.apply(Record{Op: OpRegisterBroker, Broker: id, Incarnation: 1, CleanShutdown: true})
	}
	replicas := make([]int32, rf)
	for i := range replicas {
		replicas[i] = int32(i + 1)
	}
	configs := map[string]string{ConfigMinInsyncReplicas: itoa(m.minISR)}
	if m.unclean {
		configs[ConfigUncleanLeaderElection] = "true"
	}
	if res := m.apply(Record{Op: OpCreateTopic, Topic: "t", TopicID: "t", Configs: configs, Assignment: [][]int32{replicas}}); res.Err != nil {
		m.rt.Fatalf("create: %v", res.Err)
	}
}

func itoa(n int32) string { return string(rune('0' + n)) }

func (m *model) step() {
	rt := m.rt
	before := m.part().clone()
	restarted, uncleanRestart := NoLeader, false
	b := int32(rapid.IntRange(1, int(m.brokers)).Draw(rt, "broker"))
	m.vouched = NoLeader
	switch op := rapid.IntRange(0, 11).Draw(rt, "op"); op {
	case 0, 1: // the leader appends a record
		if l := before.Leader; l != NoLeader {
			m.logs[l] = append(m.logs[l], m.next)
			m.next++
		}
	case 2: // b fetches from the leader and catches up
		if l := before.Leader; l != NoLeader && b != l && slices.Contains(before.Replicas, b) && m.im.Brokers[b].electable() {
			m.logs[b] = slices.Clone(m.logs[l])
			m.dirty[b] = false
		}
	case 3: // the leader drops b from the ISR, or adds it back once caught up
		l := before.Leader
		if l == NoLeader || b == l || !slices.Contains(before.Replicas, b) {
			break
		}
		var isr []int32
		if slices.Contains(before.ISR, b) {
			isr = minus(before.ISR, []int32{b})
		} else if slices.Equal(m.logs[b], m.logs[l]) {
			isr = append(slices.Clone(before.ISR), b)
		} else {
			break
		}
		res := m.apply(Record{Op: OpAlterPartition, Topic: "t", Broker: l, LeaderEpoch: before.LeaderEpoch, PartitionEpoch: before.PartitionEpoch, ISR: isr})
		switch {
		case len(isr) > len(before.ISR) && !m.im.Brokers[b].electable():
			if !errors.Is(res.Err, ErrIneligibleReplica) {
				rt.Fatalf("adding ineligible %d: %v", b, res.Err)
			}
		case res.Err != nil:
			rt.Fatalf("a valid AlterPartition %v from %d: %v", isr, l, res.Err)
		case res.Value != int64(m.part().PartitionEpoch):
			rt.Fatalf("AlterPartition %v: answered %d, partition %+v", isr, res.Value, *m.part())
		case before.Reassigning() && isSubset(before.Target(), isr):
			m.checkCompleted(before)
		case !slices.Equal(m.part().ISR, inReplicaOrder(before.Replicas, isr)) || m.part().Reassigning() != before.Reassigning():
			rt.Fatalf("AlterPartition %v: partition %+v", isr, *m.part())
		}
		if res.Err == nil && len(isr) > len(before.ISR) {
			m.dirty[b] = false // it holds the leader's log, as fetched
			m.vouched = b
		}
	case 4: // a stale AlterPartition: a deposed leader, or an old partition epoch
		r := Record{Op: OpAlterPartition, Topic: "t", Broker: b, LeaderEpoch: before.LeaderEpoch, PartitionEpoch: before.PartitionEpoch - 1, ISR: []int32{b}}
		want := ErrInvalidUpdateVersion
		if b != before.Leader || rapid.Bool().Draw(rt, "staleLeaderEpoch") {
			r.LeaderEpoch--
			want = ErrFencedLeaderEpoch
		}
		if res := m.apply(r); !errors.Is(res.Err, want) {
			rt.Fatalf("stale AlterPartition %+v: %v, want %v", r, res.Err, want)
		}
	case 5: // b's session times out
		if br := m.im.Brokers[b]; !br.Fenced {
			m.ok(Record{Op: OpFenceBroker, Broker: b, Incarnation: m.inc[b]})
		}
	case 6: // b heartbeats again in the same run
		if br := m.im.Brokers[b]; br.Fenced {
			m.ok(Record{Op: OpUnfenceBroker, Broker: b, Incarnation: m.inc[b]})
		}
	case 7, 8: // b restarts; after an unclean shutdown it may have lost records
		clean := rapid.Bool().Draw(rt, "clean")
		if !clean {
			keep := rapid.IntRange(0, len(m.logs[b])).Draw(rt, "keep")
			if keep < len(m.logs[b]) {
				m.logs[b] = m.logs[b][:keep]
				m.dirty[b] = true
			}
		}
		m.inc[b]++
		restarted, uncleanRestart = b, !clean
		m.ok(Record{Op: OpRegisterBroker, Broker: b, Incarnation: m.inc[b], CleanShutdown: clean})
	case 9: // b shuts down in a controlled way
		if !m.im.Brokers[b].ShuttingDown {
			m.ok(Record{Op: OpControlledShutdown, Broker: b, Incarnation: m.inc[b]})
		}
	case 10: // a reassignment to a random target starts (or replaces one)
		ids := make([]int32, m.brokers)
		for i := range ids {
			ids[i] = int32(i + 1)
		}
		target := rapid.Permutation(ids).Draw(rt, "order")[:rapid.IntRange(1, min(int(m.brokers), MaxReplicationFactor)).Draw(rt, "size")]
		res := m.apply(Record{Op: OpReassignPartitions, Topic: "t", Target: target})
		orig := before.Original()
		if res.Err != nil {
			// Refused only below min ISR, or when no in-sync replica
			// would be left; and then nothing changed.
			keeps := len(inReplicaOrder(append(slices.Clone(target), orig...), before.ISR)) > 0
			if !errors.Is(res.Err, ErrInvalidAssignment) || (int32(len(target)) >= m.minISR && keeps) || changed(before, *m.part()) {
				rt.Fatalf("reassigning %v: %v, partition %+v", target, res.Err, *m.part())
			}
			break
		}
		p := m.part()
		inSync := isSubset(target, before.ISR) || sameSet(target, orig) // the same replicas: a new order only
		switch {
		case inSync && (p.Reassigning() || !slices.Equal(p.Replicas, target)):
			rt.Fatalf("reassigning %v within the ISR %v did not complete: %+v", target, before.ISR, *p)
		case !p.Reassigning() && !inSync && !m.unclean:
			rt.Fatalf("reassigning %v, beyond the ISR %v, completed at once: %+v", target, before.ISR, *p)
		case !p.Reassigning():
			// Within the ISR, or after an unclean election put a target
			// replica in it.
			if !slices.Equal(p.Replicas, target) {
				rt.Fatalf("reassigning %v completed as %+v", target, *p)
			}
			m.checkLeaderIn(target)
			break
		}
		if !p.Reassigning() {
			break
		}
		if !slices.Equal(p.Target(), target) || !sameSet(p.Original(), orig) || !sameSet(p.AddingReplicas, minus(target, orig)) || !sameSet(p.RemovingReplicas, minus(orig, target)) {
			rt.Fatalf("reassigning %v from %v: %+v", target, orig, *p)
		}
	case 11: // the reassignment under way is cancelled
		res := m.apply(Record{Op: OpReassignPartitions, Topic: "t", Cancel: true})
		switch {
		case !before.Reassigning():
			if !errors.Is(res.Err, ErrNoReassignment) {
				rt.Fatalf("cancelling nothing: %v", res.Err)
			}
		case len(inReplicaOrder(before.Original(), before.ISR)) == 0:
			if !errors.Is(res.Err, ErrInvalidAssignment) || changed(before, *m.part()) {
				rt.Fatalf("a cancel keeping no in-sync replica: %v, %+v", res.Err, *m.part())
			}
		case res.Err != nil:
			rt.Fatalf("cancel: %v", res.Err)
		default:
			p := m.part()
			if p.Reassigning() || !slices.Equal(p.Replicas, before.Original()) || !slices.Equal(p.ISR, inReplicaOrder(before.Original(), before.ISR)) {
				rt.Fatalf("cancelled from %+v: %+v", before, *p)
			}
		}
	}
	if p := m.part(); p.Reassigning() {
		if !sameSet(p.Replicas, append(p.Target(), p.RemovingReplicas...)) || !isSubset(p.AddingReplicas, p.Target()) ||
			!isSubset(p.RemovingReplicas, p.Original()) || len(p.Target()) == 0 {
			rt.Fatalf("a reassignment under way: %+v", *p)
		}
		if isSubset(p.Target(), p.ISR) {
			rt.Fatalf("the ISR %v covers the target %v, not completed", p.ISR, p.Target())
		}
	}
	m.advanceHW()
	m.check(before, restarted, uncleanRestart)
}

func (m *model) ok(r Record) {
	if res := m.apply(r); res.Err != nil {
		m.rt.Fatalf("%s of %d: %v", r.Op, r.Broker, res.Err)
	}
}

// advanceHW is the data path's high watermark: with at least min ISR
// members, the prefix every one of them shares with the leader.
func (m *model) advanceHW() {
	p := m.part()
	if p.Leader == NoLeader || int32(len(p.ISR)) < m.minISR {
		return
	}
	lead := m.logs[p.Leader]
	hw := len(lead)
	for _, r := range p.ISR {
		n := 0
		for n < len(lead) && n < len(m.logs[r]) && m.logs[r][n] == lead[n] {
			n++
		}
		hw = min(hw, n)
	}
	if hw > len(m.committed) {
		m.committed = slices.Clone(lead[:hw])
	}
}

// check the invariants after a step; restarted is the broker the step
// restarted (NoLeader: none): a leader restarted and elected again in the
// same record keeps its id at a new leader epoch, fencing its earlier run;
// after an unclean shutdown it is eligible only as the last ISR member
// with no ELR (as Kafka before KIP-966).
func (m *model) check(before PartitionState, restarted int32, uncleanRestart bool) {
	rt, p := m.rt, *m.part()
	if len(p.ISR) == 0 || !isSubset(p.ISR, p.Replicas) || !isSubset(p.ELR, p.Replicas) || slices.ContainsFunc(p.ELR, func(id int32) bool { return slices.Contains(p.ISR, id) }) {
		rt.Fatalf("ISR %v / ELR %v not disjoint sets of the replicas %v", p.ISR, p.ELR, p.Replicas)
	}
	if int32(len(p.ISR)) >= m.minISR && len(p.ELR) > 0 {
		rt.Fatalf("ELR %v with an ISR %v at min ISR %d", p.ELR, p.ISR, m.minISR)
	}
	if p.Leader != NoLeader && (!slices.Contains(p.ISR, p.Leader) || !m.im.Brokers[p.Leader].electable()) {
		rt.Fatalf("leader %d: not in the ISR %v or not live", p.Leader, p.ISR)
	}
	if p.LeaderEpoch < before.LeaderEpoch || p.PartitionEpoch < before.PartitionEpoch {
		rt.Fatalf("epochs went back: %d/%d after %d/%d", p.LeaderEpoch, p.PartitionEpoch, before.LeaderEpoch, before.PartitionEpoch)
	}
	if (p.Leader != before.Leader) != (p.LeaderEpoch != before.LeaderEpoch) && !(p.Leader == restarted && p.LeaderEpoch > before.LeaderEpoch) {
		rt.Fatalf("leader %d→%d at epoch %d→%d", before.Leader, p.Leader, before.LeaderEpoch, p.LeaderEpoch)
	}
	if changed(before, p) && p.PartitionEpoch == before.PartitionEpoch {
		rt.Fatalf("partition changed at the same partition epoch %d: %+v", p.PartitionEpoch, p)
	}
	if p.Leader != NoLeader && (p.Leader != before.Leader || p.Leader == restarted) {
		eligible := slices.Contains(before.ISR, p.Leader) || slices.Contains(before.ELR, p.Leader) || p.Leader == m.vouched
		if p.Leader == restarted && uncleanRestart {
			eligible = slices.Equal(before.ISR, []int32{p.Leader}) && len(minus(before.ELR, before.ISR)) == 0
		}
		switch {
		case !eligible && !m.unclean:
			rt.Fatalf("leader %d elected from outside ISR %v and ELR %v", p.Leader, before.ISR, before.ELR)
		case !eligible:
			m.uncleanEl = true
		}
	}
	if l := p.Leader; l != NoLeader && !m.uncleanEl && m.dirty[l] && (l != before.Leader || l == restarted) {
		// A broker that lost records leads: only when no eligible broker
		// kept them, even one down for now (the last ISR member restarted
		// uncleanly with an empty ELR, as Kafka before KIP-966). The records every copy
		// lost are the disk's loss, not the election's: the witness
		// forgets them, and the leader's log is the reference from now.
		for _, id := range append(slices.Clone(before.ISR), before.ELR...) {
			if id != l && !m.dirty[id] {
				rt.Fatalf("leader %d, which lost records, elected over %d (ISR %v ELR %v)", l, id, before.ISR, before.ELR)
			}
		}
		n := 0
		for n < len(m.committed) && n < len(m.logs[l]) && m.logs[l][n] == m.committed[n] {
			n++
		}
		m.committed = m.committed[:n]
		m.dirty[l] = false
	}
	if l := p.Leader; l != NoLeader && !m.uncleanEl && !m.dirty[l] {
		if len(m.logs[l]) < len(m.committed) || !slices.Equal(m.logs[l][:len(m.committed)], m.committed) {
			rt.Fatalf("leader %d holds %v, committed %v: an acknowledged record lost", l, m.logs[l], m.committed)
		}
	}
}

// checkCompleted: the step completed the reassignment before had.
func (m *model) checkCompleted(before PartitionState) {
	p, target := m.part(), before.Target()
	if p.Reassigning() || !slices.Equal(p.Replicas, target) || !slices.Equal(p.ISR, target) {
		m.rt.Fatalf("the ISR covered the target %v; the partition is %+v", target, *p)
	}
	m.checkLeaderIn(target)
}

func (m *model) checkLeaderIn(target []int32) {
	if l := m.part().Leader; l != NoLeader && !slices.Contains(target, l) {
		m.rt.Fatalf("a completed reassignment to %v led by %d", target, l)
	}
}

func sameSet(a, b []int32) bool { return isSubset(a, b) && isSubset(b, a) }

func isSubset(a, b []int32) bool {
	seen := map[int32]bool{}
	for _, id := range a {
		if seen[id] || !slices.Contains(b, id) {
			return false
		}
		seen[id] = true
	}
	return true
}
