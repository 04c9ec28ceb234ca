package cluster

import (
	"encoding/json"
	"errors"
	"fmt"

	"ferry/devices"
)

// recordVersion is the version of the records this code writes. A node
// applying a record of a newer version stops with an error rather than
// guessing (a mixed-version cluster upgrades its oldest members first).
//
// Version 2 added ISR/ELR (alter_partition, controlled_shutdown,
// cluster_defaults, clean_shutdown on register_broker); a version 1
// record means the same under version 2's rules.
//
// Version 3 added reassign_partitions and a partition's adding and
// removing replicas (reassign.go): a version 2 node would refuse the
// record and keep another image.
const recordVersion = 3

// Op names a record's kind.
type Op string

// The records. Each is applied by (*Image).apply under the rules written
// beside its case.
const (
	OpRegisterBroker   Op = "register_broker"
	OpFenceBroker      Op = "fence_broker"
	OpUnfenceBroker    Op = "unfence_broker"
	OpCreateTopic      Op = "create_topic"
	OpDeleteTopic      Op = "delete_topic"
	OpCreatePartitions Op = "create_partitions"
	OpAlterConfigs     Op = "alter_configs"
	OpAllocProducerIDs Op = "alloc_producer_ids"
	OpProducerIDFloor  Op = "producer_id_floor"
	OpMirrorSession    Op = "mirror_session"
	// OpAlterPartition is Kafka's AlterPartition (KIP-497): a leader
	// changes its partition's ISR.
	OpAlterPartition Op = "alter_partition"
	// OpControlledShutdown is a broker about to stop asking that its
	// leaderships move first (Kafka's ControlledShutdown).
	OpControlledShutdown Op = "controlled_shutdown"
	// OpClusterDefaults sets the cluster's topic defaults (the
	// controller's --default-replication-factor and --min-insync-replicas).
	OpClusterDefaults Op = "cluster_defaults"
)

// Record is one entry of the metadata log: a version, an op and the fields
// that op uses. Fields an op does not use are left empty.
type Record struct {
	V  int `json:"v"`
	Op Op  `json:"op"`

	Broker      int32             `json:"broker,omitempty"`
	Incarnation uint64            `json:"incarnation,omitempty"`
	Endpoints   map[string]string `json:"endpoints,omitempty"`
	Rack        string            `json:"rack,omitempty"`

	Topic   string            `json:"topic,omitempty"`
	TopicID string            `json:"topic_id,omitempty"`
	Group   string            `json:"group,omitempty"`
	Configs map[string]string `json:"configs,omitempty"`
	// Delete lists config keys to remove (alter_configs).
	Delete []string `json:"delete,omitempty"`
	// Assignment is the replica list of each partition created
	// (create_topic: all of them; create_partitions: the new ones).
	Assignment [][]int32 `json:"assignment,omitempty"`

	// Count is a producer-id block's size (alloc_producer_ids) or, for a
	// proposal the controller places, the number of partitions.
	Count int64 `json:"count,omitempty"`
	// ReplicationFactor of a topic the controller places.
	ReplicationFactor int32  `json:"replication_factor,omitempty"`
	Edge              string `json:"edge,omitempty"`

	// CleanShutdown: the registering broker's previous run ended with a
	// clean shutdown (register_broker). False, the safe assumption, takes
	// it out of every ELR.
	CleanShutdown bool `json:"clean_shutdown,omitempty"`
	// Partition, LeaderEpoch, PartitionEpoch and ISR: alter_partition.
	Partition      int32   `json:"partition,omitempty"`
	LeaderEpoch    int32   `json:"leader_epoch,omitempty"`
	PartitionEpoch int32   `json:"partition_epoch,omitempty"`
	ISR            []int32 `json:"isr,omitempty"`
	// MinISR: cluster_defaults (with ReplicationFactor).
	MinISR int32 `json:"min_isr,omitempty"`
	// Target is the replica set a reassignment moves Partition to;
	// Cancel restores its original replicas instead
	// (reassign_partitions).
	Target []int32 `json:"target,omitempty"`
	Cancel bool    `json:"cancel,omitempty"`
	// Security is a security record's change (security.go).
	Security *SecurityChange `json:"security,omitempty"`
}

