package mirror

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	flog "ferry/log"
)

// budgetLog is an edge log with a 3 MiB disk budget under drop-oldest,
// evicting by the mirror's classes, with 1 MiB segments per topic.
func budgetLog(t *testing.T, dir string, topics ...string) *flog.Log {
	t.Helper()
	l, err := flog.Open(flog.Options{Dir: dir, RetentionCheckInterval: -1, Logger: quiet, MaxDiskBytes: 3 << 20,
		BudgetPolicy: flog.BudgetDropOldest})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	for _, topic := range topics {
		if _, err := l.CreateTopic(topic, 1, map[string]string{flog.ConfigSegmentBytes: "1048576"}); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// produceHeavy appends n records of 100 kB to partition 0 of topic.
func produceHeavy(t *testing.T, l *flog.Log, topic string, n int) {
	t.Helper()
	p, _ := l.Partition(topic, 0)
	for i := 0; i < n; i++ {
		b := flog.AppendBatch(nil, []flog.Record{{Value: bytes.Repeat([]byte{byte('a' + i%26)}, 100_000), Timestamp: time.Now().UnixMilli()}})
		if _, err := p.Append(b); err != nil {
			t.Fatal(err)
		}
	}
}

// checkCopyWithGap checks the center's copy of topic: the edge's records
// below gapFrom and from the edge's start on, byte for byte at the same
// offsets, and between them one gap (batches with no records) spanning
// exactly the offsets the edge dropped.
func checkCopyWithGap(t *testing.T, edgeLog, centerLog *flog.Log, topic string, gapFrom int64) {
	t.Helper()
	src, _ := edgeLog.Partition(topic, 0)
	var dst *flog.Partition
	waitFor(t, "the copy to reach the edge's end", func() bool {
		dst, _ = centerLog.Partition("gw1."+topic, 0)
		return dst != nil && dst.DurableOffset() >= src.EndOffset()
	})
	if dst.EndOffset() != src.EndOffset() {
		t.Fatalf("center ends at %d, edge at %d", dst.EndOffset(), src.EndOffset())
	}
	gapTo := src.StartOffset() - 1
	for off := dst.StartOffset(); off < dst.EndOffset(); {
		rr, err := dst.Read(off, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		h, err := flog.ParseBatch(rr.Data)
		if err != nil {
			t.Fatal(err)
		}
		inGap := h.BaseOffset >= gapFrom && h.LastOffset() <= gapTo
		switch {
		case inGap && h.NumRecords != 0:
			t.Fatalf("center holds %d records at %d, inside the dropped range %d..%d", h.NumRecords, h.BaseOffset, gapFrom, gapTo)
		case !inGap && h.NumRecords == 0:
			t.Fatalf("an empty batch %d..%d outside the dropped range %d..%d", h.BaseOffset, h.LastOffset(), gapFrom, gapTo)
		case !inGap && h.BaseOffset >= src.StartOffset():
			er, err := src.Read(h.BaseOffset, 1, nil)
			if err != nil || !bytes.Equal(er.Data[:len(rr.Data[:h.Length])], rr.Data[:h.Length]) {
				t.Fatalf("batch at %d differs from the edge's (%v)", h.BaseOffset, err)
			}
		case !inGap && h.LastOffset() >= gapFrom:
			t.Fatalf("batch %d..%d straddles the gap's start %d", h.BaseOffset, h.LastOffset(), gapFrom)
		}
		off = h.LastOffset() + 1
	}
}

// Under drop-oldest, a long outage fills the disk budget: the lowest
// priority class (telemetry) loses its oldest unshipped records, alarms
// keep theirs; the loss is counted and survives a restart of the edge;
// back online, the center gets every record the edge still has, at its
// offsets, and a gap spanning exactly what was dropped.
func TestMirrorDropOldestTellsTheCenterTheGap(t *testing.T) {
	edgeDir, state := t.TempDir(), filepath.Join(t.TempDir(), "mirror.db")
	classes := []Class{{Pattern: "alarms", Class: 0}, {Pattern: "telemetry", Class: 2}}
	opts := SenderOptions{StatePath: state, ChunkBytes: 256 << 10, Classes: classes}
	edgeLog := budgetLog(t, edgeDir, "alarms", "telemetry")
	edgeLog.ArmBudget()
	centerLog := openLog(t, t.TempDir())
	c := startCenter(t, centerLog, "")
	opts.Log, opts.Center = edgeLog, c.addr
	e := startSenderWith(t, opts)
	produceHeavy(t, edgeLog, "telemetry", 5)
	produceHeavy(t, edgeLog, "alarms", 3)
	waitFor(t, "the first records to ship", func() bool { return e.sender.Acked("telemetry", 0) == 5 && e.sender.Acked("alarms", 0) == 3 })

	// The link goes down; the edge keeps ingesting past its budget.
	c.stop()
	produceHeavy(t, edgeLog, "telemetry", 40)
	produceHeavy(t, edgeLog, "alarms", 5)
	if _, blocked := edgeLog.EnforceBudget(); blocked {
		t.Fatal("drop-oldest blocked")
	}
	tel, _ := edgeLog.Partition("telemetry", 0)
	alarms, _ := edgeLog.Partition("alarms", 0)
	if tel.StartOffset() <= 5 || alarms.StartOffset() != 0 {
		t.Fatalf("after the budget pass telemetry starts at %d, alarms at %d: want telemetry's unshipped records dropped, alarms untouched",
			tel.StartOffset(), alarms.StartOffset())
	}
	lost := tel.StartOffset() - 5
	if got := testutil.ToFloat64(e.sender.metrics.dropped.WithLabelValues("telemetry")); got != float64(lost) {
		t.Fatalf("dropped records counted %v, want %d", got, lost)
	}

	// The edge restarts before the link is back; the center comes back.
	e.stop()
	opts.Registerer = nil
	c2 := startCenter(t, centerLog, c.addr)
	e2 := startSenderWith(t, opts)
	checkCopyWithGap(t, edgeLog, centerLog, "telemetry", 5)
	waitCopied(t, edgeLog, centerLog, "alarms")
	if got := c2.recv.Status().Edges[0].GapRecords; got != lost {
		t.Fatalf("center counted %v gap records, want %d", got, lost)
	}
	waitFor(t, "the gap's acknowledgement", func() bool { return e2.sender.Acked("telemetry", 0) == tel.EndOffset() })
	e2.sender.mu.Lock()
	_, pending := e2.sender.lost[partKey{"telemetry", 0}]
	e2.sender.mu.Unlock()
	if pending {
		t.Fatal("the reported loss is still pending after the center acknowledged the gap")
	}
}

// Records dropped before the edge ever reached the center are told too:
// the center's copy starts at offset 0 with the gap, not silently at the
// edge's new start.
func TestMirrorDropOldestBeforeFirstContact(t *testing.T) {
	state := filepath.Join(t.TempDir(), "mirror.db")
	opts := SenderOptions{StatePath: state, ChunkBytes: 256 << 10, Center: "127.0.0.1:1"} // nobody there
	edgeLog := budgetLog(t, t.TempDir(), "telemetry")
	opts.Log = edgeLog
	e := startSenderWith(t, opts) // the log's shipper before the budget is armed
	edgeLog.ArmBudget()
	produceHeavy(t, edgeLog, "telemetry", 45)
	edgeLog.EnforceBudget()
	tel, _ := edgeLog.Partition("telemetry", 0)
	if tel.StartOffset() == 0 {
		t.Fatal("nothing dropped")
	}
	e.stop()
	c := startCenter(t, nil, "")
	opts.Center = c.addr
	startSenderWith(t, opts)
	checkCopyWithGap(t, edgeLog, c.log, "telemetry", 0)
	dst, _ := c.log.Partition("gw1.telemetry", 0)
	if dst.StartOffset() != 0 {
		t.Fatalf("the center's copy starts at %d, want 0 (with the gap)", dst.StartOffset())
	}
}
