package kafka

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// offsetsCluster is a Cluster of the offsets topic's leadership alone,
// changed by the test.
type offsetsCluster struct {
	mu      sync.Mutex
	leaders []int32
	epochs  []int32
	ch      chan struct{}
}

func newOffsetsCluster(partitions int, leader int32) *offsetsCluster {
	c := &offsetsCluster{ch: make(chan struct{})}
	for range partitions {
		c.leaders, c.epochs = append(c.leaders, leader), append(c.epochs, 0)
	}
	return c
}

func (c *offsetsCluster) Brokers() []Broker { return nil }
func (c *offsetsCluster) Controller() int32 { return 1 }
func (c *offsetsCluster) Partition(topic string, p int32) (PartitionView, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if topic != offsetsTopic || p < 0 || int(p) >= len(c.leaders) {
		return PartitionView{}, false
	}
	return PartitionView{Leader: c.leaders[p], LeaderEpoch: c.epochs[p]}, true
}
func (c *offsetsCluster) Coordinator(group string) (Broker, bool) {
	pv, _ := c.Partition(offsetsTopic, OffsetsPartition(group, int32(len(c.leaders))))
	return Broker{ID: pv.Leader}, pv.Leader >= 0
}
func (c *offsetsCluster) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ch
}

// lead makes leader lead every partition at the next epoch.
func (c *offsetsCluster) lead(leader int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.leaders {
		c.leaders[i] = leader
		c.epochs[i]++
	}
	close(c.ch)
	c.ch = make(chan struct{})
}

func TestOffsetsPartitionIsKafkas(t *testing.T) {
	for _, tc := range []struct {
		group string
		n     int32
		want  int32
	}{
		{"hello", 50, 99162322 % 50},     // "hello".hashCode() = 99162322
		{"polygenelubricants", 50, 0},    // hashCode() = Integer.MIN_VALUE; Kafka's abs makes it 0
		{"Aa", 50, 2112 % 50},            // "Aa" and "BB" collide in Java
		{"BB", 50, 2112 % 50},            //
		{"\U0001F600", 1 << 30, 1772899}, // one code point, two UTF-16 units: 0xD83D*31 + 0xDE00
		{"", 10, 0},                      //
		{"ferry-consumers", 1, 0},        //
	} {
		if got := OffsetsPartition(tc.group, tc.n); got != tc.want {
			t.Errorf("OffsetsPartition(%q, %d) = %d, want %d", tc.group, tc.n, got, tc.want)
		}
	}
	// A negative hash ("hellohellohello".hashCode() overflows below zero
	// in Java): Kafka takes its absolute value.
	var h int32
	for _, c := range "hellohellohello" {
		h = 31*h + int32(c)
	}
	if h >= 0 {
		t.Fatalf("want a negative Java hash for the test, got %d", h)
	}
	if got, want := OffsetsPartition("hellohellohello", 50), (-h)%50; got != want {
		t.Errorf("negative hash: got %d, want %d", got, want)
	}
}

func TestOffsetsRecordRoundTripAndHostileBytes(t *testing.T) {
	meta := "m"
	ref := offsetRef{"grp", "topic", 7}
	co := committedOffset{Offset: 42, LeaderEpoch: 3, Metadata: &meta, CommitMs: 1234}
	r := encodeOffsetRecord(ref, &co, 1)
	gotRef, gotCo, err := decodeOffsetRecord(r.Key, r.Value)
	if err != nil || gotRef != ref || gotCo == nil || gotCo.Offset != 42 || gotCo.LeaderEpoch != 3 || *gotCo.Metadata != "m" || gotCo.CommitMs != 1234 {
		t.Fatalf("round trip: %+v %+v %v", gotRef, gotCo, err)
	}
	tomb := encodeOffsetRecord(ref, nil, 1)
	if gotRef, gotCo, err := decodeOffsetRecord(tomb.Key, tomb.Value); err != nil || gotRef != ref || gotCo != nil {
		t.Fatalf("tombstone: %+v %+v %v", gotRef, gotCo, err)
	}
	// Every truncation of the key and the value is an error, never a panic.
	for i := range len(r.Key) {
		if _, _, err := decodeOffsetRecord(r.Key[:i], r.Value); err == nil {
			t.Fatalf("key cut at %d decoded", i)
		}
	}
	for i := range len(r.Value) {
		if _, _, err := decodeOffsetRecord(r.Key, r.Value[:i]); err == nil {
			t.Fatalf("value cut at %d decoded", i)
		}
	}
	// A length past the bytes that carry it.
	bad := bytes.Clone(r.Key)
	bad[2], bad[3] = 0x7f, 0xff
	if _, _, err := decodeOffsetRecord(bad, r.Value); !errors.Is(err, errRecordFormat) {
		t.Fatalf("long length: %v", err)
	}
	// A key type from a newer ferry is skipped as unknown.
	newer := bytes.Clone(r.Key)
	newer[1] = 9
	if _, _, err := decodeOffsetRecord(newer, r.Value); !errors.Is(err, errUnknownRecord) {
		t.Fatalf("unknown key type: %v", err)
	}
}

