package kafka

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	flog "ferry/log"
)

// sarama (github.com/IBM/sarama) is the most used Go Kafka client after
// franz-go, and one no one on this team wrote: these tests point it at
// ferry the way its users' code would, changing nothing but the address.

func init() {
	// sarama logs to a package variable; set it before any test runs so
	// writing it cannot race with a client.
	if os.Getenv("FERRY_SARAMA_LOG") != "" {
		sarama.Logger = log.New(os.Stderr, "[sarama] ", log.Lmicroseconds)
	}
}

// saramaVersions are the Kafka versions the tests configure sarama with.
// sarama sends ApiVersions and uses, for each request, the highest version
// both its Config.Version and the broker's advertised range allow, so the
// setting only caps what it asks for:
//   - V0_11_0_0, the oldest sarama can be idempotent with, asks for
//     ferry's minimum versions (Produce 3, Fetch 4 are Kafka 0.11's);
//   - DefaultVersion (2.8) is what code that does not set it gets;
//   - V3_0_0_0 asks for about what ferry advertises (its maximum versions
//     are mostly Kafka 2.8 to 3.1's): the setting to recommend;
//   - MaxVersion asks for more than ferry has and is clamped to its ranges.
var saramaVersions = []sarama.KafkaVersion{sarama.V0_11_0_0, sarama.DefaultVersion, sarama.V3_0_0_0, sarama.MaxVersion}

func saramaConfig(v sarama.KafkaVersion) *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = v
	cfg.ClientID = "ferry-sarama-test"
	cfg.Metadata.Retry.Backoff = 50 * time.Millisecond
	return cfg
}

// waiter is a condition the tests wait on without sleeping: whoever
// changes the state under mu calls changedLocked, which wakes every wait.
type waiter struct {
	mu   sync.Mutex
	wake chan struct{}
}

func (w *waiter) changedLocked() {
	if w.wake != nil {
		close(w.wake)
	}
	w.wake = make(chan struct{})
}

// wait returns once cond (called with mu held) is true, and fails the test
// with what(), also called with mu held, at the deadline.
func (w *waiter) wait(t *testing.T, d time.Duration, cond func() bool, what func() string) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		w.mu.Lock()
		if cond() {
			w.mu.Unlock()
			return
		}
		if w.wake == nil {
			w.wake = make(chan struct{})
		}
		ch := w.wake
		w.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			w.mu.Lock()
			msg := what()
			w.mu.Unlock()
			t.Fatalf("after %v: %s", d, msg)
		}
	}
}

// TestSaramaProducer: sarama's SyncProducer, plain (acks=all) and
// idempotent, sends keyed records with headers. Each must be stored at the
// partition and offset sarama reports, with its key, value and headers, as
// an independent client (franz-go) reads them back.
func TestSaramaProducer(t *testing.T) {
	for _, v := range saramaVersions {
		for _, idempotent := range []bool{false, true} {
			name := fmt.Sprintf("%s/idempotent=%v", v, idempotent)
			t.Run(name, func(t *testing.T) { testSaramaProducer(t, v, idempotent) })
		}
	}
}

