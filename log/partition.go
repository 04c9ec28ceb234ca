package log

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Partition is one append-only, segmented log of RecordBatches. Appends are
// serialised by the partition's lock; reads run concurrently with appends
// and with each other. Appends to different partitions proceed in parallel.
type Partition struct {
	topic  string
	id     int32
	dir    string
	fs     FS
	logger *slog.Logger
	cfg    *atomic.Pointer[TopicConfig] // the topic's, altered live
	now    func() time.Time

	// mu guards the segment list, the active segment's mutable fields and
	// the fields below it. Lock order: Log.mu before smu before
	// Partition.mu before segment.loadMu; dmu is a leaf.
	mu        sync.RWMutex
	segs      []*segment // by base offset; the last is the active segment
	active    *segment
	unsynced  []*segment    // sealed segments with bytes not yet fsynced
	waitCh    chan struct{} // closed by the next append; nil if nobody waits
	closed    bool
	failed    error         // a failed write or fsync: the partition accepts no more appends
	producers producerState // idempotent producers' recent batches (producers.go)
	// overBudget is the log's flag (nil without a disk budget): set, appends
	// are refused with ErrDiskBudget.
	overBudget *atomic.Bool
	// budgetWake asks the log for a budget pass (nil without a budget);
	// sinceWake counts the bytes appended since the last ask (p.mu).
	budgetWake chan struct{}
	sinceWake  int64
	// onSync is told each group commit's fsync time (nil: nobody asks).
	onSync func(time.Duration)
	// leaderEpoch is stamped into every batch Append writes when >= 0
	// (SetLeaderEpoch); epochs is the leader-epoch cache (epoch.go).
	leaderEpoch int32
	epochs      epochCache
	epochsReady bool // epochs reflects the log (else rebuilt when first needed)
	// appliesRetention: in a replicated log, this replica leads and so
	// applies retention itself (SetAppliesRetention); a follower's copy
	// is cut where its leader's is.
	appliesRetention atomic.Bool

	// The high watermark (highwatermark.go): hw in memory, changed under
	// hwmu (a leaf; TruncateTo holds it, under mu, throughout); hwSaved as last
	// checkpointed, under ckmu (a leaf).
	hw      atomic.Int64
	hwmu    sync.Mutex
	ckmu    sync.Mutex
	hwSaved int64

	// recStart is the log start DeleteRecords set (deleterecords.go),
	// under mu; delmu serialises DeleteRecords calls.
	recStart int64
	delmu    sync.Mutex

	// Lock-free views for hot readers.
	startOff  atomic.Int64
	endOff    atomic.Int64
	durable   atomic.Int64
	totalSize atomic.Int64
	// damage is the lowest corrupt batch found (damage.go), nil if none.
	damage atomic.Pointer[Damage]

	dmu       sync.Mutex
	durableCh chan struct{} // closed when durable advances or syncing fails
	syncErr   error

	// flushReq says unsynced data was appended: the flusher syncs it
	// within flush.ms (interval) or at once (always). flushNow says
	// somebody waits for durability: the flusher starts an fsync at once,
	// or right after the running one. smu serialises fsync passes
	// (syncAll); syncingTo is the end offset the running pass covers.
	flushReq  chan struct{}
	flushNow  chan struct{}
	smu       sync.Mutex
	syncingTo atomic.Int64
	stop      chan struct{}
	done      chan struct{}
}

// Topic returns the partition's topic name.
func (p *Partition) Topic() string { return p.topic }

// ID returns the partition number.
func (p *Partition) ID() int32 { return p.id }

// Dir returns the partition's directory.
func (p *Partition) Dir() string { return p.dir }

// StartOffset is the first offset still held (Kafka's log start offset).
func (p *Partition) StartOffset() int64 { return p.startOff.Load() }

// EndOffset is the offset the next appended record will get: the high
// watermark of a single node. Every offset below it is readable.
func (p *Partition) EndOffset() int64 { return p.endOff.Load() }

// DurableOffset is the end of the durable prefix: every offset below it is
// durable under the topic's flush policy (for flush.policy=never, the end
// offset).
func (p *Partition) DurableOffset() int64 {
	if p.cfg.Load().Flush == FlushNever {
		return p.endOff.Load()
	}
	return p.durable.Load()
}

