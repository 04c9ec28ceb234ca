package kafka

import (
	"context"
	"encoding/binary"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkEndToEndLatency produces 100-byte records at a fixed rate (1k,
// 10k and 100k records/s, paced every millisecond) with acks=1 and consumes
// them with a long-polling consumer; each record carries its send time, and
// the benchmark reports the p50, p99 and p99.9 of send-to-receive latency.
// b.N is ignored beyond selecting the run: each rate runs for 2 seconds.
func BenchmarkEndToEndLatency(b *testing.B) {
	for _, rate := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			br := startBenchBroker(b)
			br.log.CreateTopic("lat", 1, nil)
			prod, err := kgo.NewClient(kgo.SeedBrokers(br.addr), kgo.DefaultProduceTopic("lat"), kgo.RequiredAcks(kgo.LeaderAck()),
				kgo.DisableIdempotentWrite(), kgo.ProducerLinger(0))
			if err != nil {
				b.Fatal(err)
			}
			defer prod.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			total := rate * 2
			received := consumeLatencies(b, ctx, br, total)
			b.ResetTimer()
			perTick := rate / 1000
			tick := time.NewTicker(time.Millisecond)
			for sent := 0; sent < total; {
				<-tick.C
				for i := 0; i < perTick && sent < total; i, sent = i+1, sent+1 {
					v := make([]byte, 100)
					binary.BigEndian.PutUint64(v, uint64(time.Now().UnixNano()))
					prod.Produce(ctx, &kgo.Record{Value: v}, nil)
				}
			}
			tick.Stop()
			lat := received()
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(pct(0.999), "p99.9-ms")
		})
	}
}

// consumeLatencies starts a consumer of topic "lat" (fetch wait 1 s) that
// reads, from each record's first 8 bytes, when it was produced, and
// returns once that consumer is in its first long poll. The function it
// returns waits for total records (30 s at most) and gives each one's
// produce-to-consume latency.
func consumeLatencies(b *testing.B, ctx context.Context, br *testBroker, total int) func() []time.Duration {
	b.Helper()
	cons, err := kgo.NewClient(kgo.SeedBrokers(br.addr), kgo.ConsumeTopics("lat"), kgo.FetchMaxWait(time.Second))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cons.Close)
	lat := make([]time.Duration, 0, total)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for len(lat) < total && ctx.Err() == nil {
			fs := cons.PollFetches(ctx)
			now := time.Now()
			for _, r := range fs.Records() {
				lat = append(lat, now.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(r.Value)))))
			}
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); testutil.ToFloat64(br.srv.metrics.requests.WithLabelValues("Fetch")) == 0; {
		if time.Now().After(deadline) {
			b.Fatal("consumer never fetched")
		}
		time.Sleep(time.Millisecond) // polls a metric: the consumer's first fetch has no other signal
	}
	return func() []time.Duration {
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			b.Fatalf("received %d of %d", len(lat), total)
		}
		return lat
	}
}
