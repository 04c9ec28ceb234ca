package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Defaults for broker liveness: a heartbeat every half second, fenced after
// three seconds of silence (six heartbeats missed). Kafka's KRaft brokers
// default to 2 s and 9 s (broker.heartbeat.interval.ms,
// broker.session.timeout.ms); ferry's center is a few nodes on one network,
// and a killed leader's partitions move only when it is fenced, so the
// shorter session is what keeps a producer's unavailability on a leader's
// death under six seconds with a Kafka client's default 5 s metadata
// refresh (testbed's BenchmarkLeaderKillUnavailability). hashicorp/raft's
// own leader is suspected after 1 s.
const (
	DefaultHeartbeatInterval = 500 * time.Millisecond
	DefaultSessionTimeout    = 3 * time.Second
	DefaultProposeTimeout    = 10 * time.Second
)

// DefaultReplicationFactor is a cluster's default replication factor:
// three copies, as a demanding Kafka user expects of a cluster whose
// promise is that nothing acknowledged is lost (one node may be down for
// maintenance while another fails), or every voter when there are fewer.
func DefaultReplicationFactor(voters int) int32 { return int32(max(1, min(3, voters))) }

// DefaultMinInsyncReplicas is the default min.insync.replicas: two, so an
// acks=all record is on two nodes before it is acknowledged and one node's
// loss loses nothing, or the replication factor when it is smaller.
func DefaultMinInsyncReplicas(replicationFactor int32) int32 {
	return max(1, min(2, replicationFactor))
}

// Errors of the node.
var (
	// ErrNoController is returned while no controller is known (an
	// election is under way, or the quorum is lost).
	ErrNoController = errors.New("cluster: no controller")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("cluster: node closed")
)

// Voter is one member of the static voter set.
type Voter struct {
	ID   int32
	Addr string
}

// ParseVoters reads --cluster-voters: "1@h1:9500,2@h2:9500,3@h3:9500".
func ParseVoters(s string) ([]Voter, error) {
	var out []Voter
	seen := map[int32]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		idStr, addr, ok := strings.Cut(part, "@")
		id, err := strconv.ParseInt(idStr, 10, 32)
		if !ok || err != nil || id < 0 || addr == "" {
			return nil, fmt.Errorf("cluster: voter %q: want ID@HOST:PORT", part)
		}
		if seen[int32(id)] {
			return nil, fmt.Errorf("cluster: voter id %d twice", id)
		}
		seen[int32(id)] = true
		out = append(out, Voter{ID: int32(id), Addr: addr})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("cluster: no voters")
	}
	return out, nil
}

// Caller reaches another node's Serve (transport.go over the network; a
// map of nodes in tests).
type Caller interface {
	Call(ctx context.Context, addr string, req Request) (Response, error)
}

// Config is a node of the metadata quorum.
type Config struct {
	NodeID int32
	// Addr is this node's raft address as the voters list names it.
	Addr   string
	Voters []Voter
	// Dir holds raft.db (log and stable store) and snapshots/.
	Dir string
	// Transport carries raft; Caller the node's own requests (heartbeats,
	// forwarded proposals) to the controller.
	Transport raft.Transport
	Caller    Caller
	// Endpoints says where this broker serves (by listener name: "kafka",
	// "mirror"); Rack is what it registers as its rack. A broker registers
	// (heartbeats) only while Endpoints returns a non-nil map, so a node
	// still starting is not given partitions to lead.
	Endpoints func() map[string]string
	Rack      string
	// CleanShutdown says this run started after a clean shutdown of the
	// previous one (the log's knowledge). False, the safe assumption,
	// takes this broker out of every ELR when it registers.
	CleanShutdown bool
	// Join: this node joins a cluster that exists already, so it does not
	// bootstrap a voter set of its own; it waits until a voter adds it
	// (AddVoter, `ferry cluster add-voter`).
	Join bool

	// DefaultReplicationFactor and MinInsyncReplicas are the topic
	// defaults this node sets while it is the controller: 0 means
	// min(3, voters) and min(2, replication factor). A topic's own
	// min.insync.replicas wins; the default is capped at a topic's
	// replication factor.
	DefaultReplicationFactor int32
	MinInsyncReplicas        int32

	HeartbeatInterval time.Duration
	SessionTimeout    time.Duration
	ProposeTimeout    time.Duration
	// Raft, if set, is changed before the node starts (tests shorten its
	// timeouts).
	Raft   func(*raft.Config)
	Now    func() time.Time
	Logger *slog.Logger
}