// Size is the total size of the partition's segment files in bytes.
func (p *Partition) Size() int64 { return p.totalSize.Load() }

func openPartition(fsys FS, dir, topic string, id int32, cfg *atomic.Pointer[TopicConfig], now func() time.Time, logger *slog.Logger) (*Partition, error) {
	p := &Partition{
		topic: topic, id: id, dir: dir, fs: fsys, cfg: cfg, now: now,
		logger:      logger.With("topic", topic, "partition", id),
		leaderEpoch: -1,
		durableCh:   make(chan struct{}),
		flushReq:    make(chan struct{}, 1),
		flushNow:    make(chan struct{}, 1),
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
	}
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	entries, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	type segFile struct {
		base, size int64
		info       fs.FileInfo
	}
	var found []segFile
	have := map[int64]bool{}
	for _, e := range entries {
		name := e.Name()
		if base, ok := parseSegmentName(name); ok {
			info, err := e.Info()
			if err != nil {
				return nil, err
			}
			found = append(found, segFile{base, info.Size(), info})
			have[base] = true
		}
	}
	for _, e := range entries {
		name := e.Name()
		stem, ext, _ := strings.Cut(name, ".")
		switch {
		case ext == "log":
		case (ext == "index" || ext == "timeindex") && len(stem) == 20:
			if base, ok := parseSegmentName(stem + ".log"); ok && !have[base] {
				// Left by a deletion interrupted half-way: the log file
				// goes first, so its indexes are orphans.
				p.logger.Info("removing orphan index file", "file", name)
				if err := fsys.Remove(filepath.Join(dir, name)); err != nil {
					return nil, err
				}
			}
		case strings.HasSuffix(name, ".tmp"):
			fsys.Remove(filepath.Join(dir, name))
		case ext == "snapshot":
		case name == epochFileName, name == hwFileName, name == logStartFileName:
		default:
			p.logger.Warn("ignoring unexpected file in partition directory", "file", name)
		}
	}
	sort.Slice(found, func(i, j int) bool { return found[i].base < found[j].base })
	nowMs := now().UnixMilli()
	c := cfg.Load()
	if len(found) == 0 {
		s, err := createSegment(fsys, dir, 0, nowMs)
		if err != nil {
			return nil, err
		}
		p.segs = []*segment{s}
		if err := fsys.SyncDir(dir); err != nil {
			s.closeFiles()
			return nil, err
		}
	} else {
		// An empty segment before the last is what a reset (Clear, a
		// copy's restart) interrupted between creating the new segment and
		// removing the old ones leaves: nothing is lost with it.
		for len(found) > 1 && found[0].size == 0 {
			name := segmentPath(dir, found[0].base)
			p.logger.Warn("removing an empty segment a reset left behind", "segment", name+".log")
			for _, ext := range []string{".log", ".index", ".timeindex"} {
				if err := fsys.Remove(name + ext); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return nil, err
				}
			}
			found = found[1:]
		}
		for _, f := range found[:len(found)-1] {
			s := newSegmentStub(fsys, dir, f.base, f.size)
			s.sealed, s.synced = true, true
			s.writtenMs.Store(modTimeMs(f.info, nowMs))
			p.segs = append(p.segs, s)
		}
		last := found[len(found)-1]
		s, err := recoverActive(fsys, dir, last.base, nowMs, c.IndexIntervalBytes, p.logger)
		if err != nil {
			return nil, fmt.Errorf("recovering %s: %w", segmentPath(dir, last.base)+".log", err)
		}
		p.segs = append(p.segs, s)
	}
	p.active = p.segs[len(p.segs)-1]
	var total int64
	for _, s := range p.segs {
		total += s.size
	}
	p.totalSize.Store(total)
	p.startOff.Store(p.segs[0].base)
	p.endOff.Store(p.active.next)
	p.durable.Store(p.active.next)
	if err := p.loadLogStart(); err != nil {
		for _, s := range p.segs {
			s.release()
		}
		return nil, err
	}
	p.checkActive()
	if err := p.loadProducers(); err != nil {
		for _, s := range p.segs {
			s.release()
		}
		return nil, fmt.Errorf("rebuilding producer state: %w", err)
	}
	if err := p.loadEpochs(); err != nil {
		for _, s := range p.segs {
			s.release()
		}
		return nil, fmt.Errorf("loading leader epochs: %w", err)
	}
	if err := p.loadHighWatermark(); err != nil {
		for _, s := range p.segs {
			s.release()
		}
		return nil, err
	}
	go p.flushLoop()
	return p, nil
}

