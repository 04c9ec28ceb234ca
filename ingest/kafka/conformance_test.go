package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	flog "ferry/log"
)

// Kafka semantics that clients' own test suites check (issue 17), each
// asserted with a real client.

// TestOffsetCommitToUnknownTopicOrPartitionIsRefused: a commit naming a
// topic that does not exist, or a partition past a topic's count, is
// answered UNKNOWN_TOPIC_OR_PARTITION for those partitions and stores
// nothing for them, while the request's valid partitions are committed.
func TestOffsetCommitToUnknownTopicOrPartitionIsRefused(t *testing.T) {
	b := startBroker(t, func(o *Options) { o.AutoCreateTopics = false })
	if _, err := b.log.CreateTopic("known", 2, nil); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(b.client(t))
	ctx := ctxT(t)
	offs := kadm.Offsets{}
	offs.AddOffset("known", 0, 5, -1)
	offs.AddOffset("known", 7, 5, -1) // past the topic's two partitions
	offs.AddOffset("nowhere", 0, 5, -1)
	resp, err := adm.CommitOffsets(ctx, "g-unknown", offs)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := resp.Lookup("known", 0); r.Err != nil {
		t.Fatalf("known-0: %v", r.Err)
	}
	for _, tp := range []struct {
		topic string
		p     int32
	}{{"known", 7}, {"nowhere", 0}} {
		r, ok := resp.Lookup(tp.topic, tp.p)
		if !ok || !errors.Is(r.Err, kerr.UnknownTopicOrPartition) {
			t.Fatalf("%s-%d: %+v (answered: %v), want UNKNOWN_TOPIC_OR_PARTITION", tp.topic, tp.p, r, ok)
		}
	}
	fetched, err := adm.FetchOffsets(ctx, "g-unknown")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := fetched.Lookup("known", 0); !ok || o.At != 5 {
		t.Fatalf("known-0 committed %+v", o)
	}
	if _, ok := fetched.Lookup("nowhere", 0); ok {
		t.Fatal("an offset was stored for a topic that does not exist")
	}
	if _, ok := fetched.Lookup("known", 7); ok {
		t.Fatal("an offset was stored for a partition that does not exist")
	}
	if _, err := b.log.Topic("nowhere"); err == nil {
		t.Fatal("the commit created the topic")
	}
}

// TestDescribeGroupsOfAnUnknownGroupIsDead: a group with neither members
// nor committed offsets is Dead; one with offsets only is Empty.
func TestDescribeGroupsOfAnUnknownGroupIsDead(t *testing.T) {
	b := startBroker(t, nil)
	if _, err := b.log.CreateTopic("dg", 1, nil); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(b.client(t))
	ctx := ctxT(t)
	offs := kadm.Offsets{}
	offs.AddOffset("dg", 0, 1, -1)
	if resp, err := adm.CommitOffsets(ctx, "with-offsets", offs); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", resp, err)
	}
	described, err := adm.DescribeGroups(ctx, "never-was", "with-offsets")
	if err != nil {
		t.Fatal(err)
	}
	if g := described["never-was"]; g.Err != nil || g.State != "Dead" || len(g.Members) != 0 {
		t.Fatalf("unknown group: %+v, want Dead with no error", g)
	}
	if g := described["with-offsets"]; g.Err != nil || g.State != "Empty" {
		t.Fatalf("group with offsets only: %+v, want Empty", g)
	}
	// Deleted, it is gone: Dead again.
	if del, err := adm.DeleteGroups(ctx, "with-offsets"); err != nil || del["with-offsets"].Err != nil {
		t.Fatalf("delete: %+v %v", del, err)
	}
	described, err = adm.DescribeGroups(ctx, "with-offsets")
	if err != nil || described["with-offsets"].State != "Dead" {
		t.Fatalf("deleted group: %+v %v, want Dead", described, err)
	}
}

