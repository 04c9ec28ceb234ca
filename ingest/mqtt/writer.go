package mqtt

import (
	"errors"
	"reflect"
	"sync/atomic"
	"unsafe"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Deliveries written by a goroutine that exists only while a client has
// some queued, in place of mochi's WriteLoop, a goroutine per client for
// its whole life (4 KiB of stack per idle connection: its 1.8 KiB frame
// keeps it there).
//
// mochi's publishToClient puts each delivery on the client's outbound
// channel and tells nobody. Every path that does is followed by a hook:
// publishes (OnPublished: the subscribers of its topic are told), retained
// messages sent on SUBSCRIBE (OnSubscribed), wills (OnWillSent). Told, a
// client whose queue holds packets gets a
// writer goroutine, which writes them with mochi's Client.WritePacket (as
// WriteLoop did; a QoS 1/2 publish goes through the session layer, which
// sends in sequence order within the client's Receive Maximum:
// sessions.go) and exits once the queue is empty. No writer starts before
// the client is established (Server.start). The sweep loop looks
// at every connected client's queue once a second, for the $SYS topics
// mochi publishes every 10 s and any path missed.

// outboundOffset is where a mochi Client keeps its outbound channel
// (State.outbound, unexported), found at New.
var outboundOffset = func() uintptr {
	ct := reflect.TypeOf(mqtt.Client{})
	st, ok := ct.FieldByName("State")
	if !ok {
		return 0
	}
	ob, ok := st.Type.FieldByName("outbound")
	if !ok || ob.Type != reflect.TypeOf((chan *packets.Packet)(nil)) {
		return 0
	}
	return st.Offset + ob.Offset
}()

var errNoOutbound = errors.New("mqtt: mochi's client has no outbound channel: its writer cannot be replaced")

// outbound is cl's queue of deliveries.
func outbound(cl *mqtt.Client) chan *packets.Packet {
	return *(*chan *packets.Packet)(unsafe.Add(unsafe.Pointer(cl), outboundOffset))
}

// outWriter is a connection's delivery writer state.
type outWriter struct {
	out     chan *packets.Packet
	writing atomic.Bool // a writer goroutine owns the queue
}

// kick starts a writer for cl if its queue holds packets and none runs.
func (s *Server) kick(cl *mqtt.Client) {
	pc, ok := cl.Net.Conn.(*preConn)
	if !ok || pc.w.out == nil || len(pc.w.out) == 0 || !pc.w.writing.CompareAndSwap(false, true) {
		return
	}
	s.writers.Add(1)
	go s.writeOut(cl, &pc.w)
}

// writeOut writes cl's queued deliveries until the queue is empty.
func (s *Server) writeOut(cl *mqtt.Client, w *outWriter) {
	defer s.writers.Done()
	for {
		select {
		case pk := <-w.out:
			if pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Qos > 0 {
				s.sess.send(cl, pk.PacketID) // in session order, within the client's Receive Maximum
				continue
			}
			if err := cl.WritePacket(*pk); err != nil {
				s.logger.Debug("mqtt: delivery not written", "client", cl.ID, "err", err)
			}
		default:
			// mochi's WritePacket buffers a write while the outbound
			// queue holds more (the next write takes it along); a
			// publish queued rather than written (sessions.send) may
			// have been that next write.
			cl.Lock()
			err := mochiFlushOutbuf(cl)
			cl.Unlock()
			if err != nil {
				s.logger.Debug("mqtt: delivery not written", "client", cl.ID, "err", err)
			}
			w.writing.Store(false)
			// A packet queued between the empty receive and the store
			// found writing set and started nobody.
			if len(w.out) == 0 || !w.writing.CompareAndSwap(false, true) {
				return
			}
		}
	}
}

// kickSubscribers tells the clients subscribed to topic.
func (s *Server) kickSubscribers(topic string) {
	if atomic.LoadInt64(&s.broker.Info.Subscriptions) == 0 {
		return
	}
	subs := s.broker.Topics.Subscribers(topic)
	for id := range subs.Subscriptions {
		if cl, ok := s.broker.Clients.Get(id); ok {
			s.kick(cl)
		}
	}
	for _, group := range subs.Shared {
		for id := range group {
			if cl, ok := s.broker.Clients.Get(id); ok {
				s.kick(cl)
			}
		}
	}
}

// writeHook tells writers of what mochi queued.
type writeHook struct {
	mqtt.HookBase
	s *Server
}

func (h *writeHook) ID() string { return "ferry-writer" }

func (h *writeHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnPublished, mqtt.OnSubscribed, mqtt.OnWillSent:
		return true
	}
	return false
}

func (h *writeHook) OnPublished(_ *mqtt.Client, pk packets.Packet) { h.s.kickSubscribers(pk.TopicName) }

func (h *writeHook) OnSubscribed(cl *mqtt.Client, _ packets.Packet, _ []byte) { h.s.kick(cl) }

func (h *writeHook) OnWillSent(_ *mqtt.Client, pk packets.Packet) { h.s.kickSubscribers(pk.TopicName) }
