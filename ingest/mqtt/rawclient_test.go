package mqtt

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// rawClient speaks MQTT packet by packet (encoded and decoded by mochi's
// packets package), for what a well-behaved client library will not do:
// MQTT 3.1.1, retransmissions with DUP after a lost PUBACK, protocol
// violations.
type rawClient struct {
	t       testing.TB
	c       net.Conn
	r       *bufio.Reader
	version byte
}

func dialRaw(t testing.TB, addr string, version byte) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c, r: bufio.NewReader(c), version: version}
}

type connectOpts struct {
	id, user, pass string
	clean          bool
	sessionExpiry  uint32
	receiveMaximum uint16
	maxPacketSize  uint32 // the client's Maximum Packet Size (MQTT 5); 0: none
}

// connect sends CONNECT and returns the CONNACK.
func (rc *rawClient) connect(o connectOpts) packets.Packet {
	rc.t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: rc.version,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: o.id, Clean: o.clean, Keepalive: 30}}
	if rc.version == 3 {
		pk.Connect.ProtocolName = []byte("MQIsdp")
	}
	if o.user != "" {
		pk.Connect.UsernameFlag, pk.Connect.Username = true, []byte(o.user)
	}
	if o.pass != "" {
		pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte(o.pass)
	}
	if o.sessionExpiry > 0 {
		pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = o.sessionExpiry, true
	}
	pk.Properties.ReceiveMaximum = o.receiveMaximum
	pk.Properties.MaximumPacketSize = o.maxPacketSize
	rc.send(pk, (*packets.Packet).ConnectEncode)
	ack := rc.read()
	if ack.FixedHeader.Type != packets.Connack {
		rc.t.Fatalf("want CONNACK, got packet type %d", ack.FixedHeader.Type)
	}
	return ack
}

func (rc *rawClient) publish(topic string, payload []byte, qos byte, id uint16, dup bool) {
	rc.t.Helper()
	rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Dup: dup}, ProtocolVersion: rc.version,
		TopicName: topic, Payload: payload, PacketID: id}, (*packets.Packet).PublishEncode)
}

func (rc *rawClient) pubrel(id uint16) {
	rc.t.Helper()
	rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, ProtocolVersion: rc.version, PacketID: id},
		(*packets.Packet).PubrelEncode)
}

func (rc *rawClient) puback(id uint16) {
	rc.t.Helper()
	rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, ProtocolVersion: rc.version, PacketID: id},
		(*packets.Packet).PubackEncode)
}

func (rc *rawClient) pubrec(id uint16) {
	rc.t.Helper()
	rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, ProtocolVersion: rc.version, PacketID: id},
		(*packets.Packet).PubrecEncode)
}

func (rc *rawClient) pubcomp(id uint16) {
	rc.t.Helper()
	rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubcomp}, ProtocolVersion: rc.version, PacketID: id},
		(*packets.Packet).PubcompEncode)
}

func (rc *rawClient) subscribe(filter string, qos byte, id uint16) packets.Packet {
	rc.t.Helper()
	rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, ProtocolVersion: rc.version, PacketID: id,
		Filters: packets.Subscriptions{{Filter: filter, Qos: qos}}}, (*packets.Packet).SubscribeEncode)
	return rc.expect(packets.Suback)
}

func (rc *rawClient) send(pk packets.Packet, enc func(*packets.Packet, *bytes.Buffer) error) {
	rc.t.Helper()
	var buf bytes.Buffer
	if err := enc(&pk, &buf); err != nil {
		rc.t.Fatal(err)
	}
	if _, err := rc.c.Write(buf.Bytes()); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *rawClient) writeRaw(b []byte) error {
	_, err := rc.c.Write(b)
	return err
}

// read returns the next packet from the broker; it fails the test after
// 10 s or when the connection ends.
func (rc *rawClient) read() packets.Packet {
	rc.t.Helper()
	pk, err := rc.tryRead(10 * time.Second)
	if err != nil {
		rc.t.Fatalf("reading from the broker: %v", err)
	}
	return pk
}

func (rc *rawClient) tryRead(timeout time.Duration) (packets.Packet, error) {
	rc.c.SetReadDeadline(time.Now().Add(timeout))
	b, err := rc.r.ReadByte()
	if err != nil {
		return packets.Packet{}, err
	}
	var fh packets.FixedHeader
	if err := fh.Decode(b); err != nil {
		return packets.Packet{}, err
	}
	n, _, err := packets.DecodeLength(rc.r)
	if err != nil {
		return packets.Packet{}, err
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(rc.r, body); err != nil {
		return packets.Packet{}, err
	}
	fh.Remaining = n
	pk := packets.Packet{FixedHeader: fh, ProtocolVersion: rc.version}
	switch fh.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Pubrec:
		err = pk.PubrecDecode(body)
	case packets.Pubrel:
		err = pk.PubrelDecode(body)
	case packets.Pubcomp:
		err = pk.PubcompDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	case packets.Pingresp:
	default:
		err = fmt.Errorf("unexpected packet type %d", fh.Type)
	}
	return pk, err
}

// expect reads the next packet and checks its type.
func (rc *rawClient) expect(typ byte) packets.Packet {
	rc.t.Helper()
	pk := rc.read()
	if pk.FixedHeader.Type != typ {
		rc.t.Fatalf("want packet type %d, got %d (%+v)", typ, pk.FixedHeader.Type, pk)
	}
	return pk
}

// closed reports whether the broker closed the connection (reading any
// packets it sent first, e.g. a DISCONNECT, which is returned).
func (rc *rawClient) closed() (*packets.Packet, bool) {
	var last *packets.Packet
	for {
		pk, err := rc.tryRead(10 * time.Second)
		if err != nil {
			var ne net.Error
			if asNetErr(err, &ne) && ne.Timeout() {
				return last, false
			}
			return last, true
		}
		last = &pk
	}
}

func asNetErr(err error, ne *net.Error) bool {
	e, ok := err.(net.Error)
	if ok {
		*ne = e
	}
	return ok
}
