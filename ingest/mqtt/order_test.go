package mqtt

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.etcd.io/bbolt"
)

// slowSub is a paho MQTT 5 subscriber that acknowledges a message only
// when the test says so.
type slowSub struct {
	c   *paho.Client
	got chan *paho.Publish
}

// connectSlow connects a persistent session (expiry an hour) with the
// given Receive Maximum; clean starts it anew.
func connectSlow(t *testing.T, b *testBroker, id string, clean bool, recvMax uint16) (*slowSub, *paho.Connack) {
	t.Helper()
	s := &slowSub{got: make(chan *paho.Publish, 1000)}
	expiry := uint32(3600)
	c, ack, err := b.tryConnect(&paho.Connect{ClientID: id, CleanStart: clean,
		Properties: &paho.ConnectProperties{ReceiveMaximum: &recvMax, SessionExpiryInterval: &expiry}},
		func(cc *paho.ClientConfig) {
			cc.EnableManualAcknowledgment = true
			cc.SendAcksInterval = time.Millisecond
			cc.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				s.got <- pr.Packet
				return true, nil
			}}
		})
	if err != nil {
		t.Fatalf("connect %s: %v (connack %+v)", id, err, ack)
	}
	s.c = c
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
	return s, ack
}

// next returns the next message delivered, failing after 10 s.
func (s *slowSub) next(t *testing.T) *paho.Publish {
	t.Helper()
	select {
	case p := <-s.got:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no message in 10 s")
		return nil
	}
}

// expectInOrder expects the messages "from".."to", in that order,
// acknowledging each (ack false: the last one is left unacknowledged).
func (s *slowSub) expectInOrder(t *testing.T, from, to int, ackLast bool) {
	t.Helper()
	for i := from; i <= to; i++ {
		p := s.next(t)
		if string(p.Payload) != fmt.Sprint(i) {
			t.Fatalf("message %d is %q: out of order", i, p.Payload)
		}
		if i < to || ackLast {
			if err := s.c.Ack(p); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// publishBurst publishes "1".."n" to topic at qos from a raw MQTT 5
// client without waiting between them (all within well under a second),
// then completes every flow.
func publishBurst(t *testing.T, b *testBroker, id, topic string, qos byte, n int) {
	t.Helper()
	pub := dialRaw(t, b.addr, 5)
	pub.connect(connectOpts{id: id, clean: true})
	for i := 1; i <= n; i++ {
		pub.publish(topic, []byte(fmt.Sprint(i)), qos, uint16(i), false)
	}
	for done := 0; done < n; {
		switch pk := pub.read(); pk.FixedHeader.Type {
		case packets.Pubrec:
			pub.pubrel(pk.PacketID)
		case packets.Puback, packets.Pubcomp:
			done++
		default:
			t.Fatalf("publisher got packet type %d", pk.FixedHeader.Type)
		}
	}
	pub.c.Close()
}

// A subscriber whose Receive Maximum holds messages back gets them in
// order, for QoS 1 and 2, and so after it reconnects with some in flight
// and the rest waiting: mochi released messages held by the send quota
// (and resent them) ordered by their creation time in seconds, so 50
// published within one second came back shuffled.
func TestReceiveMaximumKeepsOrder(t *testing.T) {
	for _, qos := range []byte{1, 2} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			b := startBroker(t, "", nil)
			id, topic := fmt.Sprintf("slow%d", qos), fmt.Sprintf("ord/%d", qos)
			sub, _ := connectSlow(t, b, id, true, 2)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := sub.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: qos}}}); err != nil {
				t.Fatal(err)
			}
			publishBurst(t, b, "burst"+id, topic, qos, 50)
			sub.expectInOrder(t, 1, 20, false) // 20 left in flight
			// paho sends acknowledgements in batches: all of 1..19 in
			// before leaving, so that 20 is the first resent.
			cl := b.clientByID(t, id)
			waitFor(t, "19 flows to complete", func() bool { return cl.State.Inflight.Len() == 50-19 })
			sub.c.Disconnect(&paho.Disconnect{})

			// The reconnect is a raw client: paho's manual
			// acknowledgements lose a message resent right after the
			// CONNACK (its ack tracker is reset after its reader starts).
			again := dialRaw(t, b.addr, 5)
			if ack := again.connect(connectOpts{id: id, sessionExpiry: 3600, receiveMaximum: 2}); !ack.SessionPresent {
				t.Fatal("session not present")
			}
			expectInOrderRaw(t, again, 20, 50)
		})
	}
}

