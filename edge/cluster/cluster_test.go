package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// memCluster is n nodes on raft's in-memory transport, with requests
// between nodes delivered by a map: deterministic, no sockets.
type memCluster struct {
	t     *testing.T
	mu    sync.Mutex
	nodes map[string]*Node // by raft address
	trans map[string]*raft.InmemTransport
	cfgs  map[int32]Config
}

func (c *memCluster) Call(ctx context.Context, addr string, req Request) (Response, error) {
	c.mu.Lock()
	n := c.nodes[addr]
	c.mu.Unlock()
	if n == nil {
		return Response{}, fmt.Errorf("no node at %s", addr)
	}
	return n.Serve(ctx, req), nil
}

func staticEndpoints(m map[string]string) func() map[string]string {
	return func() map[string]string { return m }
}

func fastRaft(rc *raft.Config) {
	rc.HeartbeatTimeout = 100 * time.Millisecond
	rc.ElectionTimeout = 100 * time.Millisecond
	rc.LeaderLeaseTimeout = 100 * time.Millisecond
	rc.CommitTimeout = 5 * time.Millisecond
}

func newMemCluster(t *testing.T, size int) *memCluster {
	t.Helper()
	c := &memCluster{t: t, nodes: map[string]*Node{}, trans: map[string]*raft.InmemTransport{}, cfgs: map[int32]Config{}}
	var voters []Voter
	for i := 1; i <= size; i++ {
		voters = append(voters, Voter{ID: int32(i), Addr: "node" + strconv.Itoa(i)})
	}
	for _, v := range voters {
		c.cfgs[v.ID] = Config{
			NodeID: v.ID, Addr: v.Addr, Voters: voters, Dir: t.TempDir(), Caller: c,
			Endpoints:         staticEndpoints(map[string]string{"kafka": fmt.Sprintf("127.0.0.1:%d", 19090+v.ID)}),
			HeartbeatInterval: 20 * time.Millisecond, SessionTimeout: 300 * time.Millisecond,
			Raft: fastRaft, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}
	}
	for _, v := range voters {
		c.start(v.ID)
	}
	t.Cleanup(func() {
		c.mu.Lock()
		nodes := c.nodes
		c.nodes = map[string]*Node{}
		c.mu.Unlock()
		for _, n := range nodes {
			n.Close()
		}
	})
	return c
}

// start opens node id (again, after stop: same directory, new
// incarnation) and connects its transport to every other.
func (c *memCluster) start(id int32) *Node {
	c.t.Helper()
	cfg := c.cfgs[id]
	_, tr := raft.NewInmemTransport(raft.ServerAddress(cfg.Addr))
	c.mu.Lock()
	for addr, other := range c.trans {
		if addr != cfg.Addr {
			tr.Connect(raft.ServerAddress(addr), other)
			other.Connect(raft.ServerAddress(cfg.Addr), tr)
		}
	}
	c.trans[cfg.Addr] = tr
	c.mu.Unlock()
	cfg.Transport = tr
	n, err := Open(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.nodes[cfg.Addr] = n
	c.mu.Unlock()
	return n
}

// stop closes node id as a crash would look to the others: gone, its
// transport disconnected.
func (c *memCluster) stop(id int32) {
	addr := c.cfgs[id].Addr
	c.mu.Lock()
	n, tr := c.nodes[addr], c.trans[addr]
	delete(c.nodes, addr)
	delete(c.trans, addr)
	for _, other := range c.trans {
		other.Disconnect(raft.ServerAddress(addr))
	}
	c.mu.Unlock()
	tr.DisconnectAll()
	n.Close()
}

func (c *memCluster) node(id int32) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[c.cfgs[id].Addr]
}

func (c *memCluster) live() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Node
	for _, n := range c.nodes {
		out = append(out, n)
	}
	return out
}

// waitFor polls cond until it holds or ten seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (c *memCluster) controller() *Node {
	c.t.Helper()
	var ctrl *Node
	waitFor(c.t, "a controller", func() bool {
		for _, n := range c.live() {
			if n.serving() {
				ctrl = n
				return true
			}
		}
		return false
	})
	return ctrl
}

// waitBrokers waits until every live node's image shows want unfenced
// brokers.
func (c *memCluster) waitBrokers(want int) {
	c.t.Helper()
	waitFor(c.t, fmt.Sprintf("%d unfenced brokers on every node", want), func() bool {
		for _, n := range c.live() {
			if len(n.Image().BrokerIDs(true)) != want {
				return false
			}
		}
		return true
	})
}

