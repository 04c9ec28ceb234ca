package kafka

import (
	"crypto/rand"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

func TestProduceQuotaBucket(t *testing.T) {
	q := newProduceQuotas(1000, 0) // 1000 B/s, burst 1000 B
	t0 := time.Unix(1000, 0)
	if d := q.charge("a", 1000, t0); d != 0 {
		t.Fatalf("the burst was throttled: %v", d)
	}
	if d := q.charge("a", 500, t0); d != 500*time.Millisecond {
		t.Fatalf("500 B over: throttle %v, want 500ms", d)
	}
	if d := q.charge("b", 10, t0); d != 0 {
		t.Fatalf("another principal was throttled: %v", d)
	}
	// 1.5 s later the debt is paid and the burst is back, no more.
	if d := q.charge("a", 1000, t0.Add(1500*time.Millisecond)); d != 0 {
		t.Fatalf("after paying its debt: throttle %v", d)
	}
	if d := q.charge("a", 1, t0.Add(1500*time.Millisecond)); d != time.Millisecond {
		t.Fatalf("1 B over: throttle %v, want 1ms", d)
	}
	// Full buckets are dropped at a sweep (run when the map has doubled);
	// those in debt stay.
	for i := range 2000 {
		q.charge(fmt.Sprint("client-", i), 1, t0)
	}
	q.charge("a", 20000, t0.Add(2*time.Second))
	q.mu.Lock()
	q.sweep(t0.Add(10 * time.Second))
	n, inDebt := len(q.buckets), q.buckets["a"] != nil
	q.mu.Unlock()
	if n != 1 || !inDebt {
		t.Fatalf("after a sweep: %d buckets, principal in debt kept: %t", n, inDebt)
	}
	if newProduceQuotas(0, 0) != nil {
		t.Fatal("quota 0 is not none")
	}
}

// throttleCounter is a kgo hook counting the throttles a client was told.
type throttleCounter struct{ n atomic.Int64 }

func (h *throttleCounter) OnBrokerThrottle(_ kgo.BrokerMetadata, d time.Duration, after bool) {
	if d > 0 {
		h.n.Add(1)
	}
}

// produceMiB produces 1 MiB in 1 KiB records, batched small so that it goes
// in many requests, and returns how long it took.
func produceMiB(t *testing.T, b *testBroker, hook *throttleCounter) time.Duration {
	t.Helper()
	b.log.CreateTopic("quota", 1, nil)
	cl := b.client(t, kgo.DefaultProduceTopic("quota"), kgo.ProducerBatchMaxBytes(16<<10), kgo.ClientID("meter"), kgo.WithHooks(hook))
	ctx := ctxT(t)
	began := time.Now()
	var failed atomic.Value
	for range 1024 {
		value := make([]byte, 1<<10)
		rand.Read(value) // incompressible: the quota counts bytes as sent
		cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Store(err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	return time.Since(began)
}

// A franz-go producer at 256 KiB/s producing 1 MiB is held back: it is
// told to throttle, and it takes at least about (1 MiB - burst - the last
// request) / quota. Only a generous lower bound is asserted: this checks
// that the throttle works, not how fast anything is. Without a quota the
// same producer is never throttled.
func TestProduceQuotaThrottlesFranzGo(t *testing.T) {
	b := startBroker(t, func(o *Options) { o.ProduceQuota = 256 << 10 })
	var hook throttleCounter
	took := produceMiB(t, b, &hook)
	// (1024 - 256 - 16) KiB at 256 KiB/s is about 2.9 s.
	t.Logf("took %v, %v throttles, %v s, requests %v", took, hook.n.Load(), testutil.ToFloat64(b.srv.metrics.throttleSeconds), testutil.ToFloat64(b.srv.metrics.api(0).requests))
	if took < 1500*time.Millisecond {
		t.Fatalf("1 MiB at a 256 KiB/s quota took %v", took)
	}
	if hook.n.Load() == 0 {
		t.Fatal("the producer was never told to throttle")
	}
	if got := testutil.ToFloat64(b.srv.metrics.throttled); got == 0 {
		t.Fatal("ferry_kafka_throttled_requests_total is 0")
	}
	if got := testutil.ToFloat64(b.srv.metrics.throttleSeconds); got < 1.5 {
		t.Fatalf("ferry_kafka_throttle_seconds_total = %v", got)
	}
	p, _ := b.log.Partition("quota", 0)
	if p.EndOffset() != 1024 {
		t.Fatalf("records stored: %d, want 1024 (throttled records are appended)", p.EndOffset())
	}

	free := startBroker(t, nil)
	var none throttleCounter
	produceMiB(t, free, &none)
	if n := none.n.Load(); n != 0 || testutil.ToFloat64(free.srv.metrics.throttled) != 0 {
		t.Fatalf("without a quota: %d throttles", n)
	}
}

// quotaProduce is a Produce request of about n bytes of records.
func quotaProduce(version int16, n int) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(version)
	req.Acks, req.TimeoutMillis = 1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "raw"
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = flog.AppendBatch(nil, []flog.Record{{Value: make([]byte, n), Timestamp: time.Now().UnixMilli()}})
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// Over quota, a Produce response carries ThrottleMillis, and the connection
// reads nothing more for that long: a client that ignores the throttle and
// sends its next request at once waits all the same. Before v6 the answer
// itself is delayed.
func TestProduceQuotaRawProtocol(t *testing.T) {
	b := startBroker(t, func(o *Options) { o.ProduceQuota = 64 << 10 })
	b.log.CreateTopic("raw", 1, nil)
	c := dialRaw(t, b)
	// 128 KiB against a 64 KiB burst: 64 KiB of debt, about 1 s.
	rawRequest(t, c, quotaProduce(7, 128<<10))
	rawRequest(t, c, quotaProduce(7, 10)) // ignoring the throttle: sent at once
	resp := kmsg.NewPtrProduceResponse()
	resp.SetVersion(7)
	if err := resp.ReadFrom(readResponse(t, c)); err != nil {
		t.Fatal(err)
	}
	answered := time.Now()
	if resp.ThrottleMillis <= 0 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("over quota: ThrottleMillis %d, error %d", resp.ThrottleMillis, resp.Topics[0].Partitions[0].ErrorCode)
	}
	second := kmsg.NewPtrProduceResponse()
	second.SetVersion(7)
	if err := second.ReadFrom(readResponse(t, c)); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(answered); el < time.Duration(resp.ThrottleMillis)*time.Millisecond/2 {
		t.Fatalf("the next request was answered %v after a throttle of %d ms: the connection was not muted", el, resp.ThrottleMillis)
	}
	p, _ := b.log.Partition("raw", 0)
	if p.EndOffset() != 2 {
		t.Fatalf("records stored: %d, want 2", p.EndOffset())
	}

	// v5: the answer waits for the throttle.
	c = dialRaw(t, b)
	sent := time.Now()
	rawRequest(t, c, quotaProduce(5, 128<<10))
	old := kmsg.NewPtrProduceResponse()
	old.SetVersion(5)
	if err := old.ReadFrom(readResponse(t, c)); err != nil {
		t.Fatal(err)
	}
	if old.ThrottleMillis <= 0 || time.Since(sent) < time.Duration(old.ThrottleMillis)*time.Millisecond/2 {
		t.Fatalf("v5 over quota: ThrottleMillis %d, answered after %v", old.ThrottleMillis, time.Since(sent))
	}
}
