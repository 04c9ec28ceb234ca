package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func applyAll(t *testing.T, f *FSM, recs []Record) []Result {
	t.Helper()
	var out []Result
	for i, r := range recs {
		b, err := encodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		res, _ := f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: b}).(Result)
		out = append(out, res)
	}
	return out
}

func sampleRecords() []Record {
	eps := func(p string) map[string]string { return map[string]string{"kafka": "127.0.0.1:" + p} }
	return []Record{
		{Op: OpRegisterBroker, Broker: 1, Incarnation: 11, Endpoints: eps("9092")},
		{Op: OpRegisterBroker, Broker: 2, Incarnation: 22, Endpoints: eps("9093")},
		{Op: OpRegisterBroker, Broker: 3, Incarnation: 33, Endpoints: eps("9094")},
		{Op: OpCreateTopic, Topic: "t", TopicID: "00ff", Configs: map[string]string{"retention.ms": "1000"}, Assignment: [][]int32{{1}, {2}, {3}}},
		{Op: OpCreateTopic, Topic: "gw1.temp", TopicID: "01ff", Group: "gw1", Assignment: [][]int32{{2}}},
		{Op: OpAlterConfigs, Topic: "t", Configs: map[string]string{"segment.bytes": "4096"}, Delete: []string{"retention.ms"}},
		{Op: OpCreatePartitions, Topic: "t", Assignment: [][]int32{{1}}},
		{Op: OpFenceBroker, Broker: 2, Incarnation: 22},
		{Op: OpFenceBroker, Broker: 3, Incarnation: 99}, // stale: ignored
		{Op: OpAllocProducerIDs, Count: 500},
		{Op: OpMirrorSession, Edge: "gw1", Broker: 1},
		{Op: OpDeleteTopic, Topic: "missing"},
	}
}

func TestFSMApplyRules(t *testing.T) {
	f := NewFSM(nil)
	res := applyAll(t, f, sampleRecords())
	if !errors.Is(res[8].Err, ErrStaleIncarnation) || !errors.Is(res[11].Err, ErrUnknownTopic) {
		t.Fatalf("rule errors: %v, %v", res[8].Err, res[11].Err)
	}
	im := f.Image()
	if im.Index != uint64(len(sampleRecords())) {
		t.Fatalf("index %d", im.Index)
	}
	tp := im.Topics["t"]
	if got := tp.Configs; !reflect.DeepEqual(got, map[string]string{"segment.bytes": "4096"}) {
		t.Fatalf("configs %v", got)
	}
	if len(tp.Partitions) != 4 {
		t.Fatalf("%d partitions", len(tp.Partitions))
	}
	// Broker 2 fenced: its partitions are offline with a new epoch, the
	// others untouched.
	if p := tp.Partitions[1]; p.Leader != NoLeader || p.LeaderEpoch != 1 {
		t.Fatalf("fenced broker's partition: %+v", p)
	}
	if p := tp.Partitions[2]; p.Leader != 3 || p.LeaderEpoch != 0 {
		t.Fatalf("live broker's partition: %+v", p)
	}
	if im.Offline() != 2 { // t-1 and gw1.temp-0
		t.Fatalf("offline %d", im.Offline())
	}
	if res[9].Value != 0 || im.NextProducerID != 500 {
		t.Fatalf("producer ids: first %d next %d", res[9].Value, im.NextProducerID)
	}
	if res[10].Value != 1 || im.Mirror["gw1"].Node != 1 {
		t.Fatalf("mirror session %+v", im.Mirror["gw1"])
	}
	// Unfenced: the offline partitions come back, epoch bumped again.
	applyAll(t, f, append(sampleRecords(), Record{Op: OpUnfenceBroker, Broker: 2, Incarnation: 22})[len(sampleRecords()):])
	if p := f.Image().Topics["t"].Partitions[1]; p.Leader != 2 || p.LeaderEpoch != 2 {
		t.Fatalf("after unfence: %+v", p)
	}
}

