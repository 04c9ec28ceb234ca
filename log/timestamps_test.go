package log

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// clientBatch builds a RecordBatch with the header timestamps a client
// chose (first, max) and one record per timestamp delta, zstd-compressed
// when zstd is set: the batches librdkafka writes for CreateTime -1 have
// first -1, max 0 and deltas 0, which AppendBatch cannot produce.
func clientBatch(t testing.TB, first, max int64, deltas []int64, zstd bool) []byte {
	t.Helper()
	var body []byte
	for i, d := range deltas {
		r := kmsg.Record{TimestampDelta64: d, OffsetDelta: int32(i), Value: []byte("v")}
		enc := r.AppendTo(nil) // length 0 (one byte) in front
		body = binary.AppendVarint(body, int64(len(enc)-1))
		body = append(body, enc[1:]...)
	}
	var attrs int16
	if zstd {
		c, err := kgo.DefaultCompressor(kgo.ZstdCompression())
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		out, codec := c.Compress(&buf, body)
		body, attrs = append([]byte(nil), out...), int16(codec)
	}
	rb := kmsg.RecordBatch{
		Length: int32(batchHeaderSize - batchLogOverhead + len(body)), Magic: 2, Attributes: attrs,
		LastOffsetDelta: int32(len(deltas) - 1), FirstTimestamp: first, MaxTimestamp: max,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: int32(len(deltas)), Records: body,
	}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], castagnoli))
	return b
}

func noTimestamps(n int) []int64 { return make([]int64, n) }

// Records from librdkafka with no timestamp (header -1/0) are aged by the
// segment's last write, not by the header's 0 (1970): they survive
// retention passes until that write is retention.ms old, then go; so do
// records from 2100, whose timestamp is not believed past the write. Both
// hold again after a reopen, where the last write is the file's
// modification time. A batch whose header understates its records'
// timestamps keeps its segment by the records.
func TestRetentionAgesRecordsByKafkasRule(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Now() // the files' modification times are this clock's after a reopen
	clock := &fakeClock{}
	clock.set(t0)
	year2100 := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	retention := time.Hour
	cases := []struct {
		topic string
		batch []byte
	}{
		{"notime", clientBatch(t, -1, 0, noTimestamps(200), false)},
		{"notime-zstd", clientBatch(t, -1, 0, noTimestamps(200), true)},
		{"future", clientBatch(t, year2100, year2100, noTimestamps(5), false)},
		// The header says two hours ago; the records say up to t0.
		{"understated", clientBatch(t, t0.Add(-2*time.Hour).UnixMilli(), t0.Add(-2*time.Hour).UnixMilli(), []int64{0, 2 * time.Hour.Milliseconds()}, true)},
	}
	open := func() *Log {
		return openTestLog(t, Options{Dir: dir, Now: clock.now, Logger: quietLogger})
	}
	l := open()
	for _, c := range cases {
		if _, err := l.CreateTopic(c.topic, 1, map[string]string{ConfigRetentionMs: "3600000"}); err != nil {
			t.Fatal(err)
		}
		p, _ := l.Partition(c.topic, 0)
		if _, err := p.Append(c.batch); err != nil {
			t.Fatalf("%s: %v", c.topic, err)
		}
		if err := p.Roll(); err != nil { // sealed: aged through the time index too
			t.Fatal(err)
		}
	}
	check := func(when string, at time.Time, wantKept bool) {
		t.Helper()
		clock.set(at)
		if _, err := l.EnforceRetention(); err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			p, _ := l.Partition(c.topic, 0)
			if kept := p.StartOffset() == 0; kept != wantKept {
				t.Errorf("%s: %s starts at %d of %d; kept=%v, want %v", when, c.topic, p.StartOffset(), p.EndOffset(), kept, wantKept)
			}
		}
	}
	check("a minute after the write", t0.Add(time.Minute), true)
	check("just under retention.ms after it", t0.Add(retention-time.Minute), true)
	l.Close()
	l = open()
	check("after a reopen", t0.Add(retention-time.Minute), true)
	check("past retention.ms after the write", t0.Add(retention+time.Minute), false)
}

