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
	switch op := rapid.IntRange(0, 9).Draw(rt, "op"); op {
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
		case res.Value != int64(m.part().PartitionEpoch) || !slices.Equal(m.part().ISR, inReplicaOrder(before.Replicas, isr)):
			rt.Fatalf("AlterPartition %v: answered %d, partition %+v", isr, res.Value, *m.part())
		case len(isr) > len(before.ISR):
			m.dirty[b] = false // it holds the leader's log, as fetched
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
		eligible := slices.Contains(before.ISR, p.Leader) || slices.Contains(before.ELR, p.Leader)
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
