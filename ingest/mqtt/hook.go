package mqtt

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	flog "ferry/log"
)

// errReject tells mochi a publish is taken care of (boxed once: returning
// the packets.Code itself as an error allocates on every publish).
var errReject error = packets.ErrRejectPacket

// hook is ferry's extension of the broker: authentication and ACLs through
// the Authenticator, and every publish appended to the log.
type hook struct {
	mqtt.HookBase
	s *Server
}

func (h *hook) ID() string { return "ferry" }

func (h *hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnSessionEstablish, mqtt.OnSessionEstablished,
		mqtt.OnDisconnect, mqtt.OnPublish, mqtt.OnClientExpired, mqtt.OnPacketRead, mqtt.OnWillSent, mqtt.OnPacketEncode:
		return true
	}
	return false
}

// OnConnect authenticates the client. A refusal is answered here with the
// CONNACK reason that says why, and the error ends the connection.
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	s := h.s
	if pc, ok := cl.Net.Conn.(*preConn); ok {
		pc.connected.Store(true) // what ends the connection now is counted here or later, not by the listener
		if cl.Properties.ProtocolVersion == 5 {
			pc.client.Store(cl)
		}
	}
	if s.closing.Load() {
		return packets.ErrServerShuttingDown // no new client while Close drains them (server.go)
	}
	username := string(pk.Connect.Username)
	device := username
	if device == "" {
		device = cl.ID
	}
	if s.opts.Auth != nil {
		var err error
		code, result := packets.Code{}, ""
		switch {
		case !validIdentity(pk.Connect.ClientIdentifier):
			// Refused before any credential is checked (no bcrypt run
			// for it): see validIdentity.
			code, result = packets.ErrClientIdentifierNotValid, "bad_client_id"
		case !validIdentity(username):
			code, result = packets.ErrBadUsernameOrPassword, "bad_username"
		}
		if result == "" {
			device, err = s.opts.Auth.Authenticate(username, pk.Connect.Password, peerCN(cl.Net.Conn))
		}
		switch {
		case result != "":
		case errors.Is(err, ErrNotAuthorized):
			code, result = packets.ErrNotAuthorized, "not_authorized"
		case err != nil:
			code, result = packets.ErrBadUsernameOrPassword, "bad_credentials"
		case pk.Connect.ClientIdentifier != "" && pk.Connect.ClientIdentifier != device:
			// A device may only use its own id as client id: another
			// client id could take over someone else's session.
			code, result = packets.ErrClientIdentifierNotValid, "bad_client_id"
		case pk.Connect.WillFlag && !s.opts.Auth.CanPublish(device, pk.Connect.WillTopic):
			// The will is published on the device's behalf: its ACL
			// applies, checked now since the will cannot be refused later.
			code, result = packets.ErrNotAuthorized, "not_authorized"
		}
		if result != "" {
			s.metrics.connects.WithLabelValues(result).Inc()
			s.logger.Info("mqtt: connection refused", "client", pk.Connect.ClientIdentifier, "username", username,
				"remote", cl.Net.Remote, "reason", code.Reason)
			s.broker.SendConnack(cl, connackCode(cl, code), false, nil)
			return code
		}
	}
	// No outbound topic aliases (the spec leaves them to the server): a
	// queued or in-flight message then always carries its topic name, as
	// it must when resent on a new connection, whose aliases start empty.
	cl.Properties.Props.TopicAliasMaximum = 0
	cl.State.TopicAliases.Outbound = mqtt.NewOutboundTopicAliases(0)
	s.conns.Store(cl, newConn(s, cl, device, username))
	return nil
}

// validIdentity reports whether a client id or user name may name a
// device ("" is no name): the device registry's id rule (devices.ValidateID)
// without its length. A device id is substituted for "{device}" in ACL
// filters, so a name with '+', '#' or '/' would widen them, one starting
// with '$' would reach $ topics, and NUL or invalid UTF-8 is no MQTT string.
func validIdentity(s string) bool {
	return s == "" || (utf8.ValidString(s) && !strings.ContainsAny(s, "/+#\x00") && s[0] != '$')
}

// validTopicName reports whether t is a topic name MQTT allows: UTF-8
// without U+0000 or wildcards ([MQTT-1.5.4-1], [MQTT-1.5.4-2],
// [MQTT-3.3.2-2]). mochi's decoder checks this for clients; the bridge's
// paho does not.
func validTopicName(t string) bool {
	return t != "" && utf8.ValidString(t) && !strings.ContainsAny(t, "+#\x00")
}

