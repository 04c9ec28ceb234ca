package mqtt

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// A partition's group commit of MQTT publishes, across connections.
//
// A connection's reader does not append its publish itself: it queues the
// record with the partition's group and goes on reading. The group's
// committer (a goroutine that lives while publishes come, and for
// groupLinger after) takes everything queued, appends it as one batch (one
// write and one lock for all of it), waits until that batch is durable
// under the topic's flush policy, and then releases the acknowledgements:
// every record queued before a commit is acknowledged by the end of it, and
// records queued while it runs (the fsync, mostly) make up the next one,
// which may wait a little for more (groupPace). One-in-flight devices (publish, wait for the PUBACK, publish) then share
// one append and one fsync per round instead of each appending on its own.
//
// Order: a partition's records are appended in the order they were queued,
// and a connection's records are queued in the order its publishes were
// read, so per connection and per partition the log keeps the publishes'
// order. A connection's acknowledgements still leave in publish order: its
// queue (conn.go) holds each one until its record's commit is done.
//
// Acknowledgements are written by the group's acker, a second goroutine
// that lives with the committer: after each commit it tells the
// connections concerned (conn.kick), which writes them at once when the
// socket takes them; the committer meanwhile goes on with the next commit.
//
// The durable-ack promise is unchanged: a record is acknowledged once
// Partition.WaitDurable says the batch holding it is durable; a record the
// log refused gets the refusal (MQTT 5) or a closed connection (3.1.1), and
// one whose durability failed is never acknowledged (the drain closes the
// connection so the client retransmits).
type group struct {
	s    *Server
	part *flog.Partition

	mu      sync.Mutex
	cur     *groupBatch // queued for the next commit
	spare   *groupBatch // the other batch, while the committer does not hold it
	next    uint64      // sequence number of the next queued record
	running bool        // a committer owns the group
	wake    chan struct{}
	want    int       // add wakes the committer once cur holds this many records
	taken   sync.Cond // broadcast when the committer takes cur (with mu)
	waiting int       // readers waiting in add for cur to be taken

	// done: every record numbered below it has been through its commit
	// (appended and durable, or refused). Records numbered failedFrom and
	// above were appended but never became durable.
	done       atomic.Uint64
	failedFrom atomic.Uint64
	failErr    atomic.Pointer[error]
	dmu        sync.Mutex
	doneCh     chan struct{} // closed and replaced when done advances

	enc []byte // the committer's batch encoding

	// The connections whose acknowledgements commits released, for the
	// acker (kickLoop, which lives with the committer): it tells them
	// (conn.kick, which writes what the socket takes at once) while the
	// committer goes on with the next commit, so the writes overlap its
	// append and fsync, without a goroutine wake-up per connection.
	kmu       sync.Mutex
	kicks     []*conn
	kickWake  chan struct{}
	kickSpare []*conn
}

// groupLinger is how long a committer with nothing queued waits for more
// before it exits.
const groupLinger = 50 * time.Millisecond

// groupPace is the longest a committer waits, after a commit that
// released acknowledgements, for the next one to gather.
//
// A commit takes what was queued during the one before: with one-in-flight
// devices, the publishes that came while it was fsyncing. Started at once,
// the next commit would hold only those, while the devices just
// acknowledged answer a little later and make up a commit of their own;
// every commit pays an fsync, a wake-up of the flusher and one of the
// committer. So after a commit that released n acknowledgements the
// committer waits until n more records are queued (the answers, in a
// fleet of such devices) or groupPace has passed, whichever is first. It
// does not wait when the commit released none (QoS 0, or records nobody
// waits for) or a reader waits for room in the queue; an idle node's lone
// device answers at once, so the wait ends as soon as its publish comes.
var groupPace = 300 * time.Microsecond

// Bounds of one appended batch; a commit with more writes several.
const (
	maxGroupRecords = 4096
	maxGroupBytes   = 256 << 10
)

