package kafka

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nuid"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	bolt "go.etcd.io/bbolt"
)

// Groups is the consumer-group coordinator of the classic protocol: group
// membership, rebalances (join, sync, heartbeat, leave, session expiry) and
// committed offsets. Membership lives in memory (clients rejoin after a
// restart); committed offsets live in bbolt and survive restarts and
// crashes. Every group is guarded by the one mutex mu; blocking calls (join
// and sync waiting for a rebalance to complete) wait on channels without it.
type Groups struct {
	db           *bolt.DB    // kafka-groups.db
	store        offsetStore // boltStore over db; replStore once Replicate was called
	logger       *slog.Logger
	initialDelay time.Duration    // GroupsOptions.InitialRebalanceDelay; 0: none
	now          func() time.Time // GroupsOptions.Now

	mu     sync.Mutex
	groups map[string]*group
	closed bool

	// offsetsSnapshots and offsetsSkipped count the replicated store's
	// snapshots and the offsets records it could not read (metrics).
	offsetsSnapshots, offsetsSkipped atomic.Int64
}

type groupState string

// Group states, named as Kafka names them in DescribeGroups and ListGroups.
const (
	stateEmpty               groupState = "Empty"
	statePreparingRebalance  groupState = "PreparingRebalance"
	stateCompletingRebalance groupState = "CompletingRebalance"
	stateStable              groupState = "Stable"
	// stateDead is how DescribeGroups describes a group that does not
	// exist: neither members nor committed offsets (Kafka's DeadGroup).
	stateDead groupState = "Dead"
)

type group struct {
	name         string
	state        groupState
	generation   int32
	protocolType string
	protocol     string
	leader       string
	members      map[string]*member
	pending      map[string]bool   // member ids handed out by MEMBER_ID_REQUIRED, not yet joined
	static       map[string]string // group.instance.id -> member id of static members (KIP-345)
	rebalance    *time.Timer       // ends PreparingRebalance for members that do not rejoin, or the initial delay
	// initialJoin is set while the first rebalance of an empty group waits
	// out the initial rebalance delay (delayInitialJoin); newMember records
	// that a member joined during the current delay, which extends it.
	initialJoin bool
	newMember   bool
	delaySeq    uint64 // which delay timer is current; an older one that fired does nothing
}

type member struct {
	id, clientID, clientHost string
	instanceID               *string
	protocols                []kmsg.JoinGroupRequestProtocol
	session, rebalanceTO     time.Duration
	assignment               []byte
	joinCh                   chan *kmsg.JoinGroupResponse // set while a JoinGroup waits
	syncCh                   chan *kmsg.SyncGroupResponse // set while a SyncGroup waits
	expiry                   *time.Timer
	expirySeq                uint64 // which expiry timer is current; an older one that fired does nothing
}

const (
	minSessionTimeout = time.Second
	maxSessionTimeout = 30 * time.Minute
)

var offsetsBucket = []byte("group_offsets")

// DefaultInitialRebalanceDelay is Kafka's group.initial.rebalance.delay.ms.
const DefaultInitialRebalanceDelay = 3 * time.Second

// GroupsOptions configure a Groups.
type GroupsOptions struct {
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// InitialRebalanceDelay is how long the first rebalance of an empty
	// group waits for more members to join, extended by the same again
	// (up to the rebalance timeout) whenever one does, as Kafka's
	// group.initial.rebalance.delay.ms: consumers started together land in
	// one generation instead of rebalancing once per member. 0 means
	// DefaultInitialRebalanceDelay, negative none.
	InitialRebalanceDelay time.Duration
	// Now is the wall clock committed offsets are stamped by (their
	// commit time, and the timestamps of the records the replicated store
	// writes to __consumer_offsets); nil means time.Now. Timeouts and
	// rebalance delays stay on Go's monotonic clock.
	Now func() time.Time
}

// OpenGroups opens (creating) the committed-offsets file, with the default
// options but for the logger.
func OpenGroups(path string, logger *slog.Logger) (*Groups, error) {
	return OpenGroupsOptions(path, GroupsOptions{Logger: logger})
}

