package replica

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	flog "ferry/log"
)

// Leader is one partition this node leads at one leader epoch (Kafka's
// Partition as leader): the followers' states, the high watermark, the
// in-sync set and its proposed changes. Its methods are those of the Kafka
// front end's ReplicaLeader. It ends when the node stops leading the
// partition at that epoch; from then on it answers flog.ErrNotLeader.
type Leader struct {
	m     *Manager
	st    *partState
	p     *flog.Partition
	topic string
	part  int32
	epoch int32
	// epochStart is the end offset when this node became leader at epoch
	// (Kafka's leaderEpochStartOffset): a follower rejoins the in-sync set
	// only once it holds everything below it.
	epochStart int64
	stop       chan struct{} // closed by end

	mu             sync.Mutex
	ended          bool
	replicas       []int32
	isr            []int32 // as committed by the controller
	partitionEpoch int32
	minISR         int
	followers      map[int32]*followerState
	// An AlterPartition in flight (at most one): the in-sync set it
	// proposes. Until it is committed the high watermark counts the
	// union of both sets (Kafka's maximal ISR), so an expansion is never
	// counted late and a shrink never early.
	proposed []int32
	// blocked: the last proposal failed; none is made until the next
	// metadata change.
	blocked bool
	changed chan struct{} // closed when the HW or the ISR moves, or the leadership ends
}

// followerState is what the leader knows of one follower (Kafka's
// ReplicaState).
type followerState struct {
	end             int64     // its log end offset: its last fetch offset; -1 unknown
	start           int64     // its log start offset, as its last fetch said; -1 unknown
	lastCaughtUp    time.Time // the last time it had all the leader had
	lastFetch       time.Time
	lastFetchLeader int64 // the leader's end offset at its last fetch
}

func newLeader(m *Manager, st *partState, a Assignment) *Leader {
	now := m.opts.Now()
	l := &Leader{
		m: m, st: st, p: st.p, topic: a.Topic, part: a.Partition, epoch: a.LeaderEpoch,
		epochStart: st.p.EndOffset(), stop: make(chan struct{}),
		replicas: slices.Clone(a.Replicas), isr: slices.Clone(a.ISR), partitionEpoch: a.PartitionEpoch,
		minISR: a.minISR(), followers: map[int32]*followerState{}, changed: make(chan struct{}),
	}
	for _, r := range a.Replicas {
		if r == m.self {
			continue
		}
		// Unknown ends; the in-sync ones are taken as caught up now, so
		// they are not dropped before they could fetch (Kafka's
		// resetReplicaState).
		f := &followerState{end: -1, start: -1}
		if slices.Contains(a.ISR, r) {
			f.lastCaughtUp = now
		}
		l.followers[r] = f
	}
	return l
}

// LeaderEpoch is the epoch this node leads at.
func (l *Leader) LeaderEpoch() int32 { return l.epoch }

// HighWatermark is the partition's committed end.
func (l *Leader) HighWatermark() int64 { return l.p.HighWatermark() }

// EpochStartOffset is the end offset when this node became leader.
func (l *Leader) EpochStartOffset() int64 { return l.epochStart }

// Append appends a producer's batch as leader, holding the leadership
// meanwhile. With acksAll it refuses (flog.ErrNotEnoughReplicas) while the
// in-sync set is below min.insync.replicas, appending nothing.
func (l *Leader) Append(batch []byte, acksAll bool) (flog.AppendResult, error) {
	l.st.role.RLock()
	defer l.st.role.RUnlock()
	l.mu.Lock()
	ended, short := l.ended, len(l.isr) < l.minISR
	l.mu.Unlock()
	switch {
	case ended:
		return flog.AppendResult{}, flog.ErrNotLeader
	case acksAll && short:
		return flog.AppendResult{}, fmt.Errorf("%w: %s-%d", flog.ErrNotEnoughReplicas, l.topic, l.part)
	}
	return l.p.Append(batch)
}

