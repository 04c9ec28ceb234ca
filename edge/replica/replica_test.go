package replica_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"ferry/edge/replica"
	"ferry/ingest/kafka"
	flog "ferry/log"
	"ferry/mirror"
)

// The tests run three "brokers" in one process on 127.0.0.1, each with its
// own log directory, Kafka server (a client listener and a replica
// listener handing connections to ServeReplica) and replica manager, over
// a fake metadata the test controls: it applies AlterPartition at once,
// checking the epochs as a controller does, and the test moves leaders.

const topic = "t"

var quiet = slog.New(slog.DiscardHandler)

// cluster is the fake metadata of every node and the nodes themselves.
type cluster struct {
	t       *testing.T
	lag     time.Duration
	durable bool

	mu      sync.Mutex
	as      []replica.Assignment // t-0 first, then u-0, u-1, u-2
	refuse  int                  // AlterPartition calls for t-0 to refuse ("no controller")
	refused int                  // how many were
	changed chan struct{}
	nodes   map[int32]*node
	configs map[string]string // t's topic configs (nil: the defaults)
}

type node struct {
	c     *cluster
	id    int32
	log   *flog.Log
	srv   *kafka.Server
	addr  string // clients
	raddr string // replica connections
	mgr   atomic.Pointer[replica.Manager]
	part  *flog.Partition
	reg   *prometheus.Registry // the replica manager's metrics, kept across restarts
	dir   string               // the log's directory
	stop  func()               // closes what openNode opened (once; also at the test's end)
}

// newCluster starts three nodes with t-0 replicated on all, led by node 1
// at epoch 1, all in sync, min ISR 2.
func newCluster(t *testing.T, lag time.Duration) *cluster { return newClusterDurable(t, lag, false) }

// newClusterDurable is newCluster with Options.DurableFollowers.
func newClusterDurable(t *testing.T, lag time.Duration, durable bool) *cluster {
	return newClusterOn(t, lag, durable, nil, nil)
}

// newClusterOn is newClusterDurable with t's topic configs and each
// node's filesystem (nil, or missing: the operating system's).
func newClusterOn(t *testing.T, lag time.Duration, durable bool, configs map[string]string, fss map[int32]flog.FS) *cluster {
	c := &cluster{t: t, lag: lag, durable: durable, changed: make(chan struct{}), nodes: map[int32]*node{}, configs: configs}
	c.as = []replica.Assignment{{Topic: topic, TopicID: [16]byte{1}, Partition: 0, Replicas: []int32{1, 2, 3}, ISR: []int32{1, 2, 3},
		Leader: 1, LeaderEpoch: 1, PartitionEpoch: 1, MinISR: 2}}
	// u's partitions are led by nodes 2, 3 and 1: each node leads one
	// and follows two leaders, one fetcher each.
	for i, leader := range []int32{2, 3, 1} {
		c.as = append(c.as, replica.Assignment{Topic: "u", TopicID: [16]byte{2}, Partition: int32(i), Replicas: []int32{1, 2, 3},
			ISR: []int32{1, 2, 3}, Leader: leader, LeaderEpoch: 4, PartitionEpoch: 1, MinISR: 2})
	}
	for id := int32(1); id <= 3; id++ {
		c.openNode(id, t.TempDir(), fss[id])
	}
	for id := int32(1); id <= 3; id++ {
		c.nodes[id].startManager()
	}
	c.waitLeader(1, 1)
	return c
}

// openNode opens node id's log in dir through fsys (nil: the operating
// system's), creating the topics if they are not there yet, and starts
// its Kafka server; not its replica manager.
func (c *cluster) openNode(id int32, dir string, fsys flog.FS) *node {
	t := c.t
	l, err := flog.Open(flog.Options{Dir: dir, FS: fsys, RetentionCheckInterval: -1, Replicated: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateTopicWithID(topic, [16]byte{1}, 1, c.configs); err != nil && !errors.Is(err, flog.ErrTopicExists) {
		t.Fatal(err)
	}
	if _, err := l.CreateTopicWithID("u", [16]byte{2}, 3, nil); err != nil && !errors.Is(err, flog.ErrTopicExists) {
		t.Fatal(err)
	}
	ids, err := kafka.OpenProducerIDs(filepath.Join(dir, "producer-ids.db"))
	if err != nil {
		t.Fatal(err)
	}
	n := &node{c: c, id: id, log: l, reg: prometheus.NewRegistry(), dir: dir}
	n.part, _ = l.Partition(topic, 0)
	srv, err := kafka.NewServer(kafka.Options{Log: l, NodeID: id, Cluster: clusterView{n}, Replication: replication{n},
		ProducerIDs: ids, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	n.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.addr, n.raddr = ln.Addr().String(), rln.Addr().String()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); srv.Serve(ln) }()
	go func() {
		defer wg.Done()
		for {
			conn, err := rln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); srv.ServeReplica(conn) }()
		}
	}()
	c.mu.Lock()
	c.nodes[id] = n
	c.mu.Unlock()
	var once sync.Once
	n.stop = func() {
		once.Do(func() {
			if m := n.mgr.Load(); m != nil {
				m.Close()
			}
			rln.Close()
			srv.Close()
			wg.Wait()
			ids.Close()
			l.Close()
		})
	}
	t.Cleanup(n.stop)
	return n
}

