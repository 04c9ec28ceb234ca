package mqtt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	flog "ferry/log"
)

// groupSetup is a broker whose fsyncs can be held, with every publish
// going to the one partition of topic "mqtt", and a first commit on it
// held in its fsync: what is published from now on queues for the next.
func groupSetup(t *testing.T, v3 ...bool) (*testBroker, *flog.Partition, func()) {
	t.Helper()
	h := &heldFS{release: make(chan struct{})}
	b := startBrokerFS(t, "", h, nil)
	var once sync.Once
	release := func() { once.Do(func() { h.hold.Store(false); close(h.release) }) }
	t.Cleanup(release) // before the broker stops, which fsyncs
	part, err := b.log.Partition("mqtt", 0)
	if err != nil {
		t.Fatal(err)
	}
	h.hold.Store(true)
	rc := dialRaw(t, b.addr, 5)
	rc.connect(connectOpts{id: "first", clean: true})
	rc.publish("other/first", []byte("first"), 1, 1, false)
	waitFor(t, "the first commit's fsync held", func() bool { return h.held.Load() == 1 })
	return b, part, release
}

// queued is how many records wait for the partition's next commit.
func (b *testBroker) queued(part *flog.Partition) int {
	g := b.srv.group(part)
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.cur.recs)
}

// batchSizes returns the record count of each batch of part, in order.
func batchSizes(t *testing.T, part *flog.Partition) []int {
	t.Helper()
	var sizes []int
	for off := int64(0); off < part.EndOffset(); {
		rr, err := part.Read(off, 1<<20, nil)
		if err != nil {
			t.Fatal(err)
		}
		for data := rr.Data; len(data) > 0; {
			h, err := flog.ParseBatchHeader(data)
			if err != nil {
				t.Fatal(err)
			}
			n := int(h.LastOffsetDelta) + 1
			if h.BaseOffset >= off {
				sizes = append(sizes, n)
			}
			off = h.LastOffset() + 1
			data = data[h.Length:]
		}
	}
	return sizes
}

// TestPublishesDuringAnFsyncShareOneAppend: publishes from several
// connections that arrive while a partition's fsync runs are appended
// together, as one batch, once it ends, and each connection gets its
// PUBACK once that batch is durable, in its own publish order.
func TestPublishesDuringAnFsyncShareOneAppend(t *testing.T) {
	b, part, release := groupSetup(t)
	const conns, each = 5, 2
	rcs := make([]*rawClient, conns)
	for i := range rcs {
		rcs[i] = dialRaw(t, b.addr, 5)
		rcs[i].connect(connectOpts{id: fmt.Sprintf("c%d", i), clean: true})
		for j := range each {
			rcs[i].publish("other/x", []byte(fmt.Sprintf("c%d-%d", i, j)), 1, uint16(10+j), false)
		}
	}
	waitFor(t, "every publish queued", func() bool { return b.queued(part) == conns*each })
	if d := part.DurableOffset(); d != 0 {
		t.Fatalf("durable offset %d while the fsync is held", d)
	}
	release()
	for i, rc := range rcs {
		for j := range each {
			if pk := rc.expect(packets.Puback); pk.PacketID != uint16(10+j) || pk.ReasonCode != 0 {
				t.Fatalf("c%d: PUBACK %d reason %#x, want %d", i, pk.PacketID, pk.ReasonCode, 10+j)
			}
			if d := part.DurableOffset(); d < 1+conns*each {
				t.Fatalf("PUBACK with durable offset %d", d)
			}
		}
	}
	if got := batchSizes(t, part); len(got) != 2 || got[0] != 1 || got[1] != conns*each {
		t.Fatalf("batches of %v records, want [1 %d]", got, conns*each)
	}
	// Each connection's records are in its publish order.
	last := map[string]int{}
	for _, r := range b.records(t, "mqtt")[0][1:] {
		var c, j int
		if _, err := fmt.Sscanf(string(r.Value), "c%d-%d", &c, &j); err != nil {
			t.Fatal(err)
		}
		if prev, ok := last[fmt.Sprint(c)]; ok && prev > j {
			t.Fatalf("c%d: record %d after %d", c, j, prev)
		}
		last[fmt.Sprint(c)] = j
	}
}

