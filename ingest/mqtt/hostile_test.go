package mqtt

import (
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Hostile clients: the lessons of the field's MQTT CVEs, each pinned by a
// test that fails if its protection goes.

// memStats returns the process's memory statistics after a collection.
func memStats() runtime.MemStats {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

func preconnectClosed(b *testBroker, reason string) float64 {
	return testutilToFloat(b.srv.metrics.preconnect[reason])
}

func pendingConnections(b *testBroker) float64 { return testutilToFloat(b.srv.metrics.pending) }

// A CONNECT flood allocates nothing its bytes have not paid for: a fixed
// header declaring a huge remaining length is refused before any of it is
// read, and one declaring a length within the packet size cap costs only
// the bytes that came. Memory is measured with runtime.MemStats.
func TestConnectFloodAllocatesNothingDeclared(t *testing.T) {
	b := startBroker(t, "", func(o *Options) { o.ConnectTimeout = time.Minute }) // MaxPacketSize: 1 MiB
	const conns = 200
	const bound = 64 << 20 // for all 200 connections together; declared were 200 × 256 MiB and 200 × 1 MiB

	t.Run("256 MiB declared", func(t *testing.T) {
		// CONNECT, remaining length 268,435,455 (the largest there is),
		// then the first bytes of a body that will never be finished.
		hdr := []byte{0x10, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x04, 'M', 'Q'}
		start := memStats()
		for i := 0; i < conns; i++ {
			rc := dialRaw(t, b.addr, 5)
			if err := rc.writeRaw(hdr); err != nil {
				t.Fatal(err)
			}
			if _, closed := rc.closed(); !closed {
				t.Fatalf("connection %d left open after declaring a 256 MiB CONNECT", i)
			}
			rc.c.Close()
			// Checked as it goes, so a regression fails on its first
			// allocation instead of making 200 of them.
			if m := memStats(); m.TotalAlloc-start.TotalAlloc > bound {
				t.Fatalf("after %d connections %d MiB allocated", i+1, (m.TotalAlloc-start.TotalAlloc)>>20)
			}
		}
		waitFor(t, "the refusals to be counted", func() bool { return preconnectClosed(b, preTooLarge) == conns })
		end := memStats()
		t.Logf("%d connections: %d KiB allocated in all", conns, (end.TotalAlloc-start.TotalAlloc)>>10)
	})

	t.Run("1 MiB declared, 10 bytes sent", func(t *testing.T) {
		// Within the cap: the declared length is no reason to refuse, and
		// no reason to allocate either.
		hdr := append([]byte{0x10, 0xff, 0xff, 0x3f}, make([]byte, 10)...) // remaining length 1 MiB - 1
		closedBefore := preconnectClosed(b, preClosed)
		start := memStats()
		var open []*rawClient
		for i := 0; i < conns; i++ {
			rc := dialRaw(t, b.addr, 5)
			if err := rc.writeRaw(hdr); err != nil {
				t.Fatal(err)
			}
			open = append(open, rc)
		}
		for _, rc := range open {
			rc.c.Close()
		}
		// Counted once the server has read all the client sent (the
		// header, the 10 bytes, the end): every allocation made for it is
		// in TotalAlloc by then.
		waitFor(t, "the connections to end", func() bool { return preconnectClosed(b, preClosed)-closedBefore == conns })
		end := memStats()
		t.Logf("%d connections: %d KiB allocated in all", conns, (end.TotalAlloc-start.TotalAlloc)>>10)
		if d := end.TotalAlloc - start.TotalAlloc; d > bound {
			t.Fatalf("%d connections declaring 1 MiB CONNECTs made the server allocate %d MiB", conns, d>>20)
		}
	})
}

// Connections that never send CONNECT cost little while they wait and are
// closed after the CONNECT timeout, counted.
func TestIdleConnectionsBeforeConnect(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		b := startBroker(t, "", func(o *Options) { o.ConnectTimeout = time.Minute })
		const conns = 2000
		const perConn = 16 << 10 // mochi holding a client per connection, as it did before CONNECT was read here, cost ~30 KiB
		start := memStats()
		var open []net.Conn
		defer func() {
			for _, c := range open {
				c.Close()
			}
		}()
		for i := 0; i < conns; i++ {
			c, err := net.Dial("tcp", b.addr)
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, c)
		}
		waitFor(t, "every connection to be accepted", func() bool { return pendingConnections(b) == conns })
		held := memStats()
		used := int64(held.HeapAlloc+held.StackInuse) - int64(start.HeapAlloc+start.StackInuse)
		t.Logf("%d idle connections: %d KiB in use, %d B each (client side included)", conns, used>>10, used/conns)
		if used > conns*perConn {
			t.Fatalf("%d idle connections hold %d KiB, over %d KiB each", conns, used>>10, perConn>>10)
		}
	})

	t.Run("closed after the CONNECT timeout", func(t *testing.T) {
		b := startBroker(t, "", func(o *Options) { o.ConnectTimeout = 300 * time.Millisecond })
		const conns = 20
		start := time.Now()
		var open []*rawClient
		for i := 0; i < conns; i++ {
			rc := dialRaw(t, b.addr, 5)
			if i%2 == 1 {
				rc.writeRaw([]byte{0x10, 0x20, 0x00}) // a CONNECT begun, never finished
			}
			open = append(open, rc)
		}
		for i, rc := range open {
			if _, closed := rc.closed(); !closed {
				t.Fatalf("connection %d left open", i)
			}
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("idle connections closed only after %v", d)
		}
		waitFor(t, "the timeouts to be counted", func() bool {
			return preconnectClosed(b, preTimeout) == conns && pendingConnections(b) == 0
		})
	})
}

