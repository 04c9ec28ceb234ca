package mqtt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/packets"
)

// startWebsocket serves MQTT over WebSocket for b on a new 127.0.0.1
// listener and returns its address.
func startWebsocket(t testing.TB, b *testBroker) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := b.srv
	done := make(chan error, 1)
	go func() { done <- srv.ServeWebsocket(ln) }()
	t.Cleanup(func() { // before startBroker's own cleanup
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("ServeWebsocket: %v", err)
		}
	})
	return ln.Addr().String()
}

// dialWS opens a WebSocket to addr offering the "mqtt" subprotocol and
// returns it as a byte stream (the server's adapter serves the client
// side too).
func dialWS(t testing.TB, addr string) *wsConn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial("ws://"+addr+"/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "mqtt" {
		t.Errorf("subprotocol %q, want mqtt", got)
	}
	c := &wsConn{Conn: ws.NetConn(), ws: ws}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialRawWS is dialRaw over WebSocket: each write is one binary message.
func dialRawWS(t testing.TB, addr string, version byte) *rawClient {
	c := dialWS(t, addr)
	return &rawClient{t: t, c: c, r: bufio.NewReader(c), version: version}
}

// A WebSocket connection that sends a CONNECT header declaring ~1 MiB and
// then nothing is closed after the CONNECT timeout and counted, and
// holds no buffer of the declared size while it waits: it goes through
// the same pre-CONNECT read as a TCP connection (first found by a
// security review: mochi's WebSocket listener had neither).
func TestWebsocketSilentConnectHeaderClosedAfterConnectTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	b := startBroker(t, "", func(o *Options) { o.ConnectTimeout = timeout })
	c := dialWS(t, startWebsocket(t, b))
	start := memStats()
	began := time.Now()
	// CONNECT declaring 1 MiB - 1 of remaining length, then nothing.
	if _, err := c.Write([]byte{0x10, 0xfe, 0xff, 0x3f}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the connection to be reading its CONNECT", func() bool { return pendingConnections(b) == 1 })
	held := memStats()
	grown := int64(held.HeapAlloc) - int64(start.HeapAlloc)
	t.Logf("heap grew by %d KiB after a 4-byte CONNECT header", grown>>10)
	if grown > 256<<10 {
		t.Errorf("heap grew by %d KiB while a 1 MiB CONNECT was declared and 4 bytes sent", grown>>10)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("WebSocket connection still open %v after a %v CONNECT timeout", time.Since(began), timeout)
	}
	t.Logf("closed after %v: %v", time.Since(began).Round(time.Millisecond), err)
	waitFor(t, "the timeout to be counted", func() bool {
		return preconnectClosed(b, preTimeout) == 1 && pendingConnections(b) == 0
	})
}

// Over WebSocket as over TCP, a declared CONNECT length costs nothing
// before its bytes come: past MaxPacketSize it is refused unread, within
// it the buffer grows with what was sent.
func TestWebsocketConnectFloodAllocatesNothingDeclared(t *testing.T) {
	b := startBroker(t, "", func(o *Options) { o.ConnectTimeout = time.Minute }) // MaxPacketSize: 1 MiB
	addr := startWebsocket(t, b)
	const conns = 40
	const bound = 16 << 20 // for all 40 together, client side included; declared were 40 × 1 MiB

	t.Run("256 MiB declared", func(t *testing.T) {
		rc := dialRawWS(t, addr, 5)
		if err := rc.writeRaw([]byte{0x10, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x04, 'M', 'Q'}); err != nil {
			t.Fatal(err)
		}
		if _, closed := rc.closed(); !closed {
			t.Fatal("connection left open after declaring a 256 MiB CONNECT")
		}
		waitFor(t, "the refusal to be counted", func() bool { return preconnectClosed(b, preTooLarge) == 1 })
	})

	t.Run("1 MiB declared, 10 bytes sent", func(t *testing.T) {
		hdr := append([]byte{0x10, 0xff, 0xff, 0x3f}, make([]byte, 10)...)
		closedBefore := preconnectClosed(b, preClosed)
		start := memStats()
		var open []*wsConn
		for i := 0; i < conns; i++ {
			c := dialWS(t, addr)
			if _, err := c.Write(hdr); err != nil {
				t.Fatal(err)
			}
			open = append(open, c)
		}
		waitFor(t, "every connection to be reading its CONNECT", func() bool { return pendingConnections(b) == conns })
		for _, c := range open {
			c.Close()
		}
		// Counted once the server has read all the client sent: every
		// allocation made for it is in TotalAlloc by then.
		waitFor(t, "the connections to end", func() bool { return preconnectClosed(b, preClosed)-closedBefore == conns })
		end := memStats()
		t.Logf("%d connections: %d KiB allocated in all", conns, (end.TotalAlloc-start.TotalAlloc)>>10)
		if d := end.TotalAlloc - start.TotalAlloc; d > bound {
			t.Fatalf("%d WebSocket connections declaring 1 MiB CONNECTs made %d MiB be allocated", conns, d>>20)
		}
	})
}

// A text message is not MQTT ([MQTT-6.0.0-1]): the connection is closed
// and counted as a protocol error.
func TestWebsocketTextMessageClosed(t *testing.T) {
	b := startBroker(t, "", nil)
	c := dialWS(t, startWebsocket(t, b))
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte{0x10, 0x00}); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection left open after a text message")
	}
	waitFor(t, "the protocol error to be counted", func() bool { return preconnectClosed(b, preProtocolError) == 1 })
}

