package testbed

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A center of three `ferry full` processes on 127.0.0.1, each with its own
// ports and data directory, as an operator runs them (--cluster-voters),
// with short heartbeats so fencing is quick. The logic is tested in-process
// in edge/cluster and edge; these check the binary end to end with clients
// we did not write.

type clusterProcs struct {
	t        testing.TB
	dirs     []string
	voters   string
	raftAddr []string
	mirror   []string
	procs    []*ferryProc
	extra    [][]string
	// wrap, when set for a node, runs it through a command that execs it
	// in place (its network namespace: jepsen_netns_test.go).
	wrap [][]string
	// heartbeat and session are the cluster's timings (short in tests,
	// the defaults in the benchmarks).
	heartbeat, session string
}

// clusterView is the part of GET /api/cluster the tests read.
type clusterView struct {
	Node         int32  `json:"node"`
	Controller   int32  `json:"controller"`
	AppliedIndex uint64 `json:"metadata_applied_index"`
	Topics       int    `json:"topics"`
	Partitions   int    `json:"partitions"`
	Brokers      []struct {
		ID     int32 `json:"id"`
		Fenced bool  `json:"fenced"`
	} `json:"brokers"`
	Offline         []string `json:"offline_partitions"`
	PartitionStates []struct {
		Topic       string  `json:"topic"`
		Partition   int32   `json:"partition"`
		Replicas    []int32 `json:"replicas"`
		ISR         []int32 `json:"isr"`
		Leader      int32   `json:"leader"`
		LeaderEpoch int32   `json:"leader_epoch"`
	} `json:"partition_states"`
}

// freePorts draws n free 127.0.0.1 ports below the ephemeral range, so a
// restarted process finds its port again and no client connection takes it.
func freePorts(t testing.TB, n int) []string {
	t.Helper()
	var out []string
	seen := map[int]bool{}
	for len(out) < n {
		port := 26000 + rand.IntN(6000) // 26000-31999; edge's tests draw 20000-25999
		if seen[port] {
			continue
		}
		seen[port] = true
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		ln.Close()
		out = append(out, ln.Addr().String())
	}
	return out
}

func newClusterProcs(t testing.TB, n int) *clusterProcs {
	t.Helper()
	c := &clusterProcs{t: t, raftAddr: freePorts(t, n), mirror: freePorts(t, n), procs: make([]*ferryProc, n), extra: make([][]string, n),
		heartbeat: "100ms", session: "1500ms"}
	var v []string
	for i, a := range c.raftAddr {
		v = append(v, fmt.Sprintf("%d@%s", i+1, a))
		c.dirs = append(c.dirs, t.TempDir())
	}
	c.voters = strings.Join(v, ",")
	return c
}

// start runs node i (0-based) with the cluster flags, on its data
// directory and its fixed mirror port.
func (c *clusterProcs) start(i int) *ferryProc {
	c.t.Helper()
	args := []string{"--cluster-voters", c.voters, "--cluster-node-id", strconv.Itoa(i + 1),
		"--mirror-token", "gw1=s3cret", "--mirror-token", "gw2=s3cret"}
	if c.heartbeat != "" { // "" runs the node's defaults
		args = append(args, "--cluster-heartbeat-interval", c.heartbeat, "--cluster-session-timeout", c.session)
	}
	args = append(args, c.extra[i]...)
	if c.wrap != nil && c.wrap[i] != nil {
		c.procs[i] = startFerryWrapped(c.t, c.wrap[i], ferryBinary(c.t), "", "full",
			append([]string{"--data-dir", c.dirs[i], "--mirror-addr", c.mirror[i]}, args...))
	} else {
		c.procs[i] = startFull(c.t, c.dirs[i], c.mirror[i], args...)
	}
	return c.procs[i]
}