func TestClusterCreatesTopicFromAnyNodeSpreadOverAll(t *testing.T) {
	c := newMemCluster(t, 3)
	ctrl := c.controller()
	c.waitBrokers(3)
	var follower *Node
	for _, n := range c.live() {
		if n != ctrl {
			follower = n
		}
	}
	ctx := context.Background()
	res, err := follower.Propose(ctx, Record{Op: OpCreateTopic, Topic: "telemetry", Count: 6})
	if err != nil || res.Err != nil {
		t.Fatalf("create from a follower: %v %v", err, res.Err)
	}
	// Answered once applied on the proposing node itself.
	tp := follower.Image().Topics["telemetry"]
	if tp == nil || len(tp.Partitions) != 6 || tp.ID == "" {
		t.Fatalf("topic not in the proposer's image at once: %+v", tp)
	}
	_, leads := follower.Image().PartitionsPerBroker()
	for id := int32(1); id <= 3; id++ {
		if leads[id] != 2 {
			t.Fatalf("partitions led per broker %v, want 2 each", leads)
		}
	}
	// The cluster's default replication factor (three voters: 3), every
	// replica in sync at creation, and min ISR 2 by default.
	for i, p := range tp.Partitions {
		if len(p.Replicas) != 3 || !reflect.DeepEqual(p.ISR, p.Replicas) || p.Leader != p.Replicas[0] {
			t.Fatalf("partition %d: %+v, want 3 replicas all in sync, led by the first", i, p)
		}
	}
	waitFor(t, "the controller's defaults in the image", func() bool {
		im := follower.Image()
		return im.Defaults == Defaults{ReplicationFactor: 3, MinInsyncReplicas: 2} && im.MinISR(im.Topics["telemetry"]) == 2
	})
	if res, err := ctrl.Propose(ctx, Record{Op: OpCreateTopic, Topic: "telemetry", Count: 1}); err != nil || !errors.Is(res.Err, ErrTopicExists) {
		t.Fatalf("second create: %v %v, want ErrTopicExists", err, res.Err)
	}
	// Forwarded errors keep their sentinel.
	if res, err := follower.Propose(ctx, Record{Op: OpCreateTopic, Topic: "telemetry", Count: 1}); err != nil || !errors.Is(res.Err, ErrTopicExists) {
		t.Fatalf("second create through a follower: %v %v, want ErrTopicExists", err, res.Err)
	}
	c.waitIndexEqual()
}

// waitIndexEqual waits until every live node has applied the same index
// and holds the same image.
func (c *memCluster) waitIndexEqual() {
	c.t.Helper()
	waitFor(c.t, "equal metadata on every node", func() bool {
		nodes := c.live()
		first := nodes[0].Image()
		for _, n := range nodes[1:] {
			im := n.Image()
			if im.Index != first.Index || len(im.Topics) != len(first.Topics) {
				return false
			}
		}
		return true
	})
}

