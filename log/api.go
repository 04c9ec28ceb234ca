package log

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Options configure Open.
type Options struct {
	// Dir is the log's directory: topic partitions live in Dir/<topic>-<n>/
	// and topic metadata in Dir/topics.db.
	Dir string
	// FS is the filesystem seam; nil means OSFS.
	FS FS
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// TopicDefaults override the built-in topic config defaults for every
	// topic that does not set a key itself.
	TopicDefaults map[string]string
	// RetentionCheckInterval is how often retention runs; 0 means 1 minute,
	// negative disables the background pass (EnforceRetention still works).
	RetentionCheckInterval time.Duration
	// LockTimeout bounds the wait for the metadata file lock held by another
	// process; 0 means 1 second. Past it Open fails with ErrDataDirLocked.
	LockTimeout time.Duration
	// Replicated makes this log a cluster member's: a topic may ask for
	// up to MaxReplicas in-sync replicas (min.insync.replicas), which the
	// cluster checks against its replication factor. Alone, this node is
	// every partition's only replica, so more than 1 is refused: acks=all
	// could never be met.
	Replicated bool
	// CleanShutdownMarker makes this log a node's: Open takes the
	// clean-shutdown marker (Log.CleanShutdown says whether it was there)
	// and a Close without error writes it. Offline tools leave it as it
	// is, so a crash stays visible to the node's next start.
	CleanShutdownMarker bool
	// Now is the clock used for segment age and retention; nil means time.Now.
	Now func() time.Time
	// MaxDiskBytes is the data-disk budget (max.disk.bytes); 0 means none.
	// Past it the oldest segments the Shipper does not pin are deleted,
	// oldest first; if that is not enough, BudgetPolicy decides. Checked
	// every second once Log.ArmBudget has been called.
	MaxDiskBytes int64
	// BudgetPolicy is what happens when the budget is reached and every
	// segment left is pinned by the Shipper: BudgetBlock (the default)
	// refuses appends with ErrDiskBudget until space is freed;
	// BudgetDropOldest deletes pinned segments anyway, oldest first, from
	// the topics the Shipper ranks highest first, telling it beforehand.
	BudgetPolicy BudgetPolicy
	// OnSync, when set, is told how long each group commit's fsyncs took
	// (a pass that had nothing to fsync is not reported). It is called from
	// the partition's flusher without any lock held, and must be quick.
	// It is the node's metrics, not a Shipper hook: it observes the log and
	// decides nothing, it is needed from Open on (recovery's partitions
	// take it as they open), and a node that ships nothing has it too.
	OnSync func(d time.Duration)
	// MaxPartitionsPerTopic caps one topic's partitions (ErrInvalidPartitions
	// past it) and MaxPartitions the log's, all topics together
	// (ErrPartitionLimit); 0 means no cap. Every way a topic is made or
	// grown (admin API, Kafka, MQTT rules, auto-creation) goes through them.
	MaxPartitionsPerTopic int32
	MaxPartitions         int32
	// OpenFileLimit is the open-file limit partitions are checked against
	// before they are created (each holds a few files open, filesPerPartition;
	// a quarter of the limit is left to connections and reads); 0 means the
	// process's RLIMIT_NOFILE, negative no check.
	OpenFileLimit int64
}

// BudgetPolicy is what the log does at its disk budget when what is left
// is pinned.
type BudgetPolicy string

const (
	// BudgetBlock refuses appends (ErrDiskBudget): nothing is lost, and
	// producers get back-pressure.
	BudgetBlock BudgetPolicy = "block"
	// BudgetDropOldest deletes the oldest pinned segments: appends go on,
	// the dropped records are lost, counted and reported.
	BudgetDropOldest BudgetPolicy = "drop-oldest"
)

// ParseBudgetPolicy reads "block" or "drop-oldest".
func ParseBudgetPolicy(s string) (BudgetPolicy, error) {
	switch p := BudgetPolicy(s); p {
	case BudgetBlock, BudgetDropOldest:
		return p, nil
	}
	return "", fmt.Errorf("disk budget policy %q: want block or drop-oldest", s)
}

// Shipper is what ships the log elsewhere (the mirror's sender) plugs into
// it: everything the log asks of it, in one interface, registered once with
// Log.SetShipper. Without one, nothing is pinned and every topic ranks
// alike.
type Shipper interface {
	// RetainFrom returns the lowest offset of the partition that must be
	// kept, the first one not shipped yet: retention and the disk budget
	// delete no segment holding this offset or any above it, unless the
	// budget's drop-oldest policy says so. math.MaxInt64 means no
	// constraint (a topic it does not ship).
	RetainFrom(topic string, partition int32) int64
	// EvictRank ranks a topic for the budget's drop-oldest policy: the
	// topics of the highest rank lose their pinned data first.
	EvictRank(topic string) int
	// WillDrop is told when the drop-oldest policy deletes a segment it
	// pins, before the segment's files go, with the segment's offsets
	// From..To (inclusive); its own floor says which of them it had not
	// shipped. It should record the loss durably before returning.
	WillDrop(topic string, partition int32, from, to int64)
}

// TopicInfo describes a topic.
type TopicInfo struct {
	Name       string
	ID         [16]byte // random, fixed at creation (Kafka's topic id)
	Partitions int32
	// Configs holds the keys set on this topic; others take the defaults.
	Configs map[string]string
}

// AppendResult says where an appended batch landed.
type AppendResult struct {
	BaseOffset     int64 // offset of the batch's first record
	LastOffset     int64 // offset of the batch's last record
	LogStartOffset int64 // the partition's start offset after the append
	Position       int64 // file position of the batch in its segment
	Segment        int64 // base offset of the segment the batch went to
	// LogAppendTime is the time Append stamped on the batch (a topic with
	// message.timestamp.type=LogAppendTime), else 0.
	LogAppendTime int64
}

// ReadResult is a batch-aligned read.
type ReadResult struct {
	// Data holds whole RecordBatches exactly as stored. Its first batch
	// contains the requested offset (and may start before it).
	Data []byte
	// StartOffset and EndOffset are the partition's log start offset and
	// end offset (high watermark) when the read was served.
	StartOffset int64
	EndOffset   int64
}

// SegmentInfo describes one segment.
type SegmentInfo struct {
	BaseOffset int64
	NextOffset int64 // one past the last offset, if known (-1 for an unopened sealed segment)
	Size       int64
	Path       string
	Sealed     bool
}

var _ = context.Background
