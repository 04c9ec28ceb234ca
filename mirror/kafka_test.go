package mirror

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	flog "ferry/log"
)

// These tests run the Kafka target against franz-go's kfake: an in-process
// cluster of several brokers on 127.0.0.1 with leader moves, injected
// answers (control functions), SASL, ACLs and transactions. What kfake
// does not model: replication (acks=all is answered by the leader alone,
// min.insync.replicas is stored, not enforced), crash-faithful persistence
// (a broker is never killed with data unsynced), and real quotas (throttling
// is injected). A ferry full node as the target is in package edge
// (TestMirrorKafkaIntoFerryFull).

// kafkaCluster is a kfake cluster of n brokers.
func kafkaCluster(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(3)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// startKafkaSender runs a sender as edge id into the cluster at brokers.
func startKafkaSender(t testing.TB, l *flog.Log, dir, id string, k KafkaOptions, reg prometheus.Registerer) *edgeNode {
	t.Helper()
	s, err := NewSender(SenderOptions{Log: l, StatePath: filepath.Join(dir, "mirror.db"), EdgeID: id, Kafka: &k,
		ChunkBytes: 16 << 10, AckTimeout: 10 * time.Second, Logger: quiet, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	l.SetShipper(s)
	ctx, cancel := context.WithCancel(context.Background())
	e := &edgeNode{log: l, sender: s, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(e.done); s.Run(ctx) }()
	t.Cleanup(e.stop)
	return e
}

// readTarget reads every record of a target partition (committed ones
// only when committed is set).
func readTarget(t testing.TB, brokers []string, topic string, p int32, committed bool, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	adm, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	a := kadm.NewClient(adm)
	var ends kadm.ListedOffsets
	if committed {
		ends, err = a.ListCommittedOffsets(ctx, topic)
	} else {
		ends, err = a.ListEndOffsets(ctx, topic)
	}
	if err != nil {
		t.Fatal(err)
	}
	end, ok := ends.Lookup(topic, p)
	if !ok || end.Err != nil || end.Offset <= 0 { // not there (yet)
		return nil
	}
	copts := append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().AtStart()}}),
		kgo.KeepControlRecords()}, opts...)
	if committed {
		copts = append(copts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(copts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s-%d to %d: %v", topic, p, end.Offset, ctx.Err())
		}
		last := int64(-1)
		fs.EachRecord(func(r *kgo.Record) {
			last = r.Offset
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		})
		if last >= end.Offset-1 {
			return out
		}
	}
}

// edgeRecords decodes a partition of the edge's log from its start.
func edgeRecords(t testing.TB, l *flog.Log, topic string, p int32) []flog.DecodedRecord {
	t.Helper()
	part, err := l.Partition(topic, p)
	if err != nil {
		t.Fatal(err)
	}
	var out []flog.DecodedRecord
	for off := part.StartOffset(); off < part.EndOffset(); {
		rr, err := part.Read(off, 1<<20, nil)
		if err != nil {
			t.Fatal(err)
		}
		for pos := 0; pos < len(rr.Data); {
			h, err := flog.ParseBatchHeader(rr.Data[pos:])
			if err != nil || pos+int(h.Length) > len(rr.Data) {
				break
			}
			_, recs, err := flog.DecodeRecords(rr.Data[pos : pos+int(h.Length)])
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, recs...)
			pos += int(h.Length)
			off = h.LastOffset() + 1
		}
	}
	return out
}

