package log

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Benchmarks of the storage engine. `make bench` runs them and
// testbed/BENCHMARKS.md records the figures beside the raw disk's.
//
// BENCH_DIR puts the files on a chosen disk (default: the test's temporary
// directory).

func benchDir(b *testing.B) string {
	if d := os.Getenv("BENCH_DIR"); d != "" {
		dir, err := os.MkdirTemp(d, "ferry-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return b.TempDir()
}

// recordBatch builds a batch of n records of 100-byte values with 16-byte keys.
func recordBatch(n int) []byte {
	recs := make([]Record, n)
	val := make([]byte, 100)
	for i := range val {
		val[i] = byte('a' + i%26)
	}
	now := time.Now().UnixMilli()
	for i := range recs {
		recs[i] = Record{Key: []byte(fmt.Sprintf("device-%09d", i)), Value: val, Timestamp: now}
	}
	return AppendBatch(nil, recs)
}

// BenchmarkAppend appends 100-byte records in batches of 1, 100 and 1000 to
// 1, 4 and 16 partitions from 4 writers per partition. With flush=always every
// append waits until it is fsynced (group commit shares fsyncs between the
// writers); with flush=interval appends return from the page cache and the
// group commit runs every 10 ms, and the benchmark ends with a full sync.
func BenchmarkAppend(b *testing.B) {
	for _, flush := range []string{"interval", "always"} {
		for _, parts := range []int{1, 4, 16} {
			for _, batch := range []int{1, 100, 1000} {
				b.Run(fmt.Sprintf("flush=%s/partitions=%d/batch=%d", flush, parts, batch), func(b *testing.B) {
					benchAppend(b, flush, parts, batch, 4)
				})
			}
		}
	}
}

func benchAppend(b *testing.B, flush string, parts, batch, writersPer int) {
	l, err := Open(Options{Dir: benchDir(b), RetentionCheckInterval: -1, Logger: quietLogger})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	if _, err := l.CreateTopic("bench", int32(parts), map[string]string{ConfigFlushPolicy: flush, ConfigSegmentBytes: "268435456"}); err != nil {
		b.Fatal(err)
	}
	proto := recordBatch(batch)
	writers := parts * writersPer
	var wg sync.WaitGroup
	per := b.N / writers
	extra := b.N % writers
	b.SetBytes(int64(len(proto)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < writers; w++ {
		n := per
		if w < extra {
			n++
		}
		p, err := l.Partition("bench", int32(w%parts))
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func(p *Partition, n int) {
			defer wg.Done()
			buf := append([]byte(nil), proto...)
			for i := 0; i < n; i++ {
				res, err := p.Append(buf)
				if err != nil {
					b.Error(err)
					return
				}
				if flush == "always" {
					if err := p.WaitDurable(context.Background(), res.LastOffset); err != nil {
						b.Error(err)
						return
					}
				}
			}
		}(p, n)
	}
	wg.Wait()
	if err := l.Sync(); err != nil {
		b.Fatal(err)
	}
	el := time.Since(start).Seconds()
	b.StopTimer()
	b.ReportMetric(float64(b.N*batch)/el, "records/s")
	b.ReportMetric(float64(b.N*len(proto))/el/1e6, "MB/s")
}

// BenchmarkRawDisk is the disk's own sequential write bandwidth with
// fdatasync at the end, in 1 MiB writes: the ceiling for BenchmarkAppend.
func BenchmarkRawDisk(b *testing.B) {
	f, err := OSFS{}.OpenFile(filepath.Join(benchDir(b), "raw"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 1<<20)
	b.SetBytes(int64(len(block)))
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := f.WriteAt(block, int64(i)*int64(len(block))); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N*len(block))/time.Since(start).Seconds()/1e6, "MB/s")
}

// BenchmarkRead reads a 64 MiB partition front to back from the page cache
// in 1 MiB fetches, as a consumer catching up does.
func BenchmarkRead(b *testing.B) {
	l, err := Open(Options{Dir: benchDir(b), RetentionCheckInterval: -1, Logger: quietLogger})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	if _, err := l.CreateTopic("bench", 1, map[string]string{ConfigFlushPolicy: "never", ConfigSegmentBytes: "16777216"}); err != nil {
		b.Fatal(err)
	}
	p, _ := l.Partition("bench", 0)
	proto := recordBatch(100)
	var total int64
	for total < 64<<20 {
		if _, err := p.Append(proto); err != nil {
			b.Fatal(err)
		}
		total += int64(len(proto))
	}
	buf := make([]byte, 0, 1<<20+len(proto))
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		off := p.StartOffset()
		for off < p.EndOffset() {
			r, err := p.Read(off, 1<<20, buf)
			if err != nil {
				b.Fatal(err)
			}
			off = lastOffsetIn(r.Data) + 1
		}
	}
}

func lastOffsetIn(data []byte) int64 {
	last := int64(-1)
	for len(data) > 0 {
		h, _ := parseHeader(data)
		last = h.LastOffset()
		data = data[h.Length:]
	}
	return last
}

// BenchmarkReopen measures Open of a log of 1,000 segments (4 GiB by
// default; BENCH_REOPEN_SEGMENT_MB sets the segment size), which must scan
// only the active segment.
func BenchmarkReopen(b *testing.B) {
	segMB := 4
	if v := os.Getenv("BENCH_REOPEN_SEGMENT_MB"); v != "" {
		fmt.Sscan(v, &segMB)
	}
	dir := benchDir(b)
	l, err := Open(Options{Dir: dir, RetentionCheckInterval: -1, Logger: quietLogger})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := l.CreateTopic("bench", 1, map[string]string{ConfigFlushPolicy: "never", ConfigSegmentBytes: "1073741824"}); err != nil {
		b.Fatal(err)
	}
	p, _ := l.Partition("bench", 0)
	// Batches of 1,000 records are ~120 KiB; fill each segment then roll.
	proto := recordBatch(1000)
	for s := 0; s < 1000; s++ {
		for size := 0; size+len(proto) <= segMB<<20; size += len(proto) {
			if _, err := p.Append(proto); err != nil {
				b.Fatal(err)
			}
		}
		if err := p.Roll(); err != nil {
			b.Fatal(err)
		}
	}
	// A half-full active segment, so recovery has a tail to scan.
	for i := 0; i < 100; i++ {
		p.Append(proto)
	}
	size := l.Size()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l, err := Open(Options{Dir: dir, RetentionCheckInterval: -1, Logger: quietLogger})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		p, _ := l.Partition("bench", 0)
		if n := len(p.Segments()); n != 1001 {
			b.Fatalf("%d segments", n)
		}
		l.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(size)/(1<<30), "GiB")
}

var quietLogger = slog.New(slog.DiscardHandler)
