package mirror

import (
	"bufio"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"ferry/mirror/wire"
)

// fakeClock is the receiver's clock in tests: it moves only when told.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// startFleetCenter is a receiver with its own registry and clock.
func startFleetCenter(t *testing.T, retention time.Duration) (*center, *prometheus.Registry, *fakeClock) {
	t.Helper()
	reg, clock, l := prometheus.NewRegistry(), newFakeClock(), openLog(t, t.TempDir())
	r, err := NewReceiver(ReceiverOptions{Log: LogTarget{l}, Tokens: map[string]string{"gw1": "s3cret", "gw2": "s3cret"},
		Logger: quiet, Registerer: reg, Now: clock.now, EdgeRetention: retention})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &center{log: l, recv: r, addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() { c.done <- r.Serve(ln) }()
	t.Cleanup(c.stop)
	return c, reg, clock
}

// series returns the value of each series of a family by its labels
// ("edge=gw1,topic=telemetry"); a missing family is an empty map.
func series(t *testing.T, reg *prometheus.Registry, family string) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != family {
			continue
		}
		for _, m := range f.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			out[strings.Join(ls, ",")] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	}
	return 0
}

// helloRaw opens a raw connection as edge gw1 speaking version v with one
// partition of telemetry, and reads the welcome.
func helloRaw(t *testing.T, addr string, edge string, v uint16) *rawEdge {
	t.Helper()
	r := dialCenter(t, addr)
	r.send((&wire.Hello{Version: v, Edge: edge, Token: "s3cret", Parts: []wire.PartRef{{Topic: "telemetry", Partition: 0, Partitions: 1}}}).Encode(nil))
	if m, ok := r.read().(*wire.Welcome); !ok {
		t.Fatalf("hello version %d: got %+v, want a welcome", v, m)
	}
	return r
}

// The center knows each edge's copy lag from the ends the edge reports
// (Heads, protocol 4): records the copy lacks and the age of the oldest of
// them, per topic, in its status and in metrics labelled by edge; an edge
// of protocol 3 is still served, its lag unknown. Before the fleet view
// the center had no lag, no last chunk and no edge label but for gaps.
func TestCenterKnowsEachEdgesCopyLag(t *testing.T) {
	c, reg, clock := startFleetCenter(t, time.Hour)
	r := helloRaw(t, c.addr, "gw1", wire.Version)
	oldest := clock.now().Add(-90 * time.Second)
	r.send((&wire.Heads{Parts: []wire.Head{{Topic: "telemetry", Partition: 0, End: 100, Oldest: oldest.UnixMilli()}}}).Encode(nil))
	raw := batchOf(0, 40, "fleet")
	r.send((&wire.Chunk{Topic: "telemetry", Partition: 0, Base: 0, Last: 39, Codec: wire.CodecNone, RawLen: uint32(len(raw)), CRC: wire.Checksum(raw), Data: raw}).Encode(nil))
	if m, ok := r.read().(*wire.Ack); !ok || m.Next != 40 {
		t.Fatalf("got %+v, want the chunk acknowledged", m)
	}
	old := helloRaw(t, c.addr, "gw2", wire.MinVersion) // an edge of protocol 3

	st := c.recv.Status()
	if len(st.Edges) != 2 {
		t.Fatalf("status: %+v, want gw1 and gw2", st)
	}
	e := st.Edges[0]
	if e.Edge != "gw1" || !e.Connected || e.ProtocolVersion != 4 || !e.LagKnown || e.LagRecords != 60 || e.LagSeconds != 90 || e.Records != 40 ||
		e.LastChunk == nil || !e.LastChunk.Equal(clock.now()) || e.WireBytes != int64(len(raw)) {
		t.Errorf("gw1: %+v, want connected, protocol 4, 60 records and 90 s behind, 40 records stored", e)
	}
	if len(e.Topics) != 1 || e.Topics[0].LagRecords != 60 || e.Topics[0].CopyTopic != "gw1.telemetry" {
		t.Errorf("gw1's topics: %+v", e.Topics)
	}
	if p := e.Partitions[0]; p.EdgeEnd == nil || *p.EdgeEnd != 100 || *p.LagRecords != 60 {
		t.Errorf("gw1's partition: %+v", p)
	}
	if g := st.Edges[1]; g.Edge != "gw2" || !g.Connected || g.ProtocolVersion != 3 || g.LagKnown || g.Partitions[0].LagRecords != nil {
		t.Errorf("gw2 (protocol 3): %+v, want connected with its lag unknown", g)
	}
	if got := series(t, reg, "ferry_mirror_receiver_edge_lag_records"); len(got) != 1 || got["edge=gw1,topic=telemetry"] != 60 {
		t.Errorf("lag records by edge: %v", got)
	}
	if got := series(t, reg, "ferry_mirror_receiver_edge_lag_seconds"); got["edge=gw1,topic=telemetry"] != 90 {
		t.Errorf("lag seconds by edge: %v", got)
	}
	if got := series(t, reg, "ferry_mirror_receiver_edge_records_total"); got["edge=gw1"] != 40 || got["edge=gw2"] != 0 {
		t.Errorf("records by edge: %v", got)
	}

	// The edge catches up: its lag is gone once the copy reaches the end
	// it reported.
	raw = batchOf(40, 60, "fleet")
	r.send((&wire.Chunk{Topic: "telemetry", Partition: 0, Base: 40, Last: 99, Codec: wire.CodecNone, RawLen: uint32(len(raw)), CRC: wire.Checksum(raw), Data: raw}).Encode(nil))
	if m, ok := r.read().(*wire.Ack); !ok || m.Next != 100 {
		t.Fatalf("got %+v, want the chunk acknowledged", m)
	}
	if e := c.recv.Status().Edges[0]; e.LagRecords != 0 || e.LagSeconds != 0 || e.Records != 100 {
		t.Errorf("gw1 caught up: %+v", e)
	}
	old.c.Close()
}