// raftStore is raft's log and stable store in one file (store.go).
type raftStore interface {
	raft.LogStore
	raft.StableStore
	Close() error
}

// Node is one member of the metadata quorum and one broker of the cluster.
type Node struct {
	cfg         Config
	incarnation uint64
	fsm         *FSM
	raft        *raft.Raft
	store       raftStore
	ctrl        *controller
	log         *slog.Logger

	// ready is set once this node, as the controller, has applied every
	// record committed before it led (raft's barrier): only then does it
	// answer requests, so it never places or fences from a stale image.
	ready atomic.Bool

	reconciled *followed // how far the local log followed the image (Apply)

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// Open starts the node: it opens (or creates) its raft state in cfg.Dir,
// bootstraps the voter set when there is no state yet (every voter does the
// same with the same list, which raft allows) unless it joins an existing
// cluster (cfg.Join), and starts heartbeating.
func Open(cfg Config) (*Node, error) {
	if cfg.Transport == nil || cfg.Caller == nil || cfg.Endpoints == nil {
		return nil, fmt.Errorf("cluster: a transport, a caller and endpoints are required")
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = DefaultSessionTimeout
	}
	if cfg.ProposeTimeout <= 0 {
		cfg.ProposeTimeout = DefaultProposeTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DefaultReplicationFactor <= 0 {
		cfg.DefaultReplicationFactor = DefaultReplicationFactor(len(cfg.Voters))
	}
	if cfg.MinInsyncReplicas <= 0 {
		cfg.MinInsyncReplicas = DefaultMinInsyncReplicas(cfg.DefaultReplicationFactor)
	}
	if cfg.DefaultReplicationFactor > MaxReplicationFactor || cfg.MinInsyncReplicas > MaxReplicationFactor {
		return nil, fmt.Errorf("cluster: default replication factor %d and min ISR %d: at most %d", cfg.DefaultReplicationFactor, cfg.MinInsyncReplicas, MaxReplicationFactor)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, fsm: NewFSM(cfg.Logger), log: cfg.Logger, stop: make(chan struct{}), done: make(chan struct{}), reconciled: newFollowed()}
	var inc [8]byte
	if _, err := rand.Read(inc[:]); err != nil {
		return nil, err
	}
	for _, b := range inc {
		n.incarnation = n.incarnation<<8 | uint64(b)
	}
	n.ctrl = newController(n, cfg.Now, cfg.SessionTimeout, Defaults{ReplicationFactor: cfg.DefaultReplicationFactor, MinInsyncReplicas: cfg.MinInsyncReplicas})

	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Output: slogWriter{cfg.Logger}, Level: hclog.Info})
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(strconv.Itoa(int(cfg.NodeID)))
	rc.Logger = hl
	if cfg.Raft != nil {
		cfg.Raft(rc)
	}
	store, err := openStore(filepath.Join(cfg.Dir, "raft.db"))
	if err != nil {
		return nil, fmt.Errorf("cluster: opening %s: %w", filepath.Join(cfg.Dir, "raft.db"), err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hl)
	if err != nil {
		store.Close()
		return nil, err
	}
	has, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		store.Close()
		return nil, err
	}
	if err := recoverFromPeersJSON(cfg, rc, n.fsm, store, snaps); err != nil {
		store.Close()
		return nil, err
	}
	if !has && !cfg.Join {
		var conf raft.Configuration
		for _, v := range cfg.Voters {
			conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(strconv.Itoa(int(v.ID))), Address: raft.ServerAddress(v.Addr)})
		}
		if err := raft.BootstrapCluster(rc, store, store, snaps, cfg.Transport, conf); err != nil {
			store.Close()
			return nil, fmt.Errorf("cluster: bootstrap: %w", err)
		}
	}
	r, err := raft.NewRaft(rc, n.fsm, store, store, snaps, cfg.Transport)
	if err != nil {
		store.Close()
		return nil, err
	}
	n.raft, n.store = r, store
	go n.run()
	return n, nil
}

