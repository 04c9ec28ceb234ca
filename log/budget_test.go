package log

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
)

// pinAt is a guard that keeps everything from its offset on.
type pinAt struct{ from atomic.Int64 }

func (g *pinAt) RetainFrom(topic string, partition int32) int64 { return g.from.Load() }

// Over the disk budget the oldest segments nobody pins go first; when
// everything left is pinned (not yet mirrored) appends are refused with
// ErrDiskBudget, and they resume once the pin moves and space is freed.
func TestDiskBudgetBlocksUntilShipped(t *testing.T) {
	guard := &pinAt{}
	l := openTestLog(t, Options{MaxDiskBytes: 3 << 20, Guards: []RetentionGuard{guard}})
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
}