// maxGroupQueued bounds the bytes queued for a group's next commit: a
// reader that would queue more waits until the committer takes them (the
// back-pressure an append that blocks on a slow disk gave before). QoS 1/2
// publishes are also bounded by Receive Maximum; QoS 0 only by this.
var maxGroupQueued = 8 << 20

// groupBatch is the records of one commit, with their key and header bytes
// copied into arena (each publish's own scratch is reused at once).
type groupBatch struct {
	recs  []flog.Record
	items []groupItem
	hdrs  []kmsg.Header
	arena []byte
	size  int // estimated bytes, values included
}

// groupItem is who a queued record is for.
type groupItem struct {
	c      *conn // its acknowledgement waits for this commit (nil: none does)
	qos    byte
	id     uint16 // packet id (QoS 1/2)
	hash   uint64 // content hash, remembered for retransmissions
	client string
	device string
	res    *syncResult // a caller waiting for the append (ingestSync)
}

// syncResult is an append's outcome for a caller that waits for it.
type syncResult struct {
	offset int64
	code   packets.Code
	err    error
	done   chan struct{}
}

func (s *Server) group(part *flog.Partition) *group {
	if v, ok := s.groups.Load(part); ok {
		return v.(*group)
	}
	g := &group{s: s, part: part, cur: new(groupBatch), spare: new(groupBatch), wake: make(chan struct{}, 1),
		doneCh: make(chan struct{}), kickWake: make(chan struct{}, 1)}
	g.failedFrom.Store(math.MaxUint64)
	g.taken.L = &g.mu
	v, _ := s.groups.LoadOrStore(part, g)
	return v.(*group)
}

// add queues rec (its key and header bytes are copied; its value must stay
// unchanged until the commit) and returns its sequence number.
func (g *group) add(rec flog.Record, it groupItem) uint64 {
	g.mu.Lock()
	for g.cur.size > 0 && g.cur.size+recordSize(&rec) > maxGroupQueued {
		g.signal() // a committer waiting for more (run) takes it now
		g.waiting++
		g.taken.Wait()
		g.waiting--
	}
	b := g.cur
	b.size += recordSize(&rec)
	start := len(b.arena)
	b.arena = append(b.arena, rec.Key...)
	if rec.Key != nil {
		rec.Key = b.arena[start:len(b.arena):len(b.arena)]
	}
	hs := len(b.hdrs)
	for _, h := range rec.Headers {
		vs := len(b.arena)
		b.arena = append(b.arena, h.Value...)
		v := b.arena[vs:len(b.arena):len(b.arena)]
		if h.Value == nil {
			v = nil
		}
		b.hdrs = append(b.hdrs, kmsg.Header{Key: h.Key, Value: v})
	}
	// Earlier records keep the arrays they were given if these grow.
	rec.Headers = b.hdrs[hs:len(b.hdrs):len(b.hdrs)]
	b.recs = append(b.recs, rec)
	b.items = append(b.items, it)
	seq := g.next
	g.next++
	start2 := !g.running
	g.running = true
	signal := len(b.recs) >= g.want
	g.mu.Unlock()
	if start2 {
		g.s.groupsWg.Add(1)
		go g.run()
	} else if signal {
		g.signal()
	}
	return seq
}