// connackCode gives MQTT 3.1.1 clients their own return codes: mochi maps
// "bad user name or password" to 3.1.1's "not authorized" and leaves
// "not authorized" unmapped.
func connackCode(cl *mqtt.Client, code packets.Code) packets.Code {
	if cl.Properties.ProtocolVersion >= 5 {
		return code
	}
	switch code {
	case packets.ErrBadUsernameOrPassword:
		return packets.ErrMalformedUsernameOrPassword // 0x04, "bad user name or password" in 3.1.1
	case packets.ErrNotAuthorized:
		return packets.Err3NotAuthorized
	case packets.ErrClientIdentifierNotValid:
		return packets.Err3ClientIdentifierNotValid
	}
	return code
}

func peerCN(c net.Conn) string {
	if pc, ok := c.(*preConn); ok {
		c = pc.Conn
	}
	tc, ok := c.(*tls.Conn)
	if !ok {
		return ""
	}
	st := tc.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return ""
	}
	return st.PeerCertificates[0].Subject.CommonName
}

// OnPacketRead lets a QoS 2 retransmission through to OnPublish. A client
// that did not receive its PUBREC resends the PUBLISH with DUP; the spec
// wants PUBREC again, but mochi answers "packet identifier in use" when it
// holds the PUBREC. Dropping that inflight entry hands the retransmission
// to OnPublish, whose dedupe recognises it and acknowledges it again
// without storing it twice.
//
// A PUBREL (or that retransmission) ends a QoS 2 flow's count against
// Receive Maximum.
func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	h.packetRead(cl, &pk)
	return pk, nil
}

// packetRead is OnPacketRead's work, on the packet in place
// (Server.packetRead calls it directly).
func (h *hook) packetRead(cl *mqtt.Client, pk *packets.Packet) {
	switch {
	case pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Qos == 2 && pk.FixedHeader.Dup:
		if pki, ok := cl.State.Inflight.Get(pk.PacketID); ok && pki.FixedHeader.Type == packets.Pubrec {
			cl.State.Inflight.Delete(pk.PacketID)
			if c := h.s.conn(cl); c != nil {
				c.released()
			}
		}
	case pk.FixedHeader.Type == packets.Pubrel:
		if pki, ok := cl.State.Inflight.Get(pk.PacketID); ok && pki.FixedHeader.Type == packets.Pubrec {
			if c := h.s.conn(cl); c != nil {
				c.released()
			}
		}
	}
}

// OnPacketEncode tells an MQTT 5 client in its CONNACK the largest packet
// ferry accepts [MQTT-3.2.2.3.6], which mochi leaves out: a client that
// knows it can refuse to send a larger one instead of being disconnected.
func (h *hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Connack && pk.ReasonCode < packets.ErrUnspecifiedError.Code {
		pk.Properties.MaximumPacketSize = h.s.opts.MaxPacketSize
	}
	return pk
}

// OnConnectAuthenticate accepts what OnConnect let through.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	_, ok := h.s.conns.Load(cl)
	return ok
}

// OnSessionEstablish counts the accepted connection (before its CONNACK);
// a clean start drops the old session, a resuming one is marked so that a
// publish mochi gives the old client meanwhile is kept (sessions.stray).
func (h *hook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	h.s.metrics.connects.WithLabelValues("accepted").Inc()
	if pk.Connect.Clean {
		h.s.sess.forget(cl.ID)
	} else {
		h.s.sess.resuming(cl.ID)
	}
}

// OnSessionEstablished: a clean start begins a new session, whose packet
// ids owe nothing to the old one's.
func (h *hook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	s := h.s
	if pk.Connect.Clean {
		s.dedupe.forget(cl.ID)
	}
	c := s.conn(cl)
	if c == nil {
		return
	}
	c.countUnreleased()
	now := s.opts.Now()
	if s.opts.Presence != nil {
		s.opts.Presence.Connected(c.device, cl.Net.Remote, now)
	}
	s.presenceEvent("connect", c, now, "")
}

// OnDisconnect forgets the connection; its queued acknowledgements are
// abandoned (the client retransmits them). When the session ends with the
// connection, so does its retransmission memory.
func (h *hook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	s := h.s
	s.metrics.disconnects.WithLabelValues(disconnectReason(err)).Inc()
	v, ok := s.conns.LoadAndDelete(cl)
	if expire && !cl.IsTakenOver() {
		s.dedupe.forget(cl.ID)
	}
	if !ok {
		return
	}
	c := v.(*conn)
	c.cancel()
	now := s.opts.Now()
	if s.opts.Presence != nil {
		s.opts.Presence.Disconnected(c.device, now)
	}
	reason := ""
	if err != nil {
		reason = err.Error()
	}
	s.presenceEvent("disconnect", c, now, reason)
}