// Result is what applying a record answers the proposer.
type Result struct {
	// Err is the rule the record broke; nothing was changed.
	Err error
	// Value is the op's answer: the first producer id of a block, a mirror
	// session's epoch.
	Value int64
	// Index is the raft index the record was applied at (set by
	// Node.Propose, for WaitReconciled).
	Index uint64
	// ACLs are the bindings delete_acls removed.
	ACLs []devices.KafkaACL
}

// Errors a record's rules answer.
var (
	ErrTopicExists       = errors.New("cluster: topic already exists")
	ErrUnknownTopic      = errors.New("cluster: unknown topic")
	ErrUnknownBroker     = errors.New("cluster: unknown broker")
	ErrStaleIncarnation  = errors.New("cluster: record for an earlier incarnation of the broker")
	ErrInvalidAssignment = errors.New("cluster: invalid replica assignment")
	ErrInvalidRecord     = errors.New("cluster: invalid record")
	ErrInvalidConfig     = errors.New("cluster: invalid topic config")
	// ErrFencedLeaderEpoch: an AlterPartition from a broker that does not
	// lead the partition at the leader epoch it names (Kafka's
	// FENCED_LEADER_EPOCH): a deposed leader.
	ErrFencedLeaderEpoch = errors.New("cluster: fenced leader epoch")
	// ErrInvalidUpdateVersion: an AlterPartition at a partition epoch that
	// is not the partition's (Kafka's INVALID_UPDATE_VERSION): the
	// leader re-reads the partition and tries again.
	ErrInvalidUpdateVersion = errors.New("cluster: stale partition epoch")
	// ErrIneligibleReplica: an AlterPartition adding a broker that is not
	// registered, fenced or shutting down (Kafka's INELIGIBLE_REPLICA).
	ErrIneligibleReplica = errors.New("cluster: ineligible replica")
)

func encodeRecord(r Record) ([]byte, error) {
	r.V = recordVersion
	return json.Marshal(r)
}

func decodeRecord(b []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%w: %v", ErrInvalidRecord, err)
	}
	if r.V < 1 || r.V > recordVersion {
		return r, fmt.Errorf("%w: version %d (this node knows up to %d)", ErrInvalidRecord, r.V, recordVersion)
	}
	return r, nil
}

