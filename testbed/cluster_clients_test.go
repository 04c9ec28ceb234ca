package testbed

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Replicated partitions seen from clients the Jepsen suite does not use
// (it drives everything with franz-go): kafkajs and librdkafka (kcat), each
// with its idempotent producer through a leader's kill -9, then reading
// back what it was told was acknowledged; kafkajs' group commits through
// the kill of the group's coordinator; kcat's view of replicas, ISR,
// leaders and end offsets, and a consumer reading only below the high
// watermark. Three `ferry full` processes, RF 3, min ISR 2.

// rf3Cluster starts three nodes whose topics default to RF 3, min ISR 2.
func rf3Cluster(t *testing.T) (*jepsenCluster, context.Context) {
	t.Helper()
	c := newJepsenCluster(t, 3, netLoopback, "--default-replication-factor", "3", "--min-insync-replicas", "2")
	c.startAll()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c, ctx
}

// requireKafkajs is node and testbed/kafkajs (its node_modules installed),
// failing under CI=true where either is missing.
func requireKafkajs(t *testing.T) (node, dir string) {
	t.Helper()
	node = requireTool(t, "node")
	dir, _ = filepath.Abs("kafkajs")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "kafkajs")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("kafkajs is not installed in %s (make deps runs npm ci there): %v", dir, err)
		}
		t.Skipf("kafkajs not installed in %s (make deps installs it)", dir)
	}
	return node, dir
}

// delivered is one record a client said was acknowledged: its sequence
// number (the value), partition and offset.
type delivered struct {
	Seq int   `json:"ack"`
	P   int32 `json:"p"`
	O   int64 `json:"o"`
}

// streamed is a client process whose stdout or stderr the test reads as
// it runs, collecting what it reports delivered and failed.
type streamed struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	mu     sync.Mutex
	acks   []delivered
	failed []int
	read   []seen   // a consumer's records
	notes  []string // lines that were neither
	exited chan error
	// stop and fed, when set: a goroutine feeds stdin until stop is
	// closed, then closes fed.
	stop, fed chan struct{}
}

func (s *streamed) ackCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.acks)
}

// awaitAcks waits until n more records than now are acknowledged.
func (s *streamed) awaitAcks(n int, within time.Duration) {
	s.t.Helper()
	want := s.ackCount() + n
	deadline := time.Now().Add(within)
	for s.ackCount() < want {
		select {
		case err := <-s.exited:
			s.t.Fatalf("%s exited early: %v\n%s", s.name, err, s.log())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: %d acknowledged, want %d within %s\n%s", s.name, s.ackCount(), want, within, s.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *streamed) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	notes := s.notes
	if len(notes) > 40 {
		notes = notes[len(notes)-40:]
	}
	return strings.Join(notes, "\n")
}

// finish closes stdin and waits for the process to flush and exit.
func (s *streamed) finish(within time.Duration) {
	s.t.Helper()
	if s.stop != nil {
		close(s.stop)
		<-s.fed
	}
	s.stdin.Close()
	select {
	case err := <-s.exited:
		if err != nil {
			s.t.Fatalf("%s: %v\n%s", s.name, err, s.log())
		}
	case <-time.After(within):
		s.t.Fatalf("%s did not exit within %s of its input's end\n%s", s.name, within, s.log())
	}
}

// start runs cmd, handing each line of out (its stdout or stderr) to parse
// under s.mu.
func (s *streamed) start(out func() (io.ReadCloser, error), parse func(line string)) {
	s.t.Helper()
	var err error
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		s.t.Fatal(err)
	}
	r, err := out()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.exited = make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			s.mu.Lock()
			parse(sc.Text())
			s.mu.Unlock()
		}
		s.exited <- s.cmd.Wait()
	}()
	s.t.Cleanup(func() { s.cmd.Process.Kill() })
}

