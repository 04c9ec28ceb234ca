package kafka

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// fakeReplication leads every partition of its log at epoch, with a high
// watermark the test sets, and records followers' fetch offsets.
type fakeReplication struct {
	log     *flog.Log
	epoch   int32
	hw      atomic.Int64
	start   atomic.Int64 // EpochStartOffset
	follows atomic.Bool  // leads nothing: a follower of every partition
	mu      sync.Mutex
	fetched map[int32]int64
}

type fakeLeader struct {
	r *fakeReplication
	p *flog.Partition
}

func (r *fakeReplication) Leader(topic string, partition int32) (ReplicaLeader, bool) {
	if r.follows.Load() {
		return nil, false
	}
	p, err := r.log.Partition(topic, partition)
	if err != nil {
		return nil, false
	}
	return fakeLeader{r, p}, true
}

func (l fakeLeader) LeaderEpoch() int32 { return l.r.epoch }
func (l fakeLeader) Append(b []byte, acksAll bool) (flog.AppendResult, error) {
	return l.p.Append(b)
}
func (l fakeLeader) FollowerFetched(replica int32, off, logStart int64) error {
	l.r.mu.Lock()
	defer l.r.mu.Unlock()
	l.r.fetched[replica] = off
	return nil
}
func (l fakeLeader) HighWatermark() int64    { return l.r.hw.Load() }
func (l fakeLeader) EpochStartOffset() int64 { return l.r.start.Load() }
func (l fakeLeader) WaitCommitted(ctx context.Context, off int64) error {
	<-ctx.Done()
	return ctx.Err()
}

// replicaListener serves ServeReplica on a listener of its own, as the
// cluster listener hands connections over.
func replicaListener(t *testing.T, srv *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); srv.ServeReplica(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); srv.Close(); wg.Wait() })
	return ln.Addr().String()
}

// startReplicatedBroker starts a broker led by a fake replica manager (at
// leader epoch 3) with topic "r" of one partition, which it returns.
func startReplicatedBroker(t *testing.T) (*testBroker, *fakeReplication, *flog.Partition) {
	t.Helper()
	repl := &fakeReplication{epoch: 3, fetched: map[int32]int64{}}
	b := startBroker(t, func(o *Options) { o.Replication = repl })
	repl.log = b.log
	if _, err := b.log.CreateTopic("r", 1, nil); err != nil {
		t.Fatal(err)
	}
	p, _ := b.log.Partition("r", 0)
	return b, repl, p
}