func header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// checkKafkaCopy waits until the sender has every record of the edge's
// topic acknowledged (so a record shipped twice is at the target by then)
// and every partition of the target topic holds as many records as the
// edge's, then checks it record by record against the edge's log: every record once, in offset order, its ferry.offset header
// its edge offset, key, value, headers and timestamp kept. It returns the
// target's records per partition.
func checkKafkaCopy(t testing.TB, s *Sender, brokers []string, l *flog.Log, topic, target string, committed bool, opts ...kgo.Opt) [][]*kgo.Record {
	t.Helper()
	n, err := l.PartitionCount(topic)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the sender's acknowledgements of "+topic, func() bool {
		for p := int32(0); p < n; p++ {
			part, _ := l.Partition(topic, p)
			if s.Acked(topic, p) < part.EndOffset() {
				return false
			}
		}
		return true
	})
	var out [][]*kgo.Record
	for p := int32(0); p < n; p++ {
		want := edgeRecords(t, l, topic, p)
		var got []*kgo.Record
		deadline := time.Now().Add(30 * time.Second)
		for {
			got = readTarget(t, brokers, target, p, committed, opts...)
			if len(got) >= len(want) || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(got) != len(want) {
			t.Fatalf("%s-%d: the target has %d records, the edge %d", target, p, len(got), len(want))
		}
		for i, w := range want {
			g := got[i]
			off, _ := header(g, HeaderOffset)
			if off != strconv.FormatInt(w.Offset, 10) {
				t.Fatalf("%s-%d record %d: %s %q, want edge offset %d", target, p, i, HeaderOffset, off, w.Offset)
			}
			if !bytes.Equal(g.Key, w.Key) || !bytes.Equal(g.Value, w.Value) || g.Timestamp.UnixMilli() != w.Timestamp {
				t.Fatalf("%s-%d at edge offset %d: got key %q value %q ts %d, want %q %q %d", target, p, w.Offset, g.Key, g.Value,
					g.Timestamp.UnixMilli(), w.Key, w.Value, w.Timestamp)
			}
			if len(g.Headers) < len(w.Headers)+1 {
				t.Fatalf("%s-%d at edge offset %d: headers %v, want %v and %s", target, p, w.Offset, g.Headers, w.Headers, HeaderOffset)
			}
			for j, h := range w.Headers {
				if g.Headers[j].Key != h.Key || !bytes.Equal(g.Headers[j].Value, h.Value) {
					t.Fatalf("%s-%d at edge offset %d: header %d is %v, want %v", target, p, w.Offset, j, g.Headers[j], h)
				}
			}
		}
		out = append(out, got)
	}
	return out
}

// produceWithHeaders appends n batches of 10 records with a header each.
func produceWithHeaders(t testing.TB, l *flog.Log, topic string, partition int32, n int, tag string) {
	t.Helper()
	p, err := l.Partition(topic, partition)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		recs := make([]flog.Record, 10)
		for j := range recs {
			recs[j] = flog.Record{Key: []byte(fmt.Sprintf("dev%d", j)), Value: []byte(fmt.Sprintf(`{"seq":"%s-%d-%d"}`, tag, i, j)),
				Headers:   []kmsg.Header{{Key: "source", Value: []byte("mqtt")}},
				Timestamp: time.Now().UnixMilli() - int64(1000*j)}
		}
		if _, err := p.Append(flog.AppendBatch(nil, recs)); err != nil {
			t.Fatal(err)
		}
	}
}

// The default (idempotent) mode end to end into three brokers: the topic
// is created with the edge's partition count, each edge partition lands in
// the same partition with every record once, in order, with its offset
// header, and the sender's acknowledgements and status follow the target.
func TestKafkaMirrorShipsEveryRecordOnce(t *testing.T) {
	c := kafkaCluster(t)
	brokers := c.ListenAddrs()
	dir := t.TempDir()
	l := openLog(t, dir)
	if _, err := l.CreateTopic("telemetry", 3, nil); err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 3; p++ {
		produceWithHeaders(t, l, "telemetry", p, 30, "a")
	}
	reg := prometheus.NewRegistry()
	e := startKafkaSender(t, l, dir, "gw1", KafkaOptions{Brokers: brokers, ReplicationFactor: 3, MinInsyncReplicas: 2}, reg)
	checkKafkaCopy(t, e.sender, brokers, l, "telemetry", "gw1.telemetry", false)
	waitFor(t, "the acknowledgements", func() bool {
		for p := int32(0); p < 3; p++ {
			if e.sender.Acked("telemetry", p) != 300 {
				return false
			}
		}
		return true
	})
	// More records after the catch-up go on the same session.
	produceWithHeaders(t, l, "telemetry", 1, 5, "b")
	checkKafkaCopy(t, e.sender, brokers, l, "telemetry", "gw1.telemetry", false)

	st := e.sender.Status()
	if !st.LinkUp || st.Center != "kafka://"+joinComma(brokers) || st.WireBytes <= 0 || st.RawBytes <= 0 || st.LastAck == nil {
		t.Errorf("status: %+v", st)
	}
	waitFor(t, "the status to catch up", func() bool {
		for _, ps := range e.sender.Status().Partitions {
			if ps.BacklogRecords != 0 {
				return false
			}
		}
		return true
	})
	if got := testutil.ToFloat64(e.sender.metrics.acked); got == 0 {
		t.Error("no chunk counted acknowledged")
	}
	// The topic's configuration came from the options.
	cl, _ := kgo.NewClient(kgo.SeedBrokers(brokers...))
	defer cl.Close()
	rc, err := kadm.NewClient(cl).DescribeTopicConfigs(context.Background(), "gw1.telemetry")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := rc.On("gw1.telemetry", nil); err != nil || !hasConfig(v, "min.insync.replicas", "2") {
		t.Errorf("the target topic's configs: %+v %v", v, err)
	}
}

