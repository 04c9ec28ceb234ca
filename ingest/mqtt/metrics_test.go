package mqtt

import (
	"bufio"
	"net"
	"sync/atomic"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// countingConn counts the bytes a client writes and reads.
type countingConn struct {
	net.Conn
	written, read atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.written.Add(int64(n))
	return n, err
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.read.Add(int64(n))
	return n, err
}

// Bytes in and out of the MQTT listener are counted exactly, the
// acknowledgements ferry writes itself included.
func TestTrafficMetrics(t *testing.T) {
	b := startBroker(t, "", nil)
	nc, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	cc := &countingConn{Conn: nc}
	t.Cleanup(func() { nc.Close() })
	rc := &rawClient{t: t, c: cc, r: bufio.NewReader(cc), version: 4}
	rc.connect(connectOpts{id: "dev1", clean: true})
	rc.publish("factory/lyon/dev1/telemetry", []byte(`{"t":21.5}`), 1, 1, false)
	rc.expect(packets.Puback)
	rc.publish("factory/lyon/dev1/telemetry", []byte(`{"t":21.6}`), 2, 2, false)
	rc.expect(packets.Pubrec)

	if got, want := testutilToFloat(b.srv.metrics.received), float64(cc.written.Load()); got != want {
		t.Errorf("ferry_mqtt_received_bytes_total = %v, the client wrote %v", got, want)
	}
	if got, want := testutilToFloat(b.srv.metrics.sent), float64(cc.read.Load()); got != want {
		t.Errorf("ferry_mqtt_sent_bytes_total = %v, the client read %v", got, want)
	}
}
