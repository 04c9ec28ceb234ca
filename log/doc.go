// Package log is ferry's storage engine: topics, partitions, segments, their
// indexes, recovery, retention and the partitioner. It owns every file under
// its directory; nothing else in ferry reads or writes them.
//
// # Layout
//
// A topic partition is the directory <dir>/<topic>-<partition>/ holding
// segments named by the 20-digit offset of their first record:
//
//	00000000000000000000.log        RecordBatch v2 bytes, as clients sent them
//	00000000000000000000.index      sparse offset index: relative offset -> file position
//	00000000000000000000.timeindex  sparse time index: max timestamp so far -> relative offset
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
//   - interval (default): fsynced by the partition's group commit, which runs
//     at most every flush.ms (default 10 ms) while there is unsynced data. A
//     power cut loses at most the last flush.ms of acknowledged appends that
//     did not wait for WaitDurable.
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
// valid batch, logging the bytes dropped. Sealed segments are validated
// lazily, when first read: a missing or damaged index is rebuilt, while damage
// to a sealed segment's data is logged loudly and reported as
// ErrCorruptSegment on reads of that range, never skipped or deleted.
//
// This package imports no other ferry package.
package log