// startManager starts (again) the node's replica manager.
func (n *node) startManager() {
	m, err := replica.New(replica.Options{Log: n.log, Metadata: meta{n}, Logger: quiet, ReplicaLagTime: n.c.lag,
		FetchMaxWait: 200 * time.Millisecond, CheckpointInterval: 50 * time.Millisecond, DurableFollowers: n.c.durable,
		Registerer: n.reg})
	if err != nil {
		n.c.t.Fatal(err)
	}
	m.Start()
	n.mgr.Store(m)
}

// stopManager stops the node's replica manager: it neither fetches nor
// leads (its Kafka server still answers, as a process whose replica
// manager stalled).
func (n *node) stopManager() {
	if err := n.mgr.Load().Close(); err != nil {
		n.c.t.Fatal(err)
	}
}

// change applies fn to the assignment and tells every node.
func (c *cluster) change(fn func(a *replica.Assignment)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fn(&c.as[0])
	c.as[0].PartitionEpoch++
	close(c.changed)
	c.changed = make(chan struct{})
}

// assignment is t-0's assignment now.
func (c *cluster) assignment() replica.Assignment { return c.lookup(topic, 0) }

// lookup is a partition's assignment now (Leader -1 if unknown).
func (c *cluster) lookup(tp string, p int32) replica.Assignment {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a := c.find(tp, p); a != nil {
		b := *a
		b.Replicas, b.ISR = slices.Clone(a.Replicas), slices.Clone(a.ISR)
		return b
	}
	return replica.Assignment{Leader: -1}
}

// find is a partition's assignment; c.mu is held.
func (c *cluster) find(tp string, p int32) *replica.Assignment {
	for i := range c.as {
		if c.as[i].Topic == tp && c.as[i].Partition == p {
			return &c.as[i]
		}
	}
	return nil
}

// meta is one node's view of the fake metadata.
type meta struct{ n *node }

func (m meta) Self() int32 { return m.n.id }

func (m meta) Assignments() ([]replica.Assignment, <-chan struct{}) {
	c := m.n.c
	c.mu.Lock()
	ch, as := c.changed, slices.Clone(c.as)
	c.mu.Unlock()
	var out []replica.Assignment
	for _, a := range as {
		out = append(out, c.lookup(a.Topic, a.Partition))
	}
	return out, ch
}

func (m meta) AlterPartition(ctx context.Context, tp string, p, leaderEpoch, partitionEpoch int32, isr []int32) (int32, error) {
	c := m.n.c
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.find(tp, p)
	switch {
	case c.refuse > 0 && tp == topic:
		c.refuse--
		c.refused++
		return 0, errors.New("no controller")
	case a == nil:
		return 0, errors.New("unknown partition")
	case a.Leader != m.n.id || leaderEpoch != a.LeaderEpoch:
		return 0, errors.New("fenced leader epoch")
	case partitionEpoch != a.PartitionEpoch:
		return 0, errors.New("stale partition epoch")
	}
	a.ISR = slices.Clone(isr)
	a.PartitionEpoch++
	close(c.changed)
	c.changed = make(chan struct{})
	return a.PartitionEpoch, nil
}

func (m meta) Dial(ctx context.Context, broker int32) (net.Conn, error) {
	c := m.n.c
	c.mu.Lock()
	n := c.nodes[broker]
	c.mu.Unlock()
	if n == nil {
		return nil, fmt.Errorf("no broker %d", broker)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", n.raddr)
}

// clusterView is the Kafka front end's view of the fake metadata.
type clusterView struct{ n *node }

func (v clusterView) Brokers() []kafka.Broker {
	c := v.n.c
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []kafka.Broker
	for id := int32(1); id <= 3; id++ {
		if n := c.nodes[id]; n != nil {
			host, port, _ := net.SplitHostPort(n.addr)
			p, _ := strconv.Atoi(port)
			out = append(out, kafka.Broker{ID: id, Host: host, Port: int32(p)})
		}
	}
	return out
}

func (v clusterView) Controller() int32 { return 1 }

func (v clusterView) Partition(tp string, p int32) (kafka.PartitionView, bool) {
	a := v.n.c.lookup(tp, p)
	if a.Leader < 0 {
		return kafka.PartitionView{}, false
	}
	return kafka.PartitionView{Leader: a.Leader, LeaderEpoch: a.LeaderEpoch, Replicas: a.Replicas, ISR: a.ISR}, true
}

func (v clusterView) Coordinator(string) (kafka.Broker, bool) { return kafka.Broker{}, false }

// replication adapts the node's current manager to the front end (as
// edge.KafkaReplication does).
type replication struct{ n *node }

func (r replication) Leader(tp string, p int32) (kafka.ReplicaLeader, bool) {
	m := r.n.mgr.Load()
	if m == nil {
		return nil, false
	}
	l, ok := m.Leader(tp, p)
	if !ok {
		return nil, false
	}
	return l, true
}

// poll waits for cond, failing after a deadline.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(8 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (c *cluster) waitLeader(id, epoch int32) {
	c.t.Helper()
	poll(c.t, fmt.Sprintf("node %d to lead at epoch %d", id, epoch), func() bool {
		m := c.nodes[id].mgr.Load()
		l, ok := m.Leader(topic, 0)
		return ok && l.LeaderEpoch() == epoch
	})
}

func (c *cluster) waitISR(want ...int32) {
	c.t.Helper()
	poll(c.t, fmt.Sprintf("ISR %v", want), func() bool { return slices.Equal(c.assignment().ISR, want) })
}

