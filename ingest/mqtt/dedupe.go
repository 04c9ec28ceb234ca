package mqtt

import (
	"sync"

	flog "ferry/log"
)

// A device whose PUBACK is lost (a flaky link) retransmits the publish with
// the DUP flag and the same packet id once it reconnects to its session.
// The dedupe table remembers, per session (client id), the last publishes
// stored under each packet id, so such a retransmission is acknowledged
// again without being stored twice.
//
// A client can only retransmit a publish it has not seen acknowledged, and
// it never has more than the server's Receive Maximum of those, so a window
// of the last window entries per session is enough.

// stored is where one QoS 1/2 publish went.
type stored struct {
	hash   uint64
	part   *flog.Partition
	offset int64
	seq    uint64 // position in the session's window, to expire it
}

type sessionPublishes struct {
	byID map[uint16]stored
	ring []uint16 // packet ids in publish order; ring[seq%len] was seq
	seq  uint64
}

type dedupe struct {
	window int
	mu     sync.Mutex
	bySess map[string]*sessionPublishes
}

func newDedupe(window int) *dedupe {
	return &dedupe{window: window, bySess: map[string]*sessionPublishes{}}
}

// lookup returns the stored publish a retransmission of (id, hash) in
// session client refers to.
func (d *dedupe) lookup(client string, id uint16, hash uint64) (stored, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.bySess[client]
	if s == nil {
		return stored{}, false
	}
	st, ok := s.byID[id]
	if !ok || st.hash != hash {
		return stored{}, false
	}
	return st, true
}

// remember records that the publish (id, hash) of session client was
// appended at part/offset.
func (d *dedupe) remember(client string, id uint16, hash uint64, part *flog.Partition, offset int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.bySess[client]
	if s == nil {
		s = &sessionPublishes{byID: map[uint16]stored{}}
		d.bySess[client] = s
	}
	if len(s.ring) < d.window {
		s.ring = append(s.ring, id)
	} else {
		slot := s.seq % uint64(d.window)
		old := s.ring[slot]
		if st, ok := s.byID[old]; ok && st.seq+uint64(d.window) <= s.seq {
			delete(s.byID, old)
		}
		s.ring[slot] = id
	}
	s.byID[id] = stored{hash: hash, part: part, offset: offset, seq: s.seq}
	s.seq++
}

// forget drops a session's publishes: the session ended (clean start, or
// it expired), so its packet ids start afresh.
func (d *dedupe) forget(client string) {
	d.mu.Lock()
	delete(d.bySess, client)
	d.mu.Unlock()
}

// sessions returns how many sessions have entries (for tests).
func (d *dedupe) sessions() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.bySess)
}