// TestTransactionalProducerFailsFast: transactions are not supported; a
// transactional franz-go producer gets UNSUPPORTED_VERSION at once (from
// FindCoordinator and from InitProducerId alike) instead of retrying a
// retriable error for tens of seconds.
func TestTransactionalProducerFailsFast(t *testing.T) {
	b := startBroker(t, nil)
	if _, err := b.log.CreateTopic("txn", 1, nil); err != nil {
		t.Fatal(err)
	}
	cl := b.client(t, kgo.TransactionalID("ferry-txn"), kgo.DefaultProduceTopic("txn"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err := cl.BeginTransaction()
	if err == nil {
		err = cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr()
	}
	if !errors.Is(err, kerr.UnsupportedVersion) {
		t.Fatalf("transactional produce after %v: %v, want UNSUPPORTED_VERSION", time.Since(start), err)
	}

	// InitProducerId itself, asked of the broker directly (a client would
	// route it to the transaction coordinator it could not find).
	req := kmsg.NewPtrInitProducerIDRequest()
	req.TransactionalID, req.TransactionTimeoutMillis = kmsg.StringPtr("ferry-txn"), 60000
	resp, err := req.RequestWith(ctx, b.client(t).Broker(int(b.srv.opts.NodeID)))
	if err != nil || resp.ErrorCode != kerr.UnsupportedVersion.Code || resp.ProducerID != -1 {
		t.Fatalf("InitProducerId with a transactional id: %+v %v", resp, err)
	}
}

// withRebalanceDelay makes a test broker's coordinator wait d for the
// first members of a new group (instead of testRebalanceDelay).
func withRebalanceDelay(t *testing.T, d time.Duration) func(*Options) {
	return func(o *Options) {
		g, err := OpenGroupsOptions(filepath.Join(t.TempDir(), "groups.db"), GroupsOptions{Logger: slog.New(slog.DiscardHandler), InitialRebalanceDelay: d})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Close() }) // after the server's own cleanup, which was registered later
		o.Groups = g
	}
}

// waitGeneration waits for group to be Stable with n members and returns
// its generation.
func waitGeneration(t *testing.T, b *testBroker, group string, n int) int32 {
	t.Helper()
	var gen int32
	waitFor(t, fmt.Sprintf("group %s Stable with %d members", group, n), func() bool {
		state, g, _ := groupSnapshot(b, group)
		st, members := describeMembers(t, b, group)
		gen = g
		return state == stateStable && st == string(stateStable) && members == n
	})
	return gen
}

// TestConsumersJoiningTogetherShareOneGeneration: two franz-go consumers
// joining a new group a few ms apart land in one generation, as Kafka's
// group.initial.rebalance.delay.ms makes them, instead of the first being
// assigned everything and then rebalanced.
func TestConsumersJoiningTogetherShareOneGeneration(t *testing.T) {
	b := startBroker(t, withRebalanceDelay(t, time.Second))
	if _, err := b.log.CreateTopic("together", 4, nil); err != nil {
		t.Fatal(err)
	}
	startGroupConsumer(t, b, "together-g", "together")
	startGroupConsumer(t, b, "together-g", "together")
	if gen := waitGeneration(t, b, "together-g", 2); gen != 1 {
		t.Fatalf("the two consumers landed in generation %d, want both in the first", gen)
	}
	waitExclusive(t, b, "together-g", "together", 4)
}