// expectInOrderRaw reads the messages "from".."to" on rc, in that order,
// completing each flow as it comes (PUBACK, or PUBREC and then PUBCOMP
// for the PUBREL).
func expectInOrderRaw(t *testing.T, rc *rawClient, from, to int) {
	t.Helper()
	for i := from; i <= to; {
		pk := rc.read()
		switch pk.FixedHeader.Type {
		case packets.Publish:
			if string(pk.Payload) != fmt.Sprint(i) {
				t.Fatalf("message %d is %q: out of order", i, pk.Payload)
			}
			i++
			if pk.FixedHeader.Qos == 1 {
				rc.puback(pk.PacketID)
			} else {
				rc.pubrec(pk.PacketID)
			}
		case packets.Pubrel:
			rc.pubcomp(pk.PacketID)
		default:
			t.Fatalf("packet type %d while waiting for message %d", pk.FixedHeader.Type, i)
		}
	}
}

// A message published to a resumed session between its CONNACK and the
// resend of what was queued for it comes after the queued ones, for QoS 1
// and 2: the publisher's order on a topic holds across the reconnect
// (MQTT 5 4.6). Each publish's acknowledgement comes after its delivery to
// subscribers, so the hook, which holds the resend until then, makes the
// live message arrive in that window every time.
func TestLiveMessageDuringResendKeepsOrder(t *testing.T) {
	for _, qos := range []byte{1, 2} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) { publishDuringResume(t, "acked", qos) })
	}
}

// A message published to a resuming session while mochi takes the old
// client over (after it copied the old client's in-flight messages, before
// the new client is found by publishes) lands on the old client, where
// nothing sent it: it was lost from memory. It is delivered, in order.
func TestPublishDuringTakeOverKept(t *testing.T) {
	for _, qos := range []byte{1, 2} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) { publishDuringResume(t, "inherited", qos) })
	}
}

// publishDuringResume queues messages 1..5 for an offline session, then
// has the publisher publish 6 at the given point of the session's
// resuming connection's establishment, and expects 1..6 in order.
func publishDuringResume(t *testing.T, point string, qos byte) {
	b := startBroker(t, "", nil)
	id, topic := fmt.Sprintf("win%d", qos), fmt.Sprintf("win/%d", qos)
	sub, _ := connectSlow(t, b, id, true, 100)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := sub.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: qos}}}); err != nil {
		t.Fatal(err)
	}
	sub.c.Disconnect(&paho.Disconnect{})
	b.awaitClosed(t, id)

	pub := dialRaw(t, b.addr, 5)
	pub.connect(connectOpts{id: "pub" + id, clean: true})
	const queued = 5
	for i := 1; i <= queued; i++ {
		pub.publish(topic, []byte(fmt.Sprint(i)), qos, uint16(i), false)
		if qos == 2 {
			pub.pubrel(pub.expect(packets.Pubrec).PacketID)
			pub.expect(packets.Pubcomp)
		} else {
			pub.expect(packets.Puback)
		}
	}

	live := make(chan error, 1)
	hook := func(at string, cl *mqtt.Client) {
		if at != point || cl.ID != id {
			return
		}
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}, ProtocolVersion: 5,
			TopicName: topic, Payload: []byte(fmt.Sprint(queued + 1)), PacketID: queued + 1}
		var buf bytes.Buffer
		pk.PublishEncode(&buf)
		if _, err := pub.c.Write(buf.Bytes()); err != nil {
			live <- err
			return
		}
		ack, err := pub.tryRead(10 * time.Second) // sent once the message is delivered
		if err == nil && ack.PacketID != queued+1 {
			err = fmt.Errorf("acknowledgement %+v", ack)
		}
		live <- err
	}
	b.srv.establishHook.Store(&hook)

	again := dialRaw(t, b.addr, 5) // raw: see TestReceiveMaximumKeepsOrder
	if ack := again.connect(connectOpts{id: id, sessionExpiry: 3600, receiveMaximum: 100}); !ack.SessionPresent {
		t.Fatal("session not present")
	}
	if err := <-live; err != nil {
		t.Fatalf("live publish: %v", err)
	}
	expectInOrderRaw(t, again, 1, queued+1)
}