func TestFSMRefusesBadRecordsAlike(t *testing.T) {
	f := NewFSM(nil)
	applyAll(t, f, sampleRecords()[:3])
	for _, data := range [][]byte{[]byte("{"), []byte(`{"v":99,"op":"delete_topic"}`), []byte(`{"v":1,"op":"explode"}`)} {
		res := f.Apply(&raft.Log{Index: 10, Type: raft.LogCommand, Data: data}).(Result)
		if !errors.Is(res.Err, ErrInvalidRecord) {
			t.Fatalf("%s: %v, want ErrInvalidRecord", data, res.Err)
		}
	}
	for _, bad := range []Record{
		{Op: OpCreateTopic, Topic: "x", TopicID: "1", Assignment: [][]int32{{7}}},
		{Op: OpCreateTopic, Topic: "x", TopicID: "1", Assignment: [][]int32{{1, 1}}},
		{Op: OpCreateTopic, Topic: "x", TopicID: "1", Assignment: [][]int32{{}}},
		{Op: OpAllocProducerIDs, Count: -1},
	} {
		if res := applyAll(t, f, []Record{bad}); res[0].Err == nil {
			t.Fatalf("%+v applied", bad)
		}
	}
	if len(f.Image().Topics) != 0 {
		t.Fatal("a refused record changed the image")
	}
}

func TestFSMSnapshotRoundTrip(t *testing.T) {
	a := NewFSM(nil)
	applyAll(t, a, sampleRecords())
	snap, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	// Changes after the snapshot do not leak into it.
	applyAll(t, a, []Record{{Op: OpDeleteTopic, Topic: "t"}})
	b := NewFSM(nil)
	if err := b.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	c := NewFSM(nil)
	applyAll(t, c, sampleRecords())
	if !reflect.DeepEqual(b.Image(), c.Image()) {
		t.Fatalf("restored image differs:\n%+v\n%+v", b.Image(), c.Image())
	}
	// Same records, same image: apply is deterministic.
	x, _ := json.Marshal(c.Image())
	d := NewFSM(nil)
	applyAll(t, d, sampleRecords())
	y, _ := json.Marshal(d.Image())
	if !bytes.Equal(x, y) {
		t.Fatal("the same records gave two images")
	}
	if err := b.Restore(io.NopCloser(bytes.NewReader([]byte(`{"v":99,"image":{}}`)))); err == nil {
		t.Fatal("a newer snapshot version was restored")
	}
}

type memSink struct{ bytes.Buffer }

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { return nil }
func (s *memSink) Close() error  { return nil }

