package mqtt

import (
	"context"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"
)

// A client that vanishes without DISCONNECT has its last will published
// to subscribers and stored in the log.
func TestLastWill(t *testing.T) {
	b := startBroker(t, "", nil)
	got := make(chan *paho.Publish, 1)
	sub := b.connect(t, &paho.Connect{ClientID: "ops", CleanStart: true}, func(cc *paho.ClientConfig) {
		cc.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			got <- pr.Packet
			return true, nil
		}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "factory/+/+/status", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	rc := dialRaw(t, b.addr, 4)
	rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "dev5", Clean: true, Keepalive: 30,
			WillFlag: true, WillTopic: "factory/a/dev5/status", WillPayload: []byte("offline"), WillQos: 1}},
		(*packets.Packet).ConnectEncode)
	rc.expect(packets.Connack)
	rc.c.Close()
	select {
	case p := <-got:
		if p.Topic != "factory/a/dev5/status" || string(p.Payload) != "offline" {
			t.Fatalf("will delivered as %s %q", p.Topic, p.Payload)
		}
	case <-ctx.Done():
		t.Fatal("will not delivered")
	}
	waitFor(t, "the will in the log", func() bool { return b.count("mqtt") == 1 })
	for _, rs := range b.records(t, "mqtt") {
		if string(rs[0].Value) != "offline" || string(rs[0].Key) != "dev5" {
			t.Fatalf("will record %q key %q", rs[0].Value, rs[0].Key)
		}
	}
}

// A will on a topic the device may not publish to refuses the connection.
func TestWillACL(t *testing.T) {
	b := startBroker(t, "", func(o *Options) { o.Auth = newTableAuth() })
	rc := dialRaw(t, b.addr, 5)
	rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "dev1", Clean: true, Keepalive: 30,
			UsernameFlag: true, Username: []byte("dev1"), PasswordFlag: true, Password: []byte("pw1"),
			WillFlag: true, WillTopic: "factory/a/dev2/status", WillPayload: []byte("spoof")}},
		(*packets.Packet).ConnectEncode)
	if ack := rc.expect(packets.Connack); ack.ReasonCode != packets.ErrNotAuthorized.Code {
		t.Fatalf("CONNACK %#x, want not authorized", ack.ReasonCode)
	}
}

// MQTT 5 shared subscriptions: each publish goes to one member of the group.
func TestSharedSubscription(t *testing.T) {
	b := startBroker(t, "", nil)
	got := make(chan string, 100)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, id := range []string{"w1", "w2"} {
		c := b.connect(t, &paho.Connect{ClientID: id, CleanStart: true}, func(cc *paho.ClientConfig) {
			cc.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				got <- id + ":" + string(pr.Packet.Payload)
				return true, nil
			}}
		})
		if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$share/workers/factory/#", QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	p := b.connect(t, &paho.Connect{ClientID: "dev6", CleanStart: true}, nil)
	const n = 20
	for i := 0; i < n; i++ {
		pub(t, p, &paho.Publish{Topic: "factory/a/dev6/telemetry", QoS: 1, Payload: []byte{byte('a' + i)}})
	}
	seen := map[string]int{}
	for i := 0; i < n; i++ {
		select {
		case g := <-got:
			seen[g[3:]]++
		case <-ctx.Done():
			t.Fatalf("%d of %d deliveries", i, n)
		}
	}
	if len(seen) != n {
		t.Fatalf("deliveries %v: each publish must reach exactly one member", seen)
	}
	select {
	case g := <-got:
		t.Fatalf("extra delivery %s", g)
	case <-time.After(100 * time.Millisecond):
	}
}

// A client that sends a packet within each keepalive stays connected
// across many of them: the deadline moves with its packets (readLoop moves
// it lazily, at most once per slack), and is never early.
func TestKeepaliveRenewedByPackets(t *testing.T) {
	rc := dialKeepalive(t, "awake")
	// 4 s of packets, one each 600 ms (within the 1 s keepalive; a
	// deadline never moved would end the connection after 1.75 s).
	tick := time.NewTicker(600 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); {
		<-tick.C
		rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}}, (*packets.Packet).PingreqEncode)
		rc.expect(packets.Pingresp)
	}
	expectKeepaliveEnd(t, rc)
}

// A client silent for 1.5 × its keepalive is disconnected.
func TestKeepalive(t *testing.T) {
	expectKeepaliveEnd(t, dialKeepalive(t, "sleepy"))
}

// dialKeepalive connects an MQTT 3.1.1 client with a 1 s keepalive to a
// new broker.
func dialKeepalive(t *testing.T, id string) *rawClient {
	b := startBroker(t, "", nil)
	rc := dialRaw(t, b.addr, 4)
	rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: id, Clean: true, Keepalive: 1}},
		(*packets.Packet).ConnectEncode)
	rc.expect(packets.Connack)
	return rc
}

// expectKeepaliveEnd checks that rc, silent from now on, is disconnected
// after 1.5 × its 1 s keepalive, within the slack (a quarter keepalive).
func expectKeepaliveEnd(t *testing.T, rc *rawClient) {
	t.Helper()
	start := time.Now()
	if _, closed := rc.closed(); !closed {
		t.Fatal("silent client not disconnected")
	}
	if d := time.Since(start); d < 1400*time.Millisecond || d > 5*time.Second {
		t.Fatalf("disconnected after %v, want 1.5–1.75 s", d)
	}
}