// TestRefusedRecordInASharedAppend: when the log refuses a record queued
// with others (larger than the topic's max.message.bytes), only that
// publish is refused: the MQTT 5 client is answered "packet too large"
// for it, the MQTT 3.1.1 client is disconnected without a PUBACK for it,
// and the records around them are stored and acknowledged.
func TestRefusedRecordInASharedAppend(t *testing.T) {
	b, part, release := groupSetup(t)
	if err := b.log.AlterConfigs("mqtt", map[string]string{"max.message.bytes": "1000"}, nil); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), 2000)
	v5 := dialRaw(t, b.addr, 5)
	v5.connect(connectOpts{id: "v5", clean: true})
	v3 := dialRaw(t, b.addr, 4)
	v3.connect(connectOpts{id: "v3", clean: true})
	v5.publish("other/a", []byte("a"), 1, 1, false)
	v5.publish("other/big", big, 1, 2, false)
	v5.publish("other/b", []byte("b"), 1, 3, false)
	v3.publish("other/big3", big, 1, 7, false)
	waitFor(t, "every publish queued", func() bool { return b.queued(part) == 4 })
	release()
	for _, want := range []struct {
		id   uint16
		code byte
	}{{1, 0}, {2, packets.ErrPacketTooLarge.Code}, {3, 0}} {
		if pk := v5.expect(packets.Puback); pk.PacketID != want.id || pk.ReasonCode != want.code {
			t.Fatalf("PUBACK %d reason %#x, want %d reason %#x", pk.PacketID, pk.ReasonCode, want.id, want.code)
		}
	}
	if pk, closed := v3.closed(); !closed {
		t.Fatalf("3.1.1 client not disconnected (got %v)", pk)
	}
	var vals []string
	for _, r := range b.records(t, "mqtt")[0] {
		vals = append(vals, string(r.Value))
	}
	if fmt.Sprint(vals) != "[first a b]" {
		t.Fatalf("records %q, want [first a b]", vals)
	}
}

// TestOnlyHooks: onlyHooks, by which New checks that ferry's two
// OnPacketRead hooks (the connection hook and the session store) are the
// only ones, since handlePacket calls them itself, notices a third. What
// the direct calls do for the packets they act on (PUBREC, PUBREL, a
// retransmitted QoS 2 PUBLISH) is checked by
// TestReleasedQoS2FlowResumesWithPubrelAfterRestart,
// TestQoS2ExactlyOnce and TestReceiveMaximumCountsUnreleasedQoS2.
func TestOnlyHooks(t *testing.T) {
	b := startBroker(t, "", nil)
	if !onlyHooks(b.srv.mochi.hooks, mqtt.OnPacketRead, b.srv.hook, b.srv.sess) {
		t.Fatal("a server's OnPacketRead hooks are not only ferry's")
	}
	if onlyHooks(b.srv.mochi.hooks, mqtt.OnPacketRead, b.srv.hook) {
		t.Fatal("the session store's OnPacketRead not noticed")
	}
	if err := b.srv.broker.AddHook(&otherHook{event: mqtt.OnPacketRead}, nil); err != nil {
		t.Fatal(err)
	}
	if onlyHooks(b.srv.mochi.hooks, mqtt.OnPacketRead, b.srv.hook, b.srv.sess) {
		t.Fatal("another hook's OnPacketRead not noticed")
	}
}

// otherHook is a hook other than ferry's that takes one event.
type otherHook struct {
	mqtt.HookBase
	event byte
}

func (*otherHook) ID() string             { return "other" }
func (h *otherHook) Provides(b byte) bool { return b == h.event }

