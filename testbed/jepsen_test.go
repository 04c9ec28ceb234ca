package testbed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// The Jepsen-style suite (issue 16): a center of three `ferry full`
// processes under acks=all load from an idempotent franz-go producer that
// logs every acknowledged record, consumers that log everything they see,
// faults (kill -9, SIGSTOP, toxiproxy links between the nodes, network
// namespaces), then the checker of jepsen_check_test.go over what was
// logged, what the cluster holds after healing, the replicas' segment
// files read offline, and the URP metric. The workload lives in
// jepsen_workload_test.go, the namespaces in jepsen_netns_test.go, the
// scenarios (which need replication) in jepsen_scenarios_test.go.

// jepsenNet is how the nodes reach one another.
type jepsenNet int

const (
	netLoopback   jepsenNet = iota // directly, on 127.0.0.1
	netProxied                     // through a toxiproxy link into each node
	netNamespaces                  // each node in its own network namespace
)

// jepsenCluster is a clusterProcs with its network and fixed Kafka
// addresses (a restarted node comes back where clients look for it).
type jepsenCluster struct {
	*clusterProcs
	links []*flakyLink // netProxied: links[i] carries every connection into node i's cluster listener
	lab   *netLab      // netNamespaces
	kafka []string     // node i's Kafka address
}

// newJepsenCluster prepares (does not start) n nodes; extra flags go to
// every node.
func newJepsenCluster(t testing.TB, n int, how jepsenNet, extra ...string) *jepsenCluster {
	t.Helper()
	c := &jepsenCluster{clusterProcs: newClusterProcs(t, n)}
	switch how {
	case netLoopback, netProxied:
		c.kafka = freePorts(t, n)
		for i := range n {
			c.extra[i] = append(c.extra[i], "--kafka-addr", c.kafka[i])
		}
		if how == netProxied {
			var v []string
			for i := range n {
				l := newFlakyLink(t, c.raftAddr[i])
				c.links = append(c.links, l)
				v = append(v, fmt.Sprintf("%d@%s", i+1, l.addr()))
				c.extra[i] = append(c.extra[i], "--cluster-addr", c.raftAddr[i])
			}
			c.voters = strings.Join(v, ",")
		}
	case netNamespaces:
		c.lab = newNetLab(t, n)
		certs := t.TempDir()
		bin := ferryBinary(t)
		run := func(args ...string) {
			if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
				t.Fatalf("ferry %v: %v\n%s", args, err, out)
			}
		}
		run("certs", "init", "--dir", certs)
		var v []string
		c.wrap = make([][]string, n)
		for i := range n {
			ip := c.lab.ip(i)
			name := fmt.Sprintf("n%d", i+1)
			run("certs", "node", "--dir", certs, "--host", ip, "--name", name)
			c.raftAddr[i], c.mirror[i] = ip+":9500", ip+":9393"
			c.kafka = append(c.kafka, ip+":9092")
			v = append(v, fmt.Sprintf("%d@%s", i+1, c.raftAddr[i]))
			c.wrap[i] = c.lab.wrap(i)
			c.extra[i] = append(c.extra[i], "--kafka-addr", ip+":9092", "--admin-addr", ip+":8080", "--admin-insecure-open",
				"--cluster-tls-cert", filepath.Join(certs, name+".pem"), "--cluster-tls-key", filepath.Join(certs, name+"-key.pem"),
				"--cluster-tls-ca", filepath.Join(certs, "ca.pem"))
		}
		c.voters = strings.Join(v, ",")
	}
	for i := range n {
		c.extra[i] = append(c.extra[i], extra...)
	}
	return c
}

// pause stops node i with SIGSTOP (a zombie: its sockets stay open, it
// answers nothing); resume continues it.
func (c *jepsenCluster) pause(i int) {
	c.t.Helper()
	if err := c.procs[i].cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		c.t.Fatal(err)
	}
}

func (c *jepsenCluster) resume(i int) {
	c.t.Helper()
	if err := c.procs[i].cmd.Process.Signal(syscall.SIGCONT); err != nil {
		c.t.Fatal(err)
	}
}

// stop ends node i with SIGTERM and requires a clean exit.
func (c *jepsenCluster) stop(i int) {
	c.t.Helper()
	p := c.procs[i]
	if p == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGCONT) // a paused node cannot exit
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		if err != nil {
			c.t.Errorf("node %d: SIGTERM: %v", i+1, err)
		}
	case <-time.After(60 * time.Second):
		c.t.Errorf("node %d did not exit within 60 s of SIGTERM", i+1)
		p.cmd.Process.Kill()
		<-p.done
	}
	c.procs[i] = nil
}

