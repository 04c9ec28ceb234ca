package testbed

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The scenarios of issue 16 against replicated partitions: each a
// three-node center under acks=all load on a topic of replication factor
// 3 and min.insync.replicas 2, a fault, healing, then verify (every
// acknowledged record once at its offset, no dirty read, replicas
// identical below the high watermark, the URP metric true). Short in
// `make test`; FERRY_TORTURE=full (make torture) runs them longer.
// Behind the `replication` build tag until replication is merged.

const jepsenTopic = "orders"

// jepsenRF3 starts a cluster of three with replication defaults RF 3,
// min ISR 2, a 6-partition topic at RF 3, every replica in sync, and the
// load running.
func jepsenRF3(t *testing.T, how jepsenNet, rate int) (*jepsenCluster, context.Context, *workload) {
	t.Helper()
	return jepsenRF3Placed(t, newJepsenCluster(t, 3, how, "--default-replication-factor", "3", "--min-insync-replicas", "2"), rate, nil)
}

// followerOnly3 places 4 partitions at RF 3 so that node 3 leads none of
// them while nodes 1 and 2 live.
var followerOnly3 = [][]int32{{1, 2, 3}, {2, 1, 3}, {1, 2, 3}, {2, 1, 3}}

// jepsenRF3Placed starts c (prepared by newJepsenCluster), creates the
// topic (6 partitions at RF 3, or placed by assignment), waits for every
// replica in sync and starts the load.
func jepsenRF3Placed(t *testing.T, c *jepsenCluster, rate int, assignment [][]int32) (*jepsenCluster, context.Context, *workload) {
	t.Helper()
	c.startAll()
	ctx, cancel := context.WithTimeout(context.Background(), tortureSize(3*time.Minute, 30*time.Minute))
	t.Cleanup(cancel)
	if assignment == nil {
		createRF3(t, ctx, c, jepsenTopic, 6)
	} else {
		two := "2"
		createAssignedTopic(t, ctx, c.kafkaAddrs(), jepsenTopic, assignment, map[string]*string{"min.insync.replicas": &two})
		c.awaitInSync(ctx, jepsenTopic)
	}
	w := startWorkload(t, c.kafka, rate, 2, jepsenTopic)
	w.awaitAcks(int64(rate/2), 30*time.Second)
	return c, ctx, w
}

// createRF3 creates topic at replication factor 3 and waits for every
// partition to have a leader and its whole replica set in sync.
func createRF3(t testing.TB, ctx context.Context, c *jepsenCluster, topic string, partitions int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.kafkaAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	two := "2"
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 3, map[string]*string{"min.insync.replicas": &two}, topic); err != nil {
		t.Fatalf("creating %s at RF 3: %v", topic, err)
	}
	c.awaitInSync(ctx, topic)
}

// awaitInSync waits until every node is up and every partition of topics
// has a leader and all its replicas in sync.
func (c *jepsenCluster) awaitInSync(ctx context.Context, topics ...string) time.Duration {
	c.t.Helper()
	return c.waitFor("every partition led, its replicas all in sync", func() bool {
		for _, p := range c.procs {
			if p == nil {
				return false
			}
		}
		// Every node's own image agrees (a node just healed from a
		// partition may still answer from the one it had), and so does
		// what clients are told.
		epochs := map[string]int32{}
		for i := range c.procs {
			v, ok := c.view(i)
			if !ok {
				return false
			}
			n := 0
			for _, ps := range v.PartitionStates {
				if !slices.Contains(topics, ps.Topic) {
					continue
				}
				n++
				key := fmt.Sprintf("%s-%d", ps.Topic, ps.Partition)
				if ps.Leader <= 0 || len(ps.ISR) != len(ps.Replicas) {
					return false
				}
				if e, seen := epochs[key]; seen && e != ps.LeaderEpoch {
					return false
				}
				epochs[key] = ps.LeaderEpoch
			}
			if n == 0 {
				return false
			}
		}
		for _, topic := range topics {
			md, err := c.metadata(ctx, topic)
			if err != nil || len(md) == 0 {
				return false
			}
			for _, p := range md {
				if p.Err != nil || p.Leader <= 0 || len(p.Replicas) != 3 || len(p.ISR) != len(p.Replicas) {
					return false
				}
			}
		}
		return true
	})
}