func (c *clusterProcs) startAll() {
	c.t.Helper()
	done := make(chan int, len(c.procs))
	for i := range c.procs {
		// Each waits for its ready line; a start that fails ends its
		// goroutine (t.Fatalf's Goexit), which still says it is done.
		go func() {
			defer func() { done <- i }()
			c.start(i)
		}()
	}
	for range c.procs {
		<-done
	}
	if c.t.Failed() {
		c.t.FailNow() // a node did not start (said above)
	}
	c.waitFor("every broker registered and unfenced", func() bool {
		for i := range c.procs {
			v, ok := c.view(i)
			if !ok || v.Controller < 0 || len(v.Brokers) != len(c.procs) {
				return false
			}
			for _, b := range v.Brokers {
				if b.Fenced {
					return false
				}
			}
		}
		return true
	})
}

// kill9 ends node i as a crash does.
func (c *clusterProcs) kill9(i int) {
	c.t.Helper()
	p := c.procs[i]
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	c.procs[i] = nil
}

func (c *clusterProcs) view(i int) (clusterView, bool) {
	var v clusterView
	p := c.procs[i]
	if p == nil {
		return v, false
	}
	hc := http.Client{Timeout: 2 * time.Second} // a paused (SIGSTOP) node answers nothing
	resp, err := hc.Get("http://" + p.adminAddr + "/api/cluster")
	if err != nil {
		return v, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&v) != nil {
		return v, false
	}
	return v, true
}

func (c *clusterProcs) waitFor(what string, cond func() bool) time.Duration {
	c.t.Helper()
	return c.waitForWithin(45*time.Second, what, cond)
}

// waitForWithin is waitFor with its own deadline.
func (c *clusterProcs) waitForWithin(within time.Duration, what string, cond func() bool) time.Duration {
	c.t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			c.t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
	return time.Since(start)
}

func (c *clusterProcs) controller() int {
	c.t.Helper()
	ctrl := -1
	c.waitFor("a controller", func() bool {
		for i := range c.procs {
			if v, ok := c.view(i); ok && v.Controller > 0 && c.procs[v.Controller-1] != nil {
				ctrl = int(v.Controller - 1)
				return true
			}
		}
		return false
	})
	return ctrl
}

