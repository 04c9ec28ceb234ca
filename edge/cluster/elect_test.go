package cluster

import (
	"bytes"
	"errors"
	"io"
	"os"
	"reflect"
	"slices"
	"testing"
)

// img is an image with brokers 1..n registered (incarnation = id) and
// applied records, failing the test on a refused one unless the caller
// asks for the result.
type img struct {
	t  *testing.T
	im *Image
}

func newImg(t *testing.T, brokers int) *img {
	t.Helper()
	g := &img{t: t, im: newImage()}
	for id := int32(1); id <= int32(brokers); id++ {
		g.ok(Record{Op: OpRegisterBroker, Broker: id, Incarnation: uint64(id), CleanShutdown: true})
	}
	return g
}

func (g *img) apply(r Record) Result {
	g.im.Index++
	return g.im.apply(r)
}

func (g *img) ok(r Record) Result {
	g.t.Helper()
	res := g.apply(r)
	if res.Err != nil {
		g.t.Fatalf("%s: %v", r.Op, res.Err)
	}
	return res
}

func (g *img) p(topic string, i int) PartitionState { return g.im.Topics[topic].Partitions[i] }

func (g *img) fence(id int32) {
	g.t.Helper()
	g.ok(Record{Op: OpFenceBroker, Broker: id, Incarnation: g.im.Brokers[id].Incarnation})
}

func (g *img) unfence(id int32) {
	g.t.Helper()
	g.ok(Record{Op: OpUnfenceBroker, Broker: id, Incarnation: g.im.Brokers[id].Incarnation})
}

// restart registers a new incarnation of id, after a clean shutdown or not.
func (g *img) restart(id int32, clean bool) {
	g.t.Helper()
	g.ok(Record{Op: OpRegisterBroker, Broker: id, Incarnation: g.im.Brokers[id].Incarnation + 100, CleanShutdown: clean})
}

func (g *img) alter(topic string, part int32, by int32, isr ...int32) Result {
	p := g.p(topic, int(part))
	return g.apply(Record{Op: OpAlterPartition, Topic: topic, Partition: part, Broker: by, LeaderEpoch: p.LeaderEpoch, PartitionEpoch: p.PartitionEpoch, ISR: isr})
}

func wantPart(t *testing.T, what string, p PartitionState, leader int32, isr, elr []int32) {
	t.Helper()
	if p.Leader != leader || !slices.Equal(p.ISR, isr) || !slices.Equal(p.ELR, elr) {
		t.Fatalf("%s: leader %d isr %v elr %v, want leader %d isr %v elr %v", what, p.Leader, p.ISR, p.ELR, leader, isr, elr)
	}
}

func rf3(g *img, name string, configs map[string]string) {
	g.t.Helper()
	g.ok(Record{Op: OpCreateTopic, Topic: name, TopicID: name + "-id", Configs: configs, Assignment: [][]int32{{1, 2, 3}}})
}

