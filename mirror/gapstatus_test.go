package mirror

import (
	"path/filepath"
	"testing"
)

// Under drop-oldest, records dropped while the center is unreachable show
// in Status as a pending gap (where it starts, how many records) until
// the center acknowledges the gap; then they no longer do.
func TestMirrorStatusShowsPendingGap(t *testing.T) {
	state := filepath.Join(t.TempDir(), "mirror.db")
	opts := SenderOptions{StatePath: state, ChunkBytes: 256 << 10, Center: "127.0.0.1:1"} // nobody there
	edgeLog := budgetLog(t, t.TempDir(), "telemetry")
	opts.Log = edgeLog
	e := startSenderWith(t, opts)
	edgeLog.ArmBudget()
	produceHeavy(t, edgeLog, "telemetry", 45)
	edgeLog.EnforceBudget()
	tel, _ := edgeLog.Partition("telemetry", 0)
	if tel.StartOffset() == 0 {
		t.Fatal("nothing dropped")
	}
	st := e.sender.Status()
	if len(st.Partitions) != 1 {
		t.Fatalf("status partitions: %+v", st.Partitions)
	}
	p := st.Partitions[0]
	if p.GapFrom == nil || *p.GapFrom != 0 || p.GapRecords != tel.StartOffset() || st.DroppedUnreported != tel.StartOffset() {
		t.Fatalf("pending gap: from %v, %d records, %d in all; want from 0, %d records", p.GapFrom, p.GapRecords, st.DroppedUnreported, tel.StartOffset())
	}
	e.stop()

	c := startCenter(t, nil, "")
	opts.Center = c.addr
	e2 := startSenderWith(t, opts)
	waitFor(t, "the gap and the records to be acknowledged", func() bool { return e2.sender.Acked("telemetry", 0) == tel.EndOffset() })
	st = e2.sender.Status()
	if p := st.Partitions[0]; p.GapFrom != nil || p.GapRecords != 0 || st.DroppedUnreported != 0 {
		t.Errorf("the gap is still shown pending once the center acknowledged it: %+v, %d in all", p, st.DroppedUnreported)
	}
}
