package log

import (
	"testing"
	"time"
)

func (c *fakeClock) set(t time.Time) { c.ms.Store(t.UnixMilli()) }

// TestClockJumpsBackwards: the wall clock jumps an hour back (an NTP
// correction, a gateway whose RTC battery died) while records flow, with
// producers stamping records by that clock. Offsets stay dense and every
// record readable; nothing is deleted by retention on the strength of
// the jump; a lookup by time still finds the first record at or after the
// time asked (by the records' maximum timestamps, as Kafka does); the
// active segment rolls one segment.ms after the jump, not an hour later;
// and all of it survives a reopen.
func TestClockJumpsBackwards(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	clock := &fakeClock{}
	clock.set(t0)
	open := func() (*Log, *Partition) {
		l := openTestLog(t, Options{Dir: dir, Now: clock.now, RetentionCheckInterval: -1})
		p, err := l.Partition("climate", 0)
		if err != nil {
			t.Fatal(err)
		}
		return l, p
	}
	l := openTestLog(t, Options{Dir: dir, Now: clock.now, RetentionCheckInterval: -1})
	if _, err := l.CreateTopic("climate", 1, map[string]string{ConfigSegmentMs: "60000", ConfigRetentionMs: "7200000"}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("climate", 0)
	appendAt := func(tag string) AppendResult {
		t.Helper()
		r, err := p.Append(testBatch(2, clock.now().UnixMilli(), tag))
		if err != nil {
			t.Fatalf("append %s at %v: %v", tag, clock.now(), err)
		}
		return r
	}

	for i := 0; i < 10; i++ { // ten minutes of records, a segment a minute
		clock.set(t0.Add(time.Duration(i) * time.Minute))
		appendAt("before")
	}
	segsBefore := len(p.Segments())
	jumpedTo := t0.Add(-time.Hour)
	clock.set(jumpedTo)
	firstAfter := appendAt("after").BaseOffset
	for i := 1; i <= 5; i++ {
		clock.set(jumpedTo.Add(time.Duration(i) * 10 * time.Second))
		appendAt("after")
	}
	if got := len(p.Segments()); got != segsBefore {
		t.Fatalf("%d segments 50 s after the jump, want %d: none is a minute old by the clock", got, segsBefore)
	}
	clock.set(jumpedTo.Add(61 * time.Second))
	appendAt("after")
	if got := len(p.Segments()); got != segsBefore+1 {
		t.Fatalf("%d segments 61 s after the jump, want %d: the active segment's age counts from the jump", got, segsBefore+1)
	}

	if res, err := l.EnforceRetention(); err != nil || res.Segments != 0 {
		t.Fatalf("retention after the jump: %+v %v; want nothing deleted (retention.ms is 2 h)", res, err)
	}
	check := func(when string) {
		t.Helper()
		if p.StartOffset() != 0 || p.EndOffset() != 34 {
			t.Fatalf("%s: offsets %d..%d, want 0..34", when, p.StartOffset(), p.EndOffset())
		}
		for off := int64(0); off < p.EndOffset(); {
			r, err := p.Read(off, 1, nil)
			if err != nil || len(r.Data) == 0 {
				t.Fatalf("%s: offset %d unreadable: %v", when, off, err)
			}
			h, _ := ParseBatch(r.Data)
			off = h.LastOffset() + 1
		}
		// The first record at or after 5 minutes past t0 is the sixth
		// batch's; a time before every record finds offset 0; a time
		// after the jump's records but before the pre-jump ones still
		// finds offset 0 (its maximum timestamp is later).
		for _, tc := range []struct {
			at   time.Time
			want int64
		}{
			{t0.Add(5 * time.Minute), 10},
			{jumpedTo.Add(-time.Minute), 0},
			{jumpedTo.Add(30 * time.Second), 0},
			{t0.Add(time.Hour), -1},
		} {
			if off, _, err := p.OffsetForTime(tc.at.UnixMilli()); err != nil || off != tc.want {
				t.Errorf("%s: OffsetForTime(%v) = %d, %v; want %d", when, tc.at, off, err, tc.want)
			}
		}
		if firstAfter != 20 {
			t.Errorf("the first batch after the jump got offset %d, want 20", firstAfter)
		}
	}
	check("after the jump")
	l.Close()
	_, p = open()
	check("after a reopen")
}

// A replica of a replicated log whose clock runs ten minutes ahead holds
// records its leader stamped five minutes ago... by the leader's clock:
// to it they are fifteen minutes old, past retention.ms of ten. As a
// follower it deletes nothing (its copy is cut where its leader's is); the
// same replica leading applies retention by its own clock, as Kafka's
// leaders do, to what is committed. A log alone applies retention whatever the flag says.
func TestReplicatedRetentionOnlyByTheLeader(t *testing.T) {
	leaderTime := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	clock := &fakeClock{}
	clock.set(leaderTime.Add(10 * time.Minute))
	for _, replicated := range []bool{true, false} {
		l := openTestLog(t, Options{Now: clock.now, RetentionCheckInterval: -1, Replicated: replicated, Logger: quietLogger})
		if _, err := l.CreateTopic("t", 1, map[string]string{ConfigRetentionMs: "600000"}); err != nil {
			t.Fatal(err)
		}
		p, _ := l.Partition("t", 0)
		if _, err := p.Append(testBatch(3, leaderTime.Add(-5*time.Minute).UnixMilli(), "x")); err != nil {
			t.Fatal(err)
		}
		res, err := l.EnforceRetention()
		if err != nil {
			t.Fatal(err)
		}
		if replicated && (res.Segments != 0 || p.StartOffset() != 0) {
			t.Fatalf("a follower's retention pass: %+v, start %d; want nothing deleted", res, p.StartOffset())
		}
		if !replicated && p.StartOffset() != 3 {
			t.Fatalf("a log alone: start %d after retention, want 3 (its clock says the records are 15 min old)", p.StartOffset())
		}
		p.SetAppliesRetention(true)
		if replicated {
			p.AdvanceHighWatermark(3) // a leader deletes only committed records
		}
		if _, err := l.EnforceRetention(); err != nil || p.StartOffset() != 3 {
			t.Fatalf("replicated %v, leading: start %d, %v; want 3", replicated, p.StartOffset(), err)
		}
		l.Close()
	}
}

// A leader of a replicated partition applies retention only below its
// high watermark (Kafka's UnifiedLog.deletableSegments): a segment goes
// only when every record of it is committed, the active one only when the
// high watermark is at the end. Records stamped 1970 are all past
// retention.ms; with the high watermark inside the second of three
// segments, only the first goes, and the high watermark stays where the
// followers are rather than jumping to the new start.
func TestReplicatedRetentionStopsAtTheHighWatermark(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	clock := &fakeClock{}
	clock.set(t0)
	l := openTestLog(t, Options{Now: clock.now, Replicated: true, Logger: quietLogger})
	if _, err := l.CreateTopic("t", 1, map[string]string{ConfigSegmentMs: "60000", ConfigRetentionMs: "600000"}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("t", 0)
	for i := range 3 { // segments [0,2) [2,4) [4,6), the last active
		clock.set(t0.Add(time.Duration(i) * 2 * time.Minute))
		if _, err := p.Append(testBatch(2, 1000, "old")); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(p.Segments()); n != 3 {
		t.Fatalf("%d segments, want 3", n)
	}
	p.SetAppliesRetention(true)
	p.AdvanceHighWatermark(3)
	if _, err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	if start, hw := p.StartOffset(), p.HighWatermark(); start != 2 || hw != 3 {
		t.Fatalf("after a pass with the high watermark at 3: start %d, high watermark %d; want 2, 3", start, hw)
	}
	p.AdvanceHighWatermark(4) // the second segment committed; the active one not
	if _, err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	if start, hw := p.StartOffset(), p.HighWatermark(); start != 4 || hw != 4 {
		t.Fatalf("after a pass with the high watermark at 4: start %d, high watermark %d; want 4, 4", start, hw)
	}
	p.AdvanceHighWatermark(6) // all committed: the active segment rolls and goes too
	if _, err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	if start, end := p.StartOffset(), p.EndOffset(); start != 6 || end != 6 {
		t.Fatalf("after a pass with the high watermark at the end: start %d, end %d; want 6, 6", start, end)
	}
}
