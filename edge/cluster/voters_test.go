package cluster

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// join adds node id to the cluster's configs as a node that joins (no
// bootstrap) and starts it.
func (c *memCluster) join(id int32) *Node {
	c.t.Helper()
	cfg := c.cfgs[1]
	cfg.NodeID, cfg.Addr, cfg.Dir, cfg.Join = id, "node"+itoa(id), c.t.TempDir(), true
	cfg.Endpoints = staticEndpoints(map[string]string{"kafka": "127.0.0.1:1909" + itoa(id)})
	c.cfgs[id] = cfg
	return c.start(id)
}

func voterIDs(t *testing.T, n *Node) []int32 {
	t.Helper()
	vs, err := n.Voters()
	if err != nil {
		t.Fatal(err)
	}
	var ids []int32
	for _, v := range vs {
		if v.Voter {
			ids = append(ids, v.ID)
		}
	}
	return ids
}

// A fourth node started to join is added as a voter from a follower, is
// given a replica by a reassignment, and may be removed only once that
// replica is reassigned away; the last live majority is never given up.
func TestAddAndRemoveVoters(t *testing.T) {
	c := newMemCluster(t, 3)
	ctrl := c.controller()
	c.waitBrokers(3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var follower *Node
	for _, n := range c.live() {
		if n != ctrl {
			follower = n
		}
	}

	n4 := c.join(4)
	// Joining alone, it neither bootstraps nor elects itself.
	if n4.IsController() || len(n4.Image().Brokers) != 0 {
		t.Fatal("a joining node acted before it was added")
	}
	if err := follower.AddVoter(ctx, 4, "node4"); err != nil {
		t.Fatal(err)
	}
	if got := voterIDs(t, ctrl); !slices.Equal(got, []int32{1, 2, 3, 4}) {
		t.Fatalf("voters %v after adding 4", got)
	}
	c.waitBrokers(4) // it heartbeats through the controller it now knows
	if err := ctrl.AddVoter(ctx, 4, "node4"); err != nil {
		t.Fatalf("adding it again: %v", err)
	}
	if err := ctrl.AddVoter(ctx, 4, "elsewhere"); !errors.Is(err, ErrVoterChange) {
		t.Fatalf("adding 4 at another address: %v", err)
	}

	// Broker 4 gets a replica.
	if res, err := ctrl.Propose(ctx, Record{Op: OpCreateTopic, Topic: "t", Assignment: [][]int32{{1}}}); err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	if err := follower.ReassignPartition(ctx, "t", 0, []int32{1, 4}, false); err != nil {
		t.Fatal(err)
	}
	p := follower.Image().Topics["t"].Partitions[0]
	if !slices.Equal(p.AddingReplicas, []int32{4}) {
		t.Fatalf("after the start: %+v", p)
	}
	err := follower.RemoveVoter(ctx, 4)
	if !errors.Is(err, ErrVoterChange) || !strings.Contains(err.Error(), "t-0") || !strings.Contains(err.Error(), "reassign") {
		t.Fatalf("removing a voter with replicas: %v", err)
	}
	// The leader (1) adds 4 to the ISR: completed.
	leader := c.node(p.Leader)
	if _, err := leader.AlterPartition(ctx, "t", 0, p.LeaderEpoch, p.PartitionEpoch, []int32{1, 4}); err != nil {
		t.Fatal(err)
	}
	if p := leader.Image().Topics["t"].Partitions[0]; p.Reassigning() || !slices.Equal(p.Replicas, []int32{1, 4}) {
		t.Fatalf("after the ISR covered the target: %+v", p)
	}
	// And away again.
	if err := follower.ReassignPartition(ctx, "t", 0, []int32{1}, false); err != nil {
		t.Fatal(err)
	}
	if err := follower.RemoveVoter(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if got := voterIDs(t, ctrl); !slices.Equal(got, []int32{1, 2, 3}) {
		t.Fatalf("voters %v after removing 4", got)
	}
	if err := ctrl.RemoveVoter(ctx, 4); !errors.Is(err, ErrVoterChange) {
		t.Fatalf("removing a voter twice: %v", err)
	}
	c.stop(4)

	// A voter down and fenced: removing another would leave two voters,
	// one of them live.
	var down, other int32
	for id := int32(1); id <= 3; id++ {
		if id == ctrl.ID() {
			continue
		}
		if down == 0 {
			down = id
		} else {
			other = id
		}
	}
	c.stop(down)
	waitFor(t, "the stopped voter fenced", func() bool { return ctrl.Image().Brokers[down].Fenced })
	if err := ctrl.RemoveVoter(ctx, other); !errors.Is(err, ErrVoterChange) || !strings.Contains(err.Error(), "majority") {
		t.Fatalf("removing %d with %d down: %v", other, down, err)
	}
}

func TestRemoveVoterRules(t *testing.T) {
	g := newImg(t, 2)
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: "1", Address: "a"}}}
	if err := checkRemoveVoter(conf, g.im, 1); !errors.Is(err, ErrVoterChange) || !strings.Contains(err.Error(), "last voter") {
		t.Fatalf("removing the last voter: %v", err)
	}
	if err := checkRemoveVoter(conf, g.im, 2); !errors.Is(err, ErrVoterChange) || !strings.Contains(err.Error(), "not a voter") {
		t.Fatalf("removing a non-voter: %v", err)
	}
	conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: "2", Address: "b"})
	if err := checkRemoveVoter(conf, g.im, 2); err != nil {
		t.Fatalf("removing 2 of 1 and 2, 1 live: %v", err)
	}
	g.fence(1)
	if err := checkRemoveVoter(conf, g.im, 2); !errors.Is(err, ErrVoterChange) {
		t.Fatalf("removing 2, leaving only the fenced 1: %v", err)
	}
}

// Adding a voter that does not answer at its address (never started, a
// wrong address), or answers there as another node, is refused before
// raft's configuration changes: a voter that is not there would count in
// every quorum from then on.
func TestAddVoterChecksTheNodeAnswers(t *testing.T) {
	c := newMemCluster(t, 3)
	ctrl := c.controller()
	c.waitBrokers(3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	servers := func() []raft.Server {
		f := ctrl.raft.GetConfiguration()
		if err := f.Error(); err != nil {
			t.Fatal(err)
		}
		return f.Configuration().Servers
	}
	before := servers()

	err := ctrl.AddVoter(ctx, 4, "node4") // nothing runs there
	if !errors.Is(err, ErrVoterChange) || !strings.Contains(err.Error(), "no node answers") {
		t.Fatalf("adding a voter nobody runs: %v", err)
	}
	if got := servers(); !slices.Equal(got, before) {
		t.Fatalf("the configuration changed to %v after a refused add", got)
	}

	c.join(4)
	var follower *Node
	for _, n := range c.live() {
		if n != ctrl && n.ID() != 4 {
			follower = n
		}
	}
	// From a follower too (the controller checks); node 4 runs at node4.
	err = follower.AddVoter(ctx, 5, "node4")
	if !errors.Is(err, ErrVoterChange) || !strings.Contains(err.Error(), "is node 4, not 5") {
		t.Fatalf("adding node 4's address as voter 5: %v", err)
	}
	if got := servers(); !slices.Equal(got, before) {
		t.Fatalf("the configuration changed to %v after a refused add", got)
	}
	if err := follower.AddVoter(ctx, 4, "node4"); err != nil {
		t.Fatalf("adding node 4, which runs: %v", err)
	}
	if got := voterIDs(t, ctrl); !slices.Equal(got, []int32{1, 2, 3, 4}) {
		t.Fatalf("voters %v after adding 4", got)
	}
}
