package edge

import (
	"context"
	"errors"
	"time"

	"ferry/edge/cluster"
	"ferry/ingest/kafka"
)

// DefaultOffsetsPartitions is the offsets topic's partition count in a
// cluster (Kafka's offsets.topic.num.partitions is 50). A center has 3 to 5
// nodes, and the topic exists on every node (the applier creates every
// topic everywhere), each partition a directory, open segment files and a
// flusher goroutine per node: 10 partitions still spread the coordinators
// over every node of a cluster up to 10, while costing a fifth of Kafka's
// count, and the count can never change afterwards (a group's partition is
// its hash modulo the count).
const DefaultOffsetsPartitions = 10

// startClusterGroups makes the Kafka front end's group coordinator the
// cluster's (kafka.Groups.Replicate): committed offsets in the
// __consumer_offsets topic, a group coordinated by the leader of its
// partition (kafkaClusterView.Coordinator). The topic is created through
// the controller by whichever node gets there first, once enough brokers
// are registered for its replication factor.
func (n *Node) startClusterGroups(view kafkaClusterView) error {
	co := n.opts.Cluster
	err := n.groups.Replicate(kafka.GroupsReplication{Log: kafka.LogOffsets{Log: n.log}, Cluster: view, NodeID: co.NodeID,
		SnapshotBytes: co.OffsetsSnapshotBytes})
	if err != nil {
		return err
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.ensureOffsetsTopic(n.clusterCtx)
	}()
	return nil
}

// ensureOffsetsTopic creates the offsets topic unless the cluster has it,
// retrying (no controller yet, too few brokers) until it exists or ctx
// ends.
func (n *Node) ensureOffsetsTopic(ctx context.Context) {
	co := n.opts.Cluster
	parts := co.OffsetsPartitions
	if parts <= 0 {
		parts = DefaultOffsetsPartitions
	}
	for {
		exists := false
		changed := n.cluster.FSM().Changed()
		n.cluster.FSM().View(func(im *cluster.Image) { exists = im.Topics[offsetsTopic] != nil })
		if exists {
			return
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := n.cluster.Propose(pctx, cluster.Record{Op: cluster.OpCreateTopic, Topic: offsetsTopic,
			Count: int64(parts), ReplicationFactor: co.OffsetsReplicationFactor})
		cancel()
		if err == nil {
			err = res.Err
		}
		if err == nil || errors.Is(err, cluster.ErrTopicExists) {
			if err == nil {
				n.logger.Info("cluster: offsets topic created", "topic", offsetsTopic, "partitions", parts)
			}
			return
		}
		n.logger.Debug("cluster: offsets topic not created yet; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(time.Second):
		}
	}
}

// offsetsTopic is Kafka's internal topic of committed offsets.
const offsetsTopic = "__consumer_offsets"