// OnWillSent ingests a last will the broker has just published for a
// client that went away, like any QoS 0 publish of it (the will's ACL was
// checked at CONNECT).
func (h *hook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	s := h.s
	info := publishInfo{Topic: pk.TopicName, Payload: pk.Payload, QoS: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain,
		ClientID: cl.ID, Username: string(cl.Properties.Username), Device: s.deviceOf(cl)}
	if cl.Properties.ProtocolVersion == 5 {
		info.V5, info.Props = true, propsOf(&pk.Properties)
	}
	if _, _, _, err := s.ingest(&info, nil); err != nil {
		s.logger.Warn("mqtt: will not stored", "client", cl.ID, "topic", pk.TopicName, "err", err)
	}
}

// OnClientExpired: a persistent session expired.
func (h *hook) OnClientExpired(cl *mqtt.Client) { h.s.dedupe.forget(cl.ID) }

func disconnectReason(err error) string {
	var code packets.Code
	var ne net.Error
	switch {
	case err == nil:
		return "normal"
	case errors.As(err, &code):
		return code.Reason
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return "closed"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "network error"
}

// OnACLCheck answers for subscriptions and deliveries; publishes are
// checked in OnPublish, which can then answer the way each protocol
// version allows.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write || h.s.opts.Auth == nil {
		return true
	}
	// mochi asks at SUBSCRIBE (with the filter) and again before each
	// delivery (with the topic, Server.publishToClient), so an ACL narrowed
	// or a device disabled meanwhile stops what it receives at once.
	if h.s.opts.Auth.CanSubscribe(h.s.deviceOf(cl), topic) {
		return true
	}
	h.s.metrics.subDenied.Inc()
	h.s.logger.Debug("mqtt: subscribe ACL refused", "client", cl.ID, "topic", topic)
	return false
}

func (s *Server) conn(cl *mqtt.Client) *conn {
	v, ok := s.conns.Load(cl)
	if !ok {
		return nil
	}
	return v.(*conn)
}

// deviceOf is the device behind a client; a session restored from the
// store whose client is not connected is its client id.
func (s *Server) deviceOf(cl *mqtt.Client) string {
	if c := s.conn(cl); c != nil {
		return c.device
	}
	return cl.ID
}

// OnPublish appends the publish to the log. QoS 0 goes on to subscribers
// through the broker as usual. QoS 1 and 2 are taken over: delivered to
// subscribers here, and acknowledged by the connection's drain once
// durable; the broker is told to do nothing more (ErrRejectPacket).
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil // our own re-injection for delivery (or an inline publish)
	}
	s := h.s
	s.pubMu.RLock()
	defer s.pubMu.RUnlock()
	qos := pk.FixedHeader.Qos
	c := s.conn(cl)
	if c == nil || s.closing.Load() {
		s.metrics.publish(qos, resultRejected)
		if qos == 0 {
			s.metrics.drop(dropNotStored)
		}
		if qos > 0 && c != nil && c.v5 {
			c.enqueue(pendingAck{id: pk.PacketID, qos: qos, code: packets.ErrServerShuttingDown})
		}
		return pk, errReject
	}
	if s.opts.Auth != nil && !s.opts.Auth.CanPublish(c.device, pk.TopicName) {
		s.metrics.publish(qos, resultNotAuthorized)
		if qos == 0 || !c.v5 {
			s.metrics.drop(dropNotAuthorized)
		}
		if qos > 0 {
			// MQTT 5 is told; MQTT 3.1.1 has no way to say it, and gets
			// the positive acknowledgement its spec asks for, the message
			// dropped.
			code := packets.ErrNotAuthorized
			if !c.v5 {
				code = packets.QosCodes[qos]
			}
			c.enqueue(pendingAck{id: pk.PacketID, qos: qos, code: code})
		}
		return pk, errReject
	}
	if s.opts.Auth != nil && !s.opts.Auth.Allow(c.device) {
		s.metrics.publish(qos, resultRateLimited)
		if qos == 0 {
			s.metrics.drop(dropRateLimited)
			return pk, errReject
		}
		if c.v5 {
			c.enqueue(pendingAck{id: pk.PacketID, qos: qos, code: packets.ErrQuotaExceeded})
			return pk, errReject
		}
		// MQTT 3.1.1 cannot be told "quota exceeded", and an
		// acknowledged message must not be dropped: take it; the
		// limit is applied as a pause in reading instead.
		s.pauseForRate(c)
	}
	var hash uint64
	if qos > 0 {
		hash = contentHash(pk.TopicName, pk.Payload)
		if pk.FixedHeader.Dup {
			// The original may still be queued for its commit (sent on
			// a connection this one took over): let it be remembered.
			s.settle(c, &pk)
			if st, ok := s.dedupe.lookup(cl.ID, pk.PacketID, hash); ok {
				s.metrics.publish(qos, resultDuplicate)
				c.enqueue(pendingAck{id: pk.PacketID, qos: qos, code: packets.QosCodes[qos], part: st.part, offset: st.offset, appended: time.Now()})
				return pk, errReject
			}
		}
	}
	g, seq, code, err := s.queuePublish(c, &pk, hash)
	if err != nil {
		s.logger.Warn("mqtt: publish not stored", "client", cl.ID, "topic", pk.TopicName, "err", err)
		if qos == 0 {
			s.metrics.drop(dropNotStored)
			return pk, errReject
		}
		if c.v5 {
			c.enqueue(pendingAck{id: pk.PacketID, qos: qos, code: code})
		} else {
			// No way to refuse under 3.1.1 but closing: the client
			// retransmits later.
			s.broker.DisconnectClient(cl, code)
		}
		return pk, errReject
	}
	if qos == 0 {
		return pk, nil
	}
	s.deliver(c.inlineClient(), pk)
	a := pendingAck{id: pk.PacketID, qos: qos, code: packets.QosCodes[qos], appended: time.Now()}
	if g != nil {
		a.g, a.seq = g, seq
	}
	c.enqueue(a)
	return pk, errReject
}