func (g *group) signal() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// run is the committer: it commits what is queued until nothing has come
// for groupLinger (or the server is closing and nothing is queued).
func (g *group) run() {
	defer g.s.groupsWg.Done()
	stop, acked := make(chan struct{}), make(chan struct{})
	go g.kickLoop(stop, acked)
	// Armed by Reset when needed (Go 1.23 timers: a stopped timer's
	// channel holds nothing stale).
	linger, pace := time.NewTimer(groupLinger), time.NewTimer(groupPace)
	linger.Stop()
	pace.Stop()
	defer func() {
		linger.Stop()
		pace.Stop()
		close(stop)
		<-acked
	}()
	for {
		g.mu.Lock()
		if len(g.cur.recs) == 0 {
			g.want = 1
			g.mu.Unlock()
			linger.Reset(groupLinger)
			select {
			case <-g.wake:
				continue
			case <-linger.C:
			case <-g.s.quit:
			}
			g.mu.Lock()
			if len(g.cur.recs) == 0 {
				g.running = false
				g.mu.Unlock()
				return
			}
		}
		b := g.cur
		g.cur, g.spare = g.spare, nil
		g.want = math.MaxInt // the committer looks when it is done
		first := g.next - uint64(len(b.recs))
		if g.waiting > 0 {
			g.taken.Broadcast()
		}
		g.mu.Unlock()

		acks := g.commit(b, first)
		b.reset()

		g.mu.Lock()
		g.spare = b
		if acks == 0 || groupPace <= 0 || g.waiting > 0 {
			g.mu.Unlock()
			continue
		}
		// Pace: the devices just acknowledged are likely to publish
		// again; wait (at most groupPace) until as many more records
		// are queued as were acknowledged, so they share the next
		// fsync with those queued during this one.
		// A wake-up already sent is stale (a pace that ended by its
		// timer, say); one sent from now on is for want, or from a
		// reader that waits for room, which add signals under g.mu.
		select {
		case <-g.wake:
		default:
		}
		want := len(g.cur.recs) + acks
		g.want = want
		g.mu.Unlock()
		pace.Reset(groupPace)
		select {
		case <-g.wake:
		case <-pace.C:
		case <-g.s.quit:
		}
	}
}

func (b *groupBatch) reset() {
	clear(b.recs) // drop the references to payloads
	clear(b.items)
	clear(b.hdrs)
	b.recs, b.items, b.hdrs = b.recs[:0], b.items[:0], b.hdrs[:0]
	if cap(b.arena) > 1<<20 {
		b.arena = nil
	}
	b.arena = b.arena[:0]
	b.size = 0
	if cap(b.recs) > 8*maxGroupRecords {
		b.recs, b.items = nil, nil
	}
}

// commit appends the records of b (numbered from first), waits for their
// durability if an acknowledgement waits for it, and then releases them.
// It returns how many acknowledgements it released.
func (g *group) commit(b *groupBatch, first uint64) int {
	s := g.s
	last := int64(-1)
	waiting := 0
	for i := 0; i < len(b.recs); {
		j, size := i, 0
		for j < len(b.recs) && j-i < maxGroupRecords && (j == i || size+recordSize(&b.recs[j]) <= maxGroupBytes) {
			size += recordSize(&b.recs[j])
			j++
		}
		res, err := g.appendRecs(b.recs[i:j])
		if err != nil && j-i > 1 {
			// Find which records the log refuses: each alone.
			for k := i; k < j; k++ {
				r, err := g.appendRecs(b.recs[k : k+1])
				g.appended(b, k, first, r.LastOffset, err, &waiting)
				if err == nil {
					last = r.LastOffset
				}
			}
		} else {
			for k := i; k < j; k++ {
				g.appended(b, k, first, res.BaseOffset+int64(k-i), err, &waiting)
			}
			if err == nil {
				last = res.LastOffset
			}
		}
		i = j
	}
	if waiting > 0 && last >= 0 {
		if err := g.part.WaitDurable(s.groupCtx, last); err != nil && g.failedFrom.Load() == math.MaxUint64 {
			g.failErr.Store(&err)
			g.failedFrom.Store(first)
		}
	}
	g.done.Store(first + uint64(len(b.recs)))
	g.dmu.Lock()
	close(g.doneCh)
	g.doneCh = make(chan struct{})
	g.dmu.Unlock()
	// The connections whose acknowledgements this commit released, in the
	// order their records were queued, for the acker. A run of one
	// connection's records is one kick; a connection kicked again finds
	// its acknowledgements sent and returns at once.
	g.kmu.Lock()
	n := len(g.kicks)
	var prev *conn
	for k := range b.items {
		if c := b.items[k].c; c != nil && c != prev {
			g.kicks = append(g.kicks, c)
			prev = c
		}
	}
	more := len(g.kicks) > n
	g.kmu.Unlock()
	if more {
		select {
		case g.kickWake <- struct{}{}:
		default:
		}
	}
	return waiting
}