// startKafkajsProducer runs failover.js's producer against brokers until
// finish.
func startKafkajsProducer(t *testing.T, ctx context.Context, brokers []string, topic string) *streamed {
	t.Helper()
	node, dir := requireKafkajs(t)
	cmd := exec.CommandContext(ctx, node, "failover.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "MODE=produce", "FERRY_BROKERS="+strings.Join(brokers, ","), "TOPIC="+topic)
	var errOut syncBuffer // the process may still write while a cleanup reads it
	cmd.Stderr = &errOut
	s := &streamed{t: t, name: "kafkajs producer", cmd: cmd}
	s.start(cmd.StdoutPipe, func(line string) {
		var l struct {
			delivered
			Fail       []int  `json:"fail"`
			Unreported []int  `json:"unreported"`
			Err        string `json:"err"`
		}
		l.Seq = -1
		switch {
		case json.Unmarshal([]byte(line), &l) != nil:
			s.notes = append(s.notes, line)
		case l.Fail != nil || l.Unreported != nil:
			// Neither acknowledged: each may be absent (or present once).
			s.failed = append(s.failed, l.Fail...)
			s.failed = append(s.failed, l.Unreported...)
			s.notes = append(s.notes, line)
		case l.Seq >= 0:
			s.acks = append(s.acks, l.delivered)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kafkajs producer stderr:\n%s", errOut.String())
		}
	})
	return s
}

// seen is one record a consumer read.
type seen struct {
	P int32 `json:"p"`
	O int64 `json:"o"`
	V int   `json:"v"`
}

// kafkajsConsume runs failover.js's consumer in group until it has read
// every partition up to ends, and returns what it read.
func kafkajsConsume(t *testing.T, ctx context.Context, brokers []string, topic, group string, ends map[int32]int64) []seen {
	t.Helper()
	node, dir := requireKafkajs(t)
	endsJSON, _ := json.Marshal(ends)
	cctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, node, "failover.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "MODE=consume", "FERRY_BROKERS="+strings.Join(brokers, ","), "TOPIC="+topic,
		"GROUP="+group, "ENDS="+string(endsJSON))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("kafkajs consumer in %s: %v\nstderr:\n%s", group, err, errOut.String())
	}
	var got []seen
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var s seen
		if json.Unmarshal(sc.Bytes(), &s) == nil {
			got = append(got, s)
		}
	}
	return got
}

// parseSeen is one line of kcat -C's `-f '%p %o %s\n'`: partition,
// offset, value.
func parseSeen(line string) (seen, error) {
	var r seen
	_, err := fmt.Sscanf(line, "%d %d %d", &r.P, &r.O, &r.V)
	return r, err
}

// parseSeenLines is every line of the output of a kcat -C that ran to its
// end (`-e`), failing on a line that is not a record.
func parseSeenLines(t *testing.T, what string, out []byte) []seen {
	t.Helper()
	var got []seen
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		r, err := parseSeen(line)
		if err != nil {
			t.Fatalf("%s: line %q: %v", what, line, err)
		}
		got = append(got, r)
	}
	return got
}

// checkDelivered is what a client read back against what it was told:
// every acknowledged record at its offset, no value twice, values rising
// with offsets in each partition, nothing read that was never sent.
func checkDelivered(acks []delivered, failed []int, read []seen) []string {
	var problems []string
	at := map[int32]map[int64]int{}
	where := map[int][]string{}
	for _, r := range read {
		if at[r.P] == nil {
			at[r.P] = map[int64]int{}
		}
		if v, dup := at[r.P][r.O]; dup && v != r.V {
			problems = append(problems, fmt.Sprintf("partition %d offset %d read as %d and as %d", r.P, r.O, v, r.V))
		}
		if _, dup := at[r.P][r.O]; !dup {
			at[r.P][r.O] = r.V
			where[r.V] = append(where[r.V], fmt.Sprintf("%d@%d", r.P, r.O))
		}
	}
	sent := map[int]bool{}
	for _, a := range acks {
		sent[a.Seq] = true
		if v, ok := at[a.P][a.O]; !ok {
			problems = append(problems, fmt.Sprintf("acknowledged %d at %d@%d: missing", a.Seq, a.P, a.O))
		} else if v != a.Seq {
			problems = append(problems, fmt.Sprintf("acknowledged %d at %d@%d: %d is there", a.Seq, a.P, a.O, v))
		}
	}
	for _, f := range failed {
		sent[f] = true
	}
	for v, places := range where {
		if len(places) > 1 {
			problems = append(problems, fmt.Sprintf("%d read %d times: %v", v, len(places), places))
		}
		if !sent[v] {
			problems = append(problems, fmt.Sprintf("%d read at %v, never sent (or sent after the client was stopped)", v, places))
		}
	}
	for p, offs := range at {
		keys := make([]int64, 0, len(offs))
		for o := range offs {
			keys = append(keys, o)
		}
		slices.Sort(keys)
		for i := 1; i < len(keys); i++ {
			if offs[keys[i]] <= offs[keys[i-1]] {
				problems = append(problems, fmt.Sprintf("partition %d out of order: %d at %d after %d at %d", p, offs[keys[i]], keys[i], offs[keys[i-1]], keys[i-1]))
			}
		}
	}
	slices.Sort(problems)
	return problems
}