// A resumed session's QoS 2 flow waiting for its PUBCOMP counts against
// the client's Receive Maximum: its PUBREL is resent first, and the next
// queued message waits for the PUBCOMP, then the rest follow in order.
// ferry sent the queue's head at once beside the resent PUBREL, two
// flows for a client that allows one.
func TestResumedPubrelCountsAgainstReceiveMaximum(t *testing.T) {
	b := startBroker(t, "", nil)
	opts := connectOpts{id: "rel", clean: true, sessionExpiry: 3600, receiveMaximum: 1}
	sub := dialRaw(t, b.addr, 5)
	sub.connect(opts)
	sub.subscribe("rel/t", 2, 1)
	publishBurst(t, b, "relpub", "rel/t", 2, 3)
	pk := sub.expect(packets.Publish)
	if string(pk.Payload) != "1" {
		t.Fatalf("first message %q", pk.Payload)
	}
	sub.pubrec(pk.PacketID)
	rel := sub.expect(packets.Pubrel)
	sub.c.Close() // no PUBCOMP
	b.awaitClosed(t, "rel")

	again := dialRaw(t, b.addr, 5)
	opts.clean = false
	if ack := again.connect(opts); !ack.SessionPresent {
		t.Fatal("session not present")
	}
	if got := again.expect(packets.Pubrel); got.PacketID != rel.PacketID {
		t.Fatalf("PUBREL for %d, want %d", got.PacketID, rel.PacketID)
	}
	if got, err := again.tryRead(300 * time.Millisecond); err == nil {
		t.Fatalf("packet type %d (%q) sent while the client's one flow waits for its PUBCOMP", got.FixedHeader.Type, got.Payload)
	}
	again.pubcomp(rel.PacketID)
	for _, want := range []string{"2", "3"} {
		pk := again.expect(packets.Publish)
		if string(pk.Payload) != want {
			t.Fatalf("got %q, want %q", pk.Payload, want)
		}
		again.pubrec(pk.PacketID)
		again.expect(packets.Pubrel)
		again.pubcomp(pk.PacketID)
	}
}

// publishQoS1 publishes payload to topic at QoS 1 from pub (id) and waits
// for its PUBACK; expiry > 0 sets its MQTT 5 message expiry interval.
func publishQoS1(t *testing.T, pub *rawClient, topic string, payload []byte, id uint16, expiry uint32) {
	t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: 5,
		TopicName: topic, Payload: payload, PacketID: id}
	pk.Properties.MessageExpiryInterval = expiry
	pub.send(pk, (*packets.Packet).PublishEncode)
	pub.expect(packets.Puback)
}

// expectPayload reads the next packet, a PUBLISH of want, and
// acknowledges it.
func (rc *rawClient) expectPayload(want string) {
	rc.t.Helper()
	pk := rc.expect(packets.Publish)
	if string(pk.Payload) != want {
		rc.t.Fatalf("got %q, want %q", pk.Payload, want)
	}
	rc.puback(pk.PacketID)
}