// kickLoop is the acker: it kicks the connections commits released, and
// returns once stop is closed and none is left.
func (g *group) kickLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		g.kmu.Lock()
		list := g.kicks
		g.kicks, g.kickSpare = g.kickSpare[:0], nil
		g.kmu.Unlock()
		for i, c := range list {
			c.kick()
			list[i] = nil
		}
		g.kmu.Lock()
		g.kickSpare = list[:0]
		empty := len(g.kicks) == 0
		g.kmu.Unlock()
		if !empty {
			continue
		}
		select {
		case <-g.kickWake:
		case <-stop:
			g.kmu.Lock()
			empty := len(g.kicks) == 0
			g.kmu.Unlock()
			if empty {
				return
			}
		}
	}
}

// recordSize estimates a record's encoded size.
func recordSize(r *flog.Record) int {
	n := 24 + len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += 8 + len(h.Key) + len(h.Value)
	}
	return n
}

func (g *group) appendRecs(recs []flog.Record) (flog.AppendResult, error) {
	g.enc = flog.AppendBatch(g.enc[:0], recs)
	res, err := g.part.Append(g.enc)
	if cap(g.enc) > 4*maxGroupBytes {
		g.enc = nil
	}
	return res, err
}

// appended settles record k of b (numbered first+k): stored at offset, or
// refused with err.
func (g *group) appended(b *groupBatch, k int, first uint64, offset int64, err error, waiting *int) {
	s := g.s
	it := &b.items[k]
	if err != nil {
		code := packets.ErrImplementationSpecificError
		switch {
		case errors.Is(err, flog.ErrBatchTooLarge):
			code = packets.ErrPacketTooLarge
		case errors.Is(err, flog.ErrDiskBudget):
			code = packets.ErrQuotaExceeded // back-pressure: the disk budget is full of unshipped records
		}
		s.metrics.publish(it.qos, resultError)
		if it.res != nil {
			it.res.code, it.res.err = code, err
			close(it.res.done)
			return
		}
		s.logger.Warn("mqtt: publish not stored", "client", it.client, "topic", g.part.Topic(), "err", err)
		if it.qos == 0 {
			s.metrics.drop(dropNotStored)
		}
		if it.c != nil {
			it.c.refused(g, first+uint64(k), code)
		}
		return
	}
	s.metrics.publish(it.qos, resultStored)
	s.metrics.bytesIn.Add(float64(len(b.recs[k].Value)))
	if s.opts.Presence != nil {
		s.opts.Presence.CountIn(it.device, 1, uint64(len(b.recs[k].Value)))
	}
	if it.c != nil {
		s.dedupe.remember(it.client, it.id, it.hash, g.part, offset)
	}
	if it.res != nil {
		it.res.offset = offset
		close(it.res.done)
	}
	if it.c != nil {
		*waiting++
	}
}

// ready reports whether record seq's commit is done and it is durable.
func (g *group) ready(seq uint64) bool {
	return g.done.Load() > seq && seq < g.failedFrom.Load()
}

// wait blocks until record seq's commit is done, ctx ends or the server
// stops; it returns an error if the record did not become durable.
func (g *group) wait(ctx context.Context, seq uint64) error {
	for {
		if g.done.Load() > seq {
			if seq >= g.failedFrom.Load() {
				return *g.failErr.Load()
			}
			return nil
		}
		g.dmu.Lock()
		ch := g.doneCh
		g.dmu.Unlock()
		if g.done.Load() > seq {
			continue
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// settle waits until every record queued so far has been through its
// commit (so a retransmission finds the original in the dedupe memory).
func (g *group) settle(ctx context.Context) {
	g.mu.Lock()
	n := g.next
	g.mu.Unlock()
	if n > 0 {
		g.wait(ctx, n-1)
	}
}
