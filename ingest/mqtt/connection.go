package mqtt

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
	"time"
	"unsafe"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// A connection's life after its CONNECT was read (preconnect.go), owned by
// ferry rather than mochi's Server.attachClient, for what an idle
// connection costs.
//
// mochi handles CONNECT and then reads packets for the connection's whole
// life on one goroutine: its frames alone (attachClient 2.9 KiB, Client.Read
// 1.6 KiB) are in use while it waits, and handling CONNECT (the CONNACK's
// encoding, the hooks) grows its stack to 16 KiB, which Go never shrinks
// under that much use. Here CONNECT is handled on a goroutine that then
// exits (establish), and the connection's reader waits a few hundred bytes
// deep (readLoop, reader.go): whatever handling a packet grows, the GC
// gives back. Each packet is decoded and handed to mochi's own packet
// processing (receivePacket), so the protocol stays mochi's: session
// take-over, CONNACK, inflight resend, wills and the packet handlers are
// its functions, called in attachClient's order.
//
// The pieces of mochi used are unexported: reached by go:linkname (their
// signatures are those of mochi v2.7.9, which TestMochiVersionPinned
// checks go.mod still names) and, for the server's hook list and its
// delayed wills, by reflection at New.

//go:linkname mochiValidateConnect github.com/mochi-mqtt/server/v2.(*Server).validateConnect
func mochiValidateConnect(s *mqtt.Server, cl *mqtt.Client, pk packets.Packet) packets.Code

//go:linkname mochiInheritSession github.com/mochi-mqtt/server/v2.(*Server).inheritClientSession
func mochiInheritSession(s *mqtt.Server, pk packets.Packet, cl *mqtt.Client) bool

//go:linkname mochiReceivePacket github.com/mochi-mqtt/server/v2.(*Server).receivePacket
func mochiReceivePacket(s *mqtt.Server, cl *mqtt.Client, pk packets.Packet) error

//go:linkname mochiSendLWT github.com/mochi-mqtt/server/v2.(*Server).sendLWT
func mochiSendLWT(s *mqtt.Server, cl *mqtt.Client)

//go:linkname mochiFlushOutbuf github.com/mochi-mqtt/server/v2.(*Client).flushOutbuf
func mochiFlushOutbuf(cl *mqtt.Client) error

// mochiInternals are the mochi server's hook list and its delayed wills.
type mochiInternals struct {
	hooks       *mqtt.Hooks
	willDelayed *packets.Packets
}

// reachMochi finds the hook list and the delayed wills of b.
func reachMochi(b *mqtt.Server) (mochiInternals, error) {
	v := reflect.ValueOf(b).Elem()
	h := v.FieldByName("hooks")
	if !h.IsValid() || h.Type() != reflect.TypeOf((*mqtt.Hooks)(nil)) {
		return mochiInternals{}, errors.New("mqtt: mochi's server has no hooks field")
	}
	lp := v.FieldByName("loop")
	if !lp.IsValid() || lp.Kind() != reflect.Pointer || lp.IsNil() {
		return mochiInternals{}, errors.New("mqtt: mochi's server has no loop field")
	}
	w := lp.Elem().FieldByName("willDelayed")
	if !w.IsValid() || w.Type() != reflect.TypeOf((*packets.Packets)(nil)) {
		return mochiInternals{}, errors.New("mqtt: mochi's event loop has no willDelayed field")
	}
	return mochiInternals{
		hooks:       *(**mqtt.Hooks)(unsafe.Pointer(h.UnsafeAddr())),
		willDelayed: *(**packets.Packets)(unsafe.Pointer(w.UnsafeAddr())),
	}, nil
}

// start makes the client of a connection whose CONNECT pc holds and
// establishes it; the caller then reads its packets (readLoop) and ends it
// (end). On an error the connection is closed.
func (s *Server) start(lid string, pc *preConn) (*mqtt.Client, error) {
	b := s.broker
	b.Listeners.ClientsWg.Add(1)
	// No conn for NewClient: it would give the client a read buffer that
	// only mochi's reader uses.
	cl := b.NewClient(nil, lid, "", false)
	cl.Net.Conn, cl.Net.Remote = pc, pc.RemoteAddr().String()
	pc.w.out = outbound(cl) // written by writeOut while it holds packets (writer.go)
	// No delivery is written until the client is established: nothing
	// before its CONNACK, and a resumed session's messages first (attach).
	pc.w.writing.Store(true)
	done := make(chan error, 1)
	go func() { done <- s.establish(lid, cl, pc) }()
	if err := <-done; err != nil {
		cl.Stop(nil)
		b.Listeners.ClientsWg.Done()
		return nil, err
	}
	pc.w.writing.Store(false)
	s.kick(cl)
	s.churn.add()
	return cl, nil
}

// end ends an established client once its reader returned err.
func (s *Server) end(cl *mqtt.Client, err error) {
	s.disconnected(cl, err)
	s.churn.add()
	atomic.AddInt64(&s.broker.Info.ClientsConnected, -1)
	cl.Stop(nil)
	s.broker.Listeners.ClientsWg.Done()
}