func testSaramaProducer(t *testing.T, v sarama.KafkaVersion, idempotent bool) {
	b := startBroker(t, nil)
	const topic, parts = "sarama-events", 4
	if _, err := b.log.CreateTopic(topic, parts, nil); err != nil {
		t.Fatal(err)
	}
	cfg := saramaConfig(v)
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	if idempotent {
		cfg.Producer.Idempotent = true
		cfg.Net.MaxOpenRequests = 1
	}
	// sarama's default partitioner hashes keys with FNV-1a, not Kafka's
	// murmur2: a sarama producer left at its default puts a key on another
	// partition than the Java client, franz-go, librdkafka's
	// murmur2_random and ferry's own MQTT ingest do. sarama's
	// NewMurmur2Partitioner is Kafka's; it is what a sarama user sharing
	// topics with other clients configures, and what is checked here
	// against ferry's partitioner (log/partitioner.go).
	cfg.Producer.Partitioner = sarama.NewMurmur2Partitioner
	p, err := sarama.NewSyncProducer([]string{b.addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	type sent struct {
		key, value string
		headers    []sarama.RecordHeader
	}
	at := map[string]sent{} // "partition/offset" -> what was sent there
	const n = 120
	send := func(i int) *sarama.ProducerMessage {
		key := fmt.Sprintf("device-%d", i%13)
		return &sarama.ProducerMessage{
			Topic: topic,
			Key:   sarama.StringEncoder(key),
			Value: sarama.StringEncoder(fmt.Sprintf(`{"n":%d}`, i)),
			Headers: []sarama.RecordHeader{
				{Key: []byte("trace-id"), Value: []byte(fmt.Sprintf("t%d", i))},
				{Key: []byte("empty"), Value: []byte{}},
			},
		}
	}
	record := func(m *sarama.ProducerMessage, part int32, off int64) {
		t.Helper()
		k, _ := m.Key.Encode()
		val, _ := m.Value.Encode()
		if want := flog.PartitionForKey(k, parts); part != want {
			t.Fatalf("key %s sent to partition %d, Kafka's murmur2 partitioner says %d", k, part, want)
		}
		pk := fmt.Sprintf("%d/%d", part, off)
		if _, dup := at[pk]; dup {
			t.Fatalf("two records acknowledged at %s", pk)
		}
		at[pk] = sent{string(k), string(val), m.Headers}
	}
	// One at a time (SendMessage), then a batch (SendMessages).
	for i := 0; i < n/2; i++ {
		m := send(i)
		part, off, err := p.SendMessage(m)
		if err != nil {
			t.Fatalf("SendMessage %d: %v", i, err)
		}
		record(m, part, off)
	}
	var batch []*sarama.ProducerMessage
	for i := n / 2; i < n; i++ {
		batch = append(batch, send(i))
	}
	if err := p.SendMessages(batch); err != nil {
		t.Fatalf("SendMessages: %v", err)
	}
	for _, m := range batch {
		record(m, m.Partition, m.Offset)
	}

	// Read everything back with another client: every acknowledged
	// (partition, offset) holds what was sent there, and nothing else is
	// stored.
	recs := consume(t, b, topic, n)
	if len(recs) != n {
		t.Fatalf("%d records stored, %d acknowledged", len(recs), n)
	}
	for _, r := range recs {
		pk := fmt.Sprintf("%d/%d", r.Partition, r.Offset)
		s, ok := at[pk]
		if !ok {
			t.Fatalf("record %s (key %s) stored but never acknowledged there", pk, r.Key)
		}
		if string(r.Key) != s.key || string(r.Value) != s.value {
			t.Fatalf("at %s: stored %s=%s, sent %s=%s", pk, r.Key, r.Value, s.key, s.value)
		}
		if len(r.Headers) != len(s.headers) {
			t.Fatalf("at %s: %d headers stored, %d sent", pk, len(r.Headers), len(s.headers))
		}
		for i, h := range s.headers {
			if r.Headers[i].Key != string(h.Key) || string(r.Headers[i].Value) != string(h.Value) {
				t.Fatalf("at %s: header %d is %s=%q, sent %s=%q", pk, i, r.Headers[i].Key, r.Headers[i].Value, h.Key, h.Value)
			}
		}
		if idempotent != (r.ProducerID >= 0) {
			t.Fatalf("at %s: producer id %d from a producer with idempotent=%v", pk, r.ProducerID, idempotent)
		}
	}
}

// TestSaramaDefaultPartitionerIsNotKafkas documents why the producer test
// configures sarama.NewMurmur2Partitioner: sarama's default (FNV-1a) puts
// keys elsewhere than Kafka's partitioner, and ferry stores each record on
// the partition the client chose, as Kafka does.
func TestSaramaDefaultPartitionerIsNotKafkas(t *testing.T) {
	b := startBroker(t, nil)
	const topic, parts = "sarama-fnv", 4
	if _, err := b.log.CreateTopic(topic, parts, nil); err != nil {
		t.Fatal(err)
	}
	cfg := saramaConfig(sarama.DefaultVersion)
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	p, err := sarama.NewSyncProducer([]string{b.addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	differ := 0
	const n = 40
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("device-%d", i)
		m := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(key), Value: sarama.StringEncoder("v")}
		want, err := sarama.NewHashPartitioner(topic).Partition(m, parts)
		if err != nil {
			t.Fatal(err)
		}
		part, _, err := p.SendMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		if part != want {
			t.Fatalf("key %s on partition %d, sarama's hash partitioner picks %d", key, part, want)
		}
		if part != flog.PartitionForKey([]byte(key), parts) {
			differ++
		}
	}
	if differ == 0 {
		t.Fatal("sarama's default partitioner agreed with Kafka's on every key; the note in the producer test is wrong")
	}
	for _, r := range consume(t, b, topic, n) {
		m := &sarama.ProducerMessage{Topic: topic, Key: sarama.ByteEncoder(r.Key)}
		if want, _ := sarama.NewHashPartitioner(topic).Partition(m, parts); r.Partition != want {
			t.Fatalf("key %s stored on partition %d, sarama sent it to %d", r.Key, r.Partition, want)
		}
	}
}

// saramaGroupRun is a sarama consumer group of two members, from their
// start to their close: what they own and consumed, and a gate that keeps
// them from consuming until the test has seen the group settle with both,
// so that no record is consumed under an assignment about to be revoked
// (Kafka's at-least-once contract would let it be delivered again).
type saramaGroupRun struct {
	waiter
	topic    string
	markTail bool                      // MarkMessage also records whose value starts with "tail-"
	gate     chan struct{}             // closed: members may consume
	owned    map[string]map[int32]bool // member -> partitions whose ConsumeClaim runs
	seen     map[string][]string       // "partition/offset" -> members that consumed it
	value    map[string]string         // "partition/offset" -> value
	errs     []error
	members  []*saramaMember
}

type saramaMember struct {
	name   string
	group  sarama.ConsumerGroup
	cancel context.CancelFunc
	done   chan struct{}
}

type saramaHandler struct {
	run  *saramaGroupRun
	name string
}

func (saramaHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (saramaHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h saramaHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	r := h.run
	p := claim.Partition()
	r.mu.Lock()
	if r.owned[h.name] == nil {
		r.owned[h.name] = map[int32]bool{}
	}
	r.owned[h.name][p] = true
	r.changedLocked()
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.owned[h.name], p)
		r.changedLocked()
		r.mu.Unlock()
	}()
	// Until the gate opens, keep what is fetched unprocessed, and keep
	// reading: Messages() closing is how sarama revokes a single partition
	// (cooperative rebalancing).
	var held []*sarama.ConsumerMessage
	for gated := true; gated; {
		select {
		case <-r.gate:
			gated = false
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			held = append(held, msg)
		case <-sess.Context().Done():
			return nil
		}
	}
	for _, msg := range held {
		h.process(sess, msg)
	}
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			h.process(sess, msg)
		case <-sess.Context().Done():
			return nil
		}
	}
}

