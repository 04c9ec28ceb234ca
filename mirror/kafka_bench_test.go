//go:build unix

package mirror

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	flog "ferry/log"
)

// BenchmarkShipKafka is BenchmarkShip with a Kafka cluster as the target:
// the same backlog of real sensor readings (in batches of 6,000), shipped
// by the idempotent producer (zstd), and by the transactional one, into a
// one-broker kfake cluster in the same process, over loopback. The clock runs from the sender's start until
// it has every record acknowledged; MB/s is of the records as stored at the
// edge, cores the CPU time of the whole process (the target's included, as
// BenchmarkShip's includes the center's), wire-B/record the producer's
// compressed batch bytes per record. kfake is not a broker: it keeps
// records in memory and replicates nothing, so the target's side costs less
// than a real Kafka's would and throughput is an upper bound.
//
// resume-ms is the time to resume after a kill -9: a new sender over the
// same log and state (its checkpoint saying nothing of what the target
// has) starting until one more batch is acknowledged, tails read back
// included.
//
//	go test -run '^$' -bench BenchmarkShipKafka -benchtime 1x ./mirror
//
// MIRROR_SHIP_RECORDS sets the backlog (default 1,000,000: 127 MB stored).
func BenchmarkShipKafka(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("MIRROR_SHIP_RECORDS")); err == nil && v > 0 {
		n = v
	}
	edgeLog := openLog(b, b.TempDir())
	if _, err := edgeLog.CreateTopic("telemetry", 1, nil); err != nil {
		b.Fatal(err)
	}
	src, err := edgeLog.Partition("telemetry", 0)
	if err != nil {
		b.Fatal(err)
	}
	appendReadings(b, src, n, 6000)
	if err := src.WaitDurable(context.Background(), src.EndOffset()-1); err != nil {
		b.Fatal(err)
	}
	for _, txn := range []bool{false, true} {
		mode := "idempotent"
		if txn {
			mode = "transactional"
		}
		b.Run("mode="+mode, func(b *testing.B) { shipKafka(b, edgeLog, src, n, txn) })
	}
}

func shipKafka(b *testing.B, edgeLog *flog.Log, src *flog.Partition, n int, txn bool) {
	b.SetBytes(src.Size())
	var wire, raw int64
	var cpu, resume time.Duration
	for b.Loop() {
		b.StopTimer()
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			b.Fatal(err)
		}
		state := filepath.Join(b.TempDir(), "mirror.db")
		k := KafkaOptions{Brokers: c.ListenAddrs(), Transactional: txn}
		b.StartTimer()
		cpu -= cpuTime()
		s, err := NewSender(SenderOptions{Log: edgeLog, StatePath: state, EdgeID: "gw1", Kafka: &k, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		edgeLog.SetShipper(s)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); s.Run(ctx) }()
		end := src.EndOffset()
		for s.Acked("telemetry", 0) < end {
			time.Sleep(time.Millisecond)
		}
		cpu += cpuTime()
		b.StopTimer()
		wire, raw = s.state.wireBytes.Load(), s.state.rawBytes.Load()
		cancel()
		<-done

		// A kill -9: the state file as it was before any acknowledgement.
		os.Remove(state)
		appendReadings(b, src, 6000, 6000)
		end = src.EndOffset()
		t0 := time.Now()
		s2, err := NewSender(SenderOptions{Log: edgeLog, StatePath: state, EdgeID: "gw1", Kafka: &k, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		edgeLog.SetShipper(s2)
		ctx, cancel = context.WithCancel(context.Background())
		done = make(chan struct{})
		go func() { defer close(done); s2.Run(ctx) }()
		for s2.Acked("telemetry", 0) < end {
			time.Sleep(time.Millisecond)
		}
		resume = time.Since(t0)
		if got := s2.state.rawBytes.Load(); got > raw/int64(src.EndOffset())*7000 {
			b.Fatalf("the resumed sender wrote %d bytes for 6,000 records: it shipped again what the target had", got)
		}
		cancel()
		<-done
		c.Close()
		b.StartTimer()
	}
	b.ReportMetric(cpu.Seconds()/b.Elapsed().Seconds(), "cores")
	b.ReportMetric(float64(wire)/float64(n), "wire-B/record")
	b.ReportMetric(float64(raw)/float64(wire), "ratio")
	b.ReportMetric(float64(resume.Milliseconds()), "resume-ms")
}
