package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"ferry/edge/cluster"
	"ferry/edge/replica"
	"ferry/ingest/kafka"
	flog "ferry/log"
)

// ClusterOptions make a `ferry full` node one of a cluster's voters
// (edge/cluster): the raft leader is the controller, every node a broker.
type ClusterOptions struct {
	// NodeID is this node's id among Voters; it is also its Kafka broker
	// id.
	NodeID int32
	// Voters is the static voter set, this node included.
	Voters []cluster.Voter
	// ListenAddr is the cluster listener's address; empty means this
	// node's address in Voters.
	ListenAddr string
	// ServerTLS and ClientTLS secure the cluster listener both ways
	// (mutual TLS); without them it listens on loopback only.
	ServerTLS, ClientTLS *tls.Config
	// HeartbeatInterval and SessionTimeout: cluster.Default* when 0.
	HeartbeatInterval, SessionTimeout time.Duration
	// TopicTimeout bounds a topic change applied through the controller
	// (0: 30 s, Kafka's default request timeout).
	TopicTimeout time.Duration
	Rack         string
	// DefaultReplicationFactor and MinInsyncReplicas are the topic
	// defaults this node sets while it is the controller (0:
	// min(3, voters) and min(2, replication factor)).
	DefaultReplicationFactor, MinInsyncReplicas int32
	// DurableFollowers and ReplicaLagTime are the replica manager's
	// (replica.Options): acks=all waits for every in-sync replica's fsync;
	// a follower behind this long leaves the in-sync set (0: 30 s).
	DurableFollowers bool
	ReplicaLagTime   time.Duration
	// Join: this node joins a running cluster (no bootstrap; a voter adds
	// it with `ferry cluster add-voter`).
	Join bool
	// OffsetsPartitions and OffsetsReplicationFactor shape the
	// __consumer_offsets topic when this node creates it (0:
	// DefaultOffsetsPartitions; the cluster's default replication
	// factor, Kafka's offsets.topic.replication.factor). Give every node
	// the same. OffsetsSnapshotBytes: kafka.GroupsReplication's (0: its
	// default).
	OffsetsPartitions, OffsetsReplicationFactor int32
	OffsetsSnapshotBytes                        int64

	raft func(*raft.Config) // tests: shorter raft timeouts
}

func (o *ClusterOptions) self() (cluster.Voter, error) {
	for _, v := range o.Voters {
		if v.ID == o.NodeID {
			return v, nil
		}
	}
	return cluster.Voter{}, fmt.Errorf("cluster: node id %d is not among the voters", o.NodeID)
}