// Scenario 1: kill -9 the leader of the busiest partitions, repeatedly
// (3 times; 20 under FERRY_TORTURE=full), restarting it each time once
// its partitions have moved. Each kill's unavailability (kill to the next
// acknowledgement on its partitions) is logged, and must stay under 30 s.
func TestJepsenKillLeader(t *testing.T) {
	c, ctx, w := jepsenRF3(t, netLoopback, 1000)
	for k := range tortureSize(3, 20) {
		victim, parts := c.busiestLeader(ctx, jepsenTopic, w)
		at := time.Now()
		w.watchPartitions(parts, at)
		c.kill9(victim)
		gap, ok := w.unavailable(30 * time.Second)
		if !ok {
			t.Fatalf("kill %d: no acknowledgement on %v within 30 s of killing their leader, node %d", k, parts, victim+1)
		}
		t.Logf("kill %d: node %d led %v; next acknowledgement there %s later", k, victim+1, parts, gap.Round(time.Millisecond))
		if p := c.checkURPWithin(ctx, 10*time.Second); len(p) > 0 {
			t.Errorf("kill %d, a replica down: %v", k, p)
		}
		w.awaitAcks(300, 30*time.Second)
		c.start(victim)
		c.awaitInSync(ctx, jepsenTopic)
	}
	failOn(t, c.verify(ctx, w, jepsenTopic))
}

// Scenario 2: the leader of the busiest partitions cut off from both
// peers (network namespaces) while the load goes on through every node:
// the majority elects new leaders and acknowledges; the isolated leader
// may take appends but cannot commit them; healed, its uncommitted tail is
// truncated (replicas identical below the high watermark) and no offset
// was acknowledged by two leaders with different records.
func TestJepsenIsolatedLeader(t *testing.T) {
	c, ctx, w := jepsenRF3(t, netNamespaces, 500)
	for round := range tortureSize(1, 5) {
		victim, parts := c.busiestLeader(ctx, jepsenTopic, w)
		at := time.Now()
		w.watchPartitions(parts, at)
		c.lab.isolate(victim)
		gap, ok := w.unavailable(45 * time.Second)
		if !ok {
			t.Fatalf("round %d: no acknowledgement on %v within 45 s of isolating their leader, node %d", round, parts, victim+1)
		}
		t.Logf("round %d: node %d isolated; its partitions acknowledged again %s later", round, victim+1, gap.Round(time.Millisecond))
		w.awaitAcks(300, 30*time.Second)
		time.Sleep(tortureSize(2*time.Second, 20*time.Second)) // load while isolated: the duration is the scenario, not a synchronisation
		c.lab.heal()
		c.awaitInSync(ctx, jepsenTopic)
	}
	failOn(t, c.verify(ctx, w, jepsenTopic))
}

// Scenario 3: the leader of the busiest partitions paused (SIGSTOP) past
// the session timeout, its sockets open, then continued: a zombie that
// must learn it was replaced and never acknowledge what the new leader
// did not commit.
func TestJepsenPausedLeader(t *testing.T) {
	c, ctx, w := jepsenRF3(t, netLoopback, 1000)
	session, _ := time.ParseDuration(c.session)
	for round := range tortureSize(2, 10) {
		victim, parts := c.busiestLeader(ctx, jepsenTopic, w)
		at := time.Now()
		w.watchPartitions(parts, at)
		c.pause(victim)
		// A paused node's sockets stay open and its kernel still accepts
		// connections, so the producer learns nothing from them: its
		// request waits out franz-go's request timeout (20 s), and each
		// metadata request that lands on the paused node another 10 s.
		gap, ok := w.unavailable(2 * time.Minute)
		if !ok {
			c.resume(victim)
			t.Fatalf("round %d: no acknowledgement on %v within 2 minutes of pausing their leader, node %d", round, parts, victim+1)
		}
		t.Logf("round %d: node %d paused; its partitions acknowledged again %s later", round, victim+1, gap.Round(time.Millisecond))
		if rest := 2*session - time.Since(at); rest > 0 {
			time.Sleep(rest) // paused twice the session timeout in all: the fault's length
		}
		c.resume(victim)
		c.awaitInSync(ctx, jepsenTopic)
	}
	failOn(t, c.verify(ctx, w, jepsenTopic))
}

