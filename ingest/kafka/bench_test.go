package kafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkProduce produces 100-byte records with franz-go (its default
// batching) to 1 and 8 partitions with acks=1 (answered from the page cache)
// and acks=all (answered once durable under flush.policy=interval).
func BenchmarkProduce(b *testing.B) {
	for _, acks := range []string{"1", "all"} {
		for _, parts := range []int32{1, 8} {
			b.Run(fmt.Sprintf("acks=%s/partitions=%d", acks, parts), func(b *testing.B) {
				br := startBenchBroker(b)
				br.log.CreateTopic("bench", parts, nil)
				opts := []kgo.Opt{kgo.SeedBrokers(br.addr), kgo.DefaultProduceTopic("bench"), kgo.ProducerBatchMaxBytes(1 << 20), kgo.MaxBufferedRecords(1 << 20)}
				if acks == "1" {
					opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
				}
				cl, err := kgo.NewClient(opts...)
				if err != nil {
					b.Fatal(err)
				}
				defer cl.Close()
				val := make([]byte, 100)
				ctx := context.Background()
				b.SetBytes(100)
				b.ResetTimer()
				start := time.Now()
				for i := 0; i < b.N; i++ {
					cl.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i % 1000)), Value: val}, func(_ *kgo.Record, err error) {
						if err != nil {
							b.Error(err)
						}
					})
				}
				if err := cl.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
			})
		}
	}
}

// BenchmarkConsume reads 100-byte records back with franz-go.
func BenchmarkConsume(b *testing.B) {
	br := startBenchBroker(b)
	br.log.CreateTopic("bench", 1, nil)
	cl, err := kgo.NewClient(kgo.SeedBrokers(br.addr), kgo.DefaultProduceTopic("bench"), kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	val := make([]byte, 100)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		cl.Produce(ctx, &kgo.Record{Value: val}, nil)
	}
	cl.Flush(ctx)
	c, err := kgo.NewClient(kgo.SeedBrokers(br.addr), kgo.ConsumeTopics("bench"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(16<<20))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.SetBytes(100)
	b.ResetTimer()
	start := time.Now()
	for n := 0; n < b.N; {
		fs := c.PollFetches(ctx)
		n += len(fs.Records())
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}
