package mqtt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"
)

// sessions is ferry's session layer beside mochi: every QoS 1/2 message
// queued for or in flight to a client gets a per-session sequence number
// when mochi first holds it, and (with Options.SessionDB) is written to
// bbolt under that number with its packet id, expiry and protocol
// version, as are clients, subscriptions and retained messages.
//
// mochi keeps a session's outbound messages in a map by packet id; it
// resends them on reconnect, and releases those its send quota (the
// client's Receive Maximum) held back, ordered by creation time in
// seconds (cast to 16 bits), so messages of the same second came out
// shuffled; and its bbolt hook saved them without their packet id, so
// after a restart every message came back with id 0 and the resend
// failed. So ferry sends every QoS 1/2 publish itself, in sequence order:
// mochi's send quota is switched off (establish), the delivery writer
// hands each one to send, which queues it, and pump writes the queue's
// head while fewer than the client's Receive Maximum are unacknowledged;
// each PUBACK or PUBCOMP (OnQosComplete) lets the next go. A resuming
// session's messages, handed by mochi to the new client, are queued by
// attach once the CONNACK is out, before the connection's reader and
// writer start: a message published meanwhile takes its place behind
// them. Expired messages are dropped, unless their onward delivery had
// started: a message whose PUBLISH was written is marked sent (markSent,
// in the store too) and never expires; its flow completes, resent with
// DUP on the next connection, after a restart as well [MQTT-3.3.2-5].
type sessions struct {
	mqtt.HookBase
	s  *Server
	db *bbolt.DB // nil: in memory only

	mu    sync.Mutex
	index map[string]*sessionIndex // by client id
}

// sessionIndex is one session's queued and in-flight publishes.
type sessionIndex struct {
	next  uint64               // the next sequence number
	ids   map[uint16]queuedRef // packet id → its message
	cl    *mqtt.Client         // the connection publishes are sent on (attach); nil while there is none
	queue []uint16             // packet ids of publishes to send on cl, in sequence order
	out   map[uint16]struct{}  // outbound flows sent on cl and not complete: counted against its Receive Maximum

	resumed bool           // its last connection resumed it: a stray publish is kept
	strays  []strayPublish // publishes mochi gave a client taken over, for the next attach

	sendMu sync.Mutex // held by the goroutine sending the queue (pump)
}

// sent counts an outbound flow sent on si.cl. ss.mu is held.
func (si *sessionIndex) sent(id uint16) {
	if si.out == nil {
		si.out = map[uint16]struct{}{}
	}
	si.out[id] = struct{}{}
}

// strayPublish is a publish mochi delivered to a session's client after
// a resuming connection had taken it over (mochi's publish path found the
// old client, or it landed between inheritClientSession's copy of the
// old client's in-flight messages and the new client's registration).
type strayPublish struct {
	pk  packets.Packet
	ref queuedRef
}

type queuedRef struct {
	seq    uint64
	expiry int64 // unix seconds; 0: none
	sent   bool  // its onward delivery started (markSent): it no longer expires
}

// queuedMessage is a stored publish: mochi's storage form with what it
// leaves out.
type queuedMessage struct {
	storage.Message
	Expiry  int64 `json:"expiry,omitempty"`
	Version byte  `json:"version,omitempty"`
	Sent    bool  `json:"sent,omitempty"` // its PUBLISH was (or was about to be) written (markSent)
	// Released: the client's PUBREC came for this QoS 2 publish; what is
	// in flight is ferry's PUBREL, restored as one (OnPacketRead).
	Released bool `json:"released,omitempty"`
}

var (
	bucketClients  = []byte("clients")
	bucketSubs     = []byte("subscriptions")
	bucketRetained = []byte("retained")
	bucketQueues   = []byte("queues") // a bucket per client id: sequence → queuedMessage
	mochiBucket    = []byte("mochi")  // what mochi's bolt hook wrote, imported once
)

func (ss *sessions) ID() string { return "ferry-sessions" }

func (ss *sessions) Provides(b byte) bool {
	switch b {
	case mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
		mqtt.OnRetainMessage, mqtt.OnWillSent, mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped,
		mqtt.OnClientExpired, mqtt.OnRetainedExpired, mqtt.StoredClients, mqtt.StoredSubscriptions, mqtt.OnPacketRead:
		return true
	}
	return false
}

// openSessions opens the session store at path ("" keeps sessions in
// memory).
func openSessions(s *Server, path string) (*sessions, error) {
	ss := &sessions{s: s, index: map[string]*sessionIndex{}}
	if path == "" {
		return ss, nil
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketClients, bucketSubs, bucketRetained, bucketQueues} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return importMochi(tx)
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	ss.db = db
	return ss, nil
}

