package edge

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"ferry/edge/cluster"
	flog "ferry/log"
	"ferry/mirror"
)

// freeLoopbackAddrs finds n free 127.0.0.1 ports (the cluster's voter list
// and the edges' center lists name them before the nodes start, and a
// restarted node must find its port again). They are drawn below the
// kernel's ephemeral range (32768 and up), so no client connection of a
// parallel test takes one in between.
func freeLoopbackAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	seen := map[int]bool{}
	for len(out) < n {
		port := 20000 + rand.IntN(6000) // 20000-25999; testbed draws 26000-31999
		if seen[port] {
			continue
		}
		seen[port] = true
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // taken: draw again
		}
		ln.Close()
		out = append(out, ln.Addr().String())
	}
	return out
}

func quickRaft(rc *raft.Config) {
	rc.HeartbeatTimeout = 200 * time.Millisecond
	rc.ElectionTimeout = 200 * time.Millisecond
	rc.LeaderLeaseTimeout = 200 * time.Millisecond
}

type testCluster struct {
	t           *testing.T
	nodes       []*Node
	opts        []Options
	mirrorAddrs []string
}

// startTestCluster starts three full nodes on loopback in this process,
// each its own data directory, Kafka listener, cluster listener and mirror
// receiver (fixed ports, so a restarted node is where edges look).
func startTestCluster(t *testing.T) *testCluster { return startTestClusterWith(t, nil) }

// startTestClusterWith is startTestCluster with each node's options
// changed by edit first.
func startTestClusterWith(t *testing.T, edit func(o *Options)) *testCluster {
	t.Helper()
	addrs := freeLoopbackAddrs(t, 3)
	tc := &testCluster{t: t, mirrorAddrs: freeLoopbackAddrs(t, 3)}
	var voters []cluster.Voter
	for i, a := range addrs {
		voters = append(voters, cluster.Voter{ID: int32(i + 1), Addr: a})
	}
	for i := range addrs {
		tc.opts = append(tc.opts, Options{
			DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", Mode: "full",
			MirrorAddr: tc.mirrorAddrs[i], MirrorReceiver: mirror.ReceiverOptions{Tokens: map[string]string{"gw1": "s1", "gw2": "s2"}},
			AutoCreateTopics: true, Logger: slog.New(slog.DiscardHandler),
			Cluster: &ClusterOptions{NodeID: int32(i + 1), Voters: voters,
				HeartbeatInterval: 50 * time.Millisecond, SessionTimeout: time.Second, raft: quickRaft},
		})
	}
	if edit != nil {
		for i := range tc.opts {
			edit(&tc.opts[i])
		}
	}
	tc.nodes = make([]*Node, len(addrs))
	for i := range addrs {
		tc.start(i)
	}
	t.Cleanup(func() {
		for _, n := range tc.nodes {
			if n != nil {
				n.Close()
			}
		}
	})
	tc.waitFor("three brokers registered on every node", func() bool {
		for _, n := range tc.nodes {
			if n == nil || len(n.Cluster().Image().BrokerIDs(true)) != 3 {
				return false
			}
		}
		return true
	})
	return tc
}

func (tc *testCluster) start(i int) {
	tc.t.Helper()
	n, err := Start(tc.opts[i])
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.nodes[i] = n
}