func TestAlterPartitionRules(t *testing.T) {
	g := newImg(t, 3)
	rf3(g, "t", map[string]string{ConfigMinInsyncReplicas: "2"})
	wantPart(t, "created", g.p("t", 0), 1, []int32{1, 2, 3}, nil)

	res := g.alter("t", 0, 1, 2, 1) // any order: kept in replica order
	if res.Err != nil || res.Value != 1 {
		t.Fatalf("shrink to [1 2]: %v, new partition epoch %d, want 1", res.Err, res.Value)
	}
	wantPart(t, "shrunk to min ISR", g.p("t", 0), 1, []int32{1, 2}, nil)

	before := g.p("t", 0).clone()
	for _, c := range []struct {
		what string
		rec  Record
		want error
	}{
		{"a follower", Record{Broker: 2, LeaderEpoch: 0, PartitionEpoch: 1, ISR: []int32{2}}, ErrFencedLeaderEpoch},
		{"a stale leader epoch", Record{Broker: 1, LeaderEpoch: -1, PartitionEpoch: 1, ISR: []int32{1}}, ErrFencedLeaderEpoch},
		{"a stale partition epoch", Record{Broker: 1, LeaderEpoch: 0, PartitionEpoch: 0, ISR: []int32{1}}, ErrInvalidUpdateVersion},
		{"an ISR without the leader", Record{Broker: 1, LeaderEpoch: 0, PartitionEpoch: 1, ISR: []int32{2, 3}}, ErrInvalidRecord},
		{"an ISR beyond the replicas", Record{Broker: 1, LeaderEpoch: 0, PartitionEpoch: 1, ISR: []int32{1, 4}}, ErrInvalidRecord},
		{"an ISR with a broker twice", Record{Broker: 1, LeaderEpoch: 0, PartitionEpoch: 1, ISR: []int32{1, 2, 2}}, ErrInvalidRecord},
		{"an unknown partition", Record{Broker: 1, Partition: 1, ISR: []int32{1}}, ErrUnknownTopic},
	} {
		c.rec.Op, c.rec.Topic = OpAlterPartition, "t"
		if res := g.apply(c.rec); !errors.Is(res.Err, c.want) {
			t.Fatalf("%s: %v, want %v", c.what, res.Err, c.want)
		}
		if !reflect.DeepEqual(g.p("t", 0), before) {
			t.Fatalf("%s changed the partition: %+v", c.what, g.p("t", 0))
		}
	}

	// Below min ISR: the broker removed is eligible (the high watermark
	// stopped with it in the ISR).
	g.ok(Record{Op: OpAlterPartition, Topic: "t", Broker: 1, PartitionEpoch: 1, ISR: []int32{1}})
	wantPart(t, "below min ISR", g.p("t", 0), 1, []int32{1}, []int32{2})

	// A fenced broker cannot be added; an unfenced one can, and at min
	// ISR again the ELR is emptied.
	g.fence(3)
	if res := g.alter("t", 0, 1, 1, 3); !errors.Is(res.Err, ErrIneligibleReplica) {
		t.Fatalf("adding a fenced broker: %v", res.Err)
	}
	g.unfence(3)
	wantPart(t, "unfenced follower not put back by the controller", g.p("t", 0), 1, []int32{1}, []int32{2})
	pe := g.p("t", 0).PartitionEpoch
	if res := g.alter("t", 0, 1, 1, 3); res.Err != nil || res.Value != int64(pe+1) {
		t.Fatalf("adding 3: %v value %d, want %d", res.Err, res.Value, pe+1)
	}
	wantPart(t, "back at min ISR", g.p("t", 0), 1, []int32{1, 3}, nil)
	// An ELR member that rejoins the ISR leaves the ELR.
	g.ok(Record{Op: OpAlterPartition, Topic: "t", Broker: 1, PartitionEpoch: g.p("t", 0).PartitionEpoch, ISR: []int32{1}})
	wantPart(t, "3 out", g.p("t", 0), 1, []int32{1}, []int32{3})
	g.alter("t", 0, 1, 1, 2)
	wantPart(t, "2 in", g.p("t", 0), 1, []int32{1, 2}, nil)
}

func TestFenceShrinksISRAndElectsFromISRThenELR(t *testing.T) {
	g := newImg(t, 4)
	rf3(g, "t", map[string]string{ConfigMinInsyncReplicas: "2"})
	g.fence(1)
	p := g.p("t", 0)
	wantPart(t, "leader fenced", p, 2, []int32{2, 3}, nil)
	if p.LeaderEpoch != 1 || p.PartitionEpoch != 1 {
		t.Fatalf("epochs %d/%d, want 1/1", p.LeaderEpoch, p.PartitionEpoch)
	}
	g.fence(2)
	wantPart(t, "below min ISR", g.p("t", 0), 3, []int32{3}, []int32{2})
	g.fence(3)
	p = g.p("t", 0)
	wantPart(t, "last member fenced: kept, offline", p, NoLeader, []int32{3}, []int32{2})
	if p.LeaderEpoch != 3 {
		t.Fatalf("leader epoch %d, want 3", p.LeaderEpoch)
	}
	// Broker 1 left the ISR while the watermark could still advance: it is
	// out of sync and never elected (unclean election is off).
	g.unfence(1)
	wantPart(t, "out-of-sync replica back", g.p("t", 0), NoLeader, []int32{3}, []int32{2})
	// An ELR member back leads: the ISR is it, the last ISR member eligible.
	g.unfence(2)
	p = g.p("t", 0)
	wantPart(t, "ELR member back", p, 2, []int32{2}, []int32{3})
	if p.LeaderEpoch != 4 {
		t.Fatalf("leader epoch %d, want 4", p.LeaderEpoch)
	}

	// The other order: the last ISR member back first leads.
	h := newImg(t, 3)
	rf3(h, "t", map[string]string{ConfigMinInsyncReplicas: "2"})
	h.fence(1)
	h.fence(2)
	h.fence(3)
	h.unfence(3)
	wantPart(t, "last ISR member back", h.p("t", 0), 3, []int32{3}, []int32{2})

	// Replication factor 1 keeps part 1's behaviour.
	k := newImg(t, 1)
	k.ok(Record{Op: OpCreateTopic, Topic: "one", TopicID: "1", Assignment: [][]int32{{1}}})
	k.fence(1)
	wantPart(t, "rf 1 fenced", k.p("one", 0), NoLeader, []int32{1}, nil)
	k.unfence(1)
	if p := k.p("one", 0); p.Leader != 1 || p.LeaderEpoch != 2 {
		t.Fatalf("rf 1 unfenced: %+v", p)
	}
}