func hasConfig(rc kadm.ResourceConfig, key, val string) bool {
	for _, c := range rc.Configs {
		if c.Key == key && c.MaybeValue() == val {
			return true
		}
	}
	return false
}

func joinComma(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(x)
	}
	return b.String()
}

// respDropper wraps a broker's listener: while armed, nothing the broker
// writes reaches the client (requests are still served), as when the link
// drops after a request went out and before its answer came back.
type respDropper struct {
	net.Listener
	armed *atomic.Bool
}

func (d respDropper) Accept() (net.Conn, error) {
	c, err := d.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return dropConn{c, d.armed}, nil
}

type dropConn struct {
	net.Conn
	armed *atomic.Bool
}

func (c dropConn) Write(b []byte) (int, error) {
	if c.armed.Load() {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// The ambiguous case: the target stores a shipment but its answer never
// comes back, and the edge stops (killed: its local checkpoint still says
// nothing was acknowledged). The next sender reads the target's tail and
// resumes after it: no record twice, none missing. A sender that trusted
// its checkpoint would ship the stored records again.
func TestKafkaMirrorResumesFromTheTargetAfterAnAmbiguousFailure(t *testing.T) {
	var armed atomic.Bool
	var stored atomic.Int64
	c := kafkaCluster(t, kfake.NumBrokers(1), kfake.ListenFn(func(network, addr string) (net.Listener, error) {
		ln, err := net.Listen(network, addr)
		if err != nil {
			return nil, err
		}
		return respDropper{ln, &armed}, nil
	}))
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if armed.Load() {
			stored.Add(1)
		}
		return nil, nil, false // served as usual
	})
	brokers := c.ListenAddrs()
	dir := t.TempDir()
	l := openLog(t, dir)
	if _, err := l.CreateTopic("telemetry", 1, nil); err != nil {
		t.Fatal(err)
	}
	produceWithHeaders(t, l, "telemetry", 0, 5, "a")
	e := startKafkaSender(t, l, dir, "gw1", KafkaOptions{Brokers: brokers}, nil)
	checkKafkaCopy(t, e.sender, brokers, l, "telemetry", "gw1.telemetry", false)
	waitFor(t, "the acknowledgement", func() bool { return e.sender.Acked("telemetry", 0) == 50 })

	armed.Store(true)
	produceWithHeaders(t, l, "telemetry", 0, 5, "b")
	waitFor(t, "the target to store the shipment whose answer is lost", func() bool { return stored.Load() > 0 })
	e.stop()
	if got := e.sender.Acked("telemetry", 0); got != 50 {
		t.Fatalf("the edge counted %d acknowledged with the answer lost, want 50", got)
	}
	armed.Store(false)
	// The target already holds some of 50..99; the restarted edge's
	// checkpoint says 50.
	e2 := startKafkaSender(t, l, dir, "gw1", KafkaOptions{Brokers: brokers}, nil)
	checkKafkaCopy(t, e2.sender, brokers, l, "telemetry", "gw1.telemetry", false)
	waitFor(t, "the acknowledgement after the restart", func() bool { return e2.sender.Acked("telemetry", 0) == 100 })
}