// loadProducers restores idempotent-producer state: the newest snapshot at
// or below the end offset, then every batch after it.
func (p *Partition) loadProducers() error {
	end := p.active.next
	ps, from, ok, err := loadSnapshot(p.fs, p.dir, end)
	if err != nil {
		return err
	}
	if !ok || from < p.segs[0].base {
		ps, from = producerState{}, p.segs[0].base
	}
	p.producers = ps
	if from == end {
		return nil
	}
	p.logger.Info("replaying batches to rebuild producer state", "from_offset", from, "end_offset", end)
	nowMs := p.now().UnixMilli()
	for i, seg := range p.segs {
		segEnd := seg.next
		if i+1 < len(p.segs) {
			segEnd = p.segs[i+1].base
		}
		if segEnd <= from {
			continue
		}
		if seg != p.active {
			if err := seg.load(segEnd, p.cfg.Load().IndexIntervalBytes, p.logger); err != nil {
				return err
			}
		}
		limit := seg.size
		if seg.corruptAt >= 0 {
			limit = seg.corruptAt
		}
		sc := newScanner(seg.log, 0, limit)
		for {
			_, h, _, ok := sc.next()
			if !ok {
				break
			}
			if h.BaseOffset >= from {
				p.producers.record(h, nowMs)
			}
		}
	}
	return nil
}

