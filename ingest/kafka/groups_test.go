package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupConsumer is a franz-go group member that records what it consumed.
type groupConsumer struct {
	cl   *kgo.Client
	mu   sync.Mutex
	seen map[string]int // "partition/offset" -> times consumed
	stop context.CancelFunc
	done chan struct{}
}

func startGroupConsumer(t *testing.T, b *testBroker, group, topic string) *groupConsumer {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.SessionTimeout(3*time.Second),
		kgo.HeartbeatInterval(100*time.Millisecond), kgo.RebalanceTimeout(5*time.Second), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gc := &groupConsumer{cl: cl, seen: map[string]int{}, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(gc.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			gc.mu.Lock()
			for _, r := range fs.Records() {
				gc.seen[fmt.Sprintf("%d/%d", r.Partition, r.Offset)]++
			}
			gc.mu.Unlock()
		}
	}()
	t.Cleanup(func() { gc.close() })
	return gc
}

func (gc *groupConsumer) close() {
	gc.stop()
	<-gc.done
	gc.cl.Close() // commits and leaves the group
}

// waitConsumed waits until every record of [0,n) of each partition has been
// consumed by some member.
func waitConsumed(t *testing.T, members []*groupConsumer, perPartition map[int32]int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		missing := 0
		union := map[string]bool{}
		for _, m := range members {
			m.mu.Lock()
			for k := range m.seen {
				union[k] = true
			}
			m.mu.Unlock()
		}
		for p, n := range perPartition {
			for o := int64(0); o < n; o++ {
				if !union[fmt.Sprintf("%d/%d", p, o)] {
					missing++
				}
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records never consumed by the group", missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func produceN(t *testing.T, b *testBroker, topic string, n int, tag string) {
	t.Helper()
	p := b.client(t, kgo.DefaultProduceTopic(topic))
	var rs []*kgo.Record
	for i := 0; i < n; i++ {
		rs = append(rs, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i%23)), Value: []byte(fmt.Sprintf("%s-%d", tag, i))})
	}
	if err := p.ProduceSync(ctxT(t), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func endOffsets(t *testing.T, b *testBroker, topic string, parts int32) map[int32]int64 {
	out := map[int32]int64{}
	for i := int32(0); i < parts; i++ {
		p, _ := b.log.Partition(topic, i)
		out[i] = p.EndOffset()
	}
	return out
}

// checkExclusiveAssignment decodes the members' assignments of a Stable
// group: every partition of topic is owned by exactly one member, so no
// record is processed by two members at once.
func checkExclusiveAssignment(t *testing.T, b *testBroker, group, topic string, parts int32) {
	t.Helper()
	_, _, _, members := b.srv.opts.Groups.describe(group)
	owner := map[int32]string{}
	for _, m := range members {
		var a kmsg.ConsumerMemberAssignment
		if err := a.ReadFrom(m.MemberAssignment); err != nil {
			t.Fatalf("member %s assignment: %v", m.MemberID, err)
		}
		for _, tp := range a.Topics {
			for _, p := range tp.Partitions {
				if prev, ok := owner[p]; ok {
					t.Fatalf("partition %d assigned to both %s and %s", p, prev, m.MemberID)
				}
				owner[p] = m.MemberID
			}
		}
	}
	if int32(len(owner)) != parts {
		t.Fatalf("%d of %d partitions assigned: %v", len(owner), parts, owner)
	}
}

func describeMembers(t *testing.T, b *testBroker, group string) (string, int) {
	t.Helper()
	state, _, _, members := b.srv.opts.Groups.describe(group)
	return string(state), len(members)
}

// TestConsumerGroupRebalances: three franz-go members share a topic; one
// leaves, then one vanishes without leaving (its session expires); the
// others take over its partitions and no record is lost.
func TestConsumerGroupRebalances(t *testing.T) {
	b := startBroker(t, nil)
	b.log.CreateTopic("grp", 6, nil)
	produceN(t, b, "grp", 300, "a")
	members := []*groupConsumer{startGroupConsumer(t, b, "g1", "grp"), startGroupConsumer(t, b, "g1", "grp"), startGroupConsumer(t, b, "g1", "grp")}
	waitConsumed(t, members, endOffsets(t, b, "grp", 6))
	waitStable(t, b, "g1", 3)
	waitExclusive(t, b, "g1", "grp", 6)

	// One member leaves cleanly (LeaveGroup): the other two take over its
	// partitions from its committed offsets. What it consumed before
	// leaving still counts, so the union runs over all three.
	members[2].close()
	waitStable(t, b, "g1", 2)
	waitExclusive(t, b, "g1", "grp", 6)
	produceN(t, b, "grp", 300, "b")
	waitConsumed(t, members, endOffsets(t, b, "grp", 6))
	_, n := describeMembers(t, b, "g1")
	if n != 2 {
		t.Fatalf("%d members after one left", n)
	}

	// A member that joins and then never heartbeats (a killed process) is
	// expired after its session; the other two keep consuming everything.
	rawJoin(t, b, "g1")
	deadline := time.Now().Add(30 * time.Second)
	for _, n := describeMembers(t, b, "g1"); n != 3; _, n = describeMembers(t, b, "g1") {
		if time.Now().After(deadline) {
			t.Fatal("the silent member never joined")
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitStable(t, b, "g1", 2)
	waitExclusive(t, b, "g1", "grp", 6)
	produceN(t, b, "grp", 120, "c")
	waitConsumed(t, members, endOffsets(t, b, "grp", 6))
}

// waitStable waits until the group is Stable with n members.
func waitStable(t *testing.T, b *testBroker, group string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		state, got := describeMembers(t, b, group)
		if state == "Stable" && got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s: %s with %d members, want Stable with %d", group, state, got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rawJoin joins a member by hand with a short session and never
// heartbeats, as a process killed after joining would.
func rawJoin(t *testing.T, b *testBroker, group string) string {
	t.Helper()
	cl := b.client(t)
	ctx := ctxT(t)
	join := joinRequest(group, 1000, "cooperative-sticky")
	resp, err := join.RequestWith(ctx, cl)
	if err != nil || resp.ErrorCode != kerr.MemberIDRequired.Code {
		t.Fatalf("first join: %+v %v", resp, err)
	}
	join.MemberID = resp.MemberID
	// The rejoin waits for the rebalance; run it in the background and do
	// nothing more, like a process that died.
	go join.RequestWith(ctx, cl)
	return resp.MemberID
}

func TestCommittedOffsetsSurviveARestart(t *testing.T) {
	b := startBroker(t, nil)
	b.log.CreateTopic("commit", 2, nil)
	adm := kadm.NewClient(b.client(t))
	ctx := ctxT(t)
	offs := kadm.Offsets{}
	offs.AddOffset("commit", 0, 42, -1)
	offs.AddOffset("commit", 1, 7, -1)
	if resp, err := adm.CommitOffsets(ctx, "offline-group", offs); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", resp, err)
	}
	// Restart the coordinator over the same file.
	b.srv.opts.Groups.Close()
	g2, err := OpenGroups(filepath.Join(b.dir, "groups.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	b.srv.opts.Groups = g2
	fetched, err := adm.FetchOffsets(ctx, "offline-group")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := fetched.Lookup("commit", 0); o.At != 42 {
		t.Fatalf("partition 0 committed %d after restart", o.At)
	}
	if o, _ := fetched.Lookup("commit", 1); o.At != 7 {
		t.Fatalf("partition 1 committed %d after restart", o.At)
	}
	listed, err := adm.ListGroups(ctx)
	if err != nil || !strings.Contains(fmt.Sprint(listed.Groups()), "offline-group") {
		t.Fatalf("list groups: %v %v", listed, err)
	}
	del, err := adm.DeleteGroups(ctx, "offline-group", "never-was")
	if err != nil || del["offline-group"].Err != nil || !errorIs(del["never-was"].Err, kerr.GroupIDNotFound) {
		t.Fatalf("delete groups: %+v %v", del, err)
	}
}

func TestGroupErrors(t *testing.T) {
	b := startBroker(t, nil)
	cl := b.client(t)
	ctx := ctxT(t)
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Group, hb.MemberID, hb.Generation = "nobody", "ghost", 1
	if r, err := hb.RequestWith(ctx, cl); err != nil || r.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("heartbeat of unknown member: %+v %v", r, err)
	}
	join := kmsg.NewPtrJoinGroupRequest()
	join.Group, join.SessionTimeoutMillis, join.ProtocolType = "g", 10, "consumer"
	join.Protocols = append(join.Protocols, kmsg.NewJoinGroupRequestProtocol())
	if r, err := join.RequestWith(ctx, cl); err != nil || r.ErrorCode != kerr.InvalidSessionTimeout.Code {
		t.Fatalf("join with 10 ms session: %+v %v", r, err)
	}
	// A committed member with a wrong generation.
	if _, err := b.log.CreateTopic("x", 1, nil); err != nil {
		t.Fatal(err)
	}
	id := rawMember(t, b, "gen")
	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.Group, commit.MemberID, commit.Generation = "gen", id, 99
	ct := kmsg.NewOffsetCommitRequestTopic()
	ct.Topic = "x"
	cp := kmsg.NewOffsetCommitRequestTopicPartition()
	cp.Offset = 1
	ct.Partitions = append(ct.Partitions, cp)
	commit.Topics = append(commit.Topics, ct)
	if r, err := commit.RequestWith(ctx, cl); err != nil || r.Topics[0].Partitions[0].ErrorCode != kerr.IllegalGeneration.Code {
		t.Fatalf("commit with a wrong generation: %+v %v", r, err)
	}
	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Groups = []string{"gen"}
	if r, err := del.RequestWith(ctx, cl); err != nil || r.Groups[0].ErrorCode != kerr.NonEmptyGroup.Code {
		t.Fatalf("delete a group with members: %+v %v", r, err)
	}
}

// rawMember joins and syncs a one-member group by hand, returning its id.
func rawMember(t *testing.T, b *testBroker, group string) string {
	cl := b.client(t)
	ctx := ctxT(t)
	join := joinRequest(group, 30000, "range")
	r, err := join.RequestWith(ctx, cl)
	if err == nil && r.ErrorCode == kerr.MemberIDRequired.Code {
		join.MemberID = r.MemberID // KIP-394: rejoin with the id handed out
		r, err = join.RequestWith(ctx, cl)
	}
	if err != nil || r.ErrorCode != 0 || r.LeaderID != r.MemberID || r.Generation != 1 {
		t.Fatalf("join: %+v %v", r, err)
	}
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Group, sync.MemberID, sync.Generation = group, r.MemberID, r.Generation
	a := kmsg.NewSyncGroupRequestGroupAssignment()
	a.MemberID, a.MemberAssignment = r.MemberID, []byte("mine")
	sync.GroupAssignment = append(sync.GroupAssignment, a)
	sr, err := sync.RequestWith(ctx, cl)
	if err != nil || sr.ErrorCode != 0 || string(sr.MemberAssignment) != "mine" {
		t.Fatalf("sync: %+v %v", sr, err)
	}
	return r.MemberID
}

// TestKcatGroupConsume: kcat -G (librdkafka's balanced consumer) consumes
// through the group protocol and commits.
func TestKcatGroupConsume(t *testing.T) {
	kcat := requireTool(t, "kcat")
	b := startBroker(t, nil)
	b.log.CreateTopic("kg", 2, nil)
	produceN(t, b, "kg", 40, "v")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcat, "-b", b.addr, "-G", "kcat-group", "-X", "auto.offset.reset=earliest", "-f", "%s\n", "-e", "kg")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kcat -G: %v\n%s", err, out)
	}
	got := 0
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "v-") {
			got++
		}
	}
	if got != 40 {
		t.Fatalf("kcat -G consumed %d of 40 records:\n%s", got, out)
	}
}