// pauseForRate waits, reading nothing more from the client, until its
// device is within its rate again (or the connection ends).
func (s *Server) pauseForRate(c *conn) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !s.opts.Auth.Allow(c.device) {
		select {
		case <-t.C:
		case <-c.ctx.Done():
			return
		}
	}
}

// deliver hands a QoS 1/2 publish to the broker for subscribers and the
// retained store, as the broker would have had it not been taken over. from
// is an inline client with the publisher's client id, so MQTT 5 No Local
// subscriptions of the publisher itself are honoured.
func (s *Server) deliver(from *mqtt.Client, pk packets.Packet) {
	if !pk.FixedHeader.Retain && atomic.LoadInt64(&s.broker.Info.Subscriptions) == 0 {
		return // nobody to deliver to: the usual case of an ingest gateway
	}
	out := pk.Copy(false)      // what a subscriber may see of it
	out.PacketID = pk.PacketID // validated on injection; each delivery gets its own
	out.Properties.TopicAlias, out.Properties.TopicAliasFlag = 0, false
	if err := s.broker.InjectPacket(from, out); err != nil {
		s.logger.Warn("mqtt: delivering to subscribers failed", "topic", pk.TopicName, "err", err)
	}
}

// publishInfo is what a client's publish is stored as.
func (c *conn) publishInfo(pk *packets.Packet) publishInfo {
	info := publishInfo{Topic: pk.TopicName, Payload: pk.Payload, QoS: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain,
		ClientID: c.cl.ID, Username: c.username, Device: c.device, PacketID: pk.PacketID}
	if c.v5 {
		info.V5, info.Props = true, propsOf(&pk.Properties)
	}
	return info
}

// queuePublish maps a client's publish to its record and queues it with
// its partition's group (group.go), which appends it and, for QoS 1/2,
// makes the connection's acknowledgement wait for its commit. It returns a
// nil group when the publish matches no rule (and is dropped), and on
// error the MQTT 5 reason code to answer with.
func (s *Server) queuePublish(c *conn, pk *packets.Packet, hash uint64) (*group, uint64, packets.Code, error) {
	info := c.publishInfo(pk)
	it := groupItem{id: pk.PacketID, hash: hash}
	if info.QoS > 0 {
		it.c = c
	}
	return s.queue(&info, &c.scratch, it)
}

// settle waits until the group a publish goes to has committed what is
// queued (a retransmission's original is then in the dedupe memory).
func (s *Server) settle(c *conn, pk *packets.Packet) {
	info := c.publishInfo(pk)
	if _, part, err := s.target(&info, &c.scratch); err == nil && part != nil {
		s.group(part).settle(c.ctx)
	}
}

// queue routes a publish to its rule, builds its record and queues it with
// its partition's group, counting it if it matches no rule or cannot be
// routed (the commit counts the rest).
func (s *Server) queue(info *publishInfo, sc *recordScratch, it groupItem) (*group, uint64, packets.Code, error) {
	rec, part, err := s.target(info, sc)
	switch {
	case err != nil:
		s.metrics.publish(info.QoS, resultError)
		return nil, 0, packets.ErrImplementationSpecificError, err
	case part == nil:
		s.metrics.publish(info.QoS, resultUnmatched)
		s.metrics.drop(dropUnmatched)
		return nil, 0, packets.Code{}, nil
	}
	g := s.group(part)
	it.qos, it.client, it.device = info.QoS, info.ClientID, info.Device
	return g, g.add(rec, it), packets.Code{}, nil
}