func (h saramaHandler) process(sess sarama.ConsumerGroupSession, msg *sarama.ConsumerMessage) {
	r := h.run
	pk := fmt.Sprintf("%d/%d", msg.Partition, msg.Offset)
	r.mu.Lock()
	r.seen[pk] = append(r.seen[pk], h.name)
	r.value[pk] = string(msg.Value)
	r.changedLocked()
	r.mu.Unlock()
	if r.markTail || !strings.HasPrefix(string(msg.Value), "tail-") {
		sess.MarkMessage(msg, "")
	}
}

// startSaramaGroup starts two members of group consuming topic.
// Each member has its own balance strategy, as each process would: sarama's
// sticky strategies keep state in theirs and are not safe to share.
// Static members get the instance ids ferry-sarama-0 and -1.
func startSaramaGroup(t *testing.T, b *testBroker, cfg *sarama.Config, strategy func() sarama.BalanceStrategy, group, topic string, markTail, static bool) *saramaGroupRun {
	t.Helper()
	r := &saramaGroupRun{
		topic: topic, markTail: markTail, gate: make(chan struct{}),
		owned: map[string]map[int32]bool{}, seen: map[string][]string{}, value: map[string]string{},
	}
	for i := 0; i < 2; i++ {
		mcfg := *cfg
		mcfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{strategy()}
		if static {
			mcfg.Consumer.Group.InstanceId = fmt.Sprintf("ferry-sarama-%d", i)
		}
		g, err := sarama.NewConsumerGroup([]string{b.addr}, group, &mcfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		m := &saramaMember{name: fmt.Sprintf("m%d", i), group: g, cancel: cancel, done: make(chan struct{})}
		r.members = append(r.members, m)
		go func() {
			for err := range g.Errors() {
				r.mu.Lock()
				r.errs = append(r.errs, fmt.Errorf("%s: %w", m.name, err))
				r.changedLocked()
				r.mu.Unlock()
			}
		}()
		go func() {
			defer close(m.done)
			for ctx.Err() == nil {
				if err := g.Consume(ctx, []string{topic}, saramaHandler{r, m.name}); err != nil {
					if !errors.Is(err, sarama.ErrClosedConsumerGroup) {
						r.mu.Lock()
						r.errs = append(r.errs, fmt.Errorf("%s: Consume: %w", m.name, err))
						r.changedLocked()
						r.mu.Unlock()
					}
					return
				}
			}
		}()
	}
	t.Cleanup(r.close)
	return r
}

// settle waits until the members run claims on disjoint, non-empty sets
// of partitions that cover the topic, then opens the gate.
func (r *saramaGroupRun) settle(t *testing.T, parts int32) {
	t.Helper()
	r.wait(t, 30*time.Second, func() bool {
		if len(r.errs) > 0 {
			return true
		}
		covered := map[int32]bool{}
		for _, m := range r.members {
			if len(r.owned[m.name]) == 0 {
				return false
			}
			for p := range r.owned[m.name] {
				if covered[p] {
					return false
				}
				covered[p] = true
			}
		}
		return int32(len(covered)) == parts
	}, func() string { return fmt.Sprintf("group never settled: partitions per member %v", r.owned) })
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) > 0 {
		t.Fatalf("group errors: %v", r.errs)
	}
	close(r.gate)
}

