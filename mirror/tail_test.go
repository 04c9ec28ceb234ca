package mirror

import (
	"context"
	"path/filepath"
	"testing"

	flog "ferry/log"
)

// After an outage, live-tail-first ships the newest records ahead of the
// backlog: the center stages them in __tail.gw1.telemetry (the edge's
// offsets) while its copy fills in offset order behind, then merges them.
// A center restart mid-way resumes both from where the center holds them.
// The copy ends identical to the edge's log; the staging ends empty.
func TestMirrorLiveTailFirst(t *testing.T) {
	edgeLog := openLog(t, t.TempDir())
	if _, err := edgeLog.CreateTopic("telemetry", 1, nil); err != nil {
		t.Fatal(err)
	}
	centerLog := openLog(t, t.TempDir())
	c := startCenter(t, centerLog, "")
	opts := SenderOptions{Log: edgeLog, StatePath: filepath.Join(t.TempDir(), "mirror.db"), Center: c.addr,
		ChunkBytes: 16 << 10, Window: 2, RateLimit: 200 << 10, CatchUp: CatchUpLiveTailFirst}
	e := startSenderWith(t, opts)
	produce(t, edgeLog, "telemetry", 0, 5, "before")
	waitFor(t, "the first records", func() bool { return e.sender.Acked("telemetry", 0) == 50 })

	c.stop()
	for i := 0; i < 100; i++ { // the backlog: ~1 MB, ~500 kB on the wire, ~2.5 s at the cap
		produceBig(t, edgeLog, "telemetry", 0, 100)
	}
	edge, _ := edgeLog.Partition("telemetry", 0)
	backlogEnd := edge.EndOffset()
	// The live tail starts at the edge's durable offset when the session
	// starts: the backlog must be durable by then (flush.ms may not have
	// passed on a loaded machine), or the split starts inside it.
	if err := edge.WaitDurable(context.Background(), backlogEnd-1); err != nil {
		t.Fatal(err)
	}
	c = startCenter(t, centerLog, c.addr)
	waitFor(t, "the split", func() bool { return e.sender.Status().Partitions[0].LiveTailFrom == backlogEnd })
	produce(t, edgeLog, "telemetry", 0, 3, "live")

	var copyPart, staged *flog.Partition
	waitFor(t, "the live records staged ahead of the copy", func() bool {
		copyPart, _ = centerLog.Partition("gw1.telemetry", 0)
		staged, _ = centerLog.Partition("__tail.gw1.telemetry", 0)
		return copyPart != nil && staged != nil && staged.DurableOffset() >= edge.EndOffset() && copyPart.EndOffset() < backlogEnd
	})
	if staged.StartOffset() < copyPart.EndOffset() || staged.StartOffset() > backlogEnd {
		t.Fatalf("staged tail starts at %d, the copy ends at %d, the backlog at %d", staged.StartOffset(), copyPart.EndOffset(), backlogEnd)
	}
	if st := e.sender.Status(); st.Partitions[0].LiveTailFrom != staged.StartOffset() {
		t.Errorf("status says the live tail starts at %d, the center stages from %d", st.Partitions[0].LiveTailFrom, staged.StartOffset())
	}
	// The center's status shows how far the copy is contiguous and what
	// is staged beyond it.
	st := c.recv.Status()
	if len(st.Edges) != 1 || !st.Edges[0].Connected || len(st.Edges[0].Partitions) != 1 {
		t.Fatalf("center status: %+v", st)
	}
	if cs := st.Edges[0].Partitions[0]; cs.CopyTopic != "gw1.telemetry" || cs.ContiguousEnd > backlogEnd || cs.StagedTopic != "__tail.gw1.telemetry" ||
		cs.StagedFrom != staged.StartOffset() || cs.StagedEnd < edge.EndOffset() || cs.StagedFrom < cs.ContiguousEnd {
		t.Errorf("center status of a split partition: %+v", cs)
	}
	// The copy never holds a record past its contiguous end.
	if copyPart.EndOffset() > backlogEnd {
		t.Fatalf("the copy reached %d before the backlog ended at %d", copyPart.EndOffset(), backlogEnd)
	}

	// The center restarts mid-way; more live records come.
	c.stop()
	c = startCenter(t, centerLog, c.addr)
	produce(t, edgeLog, "telemetry", 0, 3, "live2")
	waitCopied(t, edgeLog, centerLog, "telemetry")
	waitFor(t, "the merge to finish", func() bool { return e.sender.Acked("telemetry", 0) == edge.EndOffset() })
	waitFor(t, "the staging to clear", func() bool {
		produce(t, edgeLog, "telemetry", 0, 1, "nudge") // a clear waits for the copy to be durable past the tail
		return staged.Size() == 0
	})
	waitCopied(t, edgeLog, centerLog, "telemetry")
	if st := e.sender.Status(); st.Partitions[0].LiveTailFrom != 0 {
		t.Errorf("still split after the merge: %+v", st.Partitions[0])
	}
	if cs := c.recv.Status().Edges[0].Partitions[0]; cs.StagedTopic != "" || cs.ContiguousEnd != edge.EndOffset() {
		t.Errorf("center status after the merge: %+v", cs)
	}
	e.stop()
	waitFor(t, "the center to see the edge gone", func() bool { return !c.recv.Status().Edges[0].Connected })
}

