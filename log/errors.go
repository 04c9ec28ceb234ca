package log

import "errors"

// Sentinel errors. Callers compare with errors.Is; the wrapped message adds the
// topic, partition or offset concerned.
var (
	// ErrUnknownTopic is returned when a topic does not exist.
	ErrUnknownTopic = errors.New("unknown topic")

	// ErrTopicExists is returned by CreateTopic when the name is taken.
	ErrTopicExists = errors.New("topic already exists")

	// ErrInvalidTopic is returned when a topic name breaks Kafka's naming rules.
	ErrInvalidTopic = errors.New("invalid topic name")

	// ErrUnknownPartition is returned when a partition number is outside the topic.
	ErrUnknownPartition = errors.New("unknown partition")

	// ErrInvalidPartitions is returned when a partition count is not positive, or
	// when AddPartitions is asked to shrink a topic.
	ErrInvalidPartitions = errors.New("invalid partition count")

	// ErrPartitionLimit is returned by CreateTopic and AddPartitions when the
	// partitions asked for would pass the node's cap (Options.MaxPartitions)
	// or the files they hold open would not fit the process's open-file
	// limit. Nothing is created.
	ErrPartitionLimit = errors.New("partition limit reached")

	// ErrInvalidConfig is returned when a topic config key is unknown or its
	// value is out of range.
	ErrInvalidConfig = errors.New("invalid topic config")

	// ErrOffsetOutOfRange is returned by reads below the log start offset or
	// above the end offset.
	ErrOffsetOutOfRange = errors.New("offset out of range")

	// ErrCorruptBatch is returned by Append when a RecordBatch fails framing or
	// CRC-32C validation. Nothing is written.
	ErrCorruptBatch = errors.New("corrupt record batch")

	// ErrBatchTooLarge is returned by Append when a batch exceeds the topic's
	// max.message.bytes. Nothing is written.
	ErrBatchTooLarge = errors.New("record batch larger than max.message.bytes")

	// ErrInflatedTooLarge is returned by Append and AppendAt when a
	// compressed batch's records inflate past the topic's
	// max.inflated.bytes (a decompression bomb, most likely). Validation
	// stops at the cap; nothing is written.
	ErrInflatedTooLarge = errors.New("record batch inflates past max.inflated.bytes")

	// ErrCorruptSegment is returned by reads that touch a sealed segment whose
	// contents failed validation. The segment is kept on disk untouched and
	// reported in the log; other ranges of the partition stay readable.
	ErrCorruptSegment = errors.New("corrupt segment")

	// ErrClosed is returned by any operation on a closed Log or Partition, and
	// by WaitDurable when the partition closes before the offset is durable.
	ErrClosed = errors.New("log closed")

	// ErrDataDirLocked is returned by Open when another process holds the data
	// directory (a running broker, typically).
	ErrDataDirLocked = errors.New("data directory in use by another process")
)

// Errors of idempotent producers, checked by Append for batches that carry a
// producer id (Kafka's semantics, per partition).
var (
	// ErrDuplicateSequence is returned when a batch repeats one of the
	// producer's last five batches (a retry of something already stored).
	// Nothing is written; the AppendResult holds the original offsets, and a
	// Kafka front end answers success with them.
	ErrDuplicateSequence = errors.New("duplicate sequence number")

	// ErrOutOfOrderSequence is returned when a batch's base sequence is not
	// the one after the producer's last batch. Nothing is written.
	ErrOutOfOrderSequence = errors.New("out of order sequence number")

	// ErrProducerFenced is returned when a batch carries an epoch older than
	// the producer's current one. Nothing is written.
	ErrProducerFenced = errors.New("producer epoch is older than the current one")

	// ErrOffsetMismatch is returned by AppendAt when a batch's base offset
	// is not the partition's end offset (nor, for an empty partition, past
	// it): the copy would have a gap or overlap.
	ErrOffsetMismatch = errors.New("batch offset does not continue the partition")

	// ErrDiskBudget is returned by appends while the log is over its
	// data-disk budget (Options.MaxDiskBytes) and every segment that could
	// go is pinned by a guard (the mirror has not shipped it). Retriable:
	// it clears once space is freed.
	ErrDiskBudget = errors.New("data-disk budget reached: appends are blocked until space is freed")
)

// Errors of replication.
var (
	// ErrBelowHighWatermark is returned by TruncateTo when the cut would
	// remove records below the high watermark (committed ones). Nothing
	// is cut.
	ErrBelowHighWatermark = errors.New("truncation below the high watermark")

	// ErrStaleLeaderEpoch is returned by SetLeaderEpoch for an epoch older
	// than the partition's current one.
	ErrStaleLeaderEpoch = errors.New("leader epoch is older than the current one")
)

// Errors of replication, returned by a node's replica manager through the
// front ends' narrow views of it (a Kafka front end's Replication): the log
// defines them so that both sides name them without importing each other.
var (
	// ErrNotLeader: this node does not lead the partition (any more); the
	// client asks the metadata again (Kafka's NOT_LEADER_OR_FOLLOWER).
	ErrNotLeader = errors.New("not the leader of the partition")

	// ErrNotEnoughReplicas: an acks=all append refused before anything was
	// written, the in-sync set being smaller than min.insync.replicas.
	ErrNotEnoughReplicas = errors.New("in-sync replicas fewer than min.insync.replicas")

	// ErrNotEnoughReplicasAfterAppend: an acks=all append was written, but
	// the in-sync set fell below min.insync.replicas before it committed.
	ErrNotEnoughReplicasAfterAppend = errors.New("in-sync replicas fell below min.insync.replicas after the append")
)