// consumed waits until every record of want has been consumed, then checks
// each was consumed exactly once and nothing else was.
func (r *saramaGroupRun) consumed(t *testing.T, want map[string]string) {
	t.Helper()
	r.wait(t, 30*time.Second, func() bool {
		if len(r.errs) > 0 {
			return true
		}
		for pk := range want {
			if len(r.seen[pk]) == 0 {
				return false
			}
		}
		return true
	}, func() string {
		missing := 0
		for pk := range want {
			if len(r.seen[pk]) == 0 {
				missing++
			}
		}
		return fmt.Sprintf("%d of %d records never consumed", missing, len(want))
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) > 0 {
		t.Fatalf("group errors: %v", r.errs)
	}
	byMember := map[string]int{}
	for pk, members := range r.seen {
		if _, ok := want[pk]; !ok {
			t.Errorf("record %s (%s) delivered, not expected", pk, r.value[pk])
			continue
		}
		if len(members) != 1 {
			t.Errorf("record %s consumed %d times, by %v", pk, len(members), members)
		}
		if r.value[pk] != want[pk] {
			t.Errorf("record %s is %q, produced %q", pk, r.value[pk], want[pk])
		}
		byMember[members[0]]++
	}
	if len(byMember) != len(r.members) {
		t.Errorf("records per member: %v; every member should have consumed some", byMember)
	}
	if t.Failed() {
		t.FailNow()
	}
}

// close stops both members at once, which commits what they marked, and
// makes them leave the group.
func (r *saramaGroupRun) close() {
	for _, m := range r.members {
		m.cancel()
	}
	for _, m := range r.members {
		<-m.done
		m.group.Close()
	}
	r.members = nil
}

// saramaProduce sends values with sarama and returns "partition/offset" ->
// value of what it stored.
func saramaProduce(t *testing.T, b *testBroker, topic string, values []string) map[string]string {
	t.Helper()
	cfg := saramaConfig(sarama.V3_0_0_0)
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Partitioner = sarama.NewMurmur2Partitioner
	p, err := sarama.NewSyncProducer([]string{b.addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var msgs []*sarama.ProducerMessage
	for i, v := range values {
		msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprintf("k%d", i%17)), Value: sarama.StringEncoder(v)})
	}
	if err := p.SendMessages(msgs); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range msgs {
		out[fmt.Sprintf("%d/%d", m.Partition, m.Offset)] = string(m.Value.(sarama.StringEncoder))
	}
	return out
}

func tagged(tag string, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf("%s-%d", tag, i))
	}
	return out
}

// TestSaramaConsumerGroup: a sarama ConsumerGroup of two members, under
// each of sarama's eager balance strategies, consumes every record exactly
// once, commits what it marked (autocommit, flushed when the session ends),
// and a restarted group resumes from the committed offsets: it gets again
// only the tail that was consumed but never marked, then what is new.
// sarama's cooperative-sticky (KIP-429) and static members (KIP-345,
// Consumer.Group.InstanceId) are run too.
func TestSaramaConsumerGroup(t *testing.T) {
	strategies := []struct {
		name   string
		s      func() sarama.BalanceStrategy
		static bool
	}{
		{"range", sarama.NewBalanceStrategyRange, false},
		{"roundrobin", sarama.NewBalanceStrategyRoundRobin, false},
		{"sticky", sarama.NewBalanceStrategySticky, false},
		{"cooperative-sticky", sarama.NewBalanceStrategyCooperativeSticky, false},
		{"range/static", sarama.NewBalanceStrategyRange, true},
	}
	for _, v := range saramaVersions {
		for _, st := range strategies {
			if st.name == "cooperative-sticky" && !v.IsAtLeast(sarama.V2_4_0_0) {
				continue // sarama refuses cooperative rebalancing below 2.4
			}
			if st.static && !v.IsAtLeast(sarama.V2_3_0_0) {
				continue // below 2.3 sarama ignores InstanceId
			}
			t.Run(v.String()+"/"+st.name, func(t *testing.T) {
				t.Parallel()
				testSaramaConsumerGroup(t, st.s, v, st.static)
			})
		}
	}
}

