package mqtt

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus/testutil"
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

// Close while clients keep connecting and leaving returns: mochi's own
// Close read-locks its client map twice and deadlocks if a client comes
// or goes in between (mochi-mqtt/server#488), so Server.Close drains the
// clients first. Each round races a churn of raw clients against Close.
// The window is nanoseconds wide: without the drain this fails rarely (a
// node test hit it about once in 50 to 100 runs), so it guards the path
// more than it proves the fix.
func TestCloseWhileClientsComeAndGo(t *testing.T) {
	for round := 0; round < 10; round++ {
		b := startBroker(t, "", nil)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					c, err := net.Dial("tcp", b.addr)
					if err != nil {
						continue // closed: keep trying until told to stop
					}
					pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
						Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: fmt.Sprintf("churn-%d-%d", g, i)}}
					var buf bytes.Buffer
					pk.ConnectEncode(&buf)
					c.Write(buf.Bytes())
					c.SetReadDeadline(time.Now().Add(time.Second))
					c.Read(make([]byte, 4)) // the CONNACK, or the close
					c.Close()
				}
			}()
		}
		// Let the churn run, then close under it.
		waitFor(t, "clients to churn", func() bool { return testutil.ToFloat64(b.srv.metrics.connects.WithLabelValues("accepted")) > 20 })
		closed := make(chan struct{})
		go func() { b.stop(t, nil); close(closed) }()
		select {
		case <-closed:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: Close did not return in 30 s with clients coming and going", round)
		}
		close(stop)
		wg.Wait()
	}
}
