package cluster

import (
	"errors"
	"slices"
	"testing"
)

func (g *img) reassign(topic string, part int32, target ...int32) Result {
	return g.apply(Record{Op: OpReassignPartitions, Topic: topic, Partition: part, Target: target})
}

func (g *img) cancel(topic string, part int32) Result {
	return g.apply(Record{Op: OpReassignPartitions, Topic: topic, Partition: part, Cancel: true})
}

func (g *img) must(r Result) Result {
	g.t.Helper()
	if r.Err != nil {
		g.t.Fatal(r.Err)
	}
	return r
}

func wantReplicas(t *testing.T, what string, p PartitionState, replicas, adding, removing []int32) {
	t.Helper()
	if !slices.Equal(p.Replicas, replicas) || !slices.Equal(p.AddingReplicas, adding) || !slices.Equal(p.RemovingReplicas, removing) {
		t.Fatalf("%s: replicas %v adding %v removing %v, want %v %v %v", what, p.Replicas, p.AddingReplicas, p.RemovingReplicas, replicas, adding, removing)
	}
}

// A move of {1,2,3} to {2,3,4} (the leader 1 leaving): 4 joins as a
// follower outside the ISR; the reassignment completes in the
// AlterPartition that adds 4 to the ISR, with 1 dropped and a leader
// elected from the target at a new leader epoch.
func TestReassignmentCompletesWhenTheISRCoversTheTarget(t *testing.T) {
	g := newImg(t, 4)
	rf3(g, "t", nil)
	start := g.p("t", 0)
	res := g.reassign("t", 0, 2, 3, 4)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	p := g.p("t", 0)
	wantReplicas(t, "started", p, []int32{2, 3, 4, 1}, []int32{4}, []int32{1})
	wantPart(t, "started", p, 1, []int32{2, 3, 1}, nil)
	if p.PartitionEpoch != start.PartitionEpoch+1 || p.LeaderEpoch != start.LeaderEpoch || res.Value != int64(p.PartitionEpoch) {
		t.Fatalf("started: epochs %d/%d (answered %d), from %d/%d", p.LeaderEpoch, p.PartitionEpoch, res.Value, start.LeaderEpoch, start.PartitionEpoch)
	}
	if got := g.im.Reassignments(); len(got) != 1 || got[0].Topic != "t" || !slices.Equal(got[0].Adding, []int32{4}) {
		t.Fatalf("listed %+v", got)
	}
	if rc := g.im.Replication(NoLeader); rc.UnderReplicated != 0 {
		t.Fatalf("a reassignment under way counted as under-replicated: %+v", rc)
	}
	// The leader may drop a member: no completion.
	g.must(g.alter("t", 0, 1, 1, 2))
	if !g.p("t", 0).Reassigning() {
		t.Fatal("completed without the target in sync")
	}
	g.must(g.alter("t", 0, 1, 1, 2, 3))
	res = g.must(g.alter("t", 0, 1, 1, 2, 3, 4))
	p = g.p("t", 0)
	wantReplicas(t, "completed", p, []int32{2, 3, 4}, nil, nil)
	wantPart(t, "completed", p, 2, []int32{2, 3, 4}, nil)
	if p.LeaderEpoch != start.LeaderEpoch+1 || res.Value != int64(p.PartitionEpoch) {
		t.Fatalf("completed: leader epoch %d (from %d), partition epoch %d answered %d", p.LeaderEpoch, start.LeaderEpoch, p.PartitionEpoch, res.Value)
	}
	if len(g.im.Reassignments()) != 0 {
		t.Fatal("still listed")
	}
	// The old leader, deposed, is fenced from the partition.
	if r := g.alter("t", 0, 1, 1, 2); !errors.Is(r.Err, ErrFencedLeaderEpoch) {
		t.Fatalf("the removed leader's AlterPartition: %v", r.Err)
	}
}

// Replication factor 1 → 3 and back: the growth completes once both new
// replicas are in sync; the shrink to a replica already in sync completes
// at once, keeping the leader when it stays.
func TestReassignmentChangesTheReplicationFactor(t *testing.T) {
	g := newImg(t, 3)
	g.ok(Record{Op: OpCreateTopic, Topic: "t", TopicID: "t-id", Assignment: [][]int32{{1}}})
	g.must(g.reassign("t", 0, 1, 2, 3))
	wantReplicas(t, "growing", g.p("t", 0), []int32{1, 2, 3}, []int32{2, 3}, nil)
	if rf := g.im.Topics["t"].ReplicationFactor(); rf != 1 {
		t.Fatalf("replication factor %d while growing, want the original 1", rf)
	}
	g.must(g.alter("t", 0, 1, 1, 3))
	g.must(g.alter("t", 0, 1, 1, 3, 2))
	wantReplicas(t, "grown", g.p("t", 0), []int32{1, 2, 3}, nil, nil)
	wantPart(t, "grown", g.p("t", 0), 1, []int32{1, 2, 3}, nil)

	le := g.p("t", 0).LeaderEpoch
	g.must(g.reassign("t", 0, 1))
	wantReplicas(t, "shrunk", g.p("t", 0), []int32{1}, nil, nil)
	wantPart(t, "shrunk", g.p("t", 0), 1, []int32{1}, nil)
	if g.p("t", 0).LeaderEpoch != le {
		t.Fatal("the leader epoch moved without a change of leader")
	}
}

