package kafka

import (
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	flog "ferry/log"
)

// OffsetForLeaderEpoch answers from the log's leader-epoch cache, as
// Kafka's endOffsetFor, fences on CurrentLeaderEpoch, and is advertised by
// ApiVersions from the registry.
func TestOffsetForLeaderEpoch(t *testing.T) {
	b := startBroker(t, nil)
	if _, err := b.log.CreateTopic("ep", 2, nil); err != nil {
		t.Fatal(err)
	}
	p, _ := b.log.Partition("ep", 0)
	appendN := func(n int) {
		for i := 0; i < n; i++ {
			if _, err := p.Append(flog.AppendBatch(nil, []flog.Record{{Value: []byte("v")}, {Value: []byte("w")}})); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN(1) // offsets 0-1: a node alone's, unstamped
	p.SetLeaderEpoch(2)
	appendN(2) // epoch 2 from 2
	p.SetLeaderEpoch(5)
	appendN(1) // epoch 5 from 6, end 8
	q, _ := b.log.Partition("ep", 1)
	q.Append(flog.AppendBatch(nil, []flog.Record{{Value: []byte("x")}}))

	cl := b.client(t)
	c := cl.Broker(int(b.srv.opts.NodeID)) // as sent, not split by partition
	ask := func(version int16, parts ...kmsg.OffsetForLeaderEpochRequestTopicPartition) []kmsg.OffsetForLeaderEpochResponseTopicPartition {
		t.Helper()
		req := kmsg.NewPtrOffsetForLeaderEpochRequest()
		req.SetVersion(version)
		req.ReplicaID = -1
		rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
		rt.Topic = "ep"
		rt.Partitions = parts
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctxT(t), c)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions
	}
	part := func(partition, current, epoch int32) kmsg.OffsetForLeaderEpochRequestTopicPartition {
		rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
		rp.Partition, rp.CurrentLeaderEpoch, rp.LeaderEpoch = partition, current, epoch
		return rp
	}
	for _, v := range []int16{2, 4} {
		got := ask(v,
			part(0, -1, 2),  // (2, 6): epoch 5 began at 6
			part(0, -1, 3),  // unknown, between: (2, 6)
			part(0, -1, 5),  // the latest: (5, end 8)
			part(0, -1, 1),  // older than any: (1, 2)
			part(0, -1, 9),  // newer than any: undefined
			part(1, -1, 0),  // never stamped (a node alone): nothing ever cut, (0, end 1)
			part(1, -1, 7),  // whatever epoch a client wrote in its batches: (7, end 1)
			part(1, -1, -1), // undefined
			part(1, 1, 0),   // the client's metadata is ahead
			part(7, -1, 0),  // no such partition
		)
		want := []struct {
			code  int16
			epoch int32
			end   int64
		}{{0, 2, 6}, {0, 2, 6}, {0, 5, 8}, {0, 1, 2}, {0, -1, -1}, {0, 0, 1}, {0, 7, 1}, {0, -1, -1},
			{kerr.UnknownLeaderEpoch.Code, -1, -1}, {kerr.UnknownTopicOrPartition.Code, -1, -1}}
		for i, w := range want {
			if g := got[i]; g.ErrorCode != w.code || g.LeaderEpoch != w.epoch || g.EndOffset != w.end {
				t.Errorf("v%d request %d: error %d epoch %d end %d, want %d %d %d", v, i, g.ErrorCode, g.LeaderEpoch, g.EndOffset, w.code, w.epoch, w.end)
			}
		}
	}
	if n := testutil.ToFloat64(b.srv.metrics.partErrors.WithLabelValues("OffsetForLeaderEpoch", "UNKNOWN_LEADER_EPOCH")); n != 2 {
		t.Errorf("UNKNOWN_LEADER_EPOCH counted %v times, want 2", n)
	}

	av, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctxT(t), c)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, k := range av.ApiKeys {
		if k.ApiKey == 23 {
			found = k.MinVersion == 2 && k.MaxVersion == 4
		}
	}
	if !found {
		t.Error("ApiVersions does not advertise OffsetForLeaderEpoch v2-4")
	}
}

// epochCluster is a node alone whose partitions are led at epoch 3.
type epochCluster struct{ srv atomic.Pointer[Server] }

func (c *epochCluster) solo() soloCluster                   { return soloCluster{c.srv.Load()} }
func (c *epochCluster) Brokers() []Broker                   { return c.solo().Brokers() }
func (c *epochCluster) Controller() int32                   { return c.solo().Controller() }
func (c *epochCluster) Coordinator(g string) (Broker, bool) { return c.solo().Coordinator(g) }
func (c *epochCluster) Partition(topic string, partition int32) (PartitionView, bool) {
	pv, ok := c.solo().Partition(topic, partition)
	pv.LeaderEpoch = 3
	return pv, ok
}

// allowOnly allows DESCRIBE on one topic, and CLUSTER_ACTION when set.
type allowOnly struct {
	denyAll
	topic   string
	cluster bool
}

func (a allowOnly) Authorize(principal, host, rt, name, op string) bool {
	switch {
	case rt == "TOPIC" && op == "DESCRIBE" && name == a.topic:
		return true
	case rt == "CLUSTER" && op == "CLUSTER_ACTION":
		return a.cluster
	}
	return false
}