// A QoS 1 message larger than the subscriber's Maximum Packet Size is
// discarded as if it had been sent [MQTT-3.1.2-25], counted, and the
// queue goes on: live, with Receive Maximum 1, and for a persistent
// session resumed with such a message queued. ferry counted the message
// it could not write against the Receive Maximum forever (nothing more
// was delivered) and a resume with one queued failed every time.
func TestOversizedMessageSkipped(t *testing.T) {
	b := startBroker(t, "", nil)
	opts := connectOpts{id: "tiny", clean: true, sessionExpiry: 3600, receiveMaximum: 1, maxPacketSize: 64}
	sub := dialRaw(t, b.addr, 5)
	sub.connect(opts)
	sub.subscribe("tiny/t", 1, 1)
	pub := dialRaw(t, b.addr, 5)
	pub.connect(connectOpts{id: "tiny-pub", clean: true})
	big := bytes.Repeat([]byte("x"), 200)

	publishQoS1(t, pub, "tiny/t", big, 1, 0)
	publishQoS1(t, pub, "tiny/t", []byte("small"), 2, 0)
	sub.expectPayload("small")
	if got := testutilToFloat(b.srv.metrics.tooLarge); got != 1 {
		t.Errorf("queued messages dropped as too large: %v, want 1", got)
	}

	sub.c.Close()
	b.awaitClosed(t, "tiny")
	publishQoS1(t, pub, "tiny/t", big, 3, 0)
	publishQoS1(t, pub, "tiny/t", []byte("small again"), 4, 0)
	again := dialRaw(t, b.addr, 5)
	opts.clean = false
	if ack := again.connect(opts); !ack.SessionPresent || ack.ReasonCode != 0 {
		t.Fatalf("CONNACK session present %v, reason %#x", ack.SessionPresent, ack.ReasonCode)
	}
	again.expectPayload("small again")
	if got := testutilToFloat(b.srv.metrics.tooLarge); got != 2 {
		t.Errorf("queued messages dropped as too large: %v, want 2", got)
	}
	cl := b.clientByID(t, "tiny")
	waitFor(t, "every flow to complete", func() bool { return cl.State.Inflight.Len() == 0 })
}

// A message sent and not yet acknowledged does not expire: its flow goes
// on (MQTT 5 message expiry is for messages not yet sent), and it counts
// against the client's Receive Maximum until its PUBACK. ferry's expiry
// freed its place, and the next message went to a client holding one
// unacknowledged message with a Receive Maximum of 1.
func TestSentMessageDoesNotExpire(t *testing.T) {
	b := startBroker(t, "", nil)
	sub := dialRaw(t, b.addr, 5)
	sub.connect(connectOpts{id: "hold", clean: true, receiveMaximum: 1})
	sub.subscribe("hold/t", 1, 1)
	pub := dialRaw(t, b.addr, 5)
	pub.connect(connectOpts{id: "hold-pub", clean: true})
	publishQoS1(t, pub, "hold/t", []byte("1"), 1, 1)
	publishQoS1(t, pub, "hold/t", []byte("2"), 2, 0)

	first := sub.expect(packets.Publish)
	if string(first.Payload) != "1" {
		t.Fatalf("first message %q", first.Payload)
	}
	cl := b.clientByID(t, "hold")
	held, ok := cl.State.Inflight.Get(first.PacketID)
	if !ok || held.Expiry == 0 {
		t.Fatalf("message 1 in flight %v, expiry %d", ok, held.Expiry)
	}
	waitFor(t, "message 1's expiry to pass", func() bool { return time.Now().Unix() > held.Expiry })
	b.srv.sweep(time.Now().Unix()) // the once-a-second sweep, at least once past the expiry
	if got, err := sub.tryRead(300 * time.Millisecond); err == nil {
		t.Fatalf("packet type %d (%q) sent while the client's one flow waits for its PUBACK", got.FixedHeader.Type, got.Payload)
	}
	if _, ok := cl.State.Inflight.Get(first.PacketID); !ok {
		t.Fatal("message 1, sent, expired before its PUBACK")
	}
	sub.puback(first.PacketID)
	sub.expectPayload("2")
	waitFor(t, "every flow to complete", func() bool { return cl.State.Inflight.Len() == 0 })
}

// sendUnacked connects id (a persistent session, Receive Maximum 1),
// subscribes it to topic, publishes "1" there with a 1 s expiry and
// further messages payload → expiry, and has the client receive "1",
// leave it unacknowledged and disconnect. It returns "1" as delivered.
func sendUnacked(t *testing.T, b *testBroker, id, topic string, more ...struct {
	payload string
	expiry  uint32
}) packets.Packet {
	t.Helper()
	sub := dialRaw(t, b.addr, 5)
	sub.connect(connectOpts{id: id, clean: true, sessionExpiry: 3600, receiveMaximum: 1})
	sub.subscribe(topic, 1, 1)
	pub := dialRaw(t, b.addr, 5)
	pub.connect(connectOpts{id: id + "-pub", clean: true})
	publishQoS1(t, pub, topic, []byte("1"), 1, 1)
	for i, m := range more {
		publishQoS1(t, pub, topic, []byte(m.payload), uint16(i+2), m.expiry)
	}
	first := sub.expect(packets.Publish)
	if string(first.Payload) != "1" || first.Properties.MessageExpiryInterval != 1 {
		t.Fatalf("first message %q, expiry interval %d", first.Payload, first.Properties.MessageExpiryInterval)
	}
	sub.c.Close()
	b.awaitClosed(t, id)
	return first
}