// Append validates one RecordBatch (framing, CRC-32C, record count; see
// ValidateBatch), assigns it the next offsets by rewriting its base offset
// in place, and writes it to the active segment, rolling it first when it is
// due. When Append returns the records are readable and survive a crash of
// the process; WaitDurable waits for the topic's flush policy. batch must be
// exactly one batch; the caller keeps ownership of its bytes.
func (p *Partition) Append(batch []byte) (AppendResult, error) {
	h, maxTs, cfg, err := p.checkBatch(batch)
	if err != nil {
		return AppendResult{}, err
	}
	batch, h, maxTs, appendTime, err := p.prepareAppend(batch, h, maxTs, cfg) // appendtime.go
	if err != nil {
		return AppendResult{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.writableLocked(); err != nil {
		return AppendResult{}, err
	}
	if h.ProducerID >= 0 {
		if dup, err := p.producers.check(h); err != nil {
			return AppendResult{BaseOffset: dup.BaseOffset, LastOffset: dup.LastOffset, LogStartOffset: p.startOff.Load()}, err
		}
	}
	if p.leaderEpoch >= 0 {
		// A leader stamps its epoch (outside the CRC, as the base
		// offset); a node alone keeps the client's bytes.
		if err := p.noteEpochLocked(p.leaderEpoch, p.active.next); err != nil {
			return AppendResult{}, err
		}
		binary.BigEndian.PutUint32(batch[offLeaderEpoch:], uint32(p.leaderEpoch))
		h.LeaderEpoch = p.leaderEpoch
	}
	res, err := p.writeLocked(batch, h, maxTs, cfg)
	if appendTime >= 0 {
		res.LogAppendTime = appendTime
	}
	return res, err
}

// checkBatch validates a batch for appending: its size under the topic's
// max.message.bytes, and its framing, CRC and records (ValidateBatchCapped
// with the topic's max.inflated.bytes). It returns the largest timestamp
// the records carry, -1 if none does.
func (p *Partition) checkBatch(batch []byte) (BatchHeader, int64, *TopicConfig, error) {
	cfg := p.cfg.Load()
	if len(batch) > int(cfg.MaxMessageBytes) {
		return BatchHeader{}, noTimestamp, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBatchTooLarge, len(batch), cfg.MaxMessageBytes)
	}
	times := newBatchTimes()
	h, err := validateBatch(batch, cfg.MaxInflatedBytes, &times)
	return h, times.max, cfg, err
}

// writableLocked says why the partition takes no appends, if it does not.
// p.mu is held.
func (p *Partition) writableLocked() error {
	if p.closed {
		return ErrClosed
	}
	if p.failed != nil {
		return p.failed
	}
	if p.overBudget != nil && p.overBudget.Load() {
		return ErrDiskBudget
	}
	return nil
}

// writeLocked writes a validated batch, whose records' largest timestamp
// is maxTs (-1: none), at the partition's end offset, rolling the active
// segment first when it is due. p.mu is held.
func (p *Partition) writeLocked(batch []byte, h BatchHeader, maxTs int64, cfg *TopicConfig) (AppendResult, error) {
	nowMs := p.now().UnixMilli()
	a := p.active
	if nowMs < a.rollAtMs {
		// The clock went back: the segment's age counts from now, so it
		// rolls one segment.ms from here, not once the clock is back
		// where it was.
		a.rollAtMs = nowMs
	}
	if a.size > 0 && (a.size+int64(len(batch)) > cfg.SegmentBytes ||
		nowMs-a.rollAtMs >= cfg.SegmentAge.Milliseconds() ||
		a.next-a.base+int64(h.LastOffsetDelta) >= math.MaxUint32) {
		if err := p.rollLocked(nowMs); err != nil {
			return AppendResult{}, err
		}
		a = p.active
	}
	if a.size == 0 {
		a.rollAtMs = nowMs
	}
	base, pos := a.next, a.size
	binary.BigEndian.PutUint64(batch[offBaseOffset:], uint64(base))
	h.BaseOffset = base
	if _, err := a.log.WriteAt(batch, pos); err != nil {
		return AppendResult{}, p.undoWrite(a, pos, fmt.Errorf("appending to %s: %w", a.log.Name(), err))
	}
	if err := a.noteBatch(h, maxTs, pos, false, cfg.IndexIntervalBytes); err != nil {
		return AppendResult{}, p.undoWrite(a, pos, fmt.Errorf("indexing %s: %w", a.log.Name(), err))
	}
	a.writtenMs.Store(nowMs)
	a.synced = false
	p.producers.record(h, nowMs)
	p.totalSize.Add(int64(len(batch)))
	p.endOff.Store(a.next)
	if p.budgetWake != nil {
		if p.sinceWake += int64(len(batch)); p.sinceWake >= budgetWakeBytes {
			p.sinceWake = 0
			select {
			case p.budgetWake <- struct{}{}:
			default: // a pass is already due
			}
		}
	}
	if p.waitCh != nil {
		close(p.waitCh)
		p.waitCh = nil
	}
	if cfg.Flush != FlushNever {
		p.requestFlush()
	}
	return AppendResult{
		BaseOffset: base, LastOffset: h.LastOffset(), LogStartOffset: p.startOff.Load(),
		Position: pos, Segment: a.base,
	}, nil
}

// undoWrite cuts a failed append (a full disk, typically) back off the
// segment, so the log holds only whole batches. If even that fails the
// partition refuses further appends until it is reopened, whose recovery
// trims the tail.
func (p *Partition) undoWrite(a *segment, pos int64, cause error) error {
	if terr := a.log.Truncate(pos); terr != nil {
		p.failed = fmt.Errorf("partition %s-%d disabled after a failed write (%v) could not be undone: %w", p.topic, p.id, cause, terr)
		p.logger.Error("partition disabled", "err", p.failed)
		p.failDurability(p.failed)
		return p.failed
	}
	// An index entry that was written for this batch is dropped too.
	n := len(a.idx.entries)
	for n > 0 && int64(a.idx.entries[n-1].pos) >= pos {
		n--
	}
	if terr := a.idx.truncate(n); terr != nil {
		p.logger.Warn("could not trim index after a failed append; recovery will rebuild it", "err", terr)
	}
	return cause
}

// rollLocked seals the active segment and starts a new one at the end offset.
func (p *Partition) rollLocked(nowMs int64) error {
	old := p.active
	if err := old.seal(); err != nil {
		return fmt.Errorf("sealing %s: %w", old.path, err)
	}
	// The sealed segment's data is made durable before its successor can
	// be: recovery scans only the active segment, so after a power cut a
	// sealed segment must never have lost a tail that a durable successor
	// continues (offsets would not run on, and the range would read as
	// corrupt). Under the interval policy this syncs at most flush.ms of
	// data, once per segment. Under never, durability is the page cache's
	// business and a power cut may leave a sealed segment torn (ferry log
	// verify reports it).
	if p.cfg.Load().Flush != FlushNever {
		if err := old.log.Sync(); err != nil {
			err = fmt.Errorf("fsync of partition %s-%d's sealed segment %d failed, partition disabled: %w", p.topic, p.id, old.base, err)
			p.logger.Error("fsync failed", "err", err)
			p.failed = err
			p.failDurability(err)
			return err
		}
	}
	s, err := createSegment(p.fs, p.dir, old.next, nowMs)
	if err != nil {
		return err
	}
	p.segs = append(p.segs, s)
	p.active = s
	p.unsynced = append(p.unsynced, old)
	if err := p.producers.writeSnapshot(p.fs, p.dir, s.base, nowMs); err != nil {
		p.logger.Warn("writing producer-state snapshot", "offset", s.base, "err", err)
	}
	if err := p.fs.SyncDir(p.dir); err != nil {
		p.logger.Warn("syncing directory after roll", "err", err)
	}
	p.requestFlush()
	p.logger.Debug("rolled segment", "sealed_base", old.base, "size", old.size, "new_base", s.base)
	return nil
}

// Roll seals the active segment now, if it holds anything.
func (p *Partition) Roll() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if p.active.size == 0 {
		return nil
	}
	return p.rollLocked(p.now().UnixMilli())
}