// A lookup by time asks the records, not a header that disagrees with them,
// and never finds a record without a timestamp.
func TestOffsetForTimeTrustsTheRecords(t *testing.T) {
	l := openTestLog(t, Options{Logger: quietLogger})
	l.CreateTopic("t", 1, nil)
	p, _ := l.Partition("t", 0)
	ts := time.Now().UnixMilli()
	for _, b := range [][]byte{
		clientBatch(t, -1, 0, noTimestamps(3), false),         // offsets 0-2: none
		clientBatch(t, ts, ts, []int64{0, 10}, true),          // 3-4: ts, ts+10; header max ts
		clientBatch(t, -1, ts+20, []int64{0, ts + 21}, false), // 5: none, 6: ts+20
	} {
		if _, err := p.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ at, off, ts int64 }{
		{0, 3, ts}, {-5, 3, ts}, {ts + 5, 4, ts + 10}, {ts + 11, 6, ts + 20}, {ts + 21, -1, -1},
	} {
		if off, got, err := p.OffsetForTime(tc.at); err != nil || off != tc.off || got != tc.ts {
			t.Errorf("OffsetForTime(%d) = %d, %d, %v; want %d, %d", tc.at, off, got, err, tc.off, tc.ts)
		}
	}
}

// AgedAt, the "how old" of one record, is its timestamp, or its segment's
// last write when it has none or one from the future.
func TestAgedAtNeverSays1970OrTheFuture(t *testing.T) {
	clock := &fakeClock{}
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	clock.set(t0)
	l := openTestLog(t, Options{Now: clock.now, Logger: quietLogger})
	l.CreateTopic("t", 1, nil)
	p, _ := l.Partition("t", 0)
	old := t0.Add(-time.Hour).UnixMilli()
	p.Append(clientBatch(t, -1, 0, noTimestamps(1), false))                   // 0
	p.Append(clientBatch(t, old, old, []int64{0}, true))                      // 1
	p.Append(clientBatch(t, 4102444800000, 4102444800000, []int64{0}, false)) // 2: 2100
	clock.set(t0.Add(time.Minute))
	for off, want := range []int64{t0.UnixMilli(), old, t0.UnixMilli()} {
		if got, err := p.AgedAt(int64(off)); err != nil || got != want {
			t.Errorf("AgedAt(%d) = %d, %v; want %d", off, got, err, want)
		}
	}
	if _, err := p.AgedAt(3); err == nil {
		t.Errorf("AgedAt past the end: no error")
	}
}

func TestRecordTimestamp(t *testing.T) {
	for _, tc := range []struct {
		name         string
		attrs        int16
		first, max   int64
		delta, wantT int64
	}{
		{"none", 0, -1, 0, 0, -1},
		{"none after a real first", 0, 1000, 1000, -1001, -1},
		{"real after a none first", 0, -1, 0, 1001, 1000},
		{"negative", 0, -7, 0, 0, -1},
		{"wraps past MaxInt64", 0, math.MaxInt64 - 1, 0, 5, -1},
		{"wraps past MinInt64", 0, math.MinInt64 + 1, 0, -5, -1},
		{"log append time", attrLogAppendTime, 5, 42, 3, 42},
	} {
		h := BatchHeader{Attributes: tc.attrs, FirstTimestamp: tc.first, MaxTimestamp: tc.max}
		if got := recordTimestamp(h, tc.delta); got != tc.wantT {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.wantT)
		}
	}
}

// A gateway whose clock ran behind (a dead RTC battery, before NTP) stores
// records stamped by correct clocks: they are not deleted while its clock
// is behind (they are from its future, so the write ages them), nor once
// it is set right (their timestamps are then believed).
func TestRecordsAheadOfALaggingClockAreKept(t *testing.T) {
	clock := &fakeClock{}
	boot := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	clock.set(boot)
	l := openTestLog(t, Options{Now: clock.now, Logger: quietLogger})
	l.CreateTopic("t", 1, map[string]string{ConfigRetentionMs: "3600000"})
	p, _ := l.Partition("t", 0)
	stamped := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	if _, err := p.Append(testBatch(3, stamped.UnixMilli(), "x")); err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Time{boot.Add(30 * time.Minute), stamped.Add(time.Minute)} {
		clock.set(at)
		if res, err := l.EnforceRetention(); err != nil || res.Segments != 0 {
			t.Fatalf("retention at %v: %+v, %v; want nothing deleted", at, res, err)
		}
	}
	clock.set(stamped.Add(61 * time.Minute))
	if res, err := l.EnforceRetention(); err != nil || res.Segments != 1 {
		t.Fatalf("retention an hour after the records' time: %+v, %v; want their segment deleted", res, err)
	}
}