// PeersFile is the file an operator writes in a node's cluster directory
// to recover from a lost quorum (hashicorp/raft's peers.json, the format
// of raft.ReadConfigJSON: [{"id":"1","address":"h1:9500"}, ...]): at its
// next start the node replaces the raft configuration by it, as Consul
// and Nomad do, and renames the file to peers.json.applied. See
// docs/cluster.md.
const PeersFile = "peers.json"

// recoverFromPeersJSON applies an operator's peers.json, when present.
func recoverFromPeersJSON(cfg Config, rc *raft.Config, fsm raft.FSM, store raftStore, snaps raft.SnapshotStore) error {
	path := filepath.Join(cfg.Dir, PeersFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	conf, err := raft.ReadConfigJSON(path)
	if err != nil {
		return fmt.Errorf("cluster: %s: %w", path, err)
	}
	if err := raft.RecoverCluster(rc, fsm, store, store, snaps, cfg.Transport, conf); err != nil {
		return fmt.Errorf("cluster: recovering from %s: %w", path, err)
	}
	cfg.Logger.Warn("cluster: raft configuration replaced by the operator's peers.json", "path", path, "servers", len(conf.Servers))
	return os.Rename(path, path+".applied")
}

// Close stops heartbeating and leaves the quorum's work to the others.
func (n *Node) Close() error {
	var err error
	n.once.Do(func() {
		close(n.stop)
		<-n.done
		err = n.raft.Shutdown().Error()
		// Raft's transport answers heartbeats outside raft's loop, writing
		// the term to the store: it must be done before the store closes.
		if q, ok := n.cfg.Caller.(interface{ QuiesceRaft(time.Duration) }); ok {
			q.QuiesceRaft(5 * time.Second)
		}
		if cerr := n.store.Close(); err == nil {
			err = cerr
		}
	})
	return err
}

// FSM is the node's copy of the image.
func (n *Node) FSM() *FSM { return n.fsm }

// Image is a copy of the node's image.
func (n *Node) Image() *Image { return n.fsm.Image() }

// ID is the node's broker id.
func (n *Node) ID() int32 { return n.cfg.NodeID }

// Controller is the current controller's id and raft address, or
// NoLeader when none is known.
func (n *Node) Controller() (int32, string) {
	addr, id := n.raft.LeaderWithID()
	if id == "" {
		return NoLeader, ""
	}
	i, err := strconv.Atoi(string(id))
	if err != nil {
		return NoLeader, ""
	}
	return int32(i), string(addr)
}

// IsController says whether this node leads the quorum.
func (n *Node) IsController() bool { return n.raft.State() == raft.Leader }

// serving says whether this node leads and has caught up.
func (n *Node) serving() bool { return n.ready.Load() && n.IsController() }

// run is the node's one goroutine: every heartbeat interval it tells the
// controller it lives, and, while it is the controller, fences the silent.
func (n *Node) run() {
	defer close(n.done)
	t := time.NewTicker(n.cfg.HeartbeatInterval)
	defer t.Stop()
	wasController := false
	prevLeader := int32(-1) // the raft leader this node last followed
	for {
		isController := n.IsController()
		if !isController {
			if _, id := n.raft.LeaderWithID(); id != "" {
				if v, err := strconv.ParseInt(string(id), 10, 32); err == nil && int32(v) != n.cfg.NodeID {
					prevLeader = int32(v)
				}
			}
		}
		if isController && !wasController {
			// raft leaves LastContact at the last word from the
			// previous leader until this node steps down.
			n.ctrl.reset(prevLeader, n.raft.LastContact())
			if err := n.raft.Barrier(n.cfg.ProposeTimeout).Error(); err != nil {
				n.log.Warn("cluster: new controller could not catch up", "err", err)
				isController = false
			} else {
				n.ready.Store(true)
				n.log.Info("cluster: this node is the controller", "node", n.cfg.NodeID, "index", n.fsm.Index())
			}
		}
		if !isController {
			n.ready.Store(false)
		}
		wasController = isController
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.HeartbeatInterval)
		if eps := n.endpoints(); eps != nil {
			hb := Heartbeat{Broker: n.cfg.NodeID, Incarnation: n.incarnation, Endpoints: eps, Rack: n.cfg.Rack, CleanShutdown: n.cfg.CleanShutdown}
			if _, err := n.request(ctx, Request{Heartbeat: &hb}); err != nil && !errors.Is(err, ErrNoController) {
				n.log.Debug("cluster: heartbeat", "err", err)
			}
		}
		if isController {
			if err := n.ctrl.tick(ctx); err != nil {
				n.log.Debug("cluster: controller tick", "err", err)
			}
		}
		cancel()
		select {
		case <-n.stop:
			return
		case <-t.C:
		case <-n.raft.LeaderCh(): // gained or lost: act now, not a tick later
		}
	}
}