// importMochi moves clients, subscriptions and retained messages from the
// layout of mochi's bolt hook (one bucket, keys by prefix) into ferry's,
// once. Its in-flight messages cannot be resent (their packet ids were
// never stored) and are dropped.
func importMochi(tx *bbolt.Tx) error {
	old := tx.Bucket(mochiBucket)
	if old == nil {
		return nil
	}
	err := old.ForEach(func(k, v []byte) error {
		switch {
		case bytes.HasPrefix(k, []byte(storage.ClientKey+"_")):
			var c storage.Client
			if json.Unmarshal(v, &c) == nil && c.ID != "" {
				return tx.Bucket(bucketClients).Put([]byte(c.ID), v)
			}
		case bytes.HasPrefix(k, []byte(storage.SubscriptionKey+"_")):
			var sub storage.Subscription
			if json.Unmarshal(v, &sub) == nil && sub.Client != "" {
				return tx.Bucket(bucketSubs).Put(subKey(sub.Client, sub.Filter), v)
			}
		case bytes.HasPrefix(k, []byte(storage.RetainedKey+"_")):
			var m queuedMessage
			if json.Unmarshal(v, &m.Message) == nil && m.TopicName != "" {
				if m.Properties.MessageExpiryInterval > 0 {
					m.Version, m.Expiry = 5, m.Created+int64(m.Properties.MessageExpiryInterval)
				}
				b, err := json.Marshal(m)
				if err != nil {
					return err
				}
				return tx.Bucket(bucketRetained).Put([]byte(m.TopicName), b)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tx.DeleteBucket(mochiBucket)
}

func subKey(client, filter string) []byte { return []byte(client + "\x00" + filter) }

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// Stop closes the store (mochi calls it from its Close).
func (ss *sessions) Stop() error {
	if ss.db == nil {
		return nil
	}
	err := ss.db.Close()
	ss.db = nil
	return err
}

func (ss *sessions) update(what string, fn func(tx *bbolt.Tx) error) {
	if ss.db == nil {
		return
	}
	if err := ss.db.Update(fn); err != nil {
		ss.s.metrics.sessionStoreErrs.Inc()
		ss.s.logger.Error("mqtt: session store write failed", "what", what, "err", err)
	}
}

func (ss *sessions) putJSON(what string, bucket, key []byte, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		ss.s.logger.Error("mqtt: session store encoding failed", "what", what, "err", err)
		return
	}
	ss.update(what, func(tx *bbolt.Tx) error { return tx.Bucket(bucket).Put(key, b) })
}

func (ss *sessions) saveClient(cl *mqtt.Client) {
	props := cl.Properties.Props
	ss.putJSON("client", bucketClients, []byte(cl.ID), storage.Client{
		ID: cl.ID, T: storage.ClientKey, Remote: cl.Net.Remote, Listener: cl.Net.Listener,
		Username: cl.Properties.Username, Clean: cl.Properties.Clean, ProtocolVersion: cl.Properties.ProtocolVersion,
		Properties: storage.ClientProperties{
			SessionExpiryInterval: props.SessionExpiryInterval, SessionExpiryIntervalFlag: props.SessionExpiryIntervalFlag,
			AuthenticationMethod: props.AuthenticationMethod, AuthenticationData: props.AuthenticationData,
			RequestProblemInfo: props.RequestProblemInfo, RequestProblemInfoFlag: props.RequestProblemInfoFlag,
			RequestResponseInfo: props.RequestResponseInfo, ReceiveMaximum: props.ReceiveMaximum,
			TopicAliasMaximum: props.TopicAliasMaximum, User: props.User, MaximumPacketSize: props.MaximumPacketSize,
		},
		Will: storage.ClientWill(cl.Properties.Will),
	})
}

// forget drops everything of a session: client, subscriptions, queue.
func (ss *sessions) forget(id string) {
	ss.mu.Lock()
	delete(ss.index, id)
	ss.mu.Unlock()
	ss.update("forget session", func(tx *bbolt.Tx) error {
		tx.Bucket(bucketClients).Delete([]byte(id))
		c := tx.Bucket(bucketSubs).Cursor()
		prefix := []byte(id + "\x00")
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		if tx.Bucket(bucketQueues).Bucket([]byte(id)) != nil {
			return tx.Bucket(bucketQueues).DeleteBucket([]byte(id))
		}
		return nil
	})
}

func (ss *sessions) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) { ss.saveClient(cl) }
func (ss *sessions) OnWillSent(cl *mqtt.Client, pk packets.Packet)           { ss.saveClient(cl) }

func (ss *sessions) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	ss.detach(cl)
	switch {
	case cl.StopCause() == packets.ErrSessionTakenOver:
	case expire:
		ss.forget(cl.ID)
	default:
		ss.saveClient(cl) // a DISCONNECT may have changed its session expiry
	}
}

func (ss *sessions) OnClientExpired(cl *mqtt.Client) { ss.forget(cl.ID) }

func (ss *sessions) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	for i, f := range pk.Filters {
		if i >= len(codes) || codes[i] >= packets.ErrUnspecifiedError.Code {
			continue
		}
		ss.putJSON("subscription", bucketSubs, subKey(cl.ID, f.Filter), storage.Subscription{
			ID: cl.ID + ":" + f.Filter, T: storage.SubscriptionKey, Client: cl.ID, Qos: codes[i], Filter: f.Filter,
			Identifier: f.Identifier, NoLocal: f.NoLocal, RetainHandling: f.RetainHandling, RetainAsPublished: f.RetainAsPublished,
		})
	}
}