// requestFlush tells the flusher that unsynced data was appended.
func (p *Partition) requestFlush() {
	select {
	case p.flushReq <- struct{}{}:
	default:
	}
}

// requestFlushNow asks the flusher for an fsync now: somebody waits.
func (p *Partition) requestFlushNow() {
	select {
	case p.flushNow <- struct{}{}:
	default:
	}
}

// WaitDurable blocks until every offset up to and including offset is
// durable under the topic's flush policy, ctx ends, or syncing fails.
// Waiting is what starts an fsync: if none is running one starts at once,
// else the next starts as soon as the running one ends, shared by every
// waiter that arrived meanwhile (group commit on demand).
func (p *Partition) WaitDurable(ctx context.Context, offset int64) error {
	if p.cfg.Load().Flush == FlushNever {
		if offset < p.endOff.Load() {
			return nil
		}
	}
	for {
		if p.durable.Load() > offset {
			return nil
		}
		p.dmu.Lock()
		ch, serr := p.durableCh, p.syncErr
		p.dmu.Unlock()
		if serr != nil {
			return serr
		}
		if p.durable.Load() > offset {
			return nil
		}
		p.syncSoon(offset)
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// SyncSoon asks for every offset up to and including offset to be made
// durable, without waiting for it: unless it is durable already or the
// running fsync covers it, the flusher starts an fsync at once, or right
// after the running one, as for a waiter. A caller that waits on several
// partitions calls SyncSoon on each of them first, then WaitDurable on
// each, so that their fsyncs run together instead of one after another.
func (p *Partition) SyncSoon(offset int64) {
	if p.cfg.Load().Flush == FlushNever || p.durable.Load() > offset {
		return
	}
	p.syncSoon(offset)
}

// syncSoon asks the flusher for the next fsync unless the running one, if
// any, covers offset (one that does will publish it).
func (p *Partition) syncSoon(offset int64) {
	if p.syncingTo.Load() <= offset {
		p.requestFlushNow()
	}
}

// flushLoop is the partition's group commit. A waiter (WaitDurable) gets an
// fsync at once, or right after the running one; data nobody waits for is
// fsynced at most flush.ms after the last pass began under the interval
// policy, and at once under always. It owns no lock while syncing, so
// appends continue during an fsync and share the next one.
func (p *Partition) flushLoop() {
	defer close(p.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	last := time.Time{}
	for {
		select {
		case <-p.stop:
			return
		case <-p.flushNow:
		case <-p.flushReq:
			if cfg := p.cfg.Load(); cfg.Flush == FlushInterval {
				if wait := cfg.FlushEvery - time.Since(last); wait > 0 {
					timer.Reset(wait)
					select {
					case <-timer.C:
					case <-p.flushNow:
						timer.Stop()
					case <-p.stop:
						timer.Stop()
						return
					}
				}
			}
		}
		last = time.Now()
		p.syncAll()
	}
}

// syncAll fsyncs sealed segments not yet synced, then the active one, and
// publishes the new durable offset.
func (p *Partition) syncAll() error {
	// One pass at a time: a pass publishes the durable offset only after
	// the sealed segments taken by an earlier pass are synced too.
	p.smu.Lock()
	defer p.smu.Unlock()
	p.mu.Lock()
	if p.segs == nil {
		p.mu.Unlock()
		return ErrClosed
	}
	if p.failed != nil {
		// Never publish durability after a failure: what the failed fsync
		// covered is unknown.
		err := p.failed
		p.mu.Unlock()
		return err
	}
	act := p.active
	end := act.next
	syncActive := !act.synced
	act.synced = true
	sealed := p.unsynced
	p.unsynced = nil
	for _, s := range sealed {
		s.acquire()
	}
	act.acquire()
	p.syncingTo.Store(end)
	p.mu.Unlock()

	var err error
	began := time.Now()
	for _, s := range sealed {
		if err == nil {
			err = s.log.Sync()
		}
		if err == nil {
			err = s.idx.sync()
		}
		if cerr := s.idx.close(); err == nil {
			err = cerr
		}
		s.release()
	}
	if err == nil && syncActive {
		err = act.log.Sync()
	}
	act.release()
	if p.onSync != nil && err == nil && (syncActive || len(sealed) > 0) {
		p.onSync(time.Since(began))
	}
	if err != nil {
		// After a failed fsync the page cache's state is unknown: stop
		// rather than acknowledge anything more.
		err = fmt.Errorf("fsync of partition %s-%d failed, partition disabled: %w", p.topic, p.id, err)
		p.logger.Error("fsync failed", "err", err)
		p.mu.Lock()
		p.failed = err
		p.mu.Unlock()
		p.failDurability(err)
		return err
	}
	if end > p.durable.Load() {
		p.durable.Store(end)
		p.dmu.Lock()
		close(p.durableCh)
		p.durableCh = make(chan struct{})
		p.dmu.Unlock()
	}
	return nil
}

// failDurability tells every WaitDurable, now and later, that nothing more
// will become durable: err is why (a failed fsync, or a failed write that
// could not be undone). A waiter must never be left waiting on a partition
// that has stopped syncing.
func (p *Partition) failDurability(err error) {
	p.dmu.Lock()
	if p.syncErr == nil {
		p.syncErr = err
	}
	close(p.durableCh)
	p.durableCh = make(chan struct{})
	p.dmu.Unlock()
}

// DurableChanged returns a channel that is closed when the durable offset
// next advances (or syncing fails, or the partition closes). Unlike
// WaitDurable it asks for no fsync: a replica manager watches the leader's
// durable end with it without changing when the flush policy syncs.
func (p *Partition) DurableChanged() <-chan struct{} {
	p.dmu.Lock()
	defer p.dmu.Unlock()
	return p.durableCh
}

// Sync fsyncs everything appended so far, whatever the flush policy.
func (p *Partition) Sync() error {
	p.mu.RLock()
	closed := p.closed
	p.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	return p.syncAll()
}

// Wait returns a channel that is closed when the end offset or the high
// watermark next advances (or the partition closes). It is how long-poll
// fetches wait for data.
func (p *Partition) Wait() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	if p.waitCh == nil {
		p.waitCh = make(chan struct{})
	}
	return p.waitCh
}

// close stops the flusher, fsyncs everything and closes the files.
func (p *Partition) close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true // refuses appends and reads from here on
	p.mu.Unlock()
	close(p.stop)
	<-p.done
	err := p.syncAll()
	p.mu.Lock()
	if err == nil {
		if herr := p.CheckpointHighWatermark(); herr != nil {
			p.logger.Warn("checkpointing high watermark", "err", herr)
		}
		// A snapshot at the end offset spares the next open any replay.
		if serr := p.producers.writeSnapshot(p.fs, p.dir, p.active.next, p.now().UnixMilli()); serr != nil {
			p.logger.Warn("writing producer-state snapshot", "err", serr)
		}
	}
	if p.waitCh != nil {
		close(p.waitCh)
		p.waitCh = nil
	}
	for _, s := range p.segs {
		s.release()
	}
	p.segs, p.unsynced = nil, nil
	p.mu.Unlock()
	p.dmu.Lock()
	if p.syncErr == nil {
		p.syncErr = ErrClosed
	}
	close(p.durableCh)
	p.durableCh = make(chan struct{})
	p.dmu.Unlock()
	if errors.Is(err, ErrClosed) {
		err = nil
	}
	return err
}

// Segments describes the partition's segments, oldest first.
func (p *Partition) Segments() []SegmentInfo {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]SegmentInfo, len(p.segs))
	for i, s := range p.segs {
		next := int64(-1)
		if i+1 < len(p.segs) {
			next = p.segs[i+1].base
		} else {
			next = s.next
		}
		out[i] = SegmentInfo{BaseOffset: s.base, NextOffset: next, Size: s.size, Path: s.path + ".log", Sealed: s != p.active}
	}
	return out
}