// Scenario 4: kill -9 the controller while topics are being created at
// RF 3 through another node and while the in-sync sets churn (a broker
// killed and restarted at the same time). Afterwards: equal metadata on
// every node, every created topic whole with all replicas in sync, and
// the load's checker passes.
func TestJepsenKillControllerChurn(t *testing.T) {
	c, ctx, w := jepsenRF3(t, netLoopback, 500)
	for round := range tortureSize(1, 5) {
		ctrl := c.controller()
		via := (ctrl + 1) % 3
		churn := (ctrl + 2) % 3
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.procs[via].kafkaAddr), kgo.RequestTimeoutOverhead(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		adm := kadm.NewClient(cl)
		var created []string
		var mu sync.Mutex
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 12 {
				name := fmt.Sprintf("churn-%d-%d", round, i)
				cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
				if _, err := adm.CreateTopic(cctx, 2, 3, nil, name); err == nil {
					mu.Lock()
					created = append(created, name)
					mu.Unlock()
				}
				ccancel()
			}
		}()
		w.awaitAcks(100, 30*time.Second)
		c.kill9(churn) // in-sync sets shrink...
		c.kill9(ctrl)  // ...while the controller dies: a majority is down for a moment
		c.start(churn)
		newCtrl := c.controller()
		t.Logf("round %d: controller %d killed with broker %d; node %d controls", round, ctrl+1, churn+1, newCtrl+1)
		c.start(ctrl)
		wg.Wait()
		cl.Close()
		c.indexesEqual(15 * time.Second)
		c.awaitInSync(ctx, append([]string{jepsenTopic}, created...)...)
		t.Logf("round %d: %d of 12 topics created", round, len(created))
	}
	failOn(t, c.verify(ctx, w, jepsenTopic))
}

// Scenario 5a: a slow follower. The topic is placed so node 3 leads
// nothing; its toxiproxy link (every connection into its cluster listener)
// gets 200 ms of latency each way, and the process is starved (SIGSTOP
// 150 ms of every 250 ms), so it lags whatever way replication reaches
// it. Acknowledgements go on (min ISR 2 without it), the URP metric says
// what Metadata says throughout, and once it is fast again it rejoins.
func TestJepsenSlowFollower(t *testing.T) {
	c, ctx, w := jepsenRF3Placed(t, newJepsenCluster(t, 3, netProxied, "--default-replication-factor", "3", "--min-insync-replicas", "2"), 1000, followerOnly3)
	slow := 2
	c.links[slow].toxicStream("lat-up", "latency", "upstream", `"latency":200`)
	c.links[slow].toxicStream("lat-down", "latency", "downstream", `"latency":200`)
	stopStarving := c.starve(slow, 150*time.Millisecond, 250*time.Millisecond)
	deadline := time.Now().Add(tortureSize(8*time.Second, 60*time.Second))
	for time.Now().Before(deadline) {
		w.awaitAcks(200, 30*time.Second)
		if p := c.checkURPWithin(ctx, 10*time.Second); len(p) > 0 {
			t.Errorf("while node %d is slow: %v", slow+1, p)
		}
	}
	stopStarving()
	c.links[slow].remove("lat-up")
	c.links[slow].remove("lat-down")
	in := c.awaitInSync(ctx, jepsenTopic)
	t.Logf("node %d back in sync %s after it was fast again", slow+1, in.Round(time.Millisecond))
	failOn(t, c.verify(ctx, w, jepsenTopic))
}

// starve pauses node i for pause of every period until the returned stop
// is called (a follower starved of CPU).
func (c *jepsenCluster) starve(i int, pause, period time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p := c.procs[i]
		for {
			p.cmd.Process.Signal(syscall.SIGSTOP)
			select {
			case <-done:
			case <-time.After(pause):
			}
			p.cmd.Process.Signal(syscall.SIGCONT)
			select {
			case <-done:
				return
			case <-time.After(period - pause):
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(done); wg.Wait() }) }
	c.t.Cleanup(stop)
	return stop
}