// endpoints are what this broker registers: the node's, and its cluster
// listener (its address among the voters) as "cluster" unless the node
// names another; nil while the node is not ready.
func (n *Node) endpoints() map[string]string {
	eps := n.cfg.Endpoints()
	if eps == nil {
		return nil
	}
	if _, ok := eps["cluster"]; !ok && n.cfg.Addr != "" {
		eps = maps.Clone(eps)
		eps["cluster"] = n.cfg.Addr
	}
	return eps
}

// AlterPartition proposes a new ISR for a partition this broker leads, at
// the leader and partition epochs it read (Kafka's AlterPartition): the
// answer is the new partition epoch once applied here, or
// ErrFencedLeaderEpoch (this broker no longer leads at that epoch),
// ErrInvalidUpdateVersion (the partition changed since: read it again),
// ErrIneligibleReplica (a broker added is fenced, shutting down or
// unknown).
func (n *Node) AlterPartition(ctx context.Context, topic string, partition, leaderEpoch, partitionEpoch int32, isr []int32) (int32, error) {
	res, err := n.Propose(ctx, Record{Op: OpAlterPartition, Topic: topic, Partition: partition, Broker: n.cfg.NodeID,
		LeaderEpoch: leaderEpoch, PartitionEpoch: partitionEpoch, ISR: isr})
	if err == nil {
		err = res.Err
	}
	if err != nil {
		return 0, err
	}
	return int32(res.Value), nil
}

// ShutdownLeaderships is this broker's controlled shutdown: it asks the
// controller to move every leadership it holds to an in-sync replica (or
// an eligible one) and to take it out of every ISR it is not the last
// member of, and returns once that is applied here. From then on it is
// not elected until it registers again (its next run).
func (n *Node) ShutdownLeaderships(ctx context.Context) error {
	res, err := n.Propose(ctx, Record{Op: OpControlledShutdown, Broker: n.cfg.NodeID, Incarnation: n.incarnation})
	if err == nil {
		err = res.Err
	}
	return err
}

// Propose applies a record through the controller, from any node: the
// controller fills what only it may choose (a new topic's placement and
// id), raft commits it, and Propose returns once this node has applied it
// too, so a caller reads its own change.
//
// While no controller is known (an election), it retries until ctx ends:
// a record refused for that reason was never appended.
func (n *Node) Propose(ctx context.Context, r Record) (Result, error) {
	var resp Response
	for {
		var err error
		resp, err = n.request(ctx, Request{Propose: &r})
		if err == nil {
			break
		}
		if !errors.Is(err, ErrNoController) {
			return Result{}, err
		}
		select {
		case <-ctx.Done():
			return Result{}, fmt.Errorf("%w (%v)", err, ctx.Err())
		case <-n.stop:
			return Result{}, ErrClosed
		case <-time.After(n.cfg.HeartbeatInterval / 4):
		}
	}
	if err := n.WaitIndex(ctx, resp.Index); err != nil {
		return Result{}, err
	}
	return Result{Value: resp.Value, Err: resp.err(), Index: resp.Index, ACLs: resp.ACLs}, nil
}

// WaitIndex waits until this node's image has applied index.
func (n *Node) WaitIndex(ctx context.Context, index uint64) error {
	return n.waitUntil(ctx, func() (bool, <-chan struct{}) {
		ch := n.fsm.Changed()
		return n.fsm.Index() >= index, ch
	})
}

// waitUntil waits until check says done; check also gives the channel
// closed at the next change that may make it so (taken before it looked).
func (n *Node) waitUntil(ctx context.Context, check func() (done bool, changed <-chan struct{})) error {
	for {
		done, ch := check()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.stop:
			return ErrClosed
		}
	}
}