// TestKcatConsumersJoiningTogetherShareOneGeneration: the same with two
// kcat -G (librdkafka) consumers.
func TestKcatConsumersJoiningTogetherShareOneGeneration(t *testing.T) {
	kcat := requireTool(t, "kcat")
	b := startBroker(t, withRebalanceDelay(t, time.Second))
	if _, err := b.log.CreateTopic("kt", 4, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var cmds []*exec.Cmd
	for i := 0; i < 2; i++ {
		cmd := exec.CommandContext(ctx, kcat, "-b", b.addr, "-G", "kcat-together", "-q", "kt")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	defer func() {
		for _, cmd := range cmds {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	if gen := waitGeneration(t, b, "kcat-together", 2); gen != 1 {
		t.Fatalf("the two kcat consumers landed in generation %d, want both in the first", gen)
	}
}

// TestInitialRebalanceDelayDefaultIsKafkas: a coordinator opened with the
// defaults holds a new group's first rebalance for Kafka's 3 s.
func TestInitialRebalanceDelayDefaultIsKafkas(t *testing.T) {
	b := startBroker(t, func(o *Options) {
		g, err := OpenGroups(filepath.Join(t.TempDir(), "groups.db"), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Close() })
		o.Groups = g
	})
	cl := b.client(t)
	join := joinRequest("default-delay", 30000, "range")
	start := time.Now()
	r, err := join.RequestWith(ctxT(t), cl)
	if err == nil && r.ErrorCode == kerr.MemberIDRequired.Code {
		join.MemberID = r.MemberID
		start = time.Now()
		r, err = join.RequestWith(ctxT(t), cl)
	}
	took := time.Since(start)
	if err != nil || r.ErrorCode != 0 || r.Generation != 1 {
		t.Fatalf("join: %+v %v", r, err)
	}
	if took < DefaultInitialRebalanceDelay || DefaultInitialRebalanceDelay != 3*time.Second {
		t.Fatalf("the first join of a new group was answered after %v, want Kafka's %v", took, 3*time.Second)
	}
}

// TestListOffsetsMaxTimestamp: ListOffsets v7+ with -3 answers the first
// record holding the partition's largest timestamp (KIP-734), not the
// first record, and -1/-1 for a partition without records.
func TestListOffsetsMaxTimestamp(t *testing.T) {
	b := startBroker(t, nil)
	if _, err := b.log.CreateTopic("maxts", 2, nil); err != nil {
		t.Fatal(err)
	}
	cl := b.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx := ctxT(t)
	base := time.Now().Add(-time.Hour)
	for i, ms := range []int64{10, 50, 20, 50, 30} { // the maximum first at offset 1
		r := &kgo.Record{Topic: "maxts", Value: []byte{byte(i)}, Timestamp: base.Add(time.Duration(ms) * time.Millisecond)}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = "maxts"
	for p := int32(0); p < 2; p++ {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, -3
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Version < 7 {
		t.Fatalf("ListOffsets answered at v%d: v7 (max timestamp) is not served", resp.Version)
	}
	want := base.Add(50 * time.Millisecond).UnixMilli()
	got := map[int32][2]int64{}
	for _, p := range resp.Topics[0].Partitions {
		if p.ErrorCode != 0 {
			t.Fatalf("partition %d: error %d", p.Partition, p.ErrorCode)
		}
		got[p.Partition] = [2]int64{p.Offset, p.Timestamp}
	}
	if got[0] != [2]int64{1, want} || got[1] != [2]int64{-1, -1} {
		t.Fatalf("max timestamp: %v, want partition 0 at offset 1 (%d), partition 1 -1/-1", got, want)
	}
}

// TestACLAPIsWithoutAnAuthorizerSaySecurityDisabled: without SASL and ACLs
// the ACL APIs are still served, each answering SECURITY_DISABLED as Kafka
// does without an authorizer, instead of being missing.
func TestACLAPIsWithoutAnAuthorizerSaySecurityDisabled(t *testing.T) {
	b := startBroker(t, nil)
	adm := kadm.NewClient(b.client(t))
	ctx := ctxT(t)
	acls := kadm.NewACLs().Allow("User:alice").AllowHosts("*").Topics("t").ResourcePatternType(kadm.ACLPatternLiteral).Operations(kadm.OpRead)
	describe := kmsg.NewPtrDescribeACLsRequest()
	describe.ResourceType, describe.ResourcePatternType = kmsg.ACLResourceTypeAny, kmsg.ACLResourcePatternTypeAny
	describe.Operation, describe.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
	described, err := describe.RequestWith(ctx, b.client(t))
	if err != nil || described.ErrorCode != kerr.SecurityDisabled.Code {
		t.Fatalf("DescribeACLs: %+v %v, want SECURITY_DISABLED", described, err)
	}
	created, err := adm.CreateACLs(ctx, acls)
	if err != nil || len(created) != 1 || !errors.Is(created[0].Err, kerr.SecurityDisabled) {
		t.Fatalf("CreateACLs: %+v %v, want SECURITY_DISABLED", created, err)
	}
	deleted, err := adm.DeleteACLs(ctx, acls)
	if err != nil || len(deleted) != 1 || !errors.Is(deleted[0].Err, kerr.SecurityDisabled) {
		t.Fatalf("DeleteACLs: %+v %v, want SECURITY_DISABLED", deleted, err)
	}
}

// someACLs allows exactly the (resource type, name, operation) triples it
// holds, for any principal.
type someACLs map[[3]string]bool

func (a someACLs) Authorize(principal, host, rt, name, op string) bool {
	return a[[3]string{rt, name, op}]
}
func (a someACLs) AuthorizeAny(principal, host, rt, op string) bool { return false }
func (someACLs) AddACLs([]ACL) error                                { return nil }
func (someACLs) ACLs(ACLFilter) ([]ACL, error)                      { return nil, nil }
func (someACLs) DeleteACLs(ACLFilter) ([]ACL, error)                { return nil, nil }

// bits is an authorized-operations bitfield of ops.
func bits(ops ...kmsg.ACLOperation) int32 {
	var b int32
	for _, op := range ops {
		b |= 1 << int32(op)
	}
	return b
}

// authorizedOpsSeen asks Metadata (v10, cluster and topic operations),
// DescribeCluster and DescribeGroups for authorized operations.
func authorizedOpsSeen(t *testing.T, client func(...kgo.Opt) *kgo.Client, topic, group string) (cluster, topicOps, describeCluster, groupOps int32) {
	t.Helper()
	ctx := ctxT(t)
	md := kmsg.NewPtrMetadataRequest() // asked at v10: v11 dropped the cluster's operations
	md.IncludeClusterAuthorizedOperations, md.IncludeTopicAuthorizedOperations = true, true
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	md.Topics = append(md.Topics, rt)
	v10 := kversion.Stable()
	v10.SetMaxKeyVersion(3, 10)
	mresp, err := md.RequestWith(ctx, client(kgo.MaxVersions(v10)))
	cl := client()
	if err != nil || len(mresp.Topics) != 1 || mresp.Version != 10 {
		t.Fatalf("metadata: %+v %v", mresp, err)
	}
	dc := kmsg.NewPtrDescribeClusterRequest()
	dc.IncludeClusterAuthorizedOperations = true
	dresp, err := dc.RequestWith(ctx, cl)
	if err != nil || dresp.ErrorCode != 0 || len(dresp.Brokers) != 1 {
		t.Fatalf("DescribeCluster: %+v %v", dresp, err)
	}
	dg := kmsg.NewPtrDescribeGroupsRequest()
	dg.Groups, dg.IncludeAuthorizedOperations = []string{group}, true
	gresp, err := dg.RequestWith(ctx, cl)
	if err != nil || len(gresp.Groups) != 1 {
		t.Fatalf("DescribeGroups: %+v %v", gresp, err)
	}
	return mresp.AuthorizedOperations, mresp.Topics[0].AuthorizedOperations, dresp.ClusterAuthorizedOperations, gresp.Groups[0].AuthorizedOperations
}

// TestAuthorizedOperations: Metadata, DescribeCluster and DescribeGroups
// answer the authorized operations when asked: without an authorizer every
// operation Kafka defines on the resource, with one the principal's.
func TestAuthorizedOperations(t *testing.T) {
	allTopic := bits(kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationCreate, kmsg.ACLOperationDescribe,
		kmsg.ACLOperationDelete, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribeConfigs, kmsg.ACLOperationAlterConfigs)
	allGroup := bits(kmsg.ACLOperationRead, kmsg.ACLOperationDescribe, kmsg.ACLOperationDelete)
	allCluster := bits(kmsg.ACLOperationCreate, kmsg.ACLOperationClusterAction, kmsg.ACLOperationDescribeConfigs,
		kmsg.ACLOperationAlterConfigs, kmsg.ACLOperationIdempotentWrite, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribe)

	t.Run("no authorizer", func(t *testing.T) {
		b := startBroker(t, nil)
		b.log.CreateTopic("ops", 1, nil)
		cluster, topic, dcluster, group := authorizedOpsSeen(t, func(o ...kgo.Opt) *kgo.Client { return b.client(t, o...) }, "ops", "ops-g")
		if cluster != allCluster || dcluster != allCluster || topic != allTopic || group != allGroup {
			t.Fatalf("cluster %b/%b topic %b group %b, want %b %b %b", cluster, dcluster, topic, group, allCluster, allTopic, allGroup)
		}
		// kadm reads the same from DescribeGroups.
		described, err := kadm.NewClient(b.client(t)).DescribeGroups(ctxT(t), "ops-g")
		if err != nil || len(described["ops-g"].AuthorizedOperations) != 3 {
			t.Fatalf("kadm DescribeGroups: %+v %v", described, err)
		}
	})
	t.Run("the principal's", func(t *testing.T) {
		acls := someACLs{
			{"CLUSTER", clusterName, "DESCRIBE"}: true,
			{"TOPIC", "ops", "DESCRIBE"}:         true, {"TOPIC", "ops", "READ"}: true,
			{"GROUP", "ops-g", "DESCRIBE"}: true,
		}
		b := startBroker(t, func(o *Options) {
			o.SASLMechanisms, o.Credentials, o.ACLs, o.AuthFailureDelay = []string{SASLPlain}, memCreds{"alice": "s3cret"}, acls, -1
		})
		b.log.CreateTopic("ops", 1, nil)
		alice := func(o ...kgo.Opt) *kgo.Client {
			return b.client(t, append(o, kgo.SASL(plain.Auth{User: "alice", Pass: "s3cret"}.AsMechanism()))...)
		}
		cluster, topic, dcluster, group := authorizedOpsSeen(t, alice, "ops", "ops-g")
		wantCluster, wantTopic, wantGroup := bits(kmsg.ACLOperationDescribe), bits(kmsg.ACLOperationDescribe, kmsg.ACLOperationRead), bits(kmsg.ACLOperationDescribe)
		if cluster != wantCluster || dcluster != wantCluster || topic != wantTopic || group != wantGroup {
			t.Fatalf("cluster %b/%b topic %b group %b, want %b %b %b", cluster, dcluster, topic, group, wantCluster, wantTopic, wantGroup)
		}
	})
}

// TestOffsetDelete: kadm's DeleteOffsets (OffsetDelete) deletes a group's
// committed offsets, except those of a topic a member subscribes to
// (GROUP_SUBSCRIBED_TO_TOPIC); an unknown group is GROUP_ID_NOT_FOUND.
func TestOffsetDelete(t *testing.T) {
	b := startBroker(t, nil)
	for _, topic := range []string{"od-a", "od-b"} {
		if _, err := b.log.CreateTopic(topic, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	adm := kadm.NewClient(b.client(t))
	ctx := ctxT(t)
	offs := kadm.Offsets{}
	offs.AddOffset("od-a", 0, 0, -1)
	offs.AddOffset("od-b", 0, 3, -1)
	if resp, err := adm.CommitOffsets(ctx, "od", offs); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", resp, err)
	}
	startGroupConsumer(t, b, "od", "od-a") // a member subscribed to od-a only
	waitStable(t, b, "od", 1)
	set := kadm.TopicsSet{}
	set.Add("od-a", 0)
	set.Add("od-b", 0)
	set.Add("od-missing", 0)
	resp, err := adm.DeleteOffsets(ctx, "od", set)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp["od-a"][0]; !errors.Is(err, kerr.GroupSubscribedToTopic) {
		t.Fatalf("od-a (subscribed): %v, want GROUP_SUBSCRIBED_TO_TOPIC", err)
	}
	if err := resp["od-b"][0]; err != nil {
		t.Fatalf("od-b: %v", err)
	}
	if err := resp["od-missing"][0]; !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("od-missing: %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}
	fetched, err := adm.FetchOffsets(ctx, "od")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fetched.Lookup("od-b", 0); ok {
		t.Fatal("od-b's offset is still committed")
	}
	if _, ok := fetched.Lookup("od-a", 0); !ok {
		t.Fatal("od-a's offset was deleted under its subscriber")
	}
	if _, err := adm.DeleteOffsets(ctx, "never-was", set); !errors.Is(err, kerr.GroupIDNotFound) {
		t.Fatalf("unknown group: %v, want GROUP_ID_NOT_FOUND", err)
	}
}

// TestAlterConfigsReplacesTheWholeSet: AlterConfigs (kadm's
// AlterTopicConfigsState) makes the configs given a topic's whole set of
// overrides, the others returning to their defaults; a key ferry does not
// know is INVALID_CONFIG and changes nothing.
func TestAlterConfigsReplacesTheWholeSet(t *testing.T) {
	b := startBroker(t, nil)
	if _, err := b.log.CreateTopic("ac", 1, map[string]string{"retention.ms": "60000", "segment.bytes": "1048576"}); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(b.client(t))
	ctx := ctxT(t)
	resp, err := adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "retention.bytes", Value: kmsg.StringPtr("5000000")}}, "ac")
	if err != nil || len(resp) != 1 || resp[0].Err != nil {
		t.Fatalf("AlterConfigs: %+v %v", resp, err)
	}
	info, _ := b.log.Topic("ac")
	if len(info.Configs) != 1 || info.Configs["retention.bytes"] != "5000000" {
		t.Fatalf("overrides after AlterConfigs: %v, want only retention.bytes", info.Configs)
	}
	resp, err = adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "no.such.key", Value: kmsg.StringPtr("1")}}, "ac")
	if err != nil || len(resp) != 1 || !errors.Is(resp[0].Err, kerr.InvalidConfig) || resp[0].ErrMessage == "" {
		t.Fatalf("AlterConfigs with an unknown key: %+v %v, want INVALID_CONFIG with a reason", resp, err)
	}
	if info, _ := b.log.Topic("ac"); info.Configs["retention.bytes"] != "5000000" {
		t.Fatalf("a refused AlterConfigs changed the overrides: %v", info.Configs)
	}
}

// TestExplicitReplicaAssignments: CreateTopics and CreatePartitions accept
// assignments naming this broker, the only live one, and refuse one naming
// another broker with INVALID_REPLICA_ASSIGNMENT.
func TestExplicitReplicaAssignments(t *testing.T) {
	b := startBroker(t, nil)
	cl := b.client(t)
	ctx := ctxT(t)
	create := func(topic string, brokers ...int32) *kmsg.CreateTopicsResponseTopic {
		t.Helper()
		req := kmsg.NewPtrCreateTopicsRequest()
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, -1, -1
		for p, broker := range brokers {
			a := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
			a.Partition, a.Replicas = int32(p), []int32{broker}
			rt.ReplicaAssignment = append(rt.ReplicaAssignment, a)
		}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil || len(resp.Topics) != 1 {
			t.Fatalf("CreateTopics: %+v %v", resp, err)
		}
		return &resp.Topics[0]
	}
	if r := create("assigned", 0, 0); r.ErrorCode != 0 || r.NumPartitions != 2 {
		t.Fatalf("assignment naming this broker: %+v", r)
	}
	if n, _ := b.log.PartitionCount("assigned"); n != 2 {
		t.Fatalf("created with %d partitions, want 2", n)
	}
	if r := create("elsewhere", 0, 7); r.ErrorCode != kerr.InvalidReplicaAssignment.Code || r.ErrorMessage == nil {
		t.Fatalf("assignment naming broker 7: %+v", r)
	}
	grow := func(count int32, brokers ...int32) *kmsg.CreatePartitionsResponseTopic {
		t.Helper()
		req := kmsg.NewPtrCreatePartitionsRequest()
		rt := kmsg.NewCreatePartitionsRequestTopic()
		rt.Topic, rt.Count = "assigned", count
		for _, broker := range brokers {
			a := kmsg.NewCreatePartitionsRequestTopicAssignment()
			a.Replicas = []int32{broker}
			rt.Assignment = append(rt.Assignment, a)
		}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil || len(resp.Topics) != 1 {
			t.Fatalf("CreatePartitions: %+v %v", resp, err)
		}
		return &resp.Topics[0]
	}
	if r := grow(3, 0); r.ErrorCode != 0 {
		t.Fatalf("growing with an assignment naming this broker: %+v", r)
	}
	if r := grow(4, 5); r.ErrorCode != kerr.InvalidReplicaAssignment.Code {
		t.Fatalf("growing with an assignment naming broker 5: %+v", r)
	}
	if n, _ := b.log.PartitionCount("assigned"); n != 3 {
		t.Fatalf("%d partitions, want 3", n)
	}
}

// TestKafkaTopicConfigs: Kafka's topic configs that ferry keeps without
// acting on them are accepted with the values it can stand behind,
// described with their documentation, and refused otherwise with
// INVALID_CONFIG and the reason (cleanup.policy=compact, say).
func TestKafkaTopicConfigs(t *testing.T) {
	b := startBroker(t, nil)
	adm := kadm.NewClient(b.client(t))
	ctx := ctxT(t)
	kept := map[string]*string{
		"cleanup.policy": kmsg.StringPtr("delete"), "compression.type": kmsg.StringPtr("producer"),
		"min.insync.replicas": kmsg.StringPtr("1"), "delete.retention.ms": kmsg.StringPtr("1000"),
		"max.compaction.lag.ms": kmsg.StringPtr("60000"), "message.timestamp.type": kmsg.StringPtr("CreateTime"),
	}
	if r, err := adm.CreateTopic(ctx, 1, 1, kept, "kafka-configs"); err != nil || r.Err != nil {
		t.Fatalf("creating with Kafka's configs: %+v %v", r, err)
	}
	for key, want := range map[string]string{
		"cleanup.policy":         "compact",
		"compression.type":       "brotli",
		"message.timestamp.type": "Now",
		"min.insync.replicas":    "2",
	} {
		r, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{key: kmsg.StringPtr(want)}, "refused-"+strings.ReplaceAll(key, ".", "-"))
		if err == nil {
			err = r.Err
		}
		if !errors.Is(err, kerr.InvalidConfig) || !strings.Contains(r.ErrMessage, key) {
			t.Fatalf("%s=%s: %v (%q), want INVALID_CONFIG with the reason", key, want, err, r.ErrMessage)
		}
	}
	described, err := adm.DescribeTopicConfigs(ctx, "kafka-configs")
	if err != nil || len(described) != 1 {
		t.Fatalf("describe: %+v %v", described, err)
	}
	got := map[string]kadm.Config{}
	for _, c := range described[0].Configs {
		got[c.Key] = c
	}
	if c := got["cleanup.policy"]; c.MaybeValue() != "delete" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("cleanup.policy described as %+v", c)
	}
	if c, ok := got["segment.jitter.ms"]; !ok || c.MaybeValue() != "0" || c.Source != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("segment.jitter.ms described as %+v (present: %v)", c, ok)
	}
}