// OpenGroupsOptions opens (creating) the committed-offsets file.
func OpenGroupsOptions(path string, opts GroupsOptions) (*Groups, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	delay := orDefault(opts.InitialRebalanceDelay, DefaultInitialRebalanceDelay)
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	db, err := bolt.Open(path, 0o644, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening group offsets %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists(offsetsBucket); return err }); err != nil {
		db.Close()
		return nil, err
	}
	return &Groups{db: db, store: boltStore{db}, logger: logger.With("component", "groups"), groups: map[string]*group{}, initialDelay: delay, now: now}, nil
}

// Close stops every timer, fails waiting joins and syncs, and closes the
// offsets file.
func (g *Groups) Close() error {
	g.mu.Lock()
	g.closed = true
	for _, gr := range g.groups {
		if gr.rebalance != nil {
			gr.rebalance.Stop()
		}
		for _, m := range gr.members {
			if m.expiry != nil {
				m.expiry.Stop()
			}
			g.failWaiters(gr, m, kerr.CoordinatorNotAvailable.Code)
		}
	}
	g.mu.Unlock()
	return g.store.close()
}

func (g *Groups) failWaiters(gr *group, m *member, code int16) {
	if m.joinCh != nil {
		r := kmsg.NewPtrJoinGroupResponse()
		r.ErrorCode, r.Generation, r.MemberID = code, -1, m.id
		m.joinCh <- r
		m.joinCh = nil
	}
	if m.syncCh != nil {
		r := kmsg.NewPtrSyncGroupResponse()
		r.ErrorCode = code
		m.syncCh <- r
		m.syncCh = nil
	}
}

// join handles JoinGroup; it blocks until the rebalance completes.
func (g *Groups) join(ctx context.Context, req *kmsg.JoinGroupRequest, clientID, host string) *kmsg.JoinGroupResponse {
	resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
	resp.Generation, resp.MemberID = -1, req.MemberID
	fail := func(e *kerr.Error) *kmsg.JoinGroupResponse { resp.ErrorCode = e.Code; return resp }
	session := time.Duration(req.SessionTimeoutMillis) * time.Millisecond
	rebalanceTO := session
	if req.Version >= 1 {
		rebalanceTO = time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond
	}
	switch {
	case req.Group == "":
		return fail(kerr.InvalidGroupID)
	case session < minSessionTimeout || session > maxSessionTimeout:
		return fail(kerr.InvalidSessionTimeout)
	case len(req.Protocols) == 0 || req.ProtocolType == "":
		return fail(kerr.InconsistentGroupProtocol)
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return fail(kerr.CoordinatorNotAvailable)
	}
	gr := g.groups[req.Group]
	if gr == nil {
		gr = &group{name: req.Group, state: stateEmpty, members: map[string]*member{}, pending: map[string]bool{}, static: map[string]string{}}
		g.groups[req.Group] = gr
	}
	if len(gr.members) > 0 && gr.protocolType != req.ProtocolType || !gr.sharesProtocol(req.Protocols) {
		g.mu.Unlock()
		return fail(kerr.InconsistentGroupProtocol)
	}
	var m *member
	var rejoined *kmsg.JoinGroupResponse // a static member's restart, answered without a rebalance
	if req.InstanceID != nil {
		var kerrv *kerr.Error
		if m, rejoined, kerrv = g.joinStatic(gr, req); kerrv != nil {
			g.mu.Unlock()
			return fail(kerrv)
		}
	} else {
		m = gr.members[req.MemberID]
	}
	switch {
	case m != nil:
	case req.MemberID == "" && req.Version >= 4:
		// KIP-394: hand out an id; the client rejoins with it.
		id := clientID + "-" + nuid.Next()
		gr.pending[id] = true
		g.mu.Unlock()
		resp.MemberID = id
		return fail(kerr.MemberIDRequired)
	case req.MemberID == "":
		m = &member{id: clientID + "-" + nuid.Next()}
	case m == nil && gr.pending[req.MemberID]:
		delete(gr.pending, req.MemberID)
		m = &member{id: req.MemberID}
	case m == nil:
		g.mu.Unlock()
		return fail(kerr.UnknownMemberID)
	}
	m.clientID, m.clientHost = clientID, host
	m.protocols, m.session, m.rebalanceTO = cloneProtocols(req.Protocols), session, rebalanceTO
	if rejoined != nil {
		g.touch(gr, m)
		g.mu.Unlock()
		rejoined.Version = req.Version
		return rejoined
	}
	if m.joinCh != nil { // a duplicate join replaces the older one
		g.failWaiters(gr, m, kerr.UnknownMemberID.Code)
	}
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	m.joinCh = ch
	first := gr.state == stateEmpty && len(gr.members) == 0
	if gr.members[m.id] == nil {
		gr.newMember = true // extends a running initial delay
	}
	gr.members[m.id] = m
	gr.protocolType = req.ProtocolType
	g.touch(gr, m)
	switch {
	case first && g.initialDelay > 0:
		g.delayInitialJoin(gr, g.initialDelay, max(m.rebalanceTO-g.initialDelay, 0))
	case gr.state != statePreparingRebalance:
		g.prepareRebalance(gr)
	}
	g.maybeCompleteJoin(gr)
	g.mu.Unlock()
	select {
	case r := <-ch:
		r.Version = req.Version // built by whoever completed the rebalance
		return r
	case <-ctx.Done():
		return fail(kerr.CoordinatorNotAvailable)
	}
}