// WebSocket messages and MQTT packets need not line up: a CONNECT split
// over two messages, then a PUBLISH and a PINGREQ in one, are all served.
func TestWebsocketPacketsAcrossMessages(t *testing.T) {
	b := startBroker(t, "", nil)
	rc := dialRawWS(t, startWebsocket(t, b), 5)
	var buf bytes.Buffer
	connect := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "split", Clean: true, Keepalive: 30}}
	if err := connect.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	if err := rc.writeRaw(raw[:3]); err != nil {
		t.Fatal(err)
	}
	if err := rc.writeRaw(raw[3:]); err != nil {
		t.Fatal(err)
	}
	if ack := rc.expect(packets.Connack); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK reason %#x", ack.ReasonCode)
	}
	buf.Reset()
	pub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: 5,
		TopicName: "factory/a/split/telemetry", Payload: []byte("two in one"), PacketID: 7}
	ping := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}, ProtocolVersion: 5}
	if err := pub.PublishEncode(&buf); err != nil {
		t.Fatal(err)
	}
	if err := ping.PingreqEncode(&buf); err != nil {
		t.Fatal(err)
	}
	if err := rc.writeRaw(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	got := map[byte]bool{}
	for len(got) < 2 {
		got[rc.read().FixedHeader.Type] = true
	}
	if !got[packets.Puback] || !got[packets.Pingresp] {
		t.Fatalf("answers %v, want PUBACK and PINGRESP", got)
	}
}

// An MQTT 5 client (paho) over WebSocket connects, publishes at QoS 1 and
// gets its PUBACK once the record is in the log; the connection is on a
// "ws" listener.
func TestWebsocketPublishQoS1(t *testing.T) {
	b := startBroker(t, "", nil)
	c := paho.NewClient(paho.ClientConfig{Conn: dialWS(t, startWebsocket(t, b))})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := c.Connect(ctx, &paho.Connect{ClientID: "wsdev", CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("connect: %v (connack %+v)", err, ack)
	}
	defer c.Disconnect(&paho.Disconnect{})
	resp, err := c.Publish(ctx, &paho.Publish{Topic: "factory/x/wsdev/telemetry", QoS: 1, Payload: []byte("via ws")})
	if err != nil || resp.ReasonCode != 0 {
		t.Fatalf("publish: %+v %v", resp, err)
	}
	var recs []string
	for _, rs := range b.records(t, "telemetry") {
		for _, r := range rs {
			recs = append(recs, string(r.Key)+"="+string(r.Value))
		}
	}
	if len(recs) != 1 || recs[0] != "wsdev=via ws" {
		t.Fatalf("records %q, want [wsdev=via ws]", recs)
	}
	if l := b.clientByID(t, "wsdev").Net.Listener; !strings.HasPrefix(l, "ws-") {
		t.Errorf("client on listener %q, want a ws one", l)
	}
}

// A one-in-flight device over WebSocket (a connection that is not a socket:
// its drain writes every acknowledgement) is served by one lingering drain,
// not a drain goroutine per publish; the drain exits once the device
// stops.
func TestWebsocketOneInFlightOneDrain(t *testing.T) {
	b := startBroker(t, "", nil)
	c := paho.NewClient(paho.ClientConfig{Conn: dialWS(t, startWebsocket(t, b))})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ack, err := c.Connect(ctx, &paho.Connect{ClientID: "wsone", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatalf("connect: %v (connack %+v)", err, ack)
	}
	defer c.Disconnect(&paho.Disconnect{})
	const n = 20
	for i := range n {
		resp, err := c.Publish(ctx, &paho.Publish{Topic: "factory/x/wsone/telemetry", QoS: 1, Payload: []byte{byte(i)}})
		if err != nil || resp.ReasonCode != 0 {
			t.Fatalf("publish %d: %+v %v", i, resp, err)
		}
	}
	if d := b.srv.drains.Load(); d > n/4 {
		t.Fatalf("%d drains started for %d one-in-flight publishes, want a few", d, n)
	}
	cn, ok := b.srv.conns.Load(b.clientByID(t, "wsone"))
	if !ok {
		t.Fatal("no connection state")
	}
	waitFor(t, "the lingering drain to end", func() bool {
		c := cn.(*conn)
		c.mu.Lock()
		defer c.mu.Unlock()
		return !c.running
	})
}

// An upgrade request trickled in and never finished is cut off after the
// CONNECT timeout too (the HTTP server's header timeout), and a request
// that is not an upgrade is answered and its connection closed: no
// connection lingers before it is a WebSocket.
func TestWebsocketUnfinishedUpgradeClosed(t *testing.T) {
	const timeout = 200 * time.Millisecond
	b := startBroker(t, "", func(o *Options) { o.ConnectTimeout = timeout })
	addr := startWebsocket(t, b)
	for name, req := range map[string]string{
		"unfinished header": "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nX-Slow",
		"not an upgrade":    "GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			began := time.Now()
			if _, err := c.Write([]byte(req)); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = io.ReadAll(c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection still open after %v", time.Since(began))
			}
		})
	}
}
