package mirror

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	flog "ferry/log"
)

func TestParseClasses(t *testing.T) {
	cs, err := ParseClasses("alarms*=0, telemetry=2")
	if err != nil {
		t.Fatal(err)
	}
	for topic, want := range map[string]int{"alarms": 0, "alarms.fire": 0, "telemetry": 2, "logs": defaultClass} {
		if got := classOf(cs, topic); got != want {
			t.Errorf("%s: class %d, want %d", topic, got, want)
		}
	}
	for _, bad := range []string{"alarms", "alarms=10", "alarms=-1", "[=1", "alarms=first"} {
		if _, err := ParseClasses(bad); err == nil {
			t.Errorf("ParseClasses(%q) accepted", bad)
		}
	}
}

// A freed slot goes to the most urgent waiting class, whoever waited first.
func TestGateServesUrgentFirst(t *testing.T) {
	g := newGate(1, 4096, nil, nil)
	ctx := context.Background()
	if err := g.acquire(ctx, 1, 4096); err != nil {
		t.Fatal(err)
	}
	got := make(chan int, 3)
	waiting := func(c, n int) func() bool {
		return func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.waiting[c] == n }
	}
	for _, c := range []int{2, 1, 0} { // the least urgent waits first
		go func() {
			if g.acquire(ctx, c, 4096) == nil {
				got <- c
			}
		}()
		waitFor(t, "the waiter to queue", waiting(c, 1))
	}
	for _, want := range []int{0, 1, 2} {
		g.release()
		if c := <-got; c != want {
			t.Fatalf("slot went to class %d, want %d", c, want)
		}
	}
}

// Over a capped link with a telemetry backlog on several partitions, an
// alarm (class 0) appended later reaches the center before the backlog has
// drained: it takes the next free slot.
func TestAlarmOvertakesBacklog(t *testing.T) {
	edgeLog := openLog(t, t.TempDir())
	for _, tp := range []struct {
		name string
		n    int32
	}{{"telemetry", 4}, {"alarms", 1}} {
		if _, err := edgeLog.CreateTopic(tp.name, tp.n, nil); err != nil {
			t.Fatal(err)
		}
	}
	for p := int32(0); p < 4; p++ {
		part, _ := edgeLog.Partition("telemetry", p)
		for i := 0; i < 10; i++ {
			v := make([]byte, 8_000)
			rand.Read(v)
			if _, err := part.Append(flog.AppendBatch(nil, []flog.Record{{Value: v, Timestamp: time.Now().UnixMilli()}})); err != nil {
				t.Fatal(err)
			}
		}
	}
	c := startCenter(t, nil, "")
	e := startSenderWith(t, SenderOptions{Log: edgeLog, StatePath: filepath.Join(t.TempDir(), "mirror.db"), Center: c.addr,
		ChunkBytes: 4 << 10, Window: 2, RateLimit: 80_000, Classes: []Class{{Pattern: "alarms", Class: 0}, {Pattern: "telemetry", Class: 2}}})
	waitFor(t, "the backlog to start moving", func() bool { return testutil.ToFloat64(e.sender.metrics.acked) >= 2 })
	alarms, _ := edgeLog.Partition("alarms", 0)
	if _, err := alarms.Append(flog.AppendBatch(nil, []flog.Record{{Value: []byte("overheat"), Timestamp: time.Now().UnixMilli()}})); err != nil {
		t.Fatal(err)
	}
	ackedAtAlarm := testutil.ToFloat64(e.sender.metrics.acked)
	waitFor(t, "the alarm at the center", func() bool {
		p, err := c.log.Partition("gw1.alarms", 0)
		return err == nil && p.EndOffset() == 1
	})
	// Two chunks were in flight when the alarm came; it needs the next
	// slot, not a place behind the four telemetry shippers.
	if behind := testutil.ToFloat64(e.sender.metrics.acked) - ackedAtAlarm; behind > 3 {
		t.Fatalf("the alarm arrived %v chunks after it was appended; want at most 3", behind)
	}
	var remaining int64
	for p := int32(0); p < 4; p++ {
		src, _ := edgeLog.Partition("telemetry", p)
		remaining += src.EndOffset() - e.sender.Acked("telemetry", p)
	}
	if remaining < 20 {
		t.Fatalf("only %d telemetry records were still to ship when the alarm arrived: the test did not test overtaking", remaining)
	}
	waitCopied(t, edgeLog, c.log, "telemetry")
}
