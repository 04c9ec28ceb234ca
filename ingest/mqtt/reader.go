package mqtt

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// The connection's reader: packets read and handed to mochi, waiting for
// the next one a few frames deep, holding no read buffer while it waits.
//
// On a socket (TCP, also under the edge's connection limits) the reader
// asks the runtime to wait until bytes are there (syscall.RawConn.Read),
// and only then takes a buffer from a pool; it keeps it while bytes keep
// coming and gives it back when a read finds none, before it waits: an
// idle connection holds none. Other connections
// (TLS, WebSocket) read through their net.Conn into a small buffer of
// their own, since their Read blocks.

// readBufSize is the size of the pooled read buffers.
const readBufSize = 4096

// fallbackBufSize is the buffer of a connection that is not a socket.
const fallbackBufSize = 512

var readBufs = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// packetReader buffers a connection's reads.
type packetReader struct {
	conn   net.Conn        // read when raw is nil
	raw    syscall.RawConn // the socket, when conn is one
	pooled *[]byte         // data's buffer when it is from readBufs
	own    []byte          // the buffer of a connection that is not a socket
	data   []byte          // what was read and not yet consumed is data[r:]
	r      int

	// raw.Read's callback and its results, made once (a closure per
	// read would be an allocation per read).
	onReadable func(fd uintptr) bool
	into       []byte // where onReadable reads; nil: a pooled buffer
	n          int
	rerr       error
}

func (pr *packetReader) init(c net.Conn) {
	*pr = packetReader{conn: c, raw: rawSocket(c)}
	if pr.raw != nil {
		pr.onReadable = pr.readable
	}
}

// rawSocket is c's socket, for reads and writes that must not wait; nil
// when c is not one (TLS, WebSocket).
func rawSocket(c net.Conn) syscall.RawConn {
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			return raw
		}
	}
	return nil
}

// readable reads the socket fd once it may have bytes: into pr.into, or
// into the pooled buffer, taken from the pool only when bytes are there
// and given back when none are, before the reader waits. It returns false
// (wait for the socket) when none are.
func (pr *packetReader) readable(fd uintptr) bool {
	if pr.into != nil {
		pr.n, pr.rerr = readFD(fd, pr.into)
		return pr.rerr != syscall.EAGAIN
	}
	if pr.pooled == nil {
		pr.pooled = readBufs.Get().(*[]byte)
	}
	pr.n, pr.rerr = readFD(fd, *pr.pooled)
	if pr.rerr == syscall.EAGAIN || pr.n <= 0 {
		readBufs.Put(pr.pooled) // nothing came: no buffer while waiting
		pr.pooled = nil
	}
	return pr.rerr != syscall.EAGAIN
}

// rawRead reads the socket into p (nil: a pooled buffer, pr.pooled).
func (pr *packetReader) rawRead(p []byte) (int, error) {
	pr.into = p
	err := pr.raw.Read(pr.onReadable)
	pr.into = nil
	n, rerr := pr.n, pr.rerr
	pr.rerr = nil
	switch {
	case err != nil:
		return 0, err // a deadline, or the connection closed
	case rerr != nil:
		return 0, os.NewSyscallError("read", rerr)
	case n <= 0:
		return 0, io.EOF
	}
	return n, nil
}

// consumed forgets the bytes read, all consumed. A socket's buffer is kept
// for the next read, which gives it back if nothing is there.
func (pr *packetReader) consumed() {
	pr.data, pr.r = nil, 0
}

// release gives the pooled buffer back (the connection ended).
func (pr *packetReader) release() {
	if pr.pooled != nil {
		readBufs.Put(pr.pooled)
		pr.pooled = nil
	}
	pr.consumed()
}

// fill reads what is there (at least a byte) once data is consumed.
func (pr *packetReader) fill() error {
	pr.consumed()
	if pr.raw == nil {
		if pr.own == nil {
			pr.own = make([]byte, fallbackBufSize)
		}
		n, err := pr.conn.Read(pr.own)
		if n > 0 {
			pr.data = pr.own[:n]
			return nil
		}
		if err == nil {
			err = io.ErrNoProgress
		}
		return err
	}
	n, err := pr.rawRead(nil)
	if err != nil {
		return err
	}
	pr.data = (*pr.pooled)[:n]
	return nil
}

