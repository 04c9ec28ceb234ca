package log

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Log is a set of topics, each a fixed number of partitions, kept in one
// directory. It is safe for concurrent use.
type Log struct {
	// cleanShutdown: the previous run ended with Close (cleanshutdown.go).
	cleanShutdown, markClean bool
	replicated               bool // Options.Replicated
	dir                      string
	fs                       FS
	logger                   *slog.Logger
	now                      func() time.Time
	db                       *bolt.DB

	// mu guards topics, shipper and closed. Held only for lookups and
	// topic-level changes, never during appends or reads.
	mu       sync.RWMutex
	topics   map[string]*topic
	deleting map[string]bool // topics whose directories DeleteTopic is still removing: not created again until then
	defaults map[string]string
	shipper  Shipper // set once (SetShipper); nil: nothing pinned
	closed   bool

	// Partition caps and the open-file budget (limits.go).
	maxPerTopic, maxParts int32
	fileLimit             int64

	maxDisk    int64 // Options.MaxDiskBytes
	policy     BudgetPolicy
	overBudget atomic.Bool   // appends are refused (ErrDiskBudget) while set
	budgetWake chan struct{} // appends ask for a budget pass every budgetWakeBytes
	armed      atomic.Bool   // ArmBudget was called: the shipper is in place
	dropped    atomic.Int64  // records the drop-oldest policy deleted below the shipper's floor
	onSync     func(time.Duration)

	stop chan struct{}
	done chan struct{}
}

type topic struct {
	info  TopicInfo
	cfg   atomic.Pointer[TopicConfig]
	parts []*Partition
}

var topicsBucket = []byte("topics")

// topicRecord is a topic's entry in topics.db.
type topicRecord struct {
	ID         string            `json:"id"`
	Partitions int32             `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"`
	CreatedMs  int64             `json:"created_ms"`
}

// Open opens (creating if needed) the log in opts.Dir, recovering every
// partition's active segment. Only one process may hold a log directory.
func Open(opts Options) (*Log, error) {
	if opts.Dir == "" {
		return nil, errors.New("log: Options.Dir is empty")
	}
	if opts.FS == nil {
		opts.FS = OSFS{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.LockTimeout == 0 {
		opts.LockTimeout = time.Second
	}
	if opts.RetentionCheckInterval == 0 {
		opts.RetentionCheckInterval = time.Minute
	}
	if err := ValidateConfigs(opts.TopicDefaults); err != nil {
		return nil, fmt.Errorf("topic defaults: %w", err)
	}
	if opts.BudgetPolicy == "" {
		opts.BudgetPolicy = BudgetBlock
	}
	if _, err := ParseBudgetPolicy(string(opts.BudgetPolicy)); err != nil {
		return nil, err
	}
	if err := opts.FS.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	db, err := bolt.Open(filepath.Join(opts.Dir, "topics.db"), 0o644, &bolt.Options{Timeout: opts.LockTimeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s", ErrDataDirLocked, opts.Dir)
		}
		return nil, fmt.Errorf("opening topic metadata: %w", err)
	}
	l := &Log{
		dir: opts.Dir, fs: opts.FS, logger: opts.Logger.With("component", "log"), now: opts.Now, db: db,
		topics: map[string]*topic{}, deleting: map[string]bool{}, defaults: opts.TopicDefaults, maxDisk: opts.MaxDiskBytes, policy: opts.BudgetPolicy,
		maxPerTopic: opts.MaxPartitionsPerTopic, maxParts: opts.MaxPartitions, fileLimit: opts.OpenFileLimit,
		markClean: opts.CleanShutdownMarker, replicated: opts.Replicated, onSync: opts.OnSync, stop: make(chan struct{}), done: make(chan struct{}), budgetWake: make(chan struct{}, 1),
	}
	if l.fileLimit == 0 {
		l.fileLimit = openFileLimit()
	}
	if opts.CleanShutdownMarker {
		if l.cleanShutdown, err = l.takeCleanShutdown(); err != nil {
			db.Close()
			return nil, fmt.Errorf("clean-shutdown marker: %w", err)
		}
	}
	if err := l.load(); err != nil {
		l.closeTopics()
		db.Close()
		return nil, err
	}
	if opts.RetentionCheckInterval > 0 {
		go l.retentionLoop(opts.RetentionCheckInterval)
	} else {
		close(l.done)
	}
	return l, nil
}

// load opens every topic recorded in the metadata and clears directories
// left by interrupted deletions.
func (l *Log) load() error {
	entries, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasSuffix(e.Name(), "-delete") {
			l.logger.Info("finishing interrupted topic deletion", "dir", e.Name())
			if err := l.fs.RemoveAll(filepath.Join(l.dir, e.Name())); err != nil {
				return err
			}
		}
	}
	recs := map[string]topicRecord{}
	err = l.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(topicsBucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			var r topicRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("topic %q metadata: %w", k, err)
			}
			recs[string(k)] = r
			return nil
		})
	})
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for name, r := range recs {
		t, err := l.openTopic(name, r)
		if err != nil {
			return fmt.Errorf("opening topic %q: %w", name, err)
		}
		l.topics[name] = t
		for i := int32(0); i < r.Partitions; i++ {
			known[partitionDirName(name, i)] = true
		}
	}
	for _, e := range entries {
		if e.IsDir() && !known[e.Name()] && !strings.HasSuffix(e.Name(), "-delete") {
			l.logger.Warn("directory without topic metadata left untouched", "dir", e.Name())
		}
	}
	return nil
}

