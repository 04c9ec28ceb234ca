package testbed

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Scenario 6: one node's wall clock ten minutes ahead. A Go binary reads
// the clock through the vDSO, which faketime cannot move, and a time
// namespace does not offset CLOCK_REALTIME: node 1 runs with
// --debug-wall-clock-offset 10m, the node's wall-clock seam (what it
// stamps and ages by; timeouts, sessions and raft stay on the monotonic
// clock, so it is as healthy a member as the others).
//
// The topic is message.timestamp.type=LogAppendTime, so the leader's clock
// is in the data: every node leads two of its six partitions and follows
// four, and leadership is moved across node 1 both ways under the suite's
// acks=all load: kill -9 of node 1 hands its partitions to nodes on the
// machine's clock, whose stamps node 1 replicates once back; kill -9 of
// node 2 then hands partitions to node 1, whose stamps (ten minutes
// ahead) the others replicate. Checked, beside the suite's verify (every
// acknowledged record once at its offset, no dirty read, replicas
// byte-identical below the high watermark with leader epochs masked, so
// no follower restamped anything, the URP metric true):
//
//   - the data carries both clocks: some partition holds records stamped
//     ten minutes ahead and records stamped by the machine's clock;
//   - ListOffsets by timestamp answers, after each move, with leaders on
//     either clock, what Kafka's rule gives from the records alone: the
//     first offset whose timestamp is at or after the time asked (the
//     partition's end when none is). The answer never depends on the
//     answering broker's clock, so a consumer's seek by time lands where
//     it would on any replica;
//   - retention: the topic's retention.ms is 15 min, longer than the skew,
//     so nothing acknowledged may be cut anywhere (verify). And a second
//     topic with retention.ms of 5 min, shorter than the skew, written
//     with producer (CreateTime) timestamps from the machine's clock, to
//     which node 1's clock says they are ten minutes old. Kafka's rule is
//     that each broker ages segments by its own clock; ferry's, in a
//     cluster, that only the leader applies retention and a follower's
//     copy follows its leader's log start (log.Partition.
//     SetAppliesRetention). So the partition node 1 only follows keeps
//     every record on every replica after node 1's retention pass (Kafka
//     would have cut node 1's copy, which would become the cluster's
//     start the day node 1 led it), while the partition node 1 leads is
//     cut at that pass, on every replica: a leader's clock ahead of the
//     records still deletes them early (Kafka's rule, documented in
//     docs/durability.md as what skew does).
func TestJepsenClockSkew(t *testing.T) {
	const skew = 10 * time.Minute
	const skewed = 0 // node 1
	c := newJepsenCluster(t, 3, netLoopback, "--default-replication-factor", "3", "--min-insync-replicas", "2")
	c.extra[skewed] = append(c.extra[skewed], "--debug-wall-clock-offset", skew.String())
	c.startAll()
	ctx, cancel := context.WithTimeout(context.Background(), tortureSize(5*time.Minute, 30*time.Minute))
	t.Cleanup(cancel)
	two, appendTime, quarterHour := "2", "LogAppendTime", strconv.Itoa(int((15 * time.Minute).Milliseconds()))
	createAssignedTopic(t, ctx, c.kafkaAddrs(), jepsenTopic, [][]int32{{1, 2, 3}, {2, 3, 1}, {3, 1, 2}, {1, 3, 2}, {2, 1, 3}, {3, 2, 1}},
		map[string]*string{"min.insync.replicas": &two, "message.timestamp.type": &appendTime, "retention.ms": &quarterHour})
	c.awaitInSync(ctx, jepsenTopic)
	w := startWorkload(t, c.kafka, 1000, 2, jepsenTopic)
	w.awaitAcks(1000, 30*time.Second)

	for _, victim := range []int{skewed, 1} {
		parts := c.ledBy(ctx, jepsenTopic, victim)
		w.watchPartitions(parts, time.Now())
		c.kill9(victim)
		if gap, ok := w.unavailable(30 * time.Second); !ok {
			t.Fatalf("no acknowledgement on %v within 30 s of killing their leader, node %d", parts, victim+1)
		} else {
			t.Logf("node %d killed: its partitions %v acknowledged again %s later", victim+1, parts, gap.Round(time.Millisecond))
		}
		w.awaitAcks(1000, 30*time.Second)
		c.start(victim)
		c.awaitInSync(ctx, jepsenTopic)
		w.awaitAcks(1000, 30*time.Second)
		leaders := c.leaders(ctx, jepsenTopic)
		times := readTimestamps(t, ctx, c.kafkaAddrs(), jepsenTopic)
		failOn(t, checkTimeLookups(ctx, c.kafkaAddrs(), jepsenTopic, times))
		t.Logf("node %d back; leaders by partition %v; ListOffsets by time as the records say", victim+1, leaders)
	}
	// After the second move node 1 leads partitions again (the first of
	// their replicas in sync), among them some whose earlier records the
	// others stamped.
	leaders := c.leaders(ctx, jepsenTopic)
	var ledBySkewed []int32
	for p, l := range leaders {
		if l == skewed+1 {
			ledBySkewed = append(ledBySkewed, p)
		}
	}
	if len(ledBySkewed) == 0 || len(ledBySkewed) == len(leaders) {
		t.Fatalf("leaders %v: want node %d leading some partitions, not all", leaders, skewed+1)
	}
	times := readTimestamps(t, ctx, c.kafkaAddrs(), jepsenTopic)
	readAt := time.Now()
	mixed := 0
	for p, ts := range times {
		ahead := 0
		for _, v := range ts {
			if v > readAt.Add(skew/2).UnixMilli() {
				ahead++
			}
		}
		t.Logf("%s-%d: %d records stamped by node %d's clock, %d by the machine's", jepsenTopic, p, ahead, skewed+1, len(ts)-ahead)
		if ahead > 0 && ahead < len(ts) {
			mixed++
		}
	}
	if mixed == 0 {
		t.Fatalf("no partition holds records stamped by both clocks")
	}

	// Retention shorter than the skew: partition 0 led by node 3 (node 1
	// follows), partition 1 led by node 1.
	const aged = "clock-aged"
	fiveMin := strconv.Itoa(int((5 * time.Minute).Milliseconds()))
	createAssignedTopic(t, ctx, c.kafkaAddrs(), aged, [][]int32{{3, 2, 1}, {1, 3, 2}},
		map[string]*string{"min.insync.replicas": &two, "retention.ms": &fiveMin})
	c.awaitInSync(ctx, aged)
	const n = 50
	produceStamped(t, ctx, c.kafkaAddrs(), aged, n, time.Now())
	followed, led := tp{aged, 0}, tp{aged, 1}
	// Node 1's retention pass (once a minute) cuts the partition it leads:
	// that pass has then also weighed the one it follows.
	start := time.Now()
	c.waitForWithin(90*time.Second, "node 1's retention pass to cut "+led.String()+" on every replica", func() bool {
		for i := range c.procs {
			if c.replicaStart(i, led) != n {
				return false
			}
		}
		return true
	})
	t.Logf("%s cut on every replica %s after it was written: node 1's clock says its records are ten minutes old", led, time.Since(start).Round(time.Second))
	for i := range c.procs {
		if s := c.replicaStart(i, followed); s != 0 {
			t.Errorf("node %d's copy of %s starts at %d after node 1's retention pass, want 0: a follower's copy follows its leader (node 3), whose clock says its records are fresh", i+1, followed, s)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.kafkaAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	starts, err := kadm.NewClient(cl).ListStartOffsets(ctx, aged)
	cl.Close()
	if err != nil || starts.Error() != nil {
		t.Fatalf("start offsets of %s: %v %v", aged, err, starts.Error())
	}
	if o, _ := starts.Lookup(aged, 0); o.Offset != 0 {
		t.Errorf("ListOffsets earliest of %s: %d, want 0", followed, o.Offset)
	}

	failOn(t, c.verify(ctx, w, jepsenTopic))
}

// ledBy is the partitions of topic node i (0-based) leads, by Metadata.
func (c *jepsenCluster) ledBy(ctx context.Context, topic string, i int) []tp {
	c.t.Helper()
	var parts []tp
	for p, l := range c.leaders(ctx, topic) {
		if l == int32(i+1) {
			parts = append(parts, tp{topic, p})
		}
	}
	if len(parts) == 0 {
		c.t.Fatalf("node %d leads no partition of %s", i+1, topic)
	}
	return parts
}

// leaders is each partition's leader by Metadata, once every partition
// has one.
func (c *jepsenCluster) leaders(ctx context.Context, topic string) map[int32]int32 {
	c.t.Helper()
	out := map[int32]int32{}
	c.waitFor("a leader for every partition of "+topic, func() bool {
		md, err := c.metadata(ctx, topic)
		if err != nil || len(md) == 0 {
			return false
		}
		clear(out)
		for p, v := range md {
			if v.Leader <= 0 {
				return false
			}
			out[p] = v.Leader
		}
		return true
	})
	return out
}

// replicaStart is where node i's copy of p starts, read from its files
// (the node may be running): the larger of its first segment's base
// offset and its log-start-offset-checkpoint, as the log takes it; -1 if
// the directory cannot be read.
func (c *jepsenCluster) replicaStart(i int, p tp) int64 {
	dir := filepath.Join(c.dirs[i], "log", p.String())
	entries, err := os.ReadDir(dir)
	if err != nil {
		return -1
	}
	start := int64(-1)
	for _, e := range entries {
		if base, ok := strings.CutSuffix(e.Name(), ".log"); ok {
			if b, err := strconv.ParseInt(base, 10, 64); err == nil && (start < 0 || b < start) {
				start = b
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "log-start-offset-checkpoint")); err == nil {
		var v int64
		if _, err := fmt.Sscanf(string(b), "0\n%d", &v); err == nil {
			start = max(start, v)
		}
	}
	return start
}

// produceStamped writes n records to each partition of topic with
// timestamp at, acks=all, and fails the test unless all are acknowledged.
func produceStamped(t *testing.T, ctx context.Context, addrs []string, topic string, n int, at time.Time) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	md, err := kadm.NewClient(cl).Metadata(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for _, p := range md.Topics[topic].Partitions {
		for i := range n {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p.Partition, Value: fmt.Appendf(nil, "%d", i), Timestamp: at})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing to %s: %v", topic, err)
	}
}

// readTimestamps reads topic from offset 0 to its end (the high
// watermark) and returns each partition's record timestamps (Unix ms) by
// offset. The topic must start at 0.
func readTimestamps(t *testing.T, ctx context.Context, addrs []string, topic string) map[int32][]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RetryTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	ends, err2 := adm.ListEndOffsets(ctx, topic)
	if err2 == nil {
		err2 = ends.Error()
	}
	if err != nil || err2 != nil {
		t.Fatalf("offsets of %s: %v %v", topic, err, err2)
	}
	out := map[int32][]int64{}
	from := map[int32]kgo.Offset{}
	need := 0
	ends.Each(func(o kadm.ListedOffset) {
		if s, _ := starts.Lookup(topic, o.Partition); s.Offset != 0 {
			t.Fatalf("%s-%d starts at %d, not 0", topic, o.Partition, s.Offset)
		}
		out[o.Partition] = make([]int64, o.Offset)
		from[o.Partition] = kgo.NewOffset().At(0)
		need += int(o.Offset)
	})
	rd, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	rctx, rcancel := context.WithTimeout(ctx, 90*time.Second)
	defer rcancel()
	seen := map[int32]int64{}
	for got := 0; got < need; {
		fs := rd.PollFetches(rctx)
		if rctx.Err() != nil {
			t.Fatalf("reading %s back: %d of %d records", topic, got, need)
		}
		fs.EachRecord(func(r *kgo.Record) {
			ts := out[r.Partition]
			if r.Offset < int64(len(ts)) && r.Offset >= seen[r.Partition] {
				ts[r.Offset] = r.Timestamp.UnixMilli()
				seen[r.Partition] = r.Offset + 1
				got++
			}
		})
	}
	return out
}

// checkTimeLookups asks ListOffsets by timestamp (through the partitions'
// leaders, as clients do) for times spread over the records' own, and
// compares each answer with Kafka's rule applied to times (a partition's
// timestamps by offset, read just before): the first offset whose
// timestamp is at or after the time asked, with that timestamp; when no
// record read has one, an offset at or past those read (the end: records
// appended since may answer).
func checkTimeLookups(ctx context.Context, addrs []string, topic string, times map[int32][]int64) []string {
	var all []int64
	for _, ts := range times {
		all = append(all, ts...)
	}
	slices.Sort(all)
	all = slices.Compact(all)
	if len(all) == 0 {
		return []string{topic + ": no records to look up"}
	}
	probes := []int64{all[0] - 1, all[len(all)-1], all[len(all)-1] + 1}
	for i := range 16 {
		v := all[i*(len(all)-1)/15]
		probes = append(probes, v, v+1)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RetryTimeout(30*time.Second))
	if err != nil {
		return []string{err.Error()}
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var problems []string
	for _, at := range probes {
		got, err := adm.ListOffsetsAfterMilli(ctx, at, topic)
		if err == nil {
			err = got.Error()
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("ListOffsets %s at %d: %v", topic, at, err))
			continue
		}
		for p, ts := range times {
			o, ok := got.Lookup(topic, p)
			if !ok {
				problems = append(problems, fmt.Sprintf("ListOffsets %s-%d at %d: no answer", topic, p, at))
				continue
			}
			want := slices.IndexFunc(ts, func(v int64) bool { return v >= at })
			switch {
			case want < 0 && o.Offset < int64(len(ts)):
				problems = append(problems, fmt.Sprintf("ListOffsets %s-%d at %d: offset %d (timestamp %d), want the end (no record read is as late; %d read)",
					topic, p, at, o.Offset, o.Timestamp, len(ts)))
			case want >= 0 && (o.Offset != int64(want) || o.Timestamp != ts[want]):
				problems = append(problems, fmt.Sprintf("ListOffsets %s-%d at %d: offset %d (timestamp %d), want %d (timestamp %d)",
					topic, p, at, o.Offset, o.Timestamp, want, ts[want]))
			}
		}
	}
	return problems
}
