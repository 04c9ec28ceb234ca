package mirror

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	flog "ferry/log"
)

// TestCorruptSegmentStopsOnlyItsPartition: a bit flips in the middle of a
// sealed segment of partition 0 at the edge. The mirror ships partition 0
// up to the damaged batch and stops there — nothing of the damage reaches
// the center, and nothing is skipped — while partition 1 ships whole over
// the same link, which stays up. The sender's status names the partition,
// the offset and the error; ferry_mirror_read_errors_total counts it.
func TestCorruptSegmentStopsOnlyItsPartition(t *testing.T) {
	dir := t.TempDir()
	edgeLog := openLog(t, filepath.Join(dir, "log"))
	if _, err := edgeLog.CreateTopic("telemetry", 2, map[string]string{flog.ConfigSegmentBytes: "1048576"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ { // about 3.5 MiB a partition: four segments
		produceBig(t, edgeLog, "telemetry", 0, 1000)
		produceBig(t, edgeLog, "telemetry", 1, 1000)
	}
	p0, _ := edgeLog.Partition("telemetry", 0)
	segs := p0.Segments()
	if len(segs) < 3 {
		t.Fatalf("%d segments, want at least 3", len(segs))
	}
	victim := segs[1] // sealed, with segments on both sides
	edgeLog.Close()
	path := victim.Path
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40 // inside a record of some batch: its CRC no longer holds
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	edgeLog = openLog(t, filepath.Join(dir, "log"))
	p0, _ = edgeLog.Partition("telemetry", 0)

	c := startCenter(t, nil, "")
	e := startSender(t, edgeLog, dir, c.addr)
	waitFor(t, "partition 0 to stop at the damage", func() bool {
		for _, ps := range e.sender.Status().Partitions {
			if ps.Partition == 0 && ps.BlockedAt != nil {
				return true
			}
		}
		return false
	})
	// Partition 1 arrives whole: copy it alone by checking its partition.
	p1, _ := edgeLog.Partition("telemetry", 1)
	waitFor(t, "partition 1 to arrive whole", func() bool {
		dst, err := c.log.Partition("gw1.telemetry", 1)
		return err == nil && dst.DurableOffset() >= p1.EndOffset()
	})

	var st PartitionStatus
	for _, ps := range e.sender.Status().Partitions {
		if ps.Partition == 0 {
			st = ps
		}
	}
	at := *st.BlockedAt
	if at <= victim.BaseOffset || at >= p0.EndOffset() || st.Error == "" {
		t.Fatalf("blocked at %d (%q); want inside the damaged segment from %d", at, st.Error, victim.BaseOffset)
	}
	if _, err := p0.Read(at, 1, nil); err == nil {
		t.Fatalf("the edge reads offset %d, where the mirror said it could not", at)
	}
	dst, err := c.log.Partition("gw1.telemetry", 0)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the center's copy of partition 0 to reach the damage", func() bool { return dst.DurableOffset() == at })
	if dst.EndOffset() != at || st.Acked != at {
		t.Fatalf("the center's copy ends at %d (acked %d); want exactly at the damaged batch %d", dst.EndOffset(), st.Acked, at)
	}
	if !e.sender.Status().LinkUp {
		t.Error("the link went down over one partition's damage")
	}
	if got := testutil.ToFloat64(e.sender.metrics.readErrs); got != 1 {
		t.Errorf("ferry_mirror_read_errors_total = %v, want 1", got)
	}
}