// Leader moves, NOT_LEADER_FOR_PARTITION and throttled answers mid-stream:
// the copy is still every record once, in order.
func TestKafkaMirrorRidesOutLeaderMovesAndRefusals(t *testing.T) {
	c := kafkaCluster(t)
	brokers := c.ListenAddrs()
	var refused, throttled atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		switch n := refused.Load() + throttled.Load(); {
		case n >= 6:
			c.DropControl()
			return nil, nil, false
		case n%2 == 0:
			refused.Add(1)
			resp := pr.ResponseKind().(*kmsg.ProduceResponse)
			for _, rt := range pr.Topics {
				st := kmsg.NewProduceResponseTopic()
				st.Topic, st.TopicID = rt.Topic, rt.TopicID
				for _, rp := range rt.Partitions {
					sp := kmsg.NewProduceResponseTopicPartition()
					sp.Partition = rp.Partition
					sp.ErrorCode = kerr.NotLeaderForPartition.Code
					st.Partitions = append(st.Partitions, sp)
				}
				resp.Topics = append(resp.Topics, st)
			}
			return resp, nil, true
		default:
			throttled.Add(1)
			resp := pr.ResponseKind().(*kmsg.ProduceResponse)
			resp.ThrottleMillis = 50
			for _, rt := range pr.Topics {
				st := kmsg.NewProduceResponseTopic()
				st.Topic, st.TopicID = rt.Topic, rt.TopicID
				for _, rp := range rt.Partitions {
					sp := kmsg.NewProduceResponseTopicPartition()
					sp.Partition = rp.Partition
					sp.ErrorCode = kerr.ThrottlingQuotaExceeded.Code
					st.Partitions = append(st.Partitions, sp)
				}
				resp.Topics = append(resp.Topics, st)
			}
			return resp, nil, true
		}
	})
	dir := t.TempDir()
	l := openLog(t, dir)
	if _, err := l.CreateTopic("telemetry", 2, nil); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	e := startKafkaSender(t, l, dir, "gw1", KafkaOptions{Brokers: brokers}, reg)
	for i := 0; i < 10; i++ {
		produceWithHeaders(t, l, "telemetry", int32(i%2), 3, strconv.Itoa(i))
		c.ShufflePartitionLeaders()
		if i == 5 {
			c.MoveTopicPartition("gw1.telemetry", 0, (c.LeaderFor("gw1.telemetry", 0)+1)%3)
		}
	}
	checkKafkaCopy(t, e.sender, brokers, l, "telemetry", "gw1.telemetry", false)
	if refused.Load() == 0 || throttled.Load() == 0 {
		t.Fatalf("injected %d NOT_LEADER and %d throttled answers; want both", refused.Load(), throttled.Load())
	}
	if got := testutil.ToFloat64(e.sender.metrics.linkErrs.WithLabelValues(reasonThrottled)); got == 0 {
		t.Error("the target's throttling was not counted")
	}
}

// A target topic deleted under a running mirror is created again and
// filled from the edge's log: the new copy is complete.
func TestKafkaMirrorRecreatesADeletedTopic(t *testing.T) {
	c := kafkaCluster(t)
	brokers := c.ListenAddrs()
	dir := t.TempDir()
	l := openLog(t, dir)
	if _, err := l.CreateTopic("telemetry", 1, nil); err != nil {
		t.Fatal(err)
	}
	produceWithHeaders(t, l, "telemetry", 0, 5, "a")
	e := startKafkaSender(t, l, dir, "gw1", KafkaOptions{Brokers: brokers}, nil)
	checkKafkaCopy(t, e.sender, brokers, l, "telemetry", "gw1.telemetry", false)
	cl, _ := kgo.NewClient(kgo.SeedBrokers(brokers...))
	defer cl.Close()
	if _, err := kadm.NewClient(cl).DeleteTopic(context.Background(), "gw1.telemetry"); err != nil {
		t.Fatal(err)
	}
	produceWithHeaders(t, l, "telemetry", 0, 5, "b")
	checkKafkaCopy(t, e.sender, brokers, l, "telemetry", "gw1.telemetry", false)
	if e.sender.Status().Failures == 0 {
		t.Error("the missing topic was not counted as a link error")
	}
}

