// Package log is ferry's storage engine: topics, partitions, segments, their
// indexes, recovery, retention and the partitioner. It owns every file under
// its directory; nothing else in ferry reads or writes them.
//
// # Layout
//
// A topic partition is the directory <dir>/<topic>-<partition>/ holding
// segments named by the 20-digit offset of their first record:
//
//	00000000000000000000.log        RecordBatch v2 bytes, as clients sent them (but see compression.type, message.timestamp.type)
//	00000000000000000000.index      sparse offset index: relative offset -> file position
//	00000000000000000000.timeindex  sparse time index: max timestamp so far -> relative offset
//	00000000000000000009.snapshot   idempotent-producer state as of offset 9
//	leader-epoch-checkpoint         leader epoch -> first offset (Kafka's format)
//	high-watermark-checkpoint       the checkpointed high watermark (replicated partitions only)
//	log-start-offset-checkpoint     the log start a DeleteRecords set (only after one)
//
// Topic names, ids, partition counts and configs live in <dir>/topics.db
// (bbolt).
//
// # What an acknowledgement means
//
// Append returns once the batch is written to the segment file, that is, to
// the operating system's page cache: the records are readable, and they
// survive a crash of the ferry process (kill -9), but not a power cut or a
// kernel crash. WaitDurable returns once the batch is durable under the
// topic's flush.policy:
//
//   - always: fsynced (fdatasync). Concurrent appenders share one fsync.
//   - interval (default): fsynced by the partition's group commit, on
//     demand: a WaitDurable whose offset is not yet durable starts an fsync
//     at once if none is running, else the next one starts as soon as the
//     running one ends, shared by every waiter that arrived meanwhile. Data
//     nobody waits for is fsynced at most flush.ms (default 10 ms) after the
//     previous group commit began, so a power cut loses at most about the
//     last flush.ms of appends that did not wait for WaitDurable. flush.ms
//     is never a floor on WaitDurable. SyncSoon asks for the same fsync
//     without waiting: a caller waiting on several partitions asks each
//     first, so their fsyncs run together.
//   - never: WaitDurable returns at once; durability is the page cache's.
//
// Readers see records as soon as Append returns (the end offset, Kafka's high
// watermark on a single node); DurableOffset says how far the partition is
// fsynced, and is what a mirror must not read past.
//
// # Recovery
//
// Open scans only the active (last) segment of each partition, from its last
// valid index entry, and truncates a torn or corrupt tail back to the last
// valid batch, logging the bytes dropped. It then checks the batches before
// that entry too (checkActive, damage.go): a damaged one is not cut, the
// partition is reported damaged (Damage, Log.Damaged) and reads there fail
// with ErrCorruptSegment until an operator cuts it (CutAt, after
// BackupFrom: `ferry log truncate`). Sealed segments are validated
// lazily, when first read: a missing or damaged index is rebuilt, while damage
// to a sealed segment's data is logged loudly and reported as
// ErrCorruptSegment on reads of that range, never skipped or deleted.
//
// # Timestamps
//
// Every decision the log makes by time takes a batch's timestamps from its
// records, never from its header, which may disagree with them (librdkafka
// given CreateTime -1 writes FirstTimestamp -1, MaxTimestamp 0): Append
// gathers the records' largest timestamp while it validates them (for a
// compressed batch, from the decompressed records), recovery and index
// rebuilds walk the records again. The stored bytes stay the client's
// unless the topic recompresses them (compression.type, recompress.go) or
// stamps the append time (message.timestamp.type=LogAppendTime,
// appendtime.go). A record timestamp below zero means none (Kafka's
// NO_TIMESTAMP) and never counts. With a LogAppendTime batch every
// record's time is the header's MaxTimestamp, as clients read it.
//
//   - The time index holds the running maximum of the records' timestamps;
//     OffsetForTime (ListOffsets by time) skips a batch only if its records
//     are all older, and never answers with a record that has none.
//   - Retention (retention.ms) ages a segment as Kafka does: by the largest
//     timestamp of its records, or, when none carries one, by the last
//     write to the segment (the file's modification time after a reopen).
//     Unlike Kafka, a largest timestamp that is still in the future is not
//     believed either, and the last write stands in until the clock reaches
//     it: a record from 2100 does not keep its segment, and so every later
//     one, until 2100 plus retention.ms, nor do records stamped ahead of a
//     clock that runs behind get deleted once it is set right. Timestamps
//     far in the past are believed, as in Kafka: a segment whose newest
//     record claims 1970 goes at the next pass. Nothing is refused for its
//     timestamp (Kafka's message.timestamp.*.max.ms are not implemented).
//     In a replicated log (Options.Replicated) only a partition whose
//     replica leads applies retention.ms and retention.bytes
//     (Partition.SetAppliesRetention), and only segments whose records
//     are all below the high watermark (the active one only when the high
//     watermark is at the end, as Kafka's UnifiedLog.deletableSegments),
//     so the start, and with it the high watermark, never passes records
//     the followers do not hold; a follower's copy is cut where its
//     leader's is, so a follower's clock never deletes what the leader
//     serves. Options.Now is the clock of all of it (a test seam for skew).
//   - segment.ms counts from the wall clock at the first append to a
//     segment; after a reopen, from its first batch's largest record
//     timestamp when that is neither missing nor in the future, else from
//     the reopen.
//   - Partition.AgedAt gives one record's time by the retention rule, for
//     "age of the oldest unshipped record" displays.
//   - A time index whose last entry is exactly 0 is rebuilt from the records
//     when its segment is opened: indexes written before timestamps came
//     from the records hold librdkafka's header 0 there.
//
// # Replication foundations
//
// Following Kafka's leader-epoch design (KIP-101/279/320), so a replicated
// partition can be built on top (the cluster decides who leads; the log
// only stores):
//
//   - Leader epochs. Partition.SetLeaderEpoch makes Append stamp the epoch
//     into PartitionLeaderEpoch (bytes 12-15 of the batch, outside the CRC,
//     as the base offset): the log then rewrites those two fields and
//     nothing else. Until it is called, as on a node alone, the field keeps
//     the client's bytes. AppendAt keeps the epoch a copied batch carries
//     (a follower's bytes are its leader's); a gap batch carries -1, or
//     the leader's epoch.
//   - The leader-epoch cache (epoch.go): each epoch's first offset, in
//     leader-epoch-checkpoint, replaced atomically before the first batch
//     of a new epoch is written (and at SetLeaderEpoch, at the end
//     offset). Open drops entries at or past the end offset (a crash
//     between the two writes); a missing or damaged file is rebuilt from
//     the batch headers when the epochs are first needed (a node alone
//     never needs them, so a partition written before the file existed
//     opens as fast as before); a log never stamped holds clients' values
//     there, and negative ones are skipped. An epoch older than the latest
//     is never assigned; copied batches (AppendAt) write the file at most
//     once per call. Epochs below the log start collapse onto it (Kafka's
//     truncateFromStart). EndOffsetForEpoch is Kafka's endOffsetFor.
//   - The high watermark (highwatermark.go): AdvanceHighWatermark moves it
//     up, never past the end offset; CheckpointHighWatermark persists it,
//     never past the durable offset; a reopened partition starts from the
//     checkpoint. A node alone never moves it or writes the file, and no
//     read looks at it yet.
//   - TruncateTo (truncate.go) cuts the log back, whole batches only,
//     never below the high watermark: producer snapshots past the cut go
//     first, then whole segments newest first, then the cut segment's
//     indexes and data (fsynced), then the epoch cache. A crash part-way
//     leaves a dense log ending between the cut and the old end, which the
//     caller cuts again.
//
// This package imports no other ferry package.
package log
