package testbed

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func endOffsets(t testing.TB, cl *kgo.Client, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lo, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	lo.Each(func(o kadm.ListedOffset) {
		if o.Err == nil { // an unknown topic has no ends yet
			out[o.Partition] = o.Offset
		}
	})
	return out
}

// endsOf is endOffsets of a topic at the broker at addr.
func endsOf(t testing.TB, addr, topic string) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	return endOffsets(t, cl, topic)
}

// sumEnds is how many offsets a topic's partitions hold in all.
func sumEnds(ends map[int32]int64) (n int64) {
	for _, e := range ends {
		n += e
	}
	return n
}