// client produces to and consumes from the cluster through node id.
func (c *cluster) client(id int32, opts ...kgo.Opt) *kgo.Client {
	c.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.nodes[id].addr), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0)}, opts...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(cl.Close)
	return cl
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// contents reads a partition's whole log as stored.
func contents(t *testing.T, p *flog.Partition) []byte {
	t.Helper()
	var out []byte
	for off := p.StartOffset(); off < p.EndOffset(); {
		r, err := p.Read(off, 1<<20, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Data) == 0 {
			break
		}
		out = append(out, r.Data...)
		off = lastOffset(r.Data) + 1
	}
	return out
}

// lastOffset is the last offset of the last batch in data.
func lastOffset(data []byte) int64 {
	last := int64(-1)
	for len(data) >= 61 {
		h, err := flog.ParseBatch(data)
		if err != nil {
			break
		}
		last = h.LastOffset()
		data = data[h.Length:]
	}
	return last
}

// waitIdentical waits until every node's log equals the leader's, byte for
// byte (leader-epoch stamps included: followers copy them).
func (c *cluster) waitIdentical(leader int32) {
	c.t.Helper()
	lp := c.nodes[leader].part
	for id := int32(1); id <= 3; id++ {
		p := c.nodes[id].part
		poll(c.t, fmt.Sprintf("node %d to reach the leader's end", id), func() bool { return p.EndOffset() == lp.EndOffset() })
		if !bytes.Equal(contents(c.t, p), contents(c.t, lp)) {
			c.t.Fatalf("node %d's log differs from leader %d's", id, leader)
		}
	}
}

