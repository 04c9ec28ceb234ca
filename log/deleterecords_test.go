package log

import (
	"context"
	"errors"
	"testing"
)

// deleteSpy is a Shipper that is also told of DeleteRecords.
type deleteSpy struct {
	pinAt
	told [][2]int64
}

func (d *deleteSpy) WillDelete(_ string, _ int32, from, to int64) {
	d.told = append(d.told, [2]int64{from, to})
}

func TestDeleteRecordsMovesLogStart(t *testing.T) {
	dir := t.TempDir()
	l, p, _ := truncFixture(t, dir, nil) // offsets 0..35, segments at 0, 9, 18, 27, 36
	spy := &deleteSpy{}
	spy.from.Store(noFloor)
	l.SetShipper(spy)
	ctx := context.Background()

	if _, err := l.DeleteRecords(ctx, "t", 0, 37); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("delete past the end: %v, want ErrOffsetOutOfRange", err)
	}
	low, err := l.DeleteRecords(ctx, "t", 0, 10)
	if err != nil || low != 10 || p.StartOffset() != 10 {
		t.Fatalf("delete before 10: low %d, start %d, %v", low, p.StartOffset(), err)
	}
	if len(spy.told) != 1 || spy.told[0] != [2]int64{0, 9} {
		t.Fatalf("shipper told %v, want [[0 9]]", spy.told)
	}
	if n := len(p.Segments()); n != 4 {
		t.Fatalf("%d segments, want 4: the one wholly below the start goes", n)
	}
	if low, err := l.DeleteRecords(ctx, "t", 0, 4); err != nil || low != 10 || len(spy.told) != 1 {
		t.Fatalf("delete below the start: low %d, %v, told %v; want 10 and nothing", low, err, spy.told)
	}
	check := func(when string) {
		t.Helper()
		if _, err := p.Read(9, 1, nil); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("%s: read at 9: %v, want ErrOffsetOutOfRange", when, err)
		}
		r, err := p.Read(10, 1, nil)
		if err != nil {
			t.Fatalf("%s: read at 10: %v", when, err)
		}
		if h, _ := ParseBatch(r.Data); h.BaseOffset != 9 {
			t.Fatalf("%s: read at 10 starts at %d, want the batch holding it (9)", when, h.BaseOffset)
		}
		off, ts, err := p.OffsetForTime(0)
		if err != nil || off != 10 || ts != 1004 {
			t.Fatalf("%s: first record by time: %d at %d, %v; want offset 10 (1004)", when, off, ts, err)
		}
	}
	check("after DeleteRecords")

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTestLog(t, Options{Dir: dir, RetentionCheckInterval: -1})
	p, _ = l.Partition("t", 0)
	if p.StartOffset() != 10 {
		t.Fatalf("after a restart the log starts at %d, want 10", p.StartOffset())
	}
	check("after a restart")

	// To the end: every sealed segment goes; nothing is readable, and
	// appends go on at the end.
	if low, err := l.DeleteRecords(ctx, "t", 0, p.EndOffset()); err != nil || low != 36 {
		t.Fatalf("delete to the end: %d, %v", low, err)
	}
	if r, err := p.Append(testBatch(1, 2000, "x")); err != nil || r.BaseOffset != 36 {
		t.Fatalf("append after deleting everything: %+v, %v", r, err)
	}
}