// If the center loses what it staged (an operator deleting records, say),
// the backfill's acknowledgement shows the copy short of the tail: the edge
// counts only the copy, reconnects, and ships the missing records again.
// The staging topic itself keeps its records: no retention.
func TestMirrorLiveTailHealsALostStaging(t *testing.T) {
	edgeLog := openLog(t, t.TempDir())
	if _, err := edgeLog.CreateTopic("telemetry", 1, nil); err != nil {
		t.Fatal(err)
	}
	centerLog := openLog(t, t.TempDir())
	c := startCenter(t, centerLog, "")
	opts := SenderOptions{Log: edgeLog, StatePath: filepath.Join(t.TempDir(), "mirror.db"), Center: c.addr,
		ChunkBytes: 16 << 10, Window: 2, RateLimit: 200 << 10, CatchUp: CatchUpLiveTailFirst}
	e := startSenderWith(t, opts)
	produce(t, edgeLog, "telemetry", 0, 5, "before")
	waitFor(t, "the first records", func() bool { return e.sender.Acked("telemetry", 0) == 50 })
	c.stop()
	for i := 0; i < 100; i++ {
		produceBig(t, edgeLog, "telemetry", 0, 100)
	}
	edge, _ := edgeLog.Partition("telemetry", 0)
	backlogEnd := edge.EndOffset()
	// The live tail starts at the edge's durable offset when the session
	// starts: the backlog must be durable by then (flush.ms may not have
	// passed on a loaded machine), or the split starts inside it.
	if err := edge.WaitDurable(context.Background(), backlogEnd-1); err != nil {
		t.Fatal(err)
	}
	c = startCenter(t, centerLog, c.addr)
	waitFor(t, "the split", func() bool { return e.sender.Status().Partitions[0].LiveTailFrom == backlogEnd })
	produce(t, edgeLog, "telemetry", 0, 3, "live")
	var staged *flog.Partition
	waitFor(t, "the live records staged", func() bool {
		staged, _ = centerLog.Partition("__tail.gw1.telemetry", 0)
		return staged != nil && staged.DurableOffset() == edge.EndOffset()
	})
	for _, ti := range centerLog.Topics() {
		if ti.Name == "__tail.gw1.telemetry" && (ti.Configs[flog.ConfigRetentionMs] != "-1" || ti.Configs[flog.ConfigRetentionBytes] != "-1") {
			t.Fatalf("the staging topic's configs %v: retention could delete what the edge counts as the center's", ti.Configs)
		}
	}
	if err := staged.Clear(); err != nil { // lost at the center
		t.Fatal(err)
	}
	waitCopied(t, edgeLog, centerLog, "telemetry")
	waitFor(t, "the acknowledgement of everything", func() bool { return e.sender.Acked("telemetry", 0) == edge.EndOffset() })
}