// apply changes the image by one record, deterministically: the same
// records in the same order give every node the same image. A record that
// breaks its rule changes nothing.
func (im *Image) apply(r Record) Result {
	switch r.Op {
	case OpRegisterBroker:
		// A (re)registration replaces the broker's endpoints and
		// incarnation and leaves it unfenced: the controller registers a
		// broker only when it has just heard from it. A new incarnation
		// means the previous run is gone: it leaves the ISRs first, as a
		// fenced broker does; after an unclean shutdown it leaves the
		// ELRs too. It is never put back into an ISR here.
		if r.Broker < 0 {
			return Result{Err: fmt.Errorf("%w: broker id %d", ErrInvalidRecord, r.Broker)}
		}
		old := im.Brokers[r.Broker]
		restarted := old == nil || old.Incarnation != r.Incarnation
		if old != nil && restarted {
			im.eachPartition(func(pr partitionRules, p *PartitionState) { pr.drop(p, r.Broker) })
		}
		if restarted && !r.CleanShutdown {
			im.eachPartition(func(pr partitionRules, p *PartitionState) { pr.forgetUnclean(p, r.Broker) })
		}
		nb := &Broker{ID: r.Broker, Incarnation: r.Incarnation, Endpoints: copyMap(r.Endpoints), Rack: r.Rack}
		if !restarted {
			nb.ShuttingDown = old.ShuttingDown
		}
		im.Brokers[r.Broker] = nb
		im.eachPartition(func(pr partitionRules, p *PartitionState) { pr.elect(p) })
	case OpFenceBroker, OpUnfenceBroker:
		// Only for the incarnation the controller observed: a fence
		// proposed before a broker restarted must not fence its new run.
		b := im.Brokers[r.Broker]
		if b == nil {
			return Result{Err: ErrUnknownBroker}
		}
		if b.Incarnation != r.Incarnation {
			return Result{Err: ErrStaleIncarnation}
		}
		b.Fenced = r.Op == OpFenceBroker
		if b.Fenced {
			im.eachPartition(func(pr partitionRules, p *PartitionState) { pr.leave(p, r.Broker) })
		} else {
			im.eachPartition(func(pr partitionRules, p *PartitionState) { pr.elect(p) })
		}
	case OpControlledShutdown:
		// The broker stays registered and unfenced until it stops, but
		// leaves every ISR (the last member stays) and leads nothing.
		b := im.Brokers[r.Broker]
		if b == nil {
			return Result{Err: ErrUnknownBroker}
		}
		if b.Incarnation != r.Incarnation {
			return Result{Err: ErrStaleIncarnation}
		}
		b.ShuttingDown = true
		im.eachPartition(func(pr partitionRules, p *PartitionState) { pr.leave(p, r.Broker) })
	case OpAlterPartition:
		return im.alterPartition(r)
	case OpReassignPartitions:
		return im.reassign(r)
	case OpClusterDefaults:
		if r.ReplicationFactor < 0 || r.ReplicationFactor > MaxReplicationFactor || r.MinISR < 0 || r.MinISR > MaxReplicationFactor {
			return Result{Err: fmt.Errorf("%w: defaults replication factor %d, min ISR %d", ErrInvalidRecord, r.ReplicationFactor, r.MinISR)}
		}
		im.Defaults = Defaults{ReplicationFactor: r.ReplicationFactor, MinInsyncReplicas: r.MinISR}
		im.eachPartition(func(pr partitionRules, p *PartitionState) { pr.settle(p) })
	case OpCreateTopic:
		if im.Topics[r.Topic] != nil {
			return Result{Err: ErrTopicExists}
		}
		if r.Topic == "" || r.TopicID == "" {
			return Result{Err: fmt.Errorf("%w: topic name and id are required", ErrInvalidRecord)}
		}
		if err := im.checkAssignment(r.Assignment, 0); err != nil {
			return Result{Err: err}
		}
		if err := checkTopicConfigs(r.Configs, int32(len(r.Assignment[0]))); err != nil {
			return Result{Err: err}
		}
		t := &Topic{Name: r.Topic, ID: r.TopicID, Configs: copyMap(r.Configs), Group: r.Group}
		im.addPartitions(t, r.Assignment)
		im.Topics[r.Topic] = t
	case OpDeleteTopic:
		t := im.Topics[r.Topic]
		if t == nil {
			return Result{Err: ErrUnknownTopic}
		}
		delete(im.Topics, r.Topic)
		im.Deleted[t.ID] = im.Index
	case OpCreatePartitions:
		t := im.Topics[r.Topic]
		if t == nil {
			return Result{Err: ErrUnknownTopic}
		}
		if err := im.checkAssignment(r.Assignment, t.ReplicationFactor()); err != nil {
			return Result{Err: err}
		}
		im.addPartitions(t, r.Assignment)
	case OpAlterConfigs:
		t := im.Topics[r.Topic]
		if t == nil {
			return Result{Err: ErrUnknownTopic}
		}
		if err := checkTopicConfigs(r.Configs, t.ReplicationFactor()); err != nil {
			return Result{Err: err}
		}
		if t.Configs == nil {
			t.Configs = map[string]string{}
		}
		for k, v := range r.Configs {
			t.Configs[k] = v
		}
		for _, k := range r.Delete {
			delete(t.Configs, k)
		}
		// A new min ISR may empty ELRs; unclean election just allowed
		// elects where no leader was.
		im.topicPartitions(t, func(pr partitionRules, p *PartitionState) { pr.settle(p) })
	case OpAllocProducerIDs:
		// A block of Count ids, from the first not yet handed out. Ids
		// are never handed out twice, whoever asks and whenever.
		if r.Count <= 0 || r.Count > 1<<20 {
			return Result{Err: fmt.Errorf("%w: producer id block of %d", ErrInvalidRecord, r.Count)}
		}
		first := im.NextProducerID
		im.NextProducerID += r.Count
		return Result{Value: first}
	case OpProducerIDFloor:
		// A node joining with ids of its own handed out: no block below
		// Count is handed out from now on.
		if r.Count < 0 {
			return Result{Err: fmt.Errorf("%w: producer id floor %d", ErrInvalidRecord, r.Count)}
		}
		im.NextProducerID = max(im.NextProducerID, r.Count)
	case OpMirrorSession:
		// The edge's new session gets the next epoch; every older session
		// of the edge, on whichever node, is fenced by it.
		if r.Edge == "" {
			return Result{Err: fmt.Errorf("%w: mirror session without an edge", ErrInvalidRecord)}
		}
		if im.Brokers[r.Broker] == nil {
			return Result{Err: ErrUnknownBroker}
		}
		s := im.Mirror[r.Edge]
		if s == nil {
			s = &MirrorSession{Edge: r.Edge}
			im.Mirror[r.Edge] = s
		}
		s.Epoch++
		s.Node = r.Broker
		return Result{Value: s.Epoch}
	default:
		if res, ok := im.applySecurity(r); ok {
			return res
		}
		return Result{Err: fmt.Errorf("%w: unknown op %q", ErrInvalidRecord, r.Op)}
	}
	return Result{}
}