// request sends a request to the controller: served here when this node
// is the controller, sent through the Caller otherwise.
func (n *Node) request(ctx context.Context, req Request) (Response, error) {
	if n.IsController() {
		resp := n.Serve(ctx, req)
		if resp.Code == codeNotController {
			return Response{}, ErrNoController
		}
		return resp, nil
	}
	_, addr := n.Controller()
	if addr == "" {
		return Response{}, ErrNoController
	}
	resp, err := n.cfg.Caller.Call(ctx, addr, req)
	if err != nil {
		return Response{}, err
	}
	if resp.Code == codeNotController {
		return Response{}, ErrNoController
	}
	return resp, nil
}

// propose is the controller's own apply, for the controller loop and Serve.
func (n *Node) propose(ctx context.Context, r Record) (Result, error) {
	b, err := encodeRecord(r)
	if err != nil {
		return Result{}, err
	}
	timeout := n.cfg.ProposeTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	f := n.raft.Apply(b, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return Result{}, ErrNoController // not appended: safe to retry
		}
		return Result{}, err
	}
	res, _ := f.Response().(Result)
	return res, nil
}

func (n *Node) image() *Image { return n.fsm.Image() }

// prepare fills what the controller chooses: a new topic's id and, when
// the proposer named none, its placement; the replicas of added
// partitions, at the topic's replication factor.
func (n *Node) prepare(r Record) (Record, error) {
	switch r.Op {
	case OpCreateTopic:
		if r.ReplicationFactor <= 0 && r.Assignment == nil {
			r.ReplicationFactor = n.cfg.DefaultReplicationFactor
		}
		if r.TopicID == "" {
			var id [16]byte
			if _, err := rand.Read(id[:]); err != nil {
				return r, err
			}
			r.TopicID = hex.EncodeToString(id[:])
		}
		if r.Assignment == nil {
			a, err := n.image().Place(int(r.Count), int(r.ReplicationFactor), r.Group)
			if err != nil {
				return r, err
			}
			r.Assignment = a
		}
	case OpCreatePartitions:
		if r.Assignment == nil {
			im := n.image()
			t := im.Topics[r.Topic]
			if t == nil {
				return r, ErrUnknownTopic
			}
			a, err := im.Place(int(r.Count), int(max(1, t.ReplicationFactor())), t.Group)
			if err != nil {
				return r, err
			}
			r.Assignment = a
		}
	}
	return r, nil
}

// Status is the node's view of the quorum, for `ferry cluster status` and
// the metrics.
type Status struct {
	Node         int32  `json:"node"`
	Controller   int32  `json:"controller"`
	State        string `json:"raft_state"`
	Term         uint64 `json:"raft_term"`
	LastIndex    uint64 `json:"raft_last_index"`
	CommitIndex  uint64 `json:"raft_commit_index"`
	AppliedIndex uint64 `json:"metadata_applied_index"`
	// Defaults are the cluster's topic defaults in the image.
	Defaults Defaults `json:"defaults"`
	// Replication counts the cluster's partitions not fully replicated
	// (all of them, whoever leads).
	Replication ReplicationCounts `json:"replication"`
	// PartitionStates are every partition's replicas, ISR, ELR, leader
	// and epochs.
	PartitionStates []PartitionStatus `json:"partition_states"`
}

// Status reads raft's figures and the image's partitions.
func (n *Node) Status() Status {
	st := n.raftStatus()
	n.fsm.View(func(im *Image) {
		st.Defaults = im.Defaults
		st.Replication = im.Replication(NoLeader)
		st.PartitionStates = im.PartitionStatuses()
	})
	return st
}

// raftStatus is Status without the partitions: raft's figures alone.
func (n *Node) raftStatus() Status {
	st := n.raft.Stats()
	num := func(k string) uint64 { v, _ := strconv.ParseUint(st[k], 10, 64); return v }
	ctrl, _ := n.Controller()
	return Status{
		Node: n.cfg.NodeID, Controller: ctrl, State: n.raft.State().String(),
		Term: num("term"), LastIndex: num("last_log_index"), CommitIndex: num("commit_index"),
		AppliedIndex: n.fsm.Index(),
	}
}

// slogWriter carries hclog's lines (raft's logger) into slog.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Info(strings.TrimSpace(string(p)), "component", "raft")
	return len(p), nil
}

var _ io.Writer = slogWriter{}