func partitionDirName(topic string, p int32) string { return topic + "-" + strconv.Itoa(int(p)) }

func (l *Log) openTopic(name string, r topicRecord) (*topic, error) {
	cfg, err := ParseTopicConfig(r.Configs, l.defaults)
	if err != nil {
		return nil, err
	}
	t := &topic{info: TopicInfo{Name: name, Partitions: r.Partitions, Configs: r.Configs}}
	if id, err := parseTopicID(r.ID); err == nil {
		t.info.ID = id
	}
	t.cfg.Store(&cfg)
	for i := int32(0); i < r.Partitions; i++ {
		p, err := openPartition(l.fs, filepath.Join(l.dir, partitionDirName(name, i)), name, i, &t.cfg, l.now, l.logger)
		if err == nil {
			l.attach(p)
		}
		if err != nil {
			for _, q := range t.parts {
				q.close()
			}
			return nil, err
		}
		t.parts = append(t.parts, p)
	}
	return t, nil
}

// attach gives a newly opened partition what it shares with the log: the
// disk budget's flag and wake-up, and the fsync observer.
func (l *Log) attach(p *Partition) {
	if l.maxDisk > 0 {
		p.overBudget, p.budgetWake = &l.overBudget, l.budgetWake
	}
	p.onSync = l.onSync
}

func (l *Log) putTopic(tx *bolt.Tx, t *topic, createdMs int64) error {
	r := topicRecord{ID: formatTopicID(t.info.ID), Partitions: t.info.Partitions, Configs: t.info.Configs, CreatedMs: createdMs}
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return tx.Bucket(topicsBucket).Put([]byte(t.info.Name), v)
}

// CreateTopic creates a topic of the given number of partitions with the
// given config overrides.
func (l *Log) CreateTopic(name string, partitions int32, configs map[string]string) (TopicInfo, error) {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return TopicInfo{}, err
	}
	return l.CreateTopicWithID(name, id, partitions, configs)
}

