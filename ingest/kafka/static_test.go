package kafka

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// staticConsumer is a franz-go group member with an instance id that counts
// what the group does to it.
type staticConsumer struct {
	cl       *kgo.Client
	mu       sync.Mutex
	assigned []int32 // partitions of the topic it holds now
	revokes  int     // OnPartitionsRevoked calls: one per rebalance it takes part in
	lost     int
	changed  chan struct{} // signalled after each assignment callback
	seen     map[string]bool
	stop     context.CancelFunc
	done     chan struct{}
}

func startStaticConsumer(t *testing.T, b *testBroker, group, topic, instance string) *staticConsumer {
	t.Helper()
	sc := &staticConsumer{changed: make(chan struct{}, 64), seen: map[string]bool{}, done: make(chan struct{})}
	notify := func() {
		select {
		case sc.changed <- struct{}{}:
		default:
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.InstanceID(instance), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SessionTimeout(20*time.Second), kgo.HeartbeatInterval(100*time.Millisecond),
		kgo.RebalanceTimeout(5*time.Second), kgo.FetchMaxWait(200*time.Millisecond),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			sc.mu.Lock()
			sc.assigned = append(sc.assigned, m[topic]...)
			slices.Sort(sc.assigned)
			sc.mu.Unlock()
			notify()
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			sc.mu.Lock()
			sc.revokes++
			sc.assigned = slices.DeleteFunc(sc.assigned, func(p int32) bool { return slices.Contains(m[topic], p) })
			sc.mu.Unlock()
			notify()
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			sc.mu.Lock()
			sc.lost++
			sc.assigned = slices.DeleteFunc(sc.assigned, func(p int32) bool { return slices.Contains(m[topic], p) })
			sc.mu.Unlock()
			notify()
		}))
	if err != nil {
		t.Fatal(err)
	}
	sc.cl = cl
	ctx, cancel := context.WithCancel(context.Background())
	sc.stop = cancel
	go func() {
		defer close(sc.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			sc.mu.Lock()
			for _, r := range fs.Records() {
				sc.seen[fmt.Sprintf("%d/%s", r.Partition, r.Value)] = true
			}
			sc.mu.Unlock()
		}
	}()
	t.Cleanup(sc.close)
	return sc
}

// close stops polling and closes the client. A static member does not
// leave the group when it closes, as a process that restarts would not.
func (sc *staticConsumer) close() {
	sc.stop()
	<-sc.done
	sc.cl.Close()
}

func (sc *staticConsumer) state() (assigned []int32, revokes, lost int) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return slices.Clone(sc.assigned), sc.revokes, sc.lost
}

// groupSnapshot is the coordinator's view of a group.
func groupSnapshot(b *testBroker, group string) (state groupState, generation int32, byInstance map[string]string) {
	g := b.srv.opts.Groups
	g.mu.Lock()
	defer g.mu.Unlock()
	gr := g.groups[group]
	if gr == nil {
		return stateEmpty, 0, nil
	}
	return gr.state, gr.generation, maps.Clone(gr.static)
}

