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

// ArmBudget starts enforcing the disk budget. Its owner calls it once the
// Shipper is registered (SetShipper), if there is one: before that, the
// budget pass could delete what the shipper is about to pin.
func (l *Log) ArmBudget() { l.armed.Store(true) }

// EnforceBudget keeps the log within Options.MaxDiskBytes (once armed).
// While it is over, it deletes the oldest sealed segment of each partition
// that the Shipper does not pin, round after round. If that is not enough:
//   - BudgetBlock refuses appends (ErrDiskBudget) until a later pass finds
//     the log under its budget;
//   - BudgetDropOldest deletes pinned sealed segments, round after round,
//     one per partition of the highest Shipper.EvictRank at a time,
//     telling the Shipper first (WillDrop). Only when nothing but active
//     segments is left does it block too (segment.bytes is too large for
//     the budget; logged).
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
	shipper := l.shipper
	l.mu.RUnlock()
	freed = l.dropRounds(parts, func(p *Partition) (int64, error) { return p.dropHeadForBudget(l.deleteFloor(shipper, p), nil) })
	if l.Size() > l.maxDisk && l.policy == BudgetDropOldest {
		freed += l.dropPinned(parts, shipper)
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

// dropPinned is BudgetDropOldest past what the shipper does not pin: the
// topics it ranks highest lose their oldest segments first, then the next
// rank.
func (l *Log) dropPinned(parts []*Partition, shipper Shipper) (freed int64) {
	rank := func(p *Partition) int {
		if shipper == nil {
			return 0
		}
		return shipper.EvictRank(p.topic)
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
			f := retainFrom(shipper, p)
			return p.dropHeadForBudget(math.MaxInt64, func(from, to int64) {
				lost := max(to+1-max(from, f), 0)
				l.dropped.Add(lost)
				l.logger.Error("data-disk budget: dropping records that were never mirrored (drop-oldest policy)",
					"topic", p.topic, "partition", p.id, "from_offset", max(from, f), "to_offset", to, "records", lost,
					"bytes", l.Size(), "max_disk_bytes", l.maxDisk)
				if shipper != nil {
					shipper.WillDrop(p.topic, p.id, from, to)
				}
			})
		})
		if l.Size() <= l.maxDisk {
			break
		}
	}
	return freed
}