// Client ids and user names name devices, and a device id is substituted
// for "{device}" in ACL filters: one with '+', '#' or '/', a leading '$',
// NUL or invalid UTF-8 is refused at CONNECT, before any credential is
// checked, even where the Authenticator would have taken it.
func TestIdentityMetacharactersRefused(t *testing.T) {
	auth := newTableAuth()
	bad := []string{"de+v", "de#v", "de/v", "+", "#", "$dev", "d\x00v", "d\xffv"}
	for _, name := range bad {
		auth.passwords[name] = "pw" // known to the Authenticator: the front end must refuse it itself
	}
	b := startBroker(t, "", func(o *Options) { o.Auth = auth })
	for _, name := range bad {
		for _, version := range []byte{4, 5} {
			t.Run(fmt.Sprintf("%q/v%d", name, version), func(t *testing.T) {
				for _, tc := range []struct {
					what   string
					o      connectOpts
					v5, v3 byte
					result string
				}{
					{"user name", connectOpts{user: name, pass: "pw", clean: true}, 0x86, 0x04, "bad_username"},
					{"client id", connectOpts{id: name, user: "dev1", pass: "pw1", clean: true}, 0x85, 0x02, "bad_client_id"},
				} {
					if tc.what == "client id" && (name == "d\x00v" || name == "d\xffv") {
						continue // no MQTT string: mochi's decoder refuses it (TestInvalidUTF8Refused)
					}
					before, calls := testutilCount(b, tc.result), auth.calls.Load()
					rc := dialRaw(t, b.addr, version)
					ack := rc.connect(tc.o)
					want := tc.v5
					if version == 4 {
						want = tc.v3
					}
					if ack.ReasonCode != want {
						t.Errorf("%s: CONNACK %#x, want %#x", tc.what, ack.ReasonCode, want)
					}
					if _, closed := rc.closed(); !closed {
						t.Errorf("%s: refused connection left open", tc.what)
					}
					if n := auth.calls.Load() - calls; n != 0 {
						t.Errorf("%s: the Authenticator was asked %d times", tc.what, n)
					}
					if got := testutilCount(b, tc.result) - before; got != 1 {
						t.Errorf("%s: connects{result=%q} rose by %v", tc.what, tc.result, got)
					}
				}
			})
		}
	}
}

// The subscribe ACL is asked again before every delivery (mochi's
// publishToClient calls OnACLCheck with the topic): a subscriber whose ACL
// is narrowed, or who is disabled, stops receiving what it may no longer
// see at once, on the connection it has.
func TestSubscribeACLRecheckedAtDelivery(t *testing.T) {
	for _, qos := range []byte{0, 1} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			auth := newTableAuth()
			b := startBroker(t, "", func(o *Options) { o.Auth = auth })
			sub := dialRaw(t, b.addr, 5)
			sub.connect(connectOpts{id: "dev1", user: "dev1", pass: "pw1", clean: true})
			if ack := sub.subscribe("factory/a/dev1/#", 1, 1); ack.ReasonCodes[0] != 1 {
				t.Fatalf("SUBACK %v", ack.ReasonCodes)
			}
			pub := dialRaw(t, b.addr, 5)
			pub.connect(connectOpts{user: "dev1", pass: "pw1", clean: true}) // the same device, another client id
			var id uint16
			publish := func(topic, payload string) {
				t.Helper()
				if qos > 0 {
					id++
				}
				pub.publish(topic, []byte(payload), qos, id, false)
				if qos > 0 {
					pub.expect(packets.Puback)
				}
			}
			next := func() string {
				t.Helper()
				pk := sub.expect(packets.Publish)
				if pk.FixedHeader.Qos > 0 {
					sub.puback(pk.PacketID)
				}
				return pk.TopicName + " " + string(pk.Payload)
			}

			publish("factory/a/dev1/telemetry", "1")
			if got := next(); got != "factory/a/dev1/telemetry 1" {
				t.Fatalf("before any change: received %q", got)
			}

			auth.narrowed.Store("dev1", true) // as registry SetACL does
			denied := testutilToFloat(b.srv.metrics.subDenied)
			publish("factory/a/dev1/telemetry", "2") // no longer allowed
			publish("factory/a/dev1/status", "3")    // still allowed
			if got := next(); got != "factory/a/dev1/status 3" {
				t.Fatalf("after the ACL was narrowed: received %q, want only the status message", got)
			}

			auth.revoked.Store("dev1", true) // as registry SetEnabled(false) does
			publish("factory/a/dev1/status", "4")
			// A QoS 0 publish has no answer: the refusal's count says it
			// was handled before the device is enabled again.
			waitFor(t, "the refusal to be counted", func() bool { return testutilToFloat(b.srv.metrics.subDenied)-denied == 2 })
			auth.revoked.Delete("dev1")
			publish("factory/a/dev1/status", "5")
			if got := next(); got != "factory/a/dev1/status 5" {
				t.Fatalf("while disabled: received %q, want nothing until it was enabled again", got)
			}
			if got := testutilToFloat(b.srv.metrics.subDenied) - denied; got != 2 {
				t.Errorf("ferry_mqtt_subscribe_denied_total rose by %v, want 2", got)
			}
		})
	}
}