func (tc *testCluster) waitFor(what string, cond func() bool) {
	tc.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tc.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClusterRoutesClientsToLeaders(t *testing.T) {
	tc := startTestCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Topics created through any node spread over all three.
	adm, err := kgo.NewClient(kgo.SeedBrokers(tc.nodes[1].KafkaAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ka := kadm.NewClient(adm)
	if _, err := ka.CreateTopic(ctx, 6, 1, nil, "spread"); err != nil {
		t.Fatal(err)
	}
	// Created on the controller; every node follows.
	tc.waitFor("the topic on every node", func() bool {
		for _, n := range tc.nodes {
			if _, err := n.Log().Topic("spread"); err != nil {
				return false
			}
		}
		return true
	})
	md, err := ka.Metadata(ctx, "spread")
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Brokers) != 3 {
		t.Fatalf("metadata lists %d brokers, want 3", len(md.Brokers))
	}
	leaders := map[int32]int{}
	for _, p := range md.Topics["spread"].Partitions {
		leaders[p.Leader]++
	}
	if len(leaders) != 3 {
		t.Fatalf("partitions led by %v, want all three brokers (metadata %+v)", leaders, md.Topics["spread"])
	}
	// Every node holds the topic under the same id.
	for _, n := range tc.nodes {
		info, err := n.Log().Topic("spread")
		if err != nil || info.ID != md.Topics["spread"].ID {
			t.Fatalf("node's local topic %+v %v, want id %x", info, err, md.Topics["spread"].ID)
		}
	}
	// Explicit replica assignments naming live brokers are honoured.
	ct := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "placed", -1, -1
	for p, b := range []int32{2, 3} {
		a := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
		a.Partition, a.Replicas = int32(p), []int32{b}
		rt.ReplicaAssignment = append(rt.ReplicaAssignment, a)
	}
	ct.Topics = append(ct.Topics, rt)
	ct.TimeoutMillis = 30000
	kresp, err := adm.Request(ctx, ct)
	if err != nil {
		t.Fatal(err)
	}
	if code := kresp.(*kmsg.CreateTopicsResponse).Topics[0].ErrorCode; code != 0 {
		t.Fatalf("CreateTopics with an assignment: %v", kerr.ErrorForCode(code))
	}
	tc.waitFor("the assigned topic's leaders", func() bool {
		tp := tc.nodes[0].Cluster().Image().Topics["placed"]
		return tp != nil && tp.Partitions[0].Leader == 2 && tp.Partitions[1].Leader == 3
	})

	// A replication factor above the brokers there are is refused.
	if r, err := ka.CreateTopic(ctx, 1, 4, nil, "replicated"); err == nil && r.Err == nil {
		t.Fatal("replication factor 4 accepted by 3 brokers")
	}

	// A producer and a consumer bootstrapped at node 3 reach every leader.
	const records = 300
	cl, err := kgo.NewClient(kgo.SeedBrokers(tc.nodes[2].KafkaAddr()), kgo.DefaultProduceTopic("spread"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := 0; i < records; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// Records live only on their partition's leader.
	for _, p := range md.Topics["spread"].Partitions {
		for i, n := range tc.nodes {
			lp, err := n.Log().Partition("spread", p.Partition)
			if err != nil {
				t.Fatal(err)
			}
			if got := lp.EndOffset(); (int32(i+1) == p.Leader) != (got > 0) {
				t.Fatalf("partition %d (leader %d) has %d records on node %d", p.Partition, p.Leader, got, i+1)
			}
		}
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(tc.nodes[0].KafkaAddr()), kgo.ConsumeTopics("spread"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	seen := map[string]bool{}
	for len(seen) < records {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d: %v", len(seen), records, fs.Errors())
		}
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
	}

	// Producer ids come from the cluster's blocks: two nodes never hand
	// out the same one.
	ids := map[int64]int{}
	for i, n := range tc.nodes {
		c, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()))
		if err != nil {
			t.Fatal(err)
		}
		req := kmsg.NewPtrInitProducerIDRequest()
		req.TransactionTimeoutMillis = 60000
		if _, err := c.Request(ctx, kmsg.NewPtrMetadataRequest()); err != nil {
			t.Fatal(err)
		}
		kresp, err := c.Broker(i+1).Request(ctx, req)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		r := kresp.(*kmsg.InitProducerIDResponse)
		if r.ErrorCode != 0 {
			t.Fatalf("InitProducerId on node %d: %v", i+1, kerr.ErrorForCode(r.ErrorCode))
		}
		if prev, dup := ids[r.ProducerID]; dup {
			t.Fatalf("producer id %d from nodes %d and %d", r.ProducerID, prev, i+1)
		}
		ids[r.ProducerID] = i + 1
	}

	// A group has one coordinator, whichever node is asked; another node
	// answers its group APIs NOT_COORDINATOR.
	coord := int32(-1)
	for i, n := range tc.nodes {
		c, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Request(ctx, kmsg.NewPtrMetadataRequest()); err != nil {
			t.Fatal(err)
		}
		fc := kmsg.NewPtrFindCoordinatorRequest()
		fc.CoordinatorKey, fc.CoordinatorKeys = "g1", []string{"g1"} // v0-3, v4+
		kresp, err := c.Broker(i+1).Request(ctx, fc)
		if err != nil {
			t.Fatal(err)
		}
		r := kresp.(*kmsg.FindCoordinatorResponse)
		id, code := r.NodeID, r.ErrorCode
		if len(r.Coordinators) == 1 {
			id, code = r.Coordinators[0].NodeID, r.Coordinators[0].ErrorCode
		}
		if code != 0 || id < 1 || (coord != -1 && id != coord) {
			t.Fatalf("node %d names coordinator %d (error %d), another named %d", i+1, id, code, coord)
		}
		coord = id
		other := coord%3 + 1
		hb := kmsg.NewPtrHeartbeatRequest()
		hb.Group, hb.MemberID, hb.Generation = "g1", "m", 1
		kresp, err = c.Broker(int(other)).Request(ctx, hb)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if code := kresp.(*kmsg.HeartbeatResponse).ErrorCode; code != kerr.NotCoordinator.Code {
			t.Fatalf("heartbeat at node %d, which does not coordinate the group (node %d does): %v", other, coord, kerr.ErrorForCode(code))
		}
	}

	// The admin API of any node creates through the controller too.
	body := strings.NewReader(`{"name":"from-api","partitions":3}`)
	resp, err := http.Post("http://"+tc.nodes[2].AdminAddr()+"/api/topics", "application/json", body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/topics: %s", resp.Status)
	}
	if tp := tc.nodes[0].Cluster().Image().Topics["from-api"]; tp == nil {
		tc.waitFor("the API's topic in the metadata", func() bool { return tc.nodes[0].Cluster().Image().Topics["from-api"] != nil })
	}

	// A produce sent to a broker that does not lead the partition is
	// answered NOT_LEADER_OR_FOLLOWER (franz-go then follows metadata; here
	// it is asked directly).
	p0 := md.Topics["spread"].Partitions[0]
	other := p0.Leader%3 + 1 // a broker that is not the leader
	if err := produceDirect(ctx, tc.nodes[0].KafkaAddr(), other, "spread", 0); !errors.Is(err, kerr.NotLeaderForPartition) {
		t.Fatalf("produce to a non-leader: %v, want NOT_LEADER_FOR_PARTITION", err)
	}
}

// produceDirect sends one Produce of one record for topic-partition to
// broker id alone (no client routing) and returns its error.
func produceDirect(ctx context.Context, seed string, id int32, topic string, partition int32) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seed))
	if err != nil {
		return err
	}
	defer cl.Close()
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = partition
	rp.Records = flog.AppendBatch(nil, []flog.Record{{Value: []byte("direct"), Timestamp: time.Now().UnixMilli()}})
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	if _, err := cl.Request(ctx, kmsg.NewPtrMetadataRequest()); err != nil { // learn the brokers
		return err
	}
	kresp, err := cl.Broker(int(id)).Request(ctx, req)
	if err != nil {
		return err
	}
	return kerr.ErrorForCode(kresp.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode)
}

