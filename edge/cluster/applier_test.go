package cluster

import (
	"context"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"testing"

	flog "ferry/log"
)

// memLog is a LocalLog in memory.
type memLog struct{ topics map[string]flog.TopicInfo }

func (m *memLog) Topics() []flog.TopicInfo { return slices.Collect(maps.Values(m.topics)) }
func (m *memLog) CreateTopicWithID(name string, id [16]byte, n int32, c map[string]string) (flog.TopicInfo, error) {
	if _, ok := m.topics[name]; ok {
		return flog.TopicInfo{}, flog.ErrTopicExists
	}
	m.topics[name] = flog.TopicInfo{Name: name, ID: id, Partitions: n, Configs: maps.Clone(c)}
	return m.topics[name], nil
}
func (m *memLog) DeleteTopic(name string) error {
	if _, ok := m.topics[name]; !ok {
		return flog.ErrUnknownTopic
	}
	delete(m.topics, name)
	return nil
}
func (m *memLog) AddPartitions(name string, total int32) error {
	t := m.topics[name]
	t.Partitions = total
	m.topics[name] = t
	return nil
}
func (m *memLog) AlterConfigs(name string, set map[string]string, remove []string) error {
	t := m.topics[name]
	if t.Configs == nil {
		t.Configs = map[string]string{}
	}
	maps.Copy(t.Configs, set)
	for _, k := range remove {
		delete(t.Configs, k)
	}
	m.topics[name] = t
	return nil
}

func idOf(t *testing.T, s string) [16]byte {
	id, err := parseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestReconcileFollowsTheImageAndKeepsForeignTopics(t *testing.T) {
	f := NewFSM(nil)
	tid := func(i int) string { return fmt.Sprintf("%032x", i) }
	applyAll(t, f, []Record{
		{Op: OpRegisterBroker, Broker: 1, Incarnation: 1},
		{Op: OpRegisterBroker, Broker: 2, Incarnation: 2},
		{Op: OpCreateTopic, Topic: "new", TopicID: tid(1), Configs: map[string]string{"retention.ms": "5"}, Assignment: [][]int32{{1}, {2}}},
		{Op: OpCreateTopic, Topic: "grow", TopicID: tid(2), Assignment: [][]int32{{1}}},
		{Op: OpCreatePartitions, Topic: "grow", Assignment: [][]int32{{2}, {1}}},
		{Op: OpAlterConfigs, Topic: "grow", Configs: map[string]string{"segment.bytes": "1048576"}},
		{Op: OpCreateTopic, Topic: "gone", TopicID: tid(3), Assignment: [][]int32{{1}}},
		{Op: OpDeleteTopic, Topic: "gone"},
		{Op: OpCreateTopic, Topic: "clash", TopicID: tid(4), Assignment: [][]int32{{1}}},
	})
	l := &memLog{topics: map[string]flog.TopicInfo{
		"grow":               {Name: "grow", ID: idOf(t, tid(2)), Partitions: 1, Configs: map[string]string{"retention.ms": "9"}},
		"gone":               {Name: "gone", ID: idOf(t, tid(3)), Partitions: 1},
		"clash":              {Name: "clash", ID: idOf(t, tid(99)), Partitions: 1},
		"mine":               {Name: "mine", ID: idOf(t, tid(7)), Partitions: 1},
		"__consumer_offsets": {Name: "__consumer_offsets", ID: idOf(t, tid(8)), Partitions: 1},
	}}
	r := Reconcile(f.Image(), l)
	if len(r.Errors) > 0 {
		t.Fatal(r.Errors)
	}
	check := func(what string, got []string, want ...string) {
		t.Helper()
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: %v, want %v", what, got, want)
		}
	}
	check("created", r.Created, "new")
	check("deleted", r.Deleted, "gone")
	check("grown", r.Grown, "grow")
	check("altered", r.Altered, "grow")
	check("foreign", r.Foreign, "mine")
	check("conflicts", r.Conflicts, "clash")
	if nt := l.topics["new"]; nt.Partitions != 2 || hex.EncodeToString(nt.ID[:]) != tid(1) || nt.Configs["retention.ms"] != "5" {
		t.Fatalf("created %+v", nt)
	}
	if g := l.topics["grow"]; g.Partitions != 3 || !maps.Equal(g.Configs, map[string]string{"segment.bytes": "1048576"}) {
		t.Fatalf("grown %+v", g)
	}
	if _, ok := l.topics["mine"]; !ok {
		t.Fatal("a topic the cluster never knew was deleted")
	}
	if l.topics["clash"].ID != idOf(t, tid(99)) {
		t.Fatal("a conflicting topic was changed")
	}
	// A second pass has nothing to do.
	r = Reconcile(f.Image(), l)
	if len(r.Created)+len(r.Deleted)+len(r.Grown)+len(r.Altered) != 0 {
		t.Fatalf("second pass did %+v", r)
	}
}