// A follower's fetch is served only on a replica connection: there it
// reads past the high watermark, reports the follower's offset and is told
// where its log diverges; on the client listener it is refused, and a
// consumer reads below the high watermark only.
func TestFollowerFetchServedOnlyOnReplicaConnection(t *testing.T) {
	b, repl, p := startReplicatedBroker(t)
	p.SetLeaderEpoch(2)
	for i := 0; i < 2; i++ { // epoch 2: offsets 0-3
		p.Append(flog.AppendBatch(nil, []flog.Record{{Value: []byte("a")}, {Value: []byte("b")}}))
	}
	p.SetLeaderEpoch(3)
	p.Append(flog.AppendBatch(nil, []flog.Record{{Value: []byte("c")}, {Value: []byte("d")}})) // epoch 3: 4-5
	repl.hw.Store(4)

	fetch := func(addr string, replica, current, lastEpoch int32, offset int64) kmsg.FetchResponseTopicPartition {
		t.Helper()
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		req := kmsg.NewPtrFetchRequest()
		req.SetVersion(12)
		req.ReplicaID, req.MaxBytes, req.MaxWaitMillis = replica, 1<<20, 0
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "r"
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.FetchOffset, rp.CurrentLeaderEpoch, rp.LastFetchedEpoch, rp.PartitionMaxBytes = offset, current, lastEpoch, 1<<20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctxT(t), cl.SeedBrokers()[0])
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0]
	}
	records := func(sp kmsg.FetchResponseTopicPartition) int64 { return recordsFrom(sp.RecordBatches, 0) }

	if sp := fetch(b.addr, 2, 3, 2, 0); sp.ErrorCode != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("follower fetch on the client listener: error %d, want TOPIC_AUTHORIZATION_FAILED", sp.ErrorCode)
	}
	if len(repl.fetched) != 0 {
		t.Fatalf("a refused follower fetch was recorded: %v", repl.fetched)
	}
	if sp := fetch(b.addr, -1, 3, -1, 0); sp.ErrorCode != 0 || sp.HighWatermark != 4 || records(sp) != 4 {
		t.Fatalf("consumer fetch: error %d, HW %d, %d records; want 0, 4, 4 (below the HW)", sp.ErrorCode, sp.HighWatermark, records(sp))
	}
	if sp := fetch(b.addr, -1, 2, -1, 0); sp.ErrorCode != kerr.FencedLeaderEpoch.Code {
		t.Fatalf("consumer fetch at an older epoch: error %d, want FENCED_LEADER_EPOCH", sp.ErrorCode)
	}

	raddr := replicaListener(t, b.srv)
	if sp := fetch(raddr, 2, 3, 2, 2); sp.ErrorCode != 0 || records(sp) != 4 || sp.DivergingEpoch.Epoch != -1 {
		t.Fatalf("follower fetch: error %d, %d records, diverging %v; want 0, 4 (to the end), none", sp.ErrorCode, records(sp), sp.DivergingEpoch)
	}
	if n := b.srv.RecordsServed(); n != 4 {
		t.Fatalf("RecordsServed %d after a consumer's 4 records and a follower's, want 4 (replication is not consumption)", n)
	}
	repl.mu.Lock()
	got := repl.fetched[2]
	repl.mu.Unlock()
	if got != 2 {
		t.Fatalf("follower 2's fetch offset recorded as %d, want 2", got)
	}
	// Epoch 2 ended at 4 here: a follower at 5 that last fetched epoch 2
	// diverges there.
	if sp := fetch(raddr, 2, 3, 2, 5); sp.DivergingEpoch.Epoch != 2 || sp.DivergingEpoch.EndOffset != 4 || len(sp.RecordBatches) != 0 {
		t.Fatalf("diverging follower: %v with %d bytes, want epoch 2 ending at 4, no records", sp.DivergingEpoch, len(sp.RecordBatches))
	}
	if sp := fetch(raddr, 3, 3, -1, 9); sp.ErrorCode != kerr.OffsetOutOfRange.Code || sp.LogStartOffset != 0 {
		t.Fatalf("follower past the leader's end: error %d, log start %d; want OFFSET_OUT_OF_RANGE, 0", sp.ErrorCode, sp.LogStartOffset)
	}
	repl.mu.Lock()
	_, recorded := repl.fetched[3]
	repl.mu.Unlock()
	if recorded {
		t.Fatal("a fetch offset past the leader's end was recorded as the follower's end")
	}
	if sp := fetch(raddr, 2, 4, 3, 6); sp.ErrorCode != kerr.UnknownLeaderEpoch.Code {
		t.Fatalf("follower ahead of the leader's epoch: error %d, want UNKNOWN_LEADER_EPOCH", sp.ErrorCode)
	}
	if sp := fetch(raddr, 2, 2, 2, 4); sp.ErrorCode != kerr.FencedLeaderEpoch.Code {
		t.Fatalf("follower of an older epoch: error %d, want FENCED_LEADER_EPOCH", sp.ErrorCode)
	}

	// ListOffsets(latest) is the high watermark.
	if off := listOffsets(t, b.client(t), "r", -1, -1, -1).Offset; off != 4 {
		t.Fatalf("ListOffsets(latest) = %d, want the high watermark 4", off)
	}
}