// cloneProtocols copies a join's protocols: decoded byte fields point into
// the connection's read buffer, which the next request overwrites, and a
// member's metadata is kept for the next rebalance and DescribeGroups.
func cloneProtocols(ps []kmsg.JoinGroupRequestProtocol) []kmsg.JoinGroupRequestProtocol {
	out := slices.Clone(ps)
	for i := range out {
		out[i].Metadata = bytes.Clone(out[i].Metadata)
	}
	return out
}

// sharesProtocol reports whether the group's members and the joiner have a
// protocol in common.
func (gr *group) sharesProtocol(ps []kmsg.JoinGroupRequestProtocol) bool {
	if len(gr.members) == 0 {
		return true
	}
	for _, p := range ps {
		if gr.supportedByAll(p.Name) {
			return true
		}
	}
	return false
}

func (gr *group) supportedByAll(name string) bool {
	for _, m := range gr.members {
		found := false
		for _, p := range m.protocols {
			found = found || p.Name == name
		}
		if !found {
			return false
		}
	}
	return true
}

// prepareRebalance moves the group to PreparingRebalance: members in sync
// are told to rejoin, and those that do not rejoin within the rebalance
// timeout are removed.
func (g *Groups) prepareRebalance(gr *group) {
	gr.state = statePreparingRebalance
	var timeout time.Duration
	for _, m := range gr.members {
		timeout = max(timeout, m.rebalanceTO)
		if m.syncCh != nil {
			g.failWaiters(gr, m, kerr.RebalanceInProgress.Code)
		}
	}
	if gr.rebalance != nil {
		gr.rebalance.Stop()
	}
	gr.rebalance = time.AfterFunc(timeout, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.closed || gr.state != statePreparingRebalance {
			return
		}
		for id, m := range gr.members {
			if m.joinCh == nil {
				g.logger.Info("member did not rejoin in time; removing it", "group", gr.name, "member", id)
				g.removeMember(gr, m)
			}
		}
		g.maybeCompleteJoin(gr)
	})
}

// delayInitialJoin holds the first rebalance of an empty group for d, as
// Kafka's InitialDelayedJoin does: if members joined meanwhile and some of
// the rebalance timeout remains, it waits again (the delay or what remains,
// the lesser), else the rebalance goes on as any other.
func (g *Groups) delayInitialJoin(gr *group, d, remaining time.Duration) {
	gr.state = statePreparingRebalance
	gr.initialJoin, gr.newMember = true, false
	if gr.rebalance != nil {
		gr.rebalance.Stop()
	}
	gr.delaySeq++
	seq := gr.delaySeq
	gr.rebalance = time.AfterFunc(d, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.closed || !gr.initialJoin || gr.delaySeq != seq {
			return
		}
		if gr.newMember && remaining > 0 {
			next := min(g.initialDelay, remaining)
			g.delayInitialJoin(gr, next, remaining-next)
			return
		}
		gr.initialJoin = false
		g.prepareRebalance(gr)
		g.maybeCompleteJoin(gr)
	})
}