// TestIncrementalAlterConfigsAppendSubtract: APPEND and SUBTRACT change a
// list config item by item from its effective value; the list that results
// is checked like any value (cleanup.policy gaining compact is refused), and
// they are INVALID_CONFIG on a key that is not a list.
func TestIncrementalAlterConfigsAppendSubtract(t *testing.T) {
	b := startBroker(t, nil)
	if _, err := b.log.CreateTopic("lists", 1, nil); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(b.client(t))
	ctx := ctxT(t)
	const key = "leader.replication.throttled.replicas"
	alter := func(op kadm.IncrementalOp, name, value string) error {
		t.Helper()
		resp, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: op, Name: name, Value: kmsg.StringPtr(value)}}, "lists")
		if err != nil {
			return err
		}
		return resp[0].Err
	}
	for _, step := range []struct {
		op    kadm.IncrementalOp
		value string
		want  string
	}{{kadm.AppendConfig, "0:0", "0:0"}, {kadm.AppendConfig, "1:0,0:0", "0:0,1:0"}, {kadm.SubtractConfig, "0:0", "1:0"}} {
		if err := alter(step.op, key, step.value); err != nil {
			t.Fatalf("%v %s: %v", step.op, step.value, err)
		}
		if info, _ := b.log.Topic("lists"); info.Configs[key] != step.want {
			t.Fatalf("after %v %s: %q, want %q", step.op, step.value, info.Configs[key], step.want)
		}
	}
	if err := alter(kadm.AppendConfig, "cleanup.policy", "compact"); !errors.Is(err, kerr.InvalidConfig) {
		t.Fatalf("APPEND compact to cleanup.policy: %v, want INVALID_CONFIG", err)
	}
	if err := alter(kadm.AppendConfig, "retention.ms", "1"); !errors.Is(err, kerr.InvalidConfig) {
		t.Fatalf("APPEND to retention.ms: %v, want INVALID_CONFIG", err)
	}
}

