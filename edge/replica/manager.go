package replica

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	flog "ferry/log"
)

// Options configure a Manager.
type Options struct {
	// Log is the node's log; the partitions must exist in it (the node's
	// applier creates them from the metadata).
	Log *flog.Log
	// Metadata is the cluster's metadata as this node sees it.
	Metadata Metadata
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// ReplicaLagTime is Kafka's replica.lag.time.max.ms: a follower that
	// has not caught up to the leader's end for that long leaves the
	// in-sync set. 0 means 30 s.
	ReplicaLagTime time.Duration
	// FetchMaxWait is how long a follower's fetch waits at the leader for
	// data (replica.fetch.wait.max.ms); 0 means 500 ms.
	FetchMaxWait time.Duration
	// FetchMaxBytes caps a fetch's answer, PartitionMaxBytes each
	// partition's (replica.fetch.response.max.bytes, replica.fetch.max.bytes);
	// 0 means 10 MiB and 1 MiB. The first batch always comes whole.
	FetchMaxBytes, PartitionMaxBytes int32
	// CheckpointInterval is how often the high watermarks are
	// checkpointed (replica.high.watermark.checkpoint.interval.ms); 0
	// means 5 s. They are checkpointed on Close too.
	CheckpointInterval time.Duration
	// DurableFollowers makes a follower make what it appended durable
	// under the topic's flush.policy before it fetches again, so the fetch
	// offset it reports means durable, and acks=all means durable on every
	// in-sync replica (doc.go).
	DurableFollowers bool
	// Now is the clock of the lag checks; nil means time.Now.
	Now func() time.Time
	// Registerer receives the ferry_replica_* metrics; nil keeps them
	// private.
	Registerer prometheus.Registerer
}

// Manager is one node's replica manager (doc.go). Start it with Start;
// Close stops it.
type Manager struct {
	opts    Options
	log     *flog.Log
	md      Metadata
	self    int32
	logger  *slog.Logger
	metrics *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	parts    map[tp]*partState
	fetchers map[int32]*fetcher // by leader broker
}

// tp names a partition.
type tp struct {
	topic     string
	partition int32
}

// partState is one partition with a replica here. role is held for
// reading while something writes to the log under the current role (a
// producer's append through the leader, a fetcher's append or cut as
// follower) and for writing while the role changes.
type partState struct {
	tp   tp
	p    *flog.Partition
	role sync.RWMutex
	// Under role (and m.mu to read from outside):
	leader *Leader // leading, or nil
	follow follow  // following when follow.leader >= 0
}

// follow is what a follower follows: a broker at a leader epoch.
type follow struct {
	leader, epoch int32
}

