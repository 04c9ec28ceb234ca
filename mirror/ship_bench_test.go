//go:build unix

package mirror

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	flog "ferry/log"
)

// BenchmarkShip ships a backlog of real sensor readings from an edge's log
// to a center's in one process over loopback: a Sender and a Receiver, each
// over its own log in its own directory, sharing the machine's cores as
// `ferry edge` and `ferry full` do in testbed's BenchmarkMirror, without the
// processes' start-up or their Kafka listeners. The readings are those of
// testbed/testdata/room-climate-full replayed the way BenchmarkMirror does
// (one device per location and node, 109 bytes of JSON, keyed by device),
// in batches of 6,000 records, about what the Kafka producer there makes.
// The clock runs from the sender's start until the center's copy is durable
// to the edge's end; MB/s is of the records as stored, cores the CPU time
// both ends used over that time (2 is all of a 2-core machine). It is the
// place to profile both ends of the mirror:
//
//	go test -run '^$' -bench BenchmarkShip -benchtime 5x -cpuprofile cpu.prof ./mirror
//
// MIRROR_SHIP_RECORDS sets the backlog (default 1,000,000: 127 MB stored).
func BenchmarkShip(b *testing.B) {
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
	for _, level := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault} {
		b.Run("zstd="+level.String(), func(b *testing.B) {
			b.SetBytes(src.Size())
			var wire, raw int64
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				c := startCenter(b, nil, "")
				// Made here so that its end can be awaited; the receiver
				// finds it as it would its own.
				if _, err := c.log.CreateTopic("gw1.telemetry", 1, nil); err != nil {
					b.Fatal(err)
				}
				dst, err := c.log.Partition("gw1.telemetry", 0)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				cpu -= cpuTime()
				e := startSenderWith(b, SenderOptions{Log: edgeLog, StatePath: filepath.Join(b.TempDir(), "mirror.db"), Center: c.addr, Level: level})
				if err := dst.WaitDurable(context.Background(), src.EndOffset()-1); err != nil {
					b.Fatal(err)
				}
				cpu += cpuTime()
				b.StopTimer()
				wire, raw = e.sender.state.wireBytes.Load(), e.sender.state.rawBytes.Load()
				e.stop()
				c.stop()
				b.StartTimer()
			}
			b.ReportMetric(cpu.Seconds()/b.Elapsed().Seconds(), "cores")
			b.ReportMetric(float64(wire)/float64(n), "wire-B/record")
			b.ReportMetric(float64(raw)/float64(wire), "ratio")
		})
	}
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// appendReadings appends n readings of testbed/testdata/room-climate-full
// to p, perBatch records a batch, as testbed's sensorStream replays them.
func appendReadings(tb testing.TB, p *flog.Partition, n, perBatch int) {
	tb.Helper()
	type row struct {
		dev, temp, hum, light1, light2 string
		ts                             int64
	}
	files, err := filepath.Glob("../testbed/testdata/room-climate-full/*.csv")
	if err != nil || len(files) == 0 {
		tb.Fatalf("room-climate data missing: %v", err)
	}
	var rows []row
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		r := csv.NewReader(bytes.NewReader(data))
		r.TrimLeadingSpace = true
		recs, err := r.ReadAll()
		if err != nil {
			tb.Fatalf("%s: %v", f, err)
		}
		loc := strings.TrimPrefix(strings.SplitN(filepath.Base(f), "-", 2)[0], "location_")
		for _, rec := range recs {
			ts, err := strconv.ParseInt(rec[1], 10, 64)
			if err != nil {
				tb.Fatalf("%s: %v", f, err)
			}
			rows = append(rows, row{dev: "room-" + loc + "-" + rec[3], ts: ts, temp: rec[4], hum: rec[5], light1: rec[6], light2: rec[7]})
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].ts < rows[j].ts })
	const produced = 1_795_609_262_273
	recs := make([]flog.Record, 0, perBatch)
	var batch []byte
	for i := 0; i < n; i++ {
		r := rows[i%len(rows)]
		ts := r.ts + int64(i/len(rows))*3_600_000
		// Stamped at production time, as a producer does: about 3,000
		// records a millisecond.
		recs = append(recs, flog.Record{Key: []byte(r.dev), Timestamp: produced + int64(i/3000),
			Value: fmt.Appendf(nil, `{"device":%q,"ts":%d,"temperature":%s,"humidity":%s,"light1":%s,"light2":%s}`,
				r.dev, ts, r.temp, r.hum, r.light1, r.light2)})
		if len(recs) == perBatch || i == n-1 {
			batch = flog.AppendBatch(batch[:0], recs)
			if _, err := p.Append(batch); err != nil {
				tb.Fatal(err)
			}
			recs = recs[:0]
		}
	}
}
