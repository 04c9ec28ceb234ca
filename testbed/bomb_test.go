package testbed

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// zstdBombBatch is a RecordBatch whose one record inflates to size bytes
// of zeros: the record's head as one zstd frame, a frame of 64 MiB of
// zeros repeated, the rest; about 200 KiB for 1 GiB. The frames are
// streamed (no declared content size), as a careful attacker would.
func zstdBombBatch(tb testing.TB, size int) []byte {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		tb.Fatal(err)
	}
	frame := func(b []byte) []byte {
		var out bytes.Buffer
		enc.Reset(&out)
		enc.Write(b)
		enc.Close()
		return out.Bytes()
	}
	rec := []byte{0, 0, 0, 1} // attributes, timestamp delta, offset delta, null key
	rec = binary.AppendVarint(rec, int64(size))
	body := frame(append(binary.AppendVarint(nil, int64(len(rec)+size+1)), rec...))
	zeros := frame(make([]byte, 64<<20))
	for range size / (64 << 20) {
		body = append(body, zeros...)
	}
	body = append(body, frame(make([]byte, size%(64<<20)+1))...) // the rest, and no headers
	rb := kmsg.RecordBatch{Magic: 2, Attributes: 4, FirstTimestamp: time.Now().UnixMilli(), MaxTimestamp: time.Now().UnixMilli(),
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 1, Records: body, Length: int32(61 - 12 + len(body))}
	out := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(out[17:], crc32.Checksum(out[21:], crc32.MakeTable(crc32.Castagnoli)))
	return out
}

// sendBombs sends n Produce requests (acks=-1) in parallel, each on its
// own connection, each carrying batch for topic, and returns the error
// code each was answered with.
func sendBombs(tb testing.TB, addr, topic string, batch []byte, n int) []int16 {
	codes := make([]int16, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
		if err != nil {
			tb.Fatal(err)
		}
		defer cl.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := kmsg.NewPtrProduceRequest()
			req.Acks, req.TimeoutMillis = -1, 30000
			rt := kmsg.NewProduceRequestTopic()
			rt.Topic = topic
			rp := kmsg.NewProduceRequestTopicPartition()
			rp.Records = batch
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			resp, err := req.RequestWith(ctx, cl)
			if err != nil {
				errs[i] = err
				return
			}
			codes[i] = resp.Topics[0].Partitions[0].ErrorCode
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			tb.Fatalf("a bomb's produce request: %v", err)
		}
	}
	return codes
}

// bombPeakRSS starts `ferry edge`, sends it 4 parallel Produce requests
// each carrying a zstd batch inflating to 1 GiB of zeros, checks each is
// refused with RECORD_LIST_TOO_LARGE, and returns the process's peak
// resident set (VmHWM) in MiB before and after, and how long the 4 took.
func bombPeakRSS(tb testing.TB) (before, after float64, took time.Duration) {
	p := startEdge(tb, tb.TempDir())
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.kafkaAddr))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "bombs"); err != nil {
		tb.Fatal(err)
	}
	batch := zstdBombBatch(tb, 1<<30)
	before = float64(procStatusKB(tb, p.cmd.Process.Pid, "VmHWM")["VmHWM"]) / 1024
	start := time.Now()
	codes := sendBombs(tb, p.kafkaAddr, "bombs", batch, 4)
	took = time.Since(start)
	for i, c := range codes {
		if c != kerr.RecordListTooLarge.Code {
			tb.Fatalf("bomb %d answered %v, want RECORD_LIST_TOO_LARGE", i, kerr.ErrorForCode(c))
		}
	}
	after = float64(procStatusKB(tb, p.cmd.Process.Pid, "VmHWM")["VmHWM"]) / 1024
	return before, after, took
}

// TestDecompressionBombsRSS: 4 parallel Produce requests, each one zstd
// batch inflating to 1 GiB of zeros, are refused with
// RECORD_LIST_TOO_LARGE and leave the edge's peak RSS (VmHWM) under
// 200 MiB. Before streaming validation one such request took the broker to
// 1.13 GB and four to 4.3 GB.
func TestDecompressionBombsRSS(t *testing.T) {
	before, mib, took := bombPeakRSS(t)
	t.Logf("4 parallel 1 GiB zstd bombs: refused in %v, ferry edge's VmHWM %.1f MiB (%.1f before)", took, mib, before)
	if mib >= 200 {
		t.Fatalf("VmHWM %.1f MiB after 4 parallel bombs, want under 200 MiB", mib)
	}
}

// BenchmarkDecompressionBombs reports the edge's peak RSS (VmHWM, MiB)
// under 4 parallel 1 GiB zstd bombs (and before them), and the time to
// refuse them.
func BenchmarkDecompressionBombs(b *testing.B) {
	for range b.N {
		before, mib, took := bombPeakRSS(b)
		b.ReportMetric(before, "MiB-hwm-before")
		b.ReportMetric(mib, "MiB-hwm-4bombs")
		b.ReportMetric(took.Seconds(), "s-4bombs")
	}
}