// Cancelling restores the original replicas and cuts the ISR back to
// them; refused when none of the in-sync replicas is original, and when
// nothing is under way.
func TestReassignmentCancel(t *testing.T) {
	g := newImg(t, 5)
	rf3(g, "t", nil)
	g.must(g.reassign("t", 0, 3, 4, 5))
	g.must(g.alter("t", 0, 1, 1, 2, 3, 4))
	before := g.p("t", 0)
	g.must(g.cancel("t", 0))
	p := g.p("t", 0)
	// The original replicas in the order Replicas held them, as Kafka
	// reverts.
	wantReplicas(t, "cancelled", p, []int32{3, 1, 2}, nil, nil)
	wantPart(t, "cancelled", p, 1, []int32{3, 1, 2}, nil)
	if p.PartitionEpoch != before.PartitionEpoch+1 {
		t.Fatalf("partition epoch %d after %d", p.PartitionEpoch, before.PartitionEpoch)
	}
	if r := g.cancel("t", 0); !errors.Is(r.Err, ErrNoReassignment) {
		t.Fatalf("cancelling nothing: %v", r.Err)
	}

	// A reassignment replacing one under way starts from the original
	// replicas; 5, added by the first, leaves with it.
	g.must(g.reassign("t", 0, 1, 4, 5))
	g.must(g.reassign("t", 0, 1, 2, 4))
	wantReplicas(t, "replaced", g.p("t", 0), []int32{1, 2, 4, 3}, []int32{4}, []int32{3})
	wantPart(t, "replaced", g.p("t", 0), 1, []int32{1, 2, 3}, nil)

	// Only the added replicas in sync (the originals fell out, then the
	// leader moved): cancelling would keep no in-sync replica.
	g = newImg(t, 4)
	g.ok(Record{Op: OpCreateTopic, Topic: "u", TopicID: "u-id", Assignment: [][]int32{{1}}})
	g.must(g.reassign("u", 0, 1, 2, 3, 4))
	g.must(g.alter("u", 0, 1, 1, 2, 3))
	g.fence(1) // 2 leads; 1 leaves the ISR
	wantPart(t, "fenced", g.p("u", 0), 2, []int32{2, 3}, nil)
	before = g.p("u", 0)
	if r := g.cancel("u", 0); !errors.Is(r.Err, ErrInvalidAssignment) {
		t.Fatalf("a cancel that keeps no in-sync replica: %v", r.Err)
	}
	if p := g.p("u", 0); changed(before, p) || p.PartitionEpoch != before.PartitionEpoch {
		t.Fatalf("a refused cancel changed the partition: %+v", p)
	}
}

// The targets a reassignment refuses, leaving the partition as it was.
func TestReassignmentValidation(t *testing.T) {
	g := newImg(t, 6)
	rf3(g, "t", map[string]string{ConfigMinInsyncReplicas: "2"})
	before := g.p("t", 0)
	for _, tc := range []struct {
		name   string
		target []int32
		want   error
	}{
		{"empty", nil, ErrInvalidAssignment},
		{"too many", []int32{1, 2, 3, 4, 5, 6}, ErrInvalidAssignment},
		{"twice", []int32{1, 1, 2}, ErrInvalidAssignment},
		{"unregistered", []int32{1, 2, 9}, ErrInvalidAssignment},
		{"below min ISR", []int32{1}, ErrInvalidAssignment},
	} {
		if r := g.reassign("t", 0, tc.target...); !errors.Is(r.Err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, r.Err, tc.want)
		}
	}
	if r := g.reassign("t", 1, 1, 2); !errors.Is(r.Err, ErrUnknownTopic) {
		t.Errorf("unknown partition: %v", r.Err)
	}
	if r := g.reassign("nope", 0, 1, 2); !errors.Is(r.Err, ErrUnknownTopic) {
		t.Errorf("unknown topic: %v", r.Err)
	}
	if p := g.p("t", 0); changed(before, p) || p.PartitionEpoch != before.PartitionEpoch {
		t.Fatalf("a refused reassignment changed the partition: %+v", p)
	}
}