// readFD reads fd once, again if a signal interrupted it.
func readFD(fd uintptr, p []byte) (int, error) {
	for {
		n, err := syscall.Read(int(fd), p)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

// writeFD writes fd once, again if a signal interrupted it.
func writeFD(fd uintptr, p []byte) (int, error) {
	for {
		n, err := syscall.Write(int(fd), p)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

// ReadByte returns the next byte, waiting for it.
func (pr *packetReader) ReadByte() (byte, error) {
	if pr.r == len(pr.data) {
		if err := pr.fill(); err != nil {
			return 0, err
		}
	}
	b := pr.data[pr.r]
	pr.r++
	if pr.r == len(pr.data) {
		pr.consumed()
	}
	return b, nil
}

// readFull fills p: what is buffered first, then reads; a large remainder
// is read straight into p.
func (pr *packetReader) readFull(p []byte) error {
	for len(p) > 0 {
		if pr.r == len(pr.data) {
			if len(p) >= readBufSize {
				pr.release() // not held while a large body comes
				n, err := pr.readDirect(p)
				if err != nil {
					return err
				}
				p = p[n:]
				continue
			}
			if err := pr.fill(); err != nil {
				return err
			}
		}
		n := copy(p, pr.data[pr.r:])
		pr.r += n
		p = p[n:]
		if pr.r == len(pr.data) {
			pr.consumed()
		}
	}
	return nil
}

// readDirect reads into p without a buffer.
func (pr *packetReader) readDirect(p []byte) (int, error) {
	if pr.raw == nil {
		n, err := pr.conn.Read(p)
		if n > 0 {
			return n, nil
		}
		if err == nil {
			err = io.ErrNoProgress
		}
		return 0, err
	}
	return pr.rawRead(p)
}

// readLoop reads the packets of an established client until the
// connection ends (an error) or the client is stopped (nil), as mochi's
// Client.Read did, the keepalive deadline renewed before each.
func (s *Server) readLoop(cl *mqtt.Client, pc *preConn) error {
	pc.reader.init(pc.Conn)
	defer pc.reader.release()
	var ka keepalive
	for {
		if cl.Closed() {
			return nil
		}
		ka.renew(cl)
		if err := s.readPacket(cl, pc); err != nil {
			return err
		}
	}
}

// keepalive renews a connection's deadline before each packet is read
// ([MQTT-3.1.2-22]: one and a half keepalives without a packet end the
// connection), but moves it only once per slack: each move is a lock and a
// timer change in the runtime, and a one-in-flight device sends a packet
// every few hundred microseconds. The deadline is set slack beyond one and
// a half keepalives, so it never comes early: a silent client is
// disconnected between 1.5 × keepalive and that plus slack (a quarter
// keepalive, at most a second).
type keepalive struct {
	set time.Time // when the deadline was last moved (zero: never)
}

func (k *keepalive) renew(cl *mqtt.Client) {
	sec := cl.State.Keepalive
	if sec == 0 {
		return // fixed at CONNECT, whose handling cleared the deadline (establish)
	}
	ka := time.Duration(sec) * time.Second
	slack := min(ka/4, time.Second)
	now := time.Now()
	if !k.set.IsZero() && now.Sub(k.set) < slack {
		return
	}
	k.set = now
	cl.Net.Conn.SetDeadline(now.Add(ka + ka/2 + slack))
}

// readPacket reads one packet and has it handled. An idle connection's
// reader waits in its first ReadByte.
func (s *Server) readPacket(cl *mqtt.Client, pc *preConn) error {
	pr := &pc.reader
	first, err := pr.ReadByte()
	if err != nil {
		return err
	}
	var fh packets.FixedHeader
	if err := fh.Decode(first); err != nil {
		return err
	}
	n, bu, err := packets.DecodeLength(pr)
	if err != nil {
		return err
	}
	if max := s.opts.MaxPacketSize; uint32(n+1) > max {
		pc.tooLarge()                    // DISCONNECT 0x95 for an MQTT 5 client
		return packets.ErrPacketTooLarge // [MQTT-3.2.2-15]
	}
	atomic.AddInt64(&s.broker.Info.BytesReceived, int64(bu+1))
	// The decoded packet keeps slices of body (topic, payload): it is
	// the packet's own.
	body := make([]byte, n)
	if err := pr.readFull(body); err != nil {
		return err
	}
	return s.handlePacket(cl, fh, body)
}

// packetRead does what ferry's OnPacketRead hooks, the only ones (New
// checks), do with pk, instead of mochi's chain, which would copy the
// ~870-byte packet in and out of each hook for every packet: the session
// store acts only on PUBREC and the hook on PUBREL and a retransmitted
// QoS 2 PUBLISH. Both give the packet back unchanged.
func (s *Server) packetRead(cl *mqtt.Client, pk *packets.Packet) {
	switch pk.FixedHeader.Type {
	case packets.Pubrec:
		s.sess.OnPacketRead(cl, *pk)
	case packets.Publish, packets.Pubrel:
		s.hook.packetRead(cl, pk)
	}
}

// handlePacket decodes a packet and gives it to the hooks (OnPacketRead)
// and mochi's packet handling. It is kept out of readPacket so that the
// packet's large struct is not in the frame of a waiting reader.
//
//go:noinline
func (s *Server) handlePacket(cl *mqtt.Client, fh packets.FixedHeader, body []byte) error {
	info := s.broker.Info
	atomic.AddInt64(&info.PacketsReceived, 1)
	atomic.AddInt64(&info.BytesReceived, int64(len(body)))
	pk := packets.Packet{FixedHeader: fh, ProtocolVersion: cl.Properties.ProtocolVersion}
	// Called directly (not through a table of method values), so that pk
	// stays on the stack: it is 870 bytes.
	var err error
	switch fh.Type {
	case packets.Publish:
		if err = pk.PublishDecode(body); err == nil {
			atomic.AddInt64(&info.MessagesReceived, 1)
		}
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Pubrec:
		err = pk.PubrecDecode(body)
	case packets.Pubrel:
		err = pk.PubrelDecode(body)
	case packets.Pubcomp:
		err = pk.PubcompDecode(body)
	case packets.Subscribe:
		err = pk.SubscribeDecode(body)
	case packets.Unsubscribe:
		err = pk.UnsubscribeDecode(body)
	case packets.Pingreq, packets.Pingresp:
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	case packets.Auth:
		err = pk.AuthDecode(body)
	case packets.Connect: // a second CONNECT: mochi's handling refuses it
		err = pk.ConnectDecode(body)
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Unsuback:
		err = pk.UnsubackDecode(body)
	default:
		err = fmt.Errorf("invalid packet type; %v", fh.Type)
	}
	if err != nil {
		return err
	}
	s.packetRead(cl, &pk)
	if pk.FixedHeader.Type == packets.Publish && s.publishQoS(cl, pk) {
		return nil
	}
	return mochiReceivePacket(s.broker, cl, pk)
}