// waitFor waits, up to 30 s, for cond to hold, re-checking whenever one of
// the consumers' assignments changes and at least every 50 ms (the
// coordinator's state changes without a signal to the test).
func waitFor(t *testing.T, what string, cond func() bool, consumers ...*staticConsumer) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		var changed <-chan struct{}
		if len(consumers) > 0 {
			changed = consumers[0].changed
		}
		var changed2 <-chan struct{}
		if len(consumers) > 1 {
			changed2 = consumers[1].changed
		}
		select {
		case <-changed:
		case <-changed2:
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestStaticMemberRestartKeepsItsPartitions: a static member that restarts
// within its session timeout gets its partitions back in the same
// generation, and the other member sees no rebalance at all.
func TestStaticMemberRestartKeepsItsPartitions(t *testing.T) {
	b := startBroker(t, nil)
	const topic, group, parts = "static", "sg", 6
	if _, err := b.log.CreateTopic(topic, parts, nil); err != nil {
		t.Fatal(err)
	}
	a := startStaticConsumer(t, b, group, topic, "edge-a")
	other := startStaticConsumer(t, b, group, topic, "edge-b")
	settled := func() bool {
		pa, _, _ := a.state()
		pb, _, _ := other.state()
		state, _, _ := groupSnapshot(b, group)
		return state == stateStable && len(pa) > 0 && len(pb) > 0 && len(pa)+len(pb) == parts
	}
	waitFor(t, "both members to share every partition", settled, a, other)
	waitExclusive(t, b, group, topic, parts)
	before, _, _ := a.state()
	otherParts, otherRevokes, otherLost := other.state()
	_, generation, instances := groupSnapshot(b, group)
	oldID := instances["edge-a"]
	if !strings.HasPrefix(oldID, "edge-a-") {
		t.Fatalf("static member id %q does not start with its instance id", oldID)
	}
	if _, gen := other.cl.GroupMetadata(); gen != generation {
		t.Fatalf("other member in generation %d, group in %d", gen, generation)
	}

	// The restart: the old client goes away without leaving, a new one
	// with the same instance id joins.
	a.close()
	if state, _, inst := groupSnapshot(b, group); state != stateStable || inst["edge-a"] != oldID {
		t.Fatalf("after the static member closed: %s, instances %v", state, inst)
	}
	a2 := startStaticConsumer(t, b, group, topic, "edge-a")
	waitFor(t, "the restarted member's assignment", func() bool {
		pa, _, _ := a2.state()
		return len(pa) > 0
	}, a2)

	after, _, _ := a2.state()
	if !slices.Equal(after, before) {
		t.Fatalf("restarted member got partitions %v, had %v", after, before)
	}
	state, gen2, instances2 := groupSnapshot(b, group)
	if state != stateStable || gen2 != generation {
		t.Fatalf("group %s in generation %d after the restart, was Stable in %d", state, gen2, generation)
	}
	if newID := instances2["edge-a"]; newID == oldID || !strings.HasPrefix(newID, "edge-a-") {
		t.Fatalf("restarted member id %q (old %q)", newID, oldID)
	}
	if id, gen := a2.cl.GroupMetadata(); gen != generation || id != instances2["edge-a"] {
		t.Fatalf("restarted member is %s in generation %d", id, gen)
	}

	// The group keeps consuming: new records on every partition are
	// consumed, and still nothing has rebalanced the other member.
	produceN(t, b, topic, 60, "after")
	ends := endOffsets(t, b, topic, parts)
	waitFor(t, "every new record consumed", func() bool {
		n := 0
		for _, c := range []*staticConsumer{a2, other} {
			c.mu.Lock()
			n += len(c.seen)
			c.mu.Unlock()
		}
		total := int64(0)
		for _, e := range ends {
			total += e
		}
		return int64(n) >= total
	})
	if parts2, revokes, lost := other.state(); !slices.Equal(parts2, otherParts) || revokes != otherRevokes || lost != otherLost {
		t.Fatalf("other member: partitions %v→%v, revokes %d→%d, lost %d→%d", otherParts, parts2, otherRevokes, revokes, otherLost, lost)
	}
	if _, gen := other.cl.GroupMetadata(); gen != generation {
		t.Fatalf("other member moved to generation %d from %d", gen, generation)
	}
	if _, gen3, _ := groupSnapshot(b, group); gen3 != generation {
		t.Fatalf("group moved to generation %d from %d", gen3, generation)
	}

	// DescribeGroups reports both instance ids.
	described, err := kadm.NewClient(b.client(t)).DescribeGroups(ctxT(t), group)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range described[group].Members {
		if m.InstanceID != nil {
			got = append(got, *m.InstanceID)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"edge-a", "edge-b"}) {
		t.Fatalf("described instance ids %v", got)
	}
}

// staticJoin joins by hand with an instance id and waits for the answer.
func staticJoin(t *testing.T, cl *kgo.Client, group, instance, memberID string, sessionMs int32, metadata []byte) *kmsg.JoinGroupResponse {
	t.Helper()
	join := joinRequest(group, sessionMs, "range")
	join.InstanceID, join.MemberID = kmsg.StringPtr(instance), memberID
	join.Protocols[0].Metadata = metadata
	r, err := join.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func staticSync(t *testing.T, cl *kgo.Client, group, instance, memberID string, generation int32, assign []byte) *kmsg.SyncGroupResponse {
	t.Helper()
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Group, sync.MemberID, sync.Generation, sync.InstanceID = group, memberID, generation, kmsg.StringPtr(instance)
	if assign != nil {
		a := kmsg.NewSyncGroupRequestGroupAssignment()
		a.MemberID, a.MemberAssignment = memberID, assign
		sync.GroupAssignment = append(sync.GroupAssignment, a)
	}
	r, err := sync.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func consumerMetadata(topics ...string) []byte {
	m := kmsg.NewConsumerMemberMetadata()
	m.Topics = topics
	return m.AppendTo(nil)
}

// TestStaticMemberFencing: once an instance has rejoined, its old member id
// is fenced everywhere it is named with the instance id.
func TestStaticMemberFencing(t *testing.T) {
	b := startBroker(t, nil)
	if _, err := b.log.CreateTopic("t", 1, nil); err != nil {
		t.Fatal(err)
	}
	cl := b.client(t)
	ctx := ctxT(t)
	const group, instance = "fence", "gw-1"
	meta := consumerMetadata("t")

	first := staticJoin(t, cl, group, instance, "", 30000, meta)
	if first.ErrorCode != 0 || first.Generation != 1 || first.LeaderID != first.MemberID || !strings.HasPrefix(first.MemberID, instance+"-") {
		t.Fatalf("first static join (no MEMBER_ID_REQUIRED for static members): %+v", first)
	}
	if r := staticSync(t, cl, group, instance, first.MemberID, 1, []byte("mine")); r.ErrorCode != 0 || string(r.MemberAssignment) != "mine" {
		t.Fatalf("sync: %+v", r)
	}

	// The restart: same instance, no member id, same subscription.
	second := staticJoin(t, cl, group, instance, "", 30000, meta)
	if second.ErrorCode != 0 || second.Generation != 1 || second.MemberID == first.MemberID || second.LeaderID != first.MemberID || len(second.Members) != 0 {
		t.Fatalf("rejoin: %+v (want generation 1, a new member id, the old leader id, no member list)", second)
	}
	if r := staticSync(t, cl, group, instance, second.MemberID, 1, nil); r.ErrorCode != 0 || string(r.MemberAssignment) != "mine" {
		t.Fatalf("sync after rejoin: %+v", r)
	}

	// The old member id, with the instance id: fenced, everywhere.
	old := first.MemberID
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Group, hb.MemberID, hb.Generation, hb.InstanceID = group, old, 1, kmsg.StringPtr(instance)
	if r, err := hb.RequestWith(ctx, cl); err != nil || r.ErrorCode != kerr.FencedInstanceID.Code {
		t.Fatalf("heartbeat of the old member id: %+v %v", r, err)
	}
	if r := staticSync(t, cl, group, instance, old, 1, nil); r.ErrorCode != kerr.FencedInstanceID.Code {
		t.Fatalf("sync of the old member id: %+v", r)
	}
	if r := staticJoin(t, cl, group, instance, old, 30000, meta); r.ErrorCode != kerr.FencedInstanceID.Code {
		t.Fatalf("join with the old member id: %+v", r)
	}
	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.Group, commit.MemberID, commit.Generation, commit.InstanceID = group, old, 1, kmsg.StringPtr(instance)
	ct := kmsg.NewOffsetCommitRequestTopic()
	ct.Topic = "t"
	cp := kmsg.NewOffsetCommitRequestTopicPartition()
	cp.Offset = 5
	ct.Partitions = append(ct.Partitions, cp)
	commit.Topics = append(commit.Topics, ct)
	if r, err := commit.RequestWith(ctx, cl); err != nil || r.Topics[0].Partitions[0].ErrorCode != kerr.FencedInstanceID.Code {
		t.Fatalf("commit of the old member id: %+v %v", r, err)
	}
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Group = group
	lm := kmsg.NewLeaveGroupRequestMember()
	lm.MemberID, lm.InstanceID = old, kmsg.StringPtr(instance)
	leave.Members = append(leave.Members, lm)
	if r, err := leave.RequestWith(ctx, cl); err != nil || r.Members[0].ErrorCode != kerr.FencedInstanceID.Code {
		t.Fatalf("leave of the old member id: %+v %v", r, err)
	}
	// Without the instance id the old id is simply unknown.
	hb.InstanceID = nil
	if r, err := hb.RequestWith(ctx, cl); err != nil || r.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("heartbeat of the old member id without instance id: %+v %v", r, err)
	}
	// An instance id the group does not know is an unknown member.
	hb.MemberID, hb.InstanceID = second.MemberID, kmsg.StringPtr("gw-2")
	if r, err := hb.RequestWith(ctx, cl); err != nil || r.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("heartbeat with another instance id: %+v %v", r, err)
	}
	// The current member id is fine, and commits.
	hb.InstanceID = kmsg.StringPtr(instance)
	if r, err := hb.RequestWith(ctx, cl); err != nil || r.ErrorCode != 0 {
		t.Fatalf("heartbeat of the current member id: %+v %v", r, err)
	}
	commit.MemberID = second.MemberID
	if r, err := commit.RequestWith(ctx, cl); err != nil || r.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("commit of the current member id: %+v %v", r, err)
	}
	if state, gen, _ := groupSnapshot(b, group); state != stateStable || gen != 1 {
		t.Fatalf("after fencing: %s generation %d", state, gen)
	}

	// A restart with another subscription rebalances: a new generation,
	// in which the member (alone) is the leader and assigns again.
	third := staticJoin(t, cl, group, instance, "", 30000, consumerMetadata("t", "u"))
	if third.ErrorCode != 0 || third.Generation != 2 || third.LeaderID != third.MemberID || len(third.Members) != 1 {
		t.Fatalf("rejoin with a new subscription: %+v", third)
	}

	// LeaveGroup by instance id alone (an administrator's removal).
	lm.MemberID, lm.InstanceID = "", kmsg.StringPtr(instance)
	leave.Members = []kmsg.LeaveGroupRequestMember{lm}
	if r, err := leave.RequestWith(ctx, cl); err != nil || r.Members[0].ErrorCode != 0 {
		t.Fatalf("leave by instance id: %+v %v", r, err)
	}
	if state, _, inst := groupSnapshot(b, group); state != stateEmpty || len(inst) != 0 {
		t.Fatalf("after leaving: %s, instances %v", state, inst)
	}
	if r, err := leave.RequestWith(ctx, cl); err != nil || r.Members[0].ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("second leave by instance id: %+v %v", r, err)
	}
}

