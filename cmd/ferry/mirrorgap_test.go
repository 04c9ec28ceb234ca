package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"ferry/edge"
	flog "ferry/log"
	"ferry/mirror"
)

// Records dropped under drop-oldest before the center had them show in
// `ferry mirror status` (and its --json, the admin API's /api/mirror) as a
// pending gap, not only in a metric and a log line.
func TestMirrorStatusShowsDroppedUnreported(t *testing.T) {
	n, err := edge.Start(edge.Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
		MaxDiskBytes: 3 << 20, DiskPolicy: flog.BudgetDropOldest,
		MirrorTo: mirror.SenderOptions{Center: "127.0.0.1:1", EdgeID: "gw7", Token: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if _, err := n.Log().CreateTopic("telemetry", 1, map[string]string{flog.ConfigSegmentBytes: "1048576"}); err != nil {
		t.Fatal(err)
	}
	p, _ := n.Log().Partition("telemetry", 0)
	for i := 0; i < 45; i++ {
		b := flog.AppendBatch(nil, []flog.Record{{Value: bytes.Repeat([]byte{'x'}, 100_000), Timestamp: time.Now().UnixMilli()}})
		if _, err := p.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	n.Log().EnforceBudget()
	dropped := p.StartOffset()
	if dropped == 0 {
		t.Fatal("nothing dropped")
	}
	admin := "http://" + n.AdminAddr()
	code, out, errOut := ferry(t, "mirror", "status", "--admin", admin)
	want := fmt.Sprintf("telemetry-0: %d records from offset 0 to %d", dropped, dropped-1)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("%d records dropped under the disk budget", dropped)) || !strings.Contains(out, want) {
		t.Fatalf("status: %d %q %q; want the pending gap (%s)", code, out, errOut, want)
	}
	code, out, _ = ferry(t, "mirror", "status", "--admin", admin, "--json")
	var st mirror.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status --json: %d %q", code, out)
	}
	if st.DroppedUnreported != dropped || len(st.Partitions) != 1 || st.Partitions[0].GapFrom == nil || st.Partitions[0].GapRecords != dropped {
		t.Errorf("status --json: %q; want %d records pending from offset 0", out, dropped)
	}
}
