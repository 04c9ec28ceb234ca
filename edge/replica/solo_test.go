package replica_test

import (
	"context"
	"errors"
	"net"
	"testing"

	"ferry/edge/replica"
	flog "ferry/log"
)

// soloMeta is a cluster of one broker leading one partition alone.
type soloMeta struct{ a replica.Assignment }

func (m soloMeta) Self() int32 { return 1 }
func (m soloMeta) Assignments() ([]replica.Assignment, <-chan struct{}) {
	return []replica.Assignment{m.a}, make(chan struct{})
}
func (m soloMeta) AlterPartition(context.Context, string, int32, int32, int32, []int32) (int32, error) {
	return 0, errors.New("not in this test")
}
func (m soloMeta) Dial(context.Context, int32) (net.Conn, error) { return nil, errors.New("no peers") }

// A partition whose records a node alone acknowledged, led by that node
// alone in its ISR once it is node 1 of a cluster: its high watermark is
// its durable end from the moment it leads, never 0 while the leader's
// loop has not run yet (ListOffsets answered 0 records after an upgrade).
func TestLeaderAloneInISRStartsAtItsDurableEnd(t *testing.T) {
	l, err := flog.Open(flog.Options{Dir: t.TempDir(), RetentionCheckInterval: -1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.CreateTopicWithID(topic, [16]byte{1}, 1, nil); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition(topic, 0)
	for i := 0; i < 5; i++ {
		if _, err := p.Append(flog.AppendBatch(nil, []flog.Record{{Value: []byte("a")}, {Value: []byte("b")}, {Value: []byte("c")}})); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	end := p.EndOffset()
	for i := 0; i < 50; i++ { // each start races the leader's own loop
		m, err := replica.New(replica.Options{Log: l, Logger: quiet, Metadata: soloMeta{replica.Assignment{Topic: topic, TopicID: [16]byte{1},
			Replicas: []int32{1}, ISR: []int32{1}, Leader: 1, LeaderEpoch: int32(i + 1), PartitionEpoch: 1, MinISR: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		m.Start()
		poll(t, "leading", func() bool { _, ok := m.Leader(topic, 0); return ok })
		if ld, _ := m.Leader(topic, 0); ld.HighWatermark() != end {
			t.Fatalf("start %d: leading with high watermark %d, the durable end is %d", i, ld.HighWatermark(), end)
		}
		m.Close()
	}
}
