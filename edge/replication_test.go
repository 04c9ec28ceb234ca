package edge

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"ferry/edge/replica"
	flog "ferry/log"
)

// soloMeta: node 1 leads a-0 alone and follows b-0, led by an unreachable
// node 2; c is not in the metadata.
type soloMeta struct{}

func (soloMeta) Self() int32 { return 1 }
func (soloMeta) Assignments() ([]replica.Assignment, <-chan struct{}) {
	return []replica.Assignment{
		{Topic: "a", Partition: 0, Replicas: []int32{1}, ISR: []int32{1}, Leader: 1, LeaderEpoch: 1, PartitionEpoch: 1, MinISR: 1},
		{Topic: "b", Partition: 0, Replicas: []int32{2, 1}, ISR: []int32{2, 1}, Leader: 2, LeaderEpoch: 1, PartitionEpoch: 1, MinISR: 1},
	}, nil
}
func (soloMeta) AlterPartition(context.Context, string, int32, int32, int32, []int32) (int32, error) {
	return 0, errors.New("no controller")
}
func (soloMeta) Dial(context.Context, int32) (net.Conn, error) { return nil, errors.New("unreachable") }

// The mirror's target on a replicating node: a partition it leads is a
// committed copy, one it follows is refused, one it does not replicate is
// the log's own; the Kafka front end's view leads what the manager leads.
func TestReplicatedTargets(t *testing.T) {
	l, err := flog.Open(flog.Options{Dir: t.TempDir(), RetentionCheckInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, name := range []string{"a", "b", "c"} {
		if _, err := l.CreateTopic(name, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	m, err := replica.New(replica.Options{Log: l, Metadata: soloMeta{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	m.Start()
	defer m.Close()
	deadline := time.Now().Add(5 * time.Second)
	for _, ok := m.Leader("a", 0); !ok; _, ok = m.Leader("a", 0) {
		if time.Now().After(deadline) {
			t.Fatal("a-0 never led")
		}
		time.Sleep(5 * time.Millisecond)
	}
	target := ReplicatedMirrorTarget(l, m)
	if c, err := target.Partition("a", 0); err != nil {
		t.Fatal(err)
	} else if _, ok := c.(*replica.CommittedCopy); !ok {
		t.Fatalf("a-0 is a %T, want the committed copy", c)
	}
	if _, err := target.Partition("b", 0); !errors.Is(err, flog.ErrNotLeader) {
		t.Fatalf("b-0 (followed): %v, want ErrNotLeader", err)
	}
	if c, err := target.Partition("c", 0); err != nil {
		t.Fatal(err)
	} else if _, ok := c.(*flog.Partition); !ok {
		t.Fatalf("c-0 is a %T, want the log's partition", c)
	}
	kr := KafkaReplication(m)
	if _, ok := kr.Leader("a", 0); !ok {
		t.Fatal("the Kafka view does not lead a-0")
	}
	if _, ok := kr.Leader("b", 0); ok {
		t.Fatal("the Kafka view leads b-0, which node 2 leads")
	}
}
