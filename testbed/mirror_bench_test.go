package testbed

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// topicEnd is the sum of a topic's end offsets (-1 while it has none).
func topicEnd(tb testing.TB, addr, topic string) int64 {
	tb.Helper()
	ends := endsOf(tb, addr, topic)
	if len(ends) == 0 {
		return -1
	}
	return sumEnds(ends)
}

// sensorStream replays the real room-climate readings of
// testdata/room-climate-full in recorded order, one device per location
// and node, as JSON; past the end it replays them again an hour of
// timestamps later. It returns n (key, value) pairs.
func sensorStream(tb testing.TB, n int) (keys, values [][]byte) {
	tb.Helper()
	rows := readClimate(tb, "testdata/room-climate-full")
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].ts < rows[j].ts })
	for i := 0; i < n; i++ {
		r := rows[i%len(rows)]
		pass := int64(i / len(rows))
		dev := "room-" + r.loc + "-" + r.node
		keys = append(keys, []byte(dev))
		values = append(values, fmt.Appendf(nil, `{"device":%q,"ts":%d,"temperature":%s,"humidity":%s,"light1":%s,"light2":%s}`,
			dev, r.ts+pass*3_600_000, r.temp, r.hum, r.light1, r.light2))
	}
	return keys, values
}

// produceSensorBacklog produces n real sensor readings to topic,
// uncompressed by the producer so that the mirror's compression is what is
// measured, and returns their payload bytes.
func produceSensorBacklog(tb testing.TB, addr, topic string, n int) int64 {
	tb.Helper()
	keys, values := sensorStream(tb, n)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation(),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var total int64
	errc := make(chan error, 1)
	for i := range values {
		total += int64(len(values[i]))
		cl.Produce(ctx, &kgo.Record{Key: keys[i], Value: values[i]}, func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errc <- err:
				default:
				}
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		tb.Fatal(err)
	}
	select {
	case err := <-errc:
		tb.Fatal(err)
	default:
	}
	return total
}

// BenchmarkMirror measures the mirror between a real `ferry edge` and a
// real `ferry full` on loopback: a backlog of real sensor readings
// (testdata/room-climate-full, keyed by device) built while
// the edge mirrors nothing is shipped when the edge restarts with
// --mirror-to, at three zstd levels. It reports the bytes on the wire per
// record against the records' own bytes (the compression ratio) and the
// catch-up rate in MB/s of records.
//
//	go test -run '^$' -bench BenchmarkMirror -benchtime=1x ./testbed
func BenchmarkMirror(b *testing.B) {
	n := envInt("MIRROR_BENCH_RECORDS", 1_000_000)
	for _, level := range []string{"fastest", "default", "better"} {
		b.Run("zstd="+level, func(b *testing.B) {
			edgeDir := b.TempDir()
			edge := startEdge(b, edgeDir, "--default-partitions", "4")
			payload := produceSensorBacklog(b, edge.kafkaAddr, "telemetry", n)
			edge.cmd.Process.Signal(syscall.SIGTERM)
			<-edge.done

			center := startFull(b, b.TempDir(), "", "--mirror-token", "gw1=s3cret")
			start := time.Now()
			edge = startEdge(b, edgeDir, "--mirror-to", center.mirrorAddr, "--mirror-edge-id", "gw1", "--mirror-token", "s3cret",
				"--mirror-topics", "telemetry", "--mirror-zstd-level", level)
			want := topicEnd(b, edge.kafkaAddr, "telemetry")
			lastLog := time.Now()
			var firstAt time.Time // when the first records reached the center
			for {
				got := topicEnd(b, center.kafkaAddr, "gw1.telemetry")
				if got > 0 && firstAt.IsZero() {
					firstAt = time.Now()
				}
				if got == want {
					break
				}
				if time.Since(start) > 5*time.Minute {
					b.Fatalf("the center has %d of %d records after 5 minutes", got, want)
				}
				if time.Since(lastLog) > time.Second {
					b.Logf("zstd %s: %d/%d records at the center after %.1fs", level, got, want, time.Since(start).Seconds())
					lastLog = time.Now()
				}
				time.Sleep(20 * time.Millisecond)
			}
			elapsed := time.Since(start)
			m := ferryMetrics(b, edge.adminAddr, "ferry_mirror_wire_bytes_total", "ferry_mirror_raw_bytes_total")
			wire, raw := m["ferry_mirror_wire_bytes_total"], m["ferry_mirror_raw_bytes_total"]
			refused := refusedChunks(b, center)
			b.ReportMetric(refused, "refused-chunks")
			b.ReportMetric(float64(payload)/float64(want), "payload-B/record")
			b.ReportMetric(raw/float64(want), "stored-B/record")
			b.ReportMetric(wire/float64(want), "wire-B/record")
			b.ReportMetric(raw/wire, "ratio-vs-stored")
			b.ReportMetric(float64(payload)/wire, "ratio-vs-payload")
			moving := time.Since(firstAt)
			b.ReportMetric(raw/1e6/elapsed.Seconds(), "MB/s")
			b.ReportMetric(raw/1e6/moving.Seconds(), "MB/s-moving")
			b.Logf("zstd %s: %d records (%.1f MB stored, %.1f MB of payload) shipped in %.2fs from the edge's restart (%.1f MB/s), "+
				"%.2fs from the first records at the center (%.1f MB/s): %.1f MB on the wire, %.2f B/record, %v chunks refused by the center",
				level, want, raw/1e6, float64(payload)/1e6, elapsed.Seconds(), raw/1e6/elapsed.Seconds(),
				moving.Seconds(), raw/1e6/moving.Seconds(), wire/1e6, wire/float64(want), refused)
		})
	}
}