// sweepPast waits until expiry (unix seconds) has passed and runs the
// once-a-second expiry sweep.
func sweepPast(t *testing.T, b *testBroker, expiry int64) {
	t.Helper()
	waitFor(t, "the message expiry to pass", func() bool { return time.Now().Unix() > expiry })
	b.srv.sweep(time.Now().Unix())
}

// resumeExpectResent reconnects id's session and expects first, resent
// with DUP, and acknowledges it.
func resumeExpectResent(t *testing.T, b *testBroker, id string, first packets.Packet) *rawClient {
	t.Helper()
	again := dialRaw(t, b.addr, 5)
	if ack := again.connect(connectOpts{id: id, sessionExpiry: 3600, receiveMaximum: 1}); !ack.SessionPresent {
		t.Fatal("session not present")
	}
	got, err := again.tryRead(5 * time.Second)
	if err != nil || got.FixedHeader.Type != packets.Publish {
		t.Fatalf("no message resent (packet type %d, %v): the one sent and unacknowledged expired", got.FixedHeader.Type, err)
	}
	if string(got.Payload) != "1" || !got.FixedHeader.Dup || got.PacketID != first.PacketID {
		t.Fatalf("resent %q DUP %v id %d, want \"1\" DUP true id %d", got.Payload, got.FixedHeader.Dup, got.PacketID, first.PacketID)
	}
	again.puback(got.PacketID)
	return again
}

// A message whose onward delivery started (its PUBLISH sent, not yet
// acknowledged) does not expire when its client disconnects: its flow
// completes, resent with DUP on the next connection [MQTT-3.3.2-5]. ferry
// forgot what it had sent when the connection ended, and the sweep (or
// the resume) dropped the message as expired.
func TestSentMessageResentAfterExpiry(t *testing.T) {
	b := startBroker(t, "", nil)
	first := sendUnacked(t, b, "resend", "resend/t")
	held, ok := b.clientByID(t, "resend").State.Inflight.Get(first.PacketID)
	if !ok || held.Expiry == 0 {
		t.Fatalf("message 1 in flight %v, expiry %d", ok, held.Expiry)
	}
	sweepPast(t, b, held.Expiry)
	resumeExpectResent(t, b, "resend", first)
	cl := b.clientByID(t, "resend")
	waitFor(t, "the flow to complete", func() bool { return cl.State.Inflight.Len() == 0 })
}

// So across a restart of the server, graceful or a crash (the store as a
// kill -9 would leave it: its last committed state, copied while the
// server runs): the mark that delivery started is stored with the
// message. Restored without it, the message expired.
func TestSentMessageResentAfterRestartAndExpiry(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(map[bool]string{false: "graceful", true: "crash"}[crash], func(t *testing.T) {
			dir := t.TempDir()
			a := startBroker(t, dir, nil)
			first := sendUnacked(t, a, "resend-r", "resend/r")
			held, ok := a.clientByID(t, "resend-r").State.Inflight.Get(first.PacketID)
			if !ok || held.Expiry == 0 {
				t.Fatalf("message 1 in flight %v, expiry %d", ok, held.Expiry)
			}
			dir = stopOrCrash(t, a, dir, crash)

			b := startBroker(t, dir, nil)
			sweepPast(t, b, held.Expiry)
			resumeExpectResent(t, b, "resend-r", first)
			cl := b.clientByID(t, "resend-r")
			waitFor(t, "the flow to complete", func() bool { return cl.State.Inflight.Len() == 0 })
		})
	}
}