// A target that refuses the edge's user writing to the topic: nothing is
// acknowledged, and the status and metrics say why.
func TestKafkaMirrorReportsAuthorizationRefused(t *testing.T) {
	c := kafkaCluster(t, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "admin", "admin"), kfake.EnableACLs(),
		kfake.User("PLAIN", "edge", "pw", kfake.ACL{Resource: kmsg.ACLResourceTypeTopic, Name: "*",
			Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: kmsg.ACLOperationDescribe, Allow: true}))
	brokers := c.ListenAddrs()
	dir := t.TempDir()
	l := openLog(t, dir)
	if _, err := l.CreateTopic("telemetry", 1, nil); err != nil {
		t.Fatal(err)
	}
	produceWithHeaders(t, l, "telemetry", 0, 1, "a")
	reg := prometheus.NewRegistry()
	e := startKafkaSender(t, l, dir, "gw1", KafkaOptions{Brokers: brokers, SASL: plainAuth("edge", "pw")}, reg)
	waitFor(t, "the refusal in the status", func() bool {
		le := e.sender.Status().LastError
		return le != nil && le.Reason == reasonTopicAuth
	})
	if got := testutil.ToFloat64(e.sender.metrics.linkErrs.WithLabelValues(reasonTopicAuth)); got == 0 {
		t.Error("the refusal was not counted")
	}
	if e.sender.Acked("telemetry", 0) != 0 {
		t.Error("acknowledged without being allowed to write")
	}
	e.stop()

	// A wrong password is an authentication failure. kfake closes the
	// connection; Kafka answers SASL_AUTHENTICATION_FAILED, injected here.
	c.ControlKey(int16(kmsg.SASLAuthenticate), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		resp := req.(*kmsg.SASLAuthenticateRequest).ResponseKind().(*kmsg.SASLAuthenticateResponse)
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		msg := "Authentication failed: Invalid username or password"
		resp.ErrorMessage = &msg
		return resp, nil, true
	})
	e2 := startKafkaSender(t, l, dir, "gw1", KafkaOptions{Brokers: brokers, SASL: plainAuth("edge", "wrong")}, nil)
	waitFor(t, "the failed authentication in the status", func() bool {
		le := e2.sender.Status().LastError
		return le != nil && le.Reason == reasonAuth
	})
}

// Two edges into one target each land in their own topics, complete.
func TestKafkaMirrorTwoEdgesIntoOneTarget(t *testing.T) {
	c := kafkaCluster(t)
	brokers := c.ListenAddrs()
	var logs []*flog.Log
	var senders []*Sender
	for i, id := range []string{"gw1", "gw2"} {
		dir := t.TempDir()
		l := openLog(t, dir)
		if _, err := l.CreateTopic("telemetry", 2, nil); err != nil {
			t.Fatal(err)
		}
		produceWithHeaders(t, l, "telemetry", 0, 10+i, id)
		produceWithHeaders(t, l, "telemetry", 1, 7, id)
		senders = append(senders, startKafkaSender(t, l, dir, id, KafkaOptions{Brokers: brokers}, nil).sender)
		logs = append(logs, l)
	}
	checkKafkaCopy(t, senders[0], brokers, logs[0], "telemetry", "gw1.telemetry", false)
	checkKafkaCopy(t, senders[1], brokers, logs[1], "telemetry", "gw2.telemetry", false)
}

// A long outage under a disk budget with drop-oldest: the records dropped
// before the target had them show there as a ferry.gap header on the first
// record after them, naming the edge offsets lost, and in the metrics.
func TestKafkaMirrorDropOldestGapIsVisibleAtTheTarget(t *testing.T) {
	// A port with no broker yet: the link is down.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	l := budgetLog(t, dir, "bulk")
	reg := prometheus.NewRegistry()
	e := startKafkaSender(t, l, dir, "gw1", KafkaOptions{Brokers: []string{"127.0.0.1:" + strconv.Itoa(port)}}, reg)
	l.ArmBudget()                  // the sender is the log's shipper
	produceHeavy(t, l, "bulk", 60) // 6 MB into a 3 MiB budget
	if _, blocked := l.EnforceBudget(); blocked {
		t.Fatal("drop-oldest blocked")
	}
	p, _ := l.Partition("bulk", 0)
	if p.StartOffset() == 0 {
		t.Fatal("the budget dropped nothing")
	}
	dropped := p.StartOffset()
	if got := testutil.ToFloat64(e.sender.metrics.dropped.WithLabelValues("bulk")); got != float64(dropped) {
		t.Fatalf("dropped metric %v, want %d", got, dropped)
	}
	c := kafkaCluster(t, kfake.NumBrokers(1), kfake.Ports(port))
	brokers := c.ListenAddrs()
	got := checkKafkaCopy(t, e.sender, brokers, l, "bulk", "gw1.bulk", false)
	gap, ok := header(got[0][0], HeaderGap)
	if want := fmt.Sprintf("0-%d", dropped-1); !ok || gap != want {
		t.Fatalf("first record's %s header %q, want %q", HeaderGap, gap, want)
	}
	for _, r := range got[0][1:] {
		if _, ok := header(r, HeaderGap); ok {
			t.Fatal("a gap header on a record that follows its predecessor")
		}
	}
	waitFor(t, "the gap counted as told", func() bool { return testutil.ToFloat64(e.sender.metrics.gaps) == 1 })
	if st := e.sender.Status(); st.DroppedUnreported != 0 {
		t.Errorf("status still reports %d dropped records untold", st.DroppedUnreported)
	}
}