// segmentFor returns, with a reference held, the segment holding offset,
// its readable size and index entries, and the base of the segment after it
// (-1 for the active one). The caller must release the segment.
func (p *Partition) segmentFor(offset int64) (seg *segment, limit int64, entries []indexEntry, nextBase int64, start, end int64, err error) {
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return nil, 0, nil, 0, 0, 0, ErrClosed
	}
	start, end = p.logStartLocked(), p.active.next
	if offset < start || offset >= end {
		p.mu.RUnlock()
		return nil, 0, nil, 0, start, end, nil
	}
	i := sort.Search(len(p.segs), func(i int) bool { return p.segs[i].base > offset }) - 1
	seg = p.segs[i]
	nextBase = -1
	if seg == p.active {
		limit, entries = seg.size, seg.idx.entries
	} else {
		nextBase = p.segs[i+1].base
	}
	seg.acquire()
	p.mu.RUnlock()
	if nextBase >= 0 {
		if err := seg.load(nextBase, p.cfg.Load().IndexIntervalBytes, p.logger); err != nil {
			seg.release()
			return nil, 0, nil, 0, start, end, err
		}
		limit, entries = seg.size, seg.idx.entries
		if seg.corruptAt >= 0 {
			limit = seg.corruptAt
		}
	}
	return seg, limit, entries, nextBase, start, end, nil
}