// clusterEnds are topic's high watermarks (retried while leaders move).
func clusterEnds(t *testing.T, ctx context.Context, addrs []string, topic string) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out := map[int32]int64{}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
		if err == nil {
			err = ends.Error()
		}
		if err == nil {
			ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("end offsets of %s: %v", topic, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestKafkajsThroughLeaderKill: kafkajs' idempotent producer (acks -1,
// its default retries) sends numbered records to a 3-partition RF 3 topic
// while the leader of partition 0 is killed -9 and restarted; a kafkajs
// consumer group then reads everything: each acknowledged record once, at
// the offset kafkajs reported, in order. Then the group's coordinator (the
// leader of its __consumer_offsets partition) is killed -9 and a new
// consumer in the group resumes from the committed offsets, not from the
// start.
func TestKafkajsThroughLeaderKill(t *testing.T) {
	requireKafkajs(t)
	c, ctx := rf3Cluster(t)
	const topic, group = "kjs", "kjs-readers"
	createRF3(t, ctx, c, topic, 3)

	prod := startKafkajsProducer(t, ctx, c.kafka, topic)
	prod.awaitAcks(300, 30*time.Second)
	md, err := c.metadata(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	victim := int(md[0].Leader - 1)
	c.kill9(victim)
	t.Logf("killed node %d, leader of %s-0, after %d acknowledgements", victim+1, topic, prod.ackCount())
	prod.awaitAcks(300, 30*time.Second)
	c.start(victim)
	c.awaitInSync(ctx, topic)
	prod.awaitAcks(300, 30*time.Second)
	prod.finish(30 * time.Second)

	ends := clusterEnds(t, ctx, c.kafkaAddrs(), topic)
	read := kafkajsConsume(t, ctx, c.kafkaAddrs(), topic, group, ends)
	t.Logf("kafkajs: %d acknowledged, %d failed, %d read back up to %v", len(prod.acks), len(prod.failed), len(read), ends)
	failOn(t, checkDelivered(prod.acks, prod.failed, read))

	// kafkajs committed where it stopped reading: the end of each
	// partition.
	killCoordinatorOfCommitted(t, ctx, c, group, topic, ends)

	// More records, so that resuming and starting over differ in what is
	// read first, then a new member of the group. Uncompressed: kafkajs
	// has no snappy codec (kgo's default) and its consumer, failing to
	// decode, would stop without a word.
	acks := produceNumbered(t, ctx, c.kafkaAddrs(), topic, 3, 1_000_000, 1_000_030, kgo.ProducerBatchCompression(kgo.NoCompression()))
	ends2 := clusterEnds(t, ctx, c.kafkaAddrs(), topic)
	resumed := kafkajsConsume(t, ctx, c.kafkaAddrs(), topic, group, ends2)
	first := map[int32]int64{}
	for _, r := range resumed {
		if o, ok := first[r.P]; !ok || r.O < o {
			first[r.P] = r.O
		}
	}
	for p, end := range ends {
		if first[p] != end {
			t.Errorf("the new member of %s started %s-%d at %d, want the committed %d (read %d records)", group, topic, p, first[p], end, len(resumed))
		}
	}
	failOn(t, checkDelivered(acks, nil, resumed))
}

// kcatDelivered and kcatFailed are the delivery reports of kcat -vvv (librdkafka's dr_msg_cb):
// per partition in the order the messages were produced.
var (
	kcatDelivered = regexp.MustCompile(`^% Message delivered to partition (\d+) \(offset (\d+)\)`)
	kcatFailed    = regexp.MustCompile(`^% Delivery failed for message: (.*)`)
)

// kcatArgs are the flags of every kcat run: the brokers, and a socket
// timeout shorter than librdkafka's 60 s.
func kcatArgs(brokers []string, args ...string) []string {
	return append([]string{"-b", strings.Join(brokers, ","), "-X", "socket.timeout.ms=10000"}, args...)
}

// startKcatProducer runs `kcat -P` with librdkafka's idempotent producer
// (acks=all) into one partition of topic, fed one numbered line every
// 2 ms until finish. The nth delivery report is the record numbered n: with
// idempotence, librdkafka reports a partition's messages in order.
func startKcatProducer(t *testing.T, ctx context.Context, kcat string, brokers []string, topic string, partition int32) *streamed {
	t.Helper()
	cmd := exec.CommandContext(ctx, kcat, kcatArgs(brokers, "-P", "-t", topic, "-p", strconv.Itoa(int(partition)),
		"-X", "acks=all", "-X", "enable.idempotence=true", "-vvv")...)
	s := &streamed{t: t, name: "kcat -P", cmd: cmd, stop: make(chan struct{}), fed: make(chan struct{})}
	s.start(cmd.StderrPipe, func(line string) {
		n := len(s.acks) + len(s.failed)
		if m := kcatDelivered.FindStringSubmatch(line); m != nil {
			p, _ := strconv.Atoi(m[1])
			o, _ := strconv.ParseInt(m[2], 10, 64)
			s.acks = append(s.acks, delivered{n, int32(p), o})
		} else if kcatFailed.MatchString(line) {
			s.failed = append(s.failed, n)
			s.notes = append(s.notes, line)
		} else {
			s.notes = append(s.notes, line)
		}
	})
	go func() {
		defer close(s.fed)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for seq := 0; ; seq++ {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			if _, err := fmt.Fprintf(s.stdin, "%d\n", seq); err != nil {
				return
			}
		}
	}()
	return s
}

// startKcatTail runs `kcat -C` of one partition from the beginning, no
// group, until the test ends, collecting what it reads.
func startKcatTail(t *testing.T, ctx context.Context, kcat string, brokers []string, topic string, partition int32) *streamed {
	return startKcatTailAt(t, ctx, kcat, brokers, topic, partition, "beginning", nil)
}

// startKcatTailAt is startKcatTail from offset ("beginning", "end", a
// number), its stderr's lines written to errOut (nil: kept for a failed
// test's log).
func startKcatTailAt(t *testing.T, ctx context.Context, kcat string, brokers []string, topic string, partition int32, offset string, errOut io.Writer) *streamed {
	t.Helper()
	cmd := exec.CommandContext(ctx, kcat, kcatArgs(brokers, "-C", "-t", topic, "-p", strconv.Itoa(int(partition)),
		"-o", offset, "-u", "-f", `%p %o %s\n`)...)
	var errBuf syncBuffer // the process may still write while a cleanup reads it
	if errOut == nil {
		errOut = &errBuf
	}
	cmd.Stderr = errOut
	s := &streamed{t: t, name: "kcat -C", cmd: cmd}
	s.start(cmd.StdoutPipe, func(line string) {
		r, err := parseSeen(line)
		if err != nil {
			s.notes = append(s.notes, line)
			return
		}
		s.read = append(s.read, r)
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kcat -C stderr:\n%s", errBuf.String())
		}
	})
	return s
}

// readUpTo waits until the consumer has read offset end-1.
func (s *streamed) readUpTo(end int64, within time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		s.mu.Lock()
		done := end == 0 || slices.ContainsFunc(s.read, func(r seen) bool { return r.O == end-1 })
		n := len(s.read)
		s.mu.Unlock()
		if done {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: read %d records, not up to %d within %s\n%s", s.name, n, end, within, s.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kcatTopic is a topic as `kcat -L -J` shows it.
type kcatTopic struct {
	Topic      string `json:"topic"`
	Partitions []struct {
		Partition int32 `json:"partition"`
		Leader    int32 `json:"leader"`
		Replicas  []struct {
			ID int32 `json:"id"`
		} `json:"replicas"`
		ISRs []struct {
			ID int32 `json:"id"`
		} `json:"isrs"`
	} `json:"partitions"`
}

// kcatPartition is one partition of kcatTopic, its replicas and ISR as
// sorted ids.
type kcatPartition struct {
	Leader        int32
	Replicas, ISR []int32
}

// kcatMetadata is topic's partitions as `kcat -L -J` through addr shows
// them.
func kcatMetadata(t *testing.T, ctx context.Context, kcat, addr, topic string) (map[int32]kcatPartition, error) {
	t.Helper()
	out, err := exec.CommandContext(ctx, kcat, kcatArgs([]string{addr}, "-L", "-J", "-t", topic)...).Output()
	if err != nil {
		return nil, fmt.Errorf("kcat -L: %w", err)
	}
	var md struct {
		Topics []kcatTopic `json:"topics"`
	}
	if err := json.Unmarshal(out, &md); err != nil {
		return nil, fmt.Errorf("kcat -L -J: %w\n%s", err, out)
	}
	got := map[int32]kcatPartition{}
	for _, tp := range md.Topics {
		if tp.Topic != topic {
			continue
		}
		for _, p := range tp.Partitions {
			kp := kcatPartition{Leader: p.Leader}
			for _, r := range p.Replicas {
				kp.Replicas = append(kp.Replicas, r.ID)
			}
			for _, r := range p.ISRs {
				kp.ISR = append(kp.ISR, r.ID)
			}
			slices.Sort(kp.Replicas)
			slices.Sort(kp.ISR)
			got[p.Partition] = kp
		}
	}
	return got, nil
}

// awaitKcatMetadata polls `kcat -L` through addr until cond holds of
// topic's partitions, and returns them.
func awaitKcatMetadata(t *testing.T, ctx context.Context, c *jepsenCluster, kcat, addr, topic, what string, cond func(map[int32]kcatPartition) bool) map[int32]kcatPartition {
	t.Helper()
	var md map[int32]kcatPartition
	var err error
	done := false
	defer func() {
		if !done { // waitForWithin failed the test: what kcat showed last
			t.Logf("kcat -L through %s last showed %v (error %v)", addr, md, err)
		}
	}()
	c.waitForWithin(30*time.Second, fmt.Sprintf("kcat -L through %s to show %s %s", addr, topic, what), func() bool {
		md, err = kcatMetadata(t, ctx, kcat, addr, topic)
		return err == nil && cond(md)
	})
	done = true
	return md
}

var kcatOffset = regexp.MustCompile(`\[(\d+)\] offset (-?\d+)`)

// kcatEnd is `kcat -Q` of the latest offset (ListOffsets -1) of one
// partition, asked through addr.
func kcatEnd(t *testing.T, ctx context.Context, kcat, addr, topic string, partition int32) int64 {
	t.Helper()
	return kcatOffsetForTime(t, ctx, kcat, addr, topic, partition, -1)
}

// kcatOffsetForTime is `kcat -Q` of the first offset at or after
// timestamp ms (ListOffsets by time; -1 asks for the latest), -1 for none.
func kcatOffsetForTime(t *testing.T, ctx context.Context, kcat, addr, topic string, partition int32, ms int64) int64 {
	t.Helper()
	o, err := kcatQuery(ctx, kcat, addr, topic, partition, ms)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// kcatQuery is kcatOffsetForTime's `kcat -Q`, its failure an error.
func kcatQuery(ctx context.Context, kcat, addr, topic string, partition int32, ms int64) (int64, error) {
	out, err := exec.CommandContext(ctx, kcat, kcatArgs([]string{addr}, "-Q", "-t", fmt.Sprintf("%s:%d:%d", topic, partition, ms))...).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("kcat -Q through %s: %w\n%s", addr, err, out)
	}
	m := kcatOffset.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("kcat -Q through %s: no offset in %q", addr, out)
	}
	return strconv.ParseInt(string(m[2]), 10, 64)
}

// kcatRead is `kcat -C -e` of one partition from the beginning through
// addr: everything up to the end a fetch shows it (the high watermark),
// with librdkafka's default fetch.wait.max.ms.
func kcatRead(t *testing.T, ctx context.Context, kcat, addr, topic string, partition int32) []seen {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, kcat, kcatArgs([]string{addr}, "-C", "-t", topic, "-p", strconv.Itoa(int(partition)),
		"-o", "beginning", "-e", "-q", "-f", `%p %o %s\n`)...).Output()
	if err != nil {
		t.Fatalf("kcat -C through %s: %v\n%s", addr, err, out)
	}
	return parseSeenLines(t, "kcat -C", out)
}

// TestKcatThroughLeaderKill: librdkafka's idempotent producer (kcat -P,
// acks=all) into a partition of an RF 3 topic while its leader is killed
// -9 and restarted. kcat -L shows every replica and ISR, then the new
// leader and the shrunk ISR, then the ISR whole again; kcat -Q gives the
// high watermark (librdkafka asks the leader whatever -b names), and a
// ListOffsets sent to each node itself is answered by the leader alone,
// the followers answering NOT_LEADER_OR_FOLLOWER; kcat -C reads every
// record a delivery report acknowledged, once, at its offset, and nothing
// else.
func TestKcatThroughLeaderKill(t *testing.T) {
	kcat := requireTool(t, "kcat")
	c, ctx := rf3Cluster(t)
	const topic = "kc"
	createRF3(t, ctx, c, topic, 3)
	full := func(md map[int32]kcatPartition) bool {
		for _, p := range md {
			if p.Leader <= 0 || !slices.Equal(p.Replicas, []int32{1, 2, 3}) || !slices.Equal(p.ISR, []int32{1, 2, 3}) {
				return false
			}
		}
		return len(md) == 3
	}
	md := awaitKcatMetadata(t, ctx, c, kcat, c.kafka[0], topic, "three partitions, replicas and ISR 1,2,3", full)

	prod := startKcatProducer(t, ctx, kcat, c.kafka, topic, 0)
	tail := startKcatTail(t, ctx, kcat, c.kafka, topic, 0)
	prod.awaitAcks(300, 30*time.Second)
	victim := md[0].Leader
	c.kill9(int(victim - 1))
	t.Logf("killed node %d, leader of %s-0, after %d delivery reports", victim, topic, prod.ackCount())
	prod.awaitAcks(300, 30*time.Second)
	survivor := c.kafka[int(victim)%3]
	awaitKcatMetadata(t, ctx, c, kcat, survivor, topic, fmt.Sprintf("led elsewhere, without %d in the ISR", victim), func(md map[int32]kcatPartition) bool {
		for _, p := range md {
			if p.Leader <= 0 || p.Leader == victim || slices.Contains(p.ISR, victim) || len(p.ISR) != 2 || len(p.Replicas) != 3 {
				return false
			}
		}
		return len(md) == 3
	})
	c.start(int(victim - 1))
	awaitKcatMetadata(t, ctx, c, kcat, survivor, topic, "in sync again", full)
	prod.awaitAcks(300, 30*time.Second)
	prod.finish(30 * time.Second)

	end := clusterEnds(t, ctx, c.kafkaAddrs(), topic)[0]
	if got := kcatEnd(t, ctx, kcat, survivor, topic, 0); got != end {
		t.Errorf("kcat -Q: %s-0 ends at %d, want the high watermark %d", topic, got, end)
	}
	now0, err := c.metadata(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	failOn(t, latestFromEveryNode(t, ctx, c.kafka, topic, 0, now0[0].Leader, end))
	read := kcatRead(t, ctx, kcat, survivor, topic, 0)
	t.Logf("kcat: %d acknowledged, %d failed, %d read back up to %d", len(prod.acks), len(prod.failed), len(read), end)
	if int64(len(read)) != end {
		t.Errorf("kcat -C -e read %d records, want the %d below the high watermark", len(read), end)
	}
	failOn(t, checkDelivered(prod.acks, prod.failed, read))

	// The consumer that read through the failover (librdkafka validates
	// its position with OffsetForLeaderEpoch after a leader change): each
	// offset once, each as it is now (nothing it saw was cut), up to the
	// end.
	tail.readUpTo(end, 30*time.Second)
	tail.mu.Lock()
	observed := slices.Clone(tail.read)
	tail.mu.Unlock()
	now := map[int64]int{}
	for _, r := range read {
		now[r.O] = r.V
	}
	var problems []string
	seenAt := map[int64]bool{}
	for _, r := range observed {
		if seenAt[r.O] {
			problems = append(problems, fmt.Sprintf("kcat -C read offset %d twice", r.O))
		}
		seenAt[r.O] = true
		if v, ok := now[r.O]; !ok || v != r.V {
			problems = append(problems, fmt.Sprintf("kcat -C read %d at offset %d, which now holds %d (present: %v)", r.V, r.O, v, ok))
		}
	}
	if int64(len(seenAt)) != end {
		problems = append(problems, fmt.Sprintf("kcat -C read %d distinct offsets through the failover, want %d", len(seenAt), end))
	}
	failOn(t, problems)
}

// latestFromEveryNode sends ListOffsets (latest, -1) for topic's
// partition to each node itself, not routed to its leader as a client
// would: the leader (node id leader; addrs[i] is node i+1) must answer
// end, every other node NOT_LEADER_OR_FOLLOWER.
func latestFromEveryNode(t *testing.T, ctx context.Context, addrs []string, topic string, partition, leader int32, end int64) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var problems []string
	for i := range addrs {
		id := int32(i + 1)
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition = partition
		rp.Timestamp = -1
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		rt.Partitions = append(rt.Partitions, rp)
		req := kmsg.NewPtrListOffsetsRequest()
		req.Topics = append(req.Topics, rt)
		kresp, err := cl.Broker(int(id)).Request(ctx, req)
		if err != nil {
			problems = append(problems, fmt.Sprintf("ListOffsets to node %d: %v", id, err))
			continue
		}
		resp := kresp.(*kmsg.ListOffsetsResponse)
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			problems = append(problems, fmt.Sprintf("ListOffsets to node %d: answered %+v", id, resp.Topics))
			continue
		}
		got := resp.Topics[0].Partitions[0]
		switch {
		case id == leader && (got.ErrorCode != 0 || got.Offset != end):
			problems = append(problems, fmt.Sprintf("ListOffsets latest of %s-%d to node %d, its leader: offset %d, error %v; want the high watermark %d",
				topic, partition, id, got.Offset, kerr.ErrorForCode(got.ErrorCode), end))
		case id != leader && got.ErrorCode != kerr.NotLeaderForPartition.Code:
			problems = append(problems, fmt.Sprintf("ListOffsets latest of %s-%d to node %d, a follower: offset %d, error %v; want NOT_LEADER_OR_FOLLOWER",
				topic, partition, id, got.Offset, kerr.ErrorForCode(got.ErrorCode)))
		}
	}
	return problems
}

// kcatProduce runs `kcat -P` of lines into one partition through addr,
// with librdkafka config props, and returns its delivery reports, each
// with its message's index in lines as Seq (librdkafka reports one
// partition's messages in the order they were produced).
func kcatProduce(t *testing.T, ctx context.Context, kcat, addr, topic string, partition int32, lines []string, props ...string) []delivered {
	t.Helper()
	args := []string{"-P", "-t", topic, "-p", strconv.Itoa(int(partition)), "-vvv"}
	for _, p := range props {
		args = append(args, "-X", p)
	}
	cmd := exec.CommandContext(ctx, kcat, kcatArgs([]string{addr}, args...)...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kcat -P %v: %v\n%s", props, err, out)
	}
	var got []delivered
	for _, line := range strings.Split(string(out), "\n") {
		if m := kcatDelivered.FindStringSubmatch(line); m != nil {
			o, _ := strconv.ParseInt(m[2], 10, 64)
			got = append(got, delivered{len(got), partition, o})
		} else if kcatFailed.MatchString(line) {
			t.Fatalf("kcat -P %v: %s\n%s", props, line, out)
		}
	}
	if len(got) != len(lines) {
		t.Fatalf("kcat -P %v: %d delivery reports for %d lines\n%s", props, len(got), len(lines), out)
	}
	return got
}

// TestKcatReadsOnlyBelowHighWatermark: with both followers of a partition
// paused (SIGSTOP), records its leader takes with acks=1 are in its log
// but not committed: kcat -Q answers the high watermark, not the log end,
// and kcat -C -e (librdkafka's default fetch.wait.max.ms) reads only below
// it; once the followers resume, both show the rest.
func TestKcatReadsOnlyBelowHighWatermark(t *testing.T) {
	kcat := requireTool(t, "kcat")
	c, ctx := rf3Cluster(t)
	const topic = "hw"
	createRF3(t, ctx, c, topic, 1)
	md, err := c.metadata(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	leader := int(md[0].Leader - 1)
	addr := c.kafka[leader]
	nums := func(from, to int) []string {
		var out []string
		for i := from; i < to; i++ {
			out = append(out, strconv.Itoa(i))
		}
		return out
	}
	kcatProduce(t, ctx, kcat, addr, topic, 0, nums(0, 10), "acks=all", "enable.idempotence=true")
	if end := kcatEnd(t, ctx, kcat, addr, topic, 0); end != 10 {
		t.Fatalf("kcat -Q: %s-0 ends at %d after 10 acknowledged with acks=all", topic, end)
	}

	var followers []int
	for i := range 3 {
		if i != leader {
			followers = append(followers, i)
			c.pause(i)
		}
	}
	t.Cleanup(func() {
		for _, i := range followers {
			if c.procs[i] != nil {
				c.resume(i)
			}
		}
	})
	// acks=1: answered once the leader appended (as Kafka), the high
	// watermark still where the followers left it.
	uncommittedFrom := time.Now().UnixMilli()
	acked := kcatProduce(t, ctx, kcat, addr, topic, 0, nums(10, 15), "acks=1", "message.timeout.ms=20000")
	if acked[len(acked)-1].O != 14 {
		t.Fatalf("kcat -P acks=1: delivered at %v, want offsets 10..14", acked)
	}
	if end := kcatEnd(t, ctx, kcat, addr, topic, 0); end != 10 {
		t.Errorf("kcat -Q with the followers paused: %s-0 ends at %d, want the high watermark 10 (the log ends at 15)", topic, end)
	}
	// A lookup by time finds only committed records (Kafka's
	// lastFetchableOffset): none is at or after uncommittedFrom yet.
	if o := kcatOffsetForTime(t, ctx, kcat, addr, topic, 0, uncommittedFrom); o != -1 {
		t.Errorf("kcat -Q by a time only uncommitted records reach: offset %d, want -1 (none committed)", o)
	}
	read := kcatRead(t, ctx, kcat, addr, topic, 0)
	if len(read) != 10 || read[9].O != 9 {
		t.Errorf("kcat -C -e with the followers paused read %v, want offsets 0..9", read)
	}

	for _, i := range followers {
		c.resume(i)
	}
	c.waitForWithin(30*time.Second, fmt.Sprintf("kcat -Q to show %s-0 ending at 15 once the followers resumed", topic), func() bool {
		end, err := kcatQuery(ctx, kcat, addr, topic, 0, -1)
		return err == nil && end == 15
	})
	if o := kcatOffsetForTime(t, ctx, kcat, addr, topic, 0, uncommittedFrom); o != 10 {
		t.Errorf("kcat -Q by time once committed: offset %d, want 10", o)
	}
	read = kcatRead(t, ctx, kcat, addr, topic, 0)
	var want []delivered
	for i := range 15 {
		want = append(want, delivered{i, 0, int64(i)})
	}
	failOn(t, checkDelivered(want, nil, read))
	if len(read) != 15 {
		t.Errorf("kcat -C -e read %d records once committed, want 15", len(read))
	}
}

// kcatGroupRead is `kcat -G group topic -e`: librdkafka's balanced
// consumer reading from the group's committed offsets (the earliest where
// there are none) to the end of every partition, then closing, which
// commits what it read.
func kcatGroupRead(t *testing.T, ctx context.Context, kcat string, brokers []string, group, topic string) []seen {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, kcat, kcatArgs(brokers, "-G", group, "-X", "auto.offset.reset=earliest", "-e", "-q",
		"-f", `%p %o %s\n`, topic)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat -G %s: %v\n%s", group, err, errOut.String())
	}
	return parseSeenLines(t, "kcat -G", out.Bytes())
}

// produceNumbered produces values from..to-1 round-robin over partitions
// with acks=all (and the client options opts) and returns where each
// went.
func produceNumbered(t *testing.T, ctx context.Context, addrs []string, topic string, partitions, from, to int, opts ...kgo.Opt) []delivered {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for seq := from; seq < to; seq++ {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(seq % partitions), Value: []byte(strconv.Itoa(seq))})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing %d..%d: %v", from, to-1, err)
	}
	var out []delivered
	for i, r := range recs {
		out = append(out, delivered{from + i, r.Partition, r.Offset})
	}
	return out
}