// An edge that is gone stays in the status and the metrics for the
// retention, connected 0, and is then forgotten with every series of its
// edge label, so the label's values stay bounded; one still connected is
// never forgotten. Before the fleet view, an edge's series stayed forever.
func TestCenterForgetsAnEdgeGoneLongerThanTheRetention(t *testing.T) {
	c, reg, clock := startFleetCenter(t, time.Hour)
	gone := helloRaw(t, c.addr, "gw1", wire.Version)
	stays := helloRaw(t, c.addr, "gw2", wire.Version)
	gone.send((&wire.Heads{Parts: []wire.Head{{Topic: "telemetry", Partition: 0, End: 5, Oldest: -1}}}).Encode(nil))
	gone.send((&wire.Gap{Topic: "telemetry", Partition: 0, From: 0, To: 4, Reason: "max.disk.bytes"}).Encode(nil))
	if m, ok := gone.read().(*wire.Ack); !ok || m.Next != 5 {
		t.Fatalf("got %+v, want the gap acknowledged", m)
	}
	if got := series(t, reg, "ferry_mirror_receiver_gap_records_total"); got["edge=gw1"] != 5 {
		t.Fatalf("gap records by edge: %v", got)
	}
	gone.c.Close()
	waitFor(t, "the center to see gw1 gone", func() bool { return series(t, reg, "ferry_mirror_receiver_edge_connected")["edge=gw1"] == 0 })

	clock.advance(time.Hour)
	if got := series(t, reg, "ferry_mirror_receiver_edge_connected"); len(got) != 2 {
		t.Fatalf("an hour after it went, within the retention: %v, want gw1 (0) and gw2 (1)", got)
	}
	clock.advance(time.Second)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "edge" && l.GetValue() == "gw1" {
					t.Errorf("%s still has a series for gw1 past the retention", f.GetName())
				}
			}
		}
	}
	if st := c.recv.Status(); len(st.Edges) != 1 || st.Edges[0].Edge != "gw2" || !st.Edges[0].Connected {
		t.Errorf("status past gw1's retention: %+v, want gw2 alone", st)
	}
	clock.advance(48 * time.Hour)
	if got := series(t, reg, "ferry_mirror_receiver_edge_connected"); len(got) != 1 || got["edge=gw2"] != 1 {
		t.Errorf("a connected edge was forgotten: %v", got)
	}
	stays.c.Close()
}