func testSaramaConsumerGroup(t *testing.T, strategy func() sarama.BalanceStrategy, v sarama.KafkaVersion, static bool) {
	b := startBroker(t, nil)
	const topic, group, parts = "sarama-group", "sarama-g", 4
	if _, err := b.log.CreateTopic(topic, parts, nil); err != nil {
		t.Fatal(err)
	}
	cfg := saramaConfig(v)
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.MaxWaitTime = 100 * time.Millisecond
	cfg.Consumer.Group.Session.Timeout = 6 * time.Second
	cfg.Consumer.Group.Heartbeat.Interval = 100 * time.Millisecond
	cfg.Consumer.Group.Rebalance.Timeout = 10 * time.Second
	cfg.Consumer.Group.Rebalance.Retry.Backoff = 100 * time.Millisecond

	// First generation: everything, the "tail-" records last, consumed
	// but not marked.
	first := saramaProduce(t, b, topic, tagged("a", 200))
	tail := saramaProduce(t, b, topic, tagged("tail", 20))
	want := map[string]string{}
	for pk, v := range first {
		want[pk] = v
	}
	for pk, v := range tail {
		want[pk] = v
	}
	run := startSaramaGroup(t, b, cfg, strategy, group, topic, false, static)
	run.settle(t, parts)
	run.consumed(t, want)
	run.close()

	// Committed: per partition, one past the last marked ("a-") record.
	committed := map[int32]int64{}
	for pk := range first {
		var p int32
		var o int64
		fmt.Sscanf(pk, "%d/%d", &p, &o)
		committed[p] = max(committed[p], o+1)
	}
	checkSaramaCommitted(t, b, cfg, group, topic, parts, committed)
	if static {
		checkStaticMembersStayed(t, b, cfg, group)
	}

	// Second generation, after a restart: the uncommitted tail again, and
	// what was produced since; none of the committed records.
	second := saramaProduce(t, b, topic, tagged("b", 100))
	want = map[string]string{}
	for pk, v := range tail {
		want[pk] = v
	}
	for pk, v := range second {
		want[pk] = v
	}
	run = startSaramaGroup(t, b, cfg, strategy, group, topic, true, static)
	run.settle(t, parts)
	run.consumed(t, want)
	run.close()
	checkSaramaCommitted(t, b, cfg, group, topic, parts, endOffsets(t, b, topic, parts))

	// The group as sarama's ClusterAdmin sees it once every member left;
	// deleting it drops its committed offsets.
	adm, err := sarama.NewClusterAdmin([]string{b.addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if static {
		// Static members do not leave when closed (KIP-345); an operator
		// removes them by instance id.
		resp, err := adm.RemoveMemberFromConsumerGroup(group, []string{"ferry-sarama-0", "ferry-sarama-1"})
		if err != nil || resp.Err != sarama.ErrNoError {
			t.Fatalf("RemoveMemberFromConsumerGroup: %+v %v", resp, err)
		}
		for _, m := range resp.Members {
			if m.Err != sarama.ErrNoError {
				t.Fatalf("RemoveMemberFromConsumerGroup %s: %v", *m.GroupInstanceId, m.Err)
			}
		}
	}
	groups, err := adm.ListConsumerGroups()
	if err != nil || groups[group] != "consumer" {
		t.Fatalf("ListConsumerGroups: %v %v", groups, err)
	}
	desc, err := adm.DescribeConsumerGroups([]string{group})
	if err != nil || len(desc) != 1 || desc[0].Err != sarama.ErrNoError || desc[0].State != "Empty" || len(desc[0].Members) != 0 {
		t.Fatalf("DescribeConsumerGroups: %+v %v", desc, err)
	}
	if !v.IsAtLeast(sarama.V1_1_0_0) {
		return // DeleteGroups is Kafka 1.1's; sarama refuses it below
	}
	if err := adm.DeleteConsumerGroup(group); err != nil {
		t.Fatalf("DeleteConsumerGroup: %v", err)
	}
	checkSaramaCommitted(t, b, cfg, group, topic, parts, nil)
}

// checkStaticMembersStayed: closed static members are still in the group,
// under their instance ids, until their session expires.
func checkStaticMembersStayed(t *testing.T, b *testBroker, cfg *sarama.Config, group string) {
	t.Helper()
	adm, err := sarama.NewClusterAdmin([]string{b.addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	desc, err := adm.DescribeConsumerGroups([]string{group})
	if err != nil || len(desc) != 1 {
		t.Fatalf("DescribeConsumerGroups: %+v %v", desc, err)
	}
	var ids []string
	for _, m := range desc[0].Members {
		if m.GroupInstanceId != nil {
			ids = append(ids, *m.GroupInstanceId)
		}
	}
	sort.Strings(ids)
	if fmt.Sprint(ids) != "[ferry-sarama-0 ferry-sarama-1]" {
		t.Fatalf("static members after close: %v (group %s)", ids, desc[0].State)
	}
}

// checkSaramaCommitted reads the group's committed offsets with sarama's
// ClusterAdmin.
func checkSaramaCommitted(t *testing.T, b *testBroker, cfg *sarama.Config, group, topic string, parts int32, want map[int32]int64) {
	t.Helper()
	adm, err := sarama.NewClusterAdmin([]string{b.addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	var all []int32
	for p := int32(0); p < parts; p++ {
		all = append(all, p)
	}
	resp, err := adm.ListConsumerGroupOffsets(group, map[string][]int32{topic: all})
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < parts; p++ {
		blk := resp.GetBlock(topic, p)
		if blk == nil || blk.Err != sarama.ErrNoError {
			t.Fatalf("committed offset of %s-%d: %+v", topic, p, blk)
		}
		w, ok := want[p]
		if !ok {
			w = -1 // nothing consumed there: nothing committed
		}
		if blk.Offset != w {
			t.Errorf("committed offset of %s-%d is %d, want %d", topic, p, blk.Offset, w)
		}
	}
	// Asking for every topic (null topics, OffsetFetch v2+) lists exactly
	// the committed partitions.
	resp, err = adm.ListConsumerGroupOffsets(group, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int32]int64{}
	for tp, blocks := range resp.Blocks {
		for p, blk := range blocks {
			if tp != topic || blk.Err != sarama.ErrNoError {
				t.Fatalf("all committed offsets: %s-%d %+v", tp, p, blk)
			}
			got[p] = blk.Offset
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) && !(len(got) == 0 && len(want) == 0) {
		t.Errorf("all committed offsets: %v, want %v", got, want)
	}
}

// TestSaramaClusterAdmin: sarama's ClusterAdmin creates, describes, lists,
// configures and deletes topics, and sees groups.
func TestSaramaClusterAdmin(t *testing.T) {
	for _, v := range saramaVersions {
		t.Run(v.String(), func(t *testing.T) { testSaramaClusterAdmin(t, v) })
	}
}

func testSaramaClusterAdmin(t *testing.T, v sarama.KafkaVersion) {
	b := startBroker(t, func(o *Options) { o.AutoCreateTopics = false })
	adm, err := sarama.NewClusterAdmin([]string{b.addr}, saramaConfig(v))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()

	retention := "3600000"
	detail := &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1, ConfigEntries: map[string]*string{"retention.ms": &retention}}
	if err := adm.CreateTopic("sarama-admin", detail, true); err != nil {
		t.Fatalf("CreateTopic validate-only: %v", err)
	}
	if _, err := b.log.Topic("sarama-admin"); err == nil {
		t.Fatal("validate-only CreateTopic created the topic")
	}
	if err := adm.CreateTopic("sarama-admin", detail, false); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	if err := adm.CreateTopic("sarama-admin", detail, false); !errors.Is(err, sarama.ErrTopicAlreadyExists) {
		t.Fatalf("CreateTopic of an existing topic: %v, want %v", err, sarama.ErrTopicAlreadyExists)
	}
	if err := adm.CreateTopic("bad/name", &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); !errors.Is(err, sarama.ErrInvalidTopic) {
		t.Fatalf("CreateTopic bad/name: %v, want %v", err, sarama.ErrInvalidTopic)
	}

	md, err := adm.DescribeTopics([]string{"sarama-admin", "missing"})
	if err != nil {
		t.Fatalf("DescribeTopics: %v", err)
	}
	found := map[string]*sarama.TopicMetadata{}
	for _, m := range md {
		found[m.Name] = m
	}
	if m := found["sarama-admin"]; m == nil || m.Err != sarama.ErrNoError || len(m.Partitions) != 3 {
		t.Fatalf("DescribeTopics sarama-admin: %+v", m)
	} else {
		for _, p := range m.Partitions {
			if p.Err != sarama.ErrNoError || len(p.Replicas) != 1 || len(p.Isr) != 1 || p.Leader != p.Replicas[0] {
				t.Fatalf("partition %d: %+v", p.ID, p)
			}
		}
	}
	if m := found["missing"]; m == nil || m.Err != sarama.ErrUnknownTopicOrPartition {
		t.Fatalf("DescribeTopics missing: %+v", m)
	}

	topics, err := adm.ListTopics()
	if err != nil {
		t.Fatalf("ListTopics: %v", err)
	}
	d, ok := topics["sarama-admin"]
	if !ok || d.NumPartitions != 3 || d.ReplicationFactor != 1 {
		t.Fatalf("ListTopics: %+v", topics)
	}
	if d.ConfigEntries["retention.ms"] == nil || *d.ConfigEntries["retention.ms"] != retention {
		t.Fatalf("ListTopics config of sarama-admin: %v", d.ConfigEntries)
	}

	entries, err := adm.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: "sarama-admin"})
	if err != nil {
		t.Fatalf("DescribeConfig: %v", err)
	}
	cfgs := map[string]sarama.ConfigEntry{}
	for _, e := range entries {
		cfgs[e.Name] = e
	}
	// DescribeConfigs v0 (Kafka < 1.1) has no config source.
	if e := cfgs["retention.ms"]; e.Value != retention || e.Default || v.IsAtLeast(sarama.V1_1_0_0) && e.Source != sarama.SourceTopic {
		t.Fatalf("DescribeConfig retention.ms: %+v", e)
	}
	if e := cfgs["segment.bytes"]; e.Value != "67108864" || !e.Default {
		t.Fatalf("DescribeConfig segment.bytes: %+v", e)
	}
	only, err := adm.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: "sarama-admin", ConfigNames: []string{"flush.policy"}})
	if err != nil || len(only) != 1 || only[0].Name != "flush.policy" {
		t.Fatalf("DescribeConfig flush.policy: %+v %v", only, err)
	}
	if _, err := adm.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: "missing"}); !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		t.Fatalf("DescribeConfig of a missing topic: %v", err)
	}

	if v.IsAtLeast(sarama.V2_3_0_0) { // IncrementalAlterConfigs is Kafka 2.3's
		policy := "always"
		err := adm.IncrementalAlterConfig(sarama.TopicResource, "sarama-admin", map[string]sarama.IncrementalAlterConfigsEntry{
			"flush.policy": {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &policy},
			"retention.ms": {Operation: sarama.IncrementalAlterConfigsOperationDelete},
		}, false)
		if err != nil {
			t.Fatalf("IncrementalAlterConfig: %v", err)
		}
		if cfg, err := b.log.TopicConfig("sarama-admin"); err != nil || cfg.Flush != flog.FlushAlways {
			t.Fatalf("after IncrementalAlterConfig: %+v %v", cfg, err)
		}
		e, err := adm.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: "sarama-admin", ConfigNames: []string{"retention.ms"}})
		if err != nil || len(e) != 1 || !e[0].Default {
			t.Fatalf("retention.ms after its deletion: %+v %v", e, err)
		}
	}
	brokers, controller, err := adm.DescribeCluster()
	if err != nil || len(brokers) != 1 || brokers[0].Addr() != b.addr || controller != brokers[0].ID() {
		t.Fatalf("DescribeCluster: %v, controller %d, %v", brokers, controller, err)
	}
	if _, err := adm.DescribeConfig(sarama.ConfigResource{Type: sarama.BrokerResource, Name: fmt.Sprint(brokers[0].ID())}); err != nil {
		t.Fatalf("DescribeConfig of the broker: %v", err)
	}

	if v.IsAtLeast(sarama.V1_0_0_0) { // CreatePartitions is Kafka 1.0's; sarama refuses it below
		if err := adm.CreatePartitions("sarama-admin", 5, nil, false); err != nil {
			t.Fatalf("CreatePartitions: %v", err)
		}
		if md, err := adm.DescribeTopics([]string{"sarama-admin"}); err != nil || len(md) != 1 || len(md[0].Partitions) != 5 {
			t.Fatalf("after CreatePartitions: %+v %v", md, err)
		}
	}

	if err := adm.DeleteTopic("sarama-admin"); err != nil {
		t.Fatalf("DeleteTopic: %v", err)
	}
	if err := adm.DeleteTopic("sarama-admin"); !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		t.Fatalf("DeleteTopic of a deleted topic: %v", err)
	}
	topics, err = adm.ListTopics()
	if err != nil {
		t.Fatalf("ListTopics: %v", err)
	}
	if _, ok := topics["sarama-admin"]; ok {
		var names []string
		for n := range topics {
			names = append(names, n)
		}
		sort.Strings(names)
		t.Fatalf("ListTopics after DeleteTopic still has it: %v", names)
	}
}

