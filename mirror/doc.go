// Package mirror owns shipping an edge's log to a full-mode center: the
// sender that reads durable, batch-aligned ranges of each mirrored
// partition and ships them zstd-compressed and pipelined, the receiver that
// verifies every chunk (its CRC-32C, every RecordBatch's CRC, offsets that
// run on without gaps) and appends the batches with the edge's offsets
// (log.Partition.AppendAt) into a namespaced topic ({edge}.{topic}),
// acknowledging each chunk once durable; and the
// edge's checkpoints and edge id (bbolt, checkpoint.go).
//
// The center is the authority on where shipping resumes: on every
// connection it tells the edge the durable end of its copy of each
// partition, so nothing is shipped twice into the log and nothing is
// skipped, after any cut, restart or crash on either side. The sender pins
// what the center has not acknowledged against retention, ranks topics for
// the disk budget's drop-oldest policy and records what that policy drops,
// and what a DeleteRecords request deletes, before the center had it (a gap
// the center is told): it is the log's log.Shipper and log.DeleteObserver,
// registered by its owner (log.Log.SetShipper).
//
// The sender's second target is an existing Kafka cluster (kafka.go): the
// edge's records produced one by one into {edge}.{topic} with a
// ferry.offset header, the resume point read back from the target's tail
// at every session start, idempotent or transactional.
//
// The center also keeps its view of the fleet (fleet.go): per edge,
// connected or since when not, last chunk, records and rate, gaps, errors,
// and the copy lag against the ends the edge reports every few seconds
// (wire.Heads, heads.go), served in ReceiverStatus and as metrics labelled
// by edge; an edge gone for longer than ReceiverOptions.EdgeRetention is
// forgotten, its series with it.
//
// It reads and writes logs through their public API only, never a front
// end; it never deletes data.
package mirror