// indexesEqual waits until every live node applied the same metadata.
func (c *clusterProcs) indexesEqual(within time.Duration) {
	c.t.Helper()
	start := time.Now()
	for {
		var idx []uint64
		for i := range c.procs {
			if v, ok := c.view(i); ok {
				idx = append(idx, v.AppliedIndex)
			}
		}
		equal := len(idx) > 0
		for _, x := range idx {
			equal = equal && x == idx[0]
		}
		if equal {
			return
		}
		if time.Since(start) > within {
			c.t.Fatalf("metadata indexes %v not equal within %s", idx, within)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (c *clusterProcs) kafkaAddrs() []string {
	var out []string
	for _, p := range c.procs {
		if p != nil {
			out = append(out, p.kafkaAddr)
		}
	}
	return out
}

// TestClusterOfProcesses: three processes form a cluster; a topic created
// on one spreads over all three; kcat, kafkajs and franz-go produce and
// consume through any bootstrap node; kill -9 of the controller while
// topics are being created leaves no half-created topic and a new
// controller; kill -9 of a broker takes only its partitions offline, and
// it serves them again, nothing lost, once restarted.
func TestClusterOfProcesses(t *testing.T) {
	kcat := requireTool(t, "kcat")
	c := newClusterProcs(t, 3)
	c.startAll()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Created through node 2, spread over all three.
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.procs[1].kafkaAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 6, 1, nil, "spread"); err != nil {
		t.Fatal(err)
	}
	c.waitFor("the topic on every node", func() bool {
		md, err := adm.Metadata(ctx, "spread")
		if err != nil || md.Topics["spread"].Err != nil || len(md.Topics["spread"].Partitions) != 6 {
			return false
		}
		leaders := map[int32]bool{}
		for _, p := range md.Topics["spread"].Partitions {
			leaders[p.Leader] = true
		}
		return len(leaders) == 3
	})

	// kcat produces through node 3 and consumes through node 1.
	var in bytes.Buffer
	for i := 0; i < 60; i++ {
		fmt.Fprintf(&in, "k%d:v%d\n", i, i)
	}
	prod := exec.CommandContext(ctx, kcat, "-b", c.procs[2].kafkaAddr, "-P", "-t", "spread", "-K:", "-X", "partitioner=murmur2_random")
	prod.Stdin = &in
	if out, err := prod.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, kcat, "-b", c.procs[0].kafkaAddr, "-C", "-t", "spread", "-o", "beginning", "-e", "-q", "-f", "%k:%s\n").Output()
	if err != nil {
		t.Fatalf("kcat -C: %v\n%s", err, out)
	}
	if got := strings.Count(string(out), "\n"); got != 60 {
		t.Fatalf("kcat consumed %d records through node 1, want 60:\n%s", got, out)
	}

	// kafkajs's tutorial (a producer, then a consumer group) through node 2.
	runKafkajsTutorial(t, ctx, c.procs[1].kafkaAddr)

	// kill -9 the controller while topics are being created through
	// another node: a new controller, no half-created topic, equal
	// metadata on the survivors within 5 s.
	ctrl := c.controller()
	via := (ctrl + 1) % 3
	viaCl, err := kgo.NewClient(kgo.SeedBrokers(c.procs[via].kafkaAddr), kgo.RequestTimeoutOverhead(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer viaCl.Close()
	viaAdm := kadm.NewClient(viaCl)
	created := make(chan int, 1)
	go func() {
		n := 0
		for i := 0; i < 40; i++ {
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			if _, err := viaAdm.CreateTopic(cctx, 2, 1, nil, fmt.Sprintf("churn-%d", i)); err == nil {
				n++
			}
			ccancel()
		}
		created <- n
	}()
	time.Sleep(300 * time.Millisecond) // let some creations through before the kill (not a synchronisation)
	killedAt := time.Now()
	c.kill9(ctrl)
	newCtrl := c.controller()
	t.Logf("new controller node %d, %s after the kill", newCtrl+1, time.Since(killedAt).Round(time.Millisecond))
	<-created
	c.indexesEqual(5 * time.Second)
	// Every topic of the metadata is whole on every live node: its Kafka
	// listing (what its log holds) comes to match its metadata.
	for i := range c.procs {
		if c.procs[i] == nil {
			continue
		}
		ncl, err := kgo.NewClient(kgo.SeedBrokers(c.procs[i].kafkaAddr))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ncl.Request(ctx, kmsg.NewPtrMetadataRequest()); err != nil { // learn the brokers
			t.Fatal(err)
		}
		var last string
		deadline := time.Now().Add(30 * time.Second)
		for {
			v, _ := c.view(i)
			kresp, err := ncl.Broker(i+1).Request(ctx, kmsg.NewPtrMetadataRequest()) // nil topics: all, asked of node i itself
			if err == nil {
				md := kresp.(*kmsg.MetadataResponse)
				topics, parts := 0, 0
				for _, tp := range md.Topics { // __consumer_offsets included: a cluster topic
					topics++
					parts += len(tp.Partitions)
				}
				last = fmt.Sprintf("Kafka lists %d topics, %d partitions; metadata %d and %d", topics, parts, v.Topics, v.Partitions)
				if topics == v.Topics && parts == v.Partitions {
					break
				}
			} else {
				last = err.Error()
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d's log does not hold its metadata's topics whole: %s", i+1, last)
			}
			time.Sleep(50 * time.Millisecond)
		}
		ncl.Close()
		t.Logf("node %d: %s", i+1, last)
	}
	c.start(ctrl)
	c.waitFor("the old controller back and unfenced", func() bool {
		v, ok := c.view(ctrl)
		return ok && len(v.Offline) == 0
	})
	c.indexesEqual(5 * time.Second)

	// kill -9 a broker: only its partitions go offline; the rest serve.
	victim := 2
	before := countRecords(t, ctx, c.kafkaAddrs(), "spread")
	c.kill9(victim)
	offlineIn := c.waitFor("the killed broker fenced", func() bool {
		v, ok := c.view(0)
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
	t.Logf("broker fenced and its partitions reported offline %s after the kill", offlineIn.Round(time.Millisecond))
	pcl, err := kgo.NewClient(kgo.SeedBrokers(c.procs[0].kafkaAddr), kgo.DefaultProduceTopic("spread"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer pcl.Close()
	md, err := kadm.NewClient(pcl).Metadata(ctx, "spread")
	if err != nil {
		t.Fatal(err)
	}
	served := 0
	for _, p := range md.Topics["spread"].Partitions {
		if p.Leader <= 0 {
			if p.Err == nil {
				t.Fatalf("partition %d without a leader and without an error", p.Partition)
			}
			continue
		}
		if p.Leader == int32(victim+1) {
			t.Fatalf("partition %d still led by the killed broker", p.Partition)
		}
		pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
		err := pcl.ProduceSync(pctx, &kgo.Record{Partition: p.Partition, Value: []byte("while-down")}).FirstErr()
		pcancel()
		if err != nil {
			t.Fatalf("partition %d (leader %d) refused a produce while another broker is down: %v", p.Partition, p.Leader, err)
		}
		served++
	}
	if served != 4 {
		t.Fatalf("%d partitions served, want 4", served)
	}
	c.start(victim)
	c.waitFor("every partition led again, as every node sees it", func() bool {
		for i := range c.procs {
			if v, ok := c.view(i); !ok || len(v.Offline) != 0 {
				return false
			}
		}
		return true
	})
	if after := countRecords(t, ctx, c.kafkaAddrs(), "spread"); after != before+4 {
		t.Fatalf("%d records after the restart, want %d (before) + 4", after, before)
	}
}

// countRecords sums the end offsets of topic's partitions through addrs
// (clusterEnds: retrying while a leader is being elected, as a client
// would).
func countRecords(t *testing.T, ctx context.Context, addrs []string, topic string) int {
	t.Helper()
	return int(sumEnds(clusterEnds(t, ctx, addrs, topic)))
}

// runKafkajsTutorial runs testbed/kafkajs/tutorial.js against addr and
// checks every event arrived.
func runKafkajsTutorial(t *testing.T, ctx context.Context, addr string) {
	t.Helper()
	node, dir := requireKafkajs(t)
	cmd := exec.CommandContext(ctx, node, "tutorial.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "FERRY_BROKER="+addr, "EVENTS=20")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("tutorial.js: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	}
	n := 0
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "{") && strings.Contains(sc.Text(), `"event"`) {
			n++
		}
	}
	if n != 20 {
		t.Fatalf("kafkajs consumed %d events, want 20:\n%s\n%s", n, out.String(), errOut.String())
	}
}

// TestClusterFromASingleNode: a center that ran alone becomes node 1 of a
// three-node cluster and keeps its topics, ids and offsets.
func TestClusterFromASingleNode(t *testing.T) {
	c := newClusterProcs(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alone := startFull(t, c.dirs[0], c.mirror[0])
	cl, err := kgo.NewClient(kgo.SeedBrokers(alone.kafkaAddr), kgo.DefaultProduceTopic("history"), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 25; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	md, err := kadm.NewClient(cl).Metadata(ctx, "history")
	if err != nil {
		t.Fatal(err)
	}
	id := md.Topics["history"].ID
	offs := kadm.Offsets{}
	offs.AddOffset("history", 0, 20, -1)
	if resp, err := kadm.NewClient(cl).CommitOffsets(ctx, "history-readers", offs); err != nil || resp.Error() != nil {
		t.Fatalf("commit alone: %v %v", resp, err)
	}
	cl.Close()
	alone.cmd.Process.Signal(syscall.SIGTERM)
	<-alone.done

	c.startAll()
	c.waitFor("the imported topic in the cluster's metadata", func() bool {
		v, ok := c.view(1)
		return ok && v.Topics == 2 // and __consumer_offsets
	})
	cl2, err := kgo.NewClient(kgo.SeedBrokers(c.procs[2].kafkaAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	var md2 kadm.Metadata
	c.waitFor("the imported topic on node 3", func() bool { // node 3 follows the metadata on its own time
		md2, err = kadm.NewClient(cl2).Metadata(ctx, "history")
		return err == nil && md2.Topics["history"].Err == nil && len(md2.Topics["history"].Partitions) == 1
	})
	if md2.Topics["history"].ID != id || md2.Topics["history"].Partitions[0].Leader != 1 {
		t.Fatalf("after the upgrade: id %v leader %d; before: id %v on node 1", md2.Topics["history"].ID, md2.Topics["history"].Partitions[0].Leader, id)
	}
	if n := countRecords(t, ctx, c.kafkaAddrs(), "history"); n != 25 {
		t.Fatalf("%d records after the upgrade, want 25", n)
	}
	// The group's committed offset, in node 1's kafka-groups.db alone, is
	// the cluster's, in __consumer_offsets.
	c.waitFor("the group's offset imported into the cluster", func() bool {
		fetched, err := kadm.NewClient(cl2).FetchOffsets(ctx, "history-readers")
		o, _ := fetched.Lookup("history", 0)
		return err == nil && o.At == 20
	})
}

// TestStatusPageShowsTheCluster: a node of a three-node center shows the
// cluster on its status page: the controller, each broker live or fenced
// with the partitions it holds and leads, offline and under-replicated
// partitions.
func TestStatusPageShowsTheCluster(t *testing.T) {
	chromium := requireTool(t, "chromium")
	c := newClusterProcs(t, 3)
	c.startAll()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.kafkaAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 6, 1, nil, "spread"); err != nil {
		t.Fatal(err)
	}
	// Replicated on all three: under-replicated once node 3 is gone.
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 3, 3, nil, "replicated"); err != nil {
		t.Fatal(err)
	}
	c.kill9(2)
	c.waitFor("node 3 fenced", func() bool {
		v, ok := c.view(0)
		return ok && len(v.Offline) > 0
	})
	bctx, errs := startBrowser(t, chromium, 1440, 1000)
	url := "http://" + c.procs[0].adminAddr + "/"
	if err := chromedp.Do(bctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("loading %s: %v", url, err)
	}
	poll := `(() => {
		const card = document.querySelector("#table-cluster");
		const rows = [...document.querySelectorAll("#table-cluster tbody tr")].map((r) => [...r.cells].map((c) => c.textContent.trim()));
		const got = {shown: !!card && !card.hidden, summary: (document.querySelector("#cluster-summary") || {}).textContent || "", rows};
		window.__ferryGot = got;
		const ok = got.shown && rows.length === 3 && rows[2][1] === "fenced" && rows[0][1] === "live" && rows[1][1] === "live" &&
			got.summary.includes("controller node") && got.summary.includes("offline") && /[1-9][0-9]* under-replicated/.test(got.summary);
		return ok ? JSON.stringify(got) : false;
	})()`
	pctx, pcancel := context.WithTimeout(bctx, 60*time.Second)
	got, err := chromedp.Run(pctx, chromedp.Poll[string](poll, chromedp.WithPollingInterval(200*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second)))
	pcancel()
	if err != nil {
		last, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`JSON.stringify(window.__ferryGot || {})`))
		saveScreenshot(t, bctx, "statuspage-cluster-failed.png")
		t.Fatalf("the page did not show the cluster within 60 s: %v\nsaw %s", err, last)
	}
	t.Logf("the cluster on the page: %s", got)
	saveScreenshot(t, bctx, "statuspage-cluster.png")
	errs.check(t)
}