// Read returns whole batches starting with the one that holds offset, up to
// maxBytes in total, except that the first batch is returned whole even if
// it is larger (so a consumer always progresses, as in Kafka). The bytes are
// appended to dst[:0]. Reading at the end offset returns no data; below the
// start offset or past the end it returns ErrOffsetOutOfRange. Every batch
// returned has had its CRC checked; a damaged one yields ErrCorruptSegment
// when it would come first, and ends the read otherwise.
func (p *Partition) Read(offset int64, maxBytes int, dst []byte) (ReadResult, error) {
	seg, limit, entries, _, start, end, err := p.segmentFor(offset)
	res := ReadResult{Data: dst[:0], StartOffset: start, EndOffset: end}
	if err != nil {
		return res, err
	}
	if seg == nil {
		if offset == end {
			return res, nil
		}
		return res, fmt.Errorf("%w: offset %d, partition %s-%d holds [%d, %d)", ErrOffsetOutOfRange, offset, p.topic, p.id, start, end)
	}
	defer seg.release()
	pos, h, err := seg.findBatch(entries, offset, limit)
	if err == io.EOF {
		cause := seg.corrupt
		if cause == nil {
			cause = errors.New("offset not found in its segment")
		}
		p.noteReadDamage(seg, entries, cause)
		return res, seg.corruptError(pos, cause)
	}
	if err != nil {
		return res, err
	}
	n := int64(maxBytes)
	if rest := limit - pos; rest < n {
		n = rest
	}
	if n < int64(h.Length) {
		n = int64(h.Length)
	}
	if pos+n > limit {
		return res, seg.corruptError(pos, fmt.Errorf("batch of %d bytes runs past the readable end %d", h.Length, limit))
	}
	buf := dst[:0]
	if int64(cap(buf)) < n {
		buf = make([]byte, n)
	} else {
		buf = buf[:n]
	}
	if m, err := seg.log.ReadAt(buf, pos); err != nil && !errors.Is(err, io.EOF) {
		return res, fmt.Errorf("reading %s: %w", seg.log.Name(), err)
	} else if m < len(buf) {
		buf = buf[:m] // cut meanwhile (TruncateTo): only what was read counts
	}
	// Keep whole, intact batches with dense offsets only.
	keep, expect := 0, h.BaseOffset
	for keep+batchHeaderSize <= len(buf) {
		bh, err := parseHeader(buf[keep:])
		if err == nil && keep+int(bh.Length) > len(buf) {
			break
		}
		if err == nil && bh.BaseOffset != expect {
			err = fmt.Errorf("batch has base offset %d, expected %d", bh.BaseOffset, expect)
		}
		if err == nil {
			err = checkCRC(buf[keep:], bh)
		}
		if err != nil {
			if keep == 0 {
				// Logged once per damaged batch, not at every
				// fetch a stalled consumer repeats.
				if p.noteDamage(seg, pos, expect, err) {
					p.logger.Error("corrupt batch on read", "segment", seg.path+".log", "position", pos, "offset", expect, "err", err)
				}
				return res, seg.corruptError(pos, err)
			}
			break
		}
		keep += int(bh.Length)
		expect = bh.LastOffset() + 1
	}
	res.Data = buf[:keep]
	return res, nil
}

