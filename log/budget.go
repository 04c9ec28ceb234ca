package log

import (
	"math"
	"slices"
	"time"
)

// budgetCheckInterval is how often the background pass checks the
// data-disk budget.
const budgetCheckInterval = time.Second

// budgetWakeBytes is how much a partition appends between asking for a
// budget pass, so a fast producer overshoots the budget by about this much
// per partition rather than by a second of its rate.
const budgetWakeBytes = 1 << 20

// ArmBudget starts enforcing the disk budget. Its owner calls it once every
// retention guard is registered (the mirror's among them): before that,
// the budget pass could delete what a guard is about to pin.
func (l *Log) ArmBudget() { l.armed.Store(true) }

// EnforceBudget keeps the log within Options.MaxDiskBytes (once armed).
// While it is over, it deletes the oldest sealed segment of each partition
// that no guard pins, round after round. If that is not enough:
//   - BudgetBlock refuses appends (ErrDiskBudget) until a later pass finds
//     the log under its budget;
//   - BudgetDropOldest deletes pinned sealed segments, round after round,
//     one per partition of the highest EvictRank at a time, telling the
//     DropObserver guards first. Only when nothing but active segments is
//     left does it block too (segment.bytes is too large for the budget;
//     logged).
//
// It returns the bytes freed and whether appends are blocked.
func (l *Log) EnforceBudget() (freed int64, blocked bool) {
	if l.maxDisk <= 0 || !l.armed.Load() {
		return 0, false
	}
	l.mu.RLock()
	var parts []*Partition
	for _, t := range l.topics {
		parts = append(parts, t.parts...)
	}
	guards := append([]RetentionGuard(nil), l.guards...)
	l.mu.RUnlock()
	floor := func(p *Partition) int64 {
		f := int64(math.MaxInt64)
		for _, g := range guards {
			f = min(f, g.RetainFrom(p.topic, p.id))
		}
		return f
	}
	freed = l.dropRounds(parts, func(p *Partition) (int64, error) { return p.dropHeadForBudget(floor(p), nil) })
	if l.Size() > l.maxDisk && l.policy == BudgetDropOldest {
		freed += l.dropPinned(parts, guards, floor)
	}
	blocked = l.Size() > l.maxDisk
	if was := l.overBudget.Swap(blocked); was != blocked {
		switch {
		case blocked && l.policy == BudgetDropOldest:
			l.logger.Error("data-disk budget reached and only active segments are left (segment.bytes is too large for max.disk.bytes): appends are blocked",
				"bytes", l.Size(), "max_disk_bytes", l.maxDisk)
		case blocked:
			l.logger.Error("data-disk budget reached and everything left is pinned (not yet mirrored): appends are blocked",
				"bytes", l.Size(), "max_disk_bytes", l.maxDisk)
		default:
			l.logger.Info("back under the data-disk budget: appends resume", "bytes", l.Size(), "max_disk_bytes", l.maxDisk)
		}
	}
	return freed, blocked
}

// dropRounds calls drop on each partition in turn, round after round,
// until the log fits its budget or a round frees nothing.
func (l *Log) dropRounds(parts []*Partition, drop func(*Partition) (int64, error)) (freed int64) {
	for l.Size() > l.maxDisk {
		round := int64(0)
		for _, p := range parts {
			n, err := drop(p)
			if err != nil {
				l.logger.Error("deleting a segment for the disk budget", "topic", p.topic, "partition", p.id, "err", err)
			}
			round += n
			if l.Size() <= l.maxDisk {
				break
			}
		}
		freed += round
		if round == 0 {
			break
		}
	}
	return freed
}

// dropPinned is BudgetDropOldest past what no guard pins: the topics of
// the highest rank lose their oldest segments first, then the next rank.
func (l *Log) dropPinned(parts []*Partition, guards []RetentionGuard, floor func(*Partition) int64) (freed int64) {
	rank := func(p *Partition) int {
		if l.evictRank == nil {
			return 0
		}
		return l.evictRank(p.topic)
	}
	byRank := map[int][]*Partition{}
	var ranks []int
	for _, p := range parts {
		r := rank(p)
		if byRank[r] == nil {
			ranks = append(ranks, r)
		}
		byRank[r] = append(byRank[r], p)
	}
	slices.SortFunc(ranks, func(a, b int) int { return b - a }) // highest first
	for _, r := range ranks {
		freed += l.dropRounds(byRank[r], func(p *Partition) (int64, error) {
			f := floor(p)
			return p.dropHeadForBudget(math.MaxInt64, func(from, to int64) {
				lost := max(to+1-max(from, f), 0)
				l.dropped.Add(lost)
				l.logger.Error("data-disk budget: dropping records that were never mirrored (drop-oldest policy)",
					"topic", p.topic, "partition", p.id, "from_offset", max(from, f), "to_offset", to, "records", lost,
					"bytes", l.Size(), "max_disk_bytes", l.maxDisk)
				for _, g := range guards {
					if o, ok := g.(DropObserver); ok {
						o.WillDrop(p.topic, p.id, from, to)
					}
				}
			})
		})
		if l.Size() <= l.maxDisk {
			break
		}
	}
	return freed
}
