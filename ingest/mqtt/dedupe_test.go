package mqtt

import (
	"fmt"
	"hash/fnv"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// A device on a flaky link loses a PUBACK, reconnects to its session and
// retransmits the publish with DUP set and the same packet id: it is
// acknowledged and not stored twice. A new publish reusing the packet id
// (no DUP), a DUP the broker never saw, and a DUP with other content are
// new messages and are stored.
func TestRetransmissionAfterLostPuback(t *testing.T) {
	for _, version := range []byte{4, 5} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			b := startBroker(t, "", nil)
			topic := "factory/a/flaky/telemetry"
			sess := connectOpts{id: "flaky", clean: false, sessionExpiry: 3600}
			rc := dialRaw(t, b.addr, version)
			rc.connect(sess)
			rc.publish(topic, []byte("a"), 1, 7, false)
			waitFor(t, "the first publish to be stored", func() bool { return b.count("telemetry") == 1 })
			rc.c.Close() // the PUBACK is lost with the connection

			rc2 := dialRaw(t, b.addr, version)
			if ack := rc2.connect(sess); !ack.SessionPresent {
				t.Fatal("session not resumed")
			}
			rc2.publish(topic, []byte("a"), 1, 7, true)
			if ack := rc2.expect(packets.Puback); ack.PacketID != 7 || ack.ReasonCode != 0 {
				t.Fatalf("retransmission answered %+v", ack)
			}
			if got := b.count("telemetry"); got != 1 {
				t.Fatalf("retransmission stored again: %d records", got)
			}
			if got := b.publishes("1", resultDuplicate); got != 1 {
				t.Errorf("duplicate metric = %v", got)
			}
			rc2.publish(topic, []byte("a"), 1, 7, false) // a new message reusing the id
			rc2.expect(packets.Puback)
			rc2.publish(topic, []byte("c"), 1, 8, true) // DUP of something never received
			rc2.expect(packets.Puback)
			rc2.publish(topic, []byte("d"), 1, 7, true) // DUP flag, other content
			rc2.expect(packets.Puback)
			if got := b.count("telemetry"); got != 4 {
				t.Fatalf("%d records, want 4", got)
			}

			// A clean start is a new session: its ids owe nothing to the old.
			rc3 := dialRaw(t, b.addr, version)
			rc3.connect(connectOpts{id: "flaky", clean: true})
			rc3.publish(topic, []byte("d"), 1, 7, true)
			rc3.expect(packets.Puback)
			if got := b.count("telemetry"); got != 5 {
				t.Fatalf("%d records after a clean start, want 5", got)
			}
		})
	}
}

// QoS 2 stores a message once: a retransmission before PUBREL is not
// stored again, and PUBREL completes the exchange.
func TestQoS2ExactlyOnce(t *testing.T) {
	b := startBroker(t, "", nil)
	rc := dialRaw(t, b.addr, 5)
	rc.connect(connectOpts{id: "q2", clean: true, sessionExpiry: 60})
	rc.publish("factory/a/q2/telemetry", []byte("once"), 2, 3, false)
	if rec := rc.expect(packets.Pubrec); rec.PacketID != 3 || rec.ReasonCode != 0 {
		t.Fatalf("PUBREC %+v", rec)
	}
	rc.publish("factory/a/q2/telemetry", []byte("once"), 2, 3, true)
	if rec := rc.expect(packets.Pubrec); rec.PacketID != 3 || rec.ReasonCode != 0 {
		t.Fatalf("PUBREC for the retransmission: %+v", rec)
	}
	rc.pubrel(3)
	if comp := rc.expect(packets.Pubcomp); comp.PacketID != 3 || comp.ReasonCode != 0 {
		t.Fatalf("PUBCOMP %+v", comp)
	}
	if got := b.count("telemetry"); got != 1 {
		t.Fatalf("QoS 2 message stored %d times", got)
	}
}

// The dedupe window keeps the last window publishes of a session.
func TestDedupeWindow(t *testing.T) {
	d := newDedupe(3)
	for id := uint16(1); id <= 5; id++ {
		d.remember("c", id, uint64(id), nil, int64(id))
	}
	for id := uint16(1); id <= 5; id++ {
		_, ok := d.lookup("c", id, uint64(id))
		if want := id >= 3; ok != want {
			t.Errorf("id %d remembered=%v, want %v", id, ok, want)
		}
	}
	d.remember("c", 4, 99, nil, 6) // id 4 reused: the newest entry wins
	if st, ok := d.lookup("c", 4, 99); !ok || st.offset != 6 {
		t.Errorf("reused id: %+v %v", st, ok)
	}
	if _, ok := d.lookup("c", 4, 4); ok {
		t.Error("old content of a reused id still matches")
	}
	d.forget("c")
	if d.sessions() != 0 {
		t.Error("forget left the session")
	}
}

// The broker restarts (or crashes) between storing a publish and sending
// its PUBACK: the device retransmits to the restarted broker, which reads
// recent publishes back from the log and does not store it twice.
func TestRetransmissionAfterRestart(t *testing.T) {
	dir := t.TempDir()
	a := startBroker(t, dir, nil)
	sess := connectOpts{id: "gw7", clean: false, sessionExpiry: 3600}
	rc := dialRaw(t, a.addr, 5)
	rc.connect(sess)
	rc.publish("factory/a/gw7/telemetry", []byte("21.5"), 1, 5, false)
	rc.publish("factory/a/gw7/telemetry", []byte("21.6"), 2, 6, false)
	waitFor(t, "both publishes to be stored", func() bool { return a.count("telemetry") == 2 })
	rc.c.Close() // the acknowledgements are lost
	a.stop(t, nil)

	b := startBroker(t, dir, nil)
	rc2 := dialRaw(t, b.addr, 5)
	if ack := rc2.connect(sess); !ack.SessionPresent {
		t.Fatal("session not restored")
	}
	rc2.publish("factory/a/gw7/telemetry", []byte("21.5"), 1, 5, true)
	if ack := rc2.expect(packets.Puback); ack.PacketID != 5 || ack.ReasonCode != 0 {
		t.Fatalf("PUBACK %+v", ack)
	}
	rc2.publish("factory/a/gw7/telemetry", []byte("21.6"), 2, 6, true)
	if rec := rc2.expect(packets.Pubrec); rec.PacketID != 6 || rec.ReasonCode != 0 {
		t.Fatalf("PUBREC %+v", rec)
	}
	if got := b.count("telemetry"); got != 2 {
		t.Fatalf("%d records after the retransmissions, want 2", got)
	}
	if got := b.publishes("1", resultDuplicate) + b.publishes("2", resultDuplicate); got != 2 {
		t.Errorf("duplicates = %v, want 2", got)
	}
}

// contentHash is FNV-1a of the topic, a zero byte and the payload: the
// in-place loop must agree with hash/fnv on every input.
func TestContentHashIsFNV1a(t *testing.T) {
	for _, c := range []struct{ topic, payload string }{
		{"", ""}, {"a", ""}, {"", "b"}, {"factory/s1/d0042/telemetry", `{"t":20.48}`}, {"a\x00", "\xff\x00"},
	} {
		h := fnv.New64a()
		h.Write([]byte(c.topic))
		h.Write([]byte{0})
		h.Write([]byte(c.payload))
		if got, want := contentHash(c.topic, []byte(c.payload)), h.Sum64(); got != want {
			t.Errorf("contentHash(%q, %q) = %#x, want %#x", c.topic, c.payload, got, want)
		}
	}
}