// Scenario 5b: a follower whose disk fills. Node 3 (leading nothing) has
// its data directory on a 64 MiB tmpfs, filled but for 1 MiB once the
// load runs; its appends then fail for lack of space while the other two
// go on acknowledging (min ISR 2), and the URP metric follows it out of
// the in-sync set. The filler removed, it catches up and rejoins. It
// must not exit on the full disk.
func TestJepsenFollowerDiskFull(t *testing.T) {
	c := newJepsenCluster(t, 3, netLoopback, "--default-replication-factor", "3", "--min-insync-replicas", "2")
	full := 2
	disk := filepath.Join(t.TempDir(), "disk")
	mountTmpfs(t, disk, "64m")
	c.dirs[full] = filepath.Join(disk, "data")
	c, ctx, w := jepsenRF3Placed(t, c, 2000, followerOnly3)
	var st syscall.Statfs_t
	if err := syscall.Statfs(disk, &st); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(disk, "filler")
	if err := os.WriteFile(filler, make([]byte, int64(st.Bavail)*st.Bsize-1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	c.waitFor("node 3's disk full or node 3 out of an in-sync set", func() bool {
		if syscall.Statfs(disk, &st) == nil && int64(st.Bavail)*st.Bsize < 256<<10 {
			return true
		}
		md, err := c.metadata(ctx, jepsenTopic)
		for _, p := range md {
			if err == nil && !slices.Contains(p.ISR, int32(full+1)) {
				return true
			}
		}
		return false
	})
	w.awaitAcks(2000, 30*time.Second) // acknowledgements go on without it
	if p := c.checkURPWithin(ctx, 15*time.Second); len(p) > 0 {
		t.Errorf("with node 3's disk full: %v", p)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.procs[full].exited:
		t.Errorf("node 3 exited on a full disk: %v", err)
		c.procs[full] = nil
		c.start(full)
	default:
	}
	c.awaitInSync(ctx, jepsenTopic)
	failOn(t, c.verify(ctx, w, jepsenTopic))
}

// Scenario 8: a rolling restart under load: each node in turn stopped
// with SIGTERM and started again, the next only once every replica is
// back in sync (1 round; 3 under FERRY_TORTURE=full).
func TestJepsenRollingRestart(t *testing.T) {
	c, ctx, w := jepsenRF3(t, netLoopback, 1000)
	for round := range tortureSize(1, 3) {
		for i := range c.procs {
			c.stop(i)
			w.awaitAcks(300, 30*time.Second)
			c.start(i)
			in := c.awaitInSync(ctx, jepsenTopic)
			t.Logf("round %d: node %d restarted, all in sync %s later", round, i+1, in.Round(time.Millisecond))
		}
	}
	failOn(t, c.verify(ctx, w, jepsenTopic))
}

// Scenario 9: a power cut on a follower, as closely as a process allows.
// The log's power-cut filesystem (log/powercut_test.go) is a test seam
// inside the log package that no ferry process can be started with, and
// this kernel has no device-mapper for dm-flakey; so the follower is
// killed with SIGKILL and its files are then made to look as a power cut
// may leave them: each partition's active segment cut back to a random
// batch boundary at or above its checkpointed high watermark (never
// fsynced beyond it is the worst legal case for what the follower did not
// promise), a torn half batch appended, the leader-epoch checkpoint
// removed. Restarted, it must recover, truncate to the leader and rejoin,
// nothing acknowledged lost.
func TestJepsenPowerCutFollower(t *testing.T) {
	c, ctx, w := jepsenRF3Placed(t, newJepsenCluster(t, 3, netLoopback, "--default-replication-factor", "3", "--min-insync-replicas", "2"), 1000, followerOnly3)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	follower := 2 // leads nothing
	for round := range tortureSize(2, 10) {
		w.awaitAcks(500, 30*time.Second)
		c.kill9(follower)
		cut := powerCut(t, rng, filepath.Join(c.dirs[follower], "log"), jepsenTopic)
		t.Logf("round %d: follower %d cut: %v", round, follower+1, cut)
		w.awaitAcks(300, 30*time.Second)
		c.start(follower)
		c.awaitInSync(ctx, jepsenTopic)
	}
	failOn(t, c.verify(ctx, w, jepsenTopic))
}

// powerCut damages topic's partitions under logDir as described for
// TestJepsenPowerCutFollower and says what it did per partition.
func powerCut(t *testing.T, rng *rand.Rand, logDir, topic string) map[string]string {
	t.Helper()
	out := map[string]string{}
	dirs, _ := filepath.Glob(filepath.Join(logDir, topic+"-*"))
	for _, dir := range dirs {
		hw := int64(0)
		if b, err := os.ReadFile(filepath.Join(dir, "high-watermark-checkpoint")); err == nil {
			var v int
			fmt.Sscanf(string(b), "0\n%d", &v)
			hw = int64(v)
		}
		segs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		if len(segs) == 0 {
			continue
		}
		sort.Strings(segs)
		active := segs[len(segs)-1]
		p := tp{topic, 0}
		if n, err := strconv.Atoi(filepath.Base(dir)[len(topic)+1:]); err == nil {
			p.Partition = int32(n)
		}
		var bounds []int64 // file positions of batch ends at or above hw
		var pos int64
		batches, err := readSegment(active)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range batches {
			pos += int64(len(b.Bytes))
			if b.LastOffset+1 >= hw {
				bounds = append(bounds, pos)
			}
		}
		if len(bounds) == 0 {
			continue
		}
		at := bounds[rng.IntN(len(bounds))]
		if err := os.Truncate(active, at); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(active, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(batches[0].Bytes[:len(batches[0].Bytes)/2]) // a torn batch
		f.Close()
		os.Remove(filepath.Join(dir, "leader-epoch-checkpoint"))
		out[p.String()] = fmt.Sprintf("hw %d, cut at byte %d of %s", hw, at, filepath.Base(active))
	}
	return out
}
