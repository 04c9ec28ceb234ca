package mqtt

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// A connection's CONNECT packet is read here, in full, before mochi sees
// the connection. mochi allocates a packet's declared remaining length
// before its bytes arrive (Client.ReadPacket: make, then io.ReadFull), so a
// client declaring a large CONNECT and sending nothing more would make it
// hold that much per connection until the CONNECT timeout. Here the
// declared length is checked against MaxPacketSize first, and the buffer
// grows only with the bytes that came: a connection that has not completed
// CONNECT costs its goroutine and a few bytes, and holds no mochi client.

// errFirstNotConnect is a first packet that is not CONNECT ([MQTT-3.1.0-1]).
var errFirstNotConnect = errors.New("first packet is not CONNECT")

// Why a connection ended before its CONNECT reached the hook: the values
// of ferry_mqtt_preconnect_closed_total's reason label.
const (
	preTimeout       = "timeout"          // no whole CONNECT within the CONNECT timeout
	preTooLarge      = "packet_too_large" // CONNECT declared longer than MaxPacketSize
	preMalformed     = "malformed"        // undecodable: bad length, invalid UTF-8 or NUL in a string, ...
	preProtocolError = "protocol_error"   // not CONNECT first, or a CONNECT mochi's checks refused
	preClosed        = "closed"           // the client went away
)

var preReasons = []string{preTimeout, preTooLarge, preMalformed, preProtocolError, preClosed}

// preConn is an accepted connection whose CONNECT packet has been read.
// The connection's reader (reader.go) follows; it answers a packet
// declared larger than MaxPacketSize, for an MQTT 5 client, with
// DISCONNECT 0x95 (tooLarge) before the connection is closed.
type preConn struct {
	net.Conn
	pending   []byte                      // the CONNECT packet, until it is decoded
	connected atomic.Bool                 // the hook's OnConnect ran: later errors are the session's
	client    atomic.Pointer[mqtt.Client] // set by OnConnect for an MQTT 5 client: told of an oversized packet
	reader    packetReader                // the established connection's (reader.go)
	w         outWriter                   // its deliveries' writer (writer.go)
}

// tooLarge writes DISCONNECT 0x95 to an MQTT 5 client, under the client's
// lock as mochi's writes are, before the connection is closed.
func (c *preConn) tooLarge() {
	cl := c.client.Load()
	if cl == nil {
		return
	}
	var buf bytes.Buffer
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ProtocolVersion: 5,
		ReasonCode: packets.ErrPacketTooLarge.Code}
	if pk.DisconnectEncode(&buf) != nil {
		return
	}
	cl.Lock()
	c.Conn.Write(buf.Bytes())
	cl.Unlock()
}

// readConnect reads the first packet of c, which must be a CONNECT of at
// most maxSize bytes (counted as mochi does: remaining length + 1), and
// returns c wrapped with it. The caller's deadline bounds the wait.
func readConnect(c net.Conn, maxSize uint32) (*preConn, error) {
	br := connByteReader{c: c}
	first, err := br.ReadByte()
	if err != nil {
		return nil, err
	}
	if first>>4 != packets.Connect {
		return nil, errFirstNotConnect
	}
	n, _, err := packets.DecodeLength(&br)
	if err != nil {
		return nil, err
	}
	if maxSize > 0 && uint32(n+1) > maxSize {
		return nil, packets.ErrPacketTooLarge // [MQTT-3.2.2-15], before a byte of it is read
	}
	want := len(br.read) + n
	// Start small and at most double: the buffer is never more than twice
	// what the client has sent.
	buf := make([]byte, len(br.read), len(br.read)+min(n, 512))
	copy(buf, br.read)
	for len(buf) < want {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), len(buf)+min(want-len(buf), len(buf)))
			copy(grown, buf)
			buf = grown
		}
		m, err := c.Read(buf[len(buf):min(cap(buf), want)])
		buf = buf[:len(buf)+m]
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return &preConn{Conn: c, pending: buf}, nil
}

// connByteReader reads a connection byte by byte, keeping what it read
// (the fixed header: at most 5 bytes).
type connByteReader struct {
	c    net.Conn
	b    [1]byte
	read []byte
}

func (r *connByteReader) ReadByte() (byte, error) {
	if len(r.read) == 5 {
		return 0, packets.ErrMalformedVariableByteInteger
	}
	if _, err := io.ReadFull(r.c, r.b[:]); err != nil {
		return 0, err
	}
	r.read = append(r.read, r.b[0])
	return r.b[0], nil
}

// preconnectReason classifies why a connection ended before its CONNECT
// reached the hook.
func preconnectReason(err error) string {
	var code packets.Code
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return preTimeout
	case errors.Is(err, packets.ErrPacketTooLarge):
		return preTooLarge
	case errors.As(err, &code):
		if code.Code == packets.ErrMalformedPacket.Code {
			return preMalformed
		}
		return preProtocolError
	case errors.Is(err, errFirstNotConnect), errors.Is(err, errTextMessage):
		return preProtocolError
	}
	return preClosed
}

// preconnectEnded counts and logs a connection that ended before its
// CONNECT reached the hook; a full server is counted as the CONNECT
// attempt it is.
func (s *Server) preconnectEnded(remote string, err error) {
	if errors.Is(err, packets.ErrServerBusy) {
		s.metrics.connects.WithLabelValues("server_busy").Inc()
		s.logger.Info("mqtt: connection refused", "remote", remote, "reason", "server busy")
		return
	}
	reason := preconnectReason(err)
	s.metrics.preconnect[reason].Inc()
	if reason == preClosed {
		s.logger.Debug("mqtt: connection closed before CONNECT", "remote", remote, "err", err)
		return
	}
	s.logger.Info("mqtt: connection closed before CONNECT", "remote", remote, "reason", reason, "err", err)
}
