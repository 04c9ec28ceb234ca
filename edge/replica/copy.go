package replica

import (
	"context"
	"fmt"

	flog "ferry/log"
)

// CommittedCopy is a partition this node leads, as the mirror receiver
// writes its copy of an edge's partition (it has the methods of
// mirror.Copy; edge adapts Manager.Copy to mirror.Target):
//
//   - appends hold the leadership, and their batches, which keep the edge's
//     offsets, are stamped with the leader epoch as a producer's are
//     (log.AppendAtStamped), so followers find where their logs diverge;
//   - DurableOffset is the committed end (the high watermark, itself never
//     above the leader's durable offset): an edge resumes from it, never
//     above it, so nothing it counts as the center's can be cut by a leader
//     change (what it sends again below the leader's end is skipped by the
//     receiver, as any overlap);
//   - WaitDurable waits until the high watermark passes the offset: a chunk
//     is acknowledged only once committed (flog.ErrNotLeader if the
//     leadership ends first, flog.ErrNotEnoughReplicasAfterAppend if the
//     in-sync set fell below min.insync.replicas: the receiver drops the
//     connection and the edge resumes from the committed end).
//
// Clear (the receiver clears a staged live tail once merged) moves the
// log start to the end, on the leader and then, through the replicated log
// itself, on every in-sync replica: followers take the leader's log start
// from each fetch, and report theirs in the next, as after DeleteRecords.
// Clear returns once every in-sync replica has, so a follower elected
// later holds no stale staged tail.
type CommittedCopy struct{ l *Leader }

// Copy is the partition as the mirror receiver's copy, when this node
// leads it now.
func (m *Manager) Copy(topic string, partition int32) (*CommittedCopy, bool) {
	l, ok := m.Leader(topic, partition)
	if !ok {
		return nil, false
	}
	return &CommittedCopy{l}, true
}

// Replicates reports whether the metadata gives this node a replica of the
// partition (led here or not).
func (m *Manager) Replicates(topic string, partition int32) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.parts[tp{topic, partition}] != nil
}

func (c *CommittedCopy) StartOffset() int64 { return c.l.p.StartOffset() }
func (c *CommittedCopy) EndOffset() int64   { return c.l.p.EndOffset() }
func (c *CommittedCopy) Size() int64        { return c.l.p.Size() }

// DurableOffset is the committed end.
func (c *CommittedCopy) DurableOffset() int64 {
	return min(c.l.p.DurableOffset(), c.l.p.HighWatermark())
}

// AppendAt appends batches at their offsets as leader, stamped with its
// epoch.
func (c *CommittedCopy) AppendAt(batches ...[]byte) (flog.AppendResult, error) {
	var res flog.AppendResult
	err := c.l.whileLeading(func() (err error) {
		res, err = c.l.p.AppendAtStamped(batches...)
		return err
	})
	return res, err
}

// AppendGap appends a record-less batch over from..to as leader (stamped
// with its epoch).
func (c *CommittedCopy) AppendGap(from, to int64, timestamp int64) (flog.AppendResult, error) {
	var res flog.AppendResult
	err := c.l.whileLeading(func() (err error) {
		res, err = c.l.p.AppendGap(from, to, timestamp)
		return err
	})
	return res, err
}

func (c *CommittedCopy) SyncSoon(offset int64) { c.l.p.SyncSoon(offset) }

// WaitDurable waits until offset is committed.
func (c *CommittedCopy) WaitDurable(ctx context.Context, offset int64) error {
	return c.l.WaitCommitted(ctx, offset)
}

func (c *CommittedCopy) Read(offset int64, maxBytes int, dst []byte) (flog.ReadResult, error) {
	return c.l.p.Read(offset, maxBytes, dst)
}

// Clear empties the copy on every in-sync replica (see CommittedCopy). It
// waits for the followers at most twice the lag time and fetch wait; an
// error then says the leader's copy is empty and an in-sync follower's
// not yet.
func (c *CommittedCopy) Clear() error {
	var start int64
	err := c.l.whileLeading(func() error {
		err := c.l.p.Clear()
		start = c.l.p.StartOffset()
		return err
	})
	if err != nil {
		return err
	}
	// Bounded: an in-sync follower fetches within the lag time, or leaves
	// the in-sync set.
	opts := c.l.m.opts
	ctx, cancel := context.WithTimeout(c.l.m.ctx, 2*(opts.ReplicaLagTime+opts.FetchMaxWait))
	defer cancel()
	if err := c.l.waitLogStart(ctx, start); err != nil {
		return fmt.Errorf("%s-%d cleared on the leader, not yet on every in-sync replica: %w", c.l.topic, c.l.part, err)
	}
	return nil
}

// whileLeading runs fn holding the leadership (a change of role waits),
// or returns flog.ErrNotLeader if it has ended.
func (l *Leader) whileLeading(fn func() error) error {
	l.st.role.RLock()
	defer l.st.role.RUnlock()
	if l.isEnded() {
		return fmt.Errorf("%w: %s-%d", flog.ErrNotLeader, l.topic, l.part)
	}
	return fn()
}
