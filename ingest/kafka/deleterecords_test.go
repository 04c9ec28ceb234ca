package kafka

import (
	"errors"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	flog "ferry/log"
)

// fetchAt fetches one partition at offset and returns its answer.
func fetchAt(t *testing.T, cl *kgo.Client, topic string, offset int64) kmsg.FetchResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.MaxWaitMillis, req.MinBytes, req.MaxBytes = 0, 1, 1<<20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.FetchOffset, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = offset, 1<<20, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxT(t), cl)
	if err != nil || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("fetch at %d: %+v %v", offset, resp, err)
	}
	return resp.Topics[0].Partitions[0]
}

// TestDeleteRecords: kadm's DeleteRecords moves the log start (the low
// watermark it answers), -1 meaning the high watermark; fetching below it
// is OFFSET_OUT_OF_RANGE and ListOffsets' earliest answers it; past the
// end is OFFSET_OUT_OF_RANGE, an unknown topic UNKNOWN_TOPIC_OR_PARTITION.
func TestDeleteRecords(t *testing.T) {
	b := startBroker(t, nil)
	if _, err := b.log.CreateTopic("dr", 2, nil); err != nil {
		t.Fatal(err)
	}
	cl := b.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx := ctxT(t)
	for i := range 10 {
		for p := int32(0); p < 2; p++ {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "dr", Partition: p, Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	adm := kadm.NewClient(cl)
	offs := kadm.Offsets{}
	offs.AddOffset("dr", 0, 4, -1)
	offs.AddOffset("dr", 1, -1, -1) // the high watermark
	resp, err := adm.DeleteRecords(ctx, offs)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := resp.Lookup("dr", 0); r.Err != nil || r.LowWatermark != 4 {
		t.Fatalf("dr-0 before 4: %+v", r)
	}
	if r, _ := resp.Lookup("dr", 1); r.Err != nil || r.LowWatermark != 10 {
		t.Fatalf("dr-1 before the high watermark: %+v", r)
	}
	nope := kadm.Offsets{}
	nope.AddOffset("nope", 0, 1, -1)
	if _, err := adm.DeleteRecords(ctx, nope); !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("unknown topic: %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}

	starts, err := adm.ListStartOffsets(ctx, "dr")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := starts.Lookup("dr", 0); o.Offset != 4 {
		t.Fatalf("ListOffsets earliest of dr-0: %+v, want 4", o)
	}
	if o, _ := starts.Lookup("dr", 1); o.Offset != 10 {
		t.Fatalf("ListOffsets earliest of dr-1: %+v, want 10", o)
	}
	if fp := fetchAt(t, cl, "dr", 3); fp.ErrorCode != kerr.OffsetOutOfRange.Code || fp.LogStartOffset != 4 {
		t.Fatalf("fetch below the start: error %d, log start %d; want OFFSET_OUT_OF_RANGE, 4", fp.ErrorCode, fp.LogStartOffset)
	}
	if fp := fetchAt(t, cl, "dr", 4); fp.ErrorCode != 0 || len(fp.RecordBatches) == 0 {
		t.Fatalf("fetch at the start: error %d, %d bytes", fp.ErrorCode, len(fp.RecordBatches))
	}

	// A consumer from the beginning sees the records from the start on.
	cons := b.client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"dr": {0: kgo.NewOffset().AtStart()}}))
	var got []string
	for len(got) < 6 {
		fs := cons.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	if got[0] != "4" || len(got) != 6 {
		t.Fatalf("consumed %v, want 4..9", got)
	}

	past := kadm.Offsets{}
	past.AddOffset("dr", 0, 11, -1)
	resp, err = adm.DeleteRecords(ctx, past)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := resp.Lookup("dr", 0); !errors.Is(r.Err, kerr.OffsetOutOfRange) {
		t.Fatalf("past the end: %+v, want OFFSET_OUT_OF_RANGE", r)
	}
	if p, _ := b.log.Partition("dr", 0); p.StartOffset() != 4 {
		t.Fatalf("a refused delete moved the start to %d", p.StartOffset())
	}
}

// notLeaderCluster is a node alone that says another broker leads every
// partition.
type notLeaderCluster struct{ epochCluster }

func (c *notLeaderCluster) Partition(topic string, partition int32) (PartitionView, bool) {
	pv, ok := c.solo().Partition(topic, partition)
	pv.Leader = 7
	return pv, ok
}

// TestDeleteRecordsNotLeaderAndACL: a partition another broker leads is
// NOT_LEADER_OR_FOLLOWER; with ACLs, DELETE on the topic is needed
// (TOPIC_AUTHORIZATION_FAILED without it), and nothing moves either way.
func TestDeleteRecordsNotLeaderAndACL(t *testing.T) {
	one := func(t *testing.T, cl *kgo.Client) error {
		t.Helper()
		offs := kadm.Offsets{}
		offs.AddOffset("drx", 0, 1, -1)
		resp, err := kadm.NewClient(cl).DeleteRecords(ctxT(t), offs)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := resp.Lookup("drx", 0)
		return r.Err
	}
	produce := func(t *testing.T, b *testBroker) {
		b.log.CreateTopic("drx", 1, nil)
		p, _ := b.log.Partition("drx", 0)
		if _, err := p.Append(flog.AppendBatch(nil, []flog.Record{{Value: []byte("a")}, {Value: []byte("b")}})); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("led elsewhere", func(t *testing.T) {
		nc := &notLeaderCluster{}
		b := startBroker(t, func(o *Options) { o.Cluster = nc })
		nc.srv.Store(b.srv)
		produce(t, b)
		// Straight to this broker: kadm would look for broker 7.
		req := kmsg.NewPtrDeleteRecordsRequest()
		rt := kmsg.NewDeleteRecordsRequestTopic()
		rt.Topic = "drx"
		rp := kmsg.NewDeleteRecordsRequestTopicPartition()
		rp.Offset = 1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctxT(t), b.client(t).SeedBrokers()[0])
		if err != nil {
			t.Fatal(err)
		}
		if code := resp.Topics[0].Partitions[0].ErrorCode; code != kerr.NotLeaderForPartition.Code {
			t.Fatalf("error %d, want NOT_LEADER_OR_FOLLOWER", code)
		}
		if p, _ := b.log.Partition("drx", 0); p.StartOffset() != 0 {
			t.Fatalf("the start moved to %d", p.StartOffset())
		}
	})
	t.Run("ACL", func(t *testing.T) {
		acls := someACLs{{"TOPIC", "drx", "DESCRIBE"}: true}
		b := startBroker(t, func(o *Options) {
			o.SASLMechanisms, o.Credentials, o.ACLs, o.AuthFailureDelay = []string{SASLPlain}, memCreds{"alice": "s3cret"}, acls, -1
		})
		produce(t, b)
		alice := b.client(t, kgo.SASL(plain.Auth{User: "alice", Pass: "s3cret"}.AsMechanism()))
		if err := one(t, alice); !errors.Is(err, kerr.TopicAuthorizationFailed) {
			t.Fatalf("without DELETE: %v, want TOPIC_AUTHORIZATION_FAILED", err)
		}
		acls[[3]string{"TOPIC", "drx", "DELETE"}] = true
		if err := one(t, alice); err != nil {
			t.Fatalf("with DELETE: %v", err)
		}
	})
}

// TestDeleteRecordsOfReplicatedPartition: a leader deletes only committed
// records, as Kafka's deleteRecordsOnLeader: -1 means its high watermark,
// an offset above it is OFFSET_OUT_OF_RANGE, and a follower answers
// NOT_LEADER_OR_FOLLOWER.
func TestDeleteRecordsOfReplicatedPartition(t *testing.T) {
	b, repl, p := startReplicatedBroker(t)
	for range 3 { // offsets 0-5
		p.Append(flog.AppendBatch(nil, []flog.Record{{Value: []byte("a")}, {Value: []byte("b")}}))
	}
	repl.hw.Store(4)
	adm := kadm.NewClient(b.client(t))
	ctx := ctxT(t)
	del := func(off int64) (kadm.DeleteRecordsResponse, error) {
		t.Helper()
		offs := kadm.Offsets{}
		offs.AddOffset("r", 0, off, -1)
		resp, err := adm.DeleteRecords(ctx, offs)
		if err != nil {
			return kadm.DeleteRecordsResponse{}, err
		}
		r, _ := resp.Lookup("r", 0)
		return r, r.Err
	}
	if _, err := del(5); !errors.Is(err, kerr.OffsetOutOfRange) {
		t.Fatalf("above the high watermark: %v, want OFFSET_OUT_OF_RANGE", err)
	}
	if r, err := del(-1); err != nil || r.LowWatermark != 4 {
		t.Fatalf("-1: %+v %v, want the high watermark 4", r, err)
	}
	if p.StartOffset() != 4 {
		t.Fatalf("log start %d, want 4", p.StartOffset())
	}
	repl.follows.Store(true)
	if _, err := del(4); !errors.Is(err, kerr.NotLeaderForPartition) {
		t.Fatalf("a follower: %v, want NOT_LEADER_OR_FOLLOWER", err)
	}
}
