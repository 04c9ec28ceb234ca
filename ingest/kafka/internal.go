package kafka

import (
	"errors"
	"fmt"

	flog "ferry/log"
)

// The internal offsets topic.
//
// Kafka keeps committed offsets in the internal topic __consumer_offsets, and
// clients rely on seeing it reported as internal: regex subscriptions skip
// internal topics, topic listings hide them.
//
// A node alone keeps committed offsets in bbolt (kafka-groups.db), not in a
// log, so when a group coordinator is configured Metadata reports
// __consumer_offsets as an internal topic with no partitions, which is what
// it is there: a name for where offsets live, with no records to read. Fetch
// and ListOffsets of any of its partitions answer UNKNOWN_TOPIC_OR_PARTITION
// (there are none); producing to it, creating it, deleting it, growing it and
// altering its configs are refused with INVALID_TOPIC_EXCEPTION or
// TOPIC_ALREADY_EXISTS and a message saying why. A topic of that name that
// already exists in a node alone's log (auto-created by a ferry that
// predates this) keeps its partitions and data, readable and deletable, but
// is reported as internal and cannot be produced to.
//
// In a cluster (Groups.Replicate) it is a real topic, created through the
// controller by the node (edge) with --offsets-topic-partitions partitions
// at the cluster's default replication factor, and the coordinators' records
// live in it (offsetslog.go for their format, groupsrepl.go for loading,
// snapshots and the start's advance): reported internal with its
// partitions and leaders, readable like any topic (Fetch, ListOffsets), but
// producing to it, deleting it, growing it (a group's partition is its hash
// modulo the count) and altering its configs are refused as above. Only
// the coordinator appends to it, directly to the log.

// offsetsTopic is Kafka's internal topic for committed offsets.
const offsetsTopic = "__consumer_offsets"

// errOffsetsTopic explains every refusal of an operation on the offsets topic.
var errOffsetsTopic = fmt.Errorf("%w: %s is internal; only the group coordinators write it (a node alone keeps committed offsets in kafka-groups.db)", flog.ErrInvalidTopic, offsetsTopic)

// isInternalTopic reports whether Metadata marks a topic internal.
func (s *Server) isInternalTopic(name string) bool {
	return name == offsetsTopic && s.opts.Groups != nil
}

// virtualOffsetsTopic reports whether name is the offsets topic as ferry
// reports it with no partitions (no log topic of that name exists).
func (s *Server) virtualOffsetsTopic(name string) bool {
	if !s.isInternalTopic(name) {
		return false
	}
	_, err := s.log.Topic(name)
	return errors.Is(err, flog.ErrUnknownTopic)
}

// offsetsTopicInfo is the virtual offsets topic: no partitions, no id (the
// zero id is Kafka's "no topic id").
func offsetsTopicInfo() flog.TopicInfo {
	return flog.TopicInfo{Name: offsetsTopic}
}

// frozenOffsetsTopic reports whether name is the offsets topic in a form
// no client may delete, grow or reconfigure: the virtual one of a node
// alone, or the real one of a cluster's replicated coordinators.
func (s *Server) frozenOffsetsTopic(name string) bool {
	if s.virtualOffsetsTopic(name) {
		return true
	}
	_, repl := s.opts.Groups.storeOf().(*replStore)
	return name == offsetsTopic && s.opts.Groups != nil && repl
}

// refuseCreate is the error for creating the offsets topic, nil for any
// other name: it exists already when a coordinator is configured, and the
// name is reserved otherwise.
func (s *Server) refuseCreate(name string) error {
	switch {
	case name != offsetsTopic:
		return nil
	case s.opts.Groups != nil:
		return fmt.Errorf("%w: %s is internal; ferry keeps committed offsets in kafka-groups.db", flog.ErrTopicExists, offsetsTopic)
	default:
		return fmt.Errorf("%w: %s is reserved for committed offsets", flog.ErrInvalidTopic, offsetsTopic)
	}
}
