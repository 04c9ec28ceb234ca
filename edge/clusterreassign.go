package edge

import (
	"errors"
	"fmt"

	"ferry/edge/adminapi"
	"ferry/edge/cluster"
	"ferry/ingest/kafka"
)

// ReassignPartition makes the cluster's topic admin a kafka.Reassigner:
// AlterPartitionReassignments goes through the controller.
func (t clusterTopics) ReassignPartition(topic string, partition int32, replicas []int32, cancel bool) error {
	ctx, done := t.ctx()
	defer done()
	return reassignError(t.c.ReassignPartition(ctx, topic, partition, replicas, cancel))
}

// Reassignments are the partitions under reassignment in this node's
// image.
func (t clusterTopics) Reassignments() []kafka.Reassignment {
	var out []kafka.Reassignment
	for _, r := range t.c.Image().Reassignments() {
		out = append(out, kafka.Reassignment{Topic: r.Topic, Partition: r.Partition, Replicas: r.Replicas, Adding: r.Adding, Removing: r.Removing})
	}
	return out
}

// reassignError gives the Kafka front end its errors for the cluster's.
func reassignError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, cluster.ErrInvalidAssignment):
		return fmt.Errorf("%w: %v", kafka.ErrInvalidReplicaAssignment, err)
	case errors.Is(err, cluster.ErrNoReassignment):
		return fmt.Errorf("%w: %v", kafka.ErrNoReassignment, err)
	}
	return topicError(err)
}

var _ kafka.Reassigner = clusterTopics{}
var _ adminapi.ClusterAdmin = (*cluster.Node)(nil)
