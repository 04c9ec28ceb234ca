package mqtt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.etcd.io/bbolt"
)

// sessions is ferry's session layer beside mochi: every QoS 1/2 message
// queued for or in flight to a client gets a per-session sequence number
// when mochi first holds it, and (with Options.SessionDB) is written to
// bbolt under that number with its packet id, expiry and protocol
// version, as are clients, subscriptions and retained messages.
//
// mochi keeps a session's outbound messages in a map by packet id and
// resends them on reconnect sorted by creation time in seconds (cast to 16
// bits), and its bbolt hook saved them without their packet id: after a
// restart every message came back with id 0 and the resend failed. So a
// reconnecting client's queued publishes are taken from mochi before it
// resends (OnSessionEstablish) and sent by ferry, in sequence order, once
// the CONNACK is out (OnSessionEstablished); expired ones are dropped, and
// no more are sent than the client's Receive Maximum allows: the rest
// follow one per PUBACK or PUBCOMP (OnQosComplete).
type sessions struct {
	mqtt.HookBase
	s  *Server
	db *bbolt.DB // nil: in memory only

	mu    sync.Mutex
	index map[string]*sessionIndex // by client id
}

// sessionIndex is one session's queued and in-flight publishes.
type sessionIndex struct {
	next    uint64               // the next sequence number
	ids     map[uint16]queuedRef // packet id → its message
	pending []packets.Packet     // publishes taken from mochi for ferry to resend, in sequence order
	backlog []packets.Packet     // resent once the client's Receive Maximum allows
	held    map[uint16]struct{}  // ids of pending publishes (out of mochi's map meanwhile)
}

type queuedRef struct {
	seq    uint64
	expiry int64 // unix seconds; 0: none
	v5     bool
}

// queuedMessage is a stored publish: mochi's storage form with what it
// leaves out.
type queuedMessage struct {
	storage.Message
	Expiry  int64 `json:"expiry,omitempty"`
	Version byte  `json:"version,omitempty"`
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
		mqtt.OnClientExpired, mqtt.OnRetainedExpired, mqtt.StoredClients, mqtt.StoredSubscriptions:
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

// OnQosPublish numbers a publish mochi has just put in flight (or queued)
// for a client and stores it. Only the first call for a packet id counts:
// later ones are resends.
func (ss *sessions) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	if pk.FixedHeader.Type != packets.Publish || cl.Net.Inline {
		return
	}
	ss.mu.Lock()
	si := ss.sessionLocked(cl.ID)
	if _, ok := si.ids[pk.PacketID]; ok {
		ss.mu.Unlock()
		return
	}
	seq := si.next
	si.next++
	si.ids[pk.PacketID] = queuedRef{seq: seq, expiry: pk.Expiry, v5: pk.ProtocolVersion == 5}
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
// removed it from its map); the next held-back publish may go.
func (ss *sessions) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Type != packets.Puback && pk.FixedHeader.Type != packets.Pubcomp {
		return // PUBREL: an inbound QoS 2 flow ended
	}
	ss.done(cl, pk.PacketID)
	ss.sendBacklog(cl, 1)
}

// OnQosDropped: mochi dropped a flow (clean session, expiry, a refusing
// PUBREC).
func (ss *sessions) OnQosDropped(cl *mqtt.Client, pk packets.Packet) { ss.done(cl, pk.PacketID) }

