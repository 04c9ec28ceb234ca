package mirror

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Records a DeleteRecords request removes at the edge before they were
// shipped are told to the center as a gap, exactly their range, as a
// drop-oldest loss is: never skipped silently, even across a restart of
// the edge; records shipped before are kept in the copy.
func TestMirrorDeleteRecordsTellsTheCenterTheGap(t *testing.T) {
	edgeDir, state := t.TempDir(), filepath.Join(t.TempDir(), "mirror.db")
	opts := SenderOptions{StatePath: state, ChunkBytes: 256 << 10}
	edgeLog := budgetLog(t, edgeDir, "telemetry")
	centerLog := openLog(t, t.TempDir())
	c := startCenter(t, centerLog, "")
	opts.Log, opts.Center = edgeLog, c.addr
	e := startSenderWith(t, opts)
	produceHeavy(t, edgeLog, "telemetry", 5)
	waitFor(t, "the first records to ship", func() bool { return e.sender.Acked("telemetry", 0) == 5 })

	// The link goes down; records 5..14 wait at the edge, and a client
	// deletes those before 12.
	c.stop()
	produceHeavy(t, edgeLog, "telemetry", 10)
	low, err := edgeLog.DeleteRecords(context.Background(), "telemetry", 0, 12)
	if err != nil || low != 12 {
		t.Fatalf("DeleteRecords: %d, %v", low, err)
	}
	if got := testutil.ToFloat64(e.sender.metrics.deleted.WithLabelValues("telemetry")); got != 7 {
		t.Fatalf("deleted records counted %v, want 7 (5..11)", got)
	}

	// The edge restarts before the link is back; the center comes back.
	e.stop()
	opts.Registerer = nil
	c2 := startCenter(t, centerLog, c.addr)
	e2 := startSenderWith(t, opts)
	checkCopyWithGap(t, edgeLog, centerLog, "telemetry", 5)
	if got := c2.recv.Status().Edges[0].GapRecords; got != 7 {
		t.Fatalf("center counted %v gap records, want 7", got)
	}
	waitFor(t, "the gap's acknowledgement", func() bool { return e2.sender.Acked("telemetry", 0) == 15 })
	e2.sender.mu.Lock()
	_, lost := e2.sender.lost[partKey{"telemetry", 0}]
	_, deleted := e2.sender.deleted[partKey{"telemetry", 0}]
	e2.sender.mu.Unlock()
	if lost || deleted {
		t.Fatal("the reported deletion is still pending after the center acknowledged the gap")
	}
}

// Records deleted before the center ever had any of the partition are a
// gap too: the copy starts where the edge's records did, with the gap.
func TestMirrorDeleteRecordsBeforeAnyShipIsAGap(t *testing.T) {
	opts := SenderOptions{StatePath: filepath.Join(t.TempDir(), "mirror.db"), ChunkBytes: 256 << 10}
	edgeLog := budgetLog(t, t.TempDir(), "telemetry")
	centerLog := openLog(t, t.TempDir())
	c := startCenter(t, centerLog, "")
	c.stop() // down from the start: nothing ships
	opts.Log, opts.Center = edgeLog, c.addr
	startSenderWith(t, opts)
	produceHeavy(t, edgeLog, "telemetry", 6)
	if low, err := edgeLog.DeleteRecords(context.Background(), "telemetry", 0, 4); err != nil || low != 4 {
		t.Fatalf("DeleteRecords: %d, %v", low, err)
	}
	c2 := startCenter(t, centerLog, c.addr)
	checkCopyWithGap(t, edgeLog, centerLog, "telemetry", 0)
	dst, _ := centerLog.Partition("gw1.telemetry", 0)
	if dst.StartOffset() != 0 {
		t.Fatalf("the copy starts at %d, want 0 with a gap over 0..3", dst.StartOffset())
	}
	if got := c2.recv.Status().Edges[0].GapRecords; got != 4 {
		t.Fatalf("center counted %v gap records, want 4", got)
	}
}