// New makes a Manager; it does nothing until Start.
func New(opts Options) (*Manager, error) {
	if opts.Log == nil || opts.Metadata == nil {
		return nil, errors.New("replica: Options.Log and Options.Metadata are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ReplicaLagTime <= 0 {
		opts.ReplicaLagTime = 30 * time.Second
	}
	if opts.FetchMaxWait <= 0 {
		opts.FetchMaxWait = 500 * time.Millisecond
	}
	if opts.FetchMaxBytes <= 0 {
		opts.FetchMaxBytes = 10 << 20
	}
	if opts.PartitionMaxBytes <= 0 {
		opts.PartitionMaxBytes = 1 << 20
	}
	if opts.CheckpointInterval <= 0 {
		opts.CheckpointInterval = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	met, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{
		opts: opts, log: opts.Log, md: opts.Metadata, self: opts.Metadata.Self(),
		logger: opts.Logger.With("component", "replica"), metrics: met,
		ctx: ctx, cancel: cancel,
		parts: map[tp]*partState{}, fetchers: map[int32]*fetcher{},
	}, nil
}

// Start follows the metadata until Close: one goroutine applies each
// change, one checkpoints the high watermarks; leaders and fetchers run
// their own.
func (m *Manager) Start() {
	m.wg.Add(2)
	go m.follow()
	go m.checkpoints()
}

// Close stops every leader's and fetcher's goroutine and checkpoints the
// high watermarks. Partitions it led are no longer served (Leader answers
// false); the log stays open (its owner closes it).
func (m *Manager) Close() error {
	m.cancel()
	m.mu.Lock()
	for _, st := range m.parts {
		m.stopRoleLocked(st)
	}
	for id, f := range m.fetchers {
		f.stop()
		delete(m.fetchers, id)
	}
	m.mu.Unlock()
	m.wg.Wait()
	return m.checkpointAll()
}

// Leader is this node's leadership of a partition (the Kafka front end's
// Replication.Leader, through edge's adapter); ok is false unless it leads
// it now.
func (m *Manager) Leader(topic string, partition int32) (*Leader, bool) {
	m.mu.Lock()
	st := m.parts[tp{topic, partition}]
	m.mu.Unlock()
	if st == nil {
		return nil, false
	}
	st.role.RLock()
	l := st.leader
	st.role.RUnlock()
	if l == nil || l.isEnded() {
		return nil, false
	}
	return l, true
}

// follow applies the metadata now and at each change. A partition the log
// does not have yet (the applier creates it) is looked for again shortly.
func (m *Manager) follow() {
	defer m.wg.Done()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		as, changed := m.md.Assignments()
		if missing := m.apply(as); missing {
			retry.Reset(100 * time.Millisecond)
		}
		select {
		case <-changed:
		case <-retry.C:
		case <-m.ctx.Done():
			return
		}
	}
}

// apply makes every partition's role what the assignments say. It
// reports whether a partition was missing from the log.
func (m *Manager) apply(as []Assignment) (missing bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx.Err() != nil {
		return false
	}
	seen := map[tp]bool{}
	for _, a := range as {
		if !a.hasReplica(m.self) {
			continue
		}
		k := tp{a.Topic, a.Partition}
		seen[k] = true
		st := m.parts[k]
		if st == nil {
			p, err := m.log.Partition(a.Topic, a.Partition)
			if err != nil {
				m.logger.Debug("partition not in the log yet", "topic", a.Topic, "partition", a.Partition, "err", err)
				missing = true
				continue
			}
			st = &partState{tp: k, p: p, follow: follow{leader: -1}}
			m.parts[k] = st
		}
		switch {
		case a.Leader == m.self:
			if st.leader != nil && st.leader.epoch == a.LeaderEpoch {
				st.leader.update(a)
				continue
			}
			m.becomeLeaderLocked(st, a)
		case a.Leader >= 0:
			if st.follow.leader == a.Leader && st.follow.epoch == a.LeaderEpoch {
				continue
			}
			m.becomeFollowerLocked(st, a)
		default:
			m.stopRoleLocked(st)
		}
	}
	for k, st := range m.parts {
		if !seen[k] {
			m.stopRoleLocked(st)
			delete(m.parts, k)
		}
	}
	return missing
}

// becomeLeaderLocked makes this node the partition's leader at a's epoch
// (Kafka's makeLeader): no more fetching, the epoch stamped from the end
// offset on, the followers' states reset. m.mu is held.
func (m *Manager) becomeLeaderLocked(st *partState, a Assignment) {
	m.unfollowLocked(st)
	st.role.Lock()
	if st.leader != nil {
		st.leader.end()
	}
	st.leader, st.follow = nil, follow{leader: -1}
	if err := st.p.SetLeaderEpoch(a.LeaderEpoch); err != nil {
		st.role.Unlock()
		m.logger.Error("cannot lead partition", "topic", a.Topic, "partition", a.Partition, "leader_epoch", a.LeaderEpoch, "err", err)
		return
	}
	l := newLeader(m, st, a)
	// The high watermark as this leader knows it now, before it serves:
	// alone in its ISR, its durable end (a single node's acknowledged
	// records, when it becomes node 1 of a cluster); otherwise it moves
	// once the followers have fetched.
	l.mu.Lock()
	l.advanceLocked()
	l.mu.Unlock()
	st.leader = l
	st.p.SetAppliesRetention(true) // a leader's clock and size decide; followers follow its start
	st.role.Unlock()
	m.logger.Info("leading partition", "topic", a.Topic, "partition", a.Partition, "leader_epoch", a.LeaderEpoch,
		"epoch_start_offset", l.epochStart, "high_watermark", st.p.HighWatermark(), "isr", a.ISR)
	m.wg.Add(1)
	go l.run()
}

// becomeFollowerLocked makes this node a follower of a's leader at its
// epoch (Kafka's makeFollower): it stops leading, and the fetcher of that
// leader fetches the partition (cutting what diverges). m.mu is held.
func (m *Manager) becomeFollowerLocked(st *partState, a Assignment) {
	if st.follow.leader != a.Leader {
		m.unfollowLocked(st) // the same leader's fetcher keeps it, at the new epoch
	}
	st.role.Lock()
	if st.leader != nil {
		st.leader.end()
		st.leader = nil
	}
	st.follow = follow{leader: a.Leader, epoch: a.LeaderEpoch}
	st.p.SetAppliesRetention(false) // its start follows the leader's (fetcher.followLogStart)
	st.role.Unlock()
	m.logger.Info("following partition", "topic", a.Topic, "partition", a.Partition, "leader", a.Leader, "leader_epoch", a.LeaderEpoch)
	f := m.fetchers[a.Leader]
	if f == nil {
		f = newFetcher(m, a.Leader)
		m.fetchers[a.Leader] = f
		m.wg.Add(1)
		go f.run()
	}
	f.add(st, a.LeaderEpoch)
}

// stopRoleLocked makes the partition neither lead nor follow. m.mu is
// held.
func (m *Manager) stopRoleLocked(st *partState) {
	m.unfollowLocked(st)
	st.role.Lock()
	if st.leader != nil {
		st.leader.end()
		st.leader = nil
	}
	st.follow = follow{leader: -1}
	st.p.SetAppliesRetention(false)
	st.role.Unlock()
}

// unfollowLocked takes the partition from its fetcher, stopping a fetcher
// left with none. m.mu is held.
func (m *Manager) unfollowLocked(st *partState) {
	if st.follow.leader < 0 {
		return
	}
	if f := m.fetchers[st.follow.leader]; f != nil {
		if f.remove(st) == 0 {
			f.stop()
			delete(m.fetchers, st.follow.leader)
		}
	}
}

// following reports whether st still follows leader at epoch (a fetcher's
// check, under st.role, before it writes what it fetched).
func (st *partState) following(leader, epoch int32) bool {
	return st.follow.leader == leader && st.follow.epoch == epoch
}

// checkpoints writes the high watermarks every CheckpointInterval.
func (m *Manager) checkpoints() {
	defer m.wg.Done()
	t := time.NewTicker(m.opts.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := m.checkpointAll(); err != nil {
				m.logger.Warn("checkpointing high watermarks", "err", err)
			}
		case <-m.ctx.Done():
			return
		}
	}
}