func TestUncleanElectionOnlyWithTheConfig(t *testing.T) {
	g := newImg(t, 3)
	rf3(g, "t", map[string]string{ConfigMinInsyncReplicas: "1"})
	g.fence(1)
	g.fence(2)
	g.fence(3)
	wantPart(t, "all fenced, min ISR 1: no ELR", g.p("t", 0), NoLeader, []int32{3}, nil)
	g.unfence(1)
	g.unfence(2)
	wantPart(t, "out-of-sync replicas back", g.p("t", 0), NoLeader, []int32{3}, nil)
	if res := g.apply(Record{Op: OpAlterConfigs, Topic: "t", Configs: map[string]string{ConfigUncleanLeaderElection: "yes"}}); !errors.Is(res.Err, ErrInvalidConfig) {
		t.Fatalf("unclean=yes: %v", res.Err)
	}
	epoch := g.p("t", 0).LeaderEpoch
	g.ok(Record{Op: OpAlterConfigs, Topic: "t", Configs: map[string]string{ConfigUncleanLeaderElection: "true"}})
	p := g.p("t", 0)
	wantPart(t, "unclean election", p, 1, []int32{1}, nil)
	if p.LeaderEpoch != epoch+1 {
		t.Fatalf("leader epoch %d, want %d", p.LeaderEpoch, epoch+1)
	}
}

func TestUncleanShutdownLeavesELR(t *testing.T) {
	setup := func() *img {
		g := newImg(t, 3)
		rf3(g, "t", map[string]string{ConfigMinInsyncReplicas: "2"})
		g.fence(1)
		g.fence(2)
		g.fence(3)
		wantPart(t, "setup", g.p("t", 0), NoLeader, []int32{3}, []int32{2})
		return g
	}
	g := setup()
	g.restart(2, false)
	wantPart(t, "ELR member back after an unclean shutdown", g.p("t", 0), NoLeader, []int32{3}, nil)

	g = setup()
	g.restart(2, true)
	wantPart(t, "ELR member back after a clean shutdown", g.p("t", 0), 2, []int32{2}, []int32{3})

	// The last ISR member back after an unclean shutdown is replaced by
	// the eligible replica, which leads once it is back.
	g = setup()
	g.restart(3, false)
	wantPart(t, "last ISR member unclean", g.p("t", 0), NoLeader, []int32{2}, nil)
	g.unfence(2)
	wantPart(t, "eligible replica back", g.p("t", 0), 2, []int32{2}, nil)

	// A live broker restarting (within its session) leaves the ISR as if
	// fenced, and its leadership moves.
	h := newImg(t, 3)
	rf3(h, "t", map[string]string{ConfigMinInsyncReplicas: "2"})
	h.restart(1, true)
	wantPart(t, "leader restarted", h.p("t", 0), 2, []int32{2, 3}, nil)
}

