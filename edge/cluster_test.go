package edge

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"ferry/edge/cluster"
	flog "ferry/log"
)

// freeLoopbackAddrs reserves n 127.0.0.1 ports by listening and closing
// (the cluster's voter list must name them before the nodes start).
func freeLoopbackAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	var lns []net.Listener
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

func quickRaft(rc *raft.Config) {
	rc.HeartbeatTimeout = 200 * time.Millisecond
	rc.ElectionTimeout = 200 * time.Millisecond
	rc.LeaderLeaseTimeout = 200 * time.Millisecond
}

type testCluster struct {
	t     *testing.T
	nodes []*Node
	opts  []Options
}

// startTestCluster starts three full nodes on loopback in this process,
// each its own data directory, Kafka listener and cluster listener.
func startTestCluster(t *testing.T) *testCluster {
	t.Helper()
	addrs := freeLoopbackAddrs(t, 3)
	var voters []cluster.Voter
	for i, a := range addrs {
		voters = append(voters, cluster.Voter{ID: int32(i + 1), Addr: a})
	}
	tc := &testCluster{t: t}
	for i := range addrs {
		tc.opts = append(tc.opts, Options{
			DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", Mode: "full",
			AutoCreateTopics: true, Logger: slog.New(slog.DiscardHandler),
			Cluster: &ClusterOptions{NodeID: int32(i + 1), Voters: voters,
				HeartbeatInterval: 50 * time.Millisecond, SessionTimeout: time.Second, raft: quickRaft},
		})
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
	// A replication factor above 1 is refused until replication exists.
	if _, err := ka.CreateTopic(ctx, 1, 3, nil, "replicated"); err == nil {
		t.Fatal("replication factor 3 accepted")
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