// TestQoS1PublishSkipsMochisHookChain: with ferry's hook the only one
// that sees publishes, a QoS 1 publish is handled without mochi's hook
// chain (publish.go); with another such hook, mochi's chain runs.
func TestQoS1PublishSkipsMochisHookChain(t *testing.T) {
	b := startBroker(t, "", nil)
	if !b.srv.fastPublish {
		t.Fatal("QoS 1/2 publishes go through mochi's hook chain")
	}
	rc := dialRaw(t, b.addr, 5)
	rc.connect(connectOpts{id: "d", clean: true})
	rc.publish("factory/s1/d/telemetry", []byte("x"), 1, 1, false)
	if pk := rc.expect(packets.Puback); pk.PacketID != 1 || pk.ReasonCode != 0 {
		t.Fatalf("PUBACK %d reason %#x", pk.PacketID, pk.ReasonCode)
	}
	if n := b.count("telemetry"); n != 1 {
		t.Fatalf("%d records", n)
	}
	if err := b.srv.broker.AddHook(&otherHook{event: mqtt.OnPublish}, nil); err != nil {
		t.Fatal(err)
	}
	if onlyHooks(b.srv.mochi.hooks, mqtt.OnPublish, b.srv.hook) {
		t.Fatal("another hook's OnPublish not noticed")
	}
}

// TestQueuedForACommitIsBounded: while a commit's fsync is held, a QoS 0
// flood (which no Receive Maximum bounds) queues at most maxGroupQueued
// bytes for the next commit; its reader then waits, and everything is
// stored once the fsync ends.
func TestQueuedForACommitIsBounded(t *testing.T) {
	defer func(n int) { maxGroupQueued = n }(maxGroupQueued)
	maxGroupQueued = 64 << 10
	b, part, release := groupSetup(t)
	g := b.srv.group(part)
	state := func() (size, waiting int) {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.cur.size, g.waiting
	}
	const n, each = 64, 4 << 10 // 256 KiB: four times the bound
	rc := dialRaw(t, b.addr, 5)
	rc.connect(connectOpts{id: "flood", clean: true})
	go func() {
		for i := range n {
			rc.publish("other/flood", bytes.Repeat([]byte{byte(i)}, each), 0, 0, false)
		}
	}()
	waitFor(t, "the flood's reader to wait, or the bound passed", func() bool {
		size, waiting := state()
		return waiting > 0 || size > maxGroupQueued
	})
	if size, _ := state(); size > maxGroupQueued {
		t.Fatalf("%d bytes queued, bound %d", size, maxGroupQueued)
	}
	release()
	waitFor(t, "every publish stored", func() bool { return part.EndOffset() == 1+n })
}

// pacedSetup is groupSetup with the committer's pace set to pace, and the
// client whose publish is in the held commit: it is the one acknowledged
// when the commit ends.
func pacedSetup(t *testing.T, pace time.Duration) (*testBroker, *flog.Partition, *rawClient, func()) {
	t.Helper()
	old := groupPace
	groupPace = pace
	t.Cleanup(func() { groupPace = old }) // after the broker's committers stop
	h := &heldFS{release: make(chan struct{})}
	b := startBrokerFS(t, "", h, nil)
	var once sync.Once
	release := func() { once.Do(func() { h.hold.Store(false); close(h.release) }) }
	t.Cleanup(release)
	part, err := b.log.Partition("mqtt", 0)
	if err != nil {
		t.Fatal(err)
	}
	h.hold.Store(true)
	first := dialRaw(t, b.addr, 5)
	first.connect(connectOpts{id: "first", clean: true})
	first.publish("other/first", []byte("f1"), 1, 1, false)
	waitFor(t, "the first commit's fsync held", func() bool { return h.held.Load() == 1 })
	return b, part, first, release
}

// TestCommitWaitsForTheAcknowledgedToAnswer: after a commit that released
// acknowledgements, the next commit waits for the acknowledged devices'
// next publishes (as many records as it acknowledged) and takes them with
// those queued during its fsync: one append and one fsync for both, not
// one each. Every PUBACK still leaves only once its record is durable.
func TestCommitWaitsForTheAcknowledgedToAnswer(t *testing.T) {
	b, part, first, release := pacedSetup(t, time.Minute) // only the answer ends the wait
	other := dialRaw(t, b.addr, 5)
	other.connect(connectOpts{id: "other", clean: true})
	other.publish("other/a", []byte("a1"), 1, 1, false)
	waitFor(t, "the publish queued", func() bool { return b.queued(part) == 1 })
	release()
	if pk := first.expect(packets.Puback); pk.PacketID != 1 || part.DurableOffset() < 1 {
		t.Fatalf("PUBACK %d with durable offset %d", pk.PacketID, part.DurableOffset())
	}
	first.publish("other/first", []byte("f2"), 1, 2, false) // the answer
	for _, rc := range []*rawClient{other, first} {
		if pk := rc.expect(packets.Puback); pk.ReasonCode != 0 || part.DurableOffset() < 3 {
			t.Fatalf("PUBACK %d reason %#x with durable offset %d", pk.PacketID, pk.ReasonCode, part.DurableOffset())
		}
	}
	if got := batchSizes(t, part); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("batches of %v records, want [1 2]", got)
	}
}