// TestSaramaCodecsAndPartitionConsumer: batches sarama compresses with each
// of its codecs are read back, in order and at their offsets, by sarama's
// own (group-less) partition consumer from OffsetOldest; one started at
// OffsetNewest gets only what is produced after it.
func TestSaramaCodecsAndPartitionConsumer(t *testing.T) {
	b := startBroker(t, nil)
	const parts = 2
	codecs := []sarama.CompressionCodec{sarama.CompressionNone, sarama.CompressionGZIP, sarama.CompressionSnappy, sarama.CompressionLZ4, sarama.CompressionZSTD}
	for _, codec := range codecs {
		t.Run(codec.String(), func(t *testing.T) {
			topic := "sarama-" + codec.String()
			if _, err := b.log.CreateTopic(topic, parts, nil); err != nil {
				t.Fatal(err)
			}
			cfg := saramaConfig(sarama.V3_0_0_0)
			cfg.Producer.RequiredAcks = sarama.WaitForAll
			cfg.Producer.Return.Successes = true
			cfg.Producer.Compression = codec
			cfg.Producer.Partitioner = sarama.NewMurmur2Partitioner
			cfg.Consumer.MaxWaitTime = 100 * time.Millisecond
			p, err := sarama.NewSyncProducer([]string{b.addr}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			const n = 200
			var msgs []*sarama.ProducerMessage
			for i := 0; i < n; i++ {
				v := strings.Repeat(fmt.Sprintf("reading %d ", i), 8) // compressible
				msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprintf("k%d", i%7)), Value: sarama.StringEncoder(v)})
			}
			if err := p.SendMessages(msgs); err != nil {
				t.Fatal(err)
			}
			sentAt := map[string]string{}
			perPart := map[int32]int{}
			for _, m := range msgs {
				sentAt[fmt.Sprintf("%d/%d", m.Partition, m.Offset)] = string(m.Value.(sarama.StringEncoder))
				perPart[m.Partition]++
			}

			c, err := sarama.NewConsumer([]string{b.addr}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			timeout := time.NewTimer(30 * time.Second)
			defer timeout.Stop()
			for part := int32(0); part < parts; part++ {
				pc, err := c.ConsumePartition(topic, part, sarama.OffsetOldest)
				if err != nil {
					t.Fatal(err)
				}
				next := int64(0)
				for got := 0; got < perPart[part]; got++ {
					select {
					case m := <-pc.Messages():
						pk := fmt.Sprintf("%d/%d", m.Partition, m.Offset)
						if m.Offset != next || sentAt[pk] != string(m.Value) {
							t.Fatalf("read %s = %.20q, expected offset %d holding %.20q", pk, m.Value, next, sentAt[pk])
						}
						next++
					case err := <-pc.Errors():
						t.Fatalf("partition %d: %v", part, err)
					case <-timeout.C:
						t.Fatalf("partition %d: %d of %d records read", part, got, perPart[part])
					}
				}
				if hw := pc.HighWaterMarkOffset(); hw != next {
					t.Fatalf("partition %d: high watermark %d, %d records", part, hw, next)
				}
				pc.Close()
			}

			// From the newest offset: only what comes after.
			part := flog.PartitionForKey([]byte("late"), parts)
			pc, err := c.ConsumePartition(topic, part, sarama.OffsetNewest)
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			gotPart, off, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder("late"), Value: sarama.StringEncoder("after")})
			if err != nil || gotPart != part || off != int64(perPart[part]) {
				t.Fatalf("late record at %d/%d (%v), want %d/%d", gotPart, off, err, part, perPart[part])
			}
			select {
			case m := <-pc.Messages():
				if m.Offset != off || string(m.Value) != "after" {
					t.Fatalf("from newest: %d %q", m.Offset, m.Value)
				}
			case err := <-pc.Errors():
				t.Fatal(err)
			case <-timeout.C:
				t.Fatal("the record produced after OffsetNewest never came")
			}
		})
	}
}