// maybeCompleteJoin ends PreparingRebalance once every member has rejoined:
// a new generation, a protocol, a leader, and answers to every join.
func (g *Groups) maybeCompleteJoin(gr *group) {
	if gr.state != statePreparingRebalance || gr.initialJoin {
		return
	}
	for _, m := range gr.members {
		if m.joinCh == nil {
			return
		}
	}
	if gr.rebalance != nil {
		gr.rebalance.Stop()
	}
	if len(gr.members) == 0 {
		gr.state, gr.leader, gr.protocol = stateEmpty, "", ""
		gr.generation++
		return
	}
	gr.generation++
	gr.state = stateCompletingRebalance
	gr.protocol = gr.chooseProtocol()
	if _, ok := gr.members[gr.leader]; !ok {
		ids := gr.memberIDs()
		gr.leader = ids[0]
	}
	for _, m := range gr.members {
		r := kmsg.NewPtrJoinGroupResponse()
		r.Generation, r.LeaderID, r.MemberID = gr.generation, gr.leader, m.id
		r.ProtocolType, r.Protocol = kmsg.StringPtr(gr.protocolType), kmsg.StringPtr(gr.protocol)
		if m.id == gr.leader {
			for _, id := range gr.memberIDs() {
				o := gr.members[id]
				jm := kmsg.NewJoinGroupResponseMember()
				jm.MemberID, jm.InstanceID = o.id, o.instanceID
				for _, p := range o.protocols {
					if p.Name == gr.protocol {
						jm.ProtocolMetadata = p.Metadata
					}
				}
				r.Members = append(r.Members, jm)
			}
		}
		m.assignment = nil
		m.joinCh <- r
		m.joinCh = nil
	}
}

// chooseProtocol picks the protocol supported by every member that most
// members list first (Kafka votes the same way).
func (gr *group) chooseProtocol() string {
	votes := map[string]int{}
	for _, m := range gr.members {
		for _, p := range m.protocols {
			if gr.supportedByAll(p.Name) {
				votes[p.Name]++
				break
			}
		}
	}
	best, n := "", -1
	for name, v := range votes {
		if v > n || v == n && name < best {
			best, n = name, v
		}
	}
	return best
}

func (gr *group) memberIDs() []string {
	ids := make([]string, 0, len(gr.members))
	for id := range gr.members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// touch restarts a member's session timer.
func (g *Groups) touch(gr *group, m *member) {
	if m.expiry != nil {
		m.expiry.Stop()
	}
	m.expirySeq++
	seq := m.expirySeq
	m.expiry = time.AfterFunc(m.session, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.closed || gr.members[m.id] != m || m.joinCh != nil || m.expirySeq != seq {
			// Gone already, waiting in a join (bounded by the rebalance
			// timeout), or touched while this timer fired.
			return
		}
		g.logger.Info("member session expired", "group", gr.name, "member", m.id)
		g.removeMember(gr, m)
		g.rebalanceAfterRemoval(gr)
	})
}

func (g *Groups) removeMember(gr *group, m *member) {
	if m.expiry != nil {
		m.expiry.Stop()
	}
	g.failWaiters(gr, m, kerr.UnknownMemberID.Code)
	delete(gr.members, m.id)
	if m.instanceID != nil && gr.static[*m.instanceID] == m.id {
		delete(gr.static, *m.instanceID)
	}
	if gr.leader == m.id {
		gr.leader = ""
	}
}

func (g *Groups) rebalanceAfterRemoval(gr *group) {
	switch {
	case len(gr.members) == 0 && gr.state != statePreparingRebalance:
		gr.state, gr.protocol = stateEmpty, ""
		gr.generation++
	case gr.state == statePreparingRebalance:
		g.maybeCompleteJoin(gr)
	default:
		g.prepareRebalance(gr)
	}
}