// TestKcatGroupThroughCoordinatorKill: librdkafka's consumer group (kcat
// -G) reads a 3-partition RF 3 topic to its end and commits on close; the
// group's coordinator is killed -9; a new kcat -G in the group reads only
// what came after, from the committed offsets, on the new coordinator.
func TestKcatGroupThroughCoordinatorKill(t *testing.T) {
	kcat := requireTool(t, "kcat")
	c, ctx := rf3Cluster(t)
	const topic, group = "kg", "kg-readers"
	createRF3(t, ctx, c, topic, 3)
	acks := produceNumbered(t, ctx, c.kafka, topic, 3, 0, 300)
	failOn(t, checkDelivered(acks, nil, kcatGroupRead(t, ctx, kcat, c.kafka, group, topic)))

	killCoordinatorOfCommitted(t, ctx, c, group, topic, map[int32]int64{0: 100, 1: 100, 2: 100})

	more := produceNumbered(t, ctx, c.kafkaAddrs(), topic, 3, 300, 330)
	resumed := kcatGroupRead(t, ctx, kcat, c.kafkaAddrs(), group, topic)
	if len(resumed) != 30 {
		t.Errorf("the new kcat -G in %s read %d records, want the 30 after its committed offsets", group, len(resumed))
	}
	failOn(t, checkDelivered(more, nil, resumed))
}