// startCluster joins the metadata quorum before any front end serves: the
// Kafka front end is given the cluster's view and topic admin. The node's
// local topics the cluster does not know are imported (a single node
// becoming node 1), and the local log follows the metadata from then on.
func (n *Node) startCluster() error {
	co := n.opts.Cluster
	if co == nil {
		return nil
	}
	if n.opts.KafkaAddr == "" {
		return errors.New("cluster: a cluster node needs its Kafka listener")
	}
	self, err := co.self()
	if err != nil {
		return err
	}
	addr := co.ListenAddr
	if addr == "" {
		addr = self.Addr
	}
	n.clusterTr, err = cluster.Listen(addr, co.ServerTLS, co.ClientTLS, n.logger)
	if err != nil {
		return fmt.Errorf("cluster listener: %w", err)
	}
	// Peers reach this node at its voter address (a proxy or a wildcard
	// bind may stand between): raft tells them that one.
	n.clusterTr.Advertise(self.Addr)
	n.cluster, err = cluster.Open(cluster.Config{
		NodeID: co.NodeID, Addr: self.Addr, Voters: co.Voters, Dir: filepath.Join(n.opts.DataDir, "cluster"),
		Transport: n.clusterTr.Raft(), Caller: n.clusterTr, Endpoints: n.clusterEndpoints, Rack: co.Rack,
		HeartbeatInterval: co.HeartbeatInterval, SessionTimeout: co.SessionTimeout, Raft: co.raft, Logger: n.logger,
		DefaultReplicationFactor: co.DefaultReplicationFactor, MinInsyncReplicas: co.MinInsyncReplicas, CleanShutdown: n.log.CleanShutdown(),
		Join: co.Join,
	})
	if err != nil {
		return err
	}
	n.clusterTr.Handle(n.cluster.Serve)
	ctx, cancel := context.WithCancel(context.Background())
	n.stopCluster, n.clusterCtx = cancel, ctx
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		n.cluster.Apply(ctx, n.log)
	}()
	go func() {
		defer n.wg.Done()
		if err := n.cluster.Import(ctx, n.log); err != nil && ctx.Err() == nil {
			n.logger.Error("cluster: local topics not imported", "err", err)
		}
	}()
	n.registry.MustRegister(n.cluster.Collector())
	// The replica manager starts once the Kafka front end that serves
	// its followers' fetches exists (startReplicas).
	n.replicas, err = replica.New(replica.Options{Log: n.log, Metadata: replicaMetadata{c: n.cluster, tr: n.clusterTr},
		Logger: n.logger, ReplicaLagTime: co.ReplicaLagTime, DurableFollowers: co.DurableFollowers, Registerer: n.registry})
	if err != nil {
		return fmt.Errorf("replica manager: %w", err)
	}
	n.logger.Info("cluster: joined the voters", "node", co.NodeID, "addr", n.clusterTr.Addr().String(), "voters", len(co.Voters))
	return nil
}

// clusterEndpoints are what this broker registers: where clients reach it;
// nil until the node is ready, so a node still starting leads nothing.
func (n *Node) clusterEndpoints() map[string]string {
	if !n.ready.Load() {
		return nil
	}
	eps := map[string]string{}
	if n.kafka != nil && n.kafkaLn != nil {
		eps["kafka"] = n.kafka.AdvertisedAddr()
	}
	if n.mirrorLn != nil {
		eps["mirror"] = n.mirrorLn.Addr().String()
	}
	if n.offsetsImport {
		eps[offsetsImportEndpoint] = "pending" // clustergroups.go
	}
	return eps
}

// clusterProducerIDs makes the Kafka front end's producer ids come from
// the cluster's metadata in blocks, above any this node handed out alone.
func (n *Node) clusterProducerIDs() error {
	floor, err := n.ids.Floor()
	if err != nil {
		return err
	}
	reserve := func(count int64) (int64, error) {
		ctx, cancel := n.clusterTopics().ctx()
		defer cancel()
		if floor > 0 {
			res, err := n.cluster.Propose(ctx, cluster.Record{Op: cluster.OpProducerIDFloor, Count: floor})
			if err == nil {
				err = res.Err
			}
			if err != nil {
				return 0, topicError(err)
			}
			floor = 0 // raised once; later blocks are above it
		}
		res, err := n.cluster.Propose(ctx, cluster.Record{Op: cluster.OpAllocProducerIDs, Count: count})
		if err == nil {
			err = res.Err
		}
		return res.Value, topicError(err)
	}
	n.ids.UseBlocks(reserve)
	return nil
}

// topicAdmin is where the node's topic changes go: the cluster's
// controller in a cluster, else the log.
func (n *Node) topicAdmin() kafka.TopicAdmin {
	if n.cluster != nil {
		return n.clusterTopics()
	}
	return n.log
}

// clusterTopics is the cluster's topic admin for this node's front ends.
func (n *Node) clusterTopics() clusterTopics {
	return clusterTopics{c: n.cluster, log: n.log, timeout: n.opts.Cluster.TopicTimeout}
}

// startReplicas hands the cluster listener's replica streams to the Kafka
// front end (followers fetch there, as brokers) and starts the replica
// manager: leaders, followers' fetchers, the high watermarks.
func (n *Node) startReplicas() {
	if n.replicas == nil || n.kafka == nil {
		return
	}
	n.clusterTr.HandleReplica(n.kafka.ServeReplica)
	n.replicas.Start()
}

