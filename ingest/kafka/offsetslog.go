package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf16"

	flog "ferry/log"
)

// The offsets log: where a cluster's coordinators keep committed offsets.
//
// In a cluster, committed offsets are records of the internal topic
// __consumer_offsets, as in Kafka: a group's partition is
// OffsetsPartition(group, partitions) (Kafka's abs(groupId.hashCode) %
// offsets.topic.num.partitions), its coordinator the partition's leader.
// The coordinator appends a record per committed partition and answers the
// commit once OffsetsLog.Append says the record is committed.
//
// Record format (ferry's own, in the spirit of Kafka's
// GroupCoordinatorRecordSerde; every integer big-endian, a string an int16
// length and its bytes, a nullable string's length -1 for null):
//
//	key:   int16 type   1 = committed offset
//	       string group, string topic, int32 partition
//	value: int16 version  1
//	       int64 offset, int32 leader epoch (-1: none),
//	       int64 commit time (Unix ms), nullable string metadata
//
// A null value is a tombstone: the offset was deleted (OffsetDelete,
// DeleteGroups, an emptied group's offsets). A key type or value version
// this ferry does not know is skipped (logged and counted), so a newer
// ferry may add record types (group metadata, say) without breaking an
// older reader. Group membership is not written: a coordinator that takes
// over a partition knows its groups' offsets but none of their members,
// whose next heartbeat or commit is UNKNOWN_MEMBER_ID, so they rejoin (a
// rebalance, which every Kafka client handles) and resume from the
// committed offsets.
//
// There is no compaction: a loaded partition's coordinator writes a
// snapshot — the live offsets of the partition's groups, as ordinary
// records — whenever the partition has grown by GroupsReplication's
// SnapshotBytes since the last one (and every SnapshotInterval when it has
// grown at all), then moves the partition's start to the snapshot's first
// record (Kafka's DeleteRecords), so a partition holds one snapshot plus
// the commits since, and a new leader replays only that.

// committedOffsetRecord is the key type of a committed offset.
const committedOffsetRecord = 1

// offsetValueVersion is the version of a committed offset's value.
const offsetValueVersion = 1

// OffsetsLog is the offsets topic as the coordinator writes and reads it.
// The seam to the replicated data path: Append answers once the records
// are committed — today, durable in the local log (LogOffsets, under the
// topic's flush.policy); with replication, once the partition's high
// watermark has passed them (acks=all's wait, NOT_ENOUGH_REPLICAS and
// timeouts surfacing as the commit's error) — and Bounds' end is the
// committed end (today the durable offset; then the high watermark), so a
// new leader loads only what was committed. Trim moves the leader's log
// start; with replication the followers follow it as Kafka's do (the log
// start in each fetch answer). A coordinator appends only to partitions
// it leads, and the front end refuses every client write to the topic.
type OffsetsLog interface {
	// Append appends recs to the partition as one batch and returns the
	// offset of its last record once the batch is committed.
	Append(ctx context.Context, partition int32, recs []flog.Record) (last int64, err error)
	// Bounds are the partition's start offset and its committed end.
	Bounds(partition int32) (start, end int64, err error)
	// Read returns whole batches from the one holding offset, at most
	// about maxBytes (one batch at least), as log.Partition.Read.
	Read(partition int32, offset int64, maxBytes int) ([]byte, error)
	// Trim moves the partition's start up to offset (DeleteRecords).
	Trim(ctx context.Context, partition int32, offset int64) error
}

// LogOffsets is the offsets topic in a *log.Log: an append is committed
// once durable (WaitDurable) on this node (a cluster that does not
// replicate; tests). A replicating cluster's node uses edge's
// replicatedOffsets instead, which waits for the high watermark; the
// coordinator does not change.
type LogOffsets struct{ Log *flog.Log }

func (l LogOffsets) partition(p int32) (*flog.Partition, error) {
	return l.Log.Partition(offsetsTopic, p)
}

func (l LogOffsets) Append(ctx context.Context, partition int32, recs []flog.Record) (int64, error) {
	p, err := l.partition(partition)
	if err != nil {
		return -1, err
	}
	res, err := p.Append(flog.AppendBatch(nil, recs))
	if err != nil {
		return -1, err
	}
	if err := p.WaitDurable(ctx, res.LastOffset); err != nil {
		return -1, err
	}
	return res.LastOffset, nil
}

func (l LogOffsets) Bounds(partition int32) (int64, int64, error) {
	p, err := l.partition(partition)
	if err != nil {
		return 0, 0, err
	}
	return p.StartOffset(), p.DurableOffset(), nil
}