func (m *Manager) checkpointAll() error {
	m.mu.Lock()
	ps := make([]*flog.Partition, 0, len(m.parts))
	for _, st := range m.parts {
		ps = append(ps, st.p)
	}
	m.mu.Unlock()
	var errs []error
	for _, p := range ps {
		if err := p.CheckpointHighWatermark(); err != nil && !errors.Is(err, flog.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// PartitionStatus is one local replica's state, for metrics and the
// cluster's status (Kafka's UnderReplicatedPartitions, UnderMinIsrPartitions
// are counted by leaders).
type PartitionStatus struct {
	Topic     string
	Partition int32
	Role      string // "leader", "follower" or "none" (offline, or not started)
	// Leader and LeaderEpoch are what this replica leads or follows (-1:
	// none).
	Leader, LeaderEpoch      int32
	HighWatermark, EndOffset int64
	// Leaders only: the in-sync set as committed, the replicas, and
	// whether the set is smaller than the replicas (under-replicated) or
	// than min.insync.replicas (acks=all refused).
	ISR, Replicas                []int32
	UnderReplicated, UnderMinISR bool
}

// Partitions is the state of every local replica, sorted by topic and
// partition.
func (m *Manager) Partitions() []PartitionStatus {
	m.mu.Lock()
	sts := make([]*partState, 0, len(m.parts))
	for _, st := range m.parts {
		sts = append(sts, st)
	}
	m.mu.Unlock()
	out := make([]PartitionStatus, 0, len(sts))
	for _, st := range sts {
		s := PartitionStatus{Topic: st.tp.topic, Partition: st.tp.partition, Role: "none", Leader: -1, LeaderEpoch: -1,
			HighWatermark: st.p.HighWatermark(), EndOffset: st.p.EndOffset()}
		st.role.RLock()
		l, fl := st.leader, st.follow
		st.role.RUnlock()
		switch {
		case l != nil && !l.isEnded():
			l.mu.Lock()
			s.Role, s.Leader, s.LeaderEpoch = "leader", m.self, l.epoch
			s.ISR, s.Replicas = slices.Clone(l.isr), slices.Clone(l.replicas)
			s.UnderReplicated, s.UnderMinISR = len(l.isr) < len(l.replicas), len(l.isr) < l.minISR
			l.mu.Unlock()
		case fl.leader >= 0:
			s.Role, s.Leader, s.LeaderEpoch = "follower", fl.leader, fl.epoch
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b PartitionStatus) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return int(a.Partition - b.Partition)
	})
	return out
}