func (ss *sessions) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	ss.update("unsubscribe", func(tx *bbolt.Tx) error {
		for _, f := range pk.Filters {
			if err := tx.Bucket(bucketSubs).Delete(subKey(cl.ID, f.Filter)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (ss *sessions) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	if r == -1 {
		ss.OnRetainedExpired(pk.TopicName)
		return
	}
	ss.putJSON("retained", bucketRetained, []byte(pk.TopicName), toStored(cl.ID, pk))
}

func (ss *sessions) OnRetainedExpired(topic string) {
	ss.update("retained expired", func(tx *bbolt.Tx) error { return tx.Bucket(bucketRetained).Delete([]byte(topic)) })
}

func toStored(client string, pk packets.Packet) queuedMessage {
	p := pk.Properties
	return queuedMessage{Message: storage.Message{
		Client: client, Origin: pk.Origin, FixedHeader: pk.FixedHeader, TopicName: pk.TopicName, Payload: pk.Payload,
		Created: pk.Created, PacketID: pk.PacketID,
		Properties: storage.MessageProperties{PayloadFormat: p.PayloadFormat, PayloadFormatFlag: p.PayloadFormatFlag,
			MessageExpiryInterval: p.MessageExpiryInterval, ContentType: p.ContentType, ResponseTopic: p.ResponseTopic,
			CorrelationData: p.CorrelationData, SubscriptionIdentifier: p.SubscriptionIdentifier, User: p.User},
	}, Expiry: pk.Expiry, Version: pk.ProtocolVersion}
}

func (m *queuedMessage) packet() packets.Packet {
	pk := m.ToPacket() // a deep copy; its Dup as stored
	pk.Expiry, pk.ProtocolVersion = m.Expiry, m.Version
	return pk
}

// OnQosPublish numbers a publish mochi has just put in flight for a
// client, connected or not, and stores it. mochi calls it once per
// message: ferry never has mochi resend (attach does).
func (ss *sessions) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	if pk.FixedHeader.Type != packets.Publish || cl.Net.Inline {
		return
	}
	if cl.IsTakenOver() {
		ss.stray(cl, pk)
		return
	}
	ss.mu.Lock()
	si := ss.sessionLocked(cl.ID)
	seq := si.next
	si.next++
	old, reused := si.ids[pk.PacketID] // mochi reuses only an id it no longer holds: what it held is gone
	si.ids[pk.PacketID] = queuedRef{seq: seq, expiry: pk.Expiry}
	ss.mu.Unlock()
	if ss.db == nil {
		return
	}
	b, err := json.Marshal(toStored(cl.ID, pk)) // whole topic names: ferry sends no topic aliases (hook.OnConnect)
	if err != nil {
		return
	}
	ss.update("queued message", func(tx *bbolt.Tx) error {
		q, err := tx.Bucket(bucketQueues).CreateBucketIfNotExists([]byte(cl.ID))
		if err != nil {
			return err
		}
		if reused {
			if err := q.Delete(seqKey(old.seq)); err != nil {
				return err
			}
		}
		return q.Put(seqKey(seq), b)
	})
}

// stray takes a publish mochi has just put in flight for old, a client a
// new connection took over, which nothing would send: numbered now, it is
// handed to the session's connection (adopt), at once if it is attached,
// else by attach. A session that started clean drops it.
func (ss *sessions) stray(old *mqtt.Client, pk packets.Packet) {
	if old.State.Inflight.Delete(pk.PacketID) {
		atomic.AddInt64(&ss.s.broker.Info.Inflight, -1)
	}
	ss.mu.Lock()
	si := ss.sessionLocked(old.ID)
	if !si.resumed {
		ss.mu.Unlock()
		return
	}
	ref := queuedRef{seq: si.next, expiry: pk.Expiry}
	si.next++
	cl := si.cl
	if cl == nil || cl == old || cl.IsTakenOver() {
		si.strays = append(si.strays, strayPublish{pk, ref})
		ss.mu.Unlock()
		ss.rewrite(old.ID, ref.seq, pk)
		return
	}
	ss.mu.Unlock()
	if id, ok := ss.adopt(cl, pk, ref); ok {
		ss.send(cl, id)
	}
}

// adopt gives a stray publish a packet id on cl and puts it in flight
// there, unless it is there already: mochi copied it over with the rest
// of the old client's (the same message: the same payload array).
func (ss *sessions) adopt(cl *mqtt.Client, pk packets.Packet, ref queuedRef) (uint16, bool) {
	if cur, ok := cl.State.Inflight.Get(pk.PacketID); ok && sameDelivery(cur, pk) {
		ss.mu.Lock()
		ss.sessionLocked(cl.ID).ids[pk.PacketID] = ref
		ss.mu.Unlock()
		return pk.PacketID, true
	}
	id, err := cl.NextPacketID()
	if err != nil {
		ss.s.logger.Warn("mqtt: no packet id left for a queued message", "client", cl.ID, "err", err)
		return 0, false
	}
	pk.PacketID, pk.FixedHeader.Dup = uint16(id), false
	if cl.State.Inflight.Set(pk) {
		atomic.AddInt64(&ss.s.broker.Info.Inflight, 1)
	}
	ss.mu.Lock()
	ss.sessionLocked(cl.ID).ids[pk.PacketID] = ref
	ss.mu.Unlock()
	ss.rewrite(cl.ID, ref.seq, pk)
	return pk.PacketID, true
}

// sameDelivery reports whether a and b are one delivery: each has its
// own copy of the payload (mochi's publishToClient).
func sameDelivery(a, b packets.Packet) bool {
	return a.FixedHeader.Type == packets.Publish && a.Created == b.Created && a.TopicName == b.TopicName &&
		len(a.Payload) == len(b.Payload) && (len(a.Payload) == 0 || unsafe.SliceData(a.Payload) == unsafe.SliceData(b.Payload))
}

// resuming tells the session layer a connection resumes session id
// (before mochi's take-over).
func (ss *sessions) resuming(id string) {
	ss.mu.Lock()
	ss.sessionLocked(id).resumed = true
	ss.mu.Unlock()
}

// rewrite stores a queued message (again: its packet id changed).
func (ss *sessions) rewrite(client string, seq uint64, pk packets.Packet) {
	if ss.db == nil {
		return
	}
	b, err := json.Marshal(toStored(client, pk))
	if err != nil {
		return
	}
	ss.update("queued message", func(tx *bbolt.Tx) error {
		q, err := tx.Bucket(bucketQueues).CreateBucketIfNotExists([]byte(client))
		if err != nil {
			return err
		}
		return q.Put(seqKey(seq), b)
	})
}

func (ss *sessions) sessionLocked(id string) *sessionIndex {
	si := ss.index[id]
	if si == nil {
		si = &sessionIndex{next: 1, ids: map[uint16]queuedRef{}}
		ss.index[id] = si
	}
	return si
}

// OnQosComplete: a PUBACK or PUBCOMP ended an outbound flow (mochi has
// removed it from its map); the next waiting publish may go.
func (ss *sessions) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Type != packets.Puback && pk.FixedHeader.Type != packets.Pubcomp {
		return // PUBREL: an inbound QoS 2 flow ended
	}
	if cl.IsTakenOver() {
		return // acknowledged on a connection being taken over: what was handed over is resent
	}
	ss.done(cl, pk.PacketID, false)
	ss.pump(cl)
}

// OnQosDropped: mochi dropped a flow (clean session, expiry, a refusing
// PUBREC). A client taken over by a resuming connection drops what it
// held after handing it over (mochi's inheritClientSession): the session
// lives on.
func (ss *sessions) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if cl.IsTakenOver() {
		return
	}
	ss.done(cl, pk.PacketID, true)
	ss.pump(cl)
}

