package edge

import (
	"context"
	"errors"
	"fmt"
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
	var offsets kafka.OffsetsLog = kafka.LogOffsets{Log: n.log}
	if n.replicas != nil {
		offsets = replicatedOffsets{log: n.log, replicas: n.replicas}
	}
	err := n.groups.Replicate(kafka.GroupsReplication{Log: offsets, Cluster: view, NodeID: co.NodeID,
		SnapshotBytes: co.OffsetsSnapshotBytes})
	if err != nil {
		return err
	}
	n.offsetsImport = n.groups.ImportPending()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.ensureOffsetsTopic(n.clusterCtx)
	}()
	return nil
}

// offsetsImportEndpoint marks, among a broker's registered endpoints, a
// node with kafka-groups.db offsets to import: the other nodes leave the
// offsets topic's creation to it while it is live, so it leads every
// partition and imports into each.
const offsetsImportEndpoint = "offsets-import"

// offsetsCreateGrace is how long a node with nothing to import waits for
// every voter to register before creating the offsets topic: a node that
// has offsets to import registers the endpoint above, and the others must
// see it before they create the topic in its place.
const offsetsCreateGrace = 30 * time.Second

// votersRegistered says whether every voter has registered as a broker
// (fenced or not).
func (n *Node) votersRegistered() bool {
	all := true
	n.cluster.FSM().View(func(im *cluster.Image) {
		for _, v := range n.opts.Cluster.Voters {
			all = all && im.Brokers[v.ID] != nil
		}
	})
	return all
}

// importerElsewhere is a broker other than this one that has offsets to
// import: live, or fenced (perhaps only just registered) within the grace.
func (n *Node) importerElsewhere(inGrace bool) bool {
	found := false
	n.cluster.FSM().View(func(im *cluster.Image) {
		for _, id := range im.BrokerIDs(false) {
			b := im.Brokers[id]
			if id != n.opts.Cluster.NodeID && b.Endpoints[offsetsImportEndpoint] != "" && (!b.Fenced || inGrace) {
				found = true
			}
		}
	})
	return found
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
	begin := time.Now()
	for {
		exists := false
		changed := n.cluster.FSM().Changed()
		n.cluster.FSM().View(func(im *cluster.Image) { exists = im.Topics[offsetsTopic] != nil })
		if exists {
			return
		}
		inGrace := time.Since(begin) < offsetsCreateGrace
		if n.importerElsewhere(inGrace) || !n.offsetsImport && !n.votersRegistered() && inGrace {
			select {
			case <-ctx.Done():
				return
			case <-changed:
			case <-time.After(time.Second):
			}
			continue
		}
		r := cluster.Record{Op: cluster.OpCreateTopic, Topic: offsetsTopic, Count: int64(parts), ReplicationFactor: co.OffsetsReplicationFactor}
		var err error
		if n.groups.ImportPending() {
			r.Count, r.ReplicationFactor = 0, 0
			r.Assignment, err = n.leadingAssignment(parts, co.OffsetsReplicationFactor)
		}
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			var res cluster.Result
			res, err = n.cluster.Propose(pctx, r)
			cancel()
			if err == nil {
				err = res.Err
			}
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

// leadingAssignment places every partition on this broker first (its
// leader) and on rf-1 other live brokers in turn (rf 0: the cluster's
// default): a node alone grown into node 1 of a cluster imports its
// kafka-groups.db offsets into every partition as their first leader.
func (n *Node) leadingAssignment(parts, rf int32) ([][]int32, error) {
	self := n.opts.Cluster.NodeID
	var out [][]int32
	var err error
	n.cluster.FSM().View(func(im *cluster.Image) {
		if rf <= 0 {
			rf = max(im.Defaults.ReplicationFactor, 1)
		}
		var others []int32
		for _, id := range im.BrokerIDs(true) {
			if id != self {
				others = append(others, id)
			}
		}
		if im.Brokers[self] == nil || int(rf)-1 > len(others) {
			err = fmt.Errorf("%w: replication factor %d, %d other live broker(s)", cluster.ErrNotEnoughBrokers, rf, len(others))
			return
		}
		for i := range parts {
			rs := []int32{self}
			for j := range rf - 1 {
				rs = append(rs, others[(int(i)+int(j))%len(others)])
			}
			out = append(out, rs)
		}
	})
	return out, err
}

// offsetsTopic is Kafka's internal topic of committed offsets.
const offsetsTopic = "__consumer_offsets"