// restartDown starts every node that is down.
func (c *jepsenCluster) restartDown() {
	c.t.Helper()
	for i, p := range c.procs {
		if p == nil {
			c.start(i)
		}
	}
}

// partitionView is what Metadata says of one partition.
type partitionView struct {
	Leader   int32
	Epoch    int32
	Replicas []int32
	ISR      []int32
	Err      error
}

// metadata asks the live nodes for topic's partitions (the first to
// answer wins).
func (c *jepsenCluster) metadata(ctx context.Context, topic string) (map[int32]partitionView, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.kafkaAddrs()...), kgo.RequestTimeoutOverhead(3*time.Second), kgo.RetryTimeout(5*time.Second))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	md, err := kadm.NewClient(cl).Metadata(ctx, topic)
	if err != nil {
		return nil, err
	}
	td := md.Topics[topic]
	if td.Err != nil {
		return nil, td.Err
	}
	out := map[int32]partitionView{}
	for _, p := range td.Partitions {
		out[p.Partition] = partitionView{Leader: p.Leader, Epoch: p.LeaderEpoch, Replicas: p.Replicas, ISR: p.ISR, Err: p.Err}
	}
	return out, nil
}

// busiestLeader is the node (0-based) leading the partitions of topic
// with the most acknowledged records, and those partitions.
func (c *jepsenCluster) busiestLeader(ctx context.Context, topic string, w *workload) (int, []tp) {
	c.t.Helper()
	// A node just restarted may answer from an image that has not caught
	// up yet (no leaders): ask until some partition has one.
	var md map[int32]partitionView
	c.waitFor("a leader of "+topic+" in Metadata", func() bool {
		var err error
		if md, err = c.metadata(ctx, topic); err != nil {
			return false
		}
		for _, v := range md {
			if v.Leader > 0 {
				return true
			}
		}
		return false
	})
	acked := w.ackCounts()
	load := map[int32]int{}
	for p, v := range md {
		if v.Leader > 0 {
			load[v.Leader] += 1 + acked[tp{topic, p}]
		}
	}
	best := int32(-1)
	for id, n := range load {
		if best < 0 || n > load[best] || n == load[best] && id < best {
			best = id
		}
	}
	if best < 0 {
		c.t.Fatalf("no partition of %s has a leader: %v", topic, md)
	}
	var parts []tp
	for p, v := range md {
		if v.Leader == best {
			parts = append(parts, tp{topic, p})
		}
	}
	return int(best - 1), parts
}

// underReplicated counts the cluster's partitions whose in-sync set is
// smaller than their replica set, as Metadata says.
func (c *jepsenCluster) underReplicated(ctx context.Context) (int, error) {
	// The gauge counts every partition a node leads, the cluster's
	// __consumer_offsets too: so does the count it is checked against.
	topics, err := c.topicNames(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, topic := range topics {
		md, err := c.metadata(ctx, topic)
		if err != nil {
			return 0, err
		}
		for _, p := range md {
			if len(p.ISR) < len(p.Replicas) {
				n++
			}
		}
	}
	return n, nil
}

// topicNames are every topic of the cluster, internal ones included.
func (c *jepsenCluster) topicNames(ctx context.Context) ([]string, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.kafkaAddrs()...), kgo.RequestTimeoutOverhead(3*time.Second), kgo.RetryTimeout(5*time.Second))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	md, err := kadm.NewClient(cl).Metadata(ctx)
	if err != nil {
		return nil, err
	}
	return md.Topics.Names(), nil
}

// urpMetric reads the under-replicated-partitions gauge of every live
// node (ferry_cluster_under_replicated_partitions; the single node's
// ferry_under_replicated_partitions where the cluster has none yet).
func (c *jepsenCluster) urpMetric() map[string]float64 {
	out := map[string]float64{}
	for i, p := range c.procs {
		if p == nil {
			continue
		}
		m, err := scrapeMetrics(p.adminAddr, "ferry_cluster_under_replicated_partitions", "ferry_under_replicated_partitions")
		if err != nil {
			continue
		}
		v, ok := m["ferry_cluster_under_replicated_partitions"]
		if !ok {
			v, ok = m["ferry_under_replicated_partitions"]
		}
		if ok {
			out[strconv.Itoa(i+1)] = v
		}
	}
	return out
}