// check validates a member (and its instance id, for static members) and
// generation for sync, heartbeat and commit.
func (g *Groups) check(groupID, memberID string, instanceID *string, generation int32) (*group, *member, *kerr.Error) {
	gr := g.groups[groupID]
	if gr == nil {
		return nil, nil, kerr.UnknownMemberID
	}
	m, kerrv := gr.currentMember(memberID, instanceID)
	if kerrv != nil {
		return gr, nil, kerrv
	}
	if generation != gr.generation {
		return gr, m, kerr.IllegalGeneration
	}
	return gr, m, nil
}

// sync handles SyncGroup: the leader's assignments complete the rebalance;
// followers wait for them.
func (g *Groups) sync(ctx context.Context, req *kmsg.SyncGroupRequest) *kmsg.SyncGroupResponse {
	resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
	g.mu.Lock()
	gr, m, kerrv := g.check(req.Group, req.MemberID, req.InstanceID, req.Generation)
	if kerrv != nil {
		g.mu.Unlock()
		resp.ErrorCode = kerrv.Code
		return resp
	}
	g.touch(gr, m)
	resp.ProtocolType, resp.Protocol = kmsg.StringPtr(gr.protocolType), kmsg.StringPtr(gr.protocol)
	switch gr.state {
	case statePreparingRebalance:
		g.mu.Unlock()
		resp.ErrorCode = kerr.RebalanceInProgress.Code
		return resp
	case stateStable:
		resp.MemberAssignment = m.assignment
		g.mu.Unlock()
		return resp
	}
	if m.id == gr.leader {
		for _, a := range req.GroupAssignment {
			if o := gr.members[a.MemberID]; o != nil {
				o.assignment = bytes.Clone(a.MemberAssignment) // a's bytes are the connection's buffer
			}
		}
		gr.state = stateStable
		for _, o := range gr.members {
			if o.syncCh != nil {
				r := kmsg.NewPtrSyncGroupResponse()
				r.ProtocolType, r.Protocol, r.MemberAssignment = resp.ProtocolType, resp.Protocol, o.assignment
				o.syncCh <- r
				o.syncCh = nil
			}
		}
		resp.MemberAssignment = m.assignment
		g.mu.Unlock()
		return resp
	}
	ch := make(chan *kmsg.SyncGroupResponse, 1)
	if m.syncCh != nil {
		g.failWaiters(gr, m, kerr.RebalanceInProgress.Code)
	}
	m.syncCh = ch
	g.mu.Unlock()
	select {
	case r := <-ch:
		r.Version = resp.Version
		return r
	case <-ctx.Done():
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
}

func (g *Groups) heartbeat(req *kmsg.HeartbeatRequest) int16 {
	g.mu.Lock()
	defer g.mu.Unlock()
	gr, m, kerrv := g.check(req.Group, req.MemberID, req.InstanceID, req.Generation)
	if kerrv != nil {
		return kerrv.Code
	}
	g.touch(gr, m)
	if gr.state == statePreparingRebalance {
		return kerr.RebalanceInProgress.Code
	}
	return 0
}

// committed offsets: key group \x00 topic \x00 partition(4 bytes)

type committedOffset struct {
	Offset      int64   `json:"offset"`
	LeaderEpoch int32   `json:"leader_epoch"`
	Metadata    *string `json:"metadata,omitempty"`
	CommitMs    int64   `json:"commit_ms"`
}

func offsetKey(groupID, topic string, partition int32) []byte {
	k := make([]byte, 0, len(groupID)+len(topic)+6)
	k = append(append(append(k, groupID...), 0), topic...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint32(k, uint32(partition))
}

func parseOffsetKey(k []byte) (groupID, topic string, partition int32, ok bool) {
	if len(k) < 6 {
		return "", "", 0, false
	}
	rest, p := k[:len(k)-5], k[len(k)-4:]
	for i, c := range rest {
		if c == 0 {
			return string(rest[:i]), string(rest[i+1:]), int32(binary.BigEndian.Uint32(p)), true
		}
	}
	return "", "", 0, false
}

// commit checks who commits and stores the offsets durably (one bbolt
// transaction, fsynced) before answering.
func (g *Groups) commit(req *kmsg.OffsetCommitRequest) *kmsg.OffsetCommitResponse {
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	code := int16(0)
	g.mu.Lock()
	gr := g.groups[req.Group]
	switch {
	case req.Group == "":
		code = kerr.InvalidGroupID.Code
	case req.Generation < 0 && req.MemberID == "" && req.InstanceID == nil:
		// A simple commit (an admin tool or a consumer outside a group):
		// allowed while the group has no members.
		if gr != nil && len(gr.members) > 0 {
			code = kerr.UnknownMemberID.Code
		}
	default:
		gr2, m, kerrv := g.check(req.Group, req.MemberID, req.InstanceID, req.Generation)
		switch {
		case kerrv != nil:
			code = kerrv.Code
		case gr2.state == stateCompletingRebalance:
			code = kerr.RebalanceInProgress.Code
		default:
			g.touch(gr2, m)
		}
	}
	g.mu.Unlock()
	if code == 0 {
		now := g.now().UnixMilli()
		puts := map[tpKey]committedOffset{}
		for _, t := range req.Topics {
			for _, p := range t.Partitions {
				puts[tpKey{t.Topic, p.Partition}] = committedOffset{Offset: p.Offset, LeaderEpoch: p.LeaderEpoch, Metadata: p.Metadata, CommitMs: now}
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
		err := g.store.write(ctx, req.Group, puts, nil)
		cancel()
		if err != nil {
			g.logger.Error("storing committed offsets", "group", req.Group, "err", err)
			code = storeCode(err)
		}
	}
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// Committed returns a group's committed offsets: topic → partition → offset.
func (g *Groups) Committed(groupID string) (map[string]map[int32]committedOffset, error) {
	return g.store.committed(groupID)
}

// deleteGroup removes an empty group and its committed offsets.
func (g *Groups) deleteGroup(groupID string) int16 {
	g.mu.Lock()
	defer g.mu.Unlock()
	gr := g.groups[groupID]
	if gr != nil && len(gr.members) > 0 {
		return kerr.NonEmptyGroup.Code
	}
	committed, err := g.Committed(groupID)
	if err != nil {
		return storeCode(err)
	}
	if gr == nil && len(committed) == 0 {
		return kerr.GroupIDNotFound.Code
	}
	var dels []tpKey
	for topic, ps := range committed {
		for p := range ps {
			dels = append(dels, tpKey{topic, p})
		}
	}
	if len(dels) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
		defer cancel()
		if err := g.store.write(ctx, groupID, nil, dels); err != nil {
			return storeCode(err)
		}
	}
	delete(g.groups, groupID)
	return 0
}

// groupNames lists groups with members or committed offsets.
func (g *Groups) groupNames() []string {
	seen := map[string]bool{}
	g.mu.Lock()
	for name := range g.groups {
		seen[name] = true
	}
	g.mu.Unlock()
	for _, gid := range g.store.groupIDs() {
		seen[gid] = true
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// describe returns a group's state for DescribeGroups and ListGroups: a
// group with committed offsets only is Empty, one with neither members nor
// offsets Dead.
func (g *Groups) describe(groupID string) (state groupState, protocolType, protocol string, members []kmsg.DescribeGroupsResponseGroupMember) {
	g.mu.Lock()
	defer g.mu.Unlock()
	gr := g.groups[groupID]
	if gr == nil {
		if committed, err := g.Committed(groupID); err == nil && len(committed) == 0 {
			return stateDead, "", "", nil
		}
		return stateEmpty, "", "", nil
	}
	for _, id := range gr.memberIDs() {
		m := gr.members[id]
		dm := kmsg.NewDescribeGroupsResponseGroupMember()
		dm.MemberID, dm.InstanceID, dm.ClientID, dm.ClientHost, dm.MemberAssignment = m.id, m.instanceID, m.clientID, m.clientHost, m.assignment
		for _, p := range m.protocols {
			if p.Name == gr.protocol {
				dm.ProtocolMetadata = p.Metadata
			}
		}
		members = append(members, dm)
	}
	return gr.state, gr.protocolType, gr.protocol, members
}
