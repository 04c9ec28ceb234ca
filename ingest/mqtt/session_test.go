package mqtt

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// A persistent session (its subscriptions, and what was published to it
// while it was away) survives a broker restart: the session store is bbolt.
func TestPersistentSessionAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	a := startBroker(t, dir, nil)
	rc := dialRaw(t, a.addr, 5)
	rc.connect(connectOpts{id: "ops", clean: true, sessionExpiry: 3600})
	if ack := rc.subscribe("factory/+/+/alarm", 1, 1); ack.ReasonCodes[0] != 1 {
		t.Fatalf("SUBACK %v", ack.ReasonCodes)
	}
	rc.c.Close()
	waitFor(t, "ops to disconnect", func() bool { cl, ok := a.srv.broker.Clients.Get("ops"); return ok && cl.Closed() })
	a.stop(t, nil)

	b := startBroker(t, dir, nil)
	pubc := dialRaw(t, b.addr, 5)
	pubc.connect(connectOpts{id: "dev9", clean: true})
	pubc.publish("factory/a/dev9/alarm", []byte("overheat"), 1, 1, false)
	pubc.expect(packets.Puback)

	rc2 := dialRaw(t, b.addr, 5)
	if ack := rc2.connect(connectOpts{id: "ops", clean: false, sessionExpiry: 3600}); !ack.SessionPresent {
		t.Fatal("session not present after the restart")
	}
	pk := rc2.expect(packets.Publish)
	if pk.TopicName != "factory/a/dev9/alarm" || string(pk.Payload) != "overheat" || pk.FixedHeader.Qos != 1 {
		t.Fatalf("got %s %q qos %d", pk.TopicName, pk.Payload, pk.FixedHeader.Qos)
	}
}