// done forgets the publish with packet id, unless mochi still holds one
// with that id, and frees its place under the client's Receive Maximum;
// dropped: it may not have been sent.
func (ss *sessions) done(cl *mqtt.Client, id uint16, dropped bool) {
	ss.mu.Lock()
	si := ss.index[cl.ID]
	if si == nil {
		ss.mu.Unlock()
		return
	}
	if si.cl == cl {
		delete(si.out, id)
	}
	if pki, ok := cl.State.Inflight.Get(id); ok && (pki.FixedHeader.Type == packets.Publish || pki.FixedHeader.Type == packets.Pubrel) {
		ss.mu.Unlock()
		return
	}
	if dropped && si.cl == cl {
		// A dropped flow may not have been sent (expired while queued:
		// clearExpired keeps what was sent): its id must not stand in
		// the queue for a later message mochi gives the same id.
		si.queue = slices.DeleteFunc(si.queue, func(q uint16) bool { return q == id })
	}
	ref, ok := si.ids[id]
	delete(si.ids, id)
	ss.mu.Unlock()
	if ok {
		ss.unstore(cl.ID, ref.seq)
	}
}

// clearExpired drops cl's in-flight flows past their MQTT 5 message
// expiry (or the server's maximum), as mochi's ClearExpiredInflights does,
// except a publish sent and not yet acknowledged, on cl or on an earlier
// connection of its session (marked sent): expiry is for a message not
// yet sent [MQTT-3.3.2-5]; once its PUBLISH is out the flow completes,
// and it counts against the client's Receive Maximum until it does.
// ss.mu held across the check and the delete: pump either sent it first
// (kept) or finds it gone.
func (ss *sessions) clearExpired(cl *mqtt.Client, now, maxExpiry int64) {
	var dropped []packets.Packet
	ss.mu.Lock()
	si := ss.index[cl.ID]
	for _, pk := range cl.State.Inflight.GetAll(false) {
		expired := pk.ProtocolVersion == 5 && pk.Expiry > 0 && pk.Expiry < now
		enforced := maxExpiry > 0 && now-pk.Created > maxExpiry
		if !expired && !enforced {
			continue
		}
		if si != nil {
			if _, sent := si.out[pk.PacketID]; sent && si.cl == cl {
				continue
			}
			if ref, ok := si.ids[pk.PacketID]; ok && ref.sent {
				continue // sent on an earlier connection: resent on the next (attach)
			}
		}
		if cl.State.Inflight.Delete(pk.PacketID) {
			atomic.AddInt64(&ss.s.broker.Info.Inflight, -1)
			dropped = append(dropped, pk)
		}
	}
	ss.mu.Unlock()
	for _, pk := range dropped {
		if pk.FixedHeader.Type == packets.Publish {
			ss.s.metrics.expired.Inc()
		}
		ss.s.mochi.hooks.OnQosDropped(cl, pk) // ours pumps
	}
}