// shutDownLeaderships is a controlled shutdown (Kafka's): before this node
// stops serving, the controller moves its leaderships to in-sync
// replicas, so producers fail over at once instead of after the session
// timeout. Bounded: a node that cannot reach a controller stops anyway.
func (n *Node) shutDownLeaderships() {
	if n.cluster == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(n.opts.ShutdownTimeout, 10*time.Second))
	defer cancel()
	if err := n.cluster.ShutdownLeaderships(ctx); err != nil {
		n.logger.Warn("cluster: leaderships not moved before stopping (they move at the session timeout)", "err", err)
	}
}

// closeReplicas stops the fetchers and checkpoints the high watermarks,
// before the log closes.
func (n *Node) closeReplicas() {
	if n.replicas == nil {
		return
	}
	if err := n.replicas.Close(); err != nil {
		n.logger.Error("closing the replica manager", "err", err)
	}
}

// closeCluster leaves the quorum (after stopCluster and the node's
// goroutines have ended).
func (n *Node) closeCluster() error {
	var err error
	if n.cluster != nil {
		err = n.cluster.Close()
	}
	if n.clusterTr != nil {
		err = errors.Join(err, n.clusterTr.Close())
	}
	return err
}

// Cluster is the node's cluster membership (nil for a node alone).
func (n *Node) Cluster() *cluster.Node { return n.cluster }

// kafkaClusterView is the cluster's metadata as the Kafka front end asks
// for it.
type kafkaClusterView struct{ c *cluster.Node }

func brokerOf(b *cluster.Broker) (kafka.Broker, bool) {
	ep := b.Endpoints["kafka"]
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		return kafka.Broker{}, false
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return kafka.Broker{}, false
	}
	kb := kafka.Broker{ID: b.ID, Host: host, Port: int32(p)}
	if b.Rack != "" {
		rack := b.Rack
		kb.Rack = &rack
	}
	return kb, true
}

func (v kafkaClusterView) Brokers() []kafka.Broker {
	var out []kafka.Broker
	v.c.FSM().View(func(im *cluster.Image) {
		for _, id := range im.BrokerIDs(true) {
			if kb, ok := brokerOf(im.Brokers[id]); ok {
				out = append(out, kb)
			}
		}
	})
	return out
}

func (v kafkaClusterView) Controller() int32 {
	id, _ := v.c.Controller()
	return id
}

func (v kafkaClusterView) Partition(topic string, partition int32) (kafka.PartitionView, bool) {
	var pv kafka.PartitionView
	ok := false
	v.c.FSM().View(func(im *cluster.Image) {
		t := im.Topics[topic]
		if t == nil || partition < 0 || int(partition) >= len(t.Partitions) {
			return
		}
		p := t.Partitions[partition]
		ok = true
		pv.Leader, pv.LeaderEpoch = p.Leader, p.LeaderEpoch
		pv.Replicas = append([]int32(nil), p.Replicas...)
		pv.ISR = append([]int32{}, p.ISR...)
		for _, r := range p.Replicas {
			if b := im.Brokers[r]; b == nil || b.Fenced {
				pv.Offline = append(pv.Offline, r)
			}
		}
	})
	return pv, ok
}

// Coordinator: a group is coordinated by the leader of its partition of
// the __consumer_offsets topic (kafka.OffsetsPartition: Kafka's hash), not
// available while the topic does not exist yet or the partition has no
// leader. The coordinator answers COORDINATOR_LOAD_IN_PROGRESS itself
// until it has loaded the partition.
func (v kafkaClusterView) Coordinator(group string) (kafka.Broker, bool) {
	var kb kafka.Broker
	ok := false
	v.c.FSM().View(func(im *cluster.Image) {
		t := im.Topics[offsetsTopic]
		if t == nil || len(t.Partitions) == 0 {
			return
		}
		p := t.Partitions[kafka.OffsetsPartition(group, int32(len(t.Partitions)))]
		b := im.Brokers[p.Leader]
		if p.Leader == cluster.NoLeader || b == nil || b.Fenced {
			return
		}
		kb, ok = brokerOf(b)
	})
	return kb, ok
}