// BenchmarkMirrorCappedLink ships a backlog of real sensor readings over a
// link capped at 1 MiB/s (--mirror-rate) with 200 ms of latency (toxiproxy,
// edge → center), and reports the share of the cap that carried chunk
// bytes: the window of chunks in flight must keep a long link full.
//
//	go test -run '^$' -bench BenchmarkMirrorCappedLink -benchtime=1x ./testbed
func BenchmarkMirrorCappedLink(b *testing.B) {
	const capBytes = 1 << 20
	n := envInt("MIRROR_CAPPED_RECORDS", 400_000)
	edgeDir := b.TempDir()
	edge := startEdge(b, edgeDir, "--default-partitions", "4")
	produceSensorBacklog(b, edge.kafkaAddr, "telemetry", n)
	edge.cmd.Process.Signal(syscall.SIGTERM)
	<-edge.done

	center := startFull(b, b.TempDir(), "", "--mirror-token", "gw1=s3cret")
	link := newFlakyLink(b, center.mirrorAddr)
	link.toxic("far", "latency", `"latency":200`)
	edge = startEdge(b, edgeDir, "--mirror-to", link.addr(), "--mirror-edge-id", "gw1", "--mirror-token", "s3cret",
		"--mirror-topics", "telemetry", "--mirror-rate", fmt.Sprint(capBytes))
	want := topicEnd(b, edge.kafkaAddr, "telemetry")
	var start time.Time
	lastLog := time.Now()
	for {
		got := topicEnd(b, center.kafkaAddr, "gw1.telemetry")
		if got > 0 && start.IsZero() {
			start = time.Now()
		}
		if got == want {
			break
		}
		if time.Since(lastLog) > time.Second {
			b.Logf("%d/%d records at the center", got, want)
			lastLog = time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	m := ferryMetrics(b, edge.adminAddr, "ferry_mirror_wire_bytes_total", "ferry_mirror_chunks_sent_total")
	wire := m["ferry_mirror_wire_bytes_total"]
	// The first chunk's bytes were on the link before the first records
	// reached the center; the clock starts there, so count them out.
	chunks := m["ferry_mirror_chunks_sent_total"]
	perChunk := wire / chunks
	use := (wire - perChunk) / (elapsed.Seconds() * capBytes)
	b.ReportMetric(100*use, "%-of-cap")
	b.ReportMetric(wire/1e6, "wire-MB")
	refused := refusedChunks(b, center)
	b.ReportMetric(refused, "refused-chunks")
	b.Logf("%.1f MB of chunks in %d chunks over a 1 MiB/s, 200 ms link in %.2fs after the first arrived: %.1f%% of the cap carried records, %v chunks refused by the center",
		wire/1e6, int(chunks), elapsed.Seconds(), 100*use, refused)
}

// refusedChunks is what the center's receiver refused or ended, every
// reason (ferry_mirror_receiver_rejected_total): 0 on a healthy link, since
// each refusal drops the link and sends the edge into its backoff.
func refusedChunks(tb testing.TB, center *ferryProc) float64 {
	tb.Helper()
	var n float64
	for _, v := range ferryMetrics(tb, center.adminAddr, "ferry_mirror_receiver_rejected_total") {
		n += v
	}
	return n
}

// BenchmarkMirrorLive mirrors a 4-partition topic live, edge → center on
// loopback with no faults, while it takes about 2,200 real sensor
// readings a second (MIRROR_LIVE_RATE) for 30 s (MIRROR_LIVE_SECONDS) from
// two Kafka producers: one that compresses (zstd, batches lingering
// 500 ms, as a gateway's bulk uploader) into partitions 0 and 1, and one
// that sends each reading at once, uncompressed (as MQTT's records are
// stored), into partitions 2 and 3. The link then carries chunks sent as
// stored (every batch compressed by its producer) between zstd chunks,
// which the center once refused (issue 13). It reports the chunks the
// center refused and the link's failures, both of which must be 0, once
// the center's copy has every record.
//
//	go test -run '^$' -bench BenchmarkMirrorLive -benchtime=1x ./testbed
func BenchmarkMirrorLive(b *testing.B) {
	seconds := envInt("MIRROR_LIVE_SECONDS", 30)
	rate := envInt("MIRROR_LIVE_RATE", 2200)
	center := startFull(b, b.TempDir(), "", "--mirror-token", "gw1=s3cret")
	edge := startEdge(b, b.TempDir(), "--default-partitions", "4", "--mirror-to", center.mirrorAddr, "--mirror-edge-id", "gw1",
		"--mirror-token", "s3cret", "--mirror-topics", "readings")
	bulk, err := kgo.NewClient(kgo.SeedBrokers(edge.kafkaAddr), kgo.DefaultProduceTopic("readings"),
		kgo.ProducerBatchCompression(kgo.ZstdCompression()), kgo.ProducerLinger(500*time.Millisecond), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		b.Fatal(err)
	}
	defer bulk.Close()
	each, err := kgo.NewClient(kgo.SeedBrokers(edge.kafkaAddr), kgo.DefaultProduceTopic("readings"),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerLinger(0), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		b.Fatal(err)
	}
	defer each.Close()
	keys, values := sensorStream(b, rate*seconds)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds)*time.Second+2*time.Minute)
	defer cancel()
	if _, err := kadm.NewClient(bulk).CreateTopic(ctx, 4, 1, nil, "readings"); err != nil {
		b.Fatal(err)
	}
	errc := make(chan error, 1)
	done := func(_ *kgo.Record, err error) {
		if err != nil {
			select {
			case errc <- err:
			default:
			}
		}
	}
	// A tick every 10 ms, each producer taking half of its readings.
	tick := time.NewTicker(10 * time.Millisecond)
	start := time.Now()
	for i := 0; i < len(values); {
		<-tick.C
		due := min(int(time.Since(start).Seconds()*float64(rate)), len(values))
		for ; i < due; i++ {
			cl, p := bulk, int32(i/2%2)
			if i%2 == 1 {
				cl, p = each, 2+p
			}
			cl.Produce(ctx, &kgo.Record{Key: keys[i], Value: values[i], Partition: p}, done)
		}
	}
	tick.Stop()
	if err := bulk.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	if err := each.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	select {
	case err := <-errc:
		b.Fatal(err)
	default:
	}
	produced := time.Since(start)
	want := topicEnd(b, edge.kafkaAddr, "readings")
	for got := int64(-1); got != want; got = topicEnd(b, center.kafkaAddr, "gw1.readings") {
		if ctx.Err() != nil {
			b.Fatalf("the center has %d of %d records 2 minutes after ingest ended", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	refused := refusedChunks(b, center)
	m := ferryMetrics(b, edge.adminAddr, "ferry_mirror_link_errors_total", "ferry_mirror_chunks_sent_total", "ferry_mirror_connects_total")
	var linkErrs float64
	for k, v := range m {
		if strings.HasPrefix(k, "ferry_mirror_link_errors_total") {
			linkErrs += v
		}
	}
	chunks := m["ferry_mirror_chunks_sent_total"]
	b.ReportMetric(refused, "refused-chunks")
	b.ReportMetric(linkErrs, "link-errors")
	b.ReportMetric(chunks, "chunks")
	b.ReportMetric(float64(want)/produced.Seconds(), "records/s")
	b.Logf("%d records into 4 partitions in %.1fs (%.0f/s), mirrored live in %v chunks over %v connections: %v refused by the center, %v link errors",
		want, produced.Seconds(), float64(want)/produced.Seconds(), chunks, m["ferry_mirror_connects_total"], refused, linkErrs)
}
