package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	bolt "go.etcd.io/bbolt"

	flog "ferry/log"
)

// A cluster's coordinator (Kafka's GroupMetadataManager, narrowly): the
// groups of every partition of the offsets topic this broker leads, loaded
// from the partition when it becomes leader and dropped when it stops.
//
// A watcher goroutine follows the Cluster view (ClusterWatcher tells it of
// every change): for a partition this broker now leads (or leads at a new
// leader epoch) it starts a load — the partition's records replayed from
// its start into memory; the group APIs of its groups answer
// COORDINATOR_LOAD_IN_PROGRESS meanwhile — and for one it no longer leads
// it drops the partition's offsets and groups (their waiting joins and
// syncs answered NOT_COORDINATOR). A commit appends its records and, once
// OffsetsLog.Append says they are committed, applies them in memory if the
// partition is still the one it appended to (else NOT_COORDINATOR: a
// deposed leader's write is never answered as a success). Each cached
// offset remembers the log offset of the record that set it, so commits
// completing out of order leave what the log's order says; a deletion
// stays in memory as a tombstone until the next snapshot.
//
// The same goroutine writes the snapshots (offsetslog.go) and advances the
// partition's start; a snapshot excludes commits of its partition while it
// runs (part.wmu), so no commit lands between the state it captures and
// the records it writes.

// DefaultOffsetsSnapshotBytes and DefaultOffsetsSnapshotInterval are when
// a loaded offsets partition is snapshotted and its start advanced.
const (
	DefaultOffsetsSnapshotBytes    = 1 << 20
	DefaultOffsetsSnapshotInterval = 10 * time.Minute
)

// GroupsReplication makes a Groups a cluster's coordinator (Replicate).
type GroupsReplication struct {
	// Log is the offsets topic.
	Log OffsetsLog
	// Cluster says who leads each partition of the offsets topic; it
	// must be a ClusterWatcher.
	Cluster Cluster
	// NodeID is this broker's id.
	NodeID int32
	// SnapshotBytes: a partition that has grown by this much since its
	// last snapshot is snapshotted (0: DefaultOffsetsSnapshotBytes).
	SnapshotBytes int64
	// SnapshotInterval: a partition that has grown at all is
	// snapshotted this often (0: DefaultOffsetsSnapshotInterval).
	SnapshotInterval time.Duration
}

// ClusterWatcher is a Cluster that tells when its view may have changed:
// the channel is closed at the next change.
type ClusterWatcher interface {
	Changed() <-chan struct{}
}

// snapshotChunk is how many records a snapshot writes per batch.
const snapshotChunk = 500

// maxOffsetsPartitions bounds the partitions the watcher looks at.
const maxOffsetsPartitions = 1000

type replStore struct {
	g      *Groups
	r      GroupsReplication
	watch  ClusterWatcher
	legacy *bolt.DB // kafka-groups.db: imported once into the partitions
	logger *slog.Logger

	mu    sync.Mutex // guards n, parts and every part's state but wmu
	n     int32      // the offsets topic's partitions (0: not there yet)
	parts map[int32]*offsetsPart

	kick chan struct{} // a partition passed SnapshotBytes
	stop chan struct{}
	wg   sync.WaitGroup
}

// offsetsPart is one offsets partition this broker leads.
type offsetsPart struct {
	id, epoch int32
	cancel    context.CancelFunc // ends its load
	// wmu: commits hold it shared across append and apply, a snapshot
	// exclusively.
	wmu     sync.RWMutex
	loaded  bool
	offsets map[string]map[tpKey]*cachedOffset // group → offsets
	grown   int64                              // record bytes since the last snapshot
	snapAt  time.Time
}

type cachedOffset struct {
	co      committedOffset
	at      int64 // log offset of the record that set it
	deleted bool  // a tombstone, kept until the next snapshot
}

// Replicate makes the coordinator keep committed offsets in the offsets
// topic instead of kafka-groups.db, coordinating the groups of the
// partitions this broker leads; the offsets kafka-groups.db holds are
// imported into their partitions once (a node alone becoming node 1 of a
// cluster). Call it before serving; Close stops it.
func (g *Groups) Replicate(r GroupsReplication) error {
	w, ok := r.Cluster.(ClusterWatcher)
	if !ok || r.Log == nil {
		return errors.New("kafka: replicated groups need an offsets log and a cluster view that tells its changes")
	}
	if r.SnapshotBytes <= 0 {
		r.SnapshotBytes = DefaultOffsetsSnapshotBytes
	}
	if r.SnapshotInterval <= 0 {
		r.SnapshotInterval = DefaultOffsetsSnapshotInterval
	}
	rs := &replStore{g: g, r: r, watch: w, legacy: g.db, logger: g.logger, parts: map[int32]*offsetsPart{},
		kick: make(chan struct{}, 1), stop: make(chan struct{})}
	if err := g.db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists(importedBucket); return err }); err != nil {
		return err
	}
	g.mu.Lock()
	g.store = rs
	g.mu.Unlock()
	rs.wg.Add(1)
	go rs.run()
	return nil
}

