package mirror

import (
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	flog "ferry/log"
)

func TestParseSchedule(t *testing.T) {
	sc, err := ParseSchedule("08:00-20:00=8192, 20:00-08:00=0")
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 11, 25, 12, 0, 0, 0, time.Local)
	for _, tc := range []struct {
		h, m, want int
	}{{12, 0, 8192}, {8, 0, 8192}, {19, 59, 8192}, {20, 0, 0}, {23, 30, 0}, {3, 0, 0}, {7, 59, 0}} {
		at := time.Date(day.Year(), day.Month(), day.Day(), tc.h, tc.m, 0, 0, time.Local)
		if got := sc.rateAt(at, 42); got != tc.want {
			t.Errorf("%02d:%02d: rate %d, want %d", tc.h, tc.m, got, tc.want)
		}
	}
	gap, _ := ParseSchedule("01:00-02:00=100")
	if got := gap.rateAt(day, 42); got != 42 {
		t.Errorf("outside every window: %d, want the default 42", got)
	}
	for _, bad := range []string{"8-20=1", "08:00-20:00", "08:00-20:00=fast", "25:00-26:00=1", "08:00-20:00=-1"} {
		if _, err := ParseSchedule(bad); err == nil {
			t.Errorf("ParseSchedule(%q) accepted", bad)
		}
	}
}

// A capped link carries no more than its rate: 300 KB of incompressible
// records at 100 KB/s take at least 2 s (the first 100 KB are the bucket's
// burst), and all of them arrive intact.
func TestRateLimitCapsTheLink(t *testing.T) {
	edgeLog := openLog(t, t.TempDir())
	if _, err := edgeLog.CreateTopic("telemetry", 1, nil); err != nil {
		t.Fatal(err)
	}
	p, _ := edgeLog.Partition("telemetry", 0)
	for i := 0; i < 30; i++ {
		v := make([]byte, 10_000)
		rand.Read(v)
		if _, err := p.Append(flog.AppendBatch(nil, []flog.Record{{Value: v, Timestamp: time.Now().UnixMilli()}})); err != nil {
			t.Fatal(err)
		}
	}
	c := startCenter(t, nil, "")
	start := time.Now()
	startSenderWith(t, SenderOptions{Log: edgeLog, StatePath: filepath.Join(t.TempDir(), "mirror.db"), Center: c.addr,
		ChunkBytes: 16 << 10, RateLimit: 100_000})
	waitCopied(t, edgeLog, c.log, "telemetry")
	if d := time.Since(start); d < 1800*time.Millisecond {
		t.Fatalf("300 KB crossed a 100 KB/s link in %v", d)
	}
}