// markSent records in the store that the onward delivery of a client's
// message seq has started: once its PUBLISH may have reached the client,
// the flow must complete [MQTT-3.3.2-5] (resent with DUP on the next
// connection, after a restart too), whatever its expiry. Written before
// the PUBLISH, so a crash between the two keeps a message maybe never
// sent rather than drop one maybe sent. A message no longer stored (its
// flow ended, its session was forgotten) is left so. Only messages that
// can expire are marked: for the rest the mark changes nothing, and it
// costs a store write per delivery.
func (ss *sessions) markSent(client string, seq uint64) {
	ss.mark("message sent", client, seq, func(m *queuedMessage) bool {
		if m.Sent {
			return false
		}
		m.Sent = true
		return true
	})
}

// OnPacketRead stores that a PUBREC came for a QoS 2 publish mochi holds
// for the client, before mochi answers it with PUBREL (and holds that in
// its place): after a restart the flow goes on with the PUBREL, never the
// PUBLISH again, which the client, done with that packet id once it sends
// PUBCOMP, would take for a new message. A crash before mochi's PUBREL is
// written resends the PUBREL, which the client answers (its PUBREC went
// out) [MQTT-4.3.3].
func (ss *sessions) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Pubrec || ss.db == nil ||
		pk.ReasonCode >= packets.ErrUnspecifiedError.Code || !pk.ReasonCodeValid() {
		return pk, nil // mochi drops a refused flow (OnQosDropped)
	}
	if cur, ok := cl.State.Inflight.Get(pk.PacketID); !ok || cur.FixedHeader.Type != packets.Publish {
		return pk, nil
	}
	ss.mu.Lock()
	var ref queuedRef
	si, ok := ss.index[cl.ID]
	if ok {
		ref, ok = si.ids[pk.PacketID]
	}
	ss.mu.Unlock()
	if ok {
		ss.mark("message released", cl.ID, ref.seq, func(m *queuedMessage) bool {
			if m.Released {
				return false
			}
			m.Sent, m.Released = true, true
			return true
		})
	}
	return pk, nil
}