// TestDescribeConfigsSynonyms: with synonyms asked for, each config lists
// every value that could apply, in precedence order (the topic's, the
// node's default, the built-in default), and its source is the first.
func TestDescribeConfigsSynonyms(t *testing.T) {
	b := startBrokerLog(t, func(o *flog.Options) { o.TopicDefaults = map[string]string{"retention.ms": "3600000"} }, nil, nil)
	if _, err := b.log.CreateTopic("syn", 1, map[string]string{"retention.ms": "60000"}); err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrDescribeConfigsRequest()
	rr := kmsg.NewDescribeConfigsRequestResource()
	rr.ResourceType, rr.ResourceName, rr.ConfigNames = kmsg.ConfigResourceTypeTopic, "syn", []string{"retention.ms", "segment.bytes"}
	req.Resources, req.IncludeSynonyms, req.IncludeDocumentation = append(req.Resources, rr), true, true
	resp, err := req.RequestWith(ctxT(t), b.client(t))
	if err != nil || len(resp.Resources) != 1 || len(resp.Resources[0].Configs) != 2 {
		t.Fatalf("DescribeConfigs: %+v %v", resp, err)
	}
	type syn struct {
		value  string
		source kmsg.ConfigSource
	}
	for _, c := range resp.Resources[0].Configs {
		var got []syn
		for _, s := range c.ConfigSynonyms {
			got = append(got, syn{*s.Value, s.Source})
		}
		var want []syn
		switch c.Name {
		case "retention.ms":
			want = []syn{{"60000", kmsg.ConfigSourceDynamicTopicConfig}, {"3600000", kmsg.ConfigSourceStaticBrokerConfig}, {"604800000", kmsg.ConfigSourceDefaultConfig}}
		case "segment.bytes":
			want = []syn{{"67108864", kmsg.ConfigSourceDefaultConfig}}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) || c.Source != want[0].source || c.Documentation == nil {
			t.Fatalf("%s: synonyms %v, source %v, want %v", c.Name, got, c.Source, want)
		}
	}
}