// Time indexes written before the log took timestamps from the records
// hold librdkafka's header 0 for segments whose records carry none: on
// opening such a segment (sealed or active) the index is rebuilt from the
// records, so an upgrade does not delete what the fix keeps.
func TestTimeIndexFromBatchHeadersIsRebuilt(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Now()
	clock := &fakeClock{}
	clock.set(t0)
	l := openTestLog(t, Options{Dir: dir, Now: clock.now, Logger: quietLogger})
	l.CreateTopic("t", 1, map[string]string{ConfigRetentionMs: "3600000", ConfigIndexIntervalBytes: "0"})
	p, _ := l.Partition("t", 0)
	for i := 0; i < 4; i++ { // two segments of two batches, each indexed
		if _, err := p.Append(clientBatch(t, -1, 0, noTimestamps(3), false)); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			p.Roll()
		}
	}
	l.Close()
	stale := 0
	for _, seg := range []string{"00000000000000000000", "00000000000000000006"} {
		name := filepath.Join(dir, "t-0", seg+".timeindex")
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+timeEntrySize <= len(b); i += timeEntrySize {
			binary.BigEndian.PutUint64(b[i:], 0) // the header's max timestamp, as the old code indexed it
			stale++
		}
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if stale < 2 { // one in each segment
		t.Fatalf("only %d time-index entries to make stale", stale)
	}
	l = openTestLog(t, Options{Dir: dir, Now: clock.now, Logger: quietLogger})
	clock.set(t0.Add(time.Minute))
	if res, err := l.EnforceRetention(); err != nil || res.Segments != 0 {
		t.Fatalf("retention a minute after the write, over indexes from headers: %+v, %v; want nothing deleted", res, err)
	}
}

// TestMaxTimestampFindsTheFirstRecordAtTheMaximum: across segments (one
// sealed and reopened lazily, the active one), the answer is the first
// record holding the partition's largest timestamp, not the last record.
func TestMaxTimestampFindsTheFirstRecordAtTheMaximum(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, Options{Dir: dir})
	if _, err := l.CreateTopic("mt", 1, nil); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("mt", 0)
	if off, ts, err := p.MaxTimestamp(); err != nil || off != -1 || ts != -1 {
		t.Fatalf("empty partition: %d %d %v", off, ts, err)
	}
	appendAll := func(p *Partition, batches ...[]byte) {
		t.Helper()
		for _, b := range batches {
			if _, err := p.Append(b); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendAll(p, testBatch(3, 1000, "a")) // offsets 0-2, ts 1000-1002
	appendAll(p, testBatch(3, 5000, "b")) // offsets 3-5, ts 5000-5002: the maximum at offset 5
	if err := p.Roll(); err != nil {
		t.Fatal(err)
	}
	appendAll(p, testBatch(2, 2000, "c"), testBatch(1, 5002, "d")) // 6-7; 8 at the maximum again
	if off, ts, err := p.MaxTimestamp(); err != nil || off != 5 || ts != 5002 {
		t.Fatalf("MaxTimestamp = %d %d %v, want offset 5 at 5002", off, ts, err)
	}
	l.Close()
	l2 := openTestLog(t, Options{Dir: dir})
	p2, _ := l2.Partition("mt", 0)
	if off, ts, err := p2.MaxTimestamp(); err != nil || off != 5 || ts != 5002 {
		t.Fatalf("after reopening: MaxTimestamp = %d %d %v, want offset 5 at 5002", off, ts, err)
	}
	appendAll(p2, testBatch(1, 9000, "e")) // 9
	if off, ts, err := p2.MaxTimestamp(); err != nil || off != 9 || ts != 9000 {
		t.Fatalf("after a later maximum: MaxTimestamp = %d %d %v, want offset 9 at 9000", off, ts, err)
	}
}