// waitExclusive waits for a cooperative rebalance to settle (members give up
// partitions in a second round) and checks ownership is exclusive and total.
func waitExclusive(t *testing.T, b *testBroker, group, topic string, parts int32) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		state, _, _, members := b.srv.opts.Groups.describe(group)
		assigned := map[int32]int{}
		for _, m := range members {
			var a kmsg.ConsumerMemberAssignment
			if a.ReadFrom(m.MemberAssignment) == nil {
				for _, tp := range a.Topics {
					for _, p := range tp.Partitions {
						assigned[p]++
					}
				}
			}
		}
		if state == stateStable && int32(len(assigned)) == parts {
			checkExclusiveAssignment(t, b, group, topic, parts)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s never settled with all %d partitions assigned (%s, %v)", group, parts, state, assigned)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// joinRequest builds a consumer JoinGroup with one protocol, as a client
// joining by hand sends it.
func joinRequest(group string, sessionMs int32, protocol string) *kmsg.JoinGroupRequest {
	join := kmsg.NewPtrJoinGroupRequest()
	join.Group, join.SessionTimeoutMillis, join.RebalanceTimeoutMillis, join.ProtocolType = group, sessionMs, 5000, "consumer"
	proto := kmsg.NewJoinGroupRequestProtocol()
	proto.Name = protocol
	join.Protocols = append(join.Protocols, proto)
	return join
}

// TestGroupsKeepTheirOwnCopies: a request's byte fields point into the
// connection's read buffer, which the next request on that connection
// overwrites; the coordinator must copy the member metadata and
// assignments it keeps.
func TestGroupsKeepTheirOwnCopies(t *testing.T) {
	b := startBroker(t, nil)
	g := b.srv.opts.Groups
	join := joinRequest("copies", 30000, "range")
	join.Version = 3 // no MEMBER_ID_REQUIRED round trip
	join.Protocols[0].Metadata = []byte("metadata")
	jr := g.join(ctxT(t), join, "client", "/127.0.0.1")
	if jr.ErrorCode != 0 {
		t.Fatalf("join: %+v", jr)
	}
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Group, sync.MemberID, sync.Generation = "copies", jr.MemberID, jr.Generation
	a := kmsg.NewSyncGroupRequestGroupAssignment()
	a.MemberID, a.MemberAssignment = jr.MemberID, []byte("assignment")
	sync.GroupAssignment = append(sync.GroupAssignment, a)
	if sr := g.sync(ctxT(t), sync); sr.ErrorCode != 0 {
		t.Fatalf("sync: %+v", sr)
	}
	// The next request lands in the same buffer.
	copy(join.Protocols[0].Metadata, "XXXXXXXX")
	copy(sync.GroupAssignment[0].MemberAssignment, "XXXXXXXXXX")
	_, _, _, members := g.describe("copies")
	if len(members) != 1 || string(members[0].ProtocolMetadata) != "metadata" || string(members[0].MemberAssignment) != "assignment" {
		t.Fatalf("described after the buffer was reused: %q %q", members[0].ProtocolMetadata, members[0].MemberAssignment)
	}
}
