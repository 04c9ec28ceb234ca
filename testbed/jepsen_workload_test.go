package testbed

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// workload is the suite's load: one idempotent franz-go producer (acks=all
// and franz-go's default timeouts, its defaults) writing unique values at
// a steady rate, logging every acknowledged (topic, partition, offset,
// value), and consumers (read_uncommitted: in Kafka, up to the high
// watermark) logging every record they see with its offset.
type workload struct {
	t      testing.TB
	topics []string
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	prod   *kgo.Client

	mu       sync.Mutex
	acked    []op
	observed []op
	watch    map[tp]bool // partitions whose next acknowledgement is awaited (unavailability)
	watchAt  time.Time
	watchHit chan time.Time
	stopped  bool

	acks, failed atomic.Int64
}

// startWorkload produces about rate records a second into topics through
// seeds, with consumers reading them; it runs until stop.
func startWorkload(t testing.TB, seeds []string, rate, consumers int, topics ...string) *workload {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &workload{t: t, topics: topics, ctx: ctx, cancel: cancel, watchHit: make(chan time.Time, 1)}
	prod, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ProducerLinger(2*time.Millisecond), kgo.MaxBufferedRecords(4*rate+100))
	if err != nil {
		t.Fatal(err)
	}
	w.prod = prod
	run := fmt.Sprintf("%x", rand.Uint32())
	w.wg.Add(1)
	go func() { // the producer, at rate/100 records every 10 ms
		defer w.wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		n := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for range max(1, rate/100) {
				r := &kgo.Record{Topic: topics[n%len(topics)], Key: []byte(fmt.Sprint(rand.IntN(1 << 20))), Value: fmt.Appendf(nil, "%s-%d", run, n)}
				n++
				prod.Produce(ctx, r, w.onAck)
			}
		}
	}()
	for i := range consumers {
		name := fmt.Sprintf("consumer%d", i+1)
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchIsolationLevel(kgo.ReadUncommitted()), kgo.FetchMaxWait(250*time.Millisecond), kgo.MetadataMinAge(250*time.Millisecond), kgo.MetadataMaxAge(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			defer cl.Close()
			for ctx.Err() == nil {
				fs := cl.PollFetches(ctx)
				var got []op
				fs.EachRecord(func(r *kgo.Record) {
					got = append(got, op{tp{r.Topic, r.Partition}, r.Offset, string(r.Value), name})
				})
				w.mu.Lock()
				w.observed = append(w.observed, got...)
				w.mu.Unlock()
			}
		}()
	}
	t.Cleanup(w.stop)
	return w
}

func (w *workload) onAck(r *kgo.Record, err error) {
	if err != nil {
		w.failed.Add(1) // not acknowledged: no promise made
		return
	}
	now := time.Now()
	p := tp{r.Topic, r.Partition}
	w.mu.Lock()
	w.acked = append(w.acked, op{p, r.Offset, string(r.Value), "producer"})
	// Only a record handed to the client after the watch began counts:
	// an acknowledgement the dying leader sent just before the kill, read
	// after it, says nothing about when the partition is back.
	if w.watch[p] && r.Timestamp.After(w.watchAt) {
		w.watch = nil
		select {
		case w.watchHit <- now:
		default:
		}
	}
	w.mu.Unlock()
	w.acks.Add(1)
}

// awaitAcks waits until n more records than now are acknowledged.
func (w *workload) awaitAcks(n int64, within time.Duration) {
	w.t.Helper()
	want := w.acks.Load() + n
	deadline := time.Now().Add(within)
	for w.acks.Load() < want {
		if time.Now().After(deadline) {
			w.t.Fatalf("%d of %d acknowledgements within %s (%d produce errors)", w.acks.Load(), want, within, w.failed.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// watchPartitions arms a watch on parts from now: unavailable then waits
// for the first acknowledgement of a record of any of them produced after
// at, and returns how long after at it came (false if not within).
func (w *workload) watchPartitions(parts []tp, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.watch = map[tp]bool{}
	for _, p := range parts {
		w.watch[p] = true
	}
	w.watchAt = at
	select {
	case <-w.watchHit:
	default:
	}
}

func (w *workload) unavailable(within time.Duration) (time.Duration, bool) {
	w.mu.Lock()
	at := w.watchAt
	w.mu.Unlock()
	select {
	case hit := <-w.watchHit:
		return hit.Sub(at), true
	case <-time.After(within):
		return 0, false
	}
}

// ackCounts is the number of acknowledged records per partition so far.
func (w *workload) ackCounts() map[tp]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[tp]int{}
	for _, a := range w.acked {
		out[a.tp]++
	}
	return out
}

// stop ends the load: no new records, those in flight given 60 s to be
// acknowledged or fail, the consumers stopped.
func (w *workload) stop() {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return
	}
	w.stopped = true
	w.mu.Unlock()
	w.cancel() // the producer loop and the consumers
	w.wg.Wait()
	fctx, fcancel := context.WithTimeout(context.Background(), 60*time.Second)
	w.prod.Flush(fctx) // records produced with the cancelled ctx fail: unacknowledged
	fcancel()
	w.prod.Close()
}

// history is what was logged (after stop).
func (w *workload) history() history {
	w.mu.Lock()
	defer w.mu.Unlock()
	return history{Acked: append([]op(nil), w.acked...), Observed: append([]op(nil), w.observed...)}
}
