package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"ferry/edge/cluster"
	"ferry/ingest/kafka"
)

// offsetsLeader is the leader of a group's partition of the offsets topic
// (-1: none, or no such topic yet) on node n's image.
func offsetsLeader(n *Node, group string) (partition, leader int32) {
	partition, leader = -1, cluster.NoLeader
	n.Cluster().FSM().View(func(im *cluster.Image) {
		t := im.Topics[offsetsTopic]
		if t == nil {
			return
		}
		partition = kafka.OffsetsPartition(group, int32(len(t.Partitions)))
		leader = t.Partitions[partition].Leader
	})
	return partition, leader
}

// A group's committed offsets survive the loss of its coordinator: a
// consumer commits at the leader of the group's offsets partition, that
// node is closed, another replica is elected leader of the partition,
// loads it, and a consumer of the same group resumes at the committed
// offset, never below it.
//
// What this proves before replication is on main: the coordinator's side
// of failover — FindCoordinator following the partition's leadership,
// the election in the metadata, the new leader's load of the partition,
// the consumer's resume. What it cannot prove: that a follower has the
// records. The test copies the leader's offsets partition to the other
// replicas with AppendAt (bytes and offsets as the leader has them, as
// a follower's fetch will) before closing the leader; the data path's own
// tests prove the copy.
func TestClusterGroupOffsetsSurviveTheCoordinator(t *testing.T) {
	tc := startTestClusterWith(t, func(o *Options) {
		o.KafkaGroupInitialRebalanceDelay = 50 * time.Millisecond
		o.Cluster.OffsetsPartitions = 3
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const group = "resume"
	var part, lead int32
	tc.waitFor("the offsets topic, led", func() bool {
		part, lead = offsetsLeader(tc.nodes[0], group)
		return lead != cluster.NoLeader
	})
	// The data lives on a node the test keeps (replication factor 1).
	data := lead%3 + 1
	if _, err := tc.nodes[0].clusterTopics().CreateTopicAssigned("orders", [][]int32{{data}}, nil); err != nil {
		t.Fatal(err)
	}
	seeds := func() []string {
		var s []string
		for _, n := range tc.nodes {
			if n != nil {
				s = append(s, n.KafkaAddr())
			}
		}
		return s
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(seeds()...), kgo.DefaultProduceTopic("orders"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := prod.ProduceSync(ctx, kgo.StringRecord(fmt.Sprint(i))).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	prod.Close()

	// The first consumer reads ten records and commits 10 at the
	// coordinator, node lead.
	c1, err := kgo.NewClient(kgo.SeedBrokers(seeds()...), kgo.ConsumerGroup(group), kgo.ConsumeTopics("orders"),
		kgo.DisableAutoCommit(), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	for got := 0; got < 10; {
		fs := c1.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatal("first consumer read nothing")
		}
		got += fs.NumRecords()
	}
	var commitErr error
	c1.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{"orders": {0: {Epoch: -1, Offset: 10}}},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
			commitErr = err
		})
	if commitErr != nil {
		t.Fatal(commitErr)
	}
	c1.Close()
	adm := kadm.NewClient(mustClient(t, seeds()...))
	fetched, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := fetched.Lookup("orders", 0); o.At != 10 {
		t.Fatalf("committed %d at the coordinator, want 10", o.At)
	}
	// Clients read the offsets topic but never trim it: its start is the
	// coordinators' to move.
	trim := kadm.Offsets{}
	trim.AddOffset(offsetsTopic, part, -1, -1)
	if del, err := adm.DeleteRecords(ctx, trim); err == nil {
		if r, ok := del.Lookup(offsetsTopic, part); !ok || !errors.Is(r.Err, kerr.InvalidTopicException) {
			t.Fatalf("DeleteRecords of the offsets topic: %+v", r)
		}
	} else {
		t.Fatal(err)
	}
	adm.Close()

	// The commit was answered once committed: the in-sync followers of
	// the offsets partition hold it (edge/replica), nothing copied here.
	src, err := tc.nodes[lead-1].log.Partition(offsetsTopic, part)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range tc.nodes {
		dst, err := n.log.Partition(offsetsTopic, part)
		if err != nil {
			t.Fatal(err)
		}
		if int32(i+1) != lead && dst.EndOffset() < src.HighWatermark() {
			t.Fatalf("node %d's copy of the offsets partition ends at %d, below the committed %d", i+1, dst.EndOffset(), src.HighWatermark())
		}
	}

	// The coordinator goes; another replica leads the partition.
	tc.nodes[lead-1].Close()
	tc.nodes[lead-1] = nil
	survivor := tc.nodes[data-1]
	var newLead int32
	tc.waitFor("a new leader of the group's offsets partition", func() bool {
		_, newLead = offsetsLeader(survivor, group)
		return newLead != cluster.NoLeader && newLead != lead
	})

	// The second consumer of the group resumes at 10.
	c2, err := kgo.NewClient(kgo.SeedBrokers(seeds()...), kgo.ConsumerGroup(group), kgo.ConsumeTopics("orders"),
		kgo.DisableAutoCommit(), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	var offsets []int64
	for len(offsets) < 10 {
		fs := c2.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("second consumer read %v before the deadline", offsets)
		}
		fs.EachRecord(func(r *kgo.Record) { offsets = append(offsets, r.Offset) })
	}
	if offsets[0] != 10 || slices.Min(offsets) < 10 {
		t.Fatalf("after the coordinator's loss the group resumed at %v, want 10 and never below", offsets)
	}
	// Its coordinator is the new leader.
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorKey, fc.CoordinatorKeys = group, []string{group}
	resp, err := fc.RequestWith(ctx, c2)
	if err != nil {
		t.Fatal(err)
	}
	id := resp.NodeID
	if len(resp.Coordinators) == 1 {
		id = resp.Coordinators[0].NodeID
	}
	if id != newLead {
		t.Fatalf("FindCoordinator names %d, the partition's leader is %d", id, newLead)
	}
}

func mustClient(t *testing.T, seeds ...string) *kgo.Client {
	t.Helper()
	c, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A node alone grown into node 1 of a cluster keeps its groups' committed
// offsets: kafka-groups.db's are imported into the offsets topic, which
// node 1 creates leading every partition so that it imports them all.
func TestClusterImportsANodeAlonesGroupOffsets(t *testing.T) {
	dir := t.TempDir()
	alone, err := Start(Options{DataDir: dir, AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", Mode: "full",
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alone.log.CreateTopic("t", 2, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	groups := []string{"legacy-a", "legacy-b", "legacy-c", "legacy-d", "legacy-e"}
	adm := kadm.NewClient(mustClient(t, alone.KafkaAddr()))
	for i, g := range groups {
		offs := kadm.Offsets{}
		offs.AddOffset("t", 0, int64(100+i), -1)
		offs.AddOffset("t", 1, int64(200+i), -1)
		if resp, err := adm.CommitOffsets(ctx, g, offs); err != nil || resp.Error() != nil {
			t.Fatalf("commit alone: %v %v", resp, err)
		}
	}
	adm.Close()
	alone.Close()

	tc := startTestClusterWith(t, func(o *Options) {
		if o.Cluster.NodeID == 1 {
			o.DataDir = dir
		}
		o.Cluster.OffsetsPartitions = 3
	})
	var seeds []string
	for _, n := range tc.nodes {
		seeds = append(seeds, n.KafkaAddr())
	}
	adm = kadm.NewClient(mustClient(t, seeds...))
	defer adm.Close()
	for i, g := range groups {
		tc.waitFor("group "+g+"'s offsets in the cluster", func() bool {
			fetched, err := adm.FetchOffsets(ctx, g)
			if err != nil {
				return false
			}
			o0, _ := fetched.Lookup("t", 0)
			o1, _ := fetched.Lookup("t", 1)
			return o0.At == int64(100+i) && o1.At == int64(200+i)
		})
	}
}

// With --offsets-topic-replication-factor 1, a group whose coordinator's
// node is down has no coordinator (COORDINATOR_NOT_AVAILABLE) rather than
// an empty one, and finds its offsets again when the node returns and
// reloads the partition from its disk.
func TestClusterGroupOffsetsWaitForTheirNodeAtReplicationFactor1(t *testing.T) {
	tc := startTestClusterWith(t, func(o *Options) {
		o.Cluster.OffsetsPartitions = 3
		o.Cluster.OffsetsReplicationFactor = 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const group = "patient"
	var lead int32
	tc.waitFor("the offsets topic, led", func() bool {
		_, lead = offsetsLeader(tc.nodes[0], group)
		return lead != cluster.NoLeader
	})
	if _, err := tc.nodes[0].clusterTopics().CreateTopicAssigned("events", [][]int32{{lead%3 + 1}}, nil); err != nil {
		t.Fatal(err)
	}
	// The coordinator checks a commit's topic in its own log: wait until
	// every node's applier has created it.
	tc.waitFor("events on every node", func() bool {
		for _, n := range tc.nodes {
			if _, err := n.log.Partition("events", 0); err != nil {
				return false
			}
		}
		return true
	})
	survivor := tc.nodes[lead%3]
	cl := mustClient(t, survivor.KafkaAddr())
	adm := kadm.NewClient(cl)
	defer adm.Close()
	offs := kadm.Offsets{}
	offs.AddOffset("events", 0, 5, -1)
	if resp, err := adm.CommitOffsets(ctx, group, offs); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", resp, err)
	}

	tc.nodes[lead-1].Close()
	tc.nodes[lead-1] = nil
	tc.waitFor("no coordinator while its node is down", func() bool {
		fc := kmsg.NewPtrFindCoordinatorRequest()
		fc.CoordinatorKey, fc.CoordinatorKeys = group, []string{group}
		resp, err := fc.RequestWith(ctx, cl)
		if err != nil {
			return false
		}
		code := resp.ErrorCode
		if len(resp.Coordinators) == 1 {
			code = resp.Coordinators[0].ErrorCode
		}
		return code == kerr.CoordinatorNotAvailable.Code
	})
	tc.start(int(lead - 1))
	tc.waitFor("the offset back with its node", func() bool {
		// A new client each time: the node's Kafka port changed with its
		// restart, and a client's cached broker address lags it.
		a := kadm.NewClient(mustClient(t, survivor.KafkaAddr()))
		defer a.Close()
		fetched, err := a.FetchOffsets(ctx, group)
		o, ok := fetched.Lookup("events", 0)
		return err == nil && ok && o.At == 5 && o.Err == nil
	})
}