// FollowerFetched records a follower's fetch at fetchOffset (Kafka's
// updateFollowerFetchState): its log holds everything below it, from
// logStart on. The high watermark may advance, and the follower may rejoin
// the in-sync set.
func (l *Leader) FollowerFetched(replica int32, fetchOffset, logStart int64) error {
	now := l.m.opts.Now()
	leaderEnd := l.p.EndOffset()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return flog.ErrNotLeader
	}
	f := l.followers[replica]
	if f == nil {
		return fmt.Errorf("%w: broker %d is not a replica of %s-%d", flog.ErrNotLeader, replica, l.topic, l.part)
	}
	switch {
	case fetchOffset >= leaderEnd:
		f.lastCaughtUp = maxTime(f.lastCaughtUp, now)
	case fetchOffset >= f.lastFetchLeader && !f.lastFetch.IsZero():
		// It now has everything the leader had at its previous fetch.
		f.lastCaughtUp = maxTime(f.lastCaughtUp, f.lastFetch)
	}
	f.end, f.lastFetch, f.lastFetchLeader = fetchOffset, now, leaderEnd
	if logStart > f.start {
		f.start = logStart
		l.signalLocked() // waitLogStart
	}
	l.maybeExpandLocked(replica, f)
	l.advanceLocked()
	return nil
}

// WaitCommitted waits until the high watermark passes offset, the in-sync
// set falls below min.insync.replicas (flog.ErrNotEnoughReplicasAfterAppend),
// the leadership ends (flog.ErrNotLeader) or ctx ends.
func (l *Leader) WaitCommitted(ctx context.Context, offset int64) error {
	l.p.SyncSoon(offset) // the leader's own durability bounds the HW
	for {
		l.mu.Lock()
		ended, short, ch := l.ended, len(l.isr) < l.minISR, l.changed
		l.mu.Unlock()
		switch {
		case l.p.HighWatermark() > offset:
			return nil
		case ended:
			return flog.ErrNotLeader
		case short:
			return fmt.Errorf("%w: %s-%d", flog.ErrNotEnoughReplicasAfterAppend, l.topic, l.part)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// waitLogStart waits until every follower in the in-sync set (the proposed
// one too while a change is in flight) has said, in a fetch, that its log
// starts at or above offset (Kafka's low watermark, which DeleteRecords
// waits for), the leadership ends (flog.ErrNotLeader), or ctx ends. A
// follower dropped from the in-sync set meanwhile no longer counts: it is
// not elected before it rejoins, and it takes the leader's log start on
// its way back (the fetcher's followLogStart, or StartOver).
func (l *Leader) waitLogStart(ctx context.Context, offset int64) error {
	for {
		l.mu.Lock()
		ended, ch := l.ended, l.changed
		behind := int32(-1)
		for _, set := range [][]int32{l.isr, l.proposed} {
			for _, r := range set {
				if f := l.followers[r]; r != l.m.self && (f == nil || f.start < offset) {
					behind = r
				}
			}
		}
		l.mu.Unlock()
		switch {
		case ended:
			return flog.ErrNotLeader
		case behind < 0:
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("in-sync follower %d has not taken log start %d: %w", behind, offset, ctx.Err())
		}
	}
}

func (l *Leader) isEnded() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ended
}

// end ends the leadership (under st.role): waiters are told, the goroutine
// stops.
func (l *Leader) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return
	}
	l.ended = true
	close(l.stop)
	l.signalLocked()
}

func (l *Leader) signalLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// update takes a metadata change of the partition at the same leader
// epoch: the committed in-sync set, replicas, min ISR.
func (l *Leader) update(a Assignment) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return
	}
	l.blocked = false
	if a.PartitionEpoch >= l.partitionEpoch {
		l.isr, l.partitionEpoch = slices.Clone(a.ISR), a.PartitionEpoch
	}
	l.minISR, l.replicas = a.minISR(), slices.Clone(a.Replicas)
	now := l.m.opts.Now()
	for _, r := range a.Replicas {
		if r != l.m.self && l.followers[r] == nil {
			l.followers[r] = &followerState{end: -1, start: -1, lastCaughtUp: now}
		}
	}
	for r := range l.followers {
		if !slices.Contains(a.Replicas, r) {
			delete(l.followers, r)
		}
	}
	l.signalLocked()
	l.advanceLocked()
}

// advanceLocked moves the high watermark to the smallest log end over the
// in-sync set (the proposed one too while a change is in flight), capped
// at the leader's durable offset, when that set has at least
// min.insync.replicas members (KIP-966's strict rule). l.mu is held.
func (l *Leader) advanceLocked() {
	if l.ended || len(l.isr) < l.minISR {
		return
	}
	hw := l.p.DurableOffset()
	for _, set := range [][]int32{l.isr, l.proposed} {
		for _, r := range set {
			if r == l.m.self {
				continue
			}
			f := l.followers[r]
			if f == nil || f.end < 0 {
				return // an in-sync follower not heard from yet
			}
			hw = min(hw, f.end)
		}
	}
	before := l.p.HighWatermark()
	if l.p.AdvanceHighWatermark(hw) > before {
		l.signalLocked()
	}
}