// The transactional mode: the copy read with read_committed is every
// record once, and a second sender of the same edge fences the first,
// which stops writing.
func TestKafkaMirrorTransactional(t *testing.T) {
	c := kafkaCluster(t)
	brokers := c.ListenAddrs()
	dir := t.TempDir()
	l := openLog(t, dir)
	if _, err := l.CreateTopic("telemetry", 2, nil); err != nil {
		t.Fatal(err)
	}
	produceWithHeaders(t, l, "telemetry", 0, 20, "a")
	produceWithHeaders(t, l, "telemetry", 1, 20, "a")
	reg := prometheus.NewRegistry()
	e := startKafkaSender(t, l, dir, "gw1", KafkaOptions{Brokers: brokers, Transactional: true}, reg)
	checkKafkaCopy(t, e.sender, brokers, l, "telemetry", "gw1.telemetry", true)
	waitFor(t, "the acknowledgements", func() bool { return e.sender.Acked("telemetry", 0) == 200 && e.sender.Acked("telemetry", 1) == 200 })

	// A second sender of gw1 (a copy of the edge's state, as after a
	// failover) fences the first.
	dir2 := t.TempDir()
	e2 := startKafkaSender(t, l, dir2, "gw1", KafkaOptions{Brokers: brokers, Transactional: true}, nil)
	waitFor(t, "the second sender up", func() bool { return e2.sender.Status().LinkUp })
	produceWithHeaders(t, l, "telemetry", 0, 10, "b")
	waitFor(t, "the first sender fenced", func() bool {
		le := e.sender.Status().LastError
		return le != nil && le.Reason == reasonFenced
	})
	checkKafkaCopy(t, e2.sender, brokers, l, "telemetry", "gw1.telemetry", true)
	e.stop()
}

func plainAuth(user, pass string) sasl.Mechanism {
	return plain.Auth{User: user, Pass: pass}.AsMechanism()
}

// linkCutter wraps a broker's listener: while cut, every connection is
// closed and new ones are closed as they come (a link down).
type linkCutter struct {
	net.Listener
	mu    sync.Mutex
	cut   bool
	conns []net.Conn
}

func (l *linkCutter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if l.cut {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.conns = append(l.conns, c)
		l.mu.Unlock()
		return c, nil
	}
}

func (l *linkCutter) set(cut bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = cut
	if cut {
		for _, c := range l.conns {
			c.Close()
		}
		l.conns = nil
	}
}