// CurrentLeaderEpoch fences against the epoch the cluster view reports; a
// consumer needs DESCRIBE on the topic, a broker CLUSTER_ACTION.
func TestOffsetForLeaderEpochFencesAndAuthorizes(t *testing.T) {
	ec := &epochCluster{}
	b := startBroker(t, func(o *Options) { o.Cluster = ec })
	ec.srv.Store(b.srv)
	b.log.CreateTopic("ep", 1, nil)
	p, _ := b.log.Partition("ep", 0)
	p.SetLeaderEpoch(3)
	p.Append(flog.AppendBatch(nil, []flog.Record{{Value: []byte("v")}, {Value: []byte("w")}}))

	ask := func(cl *kgo.Client, topic string, current, epoch int32) kmsg.OffsetForLeaderEpochResponseTopicPartition {
		t.Helper()
		req := kmsg.NewPtrOffsetForLeaderEpochRequest()
		req.ReplicaID = -1
		rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
		rp.CurrentLeaderEpoch, rp.LeaderEpoch = current, epoch
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctxT(t), cl.Broker(int(b.srv.opts.NodeID)))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0]
	}
	cl := b.client(t)
	for _, tc := range []struct {
		current int32
		code    int16
		end     int64
	}{{2, kerr.FencedLeaderEpoch.Code, -1}, {4, kerr.UnknownLeaderEpoch.Code, -1}, {3, 0, 2}, {-1, 0, 2}} {
		if g := ask(cl, "ep", tc.current, 3); g.ErrorCode != tc.code || g.EndOffset != tc.end {
			t.Errorf("current epoch %d: error %d end %d, want %d %d", tc.current, g.ErrorCode, g.EndOffset, tc.code, tc.end)
		}
	}

	for _, broker := range []bool{false, true} {
		sb := startBroker(t, func(o *Options) {
			o.SASLMechanisms, o.Credentials, o.AuthFailureDelay = []string{SASLPlain}, memCreds{"alice": "s3cret"}, -1
			o.ACLs = allowOnly{topic: "mine", cluster: broker}
		})
		for _, topic := range []string{"mine", "theirs"} {
			sb.log.CreateTopic(topic, 1, nil)
		}
		scl := sb.client(t, kgo.SASL(plain.Auth{User: "alice", Pass: "s3cret"}.AsMechanism()))
		if g := ask(scl, "mine", -1, 0); g.ErrorCode != 0 || g.EndOffset != 0 {
			t.Errorf("broker %v, DESCRIBE on the topic: error %d end %d", broker, g.ErrorCode, g.EndOffset)
		}
		want := kerr.TopicAuthorizationFailed.Code
		if broker {
			want = 0
		}
		if g := ask(scl, "theirs", -1, 0); g.ErrorCode != want {
			t.Errorf("broker %v, no DESCRIBE on the topic: error %d, want %d", broker, g.ErrorCode, want)
		}
	}
}

// A node alone upgraded from before leader-epoch checkpoints, whose
// batches carry their producers' bytes 12-15 (0 from ferry's own batches,
// 5 from some client): a group consumer resuming from an offset committed
// with epoch 0 validates it with OffsetForLeaderEpoch and goes on from
// there, as it did before the API was served, rather than seeing a false
// truncation (which the clients' values, read as epochs, would suggest:
// epoch 0 "ending" where the 5 begins).
func TestOffsetForLeaderEpochKeepsANodeAlonesConsumers(t *testing.T) {
	dir := t.TempDir()
	l, err := flog.Open(flog.Options{Dir: dir, RetentionCheckInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	l.CreateTopic("up", 1, nil)
	p, _ := l.Partition("up", 0)
	for i := 0; i < 10; i++ {
		b := flog.AppendBatch(nil, []flog.Record{{Value: []byte{byte(i)}, Timestamp: int64(1000 + i)}})
		if i == 5 || i == 6 {
			binary.BigEndian.PutUint32(b[12:], 5) // a client's value, outside the CRC
		}
		if _, err := p.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	os.Remove(filepath.Join(p.Dir(), "leader-epoch-checkpoint")) // as before the upgrade

	b := startBrokerLog(t, func(o *flog.Options) { o.Dir = dir }, nil, nil)
	cl := b.client(t)
	offs := make(kadm.Offsets)
	offs.Add(kadm.Offset{Topic: "up", Partition: 0, At: 8, LeaderEpoch: 0})
	if _, err := kadm.NewClient(cl).CommitOffsets(ctxT(t), "g", offs); err != nil {
		t.Fatal(err)
	}
	c := b.client(t, kgo.ConsumerGroup("g"), kgo.ConsumeTopics("up"))
	ctx := ctxT(t)
	fs := c.PollFetches(ctx)
	if ctx.Err() != nil {
		t.Fatal("nothing consumed")
	}
	fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", topic, p, err) })
	if recs := fs.Records(); len(recs) == 0 || recs[0].Offset != 8 {
		t.Fatalf("resumed at %v, want offset 8 (the committed one)", recs)
	}
	if n := testutil.ToFloat64(b.srv.metrics.requests.WithLabelValues("OffsetForLeaderEpoch")); n == 0 {
		t.Fatal("the consumer did not validate its offset with OffsetForLeaderEpoch: the test proves nothing")
	}
}