func TestClusterBrokerKilledGoesOfflineAndReturns(t *testing.T) {
	tc := startTestCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(tc.nodes[0].KafkaAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ka := kadm.NewClient(cl)
	if _, err := ka.CreateTopic(ctx, 3, 1, nil, "t"); err != nil {
		t.Fatal(err)
	}
	// Node 3 stops; its partition is reported offline, the others serve.
	tc.nodes[2].Close()
	tc.nodes[2] = nil
	tc.waitFor("node 3 fenced on both live nodes", func() bool {
		for _, n := range tc.nodes[:2] {
			if b := n.Cluster().Image().Brokers[3]; b == nil || !b.Fenced {
				return false
			}
		}
		return true
	})
	ka.Close()
	cl2, err := kgo.NewClient(kgo.SeedBrokers(tc.nodes[1].KafkaAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	md, err := kadm.NewClient(cl2).Metadata(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	offline := 0
	for _, p := range md.Topics["t"].Partitions {
		if p.Leader == -1 {
			offline++
			if p.Err == nil {
				t.Fatalf("offline partition %d without an error", p.Partition)
			}
		}
	}
	if offline != 1 || len(md.Brokers) != 2 {
		t.Fatalf("%d offline partitions, %d brokers; want 1 and 2", offline, len(md.Brokers))
	}
	// Back: it leads its partition again.
	tc.start(2)
	tc.waitFor("node 3 leading again, as every node sees it", func() bool {
		for _, n := range tc.nodes {
			if im := n.Cluster().Image(); im.Brokers[3] == nil || im.Brokers[3].Fenced || im.Offline() != 0 {
				return false
			}
		}
		return true
	})
}

// TestClusterReceivesEdgesAtTheirHome: two edges mirror into the three
// nodes, given as a list. Each edge's copies live on one node, its home;
// stopping another node changes nothing for it; stopping its home takes
// its copies offline (replication factor 1) until the home returns, and
// the copies end exact, offsets and bytes, nothing twice.
func TestClusterReceivesEdgesAtTheirHome(t *testing.T) {
	tc := startTestCluster(t)
	quiet := slog.New(slog.DiscardHandler)
	list := strings.Join(tc.mirrorAddrs, ",")
	type edgeNode struct {
		id string
		n  *Node
	}
	var edges []edgeNode
	for i, id := range []string{"gw1", "gw2"} {
		// gw2 lists the nodes the other way round: it first reaches
		// another node than gw1 does.
		l := list
		if i == 1 {
			l = strings.Join([]string{tc.mirrorAddrs[2], tc.mirrorAddrs[1], tc.mirrorAddrs[0]}, ",")
		}
		n, err := Start(Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", Logger: quiet,
			MirrorTo: mirror.SenderOptions{Center: l, EdgeID: id, Token: "s" + id[2:]}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		if _, err := n.Log().CreateTopic("telemetry", 2, nil); err != nil {
			t.Fatal(err)
		}
		edges = append(edges, edgeNode{id, n})
	}
	appendSome := func(e edgeNode, k int) {
		for p := int32(0); p < 2; p++ {
			part, _ := e.n.Log().Partition("telemetry", p)
			for i := 0; i < k; i++ {
				v := fmt.Sprintf("%s-%d-%d", e.id, p, part.EndOffset())
				if _, err := part.Append(flog.AppendBatch(nil, []flog.Record{{Value: []byte(v), Timestamp: time.Now().UnixMilli()}})); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	home := func(e edgeNode) int {
		var h int32 = -1
		tc.waitFor(e.id+"'s copies at a home", func() bool {
			for _, n := range tc.nodes {
				if n == nil {
					continue
				}
				t0 := n.Cluster().Image().Topics[e.id+".telemetry"]
				if t0 != nil && t0.Partitions[0].Leader > 0 {
					h = t0.Partitions[0].Leader
					return true
				}
			}
			return false
		})
		return int(h - 1)
	}
	exact := func(e edgeNode) {
		t.Helper()
		h := home(e)
		tc.waitFor(e.id+" copied exactly", func() bool {
			if tc.nodes[h] == nil {
				return false
			}
			for p := int32(0); p < 2; p++ {
				src, _ := e.n.Log().Partition("telemetry", p)
				dst, err := tc.nodes[h].Log().Partition(e.id+".telemetry", p)
				if err != nil || dst.DurableOffset() != src.EndOffset() {
					return false
				}
			}
			return true
		})
		for p := int32(0); p < 2; p++ {
			src, _ := e.n.Log().Partition("telemetry", p)
			dst, _ := tc.nodes[h].Log().Partition(e.id+".telemetry", p)
			a, err := src.Read(0, 1<<20, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, err := dst.Read(0, 1<<20, nil)
			if err != nil {
				t.Fatal(err)
			}
			// The center's leader stamps its leader epoch in each copied
			// batch (bytes 12–15); everything else is the edge's bytes.
			if !bytes.Equal(maskLeaderEpochs(a.Data), maskLeaderEpochs(b.Data)) {
				t.Fatalf("%s partition %d: the copy differs from the edge's log", e.id, p)
			}
		}
	}
	for _, e := range edges {
		appendSome(e, 20)
	}
	for _, e := range edges {
		exact(e)
	}
	h1 := home(edges[0])
	// Every partition of an edge is on its home.
	for _, n := range tc.nodes {
		for _, tp := range n.Cluster().Image().Topics {
			for _, p := range tp.Partitions {
				if tp.Group != "" && p.Leader != int32(home(edgeNode{id: tp.Group})+1) {
					t.Fatalf("%s: partition led by %d, not its edge's home", tp.Name, p.Leader)
				}
			}
		}
	}
	// A node that is not gw1's home stops: gw1 goes on.
	other := (h1 + 1) % 3
	tc.nodes[other].Close()
	tc.nodes[other] = nil
	appendSome(edges[0], 10)
	exact(edges[0])
	tc.start(other)
	// gw1's home stops: its copies are offline; records appended
	// meanwhile arrive once the home is back, exactly once.
	tc.nodes[h1].Close()
	tc.nodes[h1] = nil
	appendSome(edges[0], 10)
	tc.start(h1)
	appendSome(edges[0], 5)
	exact(edges[0])
	exact(edges[1])
}

// maskLeaderEpochs copies record batches with each batch's partition
// leader epoch (bytes 12–15, outside the CRC) zeroed.
func maskLeaderEpochs(b []byte) []byte {
	out := append([]byte(nil), b...)
	for i := 0; i+17 <= len(out); {
		n := int(binary.BigEndian.Uint32(out[i+8:])) + 12
		copy(out[i+12:i+16], []byte{0, 0, 0, 0})
		i += n
	}
	return out
}
