package testbed

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The latency users feel and the CPU a record costs, measured against a
// real `ferry edge` process with its defaults (flush.policy=interval,
// flush.ms=10, auto-created topics of one partition):
//
//	go test -run '^$' -bench 'BenchmarkAcksAllDelivery|BenchmarkEndToEndAcksAll|BenchmarkProduceCPU' -benchtime=1x -timeout 15m ./testbed

// percentile is the p-th fraction of sorted durations, in milliseconds.
func percentile(sorted []time.Duration, p float64) float64 {
	return float64(sorted[int(p*float64(len(sorted)-1))].Microseconds()) / 1000
}

// BenchmarkAcksAllDelivery: one record at a time, each produced with
// acks=all and linger 0 and waited for before the next (ProduceSync), to a
// default topic: the time from the produce call to its acknowledgement,
// which includes the fsync that makes the record durable.
// LATENCY_BENCH_RECORDS records (2,000).
func BenchmarkAcksAllDelivery(b *testing.B) {
	n := envInt("LATENCY_BENCH_RECORDS", 2000)
	fp := startEdge(b, b.TempDir())
	cl, err := kgo.NewClient(kgo.SeedBrokers(fp.kafkaAddr), kgo.DefaultProduceTopic("delivery"), kgo.AllowAutoTopicCreation(),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0), kgo.MaxBufferedRecords(1))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	val := make([]byte, 100)
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: val}).FirstErr(); err != nil { // creates the topic
		b.Fatal(err)
	}
	lat := make([]time.Duration, n)
	var sum time.Duration
	b.ResetTimer()
	for range b.N {
		for i := range lat {
			t0 := time.Now()
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: val}).FirstErr(); err != nil {
				b.Fatal(err)
			}
			lat[i] = time.Since(t0)
			sum += lat[i]
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(sum.Microseconds())/1000/float64(n*b.N), "avg-ms")
	b.ReportMetric(percentile(lat, 0.50), "p50-ms")
	b.ReportMetric(percentile(lat, 0.99), "p99-ms")
}

// BenchmarkEndToEndAcksAll: a producer (acks=all, linger 0, franz-go's
// other defaults) sends 100-byte records stamped with their send time at a
// steady rate for E2E_BENCH_SECONDS (10) to a default topic, and a consumer
// with Kafka's default fetch wait (fetch.max.wait.ms 500) reports, per
// record, the time from the send to its arrival: p50, p99, p99.9.
func BenchmarkEndToEndAcksAll(b *testing.B) {
	secs := envInt("E2E_BENCH_SECONDS", 10)
	for _, rate := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			for range b.N {
				endToEnd(b, rate, secs)
			}
		})
	}
}

func endToEnd(b *testing.B, rate, secs int) {
	fp := startEdge(b, b.TempDir())
	const topic = "e2e"
	prod, err := kgo.NewClient(kgo.SeedBrokers(fp.kafkaAddr), kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation(),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0))
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs)*time.Second+2*time.Minute)
	defer cancel()
	// A first record creates the topic; the consumer reads it first, so
	// timing starts with the consumer in its long poll.
	if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("start")}).FirstErr(); err != nil {
		b.Fatal(err)
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(fp.kafkaAddr), kgo.ConsumeTopics(topic), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer cons.Close()
	total := rate * secs
	lat := make([]time.Duration, 0, total)
	started := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for len(lat) < total && ctx.Err() == nil {
			fs := cons.PollFetches(ctx)
			now := time.Now()
			for _, r := range fs.Records() {
				if len(r.Value) != 100 {
					close(started)
					continue
				}
				lat = append(lat, now.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(r.Value)))))
			}
		}
	}()
	select {
	case <-started:
	case <-done:
		b.Fatal("the consumer stopped before the first record")
	}
	var errMu sync.Mutex
	var produceErr error
	onErr := func(_ *kgo.Record, err error) {
		if err != nil {
			errMu.Lock()
			produceErr = err
			errMu.Unlock()
		}
	}
	b.ResetTimer()
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	for sent := 0; sent < total; {
		<-tick.C
		due := min(total, int(time.Since(start).Seconds()*float64(rate))+1)
		for ; sent < due; sent++ {
			v := make([]byte, 100)
			binary.BigEndian.PutUint64(v, uint64(time.Now().UnixNano()))
			prod.Produce(ctx, &kgo.Record{Value: v}, onErr)
		}
	}
	tick.Stop()
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatalf("the consumer did not receive all %d records within a minute of the last send", total)
	}
	b.StopTimer()
	errMu.Lock()
	defer errMu.Unlock()
	if produceErr != nil {
		b.Fatal(produceErr)
	}
	if len(lat) < total {
		b.Fatalf("received %d of %d: %v", len(lat), total, ctx.Err())
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(percentile(lat, 0.50), "p50-ms")
	b.ReportMetric(percentile(lat, 0.99), "p99-ms")
	b.ReportMetric(percentile(lat, 0.999), "p99.9-ms")
}