func TestControlledShutdownMovesLeaderships(t *testing.T) {
	g := newImg(t, 3)
	rf3(g, "t", nil)
	g.ok(Record{Op: OpCreateTopic, Topic: "one", TopicID: "1", Assignment: [][]int32{{1}, {2}}})
	g.ok(Record{Op: OpControlledShutdown, Broker: 1, Incarnation: 1})
	wantPart(t, "rf 3", g.p("t", 0), 2, []int32{2, 3}, nil)
	wantPart(t, "rf 1 of the broker stopping", g.p("one", 0), NoLeader, []int32{1}, nil)
	wantPart(t, "rf 1 of another", g.p("one", 1), 2, []int32{2}, nil)
	if _, leads := g.im.PartitionsPerBroker(); leads[1] != 0 {
		t.Fatalf("broker 1 still leads %d", leads[1])
	}
	// Still heartbeating: an unfence or re-registration of the same run
	// does not make it a leader again, nor a new partition's replica.
	g.ok(Record{Op: OpRegisterBroker, Broker: 1, Incarnation: 1, Endpoints: map[string]string{"kafka": "x"}})
	wantPart(t, "same run", g.p("one", 0), NoLeader, []int32{1}, nil)
	if a, err := g.im.Place(3, 1, ""); err != nil || slices.ContainsFunc(a, func(r []int32) bool { return r[0] == 1 }) {
		t.Fatalf("placement on a broker shutting down: %v %v", a, err)
	}
	if res := g.apply(Record{Op: OpControlledShutdown, Broker: 2, Incarnation: 9}); !errors.Is(res.Err, ErrStaleIncarnation) {
		t.Fatalf("stale controlled shutdown: %v", res.Err)
	}
	// Its next run leads its offline partition again.
	g.restart(1, true)
	wantPart(t, "next run", g.p("one", 0), 1, []int32{1}, nil)
	wantPart(t, "rf 3 not given back", g.p("t", 0), 2, []int32{2, 3}, nil)
}

func TestTopicReplicationRules(t *testing.T) {
	g := newImg(t, 6)
	for _, c := range []struct {
		what string
		rec  Record
		want error
	}{
		{"six replicas", Record{Assignment: [][]int32{{1, 2, 3, 4, 5, 6}}}, ErrInvalidAssignment},
		{"uneven replicas", Record{Assignment: [][]int32{{1, 2}, {3}}}, ErrInvalidAssignment},
		{"min ISR above RF", Record{Assignment: [][]int32{{1, 2}}, Configs: map[string]string{ConfigMinInsyncReplicas: "3"}}, ErrInvalidConfig},
		{"min ISR 0", Record{Assignment: [][]int32{{1, 2}}, Configs: map[string]string{ConfigMinInsyncReplicas: "0"}}, ErrInvalidConfig},
	} {
		c.rec.Op, c.rec.Topic, c.rec.TopicID = OpCreateTopic, "x", "x"
		if res := g.apply(c.rec); !errors.Is(res.Err, c.want) {
			t.Fatalf("%s: %v, want %v", c.what, res.Err, c.want)
		}
	}
	g.ok(Record{Op: OpCreateTopic, Topic: "five", TopicID: "5", Assignment: [][]int32{{1, 2, 3, 4, 5}}})
	if res := g.apply(Record{Op: OpCreatePartitions, Topic: "five", Assignment: [][]int32{{1, 2}}}); !errors.Is(res.Err, ErrInvalidAssignment) {
		t.Fatalf("a partition of another replication factor: %v", res.Err)
	}
	if res := g.apply(Record{Op: OpAlterConfigs, Topic: "five", Configs: map[string]string{ConfigMinInsyncReplicas: "6"}}); !errors.Is(res.Err, ErrInvalidConfig) {
		t.Fatalf("min ISR 6 of 5: %v", res.Err)
	}
	// The default is capped at a topic's replication factor.
	g.ok(Record{Op: OpClusterDefaults, ReplicationFactor: 3, MinISR: 2})
	g.ok(Record{Op: OpCreateTopic, Topic: "one", TopicID: "1", Assignment: [][]int32{{1}}})
	if a, b := g.im.MinISR(g.im.Topics["five"]), g.im.MinISR(g.im.Topics["one"]); a != 2 || b != 1 {
		t.Fatalf("min ISR of five %d, of one %d; want 2 and 1", a, b)
	}
	// A new partition's ISR is its live replicas.
	g.fence(2)
	g.ok(Record{Op: OpCreateTopic, Topic: "f", TopicID: "f", Assignment: [][]int32{{2, 3, 4}}})
	wantPart(t, "created with a fenced replica", g.p("f", 0), 3, []int32{3, 4}, nil)
}

