package testbed

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The center cluster's measurements (issue 15), each against one node in
// the same run where it compares:
//
//	go test -run '^$' -bench 'BenchmarkClusterProduce|BenchmarkClusterFailover' -benchtime=1x -timeout 20m ./testbed
//
// Three processes share this machine's cores, so the cluster's throughput
// here says what routing costs, not what three machines would give.

// BenchmarkClusterProduce: CLUSTER_BENCH_RECORDS (300,000) 100-byte
// records with franz-go's default producer (acks=all, idempotent, linger
// 5 ms) into a topic of 6 partitions, through one `ferry full` alone and
// through a cluster of three (the partitions spread, the client routed to
// each leader).
func BenchmarkClusterProduce(b *testing.B) {
	n := envInt("CLUSTER_BENCH_RECORDS", 300_000)
	b.Run("nodes=1", func(b *testing.B) {
		fp := startFull(b, b.TempDir(), "")
		produceBench(b, []string{fp.kafkaAddr}, n, 1, nil)
	})
	b.Run("nodes=3", func(b *testing.B) {
		c := newClusterProcs(b, 3)
		c.startAll()
		produceBench(b, c.kafkaAddrs(), n, 1, nil)
	})
}

// produceBench produces n 100-byte records per iteration with franz-go's
// default producer (acks=all, idempotent, linger 5 ms) into a new topic
// "bench" of 6 partitions at replication factor rf with configs, through
// seeds, and reports records/s.
func produceBench(b *testing.B, seeds []string, n int, rf int16, configs map[string]*string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic("bench"), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 6, rf, configs, "bench"); err != nil {
		b.Fatal(err)
	}
	val := make([]byte, 100)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		errs := make(chan error, 1)
		for i := 0; i < n; i++ {
			cl.Produce(ctx, &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: val}, func(_ *kgo.Record, err error) {
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			})
		}
		if err := cl.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		select {
		case err := <-errs:
			b.Fatal(err)
		default:
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkClusterFailover: with the default heartbeat (2 s) and session
// timeout (9 s), CLUSTER_BENCH_KILLS (10) times each: kill -9 of a broker
// that is not the controller, timed until the controller reports it fenced
// (its partitions offline); kill -9 of the controller, timed until another
// node is the controller. Each killed node is restarted before the next.
// Reports p50 and p99 of both, in milliseconds.
func BenchmarkClusterFailover(b *testing.B) {
	kills := envInt("CLUSTER_BENCH_KILLS", 10)
	c := newClusterProcs(b, 3)
	c.heartbeat, c.session = "2s", "9s"
	c.startAll()
	var fenced, elected []time.Duration
	b.ResetTimer()
	for range b.N {
		for k := 0; k < kills; k++ {
			ctrl := c.controller()
			victim := (ctrl + 1 + k%2) % 3
			at := time.Now()
			c.kill9(victim)
			c.waitFor("the killed broker fenced", func() bool {
				v, ok := c.view(ctrl)
				if !ok {
					return false
				}
				for _, br := range v.Brokers {
					if br.ID == int32(victim+1) {
						return br.Fenced
					}
				}
				return false
			})
			fenced = append(fenced, time.Since(at))
			c.start(victim)
			c.waitFor("the broker back", func() bool { v, ok := c.view(ctrl); return ok && len(v.Offline) == 0 && allUnfenced(v) })

			at = time.Now()
			c.kill9(ctrl)
			c.waitFor("a new controller", func() bool {
				for i := range c.procs {
					if v, ok := c.view(i); ok && v.Controller > 0 && int(v.Controller-1) != ctrl {
						return true
					}
				}
				return false
			})
			elected = append(elected, time.Since(at))
			c.start(ctrl)
			c.waitFor("the old controller back", func() bool { v, ok := c.view(ctrl); return ok && v.Controller > 0 && allUnfenced(v) })
		}
	}
	b.StopTimer()
	slices.Sort(fenced)
	slices.Sort(elected)
	b.ReportMetric(percentile(fenced, 0.5), "fenced-p50-ms")
	b.ReportMetric(percentile(fenced, 0.99), "fenced-p99-ms")
	b.ReportMetric(percentile(elected, 0.5), "controller-p50-ms")
	b.ReportMetric(percentile(elected, 0.99), "controller-p99-ms")
}

func allUnfenced(v clusterView) bool {
	for _, br := range v.Brokers {
		if br.Fenced {
			return false
		}
	}
	return len(v.Brokers) > 0
}