// cpuSeconds is the user plus system CPU time a process has used so far,
// from /proc/PID/stat (fields 14 and 15, in clock ticks of USER_HZ, which
// is 100 on Linux).
func cpuSeconds(tb testing.TB, pid int) float64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		tb.Fatalf("unexpected /proc/%d/stat: %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3
	if len(f) < 13 {
		tb.Fatalf("unexpected /proc/%d/stat: %q", pid, b)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		tb.Fatalf("unexpected /proc/%d/stat: %q", pid, b)
	}
	return float64(utime+stime) / 100
}

// BenchmarkProduceCPU: the broker's CPU time (user + system, from
// /proc/PID/stat before and after) per million 100-byte records produced in
// batches, CPU_BENCH_RECORDS of them (1,000,000): ferry edge with
// franz-go's default producer (acks=all, idempotent) and a linger of 5 ms,
// so each acknowledgement waits for its fsync; nats-server JetStream (a
// file stream) with asynchronous publishes, each acknowledged once stored.
func BenchmarkProduceCPU(b *testing.B) {
	n := envInt("CPU_BENCH_RECORDS", 1_000_000)
	val := make([]byte, 100)
	b.Run("broker=ferry", func(b *testing.B) {
		for range b.N {
			fp := startEdge(b, b.TempDir())
			cl, err := kgo.NewClient(kgo.SeedBrokers(fp.kafkaAddr), kgo.DefaultProduceTopic("cpu"), kgo.AllowAutoTopicCreation(),
				kgo.ProducerLinger(5*time.Millisecond))
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: val}).FirstErr(); err != nil { // creates the topic
				b.Fatal(err)
			}
			pid := fp.cmd.Process.Pid
			before, start := cpuSeconds(b, pid), time.Now()
			var errMu sync.Mutex
			var produceErr error
			for range n {
				cl.Produce(ctx, &kgo.Record{Value: val}, func(_ *kgo.Record, err error) {
					if err != nil {
						errMu.Lock()
						produceErr = err
						errMu.Unlock()
					}
				})
			}
			if err := cl.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			took, used := time.Since(start), cpuSeconds(b, pid)-before
			cl.Close()
			cancel()
			if produceErr != nil {
				b.Fatal(produceErr)
			}
			b.ReportMetric(used/(float64(n)/1e6), "cpu-s/Mrec")
			b.ReportMetric(float64(n)/took.Seconds(), "records/s")
		}
	})
	b.Run("broker=jetstream", func(b *testing.B) {
		for range b.N {
			js := startJetStream(b)
			before, start := cpuSeconds(b, js.pid), time.Now()
			for range n {
				if _, err := js.js.PublishAsync("bench", val); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case <-js.js.PublishAsyncComplete():
			case <-time.After(5 * time.Minute):
				b.Fatal("acks did not arrive")
			}
			took, used := time.Since(start), cpuSeconds(b, js.pid)-before
			b.ReportMetric(used/(float64(n)/1e6), "cpu-s/Mrec")
			b.ReportMetric(float64(n)/took.Seconds(), "records/s")
		}
	})
}
