// Package cluster is the metadata quorum of a ferry center: several
// `ferry full` nodes agree, through hashicorp/raft, on one metadata image —
// the brokers (id, incarnation, endpoints, fenced or not), the topics (id,
// configs, replica assignment), each partition's in-sync set, leader and
// epochs, the next producer-id block, the mirror's edge sessions, and the
// Kafka users (hashes and SCRAM credentials, never a password) and ACLs —
// and the raft leader acts as the controller (Kafka's KRaft combined mode:
// a metadata quorum decides, brokers serve data).
//
// What it owns:
//   - image.go: the image and its read-only queries (Image, Broker, Topic,
//     PartitionState, MirrorSession).
//   - commands.go: the versioned records applied to the image, and the
//     deterministic rules each follows (a record that breaks a rule changes
//     nothing and answers an error).
//   - fsm.go: the raft.FSM: apply, snapshot (the whole image as JSON),
//     restore, and the applied index callers wait on.
//   - security.go: the Kafka users and ACLs in the image, their records
//     (put_user, delete_user, set_scram, delete_scram, add_acls,
//     delete_acls, import_security once per broker), and the
//     SecurityApplier that makes a node's device registry follow them.
//   - placement.go: where a new topic's partitions go (spread over the
//     unfenced brokers, least loaded first; one edge's mirrored topics kept
//     together).
//   - controller.go: what the raft leader does: broker liveness from
//     heartbeats on its own monotonic clock (a new controller grants every
//     broker a fresh session timeout), fencing the silent, unfencing the
//     returning.
//   - raft.go: the raft node: bbolt log and stable store (raft-boltdb), file
//     snapshots, a static voter set bootstrapped once (not by a node that
//     joins), proposals with a deadline.
//   - elect.go: the partition state machine: ISR, KIP-966 eligible leader
//     replicas, AlterPartition, elections (its comment has the rules).
//   - reassign.go: KIP-455 partition reassignment (reassign_partitions:
//     start, replace, cancel; completed inside Apply by the record that
//     makes the ISR cover the target), and the plan of a replication-factor
//     change.
//   - voters.go: adding and removing raft voters through the controller
//     (AddVoter, RemoveServer), refusing to lose a live majority or a
//     broker's replicas.
//   - views.go: what the data path and the operators read (Replicas,
//     ClusterAddr, the replication counts and partition states).
//   - transport.go: the stream layer raft speaks over, the controller's
//     requests and the replica streams (TLS when given one).
//
// Leadership and the in-sync sets are decided inside the image,
// deterministically: fencing, restarting or shutting down a broker takes it
// out of the ISRs (the last member stays) and moves each partition it led
// to the first live ISR member, else a live eligible replica, else nobody
// (offline, leader -1), bumping the leader epoch; leaders change ISRs with
// AlterPartition records. So every node computes the same leaders from the
// same records, and a change of leader is never a message of our own.
//
// What it must never do: touch log segment files (only package log does),
// import a front end (ingest/*) or the mirror (they ask the node, which asks
// this package), read the wall clock inside Apply (records carry what they
// need; Apply must give every node the same image), or invent a consensus
// protocol (raft is the library's).
package cluster
