// Package cluster is the metadata quorum of a ferry center: several
// `ferry full` nodes agree, through hashicorp/raft, on one metadata image —
// the brokers (id, incarnation, endpoints, fenced or not), the topics (id,
// configs, replica assignment), each partition's leader and leader epoch,
// the next producer-id block and the mirror's edge sessions — and the raft
// leader acts as the controller (Kafka's KRaft combined mode: a metadata
// quorum decides, brokers serve data).
//
// What it owns:
//   - image.go: the image and its read-only queries (Image, Broker, Topic,
//     PartitionState, MirrorSession).
//   - commands.go: the versioned records applied to the image, and the
//     deterministic rules each follows (a record that breaks a rule changes
//     nothing and answers an error).
//   - fsm.go: the raft.FSM: apply, snapshot (the whole image as JSON),
//     restore, and the applied index callers wait on.
//   - placement.go: where a new topic's partitions go (spread over the
//     unfenced brokers, least loaded first; one edge's mirrored topics kept
//     together).
//   - controller.go: what the raft leader does: broker liveness from
//     heartbeats on its own monotonic clock (a new controller grants every
//     broker a fresh session timeout), fencing the silent, unfencing the
//     returning.
//   - raft.go: the raft node: bbolt log and stable store (raft-boltdb), file
//     snapshots, a static voter set bootstrapped once, proposals with a
//     deadline.
//   - transport.go: the stream layer raft speaks over (TLS when given one).
//
// Leadership is decided inside the image, deterministically: fencing a
// broker moves the leadership of each partition it led to the next unfenced
// replica (none at replication factor 1: the partition is offline, leader
// -1) and bumps the partition's leader epoch; unfencing gives an offline
// partition back to its first unfenced replica. So every node computes the
// same leaders from the same records, and a change of leader is never a
// message of our own.
//
// What it must never do: touch log segment files (only package log does),
// import a front end (ingest/*) or the mirror (they ask the node, which asks
// this package), read the wall clock inside Apply (records carry what they
// need; Apply must give every node the same image), or invent a consensus
// protocol (raft is the library's).
package cluster