// establish does what mochi's attachClient does up to reading packets:
// CONNECT decoded and validated, the hooks asked, the session inherited,
// CONNACK sent, queued messages resent (by ferry, in order: attach). It runs on a goroutine of its own
// so that the depth it reaches does not stay with the connection.
func (s *Server) establish(lid string, cl *mqtt.Client, pc *preConn) error {
	b := s.broker
	pk, err := decodeConnect(cl, pc.pending)
	atomic.AddInt64(&b.Info.PacketsReceived, 1)
	atomic.AddInt64(&b.Info.BytesReceived, int64(len(pc.pending)))
	pc.pending = nil
	if err == nil {
		pk, err = s.mochi.hooks.OnPacketRead(cl, pk)
	}
	if err != nil {
		return fmt.Errorf("read connection: %w", err)
	}
	cl.ParseConnect(lid, pk)
	if atomic.LoadInt64(&b.Info.ClientsConnected) >= b.Options.Capabilities.MaximumClients {
		code := packets.ErrServerBusy
		if cl.Properties.ProtocolVersion < 5 {
			code = packets.ErrServerUnavailable
		}
		b.SendConnack(cl, code, false, nil)
		return packets.ErrServerBusy
	}
	code := mochiValidateConnect(b, cl, pk)
	if code != packets.CodeSuccess {
		if err := b.SendConnack(cl, code, false, nil); err != nil {
			return fmt.Errorf("invalid connection send ack: %w", err)
		}
		return code
	}
	if err := s.mochi.hooks.OnConnect(cl, pk); err != nil {
		return err
	}
	keepaliveDeadline(cl)
	if !s.mochi.hooks.OnConnectAuthenticate(cl, pk) {
		if err := b.SendConnack(cl, packets.ErrBadUsernameOrPassword, false, nil); err != nil {
			return fmt.Errorf("invalid connection send ack: %w", err)
		}
		return packets.ErrBadUsernameOrPassword
	}
	atomic.AddInt64(&b.Info.ClientsConnected, 1) // taken off by end
	s.mochi.hooks.OnSessionEstablish(cl, pk)
	present := mochiInheritSession(b, pk, cl)
	if f := s.establishHook.Load(); f != nil && present {
		(*f)("inherited", cl) // the old client taken over, the new one not yet found by publishes
	}
	// ferry keeps to the client's Receive Maximum and sends in order
	// (sessions.go); mochi's send quota would hold messages back and
	// release them by creation second.
	cl.State.Inflight.ResetSendQuota(0)
	b.Clients.Add(cl)
	// A failure from here on ends the connection as mochi's does: no
	// will, no OnDisconnect.
	if err := b.SendConnack(cl, code, present, nil); err != nil {
		atomic.AddInt64(&b.Info.ClientsConnected, -1)
		return fmt.Errorf("ack connection packet: %w", err)
	}
	s.mochi.willDelayed.Delete(cl.ID) // [MQTT-3.1.3-9]
	if f := s.establishHook.Load(); f != nil && present {
		(*f)("acked", cl) // between the CONNACK and the resend
	}
	if err := s.sess.attach(cl, present); err != nil {
		atomic.AddInt64(&b.Info.ClientsConnected, -1)
		return fmt.Errorf("resend inflight: %w", err)
	}
	if c, ok := s.conns.Load(cl); ok {
		c.(*conn).established.Store(true)
	}
	s.mochi.hooks.OnSessionEstablished(cl, pk)
	return nil
}

// disconnected ends an established client as mochi's attachClient does once
// its reader returns: the will sent unless the client said goodbye, the
// hooks told, and a session that ends with its connection dropped.
func (s *Server) disconnected(cl *mqtt.Client, err error) {
	b := s.broker
	if err != nil {
		mochiSendLWT(b, cl)
		cl.Stop(err)
	} else {
		cl.Properties.Will = mqtt.Will{} // [MQTT-3.14.4-3] [MQTT-3.1.2-10]
	}
	expire := (cl.Properties.ProtocolVersion == 5 && cl.Properties.Props.SessionExpiryInterval == 0) ||
		(cl.Properties.ProtocolVersion < 5 && cl.Properties.Clean)
	s.mochi.hooks.OnDisconnect(cl, err, expire)
	if expire && !cl.IsTakenOver() {
		cl.ClearInflights()
		b.UnsubscribeClient(cl)
		b.Clients.Delete(cl.ID) // [MQTT-4.1.0-2]
	}
}

// keepaliveDeadline sets the connection's deadline to one and a half
// keepalives from now ([MQTT-3.1.2-22]); none for keepalive 0.
func keepaliveDeadline(cl *mqtt.Client) {
	var t time.Time
	if ka := cl.State.Keepalive; ka > 0 {
		t = time.Now().Add(time.Duration(ka+ka/2) * time.Second)
	}
	cl.Net.Conn.SetDeadline(t)
}

// decodeConnect decodes the CONNECT packet raw (fixed header included, as
// readConnect read it).
func decodeConnect(cl *mqtt.Client, raw []byte) (packets.Packet, error) {
	var pk packets.Packet
	r := bytes.NewReader(raw)
	first, err := r.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(first); err != nil {
		return pk, err
	}
	if pk.FixedHeader.Remaining, _, err = packets.DecodeLength(r); err != nil {
		return pk, err
	}
	body := raw[len(raw)-r.Len():]
	pk.ProtocolVersion = cl.Properties.ProtocolVersion
	return pk, pk.ConnectDecode(body)
}