// OffsetForTime returns the offset and timestamp of the first record whose
// timestamp is at or after ts, or (-1, -1) if there is none (Kafka's
// ListOffsets by timestamp). Records that carry no timestamp (-1) are never
// found; a negative ts asks for the first record that carries one.
func (p *Partition) OffsetForTime(ts int64) (int64, int64, error) {
	ts = max(ts, 0)
	p.mu.RLock()
	bases := make([]int64, len(p.segs))
	for i, s := range p.segs {
		bases[i] = s.base
	}
	p.mu.RUnlock()
	for i, base := range bases {
		// Records below a log start inside a segment (DeleteRecords)
		// are never the answer.
		start := p.StartOffset()
		if i+1 < len(bases) && bases[i+1] <= start {
			continue
		}
		seg, limit, entries, _, _, _, err := p.segmentFor(max(base, start))
		if err != nil {
			return -1, -1, err
		}
		if seg == nil {
			continue // deleted meanwhile, or empty active segment
		}
		off, t, err := p.searchTime(seg, limit, entries, ts, start)
		seg.release()
		if err != nil || off >= 0 {
			return off, t, err
		}
	}
	return -1, -1, nil
}

func (p *Partition) searchTime(seg *segment, limit int64, entries []indexEntry, ts, start int64) (int64, int64, error) {
	x := index{entries: entries}
	from := int64(0)
	if e, ok := x.lookupTime(ts); ok {
		from = int64(e.pos)
	}
	sc := newScanner(seg.log, from, limit)
	for {
		_, h, b, ok := sc.next()
		if !ok {
			if sc.err != nil {
				return -1, -1, seg.corruptError(sc.pos, sc.err)
			}
			return -1, -1, nil
		}
		// The header's MaxTimestamp may disagree with the records
		// (librdkafka's 0 for records without one): ask the records.
		times, err := timesOf(b, h)
		if err != nil {
			return -1, -1, seg.corruptError(sc.pos, err)
		}
		if times.max < ts {
			continue
		}
		_, recs, err := DecodeRecords(b)
		if err != nil {
			return -1, -1, seg.corruptError(sc.pos, err)
		}
		for _, r := range recs {
			if r.Timestamp >= ts && r.Offset >= start {
				return r.Offset, r.Timestamp, nil
			}
		}
	}
}
