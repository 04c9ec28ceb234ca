package kafka

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Kafka semantics that clients' own test suites check (issue 17), each
// asserted with a real client.

// TestOffsetCommitToUnknownTopicOrPartitionIsRefused: a commit naming a
// topic that does not exist, or a partition past a topic's count, is
// answered UNKNOWN_TOPIC_OR_PARTITION for those partitions and stores
// nothing for them, while the request's valid partitions are committed.
func TestOffsetCommitToUnknownTopicOrPartitionIsRefused(t *testing.T) {
	b := startBroker(t, func(o *Options) { o.AutoCreateTopics = false })
	if _, err := b.log.CreateTopic("known", 2, nil); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(b.client(t))
	ctx := ctxT(t)
	offs := kadm.Offsets{}
	offs.AddOffset("known", 0, 5, -1)
	offs.AddOffset("known", 7, 5, -1) // past the topic's two partitions
	offs.AddOffset("nowhere", 0, 5, -1)
	resp, err := adm.CommitOffsets(ctx, "g-unknown", offs)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := resp.Lookup("known", 0); r.Err != nil {
		t.Fatalf("known-0: %v", r.Err)
	}
	for _, tp := range []struct {
		topic string
		p     int32
	}{{"known", 7}, {"nowhere", 0}} {
		r, ok := resp.Lookup(tp.topic, tp.p)
		if !ok || !errors.Is(r.Err, kerr.UnknownTopicOrPartition) {
			t.Fatalf("%s-%d: %+v (answered: %v), want UNKNOWN_TOPIC_OR_PARTITION", tp.topic, tp.p, r, ok)
		}
	}
	fetched, err := adm.FetchOffsets(ctx, "g-unknown")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := fetched.Lookup("known", 0); !ok || o.At != 5 {
		t.Fatalf("known-0 committed %+v", o)
	}
	if _, ok := fetched.Lookup("nowhere", 0); ok {
		t.Fatal("an offset was stored for a topic that does not exist")
	}
	if _, ok := fetched.Lookup("known", 7); ok {
		t.Fatal("an offset was stored for a partition that does not exist")
	}
	if _, err := b.log.Topic("nowhere"); err == nil {
		t.Fatal("the commit created the topic")
	}
}

// TestDescribeGroupsOfAnUnknownGroupIsDead: a group with neither members
// nor committed offsets is Dead; one with offsets only is Empty.
func TestDescribeGroupsOfAnUnknownGroupIsDead(t *testing.T) {
	b := startBroker(t, nil)
	if _, err := b.log.CreateTopic("dg", 1, nil); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(b.client(t))
	ctx := ctxT(t)
	offs := kadm.Offsets{}
	offs.AddOffset("dg", 0, 1, -1)
	if resp, err := adm.CommitOffsets(ctx, "with-offsets", offs); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", resp, err)
	}
	described, err := adm.DescribeGroups(ctx, "never-was", "with-offsets")
	if err != nil {
		t.Fatal(err)
	}
	if g := described["never-was"]; g.Err != nil || g.State != "Dead" || len(g.Members) != 0 {
		t.Fatalf("unknown group: %+v, want Dead with no error", g)
	}
	if g := described["with-offsets"]; g.Err != nil || g.State != "Empty" {
		t.Fatalf("group with offsets only: %+v, want Empty", g)
	}
	// Deleted, it is gone: Dead again.
	if del, err := adm.DeleteGroups(ctx, "with-offsets"); err != nil || del["with-offsets"].Err != nil {
		t.Fatalf("delete: %+v %v", del, err)
	}
	described, err = adm.DescribeGroups(ctx, "with-offsets")
	if err != nil || described["with-offsets"].State != "Dead" {
		t.Fatalf("deleted group: %+v %v, want Dead", described, err)
	}
}

// TestTransactionalProducerFailsFast: transactions are not supported; a
// transactional franz-go producer gets UNSUPPORTED_VERSION at once (from
// FindCoordinator and from InitProducerId alike) instead of retrying a
// retriable error for tens of seconds.
func TestTransactionalProducerFailsFast(t *testing.T) {
	b := startBroker(t, nil)
	if _, err := b.log.CreateTopic("txn", 1, nil); err != nil {
		t.Fatal(err)
	}
	cl := b.client(t, kgo.TransactionalID("ferry-txn"), kgo.DefaultProduceTopic("txn"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err := cl.BeginTransaction()
	if err == nil {
		err = cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr()
	}
	if !errors.Is(err, kerr.UnsupportedVersion) {
		t.Fatalf("transactional produce after %v: %v, want UNSUPPORTED_VERSION", time.Since(start), err)
	}

	// InitProducerId itself, asked of the broker directly (a client would
	// route it to the transaction coordinator it could not find).
	req := kmsg.NewPtrInitProducerIDRequest()
	req.TransactionalID, req.TransactionTimeoutMillis = kmsg.StringPtr("ferry-txn"), 60000
	resp, err := req.RequestWith(ctx, b.client(t).Broker(int(b.srv.opts.NodeID)))
	if err != nil || resp.ErrorCode != kerr.UnsupportedVersion.Code || resp.ProducerID != -1 {
		t.Fatalf("InitProducerId with a transactional id: %+v %v", resp, err)
	}
}