// The link goes down mid-stream and comes back: the status shows it down
// with why, and the copy is then every record once, in order. The edge
// topic grows a partition meanwhile: the target topic grows with it.
func TestKafkaMirrorLinkDownAndUpAndGrowth(t *testing.T) {
	var cutters []*linkCutter
	var mu sync.Mutex
	c := kafkaCluster(t, kfake.ListenFn(func(network, addr string) (net.Listener, error) {
		ln, err := net.Listen(network, addr)
		if err != nil {
			return nil, err
		}
		lc := &linkCutter{Listener: ln}
		mu.Lock()
		cutters = append(cutters, lc)
		mu.Unlock()
		return lc, nil
	}))
	cut := func(v bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, lc := range cutters {
			lc.set(v)
		}
	}
	brokers := c.ListenAddrs()
	dir := t.TempDir()
	l := openLog(t, dir)
	if _, err := l.CreateTopic("telemetry", 2, nil); err != nil {
		t.Fatal(err)
	}
	produceWithHeaders(t, l, "telemetry", 0, 10, "a")
	k := KafkaOptions{Brokers: brokers}
	s, err := NewSender(SenderOptions{Log: l, StatePath: filepath.Join(dir, "mirror.db"), EdgeID: "gw1", Kafka: &k,
		ChunkBytes: 4 << 10, AckTimeout: 2 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	l.SetShipper(s)
	ctx, cancel := context.WithCancel(context.Background())
	e := &edgeNode{log: l, sender: s, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(e.done); s.Run(ctx) }()
	t.Cleanup(e.stop)
	checkKafkaCopy(t, s, brokers, l, "telemetry", "gw1.telemetry", false)

	cut(true)
	produceWithHeaders(t, l, "telemetry", 0, 10, "b")
	produceWithHeaders(t, l, "telemetry", 1, 10, "b")
	if err := l.AddPartitions("telemetry", 3); err != nil {
		t.Fatal(err)
	}
	produceWithHeaders(t, l, "telemetry", 2, 5, "b")
	waitFor(t, "the link down in the status", func() bool {
		st := s.Status()
		return !st.LinkUp && st.LastError != nil && st.Failures > 0
	})
	if s.Acked("telemetry", 0) != 100 {
		t.Fatalf("acknowledged %d while the link was down, want 100", s.Acked("telemetry", 0))
	}
	cut(false)
	checkKafkaCopy(t, s, brokers, l, "telemetry", "gw1.telemetry", false)
	if st := s.Status(); !st.LinkUp || len(st.Partitions) != 3 {
		t.Errorf("status after the link came back: %+v", st)
	}
}

// The rate cap counts bytes on the wire into a Kafka target too, though
// the producer compresses after the gate: a capped backlog moves at about
// the cap in compressed bytes, not at the cap in stored bytes (eight
// times slower on these records).
func TestKafkaMirrorRateCapCountsWireBytes(t *testing.T) {
	c := kafkaCluster(t, kfake.NumBrokers(1))
	brokers := c.ListenAddrs()
	dir := t.TempDir()
	l := openLog(t, dir)
	if _, err := l.CreateTopic("telemetry", 1, nil); err != nil {
		t.Fatal(err)
	}
	produceWithHeaders(t, l, "telemetry", 0, 600, "a")
	part, _ := l.Partition("telemetry", 0)
	const capRate = 16 << 10
	k := KafkaOptions{Brokers: brokers}
	s, err := NewSender(SenderOptions{Log: l, StatePath: filepath.Join(dir, "mirror.db"), EdgeID: "gw1", Kafka: &k,
		ChunkBytes: 8 << 10, RateLimit: capRate, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	l.SetShipper(s)
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	e := &edgeNode{log: l, sender: s, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(e.done); s.Run(ctx) }()
	t.Cleanup(e.stop)
	deadline := time.Now().Add(60 * time.Second)
	for s.Acked("telemetry", 0) < part.EndOffset() {
		if time.Now().After(deadline) {
			t.Fatalf("acknowledged %d of %d in 60 s", s.Acked("telemetry", 0), part.EndOffset())
		}
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start).Seconds()
	wire, raw := float64(s.state.wireBytes.Load()), float64(s.state.rawBytes.Load())
	rate := wire / elapsed
	t.Logf("%.0f wire bytes (%.0f raw) in %.1f s: %.0f B/s under a cap of %d", wire, raw, elapsed, rate, capRate)
	if rate > 1.25*capRate+4096/elapsed {
		t.Errorf("%.0f B/s on the wire, over the cap of %d", rate, capRate)
	}
	if rate < 0.4*capRate {
		t.Errorf("%.0f B/s on the wire under a cap of %d: the cap is counting stored bytes", rate, capRate)
	}
}

// A target topic of the edge's name whose tail holds someone else's
// records (no ferry.offset) is not taken for the edge's copy: nothing is
// shipped into it, and the status says why.
func TestKafkaMirrorRefusesAForeignTopic(t *testing.T) {
	c := kafkaCluster(t, kfake.NumBrokers(1), kfake.SeedTopics(1, "gw1.telemetry"))
	brokers := c.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("gw1.telemetry"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("not the edge's")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l := openLog(t, dir)
	if _, err := l.CreateTopic("telemetry", 1, nil); err != nil {
		t.Fatal(err)
	}
	produceWithHeaders(t, l, "telemetry", 0, 1, "a")
	e := startKafkaSender(t, l, dir, "gw1", KafkaOptions{Brokers: brokers}, nil)
	waitFor(t, "the refusal in the status", func() bool {
		le := e.sender.Status().LastError
		return le != nil && le.Reason == reasonTarget && strings.Contains(le.Message, "not this edge's copy")
	})
	if got := readTarget(t, brokers, "gw1.telemetry", 0, false); len(got) != 1 {
		t.Fatalf("the foreign topic has %d records, want its 1", len(got))
	}
}