// done forgets the publish with packet id, unless mochi still holds one
// with that id or ferry holds it for resending.
func (ss *sessions) done(cl *mqtt.Client, id uint16) {
	if pki, ok := cl.State.Inflight.Get(id); ok && (pki.FixedHeader.Type == packets.Publish || pki.FixedHeader.Type == packets.Pubrel) {
		return
	}
	ss.mu.Lock()
	si := ss.index[cl.ID]
	if si == nil {
		ss.mu.Unlock()
		return
	}
	if _, held := si.held[id]; held {
		ss.mu.Unlock()
		return
	}
	ref, ok := si.ids[id]
	delete(si.ids, id)
	ss.mu.Unlock()
	if !ok || ss.db == nil {
		return
	}
	ss.update("message done", func(tx *bbolt.Tx) error {
		if q := tx.Bucket(bucketQueues).Bucket([]byte(cl.ID)); q != nil {
			return q.Delete(seqKey(ref.seq))
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
				if cl.State.Inflight.Set(pk) {
					atomic.AddInt64(&b.Info.Inflight, 1)
				}
				si.ids[pk.PacketID] = queuedRef{seq: seq, expiry: pk.Expiry, v5: pk.ProtocolVersion == 5}
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

// take removes a resuming session's queued publishes from the client mochi
// holds for it (the old connection, or the one restored at start) before
// mochi copies that state to the new connection and resends it in its own
// order. They are kept, in sequence order, until resend.
func (ss *sessions) take(id string) {
	old, ok := ss.s.broker.Clients.Get(id)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	si := ss.sessionLocked(id)
	if si.held == nil {
		si.held = map[uint16]struct{}{}
	}
	if ok {
		for _, pk := range old.State.Inflight.GetAll(false) {
			if pk.FixedHeader.Type != packets.Publish {
				continue // an acknowledgement state: mochi resends it
			}
			if ref, ok := si.ids[pk.PacketID]; ok && pk.Expiry < 0 {
				pk.Expiry = ref.expiry // mochi marks publishes over the send quota with -1
			}
			si.held[pk.PacketID] = struct{}{}
			si.pending = append(si.pending, pk)
			if old.State.Inflight.Delete(pk.PacketID) {
				atomic.AddInt64(&ss.s.broker.Info.Inflight, -1)
			}
		}
	}
	si.pending = append(si.pending, si.backlog...) // what the old connection had not been sent yet
	si.backlog = nil
	sort.SliceStable(si.pending, func(i, j int) bool {
		return si.ids[si.pending[i].PacketID].seq < si.ids[si.pending[j].PacketID].seq
	})
}

// discard drops what take held for a session that starts clean.
func (ss *sessions) discard(id string) {
	ss.mu.Lock()
	if si := ss.index[id]; si != nil {
		si.pending, si.backlog, si.held = nil, nil, nil
	}
	ss.mu.Unlock()
}

// resend gives the new connection its session's queued publishes back, in
// order: expired ones dropped, each with its packet id (a new one only if
// the new connection already used it meanwhile), DUP set as for any
// redelivery, and no more than the client's Receive Maximum sent now.
func (ss *sessions) resend(cl *mqtt.Client) {
	now := time.Now().Unix()
	ss.mu.Lock()
	si := ss.index[cl.ID]
	if si == nil || len(si.pending) == 0 {
		ss.mu.Unlock()
		return
	}
	pending := si.pending
	si.pending, si.held = nil, nil
	var keep []packets.Packet
	var expired []uint16
	for _, pk := range pending {
		ref := si.ids[pk.PacketID]
		if pk.Expiry > 0 && pk.Expiry < now {
			expired = append(expired, pk.PacketID)
			continue
		}
		if _, used := cl.State.Inflight.Get(pk.PacketID); used {
			ss.mu.Unlock()
			nid, err := cl.NextPacketID()
			ss.mu.Lock()
			if err != nil {
				expired = append(expired, pk.PacketID)
				continue
			}
			delete(si.ids, pk.PacketID)
			pk.PacketID = uint16(nid)
			si.ids[pk.PacketID] = ref
			ss.rewrite(cl.ID, ref.seq, pk)
		}
		pk.FixedHeader.Dup = true
		if cl.State.Inflight.Set(pk) {
			atomic.AddInt64(&ss.s.broker.Info.Inflight, 1)
		}
		keep = append(keep, pk)
	}
	ss.mu.Unlock()
	for _, id := range expired {
		ss.s.metrics.expired.Inc()
		ss.done(cl, id)
	}
	limit := int(cl.Properties.Props.ReceiveMaximum)
	if limit == 0 {
		limit = 65535
	}
	n := min(limit, len(keep))
	for _, pk := range keep[:n] {
		if err := cl.WritePacket(pk); err != nil {
			ss.s.logger.Debug("mqtt: resending a queued message failed", "client", cl.ID, "err", err)
		}
	}
	ss.mu.Lock()
	si.backlog = append(si.backlog, keep[n:]...)
	ss.mu.Unlock()
}

// rewrite stores a queued message again (its packet id changed).
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

// sendBacklog sends up to n publishes held back by the client's Receive
// Maximum, skipping those mochi dropped meanwhile (expired).
func (ss *sessions) sendBacklog(cl *mqtt.Client, n int) {
	for ; n > 0; n-- {
		ss.mu.Lock()
		si := ss.index[cl.ID]
		if si == nil || len(si.backlog) == 0 {
			ss.mu.Unlock()
			return
		}
		pk := si.backlog[0]
		si.backlog = si.backlog[1:]
		ss.mu.Unlock()
		if cur, ok := cl.State.Inflight.Get(pk.PacketID); !ok || cur.FixedHeader.Type != packets.Publish {
			n++
			continue
		}
		if err := cl.WritePacket(pk); err != nil && !errors.Is(err, mqtt.ErrConnectionClosed) {
			ss.s.logger.Debug("mqtt: sending a queued message failed", "client", cl.ID, "err", err)
		}
	}
}