// checkURPWithin polls until the URP metric matches the metadata, for
// within; it returns the last mismatch if it never does.
func (c *jepsenCluster) checkURPWithin(ctx context.Context, within time.Duration) []string {
	deadline := time.Now().Add(within)
	var last []string
	for {
		want, err := c.underReplicated(ctx)
		if err == nil {
			if last = checkURP(c.urpMetric(), want); len(last) == 0 {
				return nil
			}
		} else {
			last = []string{fmt.Sprintf("metadata: %v", err)}
		}
		if time.Now().After(deadline) {
			return last
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readReplicas reads the segment files of topic's partition p in node i's
// data directory (the node stopped), batch by batch, with the log
// package's read-only scanner (what `ferry log dump` runs).
func (c *jepsenCluster) readReplicas(i int, p tp) ([]replicaBatch, error) {
	dir := filepath.Join(c.dirs[i], "log", p.String())
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []replicaBatch
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".log") {
			continue
		}
		bs, err := readSegment(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, bs...)
	}
	slices.SortFunc(out, func(a, b replicaBatch) int { return int(a.BaseOffset - b.BaseOffset) })
	return out, nil
}

// readSegment reads one segment file's batches, whole, in order.
func readSegment(path string) ([]replicaBatch, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []replicaBatch
	sum, err := flog.ScanSegmentFile(path, func(b flog.ScannedBatch) bool {
		end := b.Position + int64(b.Header.Length)
		if end <= int64(len(data)) {
			out = append(out, replicaBatch{BaseOffset: b.Header.BaseOffset, LastOffset: b.Header.LastOffset(), Bytes: data[b.Position:end]})
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	if !sum.OK() {
		return out, fmt.Errorf("%s: %s", path, sum.Problem)
	}
	return out, nil
}

// verify heals nothing itself: with every node up and the faults gone, it
// stops the workload, reads every partition back, checks the history and
// the URP metric, then stops every node cleanly and compares the replicas
// below the high watermark. It returns the problems found.
func (c *jepsenCluster) verify(ctx context.Context, w *workload, topics ...string) []string {
	c.t.Helper()
	var h history // nil w: the topics were written by someone else (mirrors)
	if w != nil {
		w.stop()
		h = w.history()
	}
	var problems []string
	h.Final = map[tp]map[int64]string{}
	type replicaSet struct {
		p        tp
		hw       int64
		replicas []int32
	}
	var sets []replicaSet
	for _, topic := range topics {
		final, ends := readBack(c.t, ctx, c.kafkaAddrs(), topic)
		for p, recs := range final {
			h.Final[p] = recs
		}
		md, err := c.metadata(ctx, topic)
		if err != nil {
			c.t.Fatalf("metadata of %s: %v", topic, err)
		}
		for p, v := range md {
			sets = append(sets, replicaSet{tp{topic, p}, ends[p], v.Replicas})
		}
	}
	problems = append(problems, checkHistory(h)...)
	problems = append(problems, c.checkURPWithin(ctx, 10*time.Second)...)
	c.t.Logf("checked %d acknowledged and %d observed records against %d partitions read back", len(h.Acked), len(h.Observed), len(h.Final))

	for i := range c.procs {
		c.stop(i)
	}
	for _, s := range sets {
		reps := map[string][]replicaBatch{}
		for _, id := range s.replicas {
			bs, err := c.readReplicas(int(id-1), s.p)
			if err != nil {
				problems = append(problems, fmt.Sprintf("replica %d of %s: %v", id, s.p, err))
				continue
			}
			reps[strconv.Itoa(int(id))] = bs
		}
		problems = append(problems, checkReplicas(s.p, s.hw, reps)...)
	}
	return problems
}

// failOn reports problems (the first 20) and fails the test.
func failOn(t testing.TB, problems []string) {
	t.Helper()
	if len(problems) == 0 {
		return
	}
	if len(problems) > 20 {
		problems = append(problems[:20], fmt.Sprintf("... and %d more", len(problems)-20))
	}
	t.Fatalf("%d problems:\n%s", len(problems), strings.Join(problems, "\n"))
}

// readBack reads every record of topic from its start to its end offset
// (the high watermark) through addrs, retrying while leaders move, and
// returns them by partition and offset, with each partition's end.
func readBack(t testing.TB, ctx context.Context, addrs []string, topic string) (map[tp]map[int64]string, map[int32]int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var starts, ends kadm.ListedOffsets
	deadline := time.Now().Add(60 * time.Second)
	for {
		starts, err = adm.ListStartOffsets(ctx, topic)
		if err == nil {
			err = starts.Error()
		}
		if err == nil {
			ends, err = adm.ListEndOffsets(ctx, topic)
			if err == nil {
				err = ends.Error()
			}
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("offsets of %s: %v", topic, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	from := map[int32]kgo.Offset{}
	endOf := map[int32]int64{}
	need := map[int32]int64{} // partitions still short of their end
	ends.Each(func(o kadm.ListedOffset) {
		endOf[o.Partition] = o.Offset
		s, _ := starts.Lookup(topic, o.Partition)
		from[o.Partition] = kgo.NewOffset().At(s.Offset)
		if o.Offset > s.Offset {
			need[o.Partition] = o.Offset
		}
	})
	out := map[tp]map[int64]string{}
	for p := range endOf {
		out[tp{topic, p}] = map[int64]string{}
	}
	rd, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	rctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for len(need) > 0 {
		fs := rd.PollFetches(rctx)
		if rctx.Err() != nil {
			t.Fatalf("reading %s back: partitions %v short of their ends", topic, need)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset >= endOf[r.Partition] {
				return
			}
			out[tp{topic, r.Partition}][r.Offset] = string(r.Value)
			if r.Offset >= need[r.Partition]-1 {
				delete(need, r.Partition)
			}
		})
	}
	return out, endOf
}

// TestJepsenHarness runs the suite's harness end to end on today's
// cluster (replication factor 1): three nodes reaching each other only
// through toxiproxy links (raft's: with every link down there is no
// controller), an acks=all idempotent producer and two
// consumers on a 6-partition topic, kill -9 of a broker that leads
// nothing of it, then the checker: every acknowledged record once at its
// offset, nothing observed gone, replicas (one each) read offline, the URP
// metric against the metadata. It proves the harness, not replication.
func TestJepsenHarness(t *testing.T) {
	c := newJepsenCluster(t, 3, netProxied)
	c.startAll()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Raft reaches the nodes only through the links: with every link down
	// no node reaches another and none can lead; up again, there is a
	// controller again. (A node's requests to the controller go to the
	// address raft's leader announces, its listener's rather than its
	// voter-list address, so they bypass the links: edge/cluster's
	// transport does not advertise the voter-list address.)
	for _, l := range c.links {
		l.proxy.Stop()
	}
	c.waitFor("no controller, every link down", func() bool {
		for i := range c.procs {
			if v, ok := c.view(i); !ok || v.Controller > 0 {
				return false
			}
		}
		return true
	})
	for _, l := range c.links {
		if err := l.proxy.Start(); err != nil {
			t.Fatal(err)
		}
	}
	ctrl := c.controller()
	c.indexesEqual(15 * time.Second)

	// The topic on the two nodes other than the victim, which is not the
	// controller either (its loss is then only a broker's).
	victim := (ctrl + 1) % 3
	var assignment [][]int32
	for p := range 4 {
		assignment = append(assignment, []int32{int32((victim+1+p%2)%3 + 1)})
	}
	createAssignedTopic(t, ctx, c.kafkaAddrs(), "jepsen", assignment, nil)
	c.waitFor("the topic's leaders", func() bool {
		md, err := c.metadata(ctx, "jepsen")
		if err != nil || len(md) != 4 {
			return false
		}
		for _, p := range md {
			if p.Leader <= 0 || p.Leader == int32(victim+1) {
				return false
			}
		}
		return true
	})

	w := startWorkload(t, c.kafka, 1000, 2, "jepsen")
	w.awaitAcks(500, 30*time.Second)
	c.kill9(victim)
	c.waitFor("the victim fenced", func() bool {
		v, ok := c.view((victim + 1) % 3)
		if !ok {
			return false
		}
		for _, b := range v.Brokers {
			if b.ID == int32(victim+1) {
				return b.Fenced
			}
		}
		return false
	})
	w.awaitAcks(500, 30*time.Second) // the load goes on: the victim led nothing of it
	c.start(victim)
	w.awaitAcks(300, 30*time.Second)
	problems := c.verify(ctx, w, "jepsen")
	if n := w.acks.Load(); n < 1300 {
		t.Fatalf("only %d acknowledged records", n)
	}
	failOn(t, problems)
}

// createAssignedTopic creates topic with an explicit replica assignment
// (partition i on assignment[i], its first replica the preferred leader)
// and configs.
func createAssignedTopic(t testing.TB, ctx context.Context, addrs []string, topic string, assignment [][]int32, configs map[string]*string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, -1, -1
	for p, replicas := range assignment {
		a := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
		a.Partition, a.Replicas = int32(p), replicas
		rt.ReplicaAssignment = append(rt.ReplicaAssignment, a)
	}
	for k, v := range configs {
		c := kmsg.NewCreateTopicsRequestTopicConfig()
		c.Name, c.Value = k, v
		rt.Configs = append(rt.Configs, c)
	}
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 30000
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		t.Fatalf("creating %s on %v: %v", topic, assignment, err)
	}
}