// Only the message sent is kept: one queued behind it and never sent
// still expires, and one that has not expired is delivered with what
// remains of its expiry interval [MQTT-3.3.2-6].
func TestUnsentMessageStillExpires(t *testing.T) {
	b := startBroker(t, "", nil)
	first := sendUnacked(t, b, "resend-q", "resend/q",
		struct {
			payload string
			expiry  uint32
		}{"2", 1},
		struct {
			payload string
			expiry  uint32
		}{"3", 60})
	cl := b.clientByID(t, "resend-q")
	held, _ := cl.State.Inflight.Get(first.PacketID)
	sweepPast(t, b, held.Expiry)
	waitFor(t, "message 2 to expire", func() bool { return cl.State.Inflight.Len() == 2 })
	again := resumeExpectResent(t, b, "resend-q", first)
	got := again.expect(packets.Publish)
	if string(got.Payload) != "3" {
		t.Fatalf("got %q after the resent message, want \"3\" (\"2\" expired unsent)", got.Payload)
	}
	if iv := got.Properties.MessageExpiryInterval; iv == 0 || iv >= 60 {
		t.Fatalf("message 3's expiry interval %d, want what remains of 60 s", iv)
	}
}

// A QoS 2 flow whose PUBREC came goes on with the PUBREL after a restart
// of the server, graceful or a crash, whatever the message's expiry: the
// PUBREC is stored before the PUBREL is sent. ferry restored the PUBLISH
// and sent it again, which a client done with that packet id takes for a
// new message.
func TestReleasedQoS2FlowResumesWithPubrelAfterRestart(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(map[bool]string{false: "graceful", true: "crash"}[crash], func(t *testing.T) {
			dir := t.TempDir()
			a := startBroker(t, dir, nil)
			opts := connectOpts{id: "rel-r", clean: true, sessionExpiry: 3600, receiveMaximum: 1}
			sub := dialRaw(t, a.addr, 5)
			sub.connect(opts)
			sub.subscribe("rel/r", 2, 1)
			pub := dialRaw(t, a.addr, 5)
			pub.connect(connectOpts{id: "rel-r-pub", clean: true})
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, ProtocolVersion: 5,
				TopicName: "rel/r", Payload: []byte("1"), PacketID: 1}
			pk.Properties.MessageExpiryInterval = 1
			pub.send(pk, (*packets.Packet).PublishEncode)
			pub.pubrel(pub.expect(packets.Pubrec).PacketID)
			pub.expect(packets.Pubcomp)

			got := sub.expect(packets.Publish)
			sub.pubrec(got.PacketID)
			sub.expect(packets.Pubrel)
			sub.c.Close() // no PUBCOMP
			a.awaitClosed(t, "rel-r")
			dir = stopOrCrash(t, a, dir, crash)

			b := startBroker(t, dir, nil)
			sweepPast(t, b, time.Now().Unix()+1)
			again := dialRaw(t, b.addr, 5)
			opts.clean = false
			if ack := again.connect(opts); !ack.SessionPresent {
				t.Fatal("session not present")
			}
			rel, err := again.tryRead(5 * time.Second)
			if err != nil || rel.FixedHeader.Type != packets.Pubrel || rel.PacketID != got.PacketID {
				t.Fatalf("got packet type %d id %d (%v), want PUBREL %d", rel.FixedHeader.Type, rel.PacketID, err, got.PacketID)
			}
			again.pubcomp(rel.PacketID)
			cl := b.clientByID(t, "rel-r")
			waitFor(t, "the flow to complete", func() bool { return cl.State.Inflight.Len() == 0 })
			waitFor(t, "the message's record to be deleted", func() bool {
				stored := 0
				b.srv.sess.db.View(func(tx *bbolt.Tx) error {
					if q := tx.Bucket(bucketQueues).Bucket([]byte("rel-r")); q != nil {
						stored = q.Stats().KeyN
					}
					return nil
				})
				return stored == 0
			})
		})
	}
}

// stopOrCrash ends broker a, on dir: a graceful stop, or for crash the
// state a kill -9 would leave (a copy of its session store taken while it
// runs). It returns the directory the next broker starts on.
func stopOrCrash(t *testing.T, a *testBroker, dir string, crash bool) string {
	t.Helper()
	if !crash {
		a.stop(t, nil)
		return dir
	}
	copyDir := t.TempDir()
	err := a.srv.sess.db.View(func(tx *bbolt.Tx) error {
		return tx.CopyFile(filepath.Join(copyDir, "mqtt-sessions.db"), 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return copyDir
}
