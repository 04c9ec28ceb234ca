package mirror

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	flog "ferry/log"
)

// TestOldestUnshippedAgeOfRecordsWithoutTimestamps: records a producer
// sent without a timestamp (-1) or stamped 2100 wait unshipped; the
// status's age of the oldest unshipped record is their time in the log
// (seconds here), not 56 years, nor below zero, while a real timestamp an
// hour old still reads an hour.
func TestOldestUnshippedAgeOfRecordsWithoutTimestamps(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close() // the sender never runs; nothing is shipped
	dir := t.TempDir()
	l := openLog(t, filepath.Join(dir, "log"))
	year2100 := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	hourAgo := time.Now().Add(-time.Hour).UnixMilli()
	want := map[string][2]float64{"notime": {0, 60}, "future": {0, 60}, "old": {3500, 3700}}
	for topic, ts := range map[string]int64{"notime": -1, "future": year2100, "old": hourAgo} {
		if _, err := l.CreateTopic(topic, 1, nil); err != nil {
			t.Fatal(err)
		}
		p, _ := l.Partition(topic, 0)
		if _, err := p.Append(flog.AppendBatch(nil, []flog.Record{{Value: []byte("x"), Timestamp: ts}, {Value: []byte("y"), Timestamp: ts}})); err != nil {
			t.Fatal(err)
		}
	}
	s, err := NewSender(SenderOptions{Log: l, StatePath: filepath.Join(dir, "mirror.db"), Center: closedAddr, EdgeID: "gw1", Token: "t", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	l.SetShipper(s)
	defer s.close() // as Run would
	st := s.Status()
	if len(st.Partitions) != len(want) {
		t.Fatalf("status of %d partitions, want %d", len(st.Partitions), len(want))
	}
	for _, ps := range st.Partitions {
		if w := want[ps.Topic]; ps.BacklogRecords != 2 || ps.OldestUnshippedAge < w[0] || ps.OldestUnshippedAge > w[1] {
			t.Errorf("%s: backlog %d, oldest unshipped %.0f s; want 2 records, %.0f-%.0f s", ps.Topic, ps.BacklogRecords, ps.OldestUnshippedAge, w[0], w[1])
		}
	}
}