// importedBucket marks the offsets partitions kafka-groups.db's offsets
// were imported into (key: the partition, 4 bytes).
var importedBucket = []byte("imported_to_offsets_topic")

func (rs *replStore) run() {
	defer rs.wg.Done()
	tick := time.NewTicker(min(rs.r.SnapshotInterval, time.Minute))
	defer tick.Stop()
	for {
		changed := rs.watch.Changed()
		rs.follow()
		select {
		case <-rs.stop:
			return
		case <-changed:
		case <-rs.kick:
			rs.snapshotDue(false)
		case <-tick.C:
			rs.snapshotDue(true)
		}
	}
}

// follow starts loads of the partitions this broker now leads and drops
// those it no longer leads (or leads at another epoch: reloaded).
func (rs *replStore) follow() {
	var n int32
	led := map[int32]int32{}
	for ; n < maxOffsetsPartitions; n++ {
		pv, ok := rs.r.Cluster.Partition(offsetsTopic, n)
		if !ok {
			break
		}
		if pv.Leader == rs.r.NodeID {
			led[n] = pv.LeaderEpoch
		}
	}
	var dropped []int32
	rs.mu.Lock()
	rs.n = n
	for id, part := range rs.parts {
		if e, ok := led[id]; !ok || e != part.epoch {
			part.cancel()
			delete(rs.parts, id)
			dropped = append(dropped, id)
			rs.logger.Info("offsets partition no longer led here: its groups dropped", "partition", id, "epoch", part.epoch)
		}
	}
	for id, epoch := range led {
		if rs.parts[id] != nil {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		part := &offsetsPart{id: id, epoch: epoch, cancel: cancel}
		rs.parts[id] = part
		rs.wg.Add(1)
		go func() {
			defer rs.wg.Done()
			rs.load(ctx, part)
		}()
	}
	rs.mu.Unlock()
	if len(dropped) > 0 {
		rs.g.dropGroups(func(group string) bool {
			p := OffsetsPartition(group, n)
			for _, d := range dropped {
				if d == p {
					return true
				}
			}
			return false
		})
	}
}

// load replays a partition into memory, retrying after a failure until
// the partition is dropped, then imports kafka-groups.db's offsets of its
// groups once.
func (rs *replStore) load(ctx context.Context, part *offsetsPart) {
	begin := time.Now()
	for {
		offsets, size, err := rs.replay(ctx, part.id)
		if err == nil {
			rs.mu.Lock()
			if rs.parts[part.id] == part {
				part.offsets, part.grown, part.snapAt, part.loaded = offsets, size, time.Now(), true
			}
			rs.mu.Unlock()
			rs.logger.Info("offsets partition loaded", "partition", part.id, "epoch", part.epoch, "groups", len(offsets), "took", time.Since(begin))
			break
		}
		if ctx.Err() != nil {
			return
		}
		rs.logger.Warn("loading an offsets partition; retrying", "partition", part.id, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	if err := rs.importLegacy(ctx, part); err != nil && ctx.Err() == nil {
		rs.logger.Error("importing kafka-groups.db offsets into the offsets topic", "partition", part.id, "err", err)
	}
}

// replay reads a partition from its start to its committed end.
func (rs *replStore) replay(ctx context.Context, p int32) (map[string]map[tpKey]*cachedOffset, int64, error) {
	start, end, err := rs.r.Log.Bounds(p)
	if err != nil {
		return nil, 0, err
	}
	out := map[string]map[tpKey]*cachedOffset{}
	var size int64
	for off := start; off < end; {
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		data, err := rs.r.Log.Read(p, off, 1<<20)
		if err != nil {
			return nil, 0, err
		}
		if len(data) == 0 {
			return nil, 0, fmt.Errorf("offsets partition %d: no batch at %d below its end %d", p, off, end)
		}
		for len(data) > 0 && off < end {
			h, err := flog.ParseBatch(data)
			if err != nil || int(h.Length) > len(data) {
				return nil, 0, fmt.Errorf("offsets partition %d at %d: %v", p, off, err)
			}
			_, recs, err := flog.DecodeRecords(data[:h.Length])
			if err != nil {
				return nil, 0, fmt.Errorf("offsets partition %d at %d: %w", p, h.BaseOffset, err)
			}
			for _, r := range recs {
				if r.Offset < off || r.Offset >= end {
					continue
				}
				size += recordSize(r.Key, r.Value)
				ref, co, err := decodeOffsetRecord(r.Key, r.Value)
				if err != nil {
					rs.g.offsetsSkipped.Add(1)
					rs.logger.Warn("offsets record skipped", "partition", p, "offset", r.Offset, "err", err)
					continue
				}
				applyOffset(out, ref, co, r.Offset, true)
			}
			off = h.LastOffset() + 1
			data = data[h.Length:]
		}
	}
	return out, size, nil
}

// recordSize is about what a record takes in the log.
func recordSize(k, v []byte) int64 { return int64(len(k) + len(v) + 16) }

// applyOffset sets (co nil: deletes) one cached offset written at log
// offset at, unless a later record already set it. replaying drops
// deletions outright (the log's order is the order of application).
func applyOffset(m map[string]map[tpKey]*cachedOffset, ref offsetRef, co *committedOffset, at int64, replaying bool) {
	k := tpKey{ref.topic, ref.partition}
	gm := m[ref.group]
	if c := gm[k]; c != nil && c.at > at {
		return
	}
	switch {
	case co != nil:
		if gm == nil {
			gm = map[tpKey]*cachedOffset{}
			m[ref.group] = gm
		}
		gm[k] = &cachedOffset{co: *co, at: at}
	case replaying:
		delete(gm, k)
		if len(gm) == 0 {
			delete(m, ref.group)
		}
	case gm != nil:
		gm[k] = &cachedOffset{at: at, deleted: true}
	}
}

// part is the loaded partition of a group's offsets.
func (rs *replStore) partLocked(group string) (*offsetsPart, error) {
	var part *offsetsPart
	if rs.n > 0 {
		part = rs.parts[OffsetsPartition(group, rs.n)]
	}
	switch {
	case part == nil && rs.leadsNow(group):
		return nil, errLoadInProgress // the watcher has not caught up yet
	case part == nil:
		return nil, errNotCoordinator
	case !part.loaded:
		return nil, errLoadInProgress
	}
	return part, nil
}

// leadsNow asks the Cluster itself whether this broker leads the group's
// offsets partition.
func (rs *replStore) leadsNow(group string) bool {
	var n int32
	for n < maxOffsetsPartitions {
		if _, ok := rs.r.Cluster.Partition(offsetsTopic, n); !ok {
			break
		}
		n++
	}
	if n == 0 {
		return false
	}
	pv, ok := rs.r.Cluster.Partition(offsetsTopic, OffsetsPartition(group, n))
	return ok && pv.Leader == rs.r.NodeID
}

// loadCode is COORDINATOR_LOAD_IN_PROGRESS while the group's partition,
// which the Cluster says this broker leads, is not loaded (yet).
func (rs *replStore) loadCode(group string) int16 {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if _, err := rs.partLocked(group); err != nil {
		return kerr.CoordinatorLoadInProgress.Code
	}
	return 0
}

func (rs *replStore) write(ctx context.Context, group string, puts map[tpKey]committedOffset, dels []tpKey) error {
	rs.mu.Lock()
	part, err := rs.partLocked(group)
	rs.mu.Unlock()
	if err != nil {
		return err
	}
	return rs.writePart(ctx, part, group, puts, dels)
}

func (rs *replStore) writePart(ctx context.Context, part *offsetsPart, group string, puts map[tpKey]committedOffset, dels []tpKey) error {
	now := rs.g.now().UnixMilli()
	refs := make([]offsetRef, 0, len(puts)+len(dels))
	recs := make([]flog.Record, 0, len(puts)+len(dels))
	var size int64
	for k, co := range puts {
		ref := offsetRef{group, k.topic, k.partition}
		r := encodeOffsetRecord(ref, &co, now)
		refs, recs, size = append(refs, ref), append(recs, r), size+recordSize(r.Key, r.Value)
	}
	for _, k := range dels {
		ref := offsetRef{group, k.topic, k.partition}
		r := encodeOffsetRecord(ref, nil, now)
		refs, recs, size = append(refs, ref), append(recs, r), size+recordSize(r.Key, nil)
	}
	if len(recs) == 0 {
		return nil
	}
	part.wmu.RLock()
	defer part.wmu.RUnlock()
	last, err := rs.r.Log.Append(ctx, part.id, recs)
	if err != nil {
		return err
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.parts[part.id] != part {
		return fmt.Errorf("%w: partition %d changed leader while committing", errNotCoordinator, part.id)
	}
	first := last - int64(len(recs)) + 1
	for i, ref := range refs {
		var co *committedOffset
		if k := (tpKey{ref.topic, ref.partition}); i < len(puts) {
			c := puts[k]
			co = &c
		}
		applyOffset(part.offsets, ref, co, first+int64(i), false)
	}
	part.grown += size
	if part.grown >= rs.r.SnapshotBytes {
		select {
		case rs.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

func (rs *replStore) committed(group string) (map[string]map[int32]committedOffset, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	part, err := rs.partLocked(group)
	if err != nil {
		return nil, err
	}
	out := map[string]map[int32]committedOffset{}
	for k, c := range part.offsets[group] {
		if c.deleted {
			continue
		}
		if out[k.topic] == nil {
			out[k.topic] = map[int32]committedOffset{}
		}
		out[k.topic][k.partition] = c.co
	}
	return out, nil
}

func (rs *replStore) groupIDs() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var out []string
	for _, part := range rs.parts {
		for group, gm := range part.offsets {
			for _, c := range gm {
				if !c.deleted {
					out = append(out, group)
					break
				}
			}
		}
	}
	return out
}

func (rs *replStore) close() error {
	close(rs.stop)
	rs.mu.Lock()
	for _, part := range rs.parts {
		part.cancel()
	}
	rs.mu.Unlock()
	rs.wg.Wait()
	return rs.legacy.Close()
}

// snapshotDue snapshots the loaded partitions that have grown by
// SnapshotBytes (and, on the timer, those that have grown at all and
// whose last snapshot is SnapshotInterval old).
func (rs *replStore) snapshotDue(timer bool) {
	var due []*offsetsPart
	rs.mu.Lock()
	for _, part := range rs.parts {
		if !part.loaded || part.grown == 0 {
			continue
		}
		if part.grown >= rs.r.SnapshotBytes || timer && time.Since(part.snapAt) >= rs.r.SnapshotInterval {
			due = append(due, part)
		}
	}
	rs.mu.Unlock()
	for _, part := range due {
		if err := rs.snapshot(part); err != nil {
			rs.logger.Warn("snapshotting an offsets partition", "partition", part.id, "err", err)
		}
	}
}

// snapshot writes the live offsets of a partition's groups as records and
// moves the partition's start to the first of them (past everything, when
// no offset is live), so a load replays the snapshot and what followed.
func (rs *replStore) snapshot(part *offsetsPart) error {
	part.wmu.Lock()
	defer part.wmu.Unlock()
	type live struct {
		ref offsetRef
		co  committedOffset
	}
	var all []live
	rs.mu.Lock()
	if rs.parts[part.id] != part {
		rs.mu.Unlock()
		return nil
	}
	for group, gm := range part.offsets {
		for k, c := range gm {
			if c.deleted {
				delete(gm, k)
				continue
			}
			all = append(all, live{offsetRef{group, k.topic, k.partition}, c.co})
		}
		if len(gm) == 0 {
			delete(part.offsets, group)
		}
	}
	rs.mu.Unlock()
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i].ref, all[j].ref
		if a.group != b.group {
			return a.group < b.group
		}
		if a.topic != b.topic {
			return a.topic < b.topic
		}
		return a.partition < b.partition
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var from int64 = -1
	ats := make([]int64, len(all))
	now := rs.g.now().UnixMilli()
	for i := 0; i < len(all); i += snapshotChunk {
		chunk := all[i:min(i+snapshotChunk, len(all))]
		recs := make([]flog.Record, len(chunk))
		for j, l := range chunk {
			co := l.co
			recs[j] = encodeOffsetRecord(l.ref, &co, now)
		}
		last, err := rs.r.Log.Append(ctx, part.id, recs)
		if err != nil {
			return err // the start stays: a load replays the older records too
		}
		first := last - int64(len(recs)) + 1
		if from < 0 {
			from = first
		}
		for j := range chunk {
			ats[i+j] = first + int64(j)
		}
	}
	if from < 0 { // nothing live: everything written so far is obsolete
		_, end, err := rs.r.Log.Bounds(part.id)
		if err != nil {
			return err
		}
		from = end
	}
	rs.mu.Lock()
	if rs.parts[part.id] != part {
		rs.mu.Unlock()
		return nil
	}
	for i, l := range all {
		if c := part.offsets[l.ref.group][tpKey{l.ref.topic, l.ref.partition}]; c != nil {
			c.at = ats[i]
		}
	}
	part.grown, part.snapAt = 0, time.Now()
	rs.mu.Unlock()
	if err := rs.r.Log.Trim(ctx, part.id, from); err != nil {
		return fmt.Errorf("advancing the start to %d: %w", from, err)
	}
	rs.g.offsetsSnapshots.Add(1)
	rs.logger.Debug("offsets partition snapshotted", "partition", part.id, "offsets", len(all), "start", from)
	return nil
}

// importLegacy writes kafka-groups.db's offsets of the partition's groups
// into it, once (marked in kafka-groups.db), skipping any the partition
// already has: a node alone that became node 1 of a cluster keeps its
// groups' positions.
func (rs *replStore) importLegacy(ctx context.Context, part *offsetsPart) error {
	key := []byte(fmt.Sprintf("%d", part.id))
	done := false
	rs.legacy.View(func(tx *bolt.Tx) error {
		done = tx.Bucket(importedBucket).Get(key) != nil
		return nil
	})
	if done {
		return nil
	}
	rs.mu.Lock()
	n := rs.n
	rs.mu.Unlock()
	imported := 0
	for _, group := range boltGroupIDs(rs.legacy) {
		if OffsetsPartition(group, n) != part.id {
			continue
		}
		old, err := boltCommitted(rs.legacy, group)
		if err != nil {
			return err
		}
		puts := map[tpKey]committedOffset{}
		rs.mu.Lock()
		have := part.offsets[group]
		for topic, ps := range old {
			for p, co := range ps {
				if have[tpKey{topic, p}] == nil {
					puts[tpKey{topic, p}] = co
				}
			}
		}
		rs.mu.Unlock()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = rs.writePart(wctx, part, group, puts, nil)
		cancel()
		if err != nil {
			return err
		}
		imported += len(puts)
	}
	if imported > 0 {
		rs.logger.Info("kafka-groups.db offsets imported into the offsets topic", "partition", part.id, "offsets", imported)
	}
	return rs.legacy.Update(func(tx *bolt.Tx) error { return tx.Bucket(importedBucket).Put(key, []byte{1}) })
}

// dropGroups forgets the groups (members and all) of partitions this
// broker no longer coordinates: their waiting joins and syncs are answered
// NOT_COORDINATOR, and their clients find the new coordinator.
func (g *Groups) dropGroups(drop func(group string) bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for name, gr := range g.groups {
		if !drop(name) {
			continue
		}
		if gr.rebalance != nil {
			gr.rebalance.Stop()
		}
		for _, m := range gr.members {
			if m.expiry != nil {
				m.expiry.Stop()
			}
			g.failWaiters(gr, m, kerr.NotCoordinator.Code)
		}
		gr.initialJoin = false
		gr.delaySeq++
		delete(g.groups, name)
	}
}

// loadCode is 0 when this broker may serve the group now (the Cluster
// already says it coordinates it): COORDINATOR_LOAD_IN_PROGRESS while its
// offsets partition loads.
func (g *Groups) loadCode(group string) int16 {
	if rs, ok := g.store.(*replStore); ok {
		return rs.loadCode(group)
	}
	return 0
}

// loadedPartitions is how many offsets partitions this broker has loaded.
func (rs *replStore) loadedPartitions() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	n := 0
	for _, part := range rs.parts {
		if part.loaded {
			n++
		}
	}
	return n
}

func (rs *replStore) all() ([]CommittedOffset, error) {
	rs.mu.Lock()
	var out []CommittedOffset
	for _, part := range rs.parts {
		for group, gm := range part.offsets {
			for k, c := range gm {
				if !c.deleted {
					out = append(out, CommittedOffset{Group: group, Topic: k.topic, Partition: k.partition, Offset: c.co.Offset})
				}
			}
		}
	}
	rs.mu.Unlock()
	sortCommitted(out)
	return out, nil
}

// storeOf is where the coordinator keeps offsets (nil for no coordinator).
func (g *Groups) storeOf() offsetStore {
	if g == nil {
		return nil
	}
	return g.store
}

// ImportPending says whether kafka-groups.db holds offsets that no offsets
// partition has imported yet: the node (edge) then creates the offsets
// topic leading every partition, so they are all imported here.
func (g *Groups) ImportPending() bool {
	if len(boltGroupIDs(g.db)) == 0 {
		return false
	}
	pending := true
	g.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(importedBucket); b != nil {
			k, _ := b.Cursor().First()
			pending = k == nil
		}
		return nil
	})
	return pending
}