// Changed is closed at the next change of the metadata (the coordinator
// follows its offsets partitions' leadership by it).
func (v kafkaClusterView) Changed() <-chan struct{} { return v.c.FSM().Changed() }

// clusterTopics applies topic changes through the controller and returns
// once this node's log shows them: the Kafka front end's TopicAdmin, the
// admin API's and the mirror receiver's, in a cluster.
type clusterTopics struct {
	c       *cluster.Node
	log     *flog.Log
	timeout time.Duration
	// group names the placement group of a new topic (a mirrored topic's
	// edge), or "".
	group func(topic string) string
}

func (t clusterTopics) ctx() (context.Context, context.CancelFunc) {
	d := t.timeout
	if d <= 0 {
		d = 30 * time.Second
	}
	return context.WithTimeout(context.Background(), d)
}

// propose applies r and waits until the local log followed it.
func (t clusterTopics) propose(r cluster.Record) error {
	ctx, cancel := t.ctx()
	defer cancel()
	res, err := t.c.Propose(ctx, r)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		return topicError(err)
	}
	return t.c.WaitReconciled(ctx, res.Index)
}

// topicError gives the front ends the log's and Kafka's errors for the
// cluster's.
func topicError(err error) error {
	switch {
	case errors.Is(err, cluster.ErrTopicExists):
		return fmt.Errorf("%w: %v", flog.ErrTopicExists, err)
	case errors.Is(err, cluster.ErrUnknownTopic):
		return fmt.Errorf("%w: %v", flog.ErrUnknownTopic, err)
	case errors.Is(err, cluster.ErrNotEnoughBrokers):
		return fmt.Errorf("%w: %v", kafka.ErrReplicationFactor, err)
	case errors.Is(err, cluster.ErrInvalidAssignment):
		return fmt.Errorf("%w: %v", flog.ErrInvalidPartitions, err)
	case errors.Is(err, cluster.ErrNoController):
		return fmt.Errorf("%w: %v", kafka.ErrNoController, err)
	}
	return err
}

// CreateTopic creates a topic at the cluster's default replication
// factor (auto-creation, the admin API).
func (t clusterTopics) CreateTopic(name string, partitions int32, configs map[string]string) (flog.TopicInfo, error) {
	return t.CreateTopicReplicated(name, partitions, 0, configs)
}

// CreateTopicReplicated creates a topic with replicationFactor replicas
// of each partition, placed by the controller (0: the cluster's default).
func (t clusterTopics) CreateTopicReplicated(name string, partitions, replicationFactor int32, configs map[string]string) (flog.TopicInfo, error) {
	if err := flog.ValidateTopicName(name); err != nil {
		return flog.TopicInfo{}, err
	}
	if partitions <= 0 {
		return flog.TopicInfo{}, fmt.Errorf("%w: %d", flog.ErrInvalidPartitions, partitions)
	}
	if err := flog.ValidateConfigs(configs); err != nil {
		return flog.TopicInfo{}, err
	}
	group := ""
	if t.group != nil {
		group = t.group(name)
	}
	err := t.propose(cluster.Record{Op: cluster.OpCreateTopic, Topic: name, Count: int64(partitions), ReplicationFactor: replicationFactor, Configs: configs, Group: group})
	if err != nil {
		return flog.TopicInfo{}, err
	}
	return t.log.Topic(name)
}

// CreateTopicAssigned is CreateTopic with the replicas CreateTopics named
// (the controller checks they are registered brokers).
func (t clusterTopics) CreateTopicAssigned(name string, assignment [][]int32, configs map[string]string) (flog.TopicInfo, error) {
	if err := flog.ValidateTopicName(name); err != nil {
		return flog.TopicInfo{}, err
	}
	if err := flog.ValidateConfigs(configs); err != nil {
		return flog.TopicInfo{}, err
	}
	if err := t.propose(cluster.Record{Op: cluster.OpCreateTopic, Topic: name, Configs: configs, Assignment: assignment}); err != nil {
		return flog.TopicInfo{}, err
	}
	return t.log.Topic(name)
}