// ingest stores a publish and returns once it is appended (not
// necessarily durable): its partition (nil when it matches no rule) and
// offset, and on error the MQTT 5 reason code to answer with. It is for
// wills and the bridge; a client's publishes are queued (queuePublish).
func (s *Server) ingest(info *publishInfo, sc *recordScratch) (*flog.Partition, flog.AppendResult, packets.Code, error) {
	r := &syncResult{done: make(chan struct{})}
	g, _, code, err := s.queue(info, sc, groupItem{res: r})
	if err != nil || g == nil {
		return nil, flog.AppendResult{}, code, err
	}
	<-r.done
	if r.err != nil {
		return nil, flog.AppendResult{}, r.code, r.err
	}
	return g.part, flog.AppendResult{BaseOffset: r.offset, LastOffset: r.offset}, packets.Code{}, nil
}

// target finds a publish's rule and partition and builds its record in
// sc; a nil partition means no rule matched.
func (s *Server) target(info *publishInfo, sc *recordScratch) (flog.Record, *flog.Partition, error) {
	var valsBuf [8]string
	vals := valsBuf[:]
	if s.router.maxCaptures > len(vals) {
		vals = make([]string, s.router.maxCaptures)
	}
	rule := s.router.route(info.Topic, vals)
	if rule == nil {
		return flog.Record{}, nil, nil
	}
	rec := rule.record(info, vals, s.opts.Now().UnixMilli(), sc)
	part, err := s.partitionForKey(rule.Topic, rec.Key)
	return rec, part, err
}

// partitionForKey is the partition of topic Kafka's partitioner picks for
// key, so a Kafka client producing with the same key lands on the same one.
// A topic the rules write to that was deleted (admin API, Kafka
// DeleteTopics) is created again with the rules' partition count, as it was
// at start, so publishes go on rather than fail until a restart.
func (s *Server) partitionForKey(topic string, key []byte) (*flog.Partition, error) {
	n, err := s.log.PartitionCount(topic)
	if errors.Is(err, flog.ErrUnknownTopic) {
		if _, ours := s.topics[topic]; ours {
			created, cerr := s.createTopic(topic)
			if cerr != nil {
				return nil, cerr
			}
			if created {
				s.logger.Warn("mqtt: a topic the ingest rules write to was deleted; created again", "topic", topic, "partitions", s.topics[topic])
			}
			n, err = s.log.PartitionCount(topic)
		}
	}
	if err != nil {
		return nil, err
	}
	return s.log.Partition(topic, flog.PartitionForKey(key, n))
}

func (s *Server) appendRecord(part *flog.Partition, rec flog.Record) (flog.AppendResult, error) {
	bp, _ := s.bufPool.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	batch := flog.AppendBatch((*bp)[:0], []flog.Record{rec})
	res, err := part.Append(batch)
	*bp = batch
	s.bufPool.Put(bp)
	return res, err
}

// presenceEvent appends a connect or disconnect event to the presence
// topic, keyed by device, without waiting for durability.
func (s *Server) presenceEvent(event string, c *conn, at time.Time, reason string) {
	if s.opts.PresenceTopic == "" {
		return
	}
	ev := struct {
		Event    string `json:"event"`
		Device   string `json:"device"`
		ClientID string `json:"client_id"`
		Remote   string `json:"remote,omitempty"`
		Protocol byte   `json:"protocol"`
		Time     string `json:"time"`
		Reason   string `json:"reason,omitempty"`
	}{event, c.device, c.cl.ID, c.cl.Net.Remote, c.cl.Properties.ProtocolVersion, at.UTC().Format(time.RFC3339Nano), reason}
	var buf bytes.Buffer
	json.NewEncoder(&buf).Encode(ev)
	val := bytes.TrimSpace(buf.Bytes())
	key := []byte(c.device)
	part, err := s.partitionForKey(s.opts.PresenceTopic, key)
	if err == nil {
		_, err = s.appendRecord(part, flog.Record{Key: key, Value: val, Timestamp: at.UnixMilli()})
	}
	if err != nil {
		s.metrics.presenceErrs.Inc()
		s.logger.Warn("mqtt: presence event not stored", "event", event, "device", c.device, "err", err)
	}
}