// TestDescribeBrokerConfigs: the BROKER resource describes the node's
// settings under Kafka's names, read-only, with the values it runs with;
// another broker's id is INVALID_REQUEST.
func TestDescribeBrokerConfigs(t *testing.T) {
	b := startBroker(t, func(o *Options) { o.DefaultPartitions = 5 })
	adm := kadm.NewClient(b.client(t))
	ctx := ctxT(t)
	described, err := adm.DescribeBrokerConfigs(ctx, 0)
	if err != nil || len(described) != 1 || described[0].Err != nil {
		t.Fatalf("DescribeBrokerConfigs: %+v %v", described, err)
	}
	got := map[string]kadm.Config{}
	for _, c := range described[0].Configs {
		got[c.Key] = c
	}
	for key, want := range map[string]string{
		"num.partitions":                   "5",
		"auto.create.topics.enable":        "true",
		"default.replication.factor":       "1",
		"group.initial.rebalance.delay.ms": strconv.FormatInt(testRebalanceDelay.Milliseconds(), 10),
		"advertised.listeners":             "PLAINTEXT://" + b.addr,
	} {
		if c, ok := got[key]; !ok || c.MaybeValue() != want || c.Source != kmsg.ConfigSourceStaticBrokerConfig {
			t.Errorf("%s: %+v (present %v), want %q from the static config", key, c, ok, want)
		}
	}
	other, err := adm.DescribeBrokerConfigs(ctx, 7)
	if err == nil && (len(other) != 1 || !errors.Is(other[0].Err, kerr.InvalidRequest)) {
		t.Fatalf("another broker's configs: %+v", other)
	}
}