// maybeExpandLocked proposes taking the follower back into the in-sync set
// once it holds everything below the high watermark and the start of this
// leader epoch (Kafka's isFollowerInSync). l.mu is held.
func (l *Leader) maybeExpandLocked(replica int32, f *followerState) {
	if l.proposed != nil || l.blocked || slices.Contains(l.isr, replica) {
		return
	}
	if f.end < l.p.HighWatermark() || f.end < l.epochStart {
		return
	}
	isr := append(slices.Clone(l.isr), replica)
	slices.Sort(isr)
	l.proposeLocked(isr, "expand", replica)
}

// maybeShrinkLocked proposes dropping the in-sync followers that have not
// caught up to the leader's end within ReplicaLagTime (Kafka's
// getOutOfSyncReplicas). l.mu is held.
func (l *Leader) maybeShrinkLocked(now time.Time) {
	if l.proposed != nil || l.blocked {
		return
	}
	leaderEnd := l.p.EndOffset()
	var out []int32
	isr := make([]int32, 0, len(l.isr))
	for _, r := range l.isr {
		if f := l.followers[r]; r != l.m.self && (f == nil || f.end != leaderEnd && now.Sub(f.lastCaughtUp) > l.m.opts.ReplicaLagTime) {
			out = append(out, r)
			continue
		}
		isr = append(isr, r)
	}
	if len(out) == 0 {
		return
	}
	l.proposeLocked(isr, "shrink", out...)
}

// proposeLocked sends an AlterPartition in its own goroutine (one at a
// time per partition). l.mu is held.
func (l *Leader) proposeLocked(isr []int32, what string, replicas ...int32) {
	l.proposed = isr
	leaderEpoch, partitionEpoch := l.epoch, l.partitionEpoch
	l.m.logger.Info("proposing an in-sync set change", "topic", l.topic, "partition", l.part, "change", what,
		"replicas", replicas, "isr", l.isr, "proposed", isr, "partition_epoch", partitionEpoch)
	l.m.wg.Add(1)
	go func() {
		defer l.m.wg.Done()
		ctx, cancel := context.WithCancel(l.m.ctx)
		defer cancel()
		go func() {
			select {
			case <-l.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		pe, err := l.m.md.AlterPartition(ctx, l.topic, l.part, leaderEpoch, partitionEpoch, isr)
		l.mu.Lock()
		defer l.mu.Unlock()
		l.proposed = nil
		result := "committed"
		if err != nil {
			result = "refused"
		}
		l.m.metrics.isrChanges.WithLabelValues(what, result).Inc()
		if err != nil {
			if !l.ended {
				l.m.logger.Warn("in-sync set change refused; retrying after the next metadata change",
					"topic", l.topic, "partition", l.part, "proposed", isr, "err", err)
				// Unless that change came meanwhile (the proposal was
				// stale because of it): then at once.
				l.blocked = l.partitionEpoch == partitionEpoch
			}
			return
		}
		if pe > l.partitionEpoch {
			l.isr, l.partitionEpoch = isr, pe
		}
		l.signalLocked()
		l.advanceLocked()
	}()
}

// run is the leader's goroutine: the high watermark follows the leader's
// own appends and durable offset, and the in-sync set is checked for
// laggards every half ReplicaLagTime.
func (l *Leader) run() {
	defer l.m.wg.Done()
	tick := time.NewTicker(max(l.m.opts.ReplicaLagTime/2, time.Millisecond))
	defer tick.Stop()
	lastEnd, lastHW, byAppend := int64(-1), int64(-1), false
	for {
		appended := l.p.Wait()
		durable := l.p.DurableChanged()
		end, hw := l.p.EndOffset(), l.p.HighWatermark()
		if byAppend && end == lastEnd && hw == lastHW {
			// Woken by Wait with nothing moved (a closed partition's
			// channel is always closed): wait for the others only.
			appended = nil
		}
		lastEnd, lastHW, byAppend = end, hw, false
		l.mu.Lock()
		l.advanceLocked()
		l.mu.Unlock()
		select {
		case <-appended:
			byAppend = true
		case <-durable:
		case <-tick.C:
			l.mu.Lock()
			if !l.ended {
				l.maybeShrinkLocked(l.m.opts.Now())
			}
			l.mu.Unlock()
		case <-l.stop:
			return
		case <-l.m.ctx.Done():
			return
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
