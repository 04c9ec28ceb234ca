package log

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// pinAt is a shipper that keeps everything from its offset on.
type pinAt struct{ from atomic.Int64 }

func (g *pinAt) RetainFrom(topic string, partition int32) int64 { return g.from.Load() }
func (g *pinAt) EvictRank(string) int                           { return 0 }
func (g *pinAt) WillDrop(string, int32, int64, int64)           {}

// Over the disk budget the oldest segments nobody pins go first; when
// everything left is pinned (not yet mirrored) appends are refused with
// ErrDiskBudget, and they resume once the pin moves and space is freed.
func TestDiskBudgetBlocksUntilShipped(t *testing.T) {
	guard := &pinAt{}
	l := openTestLog(t, Options{MaxDiskBytes: 3 << 20})
	l.SetShipper(guard)
	if _, err := l.CreateTopic("t", 1, map[string]string{ConfigSegmentBytes: "1048576"}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("t", 0)
	big := func(i int) []byte {
		return AppendBatch(nil, []Record{{Value: []byte(fmt.Sprintf("%0100000d", i)), Timestamp: int64(i)}})
	}
	if _, blocked := l.EnforceBudget(); blocked {
		t.Fatal("an unarmed budget blocked")
	}
	l.ArmBudget()
	// 5 MB, every segment pinned: over budget, blocked.
	for i := 0; i < 50; i++ {
		if _, err := p.Append(big(i)); err != nil {
			t.Fatal(err)
		}
	}
	if freed, blocked := l.EnforceBudget(); freed != 0 || !blocked {
		t.Fatalf("pinned: freed %d blocked %v", freed, blocked)
	}
	if _, err := p.Append(big(50)); !errors.Is(err, ErrDiskBudget) {
		t.Fatalf("append over budget: %v, want ErrDiskBudget", err)
	}
	// The center acknowledges up to offset 30: what lies below may go,
	// oldest first, until the log fits.
	guard.from.Store(30)
	freed, blocked := l.EnforceBudget()
	if blocked || freed == 0 || l.Size() > 3<<20 {
		t.Fatalf("after the pin moved: freed %d blocked %v size %d", freed, blocked, l.Size())
	}
	if p.StartOffset() > 30 {
		t.Fatalf("deleted past the pin: start %d", p.StartOffset())
	}
	if _, err := p.Append(big(50)); err != nil {
		t.Fatalf("append back under budget: %v", err)
	}
	if n := l.DroppedRecords(); n != 0 {
		t.Fatalf("the block policy dropped %d records", n)
	}
}

// pinAll pins every record, ranks by rank and records what the drop-oldest
// policy tells it.
type pinAll struct {
	rank  func(topic string) int
	mu    sync.Mutex
	drops []string
}

func (g *pinAll) RetainFrom(string, int32) int64 { return 0 }
func (g *pinAll) EvictRank(topic string) int     { return g.rank(topic) }
func (g *pinAll) WillDrop(topic string, partition int32, from, to int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.drops = append(g.drops, fmt.Sprintf("%s-%d:%d..%d", topic, partition, from, to))
}

// Under drop-oldest, a budget reached with everything pinned deletes the
// oldest sealed segments of the topic ranked for eviction first, tells the
// guard the exact offsets beforehand, and keeps taking appends.
func TestDiskBudgetDropOldestByRank(t *testing.T) {
	guard := &pinAll{rank: func(topic string) int {
		if topic == "telemetry" {
			return 1 // goes first
		}
		return 0
	}}
	l := openTestLog(t, Options{MaxDiskBytes: 3 << 20, BudgetPolicy: BudgetDropOldest})
	l.SetShipper(guard)
	for _, topic := range []string{"alarms", "telemetry"} {
		if _, err := l.CreateTopic(topic, 1, map[string]string{ConfigSegmentBytes: "1048576"}); err != nil {
			t.Fatal(err)
		}
	}
	alarms, _ := l.Partition("alarms", 0)
	telemetry, _ := l.Partition("telemetry", 0)
	l.ArmBudget()
	big := func(i int) []byte {
		return AppendBatch(nil, []Record{{Value: []byte(fmt.Sprintf("%0100000d", i)), Timestamp: int64(i)}})
	}
	// 1 MB of alarms, then telemetry until 4 MB: over the budget, all pinned.
	for i := 0; i < 10; i++ {
		if _, err := alarms.Append(big(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 30; i++ {
		if _, err := telemetry.Append(big(i)); err != nil {
			t.Fatal(err)
		}
	}
	freed, blocked := l.EnforceBudget()
	if blocked || freed == 0 || l.Size() > 3<<20 {
		t.Fatalf("drop-oldest: freed %d blocked %v size %d", freed, blocked, l.Size())
	}
	if alarms.StartOffset() != 0 {
		t.Fatalf("alarms lost records (start %d) while telemetry, ranked first, still had some", alarms.StartOffset())
	}
	start := telemetry.StartOffset()
	if start == 0 {
		t.Fatal("telemetry kept everything")
	}
	// The guard heard of exactly the offsets that went, in order.
	guard.mu.Lock()
	got := append([]string(nil), guard.drops...)
	guard.mu.Unlock()
	next := int64(0)
	for _, d := range got {
		var from, to int64
		if _, err := fmt.Sscanf(d, "telemetry-0:%d..%d", &from, &to); err != nil || from != next || to < from {
			t.Fatalf("drops reported %v: not contiguous telemetry ranges from 0", got)
		}
		next = to + 1
	}
	if len(got) == 0 || next != start {
		t.Fatalf("drops reported %v, telemetry now starts at %d", got, start)
	}
	if n := l.DroppedRecords(); n != start { // all of them pinned
		t.Fatalf("DroppedRecords %d, want the %d records that went", n, start)
	}
	if _, err := telemetry.Append(big(99)); err != nil {
		t.Fatalf("append under drop-oldest: %v", err)
	}
}

// Appends ask for a budget pass every budgetWakeBytes instead of waiting
// for the next tick, so a fast producer overshoots the budget by about that
// much, not by a second of its rate.
func TestAppendsAskForABudgetPass(t *testing.T) {
	l := openTestLog(t, Options{MaxDiskBytes: 64 << 20}) // no background loop: the ask stays queued
	if _, err := l.CreateTopic("t", 1, nil); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("t", 0)
	batch := AppendBatch(nil, []Record{{Value: make([]byte, 100_000)}})
	for written := 0; written < budgetWakeBytes-len(batch); written += len(batch) {
		if _, err := p.Append(append([]byte(nil), batch...)); err != nil {
			t.Fatal(err)
		}
	}
	if len(l.budgetWake) != 0 {
		t.Fatal("a pass was asked for before budgetWakeBytes were appended")
	}
	for i := 0; i < 2; i++ {
		if _, err := p.Append(append([]byte(nil), batch...)); err != nil {
			t.Fatal(err)
		}
	}
	if len(l.budgetWake) != 1 {
		t.Fatal("no budget pass asked for after budgetWakeBytes were appended")
	}
}

// The log has one Shipper: a later SetShipper replaces the earlier one (a
// sender started again over the same log), so only the newest pins, and
// nil leaves nothing pinned.
func TestSetShipperReplacesTheShipper(t *testing.T) {
	clock := &fakeClock{}
	clock.ms.Store(1_800_000_000_000)
	l := openTestLog(t, Options{Now: clock.now})
	if _, err := l.CreateTopic("t", 1, map[string]string{ConfigRetentionMs: "1000"}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("t", 0)
	for i := 0; i < 3; i++ {
		if _, err := p.Append(testBatch(2, clock.ms.Load(), "x")); err != nil {
			t.Fatal(err)
		}
		p.Roll()
	}
	clock.ms.Add(10_000) // everything expired
	old, newer := &floorGuard{}, &floorGuard{}
	old.floor.Store(0)
	newer.floor.Store(2)
	l.SetShipper(old)
	l.SetShipper(newer)
	if _, err := l.EnforceRetention(); err != nil || p.StartOffset() != 2 {
		t.Fatalf("newest shipper pins from 2: start %d, %v", p.StartOffset(), err)
	}
	l.SetShipper(nil)
	if _, err := l.EnforceRetention(); err != nil || p.StartOffset() != 6 {
		t.Fatalf("no shipper: start %d, %v", p.StartOffset(), err)
	}
}
