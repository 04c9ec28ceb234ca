package kafka

import (
	"context"
	"encoding/binary"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkAcksAllLatency is the end-to-end latency of acks=all produce
// with the client's default pipelining (idempotent, up to 5 requests in
// flight, no linger) at low rates, where each record is its own request and
// waits for the topic's 10 ms group commit: 100 and 1,000 records/s, paced,
// for 2 s each, consumed by a long-polling consumer. It reports the p50 and
// p99 of send-to-receive (what a consumer sees: records are readable once
// appended) and of send-to-acknowledgement. Before pipelining, a request
// waited at the broker behind the previous one's fsync, so records reached
// the consumer a group commit or more late.
func BenchmarkAcksAllLatency(b *testing.B) {
	for _, rate := range []int{100, 1_000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			br := startBenchBroker(b)
			br.log.CreateTopic("lat", 1, nil)
			prod, err := kgo.NewClient(kgo.SeedBrokers(br.addr), kgo.DefaultProduceTopic("lat"), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0))
			if err != nil {
				b.Fatal(err)
			}
			defer prod.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			total := rate * 2
			received := consumeLatencies(b, ctx, br, total)
			acked := make(chan time.Duration, total)
			b.ResetTimer()
			tick := time.NewTicker(time.Second / time.Duration(rate))
			for sent := 0; sent < total; sent++ {
				<-tick.C
				v := make([]byte, 100)
				at := time.Now()
				binary.BigEndian.PutUint64(v, uint64(at.UnixNano()))
				prod.Produce(ctx, &kgo.Record{Value: v}, func(_ *kgo.Record, err error) {
					if err != nil {
						b.Error(err)
					}
					acked <- time.Since(at)
				})
			}
			tick.Stop()
			acks := make([]time.Duration, 0, total)
			for range total {
				acks = append(acks, <-acked)
			}
			seen := received()
			b.StopTimer()
			pct := func(d []time.Duration, p float64) float64 {
				sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
				return float64(d[int(p*float64(len(d)-1))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(seen, 0.50), "p50-ms")
			b.ReportMetric(pct(seen, 0.99), "p99-ms")
			b.ReportMetric(pct(acks, 0.50), "ack-p50-ms")
			b.ReportMetric(pct(acks, 0.99), "ack-p99-ms")
		})
	}
}
