package testbed

import (
	"context"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestKafkaAcksAllSurviveKill9 produces with acks=all (idempotent) to a real
// `ferry edge` whose topic fsyncs every append, kills the process with
// SIGKILL mid-load, restarts it on the same data directory, and checks that
// every acknowledged record is there, at the offset it was acknowledged
// with, with its bytes. Three cycles.
func TestKafkaAcksAllSurviveKill9(t *testing.T) {
	dir := t.TempDir()
	// flush.policy=always: an acks=all answer waits for the fsync.
	if out, err := exec.Command(ferryBinary(t), "topics", "create", "crash", "--partitions", "3",
		"--config", "flush.policy=always", "--data-dir", dir, "--create-data-dir").CombinedOutput(); err != nil {
		t.Fatalf("topics create: %v\n%s", err, out)
	}
	type ack struct {
		partition int32
		offset    int64
		value     string
	}
	var acked []ack
	for cycle := 0; cycle < 3; cycle++ {
		p := startEdge(t, dir)
		cl, err := kgo.NewClient(kgo.SeedBrokers(p.kafkaAddr), kgo.DefaultProduceTopic("crash"),
			kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordRetries(3), kgo.ProducerLinger(time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		n := 0
		killAt := 2000 + cycle*500
		killed := make(chan struct{})
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		for i := 0; ; i++ {
			select {
			case <-killed:
			case <-ctx.Done():
				t.Fatalf("cycle %d: only %d acks before the deadline", cycle, n)
			default:
				v := fmt.Sprintf("cycle-%d-record-%d", cycle, i)
				cl.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i % 50)), Value: []byte(v)}, func(r *kgo.Record, err error) {
					if err != nil {
						return // not acknowledged: makes no promise
					}
					mu.Lock()
					defer mu.Unlock()
					acked = append(acked, ack{r.Partition, r.Offset, string(r.Value)})
					if n++; n == killAt {
						p.cmd.Process.Signal(syscall.SIGKILL)
						close(killed)
					}
				})
				continue
			}
			break
		}
		<-p.exited
		cancel()
		cl.Close()

		// Restart and read everything back.
		p2 := startEdge(t, dir)
		mu.Lock()
		want := append([]ack(nil), acked...)
		mu.Unlock()
		got := readAll(t, p2.kafkaAddr, "crash")
		for _, a := range want {
			v, ok := got[fmt.Sprintf("%d/%d", a.partition, a.offset)]
			if !ok || v != a.value {
				t.Fatalf("cycle %d: acknowledged record %q at %d/%d after kill -9: found %q (present %v)", cycle, a.value, a.partition, a.offset, v, ok)
			}
		}
		p2.cmd.Process.Signal(syscall.SIGTERM)
		if err := <-p2.exited; err != nil {
			t.Fatalf("clean shutdown after the check: %v", err)
		}
	}
	t.Logf("%d acknowledged records checked over 3 kill -9 cycles", len(acked))
}

// readAll consumes a topic from the start to its end offsets, by
// "partition/offset".
func readAll(t *testing.T, addr, topic string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, r := range consumeAll(t, addr, topic) {
		got[fmt.Sprintf("%d/%d", r.Partition, r.Offset)] = string(r.Value)
	}
	return got
}