// checkAssignment: every partition has at least one replica and at most
// MaxReplicationFactor, all of them as many as rf (when not 0) and as
// each other, no replica twice, every replica a registered broker.
func (im *Image) checkAssignment(a [][]int32, rf int32) error {
	if len(a) == 0 {
		return fmt.Errorf("%w: no partitions", ErrInvalidAssignment)
	}
	if rf == 0 {
		rf = int32(len(a[0]))
	}
	for i, replicas := range a {
		if len(replicas) == 0 {
			return fmt.Errorf("%w: partition %d has no replica", ErrInvalidAssignment, i)
		}
		if len(replicas) > MaxReplicationFactor {
			return fmt.Errorf("%w: partition %d has %d replicas (at most %d)", ErrInvalidAssignment, i, len(replicas), MaxReplicationFactor)
		}
		if int32(len(replicas)) != rf {
			return fmt.Errorf("%w: partition %d has %d replicas, the topic's others %d", ErrInvalidAssignment, i, len(replicas), rf)
		}
		seen := map[int32]bool{}
		for _, r := range replicas {
			if im.Brokers[r] == nil {
				return fmt.Errorf("%w: broker %d is not registered", ErrInvalidAssignment, r)
			}
			if seen[r] {
				return fmt.Errorf("%w: broker %d twice in partition %d", ErrInvalidAssignment, r, i)
			}
			seen[r] = true
		}
	}
	return nil
}

// addPartitions: a new partition is empty, so every live replica is in
// sync (every replica when none is live, as Kafka's controller does); its
// leader is the first of them.
func (im *Image) addPartitions(t *Topic, a [][]int32) {
	for _, replicas := range a {
		var isr []int32
		for _, r := range replicas {
			if im.Brokers[r].electable() {
				isr = append(isr, r)
			}
		}
		if isr == nil {
			isr = append(isr, replicas...)
		}
		p := PartitionState{Replicas: append([]int32(nil), replicas...), ISR: isr, Leader: NoLeader}
		t.Partitions = append(t.Partitions, p)
	}
	r := im.rulesFor(t)
	for i := len(t.Partitions) - len(a); i < len(t.Partitions); i++ {
		p := &t.Partitions[i]
		r.elect(p)
		p.LeaderEpoch, p.PartitionEpoch = 0, 0
	}
}