func (t clusterTopics) DeleteTopic(name string) error {
	return t.propose(cluster.Record{Op: cluster.OpDeleteTopic, Topic: name})
}

func (t clusterTopics) AddPartitions(name string, total int32) error {
	var have int32 = -1
	t.c.FSM().View(func(im *cluster.Image) {
		if tp := im.Topics[name]; tp != nil {
			have = int32(len(tp.Partitions))
		}
	})
	if have < 0 {
		return fmt.Errorf("%w: %q", flog.ErrUnknownTopic, name)
	}
	if total <= have {
		return fmt.Errorf("%w: %q has %d partitions, asked for %d (partitions are only ever added)", flog.ErrInvalidPartitions, name, have, total)
	}
	return t.propose(cluster.Record{Op: cluster.OpCreatePartitions, Topic: name, Count: int64(total - have)})
}

func (t clusterTopics) AlterConfigs(name string, set map[string]string, remove []string) error {
	if err := flog.ValidateConfigs(set); err != nil {
		return err
	}
	return t.propose(cluster.Record{Op: cluster.OpAlterConfigs, Topic: name, Configs: set, Delete: remove})
}

// mirrorCluster places the mirror receiver in the cluster: an edge's
// copies live together on one node, its home (where its topics' leaders
// are; for a new edge, the node it first connects to), and only that node
// receives it. An edge at another node is refused with its home's mirror
// address, and tries the next address of its --mirror-to list.
type mirrorCluster struct {
	n      *Node
	topics clusterTopics
}

func (m mirrorCluster) Admit(edge string) (int64, error) {
	self := m.n.opts.Cluster.NodeID
	var refuse error
	m.n.cluster.FSM().View(func(im *cluster.Image) {
		for _, name := range im.TopicNames() {
			t := im.Topics[name]
			if t.Group != edge {
				continue
			}
			for _, p := range t.Partitions {
				switch {
				case p.Leader == self:
				case p.Leader == cluster.NoLeader:
					refuse = fmt.Errorf("edge %q: its copies are on node %d, which is down (a cluster of replication factor 1); retry later", edge, p.Replicas[0])
				default:
					addr := "?"
					if b := im.Brokers[p.Leader]; b != nil {
						addr = b.Endpoints["mirror"]
					}
					refuse = fmt.Errorf("edge %q ships to node %d of this cluster (mirror at %s), where its copies are", edge, p.Leader, addr)
				}
				if refuse != nil {
					return
				}
			}
		}
	})
	if refuse != nil {
		return 0, refuse
	}
	ctx, cancel := m.topics.ctx()
	defer cancel()
	res, err := m.n.cluster.Propose(ctx, cluster.Record{Op: cluster.OpMirrorSession, Edge: edge, Broker: self})
	if err == nil {
		err = res.Err
	}
	return res.Value, err
}

func (m mirrorCluster) Current(edge string, epoch int64) bool {
	ok := false
	self := m.n.opts.Cluster.NodeID
	m.n.cluster.FSM().View(func(im *cluster.Image) {
		s := im.Mirror[edge]
		ok = s != nil && s.Epoch == epoch && s.Node == self
	})
	return ok
}

func (m mirrorCluster) CreateTopic(edge, name string, partitions int32, configs map[string]string) (flog.TopicInfo, error) {
	t := m.topics
	t.group = func(string) string { return edge }
	return t.CreateTopic(name, partitions, configs)
}

func (m mirrorCluster) AddPartitions(name string, total int32) error {
	return m.topics.AddPartitions(name, total)
}

func (m mirrorCluster) Leads(topic string, partition int32) bool {
	pv, ok := kafkaClusterView{m.n.cluster}.Partition(topic, partition)
	return ok && pv.Leader == m.n.opts.Cluster.NodeID
}
