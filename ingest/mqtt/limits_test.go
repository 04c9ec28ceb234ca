package mqtt

import (
	"bytes"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

func disconnects(b *testBroker, reason string) float64 {
	return testutilToFloat(b.srv.metrics.disconnects.WithLabelValues(reason))
}

// Bad input and broken limits end only the offending connection, with the
// MQTT 5 reason where the protocol has one, and are counted; the broker
// keeps serving.
func TestLimitsAndBadInput(t *testing.T) {
	held := &heldFS{release: make(chan struct{})}
	b := startBrokerFS(t, "", held, func(o *Options) {
		o.MaxPacketSize = 1024
		o.ConnectTimeout = 200 * time.Millisecond
		o.ReceiveMaximum = 2
		o.MaxConnections = 20
	})

	t.Run("oversized packet", func(t *testing.T) {
		rc := dialRaw(t, b.addr, 5)
		rc.connect(connectOpts{id: "big", clean: true})
		rc.publish("factory/a/big/telemetry", bytes.Repeat([]byte("x"), 4096), 1, 1, false)
		last, closed := rc.closed()
		if !closed {
			t.Fatal("connection left open after an oversized packet")
		}
		if last == nil || last.FixedHeader.Type != packets.Disconnect || last.ReasonCode != packets.ErrPacketTooLarge.Code {
			t.Fatalf("last packet %+v, want DISCONNECT %#x", last, packets.ErrPacketTooLarge.Code)
		}
		waitFor(t, "the disconnect to be counted", func() bool { return disconnects(b, packets.ErrPacketTooLarge.Reason) == 1 })
	})

	t.Run("no CONNECT", func(t *testing.T) {
		c, err := net.Dial("tcp", b.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("the broker sent something to a silent connection")
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("idle connection closed only after %v", d)
		}
	})

	t.Run("wildcard in a publish topic", func(t *testing.T) {
		rc := dialRaw(t, b.addr, 5)
		rc.connect(connectOpts{id: "wild", clean: true})
		rc.publish("factory/+/wild/telemetry", []byte("x"), 1, 1, false)
		last, closed := rc.closed()
		if !closed || last == nil || last.FixedHeader.Type != packets.Disconnect || last.ReasonCode != packets.ErrProtocolViolationSurplusWildcard.Code {
			t.Fatalf("closed=%v last packet %+v, want DISCONNECT %#x", closed, last, packets.ErrProtocolViolationSurplusWildcard.Code)
		}
		waitFor(t, "the disconnect to be counted", func() bool {
			return disconnects(b, packets.ErrProtocolViolationSurplusWildcard.Reason) == 1
		})
	})

	t.Run("receive maximum exceeded", func(t *testing.T) {
		// No fsync ends until the subtest does, so no publish is
		// acknowledged: the third is one more than the client may have
		// unacknowledged.
		held.hold.Store(true)
		defer func() { held.hold.Store(false); close(held.release) }()
		rc := dialRaw(t, b.addr, 5)
		ack := rc.connect(connectOpts{id: "greedy", clean: true})
		if ack.Properties.ReceiveMaximum != 2 {
			t.Fatalf("CONNACK advertises receive maximum %d, want 2", ack.Properties.ReceiveMaximum)
		}
		if ack.Properties.MaximumPacketSize != 1024 {
			t.Fatalf("CONNACK advertises maximum packet size %d, want 1024", ack.Properties.MaximumPacketSize)
		}
		for i := uint16(1); i <= 4; i++ {
			rc.publish("factory/a/greedy/telemetry", []byte{byte(i)}, 1, i, false)
		}
		var last *packets.Packet
		for {
			pk, err := rc.tryRead(10 * time.Second)
			if err != nil {
				break
			}
			last = &pk
		}
		if last == nil || last.FixedHeader.Type != packets.Disconnect || last.ReasonCode != packets.ErrReceiveMaximum.Code {
			t.Fatalf("last packet %+v, want DISCONNECT receive maximum exceeded", last)
		}
	})

	t.Run("receive maximum reached, MQTT 3.1.1", func(t *testing.T) {
		// A 3.1.1 client was given no limit: its reads stop while two
		// acknowledgements are queued and resume as they leave, so all
		// six publishes are acknowledged, in order, over three fsyncs.
		if err := b.log.AlterConfigs("telemetry", map[string]string{"flush.ms": "100"}, nil); err != nil {
			t.Fatal(err)
		}
		defer b.log.AlterConfigs("telemetry", nil, []string{"flush.ms"})
		rc := dialRaw(t, b.addr, 4)
		rc.connect(connectOpts{id: "patient", clean: true})
		for i := uint16(1); i <= 6; i++ {
			rc.publish("factory/a/patient/telemetry", []byte{byte(i)}, 1, i, false)
		}
		for i := uint16(1); i <= 6; i++ {
			if ack := rc.expect(packets.Puback); ack.PacketID != i {
				t.Fatalf("PUBACK for %d, want %d", ack.PacketID, i)
			}
		}
	})

	t.Run("too many connections", func(t *testing.T) {
		// The earlier subtests' connections must be gone from the count.
		waitFor(t, "connections to drain", func() bool { return atomic.LoadInt64(&b.srv.broker.Info.ClientsConnected) == 0 })
		var open []*rawClient
		for i := 0; ; i++ {
			rc := dialRaw(t, b.addr, 5)
			ack := rc.connect(connectOpts{id: "c" + string(rune('a'+i)), clean: true})
			if ack.ReasonCode == packets.ErrServerBusy.Code {
				break
			}
			if ack.ReasonCode != 0 || i > 40 {
				t.Fatalf("connection %d: CONNACK %#x", i, ack.ReasonCode)
			}
			open = append(open, rc)
		}
		if len(open) != 20 {
			t.Errorf("%d connections accepted, want 20", len(open))
		}
		for _, rc := range open {
			rc.c.Close()
		}
	})

	// After all that the broker still ingests.
	waitFor(t, "connections to drain", func() bool { return atomic.LoadInt64(&b.srv.broker.Info.ClientsConnected) == 0 })
	rc := dialRaw(t, b.addr, 5)
	rc.connect(connectOpts{id: "after", clean: true})
	rc.publish("factory/a/after/telemetry", []byte("ok"), 1, 1, false)
	if ack := rc.expect(packets.Puback); ack.ReasonCode != 0 {
		t.Fatalf("PUBACK %#x after the bad input", ack.ReasonCode)
	}
}

// Receive Maximum counts a QoS 2 flow until its PUBREL: an MQTT 5 client
// with two PUBREC'd publishes unreleased, under a maximum of 2, breaks the
// limit with a third (DISCONNECT 0x93); a PUBREL frees its place.
func TestReceiveMaximumCountsUnreleasedQoS2(t *testing.T) {
	b := startBroker(t, "", func(o *Options) { o.ReceiveMaximum = 2 })
	rc := dialRaw(t, b.addr, 5)
	rc.connect(connectOpts{id: "rel", clean: true})
	for i := uint16(1); i <= 2; i++ {
		rc.publish("factory/a/rel/telemetry", []byte{byte(i)}, 2, i, false)
		rc.expect(packets.Pubrec)
	}
	rc.pubrel(1)
	if pk := rc.expect(packets.Pubcomp); pk.PacketID != 1 {
		t.Fatalf("PUBCOMP for %d, want 1", pk.PacketID)
	}
	rc.publish("factory/a/rel/telemetry", []byte{3}, 2, 3, false)
	if pk := rc.expect(packets.Pubrec); pk.PacketID != 3 {
		t.Fatalf("PUBREC for %d, want 3", pk.PacketID)
	}
	rc.publish("factory/a/rel/telemetry", []byte{4}, 2, 4, false)
	last, closed := rc.closed()
	if !closed || last == nil || last.FixedHeader.Type != packets.Disconnect || last.ReasonCode != packets.ErrReceiveMaximum.Code {
		t.Fatalf("closed=%v last packet %+v, want DISCONNECT %#x", closed, last, packets.ErrReceiveMaximum.Code)
	}
}