// TestPacedCommitDoesNotWaitForever: when the acknowledged device does not
// publish again, the records queued meanwhile are committed and
// acknowledged once the pace has passed.
func TestPacedCommitDoesNotWaitForever(t *testing.T) {
	b, part, first, release := pacedSetup(t, 20*time.Millisecond)
	other := dialRaw(t, b.addr, 5)
	other.connect(connectOpts{id: "other", clean: true})
	other.publish("other/a", []byte("a1"), 1, 1, false)
	waitFor(t, "the publish queued", func() bool { return b.queued(part) == 1 })
	release()
	first.expect(packets.Puback)
	if pk := other.expect(packets.Puback); pk.ReasonCode != 0 || part.DurableOffset() < 2 {
		t.Fatalf("PUBACK %d reason %#x with durable offset %d", pk.PacketID, pk.ReasonCode, part.DurableOffset())
	}
	if got := batchSizes(t, part); len(got) != 2 || got[0] != 1 || got[1] != 1 {
		t.Fatalf("batches of %v records, want [1 1]", got)
	}
}

// TestStalledClientDoesNotHoldUpOthersAcks: a client that stops reading
// its socket while it publishes has its acknowledgements pile up (its
// socket full, its queue growing, its reader held at Receive Maximum),
// and another client publishing to the same partition still gets each
// PUBACK: the group's acker never waits on a socket (a QoS 0 publisher
// keeps the group's committer and acker alive throughout).
func TestStalledClientDoesNotHoldUpOthersAcks(t *testing.T) {
	b := startBroker(t, "", nil)
	stalled := dialRaw(t, b.addr, 4) // MQTT 3.1.1: held at Receive Maximum, not disconnected
	stalled.c.(*net.TCPConn).SetReadBuffer(2048)
	stalled.connect(connectOpts{id: "stalled", clean: true})
	b.clientByID(t, "stalled").Net.Conn.(*preConn).Conn.(*net.TCPConn).SetWriteBuffer(4096)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	pk := encodePacket(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: 4,
		TopicName: "other/stalled", Payload: []byte("s"), PacketID: 1})
	go func() {
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			binary.BigEndian.PutUint16(pk[len(pk)-3:], uint16(i%65535+1))
			if stalled.writeRaw(pk) != nil {
				return
			}
		}
	}()
	// A QoS 0 publisher keeps the group's committer (and its acker)
	// from ending between the stall and the lively client's publishes.
	keeper := dialRaw(t, b.addr, 5)
	keeper.connect(connectOpts{id: "keeper", clean: true})
	k0 := encodePacket(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, ProtocolVersion: 5,
		TopicName: "other/keeper", Payload: []byte("k")})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
			if keeper.writeRaw(k0) != nil {
				return
			}
		}
	}()
	cn := b.srv.conn(b.clientByID(t, "stalled"))
	waitFor(t, "the stalled client's acknowledgements to pile up", func() bool { return cn.outstanding() >= 1000 })
	rc := dialRaw(t, b.addr, 5)
	rc.connect(connectOpts{id: "lively", clean: true})
	for i := 1; i <= 20; i++ {
		rc.publish("other/lively", []byte("l"), 1, uint16(i), false)
		pk, err := rc.tryRead(10 * time.Second)
		if err != nil || pk.FixedHeader.Type != packets.Puback || pk.PacketID != uint16(i) {
			t.Fatalf("publish %d: %+v %v", i, pk.FixedHeader, err)
		}
	}
}

// encodePacket encodes a PUBLISH.
func encodePacket(t *testing.T, pk packets.Packet) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := pk.PublishEncode(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