// A chunk refused counts as an error of its edge, with the reason, in the
// status and the metrics; a stranger's refused hello labels nothing.
func TestCenterCountsAnEdgesErrors(t *testing.T) {
	c, reg, _ := startFleetCenter(t, time.Hour)
	r := helloRaw(t, c.addr, "gw1", wire.Version)
	raw := batchOf(0, 10, "bad")
	r.send((&wire.Chunk{Topic: "telemetry", Partition: 0, Base: 0, Last: 9, Codec: wire.CodecNone, RawLen: uint32(len(raw)), CRC: wire.Checksum(raw) + 1, Data: raw}).Encode(nil))
	if m, ok := r.read().(*wire.Error); !ok || !strings.Contains(m.Message, "checksum") {
		t.Fatalf("got %+v, want the chunk refused", m)
	}
	stranger := dialCenter(t, c.addr)
	stranger.send((&wire.Hello{Version: wire.Version, Edge: "gw666", Token: "guess"}).Encode(nil))
	stranger.read()
	waitFor(t, "gw1's error", func() bool { return series(t, reg, "ferry_mirror_receiver_edge_errors_total")["edge=gw1"] == 1 })
	if got := series(t, reg, "ferry_mirror_receiver_edge_errors_total"); len(got) != 1 {
		t.Errorf("errors by edge: %v, want gw1's alone", got)
	}
	e := c.recv.Status().Edges[0]
	if e.LastError == nil || e.LastError.Reason != "chunk" || !strings.Contains(e.LastError.Message, "checksum") {
		t.Errorf("gw1's last error: %+v", e.LastError)
	}
}

// A real sender reports its ends: the center sees its lag reach 0 once the
// copy is complete.
func TestSenderReportsItsEnds(t *testing.T) {
	c, _, _ := startFleetCenter(t, time.Hour)
	edgeLog := openLog(t, t.TempDir())
	if _, err := edgeLog.CreateTopic("telemetry", 1, nil); err != nil {
		t.Fatal(err)
	}
	produce(t, edgeLog, "telemetry", 0, 5, "a")
	startSender(t, edgeLog, t.TempDir(), c.addr)
	waitFor(t, "the center to know gw1 is level", func() bool {
		st := c.recv.Status()
		return len(st.Edges) == 1 && st.Edges[0].LagKnown && st.Edges[0].Partitions[0].EdgeEnd != nil &&
			*st.Edges[0].Partitions[0].EdgeEnd == 50 && st.Edges[0].LagRecords == 0 && st.Edges[0].Records == 50
	})
}

// An edge whose center refuses its protocol version (a center older than
// the Heads frame) says hello again in the oldest version it speaks.
func TestSenderFallsBackToAnOlderCenter(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	versions := make(chan uint16, 2)
	go func() {
		for i := 0; i < 2; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			m, _, err := wire.ReadFrame(bufio.NewReader(c), nil)
			if h, ok := m.(*wire.Hello); err == nil && ok {
				versions <- h.Version
			}
			// What a version 3 center answers any other version.
			c.Write((&wire.Error{Message: "protocol version 4 not supported (want 3)"}).Encode(nil))
			c.Close()
		}
	}()
	startSender(t, openLog(t, t.TempDir()), t.TempDir(), ln.Addr().String())
	for _, want := range []uint16{wire.Version, wire.MinVersion} {
		select {
		case v := <-versions:
			if v != want {
				t.Fatalf("hello version %d, want %d", v, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no hello of version %d", want)
		}
	}
}

// Heads naming a partition the edge did not announce are refused, as a
// chunk for one is, and counted; nothing of them is kept.
func TestCenterRefusesHeadsOfUnannouncedPartitions(t *testing.T) {
	c, reg, _ := startFleetCenter(t, time.Hour)
	r := helloRaw(t, c.addr, "gw1", wire.Version)
	r.send((&wire.Heads{Parts: []wire.Head{{Topic: "telemetry", Partition: 7, End: 1 << 40, Oldest: -1}}}).Encode(nil))
	if m, ok := r.read().(*wire.Error); !ok || !strings.Contains(m.Message, "did not announce") {
		t.Fatalf("got %+v, want the heads refused", m)
	}
	waitFor(t, "the refusal counted", func() bool { return series(t, reg, "ferry_mirror_receiver_rejected_total")["reason=protocol"] == 1 })
	if e := c.recv.Status().Edges[0]; e.LagKnown || e.Errors != 1 {
		t.Errorf("gw1 after refused heads: %+v, want no lag known and one error", e)
	}
}