// mark changes a client's stored message seq (set reports whether it
// changed it); a message no longer stored is left so.
func (ss *sessions) mark(what, client string, seq uint64, set func(*queuedMessage) bool) {
	if ss.db == nil {
		return
	}
	ss.update(what, func(tx *bbolt.Tx) error {
		q := tx.Bucket(bucketQueues).Bucket([]byte(client))
		if q == nil {
			return nil
		}
		v := q.Get(seqKey(seq))
		if v == nil {
			return nil
		}
		var m queuedMessage
		if err := json.Unmarshal(v, &m); err != nil {
			return err
		}
		if !set(&m) {
			return nil
		}
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		return q.Put(seqKey(seq), b)
	})
}

// unstore deletes a client's stored message seq.
func (ss *sessions) unstore(client string, seq uint64) {
	if ss.db == nil {
		return
	}
	ss.update("message done", func(tx *bbolt.Tx) error {
		if q := tx.Bucket(bucketQueues).Bucket([]byte(client)); q != nil {
			return q.Delete(seqKey(seq))
		}
		return nil
	})
}

// StoredClients and StoredSubscriptions give mochi the sessions to restore
// at start; queued and retained messages are restored by restore, after.
func (ss *sessions) StoredClients() ([]storage.Client, error) {
	var out []storage.Client
	if ss.db == nil {
		return out, nil
	}
	err := ss.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketClients).ForEach(func(_, v []byte) error {
			var c storage.Client
			if err := json.Unmarshal(v, &c); err != nil {
				return err
			}
			out = append(out, c)
			return nil
		})
	})
	return out, err
}

func (ss *sessions) StoredSubscriptions() ([]storage.Subscription, error) {
	var out []storage.Subscription
	if ss.db == nil {
		return out, nil
	}
	err := ss.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketSubs).ForEach(func(_, v []byte) error {
			var sub storage.Subscription
			if err := json.Unmarshal(v, &sub); err != nil {
				return err
			}
			out = append(out, sub)
			return nil
		})
	})
	return out, err
}