// ListOffsets of a replicated partition answers as Kafka's leader does:
// only the leader, fenced by CurrentLeaderEpoch; lookups by time find only
// committed records; a new leader whose high watermark lags the start of
// its epoch answers OFFSET_NOT_AVAILABLE rather than an end that went back;
// each offset with the leader epoch of its records.
func TestListOffsetsOfReplicatedPartition(t *testing.T) {
	b, repl, p := startReplicatedBroker(t)
	p.SetLeaderEpoch(2)
	for _, ts := range []int64{1000, 2000} { // epoch 2: offsets 0-3
		p.Append(flog.AppendBatch(nil, []flog.Record{{Value: []byte("a"), Timestamp: ts}, {Value: []byte("b"), Timestamp: ts}}))
	}
	p.SetLeaderEpoch(3)
	p.Append(flog.AppendBatch(nil, []flog.Record{{Value: []byte("c"), Timestamp: 3000}, {Value: []byte("d"), Timestamp: 3000}})) // epoch 3: 4-5
	repl.start.Store(4)                                                                                                          // this node became leader at epoch 3 with its log ending at 4
	repl.hw.Store(4)

	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	listIn := func(topic string, replica, current int32, ts int64) kmsg.ListOffsetsResponseTopicPartition {
		t.Helper()
		return listOffsets(t, cl.SeedBrokers()[0], topic, replica, current, ts)
	}
	list := func(replica, current int32, ts int64) kmsg.ListOffsetsResponseTopicPartition {
		t.Helper()
		return listIn("r", replica, current, ts)
	}
	type want struct {
		code   int16
		offset int64
		epoch  int32
	}
	check := func(what string, got kmsg.ListOffsetsResponseTopicPartition, w want) {
		t.Helper()
		if w.code != 0 {
			w.offset, w.epoch = -1, -1 // an error answers no offset and leader epoch -1, as Kafka's
		}
		if got.ErrorCode != w.code || got.Offset != w.offset || got.LeaderEpoch != w.epoch {
			t.Errorf("%s: error %d, offset %d, epoch %d; want %+v", what, got.ErrorCode, got.Offset, got.LeaderEpoch, w)
		}
	}
	check("latest", list(-1, 3, -1), want{0, 4, 3})
	check("earliest", list(-1, -1, -2), want{0, 0, 2})
	check("by a committed time", list(-1, -1, 1500), want{0, 2, 2})
	check("by a time only uncommitted records reach", list(-1, -1, 2500), want{0, -1, -1})
	check("max timestamp, uncommitted", list(-1, -1, -3), want{0, -1, -1})
	check("by a time past the end", list(-1, -1, 9000), want{0, -1, -1})
	check("an older current epoch", list(-1, 2, -1), want{code: kerr.FencedLeaderEpoch.Code})
	check("a newer current epoch", list(-1, 4, -1), want{code: kerr.UnknownLeaderEpoch.Code})

	// A new leader (epoch 3 starts at 4) whose high watermark is still
	// below its epoch's start.
	repl.hw.Store(3)
	check("latest, lagging", list(-1, 3, -1), want{code: kerr.OffsetNotAvailable.Code})
	check("by a committed time, lagging", list(-1, -1, 1500), want{0, 2, 2})
	check("by an uncommitted time, lagging", list(-1, -1, 2500), want{code: kerr.OffsetNotAvailable.Code})
	// No record at all reaches the time: nothing committed either.
	check("by a time past the end, lagging", list(-1, -1, 9000), want{code: kerr.OffsetNotAvailable.Code})
	// No record carries a timestamp: max timestamp finds none.
	if _, err := b.log.CreateTopic("n", 1, nil); err != nil {
		t.Fatal(err)
	}
	pn, _ := b.log.Partition("n", 0)
	pn.SetLeaderEpoch(2)
	for range 4 { // epoch 2: 0-3; epoch 3 starts at 4, above the high watermark
		pn.Append(flog.AppendBatch(nil, []flog.Record{{Value: []byte("a"), Timestamp: -1}}))
	}
	pn.SetLeaderEpoch(3)
	pn.Append(flog.AppendBatch(nil, []flog.Record{{Value: []byte("b"), Timestamp: -1}}))
	check("max timestamp, none carried, lagging", listIn("n", -1, -1, -3), want{code: kerr.OffsetNotAvailable.Code})

	repl.follows.Store(true)
	check("a follower, earliest", list(-1, -1, -2), want{code: kerr.NotLeaderForPartition.Code})
	check("a follower, by time", list(-1, -1, 1500), want{code: kerr.NotLeaderForPartition.Code})
	check("a follower, to the debugging replica", list(-2, -1, -2), want{0, 0, 2})
}

// listOffsets asks r one ListOffsets of partition 0 of topic, from replica
// (-1: a client), with CurrentLeaderEpoch current, for timestamp ts.
func listOffsets(t *testing.T, r kmsg.Requestor, topic string, replica, current int32, ts int64) kmsg.ListOffsetsResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = replica
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Timestamp, rp.CurrentLeaderEpoch = ts, current
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxT(t), r)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Topics[0].Partitions[0]
}