// CreateTopicWithID is CreateTopic with the topic id chosen by the caller:
// a cluster's nodes each create the topic its metadata holds, under the id
// the controller gave it, so Kafka clients see one id wherever they ask.
func (l *Log) CreateTopicWithID(name string, id [16]byte, partitions int32, configs map[string]string) (TopicInfo, error) {
	if err := ValidateTopicName(name); err != nil {
		return TopicInfo{}, err
	}
	if partitions <= 0 || partitions > 100_000 {
		return TopicInfo{}, fmt.Errorf("%w: %d", ErrInvalidPartitions, partitions)
	}
	if err := l.validateConfigs(configs); err != nil {
		return TopicInfo{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return TopicInfo{}, ErrClosed
	}
	if _, ok := l.topics[name]; ok {
		return TopicInfo{}, fmt.Errorf("%w: %q", ErrTopicExists, name)
	}
	if l.deleting[name] {
		// Its partition directories still hold the old data under the
		// names a new partition would open.
		return TopicInfo{}, fmt.Errorf("%w: %q is being deleted", ErrTopicExists, name)
	}
	for other := range l.topics {
		if TopicCollides(name, other) {
			return TopicInfo{}, fmt.Errorf("%w: %q collides with existing topic %q ('.' and '_' are interchangeable in metric names)", ErrInvalidTopic, name, other)
		}
	}
	if err := l.checkPartitions(partitions, partitions); err != nil {
		return TopicInfo{}, err
	}
	made := l.newDirs(name, 0, partitions)
	r := topicRecord{ID: formatTopicID(id), Partitions: partitions, Configs: copyConfigs(configs), CreatedMs: l.now().UnixMilli()}
	t, err := l.openTopic(name, r)
	if err != nil {
		l.removeDirs(made)
		return TopicInfo{}, err
	}
	if err := l.db.Update(func(tx *bolt.Tx) error { return l.putTopic(tx, t, r.CreatedMs) }); err != nil {
		for _, p := range t.parts {
			p.close()
		}
		l.removeDirs(made)
		return TopicInfo{}, err
	}
	l.topics[name] = t
	l.logger.Info("topic created", "topic", name, "partitions", partitions, "configs", configs)
	return t.info.clone(), nil
}

// DeleteTopic deletes a topic and all its data.
func (l *Log) DeleteTopic(name string) error {
	l.mu.Lock()
	t, ok := l.topics[name]
	if !ok || l.closed {
		l.mu.Unlock()
		if l.closed {
			return ErrClosed
		}
		return fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	delete(l.topics, name)
	l.deleting[name] = true
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.deleting, name)
		l.mu.Unlock()
	}()
	for _, p := range t.parts {
		p.close()
	}
	// Rename first: a crash after the metadata is gone finds only
	// "-delete" directories, which the next Open removes.
	var dirs []string
	suffix := "." + formatTopicID(t.info.ID) + "-delete"
	for _, p := range t.parts {
		d := p.dir + suffix
		if err := l.fs.Rename(p.dir, d); err != nil {
			return err
		}
		dirs = append(dirs, d)
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return err
	}
	if err := l.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(topicsBucket).Delete([]byte(name)) }); err != nil {
		return err
	}
	for _, d := range dirs {
		if err := l.fs.RemoveAll(d); err != nil {
			return err
		}
	}
	l.logger.Info("topic deleted", "topic", name)
	return nil
}

// newDirs lists the directories of partitions [from, to) of a topic that
// do not exist yet: those a failed create or grow must remove again.
func (l *Log) newDirs(topic string, from, to int32) []string {
	var out []string
	for i := from; i < to; i++ {
		d := filepath.Join(l.dir, partitionDirName(topic, i))
		if _, err := l.fs.Stat(d); errors.Is(err, fs.ErrNotExist) {
			out = append(out, d)
		}
	}
	return out
}

// removeDirs removes what a failed create or grow made; a failure is
// logged (the next Open warns of a directory without metadata).
func (l *Log) removeDirs(dirs []string) {
	for _, d := range dirs {
		if err := l.fs.RemoveAll(d); err != nil {
			l.logger.Error("removing the directory of a partition not created", "dir", d, "err", err)
		}
	}
}

// AddPartitions grows a topic to total partitions (Kafka's CreatePartitions).
func (l *Log) AddPartitions(name string, total int32) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.topics[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	if total <= t.info.Partitions || total > 100_000 {
		return fmt.Errorf("%w: topic %q has %d partitions, asked for %d", ErrInvalidPartitions, name, t.info.Partitions, total)
	}
	if err := l.checkPartitions(total, total-t.info.Partitions); err != nil {
		return err
	}
	made := l.newDirs(name, t.info.Partitions, total)
	var added []*Partition
	for i := t.info.Partitions; i < total; i++ {
		p, err := openPartition(l.fs, filepath.Join(l.dir, partitionDirName(name, i)), name, i, &t.cfg, l.now, l.logger)
		if err == nil {
			l.attach(p)
		}
		if err != nil {
			for _, q := range added {
				q.close()
			}
			l.removeDirs(made)
			return err
		}
		added = append(added, p)
	}
	old := t.info.Partitions
	t.info.Partitions = total
	err := l.db.Update(func(tx *bolt.Tx) error { return l.putTopic(tx, t, l.now().UnixMilli()) })
	if err != nil {
		t.info.Partitions = old
		for _, q := range added {
			q.close()
		}
		l.removeDirs(made)
		return err
	}
	// Readers index t.parts under l.mu; the slice is replaced, not mutated.
	t.parts = append(append([]*Partition(nil), t.parts...), added...)
	return nil
}