func (l LogOffsets) Read(partition int32, offset int64, maxBytes int) ([]byte, error) {
	p, err := l.partition(partition)
	if err != nil {
		return nil, err
	}
	res, err := p.Read(offset, maxBytes, nil)
	return res.Data, err
}

func (l LogOffsets) Trim(ctx context.Context, partition int32, offset int64) error {
	_, err := l.Log.DeleteRecords(ctx, offsetsTopic, partition, offset)
	return err
}

// OffsetsPartition is the partition of the offsets topic that holds a
// group's offsets: Kafka's Utils.abs(groupId.hashCode()) % partitions, with
// Java's String.hashCode over the id's UTF-16 code units, so a group lands
// where a Kafka cluster of the same partition count would put it.
func OffsetsPartition(group string, partitions int32) int32 {
	if partitions <= 0 {
		return 0
	}
	var h int32
	for _, u := range utf16.Encode([]rune(group)) {
		h = 31*h + int32(u)
	}
	if h == -1<<31 { // Kafka's Utils.abs: abs(MIN_VALUE) is 0
		h = 0
	} else if h < 0 {
		h = -h
	}
	return h % partitions
}

// offsetKey is where a committed offset is: a group's topic partition.
type offsetRef struct {
	group, topic string
	partition    int32
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// encodeOffsetRecord is one committed offset as a record; co nil is the
// tombstone of its key.
func encodeOffsetRecord(ref offsetRef, co *committedOffset, now int64) flog.Record {
	k := binary.BigEndian.AppendUint16(make([]byte, 0, 10+len(ref.group)+len(ref.topic)), committedOffsetRecord)
	k = appendString(k, ref.group)
	k = appendString(k, ref.topic)
	k = binary.BigEndian.AppendUint32(k, uint32(ref.partition))
	r := flog.Record{Key: k, Timestamp: now}
	if co == nil {
		return r
	}
	v := binary.BigEndian.AppendUint16(make([]byte, 0, 24), offsetValueVersion)
	v = binary.BigEndian.AppendUint64(v, uint64(co.Offset))
	v = binary.BigEndian.AppendUint32(v, uint32(co.LeaderEpoch))
	v = binary.BigEndian.AppendUint64(v, uint64(co.CommitMs))
	if co.Metadata == nil {
		v = binary.BigEndian.AppendUint16(v, 0xffff)
	} else {
		v = appendString(v, *co.Metadata)
	}
	r.Value = v
	return r
}

var errRecordFormat = errors.New("malformed offsets record")

// errUnknownRecord: a key type or value version this ferry does not read.
var errUnknownRecord = errors.New("unknown offsets record type or version")

type reader struct {
	b   []byte
	err error
}

func (r *reader) n(k int) []byte {
	if r.err != nil || len(r.b) < k {
		r.err = errRecordFormat
		return nil
	}
	out := r.b[:k]
	r.b = r.b[k:]
	return out
}

func (r *reader) u16() uint16 {
	if b := r.n(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}
func (r *reader) u32() uint32 {
	if b := r.n(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}
func (r *reader) u64() uint64 {
	if b := r.n(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// str reads a string; null (length -1) is nil when nullable.
func (r *reader) str(nullable bool) *string {
	l := int16(r.u16())
	if l == -1 && nullable {
		return nil
	}
	if l < 0 {
		r.err = errRecordFormat
		return nil
	}
	s := string(r.n(int(l)))
	return &s
}

// decodeOffsetRecord reads one record: its key and, unless it is a
// tombstone, its value. Every length is bounded by the bytes that carry it.
func decodeOffsetRecord(key, value []byte) (offsetRef, *committedOffset, error) {
	var ref offsetRef
	kr := reader{b: key}
	if t := kr.u16(); kr.err == nil && t != committedOffsetRecord {
		return ref, nil, fmt.Errorf("%w: key type %d", errUnknownRecord, t)
	}
	g, t := kr.str(false), kr.str(false)
	ref.partition = int32(kr.u32())
	if kr.err != nil || len(kr.b) != 0 {
		return ref, nil, fmt.Errorf("%w: key", errRecordFormat)
	}
	ref.group, ref.topic = *g, *t
	if value == nil {
		return ref, nil, nil
	}
	vr := reader{b: value}
	if v := vr.u16(); vr.err == nil && v != offsetValueVersion {
		return ref, nil, fmt.Errorf("%w: value version %d", errUnknownRecord, v)
	}
	co := &committedOffset{Offset: int64(vr.u64()), LeaderEpoch: int32(vr.u32()), CommitMs: int64(vr.u64())}
	co.Metadata = vr.str(true)
	if vr.err != nil {
		return ref, nil, fmt.Errorf("%w: value", errRecordFormat)
	}
	return ref, co, nil
}
