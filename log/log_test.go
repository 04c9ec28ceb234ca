package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// openTestLog opens a log in a fresh temporary directory and closes it at
// the end of the test.
func openTestLog(t testing.TB, opts Options) *Log {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.RetentionCheckInterval == 0 {
		opts.RetentionCheckInterval = -1
	}
	l, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func testBatch(n int, ts int64, tag string) []byte {
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("%s-%d", tag, i)), Timestamp: ts + int64(i)}
	}
	return AppendBatch(nil, recs)
}

func TestAppendReadReopen(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, Options{Dir: dir})
	if _, err := l.CreateTopic("events", 2, map[string]string{ConfigSegmentBytes: "1048576", ConfigFlushPolicy: "always"}); err != nil {
		t.Fatal(err)
	}
	p, err := l.Partition("events", 1)
	if err != nil {
		t.Fatal(err)
	}
	var want [][]byte
	for i := 0; i < 50; i++ {
		b := testBatch(1+i%5, int64(1000+i), fmt.Sprint(i))
		res, err := p.Append(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.WaitDurable(context.Background(), res.LastOffset); err != nil {
			t.Fatal(err)
		}
		want = append(want, append([]byte(nil), b...))
	}
	check := func(p *Partition) {
		t.Helper()
		var got []byte
		off := int64(0)
		for off < p.EndOffset() {
			r, err := p.Read(off, 1000, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Data) == 0 {
				t.Fatalf("empty read at %d", off)
			}
			got = append(got, r.Data...)
			for b := r.Data; len(b) > 0; {
				h, err := ParseBatch(b)
				if err != nil {
					t.Fatal(err)
				}
				off = h.LastOffset() + 1
				b = b[h.Length:]
			}
		}
		if !bytes.Equal(got, bytes.Join(want, nil)) {
			t.Fatalf("read back %d bytes, want %d identical", len(got), len(bytes.Join(want, nil)))
		}
	}
	check(p)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := openTestLog(t, Options{Dir: dir})
	p2, err := l2.Partition("events", 1)
	if err != nil {
		t.Fatal(err)
	}
	check(p2)
	if _, err := p2.Read(p2.EndOffset()+1, 100, nil); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read past end: %v", err)
	}
	off, ts, err := p2.OffsetForTime(1010)
	if err != nil || ts < 1010 {
		t.Fatalf("OffsetForTime: %d %d %v", off, ts, err)
	}
	_ = time.Now
}
