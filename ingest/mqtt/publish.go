package mqtt

import (
	"reflect"
	"slices"
	"sync/atomic"
	"time"
	"unsafe"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// A client's QoS 1/2 PUBLISH handled without mochi's per-publish costs.
//
// mochi's processPublish ends, for every QoS 1/2 publish, in its hook
// chain's OnPublish, where ferry's hook takes the publish over and answers
// ErrRejectPacket (the acknowledgement waits for durability: conn.go). On
// that answer mochi's chain builds a debug log line that boxes the whole
// packet (~900 bytes, three allocations) whether or not debug logging is
// on, and the processing around it costs a fifth of the read path. When
// nothing but ferry's hook could see the difference, publishQoS does what
// processPacket and processPublish do for such a publish, in their order,
// and calls ferry's hook directly; otherwise (and for anything unusual:
// an invalid packet or topic, a topic alias, a packet id already in
// flight, an exhausted receive quota, a QoS above the server's, a
// subscriber anywhere) the packet goes to mochi as before.

// receiveQuotaOffset is where mochi's Inflight keeps receiveQuota
// (unexported), found at start; 0 if it is not there (publishQoS is then
// off).
var receiveQuotaOffset = func() uintptr {
	f, ok := reflect.TypeOf(mqtt.Inflight{}).FieldByName("receiveQuota")
	if !ok || f.Type.Kind() != reflect.Int32 || f.Offset == 0 {
		return 0
	}
	return f.Offset
}()

func receiveQuota(in *mqtt.Inflight) int32 {
	return atomic.LoadInt32((*int32)(unsafe.Add(unsafe.Pointer(in), receiveQuotaOffset)))
}

// onlyHooks reports whether every hook of hooks that takes the event
// (mqtt.OnPublish, say) is one of ours, and one does: calling ours
// directly is then what mochi's chain would do.
func onlyHooks(hooks *mqtt.Hooks, event byte, ours ...mqtt.Hook) bool {
	n := 0
	for _, h := range hooks.GetAll() {
		if h.Provides(event) {
			if !slices.Contains(ours, h) {
				return false
			}
			n++
		}
	}
	return n > 0
}

// publishQoS handles a QoS 1/2 PUBLISH read from cl as mochi's
// processPacket would, if nothing but ferry's hook would see it: true if
// it did, false (nothing done) to leave it to mochi.
func (s *Server) publishQoS(cl *mqtt.Client, pk packets.Packet) bool {
	b := s.broker
	caps := b.Options.Capabilities
	if !s.fastPublish || pk.FixedHeader.Qos == 0 || cl.Net.Inline || pk.FixedHeader.Qos > caps.MaximumQos ||
		pk.Properties.TopicAliasFlag || atomic.LoadInt64(&b.Info.Subscriptions) != 0 {
		return false
	}
	// processPacket's validation, then processPublish's checks, each
	// of which mochi answers in its own way when it fails.
	if pk.PublishValidate(caps.TopicAliasMaximum) != packets.CodeSuccess || !mqtt.IsValidFilter(pk.TopicName, true) ||
		receiveQuota(cl.State.Inflight) == 0 || !s.mochi.hooks.OnACLCheck(cl, pk.TopicName, true) {
		return false
	}
	if cl.State.Inflight.Len() > 0 {
		// A packet id in flight (a QoS 2 retransmission, say), and
		// the resend mochi does after each packet: mochi's.
		return false
	}
	pk.Origin = cl.ID
	pk.Created = time.Now().Unix()
	if expiry := minExpiry(caps.MaximumMessageExpiryInterval, int64(pk.Properties.MessageExpiryInterval)); expiry > 0 {
		pk.Expiry = pk.Created + expiry
	}
	s.hook.OnPublish(cl, pk) // takes over every QoS 1/2 publish (ErrRejectPacket): mochi would do nothing more
	s.mochi.hooks.OnPacketProcessed(cl, pk, nil)
	return true
}

// minExpiry is mochi's minimum: the smaller of two expiries, 0 meaning
// none.
func minExpiry(a, b int64) int64 {
	switch {
	case a == 0:
		return b
	case b != 0 && b < a:
		return b
	}
	return a
}