func TestSnapshotRoundTripKeepsReplication(t *testing.T) {
	g := newImg(t, 3)
	rf3(g, "t", map[string]string{ConfigMinInsyncReplicas: "3"})
	g.ok(Record{Op: OpClusterDefaults, ReplicationFactor: 3, MinISR: 2})
	g.alter("t", 0, 1, 1, 2)
	g.ok(Record{Op: OpControlledShutdown, Broker: 3, Incarnation: 3})
	f := NewFSM(nil)
	f.im = g.im
	snap, _ := f.Snapshot()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	b := NewFSM(nil)
	if err := b.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(b.Image(), g.im.clone()) {
		t.Fatalf("restored image differs:\n%+v\n%+v", b.Image().Topics["t"], g.im.Topics["t"])
	}
	if p := b.Image().Topics["t"].Partitions[0]; len(p.ELR) != 1 || p.PartitionEpoch == 0 || !b.Image().Brokers[3].ShuttingDown {
		t.Fatalf("restored partition %+v", p)
	}
}

// TestPart1SnapshotLoads: a snapshot written by part 1 (no ISR, no
// partition epoch, no defaults; testdata/snapshot-v1.json) loads with the
// ISR of PartitionState.normalize: the leader alone, or every replica of
// an offline partition; defaults 1.
func TestPart1SnapshotLoads(t *testing.T) {
	raw, err := os.ReadFile("testdata/snapshot-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	f := NewFSM(nil)
	if err := f.Restore(io.NopCloser(bytes.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	im := f.Image()
	parts := im.Topics["t"].Partitions
	wantPart(t, "rf 1 led", parts[0], 1, []int32{1}, nil)
	wantPart(t, "rf 1 offline", parts[1], NoLeader, []int32{3}, nil)
	wantPart(t, "rf 3 led by its second replica", im.Topics["r"].Partitions[0], 2, []int32{2}, nil)
	off := PartitionState{Replicas: []int32{1, 2, 3}, Leader: NoLeader}
	if off.normalize(); !slices.Equal(off.ISR, []int32{1, 2, 3}) {
		t.Fatalf("offline rf 3 partition of part 1: ISR %v, want every replica", off.ISR)
	}
	if im.MinISR(im.Topics["r"]) != 1 || im.Defaults != (Defaults{}) {
		t.Fatalf("defaults %+v", im.Defaults)
	}
	// And the rules apply to it: broker 2 fenced takes r-0 offline (its
	// followers were never in sync).
	g := &img{t: t, im: im}
	g.fence(2)
	wantPart(t, "r-0 after its leader fenced", g.p("r", 0), NoLeader, []int32{2}, nil)
}

func TestReplicaViewsAndCounts(t *testing.T) {
	g := newImg(t, 3)
	g.ok(Record{Op: OpClusterDefaults, ReplicationFactor: 3, MinISR: 2})
	rf3(g, "t", nil)
	g.ok(Record{Op: OpCreateTopic, Topic: "one", TopicID: "1", Assignment: [][]int32{{1}, {3}}})
	got := g.im.Replicas(3)
	if len(got) != 2 || got[0].Topic != "one" || got[0].Partition != 1 || got[1].Topic != "t" || got[1].MinISR != 2 || got[1].TopicID != "t-id" || got[0].MinISR != 1 {
		t.Fatalf("replicas of broker 3: %+v", got)
	}
	got[1].ISR[0] = 99 // a copy
	if g.p("t", 0).ISR[0] != 1 {
		t.Fatal("Replicas shares the image's slices")
	}
	g.alter("t", 0, 1, 1)
	g.fence(3)
	if c := g.im.Replication(NoLeader); c != (ReplicationCounts{UnderReplicated: 1, UnderMinISR: 1, Offline: 1}) {
		t.Fatalf("cluster counts %+v", c)
	}
	if c := g.im.Replication(1); c != (ReplicationCounts{UnderReplicated: 1, UnderMinISR: 1}) {
		t.Fatalf("broker 1's counts %+v", c)
	}
	if c := g.im.Replication(2); c != (ReplicationCounts{}) {
		t.Fatalf("broker 2's counts %+v", c)
	}
}