// restore gives mochi back the retained messages and each restored
// session's queued publishes, with their packet ids, expiry and sequence.
// Publishes of a session mochi did not restore are deleted.
func (ss *sessions) restore() error {
	if ss.db == nil {
		return nil
	}
	b := ss.s.broker
	var retained, queued int
	err := ss.db.Update(func(tx *bbolt.Tx) error {
		err := tx.Bucket(bucketRetained).ForEach(func(_, v []byte) error {
			var m queuedMessage
			if err := json.Unmarshal(v, &m); err != nil {
				return err
			}
			b.Topics.RetainMessage(m.packet())
			retained++
			return nil
		})
		if err != nil {
			return err
		}
		qs := tx.Bucket(bucketQueues)
		var gone [][]byte
		err = qs.ForEachBucket(func(id []byte) error {
			cl, ok := b.Clients.Get(string(id))
			if !ok {
				gone = append(gone, append([]byte(nil), id...))
				return nil
			}
			si := ss.sessionLocked(cl.ID)
			return qs.Bucket(id).ForEach(func(k, v []byte) error {
				var m queuedMessage
				if err := json.Unmarshal(v, &m); err != nil || len(k) != 8 || m.PacketID == 0 {
					return fmt.Errorf("queued message %x of %q: %v", k, id, err)
				}
				seq := binary.BigEndian.Uint64(k)
				pk := m.packet()
				if m.Released { // what mochi's processPubrec holds in its place
					pk = packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1},
						PacketID: m.PacketID, Created: m.Created}
				}
				if cl.State.Inflight.Set(pk) {
					atomic.AddInt64(&b.Info.Inflight, 1)
				}
				si.ids[pk.PacketID] = queuedRef{seq: seq, expiry: pk.Expiry, sent: m.Sent}
				si.next = max(si.next, seq+1)
				queued++
				return nil
			})
		})
		if err != nil {
			return err
		}
		for _, id := range gone {
			if err := qs.DeleteBucket(id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restoring sessions: %w", err)
	}
	atomic.StoreInt64(&b.Info.Retained, int64(b.Topics.Retained.Len()))
	if queued > 0 || retained > 0 {
		ss.s.logger.Info("mqtt: queued and retained messages restored", "queued", queued, "retained", retained)
	}
	return nil
}

// attach makes cl the connection its session's QoS 1/2 publishes are
// sent on, once its CONNACK is out and before its reader or delivery
// writer runs. A resumed session (present) gets back what mochi handed
// over from its previous client: acknowledgement states resent as mochi
// would, PUBRELs counted against the client's Receive Maximum, and the
// publishes, expired ones never sent dropped, queued in sequence order
// with DUP set (so those sent before, which come first).
// A publish delivered to cl since it took the session over is in that
// queue at its place, after what was queued before it, however the
// delivery raced the CONNACK.
func (ss *sessions) attach(cl *mqtt.Client, present bool) error {
	now := time.Now().Unix()
	ss.mu.Lock()
	si := ss.index[cl.ID]
	if si == nil && !present {
		ss.mu.Unlock()
		return nil // nothing yet (send attaches on the first delivery): most devices never subscribe
	}
	si = ss.sessionLocked(cl.ID)
	ss.mu.Unlock()
	si.sendMu.Lock() // nothing is sent before the resent PUBRELs
	ss.mu.Lock()
	si.cl, si.queue, si.out = cl, nil, nil
	strays := si.strays
	si.strays = nil
	ss.mu.Unlock()
	for _, st := range strays {
		if present {
			ss.adopt(cl, st.pk, st.ref)
		} else {
			ss.unstore(cl.ID, st.ref.seq) // for the old session, which mochi dropped (it was clean)
		}
	}
	ss.mu.Lock()
	var acks []packets.Packet
	var expired []uint16
	if present {
		queued := map[uint16]bool{} // by a stray handed over meanwhile (stray)
		for _, id := range si.queue {
			queued[id] = true
		}
		for _, pk := range cl.State.Inflight.GetAll(false) {
			switch pk.FixedHeader.Type {
			case packets.Publish:
				if queued[pk.PacketID] {
					continue
				}
			case packets.Pubrel:
				si.sent(pk.PacketID)
				acks = append(acks, pk)
				continue
			default:
				acks = append(acks, pk)
				continue
			}
			ref, ok := si.ids[pk.PacketID]
			if !ok {
				ref = queuedRef{seq: si.next, expiry: pk.Expiry}
				si.next++
				si.ids[pk.PacketID] = ref
			}
			if pk.Expiry < 0 {
				pk.Expiry = ref.expiry // mochi marked a publish over its send quota with -1
			}
			if pk.Expiry > 0 && pk.Expiry < now && !ref.sent {
				expired = append(expired, pk.PacketID)
				continue
			}
			pk.FixedHeader.Dup = true // it may have been sent before [MQTT-3.3.1-1]
			cl.State.Inflight.Set(pk)
			si.queue = append(si.queue, pk.PacketID)
		}
		sort.Slice(si.queue, func(i, j int) bool { return si.ids[si.queue[i]].seq < si.ids[si.queue[j]].seq })
	}
	ss.mu.Unlock()
	for _, id := range expired {
		ss.drop(cl, id, ss.s.metrics.expired)
	}
	// What mochi's ResendInflightMessages does for the rest.
	var completed []packets.Packet
	var err error
	for _, pk := range acks {
		if err = cl.WritePacket(pk); err != nil {
			break
		}
		if (pk.FixedHeader.Type == packets.Puback || pk.FixedHeader.Type == packets.Pubcomp) && cl.State.Inflight.Delete(pk.PacketID) {
			atomic.AddInt64(&ss.s.broker.Info.Inflight, -1)
			completed = append(completed, pk)
		}
	}
	if err == nil {
		err = ss.pumpLocked(cl, si)
	}
	si.sendMu.Unlock()
	for _, pk := range completed {
		ss.s.mochi.hooks.OnQosComplete(cl, pk) // ours pumps: not under sendMu
	}
	return err
}

// detach: cl's connection ended; its session's publishes stay with mochi
// (in flight for an offline client) until the next attach.
func (ss *sessions) detach(cl *mqtt.Client) {
	ss.mu.Lock()
	if si := ss.index[cl.ID]; si != nil && si.cl == cl {
		si.cl, si.queue, si.out = nil, nil, nil
	}
	ss.mu.Unlock()
}

// send queues a QoS 1/2 publish mochi put on cl's outbound queue (the
// delivery writer hands it over) and sends what the client's Receive
// Maximum allows. The message is the one mochi holds in flight under that
// packet id; one already queued or sent, or no longer held, is ignored.
func (ss *sessions) send(cl *mqtt.Client, id uint16) {
	ss.mu.Lock()
	si := ss.index[cl.ID]
	if si != nil && si.cl == nil && !cl.Closed() && !cl.IsTakenOver() {
		// The first delivery to a connection attach had nothing for
		// (the writer runs only once the client is established).
		si.cl, si.queue, si.out = cl, nil, nil
	}
	if si == nil || si.cl != cl {
		ss.mu.Unlock()
		return // not attached yet (attach finds it in flight) or taken over (the next attach does)
	}
	if _, sent := si.out[id]; sent || slices.Contains(si.queue, id) {
		ss.mu.Unlock()
		return
	}
	if cur, ok := cl.State.Inflight.Get(id); !ok || cur.FixedHeader.Type != packets.Publish {
		ss.mu.Unlock()
		return
	}
	// In sequence order: deliveries from different publishers can reach
	// the outbound queue in another order than they were numbered.
	seq := si.ids[id].seq
	i := len(si.queue)
	for i > 0 && si.ids[si.queue[i-1]].seq > seq {
		i--
	}
	si.queue = slices.Insert(si.queue, i, id)
	ss.mu.Unlock()
	ss.pump(cl)
}

// pump sends cl's queued publishes in order while fewer than the client's
// Receive Maximum are unacknowledged; an MQTT 3.1.1 client has none. One
// goroutine at a time sends a session's publishes (sendMu), so they leave
// in queue order.
func (ss *sessions) pump(cl *mqtt.Client) error {
	ss.mu.Lock()
	si := ss.index[cl.ID]
	ss.mu.Unlock()
	if si == nil {
		return nil
	}
	si.sendMu.Lock()
	defer si.sendMu.Unlock()
	return ss.pumpLocked(cl, si)
}

// pumpLocked is pump with si.sendMu held.
func (ss *sessions) pumpLocked(cl *mqtt.Client, si *sessionIndex) error {
	limit := int(cl.Properties.Props.ReceiveMaximum)
	if limit == 0 {
		limit = 65535
	}
	for {
		ss.mu.Lock()
		if si.cl != cl || len(si.queue) == 0 || len(si.out) >= limit {
			ss.mu.Unlock()
			return nil
		}
		id := si.queue[0]
		si.queue = si.queue[1:]
		pk, ok := cl.State.Inflight.Get(id)
		if !ok || pk.FixedHeader.Type != packets.Publish {
			ss.mu.Unlock()
			continue // expired or dropped meanwhile
		}
		si.sent(id)
		ref, mark := si.ids[id]
		if mark = mark && !ref.sent; mark {
			ref.sent = true
			si.ids[id] = ref
		}
		ss.mu.Unlock()
		if mark && (pk.Expiry > 0 || ss.s.broker.Options.Capabilities.MaximumMessageExpiryInterval > 0) {
			ss.markSent(cl.ID, ref.seq) // before the write: a crash between the two resends it, never drops it
		}
		err := cl.WritePacket(pk)
		if errors.Is(err, packets.ErrPacketTooLarge) {
			ss.discard(cl, id)
			continue
		}
		if err != nil {
			if !errors.Is(err, mqtt.ErrConnectionClosed) {
				ss.s.logger.Debug("mqtt: sending a queued message failed", "client", cl.ID, "err", err)
			}
			return err
		}
	}
}

// discard ends the flow of a publish larger than the client's Maximum
// Packet Size, which WritePacket refused (nothing of it was written): the
// server discards it as if it had completed sending it [MQTT-3.1.2-25],
// so it leaves mochi's in-flight map and the session, and frees its place
// under the client's Receive Maximum. si.sendMu is held (by pumpLocked).
func (ss *sessions) discard(cl *mqtt.Client, id uint16) {
	ss.s.logger.Debug("mqtt: queued message larger than the client's maximum packet size discarded",
		"client", cl.ID, "max", cl.Properties.Props.MaximumPacketSize)
	ss.drop(cl, id, ss.s.metrics.tooLarge)
}

// drop ends queued message id of cl unsent, counted in why.
func (ss *sessions) drop(cl *mqtt.Client, id uint16, why prometheus.Counter) {
	if cl.State.Inflight.Delete(id) {
		atomic.AddInt64(&ss.s.broker.Info.Inflight, -1)
	}
	why.Inc()
	ss.done(cl, id, true)
}