// AlterConfigs sets and removes config overrides of a topic. The change
// takes effect at once, for every partition (Kafka's
// IncrementalAlterConfigs).
func (l *Log) AlterConfigs(name string, set map[string]string, remove []string) error {
	return l.alterConfigs(name, set, remove, false)
}

// ReplaceConfigs makes set the whole of a topic's config overrides: a key
// it does not name returns to its default (Kafka's AlterConfigs). The
// change takes effect at once, for every partition.
func (l *Log) ReplaceConfigs(name string, set map[string]string) error {
	return l.alterConfigs(name, set, nil, true)
}

func (l *Log) alterConfigs(name string, set map[string]string, remove []string, replace bool) error {
	if err := l.validateConfigs(set); err != nil {
		return err
	}
	for _, k := range remove {
		if _, ok := configSpecs[k]; !ok {
			return fmt.Errorf("%w: unknown key %q", ErrInvalidConfig, k)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.topics[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	next := copyConfigs(t.info.Configs)
	if replace {
		next = map[string]string{}
	}
	for _, k := range remove {
		delete(next, k)
	}
	for k, v := range set {
		next[k] = v
	}
	cfg, err := ParseTopicConfig(next, l.defaults)
	if err != nil {
		return err
	}
	prev := t.info.Configs
	t.info.Configs = next
	if err := l.db.Update(func(tx *bolt.Tx) error { return l.putTopic(tx, t, 0) }); err != nil {
		t.info.Configs = prev
		return err
	}
	t.cfg.Store(&cfg)
	l.logger.Info("topic configs altered", "topic", name, "set", set, "removed", remove)
	return nil
}

// Topic describes one topic.
func (l *Log) Topic(name string) (TopicInfo, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	t, ok := l.topics[name]
	if !ok {
		return TopicInfo{}, fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	return t.info.clone(), nil
}

// TopicConfig returns the effective config of a topic.
func (l *Log) TopicConfig(name string) (TopicConfig, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	t, ok := l.topics[name]
	if !ok {
		return TopicConfig{}, fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	return *t.cfg.Load(), nil
}

// EffectiveConfigs returns every config key of a topic with its value and
// whether the topic sets it itself (false: a default).
func (l *Log) EffectiveConfigs(name string) (map[string]string, map[string]bool, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	t, ok := l.topics[name]
	if !ok {
		return nil, nil, fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	vals, explicit := DefaultConfigs(), map[string]bool{}
	for k, v := range l.defaults {
		vals[k] = v
	}
	for k, v := range t.info.Configs {
		vals[k] = v
		explicit[k] = true
	}
	return vals, explicit, nil
}

// TopicDefaults returns the node's topic config defaults
// (Options.TopicDefaults, or as SetTopicDefaults changed them), which
// override the built-in ones.
func (l *Log) TopicDefaults() map[string]string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return copyConfigs(l.defaults)
}

// Topics lists every topic, sorted by name.
func (l *Log) Topics() []TopicInfo {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]TopicInfo, 0, len(l.topics))
	for _, t := range l.topics {
		out = append(out, t.info.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// PartitionCount returns how many partitions a topic has, without copying
// its description; front ends call it on every record they route.
func (l *Log) PartitionCount(topic string) (int32, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	t, ok := l.topics[topic]
	if !ok {
		return 0, fmt.Errorf("%w: %q", ErrUnknownTopic, topic)
	}
	return int32(len(t.parts)), nil
}

// Partition returns one partition of a topic.
func (l *Log) Partition(topic string, partition int32) (*Partition, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	t, ok := l.topics[topic]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownTopic, topic)
	}
	if partition < 0 || int(partition) >= len(t.parts) {
		return nil, fmt.Errorf("%w: %s-%d (topic has %d)", ErrUnknownPartition, topic, partition, len(t.parts))
	}
	return t.parts[partition], nil
}

// Dir is the log's directory.
func (l *Log) Dir() string { return l.dir }

// Size is the total size of every segment file, in bytes.
func (l *Log) Size() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var n int64
	for _, t := range l.topics {
		for _, p := range t.parts {
			n += p.Size()
		}
	}
	return n
}

// DiskBudget reports the data-disk budget (0: none) and whether appends
// are refused for it now.
func (l *Log) DiskBudget() (max int64, blocked bool) { return l.maxDisk, l.overBudget.Load() }

// DroppedRecords is how many records the disk budget's drop-oldest policy
// has deleted since Open while the Shipper still pinned them (for the
// mirror: records the center never acknowledged). It should stay 0.
func (l *Log) DroppedRecords() int64 { return l.dropped.Load() }

// SetShipper registers the log's Shipper, consulted by every later
// retention and budget pass. Its owner calls it once, before ArmBudget.
// The log has one shipper at a time: a later call replaces it (a sender
// started again over the same log, with the same checkpoints); nil
// removes it.
func (l *Log) SetShipper(s Shipper) {
	l.mu.Lock()
	l.shipper = s
	l.mu.Unlock()
}

// retainFrom is the lowest offset of p the shipper pins; math.MaxInt64
// without one.
func retainFrom(s Shipper, p *Partition) int64 {
	if s == nil {
		return noFloor
	}
	return s.RetainFrom(p.topic, p.id)
}

// deleteFloor is the lowest offset of p a pass that deletes from the head
// must keep: what the shipper pins and, in a replicated log, the high
// watermark. A leader deletes only committed records (Kafka's
// UnifiedLog.deletableSegments): else the start, and so HighWatermark,
// would pass records no follower holds, releasing their acks=all waits.
func (l *Log) deleteFloor(s Shipper, p *Partition) int64 {
	floor := retainFrom(s, p)
	if l.replicated {
		floor = min(floor, p.HighWatermark())
	}
	return floor
}

// EnforceRetention runs one retention pass over every partition now (in
// a replicated log, over those whose replica leads: SetAppliesRetention,
// and only below the high watermark).
// The background pass calls it every Options.RetentionCheckInterval.
func (l *Log) EnforceRetention() (RetentionResult, error) {
	l.mu.RLock()
	var parts []*Partition
	for _, t := range l.topics {
		parts = append(parts, t.parts...)
	}
	shipper := l.shipper
	l.mu.RUnlock()
	var total RetentionResult
	var firstErr error
	nowMs := l.now().UnixMilli()
	for _, p := range parts {
		if l.replicated && !p.appliesRetention.Load() {
			continue // a follower's copy follows its leader's start (SetAppliesRetention)
		}
		res, err := p.enforceRetention(nowMs, l.deleteFloor(shipper, p))
		total.Segments += res.Segments
		total.Bytes += res.Bytes
		if err != nil && !errors.Is(err, ErrClosed) && firstErr == nil {
			firstErr = fmt.Errorf("retention of %s-%d: %w", p.topic, p.id, err)
		}
	}
	return total, firstErr
}

func (l *Log) retentionLoop(every time.Duration) {
	defer close(l.done)
	t := time.NewTicker(every)
	defer t.Stop()
	var budget <-chan time.Time
	if l.maxDisk > 0 {
		bt := time.NewTicker(budgetCheckInterval)
		defer bt.Stop()
		budget = bt.C
	}
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			if _, err := l.EnforceRetention(); err != nil {
				l.logger.Error("retention pass failed", "err", err)
			}
		case <-budget:
			l.EnforceBudget()
		case <-l.budgetWake:
			l.EnforceBudget()
		}
	}
}

// Sync fsyncs every partition.
func (l *Log) Sync() error {
	l.mu.RLock()
	var parts []*Partition
	for _, t := range l.topics {
		parts = append(parts, t.parts...)
	}
	l.mu.RUnlock()
	var first error
	for _, p := range parts {
		if err := p.Sync(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Close stops background work, fsyncs every partition and closes all files.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	err := l.closeTopics()
	if cerr := l.db.Close(); err == nil {
		err = cerr
	}
	if err == nil && l.markClean {
		err = l.markCleanShutdown()
	}
	return err
}

func (l *Log) closeTopics() error {
	var first error
	for _, t := range l.topics {
		for _, p := range t.parts {
			if err := p.close(); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

func (t TopicInfo) clone() TopicInfo {
	t.Configs = copyConfigs(t.Configs)
	return t
}

func copyConfigs(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func formatTopicID(id [16]byte) string { return hex.EncodeToString(id[:]) }

func parseTopicID(s string) ([16]byte, error) {
	var id [16]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("bad topic id %q", s)
	}
	copy(id[:], b)
	return id, nil
}