// Topic names and filters that are not UTF-8, or hold U+0000, are
// malformed packets: the connection is closed (mochi decodes before any
// hook runs, so without an MQTT 5 DISCONNECT), nothing is stored, the
// will is never sent, and each is counted.
func TestInvalidUTF8Refused(t *testing.T) {
	b := startBroker(t, "", nil)
	bad := []string{"factory/a/d\xffv/telemetry", "factory/a/d\x00v/telemetry", "factory/a/\xed\xa0\x80/telemetry", "factory/a/\xc0\xaf/telemetry"}
	var sessions, connects float64
	for _, topic := range bad {
		for _, version := range []byte{4, 5} {
			t.Run(fmt.Sprintf("%q/v%d", topic, version), func(t *testing.T) {
				rc := dialRaw(t, b.addr, version)
				rc.connect(connectOpts{id: "pub", clean: true})
				rc.publish(topic, []byte("x"), 1, 1, false)
				if _, closed := rc.closed(); !closed {
					t.Error("publish: connection left open")
				}
				sessions++

				rc = dialRaw(t, b.addr, version)
				rc.connect(connectOpts{id: "sub", clean: true})
				rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, ProtocolVersion: version, PacketID: 1,
					Filters: packets.Subscriptions{{Filter: topic, Qos: 1}}}, (*packets.Packet).SubscribeEncode)
				if _, closed := rc.closed(); !closed {
					t.Error("subscribe: connection left open")
				}
				sessions++

				rc = dialRaw(t, b.addr, version)
				rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: version,
					Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "willy", Clean: true, Keepalive: 30,
						WillFlag: true, WillTopic: topic, WillPayload: []byte("bye")}}, (*packets.Packet).ConnectEncode)
				if last, closed := rc.closed(); !closed || last != nil {
					t.Errorf("will: closed=%v, answered=%v", closed, last != nil)
				}
				connects++
			})
		}
	}
	if n := b.count("telemetry") + b.count("mqtt"); n != 0 {
		t.Errorf("%d records stored", n)
	}
	waitFor(t, "the malformed packets to be counted", func() bool {
		return disconnects(b, packets.ErrMalformedTopic.Reason) == sessions && preconnectClosed(b, preMalformed) == connects
	})
}

// A bridge's upstream is decoded by paho, which does not check strings: a
// message whose topic is not UTF-8 or holds NUL is dropped and counted,
// never stored.
func TestBridgedMalformedTopicDropped(t *testing.T) {
	b := startBroker(t, "", nil)
	br := &bridge{s: b.srv, cfg: Bridge{Name: "up"}, client: "bridge-up"}
	for _, topic := range []string{"factory/a/d\xffv/telemetry", "factory/a/d\x00v/telemetry", "d\xffv"} {
		br.onPublish(paho.PublishReceived{Packet: &paho.Publish{Topic: topic, Payload: []byte("x")}})
	}
	br.onPublish(paho.PublishReceived{Packet: &paho.Publish{Topic: "factory/a/dev/telemetry", Payload: []byte("ok")}})
	if n := b.count("telemetry") + b.count("mqtt"); n != 1 {
		t.Errorf("%d records stored, want only the valid one", n)
	}
	if got := b.publishes("0", resultMalformed); got != 3 {
		t.Errorf("publishes{result=malformed} = %v, want 3", got)
	}
}