// An acks=all produce (idempotent) is acknowledged only once both
// followers hold it; a consumer never reads above the high watermark, and
// whatever it reads every replica holds; the followers end byte-identical
// to the leader, its epoch stamps included.
func TestAcksAllWaitsForEveryInSyncReplica(t *testing.T) {
	c := newCluster(t, 30*time.Second)
	prod := c.client(1)
	ctx := ctxT(t)
	for i := 0; i < 30; i++ {
		r := &kgo.Record{Value: []byte("v" + strconv.Itoa(i))}
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		for id := int32(2); id <= 3; id++ {
			if end := c.nodes[id].part.EndOffset(); end <= r.Offset {
				t.Fatalf("record %d acknowledged with acks=all while follower %d ends at %d", r.Offset, id, end)
			}
		}
		if hw := c.nodes[1].part.HighWatermark(); hw <= r.Offset {
			t.Fatalf("record %d acknowledged with the high watermark at %d", r.Offset, hw)
		}
	}
	// acks=1 records are readable only once committed: every fetch
	// returns records that every replica holds.
	prod1 := c.client(1, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	cons := c.client(1)
	for i := 0; i < 20; i++ {
		if err := prod1.ProduceSync(ctx, &kgo.Record{Value: []byte("w")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		resp := fetch(t, cons, 0)
		last := lastOffset(resp.RecordBatches)
		if last >= resp.HighWatermark {
			t.Fatalf("consumer read offset %d above the high watermark %d", last, resp.HighWatermark)
		}
		for id := int32(2); id <= 3; id++ {
			if end := c.nodes[id].part.EndOffset(); end <= last {
				t.Fatalf("consumer read offset %d that follower %d (end %d) does not hold", last, id, end)
			}
		}
	}
	c.waitIdentical(1)
	if e := c.nodes[3].part.LeaderEpochs(); len(e) != 1 || e[0].Epoch != 1 {
		t.Fatalf("follower's leader epochs %v, want epoch 1 from the leader's stamps", e)
	}
}

// fetch is one consumer fetch of t-0 at offset from the partition's
// leader, at the leader epoch the cluster says.
func fetch(t *testing.T, cl *kgo.Client, offset int64) kmsg.FetchResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID, req.MaxBytes = -1, 1<<20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.FetchOffset, rp.PartitionMaxBytes = offset, 1<<20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	sp := resp.Topics[0].Partitions[0]
	if sp.ErrorCode != 0 {
		t.Fatalf("fetch: %v", kerr.ErrorForCode(sp.ErrorCode))
	}
	return sp
}

// produceRaw sends one batch of one record to node id with acks, and
// returns the partition's error code and base offset.
func (c *cluster) produceRaw(id int32, acks int16, value string) (int16, int64) {
	c.t.Helper()
	return c.produceRawTimeout(id, acks, value, 5000)
}

// produceRawTimeout is produceRaw with the request's timeout.
func (c *cluster) produceRawTimeout(id int32, acks int16, value string, timeoutMillis int32) (int16, int64) {
	c.t.Helper()
	ack := kgo.AllISRAcks()
	if acks == 1 {
		ack = kgo.LeaderAck()
	}
	// kgo sends a raw produce with the client's acks.
	cl := c.client(id, kgo.RequiredAcks(ack), kgo.DisableIdempotentWrite())
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = acks, timeoutMillis
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = flog.AppendBatch(nil, []flog.Record{{Value: []byte(value)}})
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxT(c.t), cl.Broker(int(id)))
	if err != nil {
		c.t.Fatal(err)
	}
	sp := resp.Topics[0].Partitions[0]
	return sp.ErrorCode, sp.BaseOffset
}

// A leader change while the old leader holds an uncommitted tail: the old
// leader, now a follower, truncates the tail where its log diverges, the
// new leader re-uses those offsets, and nothing acknowledged is lost.
func TestLeaderChangeTruncatesUncommittedTail(t *testing.T) {
	c := newCluster(t, 30*time.Second)
	ctx := ctxT(t)
	prod := c.client(1)
	var acked []*kgo.Record
	for i := 0; i < 5; i++ {
		r := &kgo.Record{Value: []byte("acked" + strconv.Itoa(i))}
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		acked = append(acked, r)
	}
	committed := c.nodes[1].part.HighWatermark()
	// The followers stop; the leader takes a tail with acks=1 that no
	// follower copies.
	c.nodes[2].stopManager()
	c.nodes[3].stopManager()
	for i := 0; i < 3; i++ {
		if code, _ := c.produceRaw(1, 1, "tail"); code != 0 {
			t.Fatalf("acks=1 produce: %v", kerr.ErrorForCode(code))
		}
	}
	tailEnd := c.nodes[1].part.EndOffset()
	if tailEnd != committed+3 || c.nodes[1].part.HighWatermark() != committed {
		t.Fatalf("leader ends at %d with HW %d, want %d and %d", tailEnd, c.nodes[1].part.HighWatermark(), committed+3, committed)
	}
	// Node 1 is deposed (the controller fenced it): node 2 leads at
	// epoch 2 with the in-sync set {2, 3}.
	c.change(func(a *replica.Assignment) { a.Leader, a.LeaderEpoch, a.ISR = 2, 2, []int32{2, 3} })
	c.nodes[2].startManager()
	c.nodes[3].startManager()
	c.waitLeader(2, 2)
	code, base := c.produceRaw(2, -1, "new")
	if code != 0 {
		t.Fatalf("acks=all produce to the new leader: %v", kerr.ErrorForCode(code))
	}
	if base != committed {
		t.Fatalf("the new leader appended at %d, want the old leader's uncommitted offset %d re-used", base, committed)
	}
	c.waitIdentical(2)
	c.waitISR(1, 2, 3) // the old leader caught up and rejoined
	// Every acknowledged record is where it was acknowledged, on every
	// node; the tail is gone everywhere.
	for id := int32(1); id <= 3; id++ {
		data := contents(t, c.nodes[id].part)
		for _, r := range acked {
			if !bytes.Contains(data, r.Value) {
				t.Fatalf("node %d lost acknowledged record %d (%s)", id, r.Offset, r.Value)
			}
		}
		if bytes.Contains(data, []byte("tail")) {
			t.Fatalf("node %d kept the deposed leader's uncommitted tail", id)
		}
	}
	if n := c.nodes[1].metric("ferry_replica_truncations_total"); n < 1 {
		t.Fatalf("the old leader counted %v truncations", n)
	}
	if e := c.nodes[1].part.LeaderEpochs(); e[len(e)-1] != (flog.EpochEntry{Epoch: 2, StartOffset: committed}) {
		t.Fatalf("old leader's epochs after following: %v, want epoch 2 from %d last", e, committed)
	}
}

// A follower that stops fetching leaves the in-sync set after the lag
// time, letting acks=all produces complete with the rest; it rejoins once
// it has caught up. With fewer in-sync replicas than min.insync.replicas,
// acks=all is refused (NOT_ENOUGH_REPLICAS) and acks=1 still served.
func TestISRShrinksAndExpands(t *testing.T) {
	c := newCluster(t, 300*time.Millisecond)
	ctx := ctxT(t)
	prod := c.client(1)
	if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("a")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	c.nodes[3].stopManager()
	// Answered once node 3 has been dropped: the high watermark then
	// counts nodes 1 and 2 only.
	if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("b")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	c.waitISR(1, 2)
	c.checkStatus(false)
	c.nodes[3].startManager()
	c.waitISR(1, 2, 3)
	c.waitIdentical(1)
	c.checkStatus(false)
	for _, change := range []string{"shrink", "expand"} {
		// t-0's, and u-2's if node 3 had not fetched it before it stopped.
		if n := c.nodes[1].metric("ferry_replica_isr_changes_total", "change", change, "result", "committed"); n < 1 {
			t.Fatalf("%v committed ISR %ss counted, want 1 or more", n, change)
		}
	}
	if n := c.nodes[3].metric("ferry_replica_fetched_bytes_total"); n <= 0 {
		t.Fatal("the follower counted no fetched bytes")
	}

	c.nodes[2].stopManager()
	c.nodes[3].stopManager()
	// A follower at the leader's end is in sync however long it has been
	// silent (Kafka's isCaughtUp): an append makes them lag.
	if code, _ := c.produceRaw(1, 1, "one"); code != 0 {
		t.Fatalf("acks=1: %v", kerr.ErrorForCode(code))
	}
	c.waitISR(1)
	c.checkStatus(true)
	if code, _ := c.produceRaw(1, -1, "refused"); code != kerr.NotEnoughReplicas.Code {
		t.Fatalf("acks=all with the ISR below min: %v, want NOT_ENOUGH_REPLICAS", kerr.ErrorForCode(code))
	}
	if code, _ := c.produceRaw(1, 1, "two"); code != 0 {
		t.Fatalf("acks=1 with the ISR below min: %v", kerr.ErrorForCode(code))
	}
	if data := contents(t, c.nodes[1].part); bytes.Contains(data, []byte("refused")) {
		t.Fatal("a refused acks=all batch was appended")
	}
	// Below min ISR the high watermark stands still (KIP-966), so the
	// followers can reach it and rejoin; acks=all is served again.
	c.nodes[2].startManager()
	c.nodes[3].startManager()
	c.waitISR(1, 2, 3)
	if code, _ := c.produceRaw(1, -1, "again"); code != 0 {
		t.Fatalf("acks=all with the ISR restored: %v", kerr.ErrorForCode(code))
	}
	c.waitIdentical(1)
}

// An acks=all produce appended while the in-sync set was big enough, whose
// followers then fall out of it, is answered
// NOT_ENOUGH_REPLICAS_AFTER_APPEND.
func TestNotEnoughReplicasAfterAppend(t *testing.T) {
	c := newCluster(t, time.Second)
	c.nodes[2].stopManager()
	c.nodes[3].stopManager()
	if code, _ := c.produceRaw(1, -1, "late"); code != kerr.NotEnoughReplicasAfterAppend.Code {
		t.Fatalf("acks=all whose ISR shrank below min meanwhile: %v, want NOT_ENOUGH_REPLICAS_AFTER_APPEND", kerr.ErrorForCode(code))
	}
}

// With DurableFollowers, an acks=all acknowledgement means every in-sync
// follower has made the record durable (fsynced under its flush.policy),
// not only appended it.
func TestDurableFollowersAckOnlyDurable(t *testing.T) {
	c := newClusterDurable(t, 30*time.Second, true)
	prod := c.client(1)
	ctx := ctxT(t)
	for i := 0; i < 20; i++ {
		r := &kgo.Record{Value: []byte("d" + strconv.Itoa(i))}
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		for id := int32(2); id <= 3; id++ {
			if d := c.nodes[id].part.DurableOffset(); d <= r.Offset {
				t.Fatalf("record %d acknowledged while follower %d is durable only below %d", r.Offset, id, d)
			}
		}
	}
}

// A follower whose end is below the leader's log start (retention deleted
// what it would continue with) starts over at the leader's log start.
func TestFollowerBehindLeaderLogStartStartsOver(t *testing.T) {
	c := newCluster(t, 300*time.Millisecond)
	c.nodes[3].stopManager()
	lp := c.nodes[1].part
	for i := 0; i < 6; i++ {
		if code, _ := c.produceRaw(1, 1, "r"+strconv.Itoa(i)); code != 0 {
			t.Fatalf("produce: %v", kerr.ErrorForCode(code))
		}
		if err := lp.Roll(); err != nil {
			t.Fatal(err)
		}
	}
	c.waitISR(1, 2)
	if err := c.nodes[1].log.AlterConfigs(topic, map[string]string{flog.ConfigRetentionBytes: "1"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.nodes[1].log.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	start := lp.StartOffset()
	if start <= c.nodes[3].part.EndOffset() {
		t.Fatalf("retention left the leader's start at %d, follower 3 ends at %d", start, c.nodes[3].part.EndOffset())
	}
	if code, _ := c.produceRaw(1, 1, "after"); code != 0 {
		t.Fatalf("produce: %v", kerr.ErrorForCode(code))
	}
	c.nodes[3].startManager()
	c.waitISR(1, 2, 3)
	p3 := c.nodes[3].part
	poll(t, "follower 3 to copy the record after the leader's start", func() bool { return p3.EndOffset() == lp.EndOffset() })
	if p3.StartOffset() != start || p3.EndOffset() != lp.EndOffset() || !bytes.Equal(contents(t, p3), contents(t, lp)) {
		t.Fatalf("follower 3 holds [%d, %d), leader [%d, %d); or their bytes differ", p3.StartOffset(), p3.EndOffset(), start, lp.EndOffset())
	}
}

// Retention is the leader's: a follower's pass deletes nothing of a
// partition it follows, however its own clock or size says (a follower
// whose clock runs ahead would otherwise cut records its leader still
// serves); the leader's pass cuts, and the followers' starts follow its
// log start.
func TestRetentionIsTheLeaders(t *testing.T) {
	c := newCluster(t, 300*time.Millisecond)
	lp := c.nodes[1].part
	for i := 0; i < 4; i++ {
		if code, _ := c.produceRaw(1, 1, "r"+strconv.Itoa(i)); code != 0 {
			t.Fatalf("produce: %v", kerr.ErrorForCode(code))
		}
		if err := lp.Roll(); err != nil {
			t.Fatal(err)
		}
	}
	c.waitISR(1, 2, 3)
	for _, id := range []int32{1, 2, 3} {
		if err := c.nodes[id].log.AlterConfigs(topic, map[string]string{flog.ConfigRetentionBytes: "1"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The leader deletes only what is committed.
	poll(t, "every record to be committed", func() bool { return lp.HighWatermark() == lp.EndOffset() })
	for _, id := range []int32{2, 3} {
		poll(t, "the followers to hold every record", func() bool { return c.nodes[id].part.EndOffset() == lp.EndOffset() })
		if res, err := c.nodes[id].log.EnforceRetention(); err != nil || res.Segments != 0 || c.nodes[id].part.StartOffset() != 0 {
			t.Fatalf("follower %d's retention pass: %+v, %v, start %d; want nothing deleted", id, res, err, c.nodes[id].part.StartOffset())
		}
	}
	if res, err := c.nodes[1].log.EnforceRetention(); err != nil || res.Segments == 0 {
		t.Fatalf("the leader's retention pass: %+v, %v; want segments deleted", res, err)
	}
	start := lp.StartOffset()
	if code, _ := c.produceRaw(1, 1, "after"); code != 0 { // a fetch answer carries the new log start
		t.Fatalf("produce: %v", kerr.ErrorForCode(code))
	}
	for _, id := range []int32{2, 3} {
		poll(t, "the followers' starts to follow the leader's", func() bool { return c.nodes[id].part.StartOffset() == start })
	}
}

// The leader's retention never deletes what the followers do not hold
// yet: a record stamped 1970, past retention.ms, appended while both
// followers are stalled, stays, and the high watermark stays below it, so
// acks=all is not released for it (a wait for it runs out); once the
// followers hold it, retention deletes it.
func TestRetentionKeepsUncommittedRecords(t *testing.T) {
	c := newCluster(t, 30*time.Second)
	lp := c.nodes[1].part
	c.nodes[2].stopManager()
	c.nodes[3].stopManager()
	code, base := c.produceRaw(1, 1, "old") // Timestamp 0: 1970
	if code != 0 {
		t.Fatalf("produce: %v", kerr.ErrorForCode(code))
	}
	if err := c.nodes[1].log.AlterConfigs(topic, map[string]string{flog.ConfigRetentionMs: "1"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.nodes[1].log.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	rl, ok := replication{c.nodes[1]}.Leader(topic, 0)
	if !ok {
		t.Fatal("node 1 does not lead t-0")
	}
	ctx, cancel := context.WithTimeout(ctxT(t), 300*time.Millisecond)
	defer cancel()
	if err := rl.WaitCommitted(ctx, base); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acks=all wait for the uncommitted record: %v, want it to run out", err)
	}
	if start, hw := lp.StartOffset(), lp.HighWatermark(); start > base || hw > base {
		t.Fatalf("after the leader's retention pass: start %d, high watermark %d; want the uncommitted record at %d kept, above both", start, hw, base)
	}
	c.nodes[2].startManager()
	c.nodes[3].startManager()
	poll(t, "the record to be committed", func() bool { return lp.HighWatermark() == lp.EndOffset() })
	if _, err := c.nodes[1].log.EnforceRetention(); err != nil || lp.StartOffset() != lp.EndOffset() {
		t.Fatalf("retention once committed: start %d, end %d, %v; want everything deleted", lp.StartOffset(), lp.EndOffset(), err)
	}
}

// checkStatus checks node 1's report of t-0 as leader: under-replicated
// while the ISR is smaller than the replicas (polled: the leader learns
// its ISR from AlterPartition's answer), under min ISR as said.
func (c *cluster) checkStatus(underMin bool) {
	c.t.Helper()
	var last replica.PartitionStatus
	poll(c.t, "node 1's partition status to match the ISR", func() bool {
		ps := c.nodes[1].mgr.Load().Partitions()
		if len(ps) != 4 || ps[0].Topic != topic {
			return false
		}
		last = ps[0] // sorted: t-0 before u's
		a := c.assignment()
		return last.Role == "leader" && slices.Equal(last.ISR, a.ISR) &&
			last.UnderReplicated == (len(a.ISR) < len(a.Replicas)) && last.UnderMinISR == underMin
	})
	if last.Topic != topic || last.Leader != 1 || last.LeaderEpoch != 1 || last.HighWatermark > last.EndOffset {
		c.t.Fatalf("status %+v", last)
	}
	if ps := c.nodes[2].mgr.Load().Partitions(); len(ps) != 4 || ps[0].Role != "follower" && ps[0].Role != "none" {
		c.t.Fatalf("node 2's status %+v", ps)
	}
}

// Every node leads one partition of u and follows the other two, fetching
// from two leaders at once: acks=all produces to all three partitions
// complete, and every replica ends byte-identical to its leader.
func TestEveryNodeLeadsAndFollows(t *testing.T) {
	c := newCluster(t, 30*time.Second)
	for id := int32(1); id <= 3; id++ {
		c.waitLeaderOf("u", (id+1)%3, id) // u-0 by 2, u-1 by 3, u-2 by 1
	}
	prod := c.client(1, kgo.DefaultProduceTopic("u"))
	ctx := ctxT(t)
	for i := 0; i < 30; i++ {
		r := &kgo.Record{Value: []byte("u" + strconv.Itoa(i)), Partition: int32(i % 3)}
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		leader := c.lookup("u", r.Partition).Leader
		for id := int32(1); id <= 3; id++ {
			p, _ := c.nodes[id].log.Partition("u", r.Partition)
			if id != leader && p.EndOffset() <= r.Offset {
				t.Fatalf("u-%d record %d acknowledged while follower %d ends at %d", r.Partition, r.Offset, id, p.EndOffset())
			}
		}
	}
	for part := int32(0); part < 3; part++ {
		lp, _ := c.nodes[c.lookup("u", part).Leader].log.Partition("u", part)
		for id := int32(1); id <= 3; id++ {
			p, _ := c.nodes[id].log.Partition("u", part)
			poll(t, "every replica of u to reach its leader's end", func() bool { return p.EndOffset() == lp.EndOffset() })
			if !bytes.Equal(contents(t, p), contents(t, lp)) {
				t.Fatalf("node %d's u-%d differs from its leader's", id, part)
			}
		}
	}
}

func (c *cluster) waitLeaderOf(tp string, p, id int32) {
	c.t.Helper()
	poll(c.t, fmt.Sprintf("node %d to lead %s-%d", id, tp, p), func() bool {
		_, ok := c.nodes[id].mgr.Load().Leader(tp, p)
		return ok
	})
}

// A new leader epoch with the same leader (a re-election): followers go on
// fetching from it at the new epoch, and copy its new stamps.
func TestSameLeaderNewEpoch(t *testing.T) {
	c := newCluster(t, 30*time.Second)
	if code, _ := c.produceRaw(1, -1, "before"); code != 0 {
		t.Fatalf("produce: %v", kerr.ErrorForCode(code))
	}
	c.change(func(a *replica.Assignment) { a.LeaderEpoch = 2 })
	c.waitLeader(1, 2)
	code, base := c.produceRaw(1, -1, "after")
	if code != 0 {
		t.Fatalf("produce at epoch 2: %v", kerr.ErrorForCode(code))
	}
	for id := int32(2); id <= 3; id++ {
		if end := c.nodes[id].part.EndOffset(); end <= base {
			t.Fatalf("acknowledged at epoch 2 while follower %d ends at %d", id, end)
		}
	}
	c.waitIdentical(1)
	if e := c.nodes[2].part.LeaderEpochs(); len(e) != 2 || e[1] != (flog.EpochEntry{Epoch: 2, StartOffset: base}) {
		t.Fatalf("follower's epochs %v, want epoch 2 from %d", e, base)
	}
}

// The mirror receiver's copy of an edge's partition on a replicated
// center: a chunk counts as durable (is acknowledged) only once committed,
// the edge resumes from the committed end, and the leader stamps its epoch
// into the edge's batches, which followers copy.
func TestCommittedCopyForTheMirror(t *testing.T) {
	var _ mirror.Copy = (*replica.CommittedCopy)(nil)
	c := newCluster(t, 30*time.Second)
	cp, ok := c.nodes[1].mgr.Load().Copy(topic, 0)
	if !ok {
		t.Fatal("no copy on the leader")
	}
	if _, ok := c.nodes[2].mgr.Load().Copy(topic, 0); ok {
		t.Fatal("a follower offered a copy to write")
	}
	c.nodes[2].stopManager()
	c.nodes[3].stopManager()
	b := flog.AppendBatch(nil, []flog.Record{{Value: []byte("edge")}, {Value: []byte("data")}})
	binary.BigEndian.PutUint64(b, uint64(cp.EndOffset())) // the edge's offsets
	res, err := cp.AppendAt(b)
	if err != nil {
		t.Fatal(err)
	}
	lp := c.nodes[1].part
	if err := lp.Sync(); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := cp.WaitDurable(short, res.LastOffset); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitDurable with the followers stopped: %v, want a timeout (not committed)", err)
	}
	if d := cp.DurableOffset(); d > res.BaseOffset || lp.DurableOffset() <= res.LastOffset {
		t.Fatalf("copy's durable offset %d (log's %d): the edge would resume above the committed end", d, lp.DurableOffset())
	}
	c.nodes[2].startManager()
	c.nodes[3].startManager()
	if err := cp.WaitDurable(ctxT(t), res.LastOffset); err != nil {
		t.Fatal(err)
	}
	if d := cp.DurableOffset(); d <= res.LastOffset {
		t.Fatalf("committed, but the copy's durable offset is %d", d)
	}
	c.waitIdentical(1)
	r, _ := c.nodes[3].part.Read(res.BaseOffset, 1<<20, nil)
	if h, err := flog.ParseBatch(r.Data); err != nil || h.LeaderEpoch != 1 {
		t.Fatalf("follower's copy of the edge's batch: %+v, %v; want the leader's epoch 1 stamped", h, err)
	}
}

// A refused in-sync set change is proposed again after the next metadata
// change.
func TestRefusedISRChangeRetriedAfterMetadataChange(t *testing.T) {
	c := newCluster(t, 300*time.Millisecond)
	c.mu.Lock()
	c.refuse = 1
	c.mu.Unlock()
	c.nodes[3].stopManager()
	if code, _ := c.produceRaw(1, 1, "lag"); code != 0 {
		t.Fatalf("produce: %v", kerr.ErrorForCode(code))
	}
	poll(t, "the shrink to be refused", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.refused == 1
	})
	if isr := c.assignment().ISR; !slices.Equal(isr, []int32{1, 2, 3}) {
		t.Fatalf("ISR %v after a refused change", isr)
	}
	poll(t, "the refused shrink to be counted", func() bool {
		return c.nodes[1].metric("ferry_replica_isr_changes_total", "change", "shrink", "result", "refused") == 1
	})
	c.change(func(*replica.Assignment) {}) // some other change of the metadata
	c.waitISR(1, 2)
}

// metric is the value of a counter of the node's replica manager, the one
// with the given label pairs (0 if none).
func (n *node) metric(name string, labels ...string) float64 {
	n.c.t.Helper()
	mfs, err := n.reg.Gather()
	if err != nil {
		n.c.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
				}
				if !found {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// An idempotent producer writing through a leader change (node 1 to node
// 2, all in sync): every acknowledged record is present exactly once, at
// the offset it was acknowledged with, on every replica. The new leader
// holds the producer's state from the batches it copied, so retries of
// what it already has are answered as duplicates, not stored twice.
func TestIdempotentProducerAcrossLeaderChange(t *testing.T) {
	c := newCluster(t, 30*time.Second)
	prod := c.client(1, kgo.ProducerLinger(time.Millisecond), kgo.RecordRetries(1000),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.MetadataMinAge(50*time.Millisecond))
	ctx := ctxT(t)
	const n = 2000
	var mu sync.Mutex
	acked := map[string]int64{}
	var failed error
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		if i == n/4 {
			// Once some are acknowledged, node 2 takes over.
			poll(t, "some acknowledgements", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) > 0 })
			c.change(func(a *replica.Assignment) { a.Leader, a.LeaderEpoch = 2, 2 })
		}
		wg.Add(1)
		v := "k" + strconv.Itoa(i)
		prod.Produce(ctx, &kgo.Record{Value: []byte(v)}, func(r *kgo.Record, err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = err
				return
			}
			acked[v] = r.Offset
		})
	}
	wg.Wait()
	if failed != nil {
		t.Fatalf("a produce failed: %v", failed)
	}
	c.waitIdentical(2)
	// Every value once, at its acknowledged offset.
	cons := c.client(2)
	seen := map[string]int64{}
	for off := int64(0); off < c.nodes[2].part.EndOffset(); {
		sp := fetch(t, cons, off)
		recs := records(t, sp.RecordBatches)
		if len(recs) == 0 {
			t.Fatalf("no records at %d below the end %d", off, c.nodes[2].part.EndOffset())
		}
		for _, r := range recs {
			if r.offset < off {
				continue
			}
			if prev, dup := seen[r.value]; dup {
				t.Fatalf("%s stored twice, at %d and %d", r.value, prev, r.offset)
			}
			seen[r.value] = r.offset
			off = r.offset + 1
		}
	}
	for v, off := range acked {
		if got, ok := seen[v]; !ok || got != off {
			t.Fatalf("%s acknowledged at %d, stored at %d (present %v)", v, off, got, ok)
		}
	}
	if len(seen) != n {
		t.Fatalf("%d records stored, want %d", len(seen), n)
	}
	p2 := c.nodes[2].part
	if e := p2.LeaderEpochs(); e[len(e)-1].Epoch != 2 || e[len(e)-1].StartOffset >= p2.EndOffset() || e[0].Epoch != 1 {
		t.Fatalf("epochs %v (end %d): the records were not written under both leaders", e, p2.EndOffset())
	}
}

type rec struct {
	offset int64
	value  string
}

// records decodes the records of fetched batches (uncompressed: the test's
// producer compresses nothing).
func records(t *testing.T, data []byte) []rec {
	t.Helper()
	var out []rec
	for len(data) >= 61 {
		var rb kmsg.RecordBatch
		if err := rb.ReadFrom(data); err != nil {
			t.Fatal(err)
		}
		size := int(rb.Length) + 12
		raw := rb.Records
		if rb.Attributes&0x7 != 0 {
			t.Fatalf("compressed batch (attributes %x)", rb.Attributes)
		}
		for i := 0; i < int(rb.NumRecords); i++ {
			var r kmsg.Record
			l, n := binary.Varint(raw)
			if n <= 0 {
				t.Fatal("bad record length")
			}
			if err := r.ReadFrom(raw[:n+int(l)]); err != nil {
				t.Fatal(err)
			}
			out = append(out, rec{rb.FirstOffset + int64(r.OffsetDelta), string(r.Value)})
			raw = raw[n+int(l):]
		}
		data = data[size:]
	}
	return out
}

// An acks=all produce whose followers stall (still in the in-sync set:
// the lag time has not passed) is answered REQUEST_TIMED_OUT at the
// request's timeout; its batch stays in the leader's log, above the high
// watermark.
func TestAcksAllTimesOut(t *testing.T) {
	c := newCluster(t, 30*time.Second)
	c.nodes[2].stopManager()
	c.nodes[3].stopManager()
	code, base := c.produceRawTimeout(1, -1, "stalled", 300)
	if code != kerr.RequestTimedOut.Code {
		t.Fatalf("acks=all with stalled followers: %v, want REQUEST_TIMED_OUT", kerr.ErrorForCode(code))
	}
	if p := c.nodes[1].part; p.EndOffset() != base+1 || p.HighWatermark() > base {
		t.Fatalf("leader ends at %d with HW %d; want the batch at %d appended, uncommitted", p.EndOffset(), p.HighWatermark(), base)
	}
}

// DeleteRecords on the leader reaches the followers with the fetch's log
// start offset (Kafka's follower moves its own up to it): a follower that
// becomes leader does not bring the deleted records back.
func TestFollowersTakeTheLeadersLogStart(t *testing.T) {
	c := newCluster(t, 30*time.Second)
	prod := c.client(1)
	ctx := ctxT(t)
	for i := 0; i < 20; i++ {
		if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("v" + strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	start, err := c.nodes[1].log.DeleteRecords(ctx, topic, 0, 12)
	if err != nil || start != 12 {
		t.Fatalf("DeleteRecords on the leader: %d %v", start, err)
	}
	// One more record: a fetch answers with the new log start.
	if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for id := int32(2); id <= 3; id++ {
		p := c.nodes[id].part
		poll(t, fmt.Sprintf("follower %d's log start at 12", id), func() bool { return p.StartOffset() == 12 })
	}
}
