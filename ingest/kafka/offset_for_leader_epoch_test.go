package kafka

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

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
			part(0, -1, 2), // (2, 6): epoch 5 began at 6
			part(0, -1, 3), // unknown, between: (2, 6)
			part(0, -1, 5), // the latest: (5, end 8)
			part(0, -1, 1), // older than any: (1, 2)
			part(0, -1, 9), // newer than any: undefined
			part(1, -1, 0), // never stamped, the epoch a node alone leads at: (0, end 1)
			part(1, 1, 0),  // the client's metadata is ahead
			part(7, -1, 0), // no such partition
		)
		want := []struct {
			code  int16
			epoch int32
			end   int64
		}{{0, 2, 6}, {0, 2, 6}, {0, 5, 8}, {0, 1, 2}, {0, -1, -1}, {0, 0, 1},
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