func TestPlacementSpreadsAndKeepsGroupsTogether(t *testing.T) {
	f := NewFSM(nil)
	applyAll(t, f, sampleRecords()[:3])
	im := f.Image()
	a, err := im.Place(7, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	count := map[int32]int{}
	for _, r := range a {
		count[r[0]]++
	}
	if count[1] != 3 || count[2] != 2 || count[3] != 2 {
		t.Fatalf("spread %v", count)
	}
	if _, err := im.Place(1, 4, ""); !errors.Is(err, ErrNotEnoughBrokers) {
		t.Fatalf("rf 4 on 3 brokers: %v", err)
	}
	applyAll(t, f, []Record{{Op: OpCreateTopic, Topic: "gw9.a", TopicID: "1", Group: "gw9", Assignment: [][]int32{{3}}}})
	// The group's home is broker 3 although it is not the least loaded.
	g, _ := f.Image().Place(4, 1, "gw9")
	for _, r := range g {
		if r[0] != 3 {
			t.Fatalf("group placement %v, want all on broker 3", g)
		}
	}
	rf3, _ := im.Place(2, 3, "")
	for _, r := range rf3 {
		if len(r) != 3 || r[0] == r[1] || r[1] == r[2] || r[0] == r[2] {
			t.Fatalf("rf 3 placement %v", rf3)
		}
	}
}

// fakeProposer applies records to a local FSM, for the controller alone.
type fakeProposer struct{ f *FSM }

func (p *fakeProposer) propose(_ context.Context, r Record) (Result, error) {
	b, _ := encodeRecord(r)
	res := p.f.Apply(&raft.Log{Index: p.f.Index() + 1, Type: raft.LogCommand, Data: b}).(Result)
	return res, nil
}
func (p *fakeProposer) image() *Image { return p.f.Image() }

func TestControllerFencesOnItsOwnClockWithGrace(t *testing.T) {
	now := time.Unix(1000, 0)
	p := &fakeProposer{f: NewFSM(nil)}
	c := newController(p, func() time.Time { return now }, 9*time.Second, Defaults{})
	ctx := context.Background()
	for _, id := range []int32{1, 2} {
		if err := c.heartbeat(ctx, Heartbeat{Broker: id, Incarnation: uint64(id), Endpoints: map[string]string{"kafka": "x"}}); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(5 * time.Second)
	c.heartbeat(ctx, Heartbeat{Broker: 1, Incarnation: 1, Endpoints: map[string]string{"kafka": "x"}})
	now = now.Add(5 * time.Second) // broker 2 silent for 10 s
	c.tick(ctx)
	im := p.image()
	if im.Brokers[1].Fenced || !im.Brokers[2].Fenced {
		t.Fatalf("fenced: 1=%v 2=%v, want only 2", im.Brokers[1].Fenced, im.Brokers[2].Fenced)
	}
	// A new controller (reset) heard from nobody yet: it grants a full
	// session timeout before fencing broker 1.
	c.reset(-1, time.Time{})
	c.tick(ctx)
	now = now.Add(8 * time.Second)
	c.tick(ctx)
	if p.image().Brokers[1].Fenced {
		t.Fatal("fenced within the new controller's grace period")
	}
	now = now.Add(2 * time.Second)
	c.tick(ctx)
	if !p.image().Brokers[1].Fenced {
		t.Fatal("not fenced after the grace period")
	}
	// Broker 2 comes back with a new incarnation: registered afresh, unfenced.
	c.heartbeat(ctx, Heartbeat{Broker: 2, Incarnation: 7, Endpoints: map[string]string{"kafka": "y"}})
	if b := p.image().Brokers[2]; b.Fenced || b.Incarnation != 7 || b.Endpoints["kafka"] != "y" {
		t.Fatalf("broker 2 after restart: %+v", b)
	}
	// Broker 1 heartbeats again in the same run: unfenced.
	c.heartbeat(ctx, Heartbeat{Broker: 1, Incarnation: 1, Endpoints: map[string]string{"kafka": "x"}})
	if p.image().Brokers[1].Fenced {
		t.Fatal("broker 1 still fenced after a heartbeat")
	}
}

// A new controller counts the previous controller's session from when it
// last heard from it as a raft follower, not from its own start: a killed
// controller's partitions move a session timeout after its death, not a
// raft election plus a session timeout.
func TestNewControllerTimesThePreviousControllerFromLastContact(t *testing.T) {
	now := time.Unix(1000, 0)
	p := &fakeProposer{f: NewFSM(nil)}
	c := newController(p, func() time.Time { return now }, 3*time.Second, Defaults{})
	ctx := context.Background()
	for _, id := range []int32{1, 2, 3} {
		if err := c.heartbeat(ctx, Heartbeat{Broker: id, Incarnation: uint64(id), Endpoints: map[string]string{"kafka": "x"}}); err != nil {
			t.Fatal(err)
		}
	}
	lastWord := now // broker 1, the old controller, dies here
	now = now.Add(2 * time.Second)
	c.reset(1, lastWord) // this node wins the election 2 s later
	c.tick(ctx)
	now = now.Add(1500 * time.Millisecond) // 3.5 s after broker 1's last word
	c.tick(ctx)
	im := p.image()
	if !im.Brokers[1].Fenced {
		t.Fatal("the previous controller is not fenced a session timeout after its last contact")
	}
	if im.Brokers[2].Fenced || im.Brokers[3].Fenced {
		t.Fatal("a broker the new controller has not timed yet was fenced")
	}
	// A last contact in the future (clock trouble), none at all, or one a
	// session timeout old or more (a lost quorum healed: nobody watched
	// the old controller meanwhile) is a fresh grace period, as for
	// everyone else.
	for _, tc := range []struct {
		name    string
		contact func() time.Time
	}{
		{"future", func() time.Time { return now.Add(time.Hour) }},
		{"none", func() time.Time { return time.Time{} }},
		{"stale", func() time.Time { return now.Add(-10 * time.Second) }},
	} {
		name, contact := tc.name, tc.contact
		c.heartbeat(ctx, Heartbeat{Broker: 2, Incarnation: 2, Endpoints: map[string]string{"kafka": "x"}})
		if p.image().Brokers[2].Fenced {
			t.Fatalf("%s: broker 2 fenced before the reset", name)
		}
		c.reset(2, contact())
		c.tick(ctx)
		now = now.Add(2 * time.Second)
		c.tick(ctx)
		if p.image().Brokers[2].Fenced {
			t.Fatalf("%s last contact: fenced within the grace period", name)
		}
		now = now.Add(1500 * time.Millisecond)
		c.tick(ctx)
		if !p.image().Brokers[2].Fenced {
			t.Fatalf("%s last contact: not fenced after the grace period", name)
		}
	}
}