func TestControllerFailoverKeepsMetadata(t *testing.T) {
	c := newMemCluster(t, 3)
	old := c.controller()
	c.waitBrokers(3)
	ctx := context.Background()
	if _, err := old.Propose(ctx, Record{Op: OpCreateTopic, Topic: "a", Count: 3, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	c.stop(old.ID())
	ctrl := c.controller()
	if ctrl.ID() == old.ID() {
		t.Fatal("the stopped node still leads")
	}
	if ctrl.Image().Topics["a"] == nil {
		t.Fatal("the new controller lost topic a")
	}
	// The old controller is fenced by the new one once its session times
	// out (a fresh grace period first), and its partitions go offline.
	waitFor(t, "the stopped broker fenced", func() bool {
		b := ctrl.Image().Brokers[old.ID()]
		return b != nil && b.Fenced
	})
	im := ctrl.Image()
	for i, p := range im.Topics["a"].Partitions {
		if p.Replicas[0] == old.ID() && (p.Leader != NoLeader || p.LeaderEpoch != 1) {
			t.Fatalf("partition %d of the fenced broker: leader %d epoch %d, want offline at epoch 1", i, p.Leader, p.LeaderEpoch)
		}
		if p.Replicas[0] != old.ID() && p.Leader != p.Replicas[0] {
			t.Fatalf("partition %d moved although its broker lives", i)
		}
	}
	if _, err := ctrl.Propose(ctx, Record{Op: OpCreateTopic, Topic: "b", Count: 4, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	for _, p := range ctrl.Image().Topics["b"].Partitions {
		if p.Replicas[0] == old.ID() {
			t.Fatal("a fenced broker was given a new partition")
		}
	}
	// Restarted, it registers a new incarnation, is unfenced, and leads
	// its partitions again at a new epoch.
	back := c.start(old.ID())
	waitFor(t, "the restarted broker leading its partitions", func() bool {
		im := back.Image()
		if im.Topics["a"] == nil || im.Brokers[old.ID()] == nil {
			return false
		}
		for _, p := range im.Topics["a"].Partitions {
			if p.Replicas[0] == old.ID() && (p.Leader != old.ID() || p.LeaderEpoch != 2) {
				return false
			}
		}
		return !im.Brokers[old.ID()].Fenced
	})
	c.waitIndexEqual()
}

func TestProducerIDBlocksNeverOverlap(t *testing.T) {
	c := newMemCluster(t, 3)
	c.controller()
	c.waitBrokers(3)
	ctx := context.Background()
	seen := map[int64]bool{}
	for i := 0; i < 6; i++ {
		n := c.live()[i%3]
		res, err := n.Propose(ctx, Record{Op: OpAllocProducerIDs, Count: 1000})
		if err != nil || res.Err != nil {
			t.Fatal(err, res.Err)
		}
		if seen[res.Value] || res.Value%1000 != 0 {
			t.Fatalf("block %d handed out twice or misaligned", res.Value)
		}
		seen[res.Value] = true
	}
}

func TestMirrorSessionFencesOlder(t *testing.T) {
	c := newMemCluster(t, 3)
	c.controller()
	c.waitBrokers(3)
	ctx := context.Background()
	first, err := c.node(1).Propose(ctx, Record{Op: OpMirrorSession, Edge: "gw1", Broker: 1})
	if err != nil || first.Err != nil {
		t.Fatal(err, first.Err)
	}
	second, err := c.node(2).Propose(ctx, Record{Op: OpMirrorSession, Edge: "gw1", Broker: 2})
	if err != nil || second.Err != nil {
		t.Fatal(err, second.Err)
	}
	if second.Value <= first.Value {
		t.Fatalf("epochs %d then %d: the newer session must have the higher epoch", first.Value, second.Value)
	}
	s := c.node(2).Image().Mirror["gw1"]
	if s.Node != 2 || s.Epoch != second.Value {
		t.Fatalf("session %+v, want node 2 epoch %d", s, second.Value)
	}
}

func TestClusterMetrics(t *testing.T) {
	c := newMemCluster(t, 3)
	ctrl := c.controller()
	c.waitBrokers(3)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(ctrl.Collector())
	want := `
# HELP ferry_cluster_brokers Brokers in the metadata image, by state (unfenced, fenced).
# TYPE ferry_cluster_brokers gauge
ferry_cluster_brokers{state="fenced"} 0
ferry_cluster_brokers{state="unfenced"} 3
# HELP ferry_cluster_is_controller 1 while this node is the controller (the raft leader, caught up).
# TYPE ferry_cluster_is_controller gauge
ferry_cluster_is_controller 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ferry_cluster_brokers", "ferry_cluster_is_controller"); err != nil {
		t.Fatal(err)
	}
	if st := ctrl.Status(); st.Controller != ctrl.ID() || st.State != "Leader" || st.AppliedIndex == 0 {
		t.Fatalf("status %+v", st)
	}
}

// TestQuorumLossRecoveredWithPeersJSON: two of three voters are gone for
// good; the operator writes peers.json naming the survivor alone, restarts
// it, and it leads with the metadata it had.
func TestQuorumLossRecoveredWithPeersJSON(t *testing.T) {
	c := newMemCluster(t, 3)
	c.controller()
	c.waitBrokers(3)
	ctx := context.Background()
	if _, err := c.node(1).Propose(ctx, Record{Op: OpCreateTopic, Topic: "kept", Count: 3}); err != nil {
		t.Fatal(err)
	}
	c.waitIndexEqual()
	c.stop(2)
	c.stop(3)
	c.stop(1)
	peers := `[{"id":"1","address":"node1"}]`
	if err := os.WriteFile(filepath.Join(c.cfgs[1].Dir, PeersFile), []byte(peers), 0o644); err != nil {
		t.Fatal(err)
	}
	one := c.start(1)
	waitFor(t, "the survivor leading alone", func() bool { return one.serving() })
	if one.Image().Topics["kept"] == nil {
		t.Fatal("the survivor lost the metadata")
	}
	if res, err := one.Propose(ctx, Record{Op: OpCreateTopic, Topic: "after", Count: 1, ReplicationFactor: 1}); err != nil || res.Err != nil {
		t.Fatalf("a proposal after the recovery: %v %v", err, res.Err)
	}
	if _, err := os.Stat(filepath.Join(c.cfgs[1].Dir, PeersFile+".applied")); err != nil {
		t.Fatalf("peers.json not marked applied: %v", err)
	}
}

// TestAlterPartitionAndControlledShutdownThroughTheController: a broker
// that is not the controller changes its partition's ISR and shuts down
// its leaderships through the controller; the errors keep their sentinels
// over the wire, and its metrics count what it leads.
func TestAlterPartitionAndControlledShutdownThroughTheController(t *testing.T) {
	c := newMemCluster(t, 3)
	ctrl := c.controller()
	c.waitBrokers(3)
	var f *Node
	for _, n := range c.live() {
		if n != ctrl {
			f = n
		}
	}
	waitFor(t, "the defaults", func() bool { return f.Image().Defaults.MinInsyncReplicas == 2 })
	ctx := context.Background()
	if res, err := f.Propose(ctx, Record{Op: OpCreateTopic, Topic: "r", Count: 3}); err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	if addr, ok := f.Image().ClusterAddr(f.ID()); !ok || addr != c.cfgs[f.ID()].Addr {
		t.Fatalf("cluster address %q %v, want %q", addr, ok, c.cfgs[f.ID()].Addr)
	}
	var mine ReplicaAssignment
	for _, a := range f.Image().Replicas(f.ID()) {
		if a.Leader == f.ID() {
			mine = a
		}
	}
	if mine.Topic != "r" || mine.MinISR != 2 || len(mine.ISR) != 3 {
		t.Fatalf("the partition f leads: %+v", mine)
	}
	others := minus(mine.Replicas, []int32{f.ID()})
	pe, err := f.AlterPartition(ctx, "r", mine.Partition, mine.LeaderEpoch, mine.PartitionEpoch, []int32{f.ID(), others[0]})
	if err != nil || pe != mine.PartitionEpoch+1 {
		t.Fatalf("shrink: epoch %d, %v", pe, err)
	}
	if p := f.Image().Topics["r"].Partitions[mine.Partition]; p.PartitionEpoch != pe || len(p.ISR) != 2 {
		t.Fatalf("not applied on the proposer at once: %+v", p)
	}
	if _, err := f.AlterPartition(ctx, "r", mine.Partition, mine.LeaderEpoch, mine.PartitionEpoch, []int32{f.ID()}); !errors.Is(err, ErrInvalidUpdateVersion) {
		t.Fatalf("stale partition epoch: %v", err)
	}
	if _, err := f.AlterPartition(ctx, "r", mine.Partition, mine.LeaderEpoch-1, pe, []int32{f.ID()}); !errors.Is(err, ErrFencedLeaderEpoch) {
		t.Fatalf("stale leader epoch: %v", err)
	}
	const metrics = `
# HELP ferry_cluster_under_min_isr_partitions Partitions this broker leads with fewer in-sync replicas than min.insync.replicas: acks=all is refused (Kafka's UnderMinIsrPartitionCount).
# TYPE ferry_cluster_under_min_isr_partitions gauge
ferry_cluster_under_min_isr_partitions %d
# HELP ferry_cluster_under_replicated_partitions Partitions this broker leads with fewer in-sync replicas than replicas (Kafka's UnderReplicatedPartitions).
# TYPE ferry_cluster_under_replicated_partitions gauge
ferry_cluster_under_replicated_partitions %d
`
	check := func(n *Node, underMin, urp int) {
		t.Helper()
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(n.Collector())
		want := fmt.Sprintf(metrics, underMin, urp)
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ferry_cluster_under_min_isr_partitions", "ferry_cluster_under_replicated_partitions"); err != nil {
			t.Fatal(err)
		}
	}
	check(f, 0, 1)
	check(ctrl, 0, 0) // URP is the leader's
	if _, err := f.AlterPartition(ctx, "r", mine.Partition, mine.LeaderEpoch, pe, []int32{f.ID()}); err != nil {
		t.Fatal(err)
	}
	check(f, 1, 1)
	if st := f.Status(); st.Replication.UnderMinISR != 1 || st.Replication.UnderReplicated != 1 || len(st.PartitionStates) != 3 {
		t.Fatalf("status %+v", st.Replication)
	}

	// Controlled shutdown: f's leadership moves to the eligible replica
	// (f shrank the ISR to itself below min ISR, so the other left for
	// the ELR).
	if err := f.ShutdownLeaderships(ctx); err != nil {
		t.Fatal(err)
	}
	im := f.Image()
	if _, leads := im.PartitionsPerBroker(); leads[f.ID()] != 0 {
		t.Fatalf("f still leads %d partitions", leads[f.ID()])
	}
	if p := im.Topics["r"].Partitions[mine.Partition]; p.Leader != others[0] || p.LeaderEpoch != mine.LeaderEpoch+1 {
		t.Fatalf("after the controlled shutdown: %+v, want led by %d", p, others[0])
	}
}
