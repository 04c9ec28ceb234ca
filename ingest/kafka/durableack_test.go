package kafka

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	flog "ferry/log"
)

// TestAcksAllDoesNotWaitForFlushMs: under flush.policy=interval with
// flush.ms at its maximum (a minute), a produce with acks=all is answered
// once its records are fsynced, which starts because it waits (group commit
// on demand), not at the next interval. Each answer is awaited for 20 s, a
// third of flush.ms: waiting for the interval would run out of it.
func TestAcksAllDoesNotWaitForFlushMs(t *testing.T) {
	b := startBroker(t, nil)
	if _, err := b.log.CreateTopic("slowflush", 1, map[string]string{flog.ConfigFlushPolicy: "interval", flog.ConfigFlushMs: "60000"}); err != nil {
		t.Fatal(err)
	}
	part, _ := b.log.Partition("slowflush", 0)
	p := b.client(t, kgo.DefaultProduceTopic("slowflush"), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0))
	for i := range 3 { // the first group commit may start at once anyway: none ran before
		type answer struct {
			r   *kgo.Record
			err error
		}
		done := make(chan answer, 1)
		go func() {
			r, err := p.ProduceSync(context.Background(), &kgo.Record{Value: []byte("v")}).First()
			done <- answer{r, err}
		}()
		var r *kgo.Record
		select {
		case a := <-done:
			if a.err != nil {
				t.Fatalf("produce %d with acks=all: %v", i, a.err)
			}
			r = a.r
		case <-time.After(20 * time.Second):
			t.Fatalf("produce %d with acks=all not answered within 20 s: it waits for the next group commit (flush.ms is a minute)", i)
		}
		if d := part.DurableOffset(); d <= r.Offset {
			t.Fatalf("produce %d answered with offset %d not durable (durable offset %d)", i, r.Offset, d)
		}
	}
}
