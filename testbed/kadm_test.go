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
	return listOffsets(t, cl, topic, kadm.NewClient(cl).ListEndOffsets)
}

// listOffsets lists a topic's start or end offsets, by partition.
func listOffsets(t testing.TB, cl *kgo.Client, topic string, list func(context.Context, ...string) (kadm.ListedOffsets, error)) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lo, err := list(ctx, topic)
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
func endsOf(t testing.TB, addr, topic string) map[int32]int64 { return offsetsAt(t, addr, topic, true) }

// startsOf is the start offsets of a topic at the broker at addr.
func startsOf(t testing.TB, addr, topic string) map[int32]int64 {
	return offsetsAt(t, addr, topic, false)
}

func offsetsAt(t testing.TB, addr, topic string, end bool) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	list := adm.ListStartOffsets
	if end {
		list = adm.ListEndOffsets
	}
	return listOffsets(t, cl, topic, list)
}

// sumEnds is how many offsets a topic's partitions hold in all.
func sumEnds(ends map[int32]int64) (n int64) {
	for _, e := range ends {
		n += e
	}
	return n
}
