package log

import (
	"math"
	"time"
)

// budgetCheckInterval is how often the background pass checks the
// data-disk budget.
const budgetCheckInterval = time.Second

// ArmBudget starts enforcing the disk budget. Its owner calls it once every
// retention guard is registered (the mirror's among them): before that,
// the budget pass could delete what a guard is about to pin.
func (l *Log) ArmBudget() { l.armed.Store(true) }

// EnforceBudget keeps the log within Options.MaxDiskBytes (once armed): while it is
// over, it deletes the oldest sealed segment of each partition that no
// guard pins, round after round; if a round frees nothing and the log is
// still over, appends are refused (ErrDiskBudget) until a later pass finds
// it under. It returns the bytes freed and whether appends are blocked.
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
	for l.Size() > l.maxDisk {
		round := int64(0)
		for _, p := range parts {
			floor := int64(math.MaxInt64)
			for _, g := range guards {
				floor = min(floor, g.RetainFrom(p.topic, p.id))
			}
			n, err := p.dropHeadForBudget(floor)
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
	blocked = l.Size() > l.maxDisk
	if was := l.overBudget.Swap(blocked); was != blocked {
		if blocked {
			l.logger.Error("data-disk budget reached and everything left is pinned (not yet mirrored): appends are blocked",
				"bytes", l.Size(), "max_disk_bytes", l.maxDisk)
		} else {
			l.logger.Info("back under the data-disk budget: appends resume", "bytes", l.Size(), "max_disk_bytes", l.maxDisk)
		}
	}
	return freed, blocked
}
