package devices

import (
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Presence is what the registry knows of a device's connections.
type Presence struct {
	Online bool `json:"online"`
	// LastSeen is the time of the last connect, disconnect or counted
	// message; zero if never seen.
	LastSeen time.Time `json:"last_seen"`
	// RemoteAddr is the address of the latest connection.
	RemoteAddr string `json:"remote_addr,omitempty"`
	// MessagesIn and BytesIn count what the device has published since it was
	// added (what was counted after the last flush before a crash is lost).
	MessagesIn uint64 `json:"messages_in"`
	BytesIn    uint64 `json:"bytes_in"`
	// ConnectedAt is when the latest connection began.
	ConnectedAt time.Time `json:"connected_at"`
}

// presence is the live, in-memory presence of one device. The counters are
// atomics so that CountIn, called for every publish, takes no lock.
type presence struct {
	msgs, bytes atomic.Uint64
	lastSeen    atomic.Int64 // unix nanoseconds; 0 is never
	dirty       atomic.Bool  // changed since the last flush

	mu          sync.Mutex // guards the fields below
	conns       int        // connections not yet disconnected
	remoteAddr  string
	connectedAt time.Time
}

func (p *presence) restore(s Presence) {
	p.msgs.Store(s.MessagesIn)
	p.bytes.Store(s.BytesIn)
	if !s.LastSeen.IsZero() {
		p.lastSeen.Store(s.LastSeen.UnixNano())
	}
	p.remoteAddr, p.connectedAt = s.RemoteAddr, s.ConnectedAt
}

func (p *presence) snapshot() Presence {
	p.mu.Lock()
	s := Presence{Online: p.conns > 0, RemoteAddr: p.remoteAddr, ConnectedAt: p.connectedAt}
	p.mu.Unlock()
	s.MessagesIn, s.BytesIn = p.msgs.Load(), p.bytes.Load()
	if ns := p.lastSeen.Load(); ns != 0 {
		s.LastSeen = time.Unix(0, ns).UTC()
	}
	return s
}

func (p *presence) markDirty() {
	if !p.dirty.Load() {
		p.dirty.Store(true)
	}
}

// seen moves LastSeen forward to at (never back: events may arrive out of order).
func (p *presence) seen(at time.Time) {
	ns := at.UnixNano()
	for {
		cur := p.lastSeen.Load()
		if cur >= ns || p.lastSeen.CompareAndSwap(cur, ns) {
			return
		}
	}
}

// Connected records that device id opened a connection from remoteAddr at
// at. Unknown ids are ignored.
func (r *Registry) Connected(id, remoteAddr string, at time.Time) {
	e := r.lookup(id)
	if e == nil {
		return
	}
	p := e.pres
	p.mu.Lock()
	p.conns++
	p.remoteAddr, p.connectedAt = remoteAddr, at.UTC()
	p.mu.Unlock()
	p.seen(at)
	p.markDirty()
}

// Disconnected records that one of device id's connections closed at at.
// The device is offline once every connection it opened has closed.
func (r *Registry) Disconnected(id string, at time.Time) {
	e := r.lookup(id)
	if e == nil {
		return
	}
	p := e.pres
	p.mu.Lock()
	if p.conns > 0 {
		p.conns--
	}
	p.mu.Unlock()
	p.seen(at)
	p.markDirty()
}

// CountIn adds msgs messages of bytes bytes to what device id has published,
// and makes it seen now. It takes no lock and does no I/O.
func (r *Registry) CountIn(id string, msgs, bytes uint64) {
	e := r.lookup(id)
	if e == nil {
		return
	}
	p := e.pres
	p.msgs.Add(msgs)
	p.bytes.Add(bytes)
	p.seen(r.opts.Now())
	p.markDirty()
}

// Presence returns device id's presence.
func (r *Registry) Presence(id string) (Presence, error) {
	if r.isShut.Load() {
		return Presence{}, ErrClosed
	}
	e := r.lookup(id)
	if e == nil {
		return Presence{}, errNotFound(id)
	}
	return e.pres.snapshot(), nil
}

// PresenceAll returns the presence of every device, by id.
func (r *Registry) PresenceAll() (map[string]Presence, error) {
	if r.isShut.Load() {
		return nil, ErrClosed
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(map[string]Presence, len(r.devs))
	for id, e := range r.devs {
		out[id] = e.pres.snapshot()
	}
	return out, nil
}

// flushLoop writes changed presence every interval until Close.
func (r *Registry) flushLoop(interval time.Duration) {
	defer close(r.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			n, err := r.flushPresence()
			if err != nil {
				r.logger.Error("writing device presence", "err", err)
			}
			if r.opts.afterFlush != nil {
				r.opts.afterFlush(n, err)
			}
		}
	}
}

// flushPresence writes every changed presence in one transaction and returns
// how many it wrote. It holds wmu so that a device deleted meanwhile is not
// written back.
func (r *Registry) flushPresence() (int, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	type item struct {
		id string
		p  *presence
		s  Presence
	}
	var items []item
	r.mu.RLock()
	for id, e := range r.devs {
		if e.pres.dirty.Swap(false) {
			items = append(items, item{id: id, p: e.pres, s: e.pres.snapshot()})
		}
	}
	r.mu.RUnlock()
	if len(items) == 0 {
		return 0, nil
	}
	err := r.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPresence)
		for _, it := range items {
			if err := putJSON(b, it.id, it.s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for _, it := range items {
			it.p.dirty.Store(true)
		}
		return 0, err
	}
	return len(items), nil
}