func TestImportMakesASingleNodeNodeOne(t *testing.T) {
	c := newMemCluster(t, 3)
	c.controller()
	c.waitBrokers(3)
	one := c.node(1)
	l := &memLog{topics: map[string]flog.TopicInfo{
		"telemetry":  {Name: "telemetry", ID: idOf(t, fmt.Sprintf("%032x", 42)), Partitions: 4, Configs: map[string]string{"retention.ms": "60000"}},
		"__internal": {Name: "__internal", ID: idOf(t, fmt.Sprintf("%032x", 43)), Partitions: 1},
	}}
	ctx := context.Background()
	if err := one.Import(ctx, l); err != nil {
		t.Fatal(err)
	}
	tp := one.Image().Topics["telemetry"]
	if tp == nil || tp.ID != fmt.Sprintf("%032x", 42) || len(tp.Partitions) != 4 || tp.Configs["retention.ms"] != "60000" {
		t.Fatalf("imported %+v", tp)
	}
	for _, p := range tp.Partitions {
		if p.Leader != 1 {
			t.Fatalf("imported partition led by %d, want node 1", p.Leader)
		}
	}
	if one.Image().Topics["__internal"] != nil {
		t.Fatal("an internal topic was imported")
	}
	// Importing again is a no-op; a clash of ids is an error.
	if err := one.Import(ctx, l); err != nil {
		t.Fatal(err)
	}
	l.topics["telemetry"] = flog.TopicInfo{Name: "telemetry", ID: idOf(t, fmt.Sprintf("%032x", 44)), Partitions: 4}
	if err := one.Import(ctx, l); err == nil {
		t.Fatal("a topic with another id was imported over the cluster's")
	}
	if r := Reconcile(one.Image(), l); len(r.Conflicts) != 1 {
		t.Fatalf("reconcile of the clash: %+v", r)
	}
}

func TestReconcileOntoARealLog(t *testing.T) {
	l, err := flog.Open(flog.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var _ LocalLog = l
	f := NewFSM(nil)
	id := fmt.Sprintf("%032x", 77)
	applyAll(t, f, []Record{
		{Op: OpRegisterBroker, Broker: 1, Incarnation: 1},
		{Op: OpCreateTopic, Topic: "t", TopicID: id, Configs: map[string]string{"retention.ms": "60000"}, Assignment: [][]int32{{1}, {1}}},
	})
	if r := Reconcile(f.Image(), l); len(r.Errors) > 0 || len(r.Created) != 1 {
		t.Fatalf("%+v", r)
	}
	info, err := l.Topic("t")
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(info.ID[:]) != id || info.Partitions != 2 {
		t.Fatalf("local topic %+v", info)
	}
	applyAll(t, f, []Record{{Op: OpDeleteTopic, Topic: "t"}})
	if r := Reconcile(f.Image(), l); len(r.Deleted) != 1 {
		t.Fatalf("%+v", r)
	}
	if _, err := l.Topic("t"); err == nil {
		t.Fatal("deleted in the cluster, kept locally")
	}
}