// TestStaticMemberSessionExpires: a static member that stops heartbeating
// is removed after its session timeout like any member; its instance can
// then join afresh.
func TestStaticMemberSessionExpires(t *testing.T) {
	b := startBroker(t, nil)
	cl := b.client(t)
	const group, instance = "expire", "gw-9"
	r := staticJoin(t, cl, group, instance, "", 1000, consumerMetadata("t"))
	if r.ErrorCode != 0 {
		t.Fatalf("join: %+v", r)
	}
	if s := staticSync(t, cl, group, instance, r.MemberID, r.Generation, []byte("x")); s.ErrorCode != 0 {
		t.Fatalf("sync: %+v", s)
	}
	waitFor(t, "the silent static member to expire", func() bool {
		state, _, inst := groupSnapshot(b, group)
		return state == stateEmpty && len(inst) == 0
	})
	again := staticJoin(t, cl, group, instance, "", 30000, consumerMetadata("t"))
	if again.ErrorCode != 0 || again.MemberID == r.MemberID || again.LeaderID != again.MemberID || again.Generation <= r.Generation {
		t.Fatalf("join after expiry: %+v (first %+v)", again, r)
	}
}

// A LeaveGroup that names a static member by member id alone removes it,
// as Kafka's broker does (clients do not send one when a static member
// closes; administrators remove by instance id).
func TestStaticMemberLeaveByMemberID(t *testing.T) {
	b := startBroker(t, nil)
	cl := b.client(t)
	r := staticJoin(t, cl, "lv", "gw-3", "", 30000, consumerMetadata("t"))
	if r.ErrorCode != 0 {
		t.Fatalf("join: %+v", r)
	}
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Group = "lv"
	lm := kmsg.NewLeaveGroupRequestMember()
	lm.MemberID = r.MemberID
	leave.Members = append(leave.Members, lm)
	if lr, err := leave.RequestWith(ctxT(t), cl); err != nil || lr.Members[0].ErrorCode != 0 {
		t.Fatalf("leave: %+v %v", lr, err)
	}
	if state, _, inst := groupSnapshot(b, "lv"); state != stateEmpty || len(inst) != 0 {
		t.Fatalf("after leaving: %s, instances %v", state, inst)
	}
}