// replicatedGroups opens a coordinator over dir's groups.db keeping its
// offsets in l's offsets topic, led by node 1 in c.
func replicatedGroups(t *testing.T, dbPath string, ol OffsetsLog, c *offsetsCluster, snapshotBytes int64) *Groups {
	t.Helper()
	g, err := OpenGroups(dbPath, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Replicate(GroupsReplication{Log: ol, Cluster: c, NodeID: 1, SnapshotBytes: snapshotBytes}); err != nil {
		t.Fatal(err)
	}
	return g
}

func waitLoaded(t *testing.T, g *Groups, group string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for g.loadCode(group) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("offsets partition of %q not loaded", group)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func simpleCommit(group, topic string, offsets map[int32]int64) *kmsg.OffsetCommitRequest {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version, req.Group, req.Generation = 8, group, -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	for p, o := range offsets {
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset, rp.LeaderEpoch = p, o, -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	return req
}

func commitCode(resp *kmsg.OffsetCommitResponse) int16 {
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 {
				return p.ErrorCode
			}
		}
	}
	return 0
}

func openOffsetsLog(t *testing.T, dir string, partitions int32) *flog.Log {
	t.Helper()
	l, err := flog.Open(flog.Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Topic(offsetsTopic); err != nil {
		if _, err := l.CreateTopic(offsetsTopic, partitions, nil); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// A coordinator keeps offsets in the offsets topic; snapshots and the
// start's advance keep a partition bounded under many commits; another
// coordinator loading the same log finds the same offsets, deletions
// included, replaying only from the last snapshot.
func TestReplicatedOffsetsSnapshotAndReload(t *testing.T) {
	dir := t.TempDir()
	l := openOffsetsLog(t, filepath.Join(dir, "log"), 3)
	defer l.Close()
	c := newOffsetsCluster(3, 1)
	const snapBytes = 4 << 10
	g := replicatedGroups(t, filepath.Join(dir, "a.db"), LogOffsets{l}, c, snapBytes)
	for _, grp := range []string{"busy", "quiet", "gone"} {
		waitLoaded(t, g, grp)
	}
	if code := commitCode(g.commit(simpleCommit("quiet", "t", map[int32]int64{0: 5}))); code != 0 {
		t.Fatalf("commit: %v", kerr.ErrorForCode(code))
	}
	if code := commitCode(g.commit(simpleCommit("gone", "t", map[int32]int64{0: 9, 1: 9}))); code != 0 {
		t.Fatalf("commit: %v", kerr.ErrorForCode(code))
	}
	if code := g.deleteGroup("gone"); code != 0 {
		t.Fatalf("delete group: %v", kerr.ErrorForCode(code))
	}
	const commits = 2000
	busyPart := OffsetsPartition("busy", 3)
	p, err := l.Partition(offsetsTopic, busyPart)
	if err != nil {
		t.Fatal(err)
	}
	var maxRecords int64
	for i := range int64(commits) {
		if code := commitCode(g.commit(simpleCommit("busy", "t", map[int32]int64{0: i, 1: 2 * i, 2: 3 * i}))); code != 0 {
			t.Fatalf("commit %d: %v", i, kerr.ErrorForCode(code))
		}
		maxRecords = max(maxRecords, p.EndOffset()-p.StartOffset())
	}
	// 3 records per commit, each about 40 bytes: without snapshots the
	// partition would hold 6000 records; with one every 4 KiB it holds
	// one snapshot plus at most about 4 KiB of commits since.
	if maxRecords > 300 {
		t.Fatalf("the offsets partition grew to %d records over %d commits: not bounded by its snapshots", maxRecords, commits)
	}
	t.Logf("%d commits of 3 offsets: at most %d records in the partition, %d snapshots, start %d end %d",
		commits, maxRecords, g.offsetsSnapshots.Load(), p.StartOffset(), p.EndOffset())
	if g.offsetsSnapshots.Load() == 0 || p.StartOffset() == 0 {
		t.Fatalf("no snapshot advanced the start: %d snapshots, start %d", g.offsetsSnapshots.Load(), p.StartOffset())
	}
	want, _ := g.Committed("busy")
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}

	// Another coordinator (a new leader) loads the same partitions.
	c.lead(1)
	g2 := replicatedGroups(t, filepath.Join(dir, "b.db"), LogOffsets{l}, c, snapBytes)
	defer g2.Close()
	waitLoaded(t, g2, "busy")
	got, err := g2.Committed("busy")
	if err != nil {
		t.Fatal(err)
	}
	for part, o := range map[int32]int64{0: commits - 1, 1: 2 * (commits - 1), 2: 3 * (commits - 1)} {
		if got["t"][part].Offset != o || want["t"][part].Offset != o {
			t.Fatalf("partition %d: reloaded %d, before %d, want %d", part, got["t"][part].Offset, want["t"][part].Offset, o)
		}
	}
	waitLoaded(t, g2, "quiet")
	waitLoaded(t, g2, "gone")
	if q, _ := g2.Committed("quiet"); q["t"][0].Offset != 5 {
		t.Fatalf("quiet group reloaded as %+v", q)
	}
	if gone, _ := g2.Committed("gone"); len(gone) != 0 {
		t.Fatalf("a deleted group's offsets came back: %+v", gone)
	}
}

// blockingOffsets holds every Read until released: a load in progress.
type blockingOffsets struct {
	OffsetsLog
	release chan struct{}
}

func (b blockingOffsets) Read(p int32, off int64, max int) ([]byte, error) {
	<-b.release
	return b.OffsetsLog.Read(p, off, max)
}

// While its offsets partition loads, a group's commits and fetches answer
// COORDINATOR_LOAD_IN_PROGRESS; once loaded they are served; once another
// broker leads the partition, NOT_COORDINATOR, and the group's members are
// dropped.
func TestReplicatedOffsetsLoadInProgressAndLeadershipLoss(t *testing.T) {
	dir := t.TempDir()
	l := openOffsetsLog(t, filepath.Join(dir, "log"), 1)
	defer l.Close()
	// Something to replay, written by an earlier coordinator.
	c := newOffsetsCluster(1, 1)
	g0 := replicatedGroups(t, filepath.Join(dir, "a.db"), LogOffsets{l}, c, 0)
	waitLoaded(t, g0, "grp")
	if code := commitCode(g0.commit(simpleCommit("grp", "t", map[int32]int64{0: 11}))); code != 0 {
		t.Fatalf("commit: %v", kerr.ErrorForCode(code))
	}
	g0.Close()

	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	g := replicatedGroups(t, filepath.Join(dir, "b.db"), blockingOffsets{LogOffsets{l}, release}, c, 0)
	defer g.Close()
	defer unblock() // before Close, should the test fail while loading
	deadline := time.Now().Add(5 * time.Second)
	for g.loadCode("grp") != kerr.CoordinatorLoadInProgress.Code {
		if time.Now().After(deadline) {
			t.Fatal("no load in progress")
		}
		time.Sleep(time.Millisecond)
	}
	if code := commitCode(g.commit(simpleCommit("grp", "t", map[int32]int64{0: 12}))); code != kerr.CoordinatorLoadInProgress.Code {
		t.Fatalf("commit while loading: %v", kerr.ErrorForCode(code))
	}
	if _, err := g.Committed("grp"); storeCode(err) != kerr.CoordinatorLoadInProgress.Code {
		t.Fatalf("fetch while loading: %v", err)
	}
	unblock()
	waitLoaded(t, g, "grp")
	if got, _ := g.Committed("grp"); got["t"][0].Offset != 11 {
		t.Fatalf("loaded %+v, want offset 11", got)
	}

	// A member joins; then broker 2 takes the partition over.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g.initialDelay = 0
	join := joinRequest("grp", 10000, "range")
	resp := g.join(ctx, join, "c", "h")
	if resp.ErrorCode == kerr.MemberIDRequired.Code {
		join.MemberID = resp.MemberID
		resp = g.join(ctx, join, "c", "h")
	}
	if resp.ErrorCode != 0 {
		t.Fatalf("join: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	c.lead(2)
	deadline = time.Now().Add(5 * time.Second)
	for {
		g.mu.Lock()
		_, still := g.groups["grp"]
		g.mu.Unlock()
		if !still {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the group was not dropped when another broker took its partition")
		}
		time.Sleep(time.Millisecond)
	}
	if code := commitCode(g.commit(simpleCommit("grp", "t", map[int32]int64{0: 13}))); code != kerr.NotCoordinator.Code {
		t.Fatalf("commit after leadership moved: %v", kerr.ErrorForCode(code))
	}
}

// A node alone's kafka-groups.db offsets are imported into the offsets
// topic once when the node becomes a cluster's coordinator.
func TestReplicatedOffsetsImportGroupsDB(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "groups.db")
	alone, err := OpenGroups(dbPath, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if code := commitCode(alone.commit(simpleCommit("old", "t", map[int32]int64{0: 77, 3: 1}))); code != 0 {
		t.Fatalf("commit alone: %v", kerr.ErrorForCode(code))
	}
	alone.Close()

	l := openOffsetsLog(t, filepath.Join(dir, "log"), 4)
	defer l.Close()
	c := newOffsetsCluster(4, 1)
	g := replicatedGroups(t, dbPath, LogOffsets{l}, c, 0)
	waitLoaded(t, g, "old")
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _ := g.Committed("old")
		if got["t"][0].Offset == 77 && got["t"][3].Offset == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("groups.db offsets not imported: %+v", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	g.Close()
	// In the topic: a coordinator with an empty groups.db loads them.
	g2 := replicatedGroups(t, filepath.Join(dir, "other.db"), LogOffsets{l}, c, 0)
	defer g2.Close()
	waitLoaded(t, g2, "old")
	if got, _ := g2.Committed("old"); got["t"][0].Offset != 77 {
		t.Fatalf("imported offsets not in the offsets topic: %+v", got)
	}
}