// killCoordinatorOfCommitted checks that group committed ends[p] for
// each partition p of topic, then kills -9 the group's coordinator.
func killCoordinatorOfCommitted(t *testing.T, ctx context.Context, c *jepsenCluster, group, topic string, ends map[int32]int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.kafkaAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	committed, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		err = committed.Error()
	}
	if err != nil {
		t.Fatalf("offsets of %s: %v", group, err)
	}
	for p, end := range ends {
		if o, ok := committed.Lookup(topic, p); !ok || o.At != end {
			t.Fatalf("%s committed %+v for %s-%d, want the end %d", group, o, topic, p, end)
		}
	}
	coord := adm.FindGroupCoordinators(ctx, group)[group]
	if coord.Err != nil || coord.NodeID < 1 || int(coord.NodeID) > len(c.procs) {
		t.Fatalf("coordinator of %s: %+v", group, coord)
	}
	c.kill9(int(coord.NodeID - 1))
	t.Logf("killed node %d, coordinator of %s", coord.NodeID, group)
}

// syncBuffer is a bytes.Buffer written by a process and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// killLeader kills -9 the leader of topic's partition 0, waits for
// another to lead it at a newer epoch, restarts the node and waits for
// every replica in sync.
func killLeader(t *testing.T, ctx context.Context, c *jepsenCluster, topic string) {
	t.Helper()
	md, err := c.metadata(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	old := md[0]
	c.kill9(int(old.Leader - 1))
	c.waitFor("a new leader of "+topic+"-0", func() bool {
		md, err := c.metadata(ctx, topic)
		return err == nil && md[0].Leader > 0 && md[0].Leader != old.Leader && md[0].Epoch > old.Epoch
	})
	c.start(int(old.Leader - 1))
	c.awaitInSync(ctx, topic)
}

// TestKcatTailFromEndThroughLeaderKills: a librdkafka consumer that
// starts at the end of a partition (ListOffsets latest, on a partition
// whose leader changed once) reads, through a second leader change,
// exactly what is produced after it started, and reports no truncation.
// (librdkafka from 2.1 validates its position after a leader change with
// OffsetForLeaderEpoch for the epoch ListOffsets gave it, KIP-320; the
// epochs ListOffsets answers are checked in ingest/kafka's
// TestListOffsetsOfReplicatedPartition.)
func TestKcatTailFromEndThroughLeaderKills(t *testing.T) {
	kcat := requireTool(t, "kcat")
	c, ctx := rf3Cluster(t)
	const topic = "ep"
	createRF3(t, ctx, c, topic, 1)
	produceNumbered(t, ctx, c.kafka, topic, 1, 0, 100)
	killLeader(t, ctx, c, topic) // epoch 1
	produceNumbered(t, ctx, c.kafka, topic, 1, 100, 200)

	var errOut syncBuffer
	tail := startKcatTailAt(t, ctx, kcat, c.kafka, topic, 0, "end", &errOut)
	c.waitFor("kcat -C -o end at the end", func() bool { return strings.Contains(errOut.String(), "Reached end of topic") })
	killLeader(t, ctx, c, topic) // epoch 2: kcat validates its position
	acks := produceNumbered(t, ctx, c.kafka, topic, 1, 200, 300)
	tail.readUpTo(300, 30*time.Second)
	tail.mu.Lock()
	read := slices.Clone(tail.read)
	tail.mu.Unlock()
	problems := checkDelivered(acks, nil, read)
	if len(read) != 100 {
		problems = append(problems, fmt.Sprintf("kcat -C -o end read %d records, want the 100 produced after it started", len(read)))
	}
	if strings.Contains(errOut.String(), "truncat") {
		problems = append(problems, "kcat -C saw a truncation:\n"+errOut.String())
	}
	failOn(t, problems)
}
