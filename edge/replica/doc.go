// Package replica is the replica manager of one node of a center cluster:
// it makes the node's log follow the replication decisions of the cluster's
// metadata, as Kafka's ReplicaManager, Partition and ReplicaFetcherThread
// do, following Kafka's published protocol (the leader epochs of
// KIP-101/279/320, follower fetch with a replica id, the high watermark, the
// strict min-ISR rule of KIP-966).
//
// What it owns, for every partition with a replica on this node:
//
//   - The role the metadata gives this node (Metadata.Assignments): leader
//     at a leader epoch, follower of a leader, or neither (offline).
//   - As leader (leader.go): SetLeaderEpoch on the log (every batch appended
//     from then on is stamped with the epoch), each follower's state from
//     its fetches (its log end, when it last caught up), the high watermark
//     (the smallest log end over the in-sync set, never above the leader's
//     own durable offset under the topic's flush.policy, advancing only
//     while the in-sync set has at least min.insync.replicas members:
//     KIP-966's strict rule), and proposals to shrink or expand the in-sync
//     set (Metadata.AlterPartition, one at a time per partition, retried
//     after the next metadata change). It serves the Kafka front end's
//     Replication interface through Leader: appends hold the leadership,
//     acks=all waits for the high watermark.
//   - As follower (fetcher.go): one fetcher per leader broker, on a
//     connection from Metadata.Dial, sending one Fetch per round for all its
//     partitions of that leader (ReplicaID, CurrentLeaderEpoch,
//     LastFetchedEpoch), appending what comes with log.AppendAt (bytes and
//     offsets as the leader has them, its epoch stamps included), cutting
//     the log back (log.TruncateTo) where the leader says it diverges
//     (DivergingEpoch) and fetching again, and taking the leader's high
//     watermark (never above its own end) and its log start (up to the
//     high watermark: what the leader's retention or DeleteRecords cut).
//   - Which replica applies retention: the leader alone
//     (log.Partition.SetAppliesRetention as roles change), by its own
//     clock, and only below the high watermark (an uncommitted record
//     stays, so retention never releases acks=all); a follower whose
//     clock runs ahead deletes nothing early.
//     Nothing here reads the wall clock: lag and retries are timed on Go's
//     monotonic clock, and no node's time is compared with another's.
//   - The high-watermark checkpoint of each partition (periodically and on
//     Close), so a restarted node never exposes more than was committed.
//
// What it must never do: decide leadership or the in-sync set (the
// metadata's controller does; this package proposes ISR changes and waits
// for the metadata to say what was decided), touch raft, or import
// ingest/*, mirror or edge/cluster. It sees the metadata only through the
// narrow Metadata interface, which the node's assembly implements over
// edge/cluster, and it is seen by the Kafka front end only through
// kafka.Replication (edge adapts Manager.Leader to it: *Leader has the
// methods of kafka.ReplicaLeader).
//
// # What acks=all means in a cluster
//
// A produce with acks=all to a replicated partition is refused
// (NOT_ENOUGH_REPLICAS, nothing appended) while the in-sync set has fewer
// than min.insync.replicas members. Otherwise it is answered once the high
// watermark has passed its batch: every member of the in-sync set (at
// least min.insync.replicas of them, the leader included) holds the batch
// in its log at the same offsets, and the leader holds it durably under the
// topic's flush.policy (fsynced for always and interval; page cache for
// never). By default a follower's copy is in its page cache when it counts
// (it survives a crash of the follower's process, not a power cut of its
// machine: the record is lost only if every in-sync replica loses power
// before its own flush). With Options.DurableFollowers, a follower fsyncs
// what it appended (under its flush.policy, as the leader does) before it
// fetches again, and only that fetch reports the new end to the leader, so
// an acknowledged record is fsynced on every in-sync replica; a follower
// whose end is not durable (its fsync failed, which disables its log)
// fetches no more, and so leaves the in-sync set rather than report it. Either way,
// a record acknowledged with acks=all survives the loss of any
// min.insync.replicas-1 replicas, because a new leader is elected only from
// the in-sync set (never unclean); a consumer reads only below the high
// watermark, so nothing it reads is later cut by a leader change. acks=1 is
// answered once the leader appended (as in Kafka): such a record may be
// cut when the leader fails before a follower copied it.
package replica
