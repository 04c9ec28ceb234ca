package mqtt

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	flog "ferry/log"
)

// conn is ferry's state for one connected client: who it is, and the
// acknowledgements it is owed, in the order its publishes arrived.
//
// A QoS 1/2 publish is queued for its partition's group commit (group.go)
// and its acknowledgement queued here; the connection goes on reading.
// Acknowledgements leave from the head of the queue, in publish order (MQTT
// requires that for QoS 1), sent by whoever finds the head due while nobody
// else sends for the connection (running): usually the acker of the group
// whose commit made them durable (kick), writing them itself when the
// socket takes them at once; otherwise a drain goroutine, which also waits
// for those no commit reports (a retransmission's, waited for on its
// original's partition) and exits once the head waits for a commit (which
// kicks the connection again) or the queue is empty (for a connection that
// is not a socket, drainLinger after it). One slow fsync never holds up
// the next append, and an idle connection holds no goroutine.
type conn struct {
	s        *Server
	cl       *mqtt.Client
	device   string
	username string
	v5       bool
	ctx      context.Context // ends when the connection does
	cancel   context.CancelFunc
	inline   *mqtt.Client  // made on the first QoS 1/2 publish; see Server.deliver
	scratch  recordScratch // builds this connection's records (its read goroutine only)

	// established is set once the connection's session is inherited and
	// resent (Server.establish): until then mochi may still replace the
	// client's state, so the sweep leaves it alone.
	established atomic.Bool

	mu         sync.Mutex
	unreleased int // QoS 2 publishes PUBREC'd and waiting for their PUBREL
	queue      []pendingAck
	qbuf       []pendingAck  // the queue's array, reused once the queue is empty
	running    bool          // a committer or a drain goroutine sends for the connection
	lingering  bool          // the drain waits for the next acknowledgement (wake)
	space      chan struct{} // closed and replaced when the queue shrinks, if waited on
	waited     bool          // someone waits on space
	early      []refusal     // refusals of records whose acknowledgement is not queued yet

	// Owned by whoever sends (running), kept so that sending allocates
	// nothing.
	batch []pendingAck
	buf   bytes.Buffer

	// wake tells a lingering drain that the head is due (a connection
	// that is not a socket: its drain writes every acknowledgement).
	wake chan struct{}

	// The socket, for writes that must not wait (kick); nil when the
	// connection is not one (TLS, WebSocket). The callback and its
	// results are made once, as the reader's are.
	raw        syscall.RawConn
	onWritable func(fd uintptr) bool
	wbuf       []byte
	wn         int
	werr       error
}

// maxKeptQueue bounds the queue array a connection keeps between bursts.
const maxKeptQueue = 64

// pendingAck is one acknowledgement to send: PUBACK (QoS 1) or PUBREC
// (QoS 2) with code, once part is durable up to offset, or once record seq
// of group g is committed (both nil: at once). drop: send nothing (the
// connection is being closed instead).
type pendingAck struct {
	id       uint16
	qos      byte
	drop     bool
	code     packets.Code
	part     *flog.Partition
	offset   int64
	g        *group
	seq      uint64
	appended time.Time
}

// ready reports whether the acknowledgement may be sent now.
func (a *pendingAck) ready() bool {
	return (a.part == nil || a.part.DurableOffset() > a.offset) && (a.g == nil || a.g.ready(a.seq))
}

// refusal is a record of group g the log refused, with the reason.
type refusal struct {
	g    *group
	seq  uint64
	code packets.Code
}

// refused is told by g's committer that the log refused record seq, which
// this connection published: an MQTT 5 client is answered code, an MQTT
// 3.1.1 client (which cannot be) is disconnected and retransmits. It comes
// before the commit's end, so the acknowledgement is never sent as a
// success; if the reader has not queued it yet, enqueue applies it.
func (c *conn) refused(g *group, seq uint64, code packets.Code) {
	c.mu.Lock()
	found := false
	for i := range c.queue {
		if a := &c.queue[i]; a.g == g && a.seq == seq {
			c.refuse(a, code)
			found = true
			break
		}
	}
	if !found {
		c.early = append(c.early, refusal{g, seq, code})
	}
	c.mu.Unlock()
	if !c.v5 {
		c.s.broker.DisconnectClient(c.cl, code)
	}
}

// refuse turns a queued acknowledgement into a refusal. c.mu is held.
func (c *conn) refuse(a *pendingAck, code packets.Code) {
	a.g = nil
	if c.v5 {
		a.code = code
	} else {
		a.drop = true
	}
}

func newConn(s *Server, cl *mqtt.Client, device, username string) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{s: s, cl: cl, device: device, username: username, v5: cl.Properties.ProtocolVersion == 5,
		ctx: ctx, cancel: cancel, space: make(chan struct{})}
	if pc, ok := cl.Net.Conn.(*preConn); ok {
		if c.raw = rawSocket(pc.Conn); c.raw != nil {
			c.onWritable = c.writable
		}
	}
	if c.raw == nil {
		c.wake = make(chan struct{}, 1)
	}
	return c
}

// drainLinger is how long the drain of a connection that is not a socket
// (TLS, WebSocket) waits for the next acknowledgement before it exits. No
// acker can write such a connection's acknowledgements without waiting,
// so its drain writes them all; a one-in-flight device would otherwise
// start a drain goroutine per publish (its start, its stack grown to the
// depth of a TLS write, its exit).
const drainLinger = 50 * time.Millisecond

// startDrain starts a drain goroutine, the connection's sender (the
// caller set running).
func (c *conn) startDrain() {
	c.s.acks.Add(1)
	c.s.drains.Add(1)
	go c.drain()
}

// wakeLocked wakes a lingering drain if the head is due. c.mu is held.
func (c *conn) wakeLocked() {
	if c.lingering && len(c.queue) > 0 && c.due(&c.queue[0]) {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// inlineClient returns the inline client that delivers this connection's
// QoS 1/2 publishes. It is used only from the connection's read goroutine.
func (c *conn) inlineClient() *mqtt.Client {
	if c.inline == nil {
		c.inline = c.s.broker.NewClient(nil, "local", c.cl.ID, true)
		// mochi honours a message's expiry (retained, queued, in flight)
		// only on packets of protocol version 5, and an injected packet
		// takes its client's version: 3.1.1 unless told.
		c.inline.Properties.ProtocolVersion = c.cl.Properties.ProtocolVersion
	}
	return c.inline
}

// enqueue queues an acknowledgement. When the client already has
// ReceiveMaximum of them outstanding, an MQTT 5 client has broken the limit
// it was given and is disconnected (reason 0x93); an MQTT 3.1.1 client,
// which was given none, is made to wait (its reads stop: back-pressure).
// For MQTT 5 a QoS 2 flow counts until its PUBREL, as the spec's Receive
// Maximum does; a 3.1.1 client waiting here could not send that PUBREL.
func (c *conn) enqueue(a pendingAck) bool {
	limit := int(c.s.opts.ReceiveMaximum)
	c.mu.Lock()
	for len(c.queue)+c.unreleased >= limit {
		if c.v5 {
			c.mu.Unlock()
			c.s.broker.DisconnectClient(c.cl, packets.ErrReceiveMaximum)
			return false
		}
		space := c.space
		c.waited = true
		c.mu.Unlock()
		select {
		case <-space:
		case <-c.ctx.Done():
			return false
		}
		c.mu.Lock()
	}
	if len(c.queue) == 0 {
		c.queue = c.qbuf[:0] // start again at the array's beginning
	}
	c.queue = append(c.queue, a)
	if a.g != nil && len(c.early) > 0 {
		for i, r := range c.early {
			if r.g == a.g && r.seq == a.seq {
				c.refuse(&c.queue[len(c.queue)-1], r.code)
				c.early = append(c.early[:i], c.early[i+1:]...)
				break
			}
		}
	}
	if len(c.queue) == 1 && cap(c.queue) <= maxKeptQueue {
		c.qbuf = c.queue[:0]
	}
	// Unless someone sends already, or the head waits for its commit
	// (which kicks the connection), a drain sends or waits.
	start := !c.running && c.due(&c.queue[0])
	if start {
		c.running = true
	}
	c.wakeLocked()
	c.mu.Unlock()
	if a.part != nil {
		// The fsync is asked for now, not when the drain reaches this
		// acknowledgement: one waiting on another partition's fsync
		// ahead of it then does not delay this one's.
		a.part.SyncSoon(a.offset)
	}
	if start {
		c.startDrain()
	}
	return true
}

// due reports whether a queued acknowledgement needs its sender now: it
// waits for no commit, or its commit is done (even if it failed). c.mu is
// held.
func (c *conn) due(a *pendingAck) bool {
	return a.g == nil || a.g.done.Load() > a.seq
}

// outstanding returns how many acknowledgements are queued.
func (c *conn) outstanding() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// drain sends queued acknowledgements in order, each once its record is
// durable, and exits when the queue is empty, its head waits for a commit
// (which kicks the connection when done), or the connection ends (unsent
// acknowledgements are then retransmitted by the client and recognised as
// duplicates). Every acknowledgement that is ready when the head is leaves
// in the same write. The caller made it the connection's sender (running)
// and counted it in s.acks.
func (c *conn) drain() {
	defer c.s.acks.Done()
	c.drainLoop()
}

func (c *conn) drainLoop() {
	var linger *time.Timer
	defer func() {
		if linger != nil {
			linger.Stop()
		}
	}()
	lingered := false
	for {
		c.mu.Lock()
		if len(c.queue) == 0 || c.ctx.Err() != nil || !c.due(&c.queue[0]) {
			if c.wake == nil || lingered || c.ctx.Err() != nil {
				c.stopLocked()
				c.mu.Unlock()
				return
			}
			c.lingering = true
			c.mu.Unlock()
			if linger == nil {
				linger = time.NewTimer(drainLinger)
			} else {
				linger.Reset(drainLinger)
			}
			select {
			case <-c.wake:
			case <-linger.C:
				lingered = true
			case <-c.ctx.Done():
			case <-c.s.quit:
				lingered = true
			}
			c.mu.Lock()
			c.lingering = false
			c.mu.Unlock()
			continue
		}
		lingered = false
		head := c.queue[0]
		c.mu.Unlock()

		var err error
		part := head.part
		switch {
		case head.g != nil:
			part = head.g.part
			err = head.g.wait(c.ctx, head.seq)
		case head.part != nil:
			err = head.part.WaitDurable(c.ctx, head.offset)
		}
		if err != nil {
			if c.ctx.Err() == nil {
				// The partition could not be made durable: no
				// acknowledgement may claim it was. Closing the
				// connection makes the client retransmit.
				c.s.logger.Error("mqtt: record not durable; closing the connection so the client retransmits",
					"client", c.cl.ID, "topic", part.Topic(), "partition", part.ID(), "err", err)
				c.s.broker.DisconnectClient(c.cl, packets.ErrUnspecifiedError)
				c.cancel()
			}
			continue
		}
		if batch := c.readyBatch(); len(batch) > 0 {
			c.send(batch)
		}
	}
}

// stopLocked ends the current sender's turn; a connection that ended
// abandons its queue. c.mu is held.
func (c *conn) stopLocked() {
	if len(c.queue) == 0 || c.ctx.Err() != nil {
		c.queue = c.qbuf[:0]
	}
	c.running = false
}

// readyBatch returns the acknowledgements at the head of the queue that
// may be sent now (at most maxAckBatch), in the sender's batch slice.
func (c *conn) readyBatch() []pendingAck {
	c.mu.Lock()
	defer c.mu.Unlock()
	batch := c.batch[:0]
	for i := range c.queue {
		a := &c.queue[i]
		if len(batch) == maxAckBatch || !a.ready() {
			break
		}
		batch = append(batch, *a)
	}
	if cap(batch) <= maxKeptQueue {
		c.batch = batch[:0]
	}
	return batch
}

// sent takes n sent acknowledgements off the queue, of which rel are QoS
// 2 flows now waiting for their PUBREL.
func (c *conn) sent(n, rel int) {
	c.mu.Lock()
	c.queue = c.queue[n:]
	c.unreleased += rel
	if c.waited {
		close(c.space)
		c.space = make(chan struct{})
		c.waited = false
	}
	c.mu.Unlock()
}

// kick is told by a group's acker that a commit holding records of this
// connection is done. Unless someone sends for the connection already, it
// sends what is ready itself, as long as the client's lock is free and the
// socket takes the acknowledgements without waiting (a write the socket
// took only part of is finished by a drain, handed the client's lock);
// whatever remains due is left to a drain. A slow or stalled client
// therefore never holds up the acker.
func (c *conn) kick() {
	c.mu.Lock()
	if c.running || len(c.queue) == 0 || !c.due(&c.queue[0]) {
		c.wakeLocked()
		c.mu.Unlock()
		return
	}
	c.running = true
	c.mu.Unlock()
send:
	for {
		batch := c.readyBatch()
		if len(batch) == 0 {
			break
		}
		switch c.trySend(batch) {
		case sendHanded:
			return // a drain finishes the write and goes on
		case sendNotTried:
			break send // the head is due: a drain sends it
		}
	}
	c.mu.Lock()
	if len(c.queue) > 0 && c.ctx.Err() == nil && c.due(&c.queue[0]) {
		// Not sent here, or due but not ready: a failed commit, or a
		// wait on a partition.
		c.mu.Unlock()
		c.startDrain()
		return
	}
	c.stopLocked()
	c.mu.Unlock()
}

const (
	sendDone = iota
	sendNotTried
	sendHanded
)

// trySend writes batch at once if it can without waiting: the client's
// lock free and the connection a socket. sendNotTried: nothing was done.
// sendDone: written (or the client is gone) and taken off the queue.
// sendHanded: the socket took part of it; a drain, given the client's
// lock, writes the rest.
func (c *conn) trySend(batch []pendingAck) int {
	if c.raw == nil || !c.cl.TryLock() {
		return sendNotTried
	}
	rel, b := c.encodeFor(batch)
	if b == nil {
		c.cl.Unlock()
		c.wrote(nil, len(batch), rel)
		return sendDone
	}
	n, err := c.writeNow(b)
	if err == nil && n < len(b) {
		c.s.acks.Add(1)
		go c.finish(b[n:], len(batch), rel)
		return sendHanded
	}
	c.cl.Unlock()
	c.wrote(err, len(batch), rel)
	return sendDone
}

// finish writes the rest of a batch trySend began, holding the client's
// lock it was given, and goes on as the connection's drain.
func (c *conn) finish(rest []byte, n, rel int) {
	defer c.s.acks.Done()
	_, err := c.cl.Net.Conn.Write(rest)
	c.cl.Unlock()
	c.wrote(err, n, rel)
	c.drainLoop()
}

// writeNow writes b to the socket once, without waiting for it to be
// writable: it returns how much it took (0 when it could take nothing).
func (c *conn) writeNow(b []byte) (int, error) {
	c.wbuf = b
	err := c.raw.Write(c.onWritable)
	n, werr := c.wn, c.werr
	c.wbuf, c.werr = nil, nil
	switch {
	case err != nil:
		return 0, err
	case werr == syscall.EAGAIN:
		return 0, nil
	case werr != nil:
		return 0, os.NewSyscallError("write", werr)
	}
	return n, nil
}

// writable is raw.Write's callback: one write, done whatever it took.
func (c *conn) writable(fd uintptr) bool {
	c.wn, c.werr = writeFD(fd, c.wbuf)
	return true
}

// successAcks are mochi's encodings of a successful PUBACK (index 1) and
// PUBREC (index 2) with packet id 0: two header bytes and the id. They are
// the same under MQTT 3.1.1 and 5 (reason 0 and no properties are left out).
var successAcks = func() (t [3][4]byte) {
	for qos, typ := range map[int]byte{1: packets.Puback, 2: packets.Pubrec} {
		var buf bytes.Buffer
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: typ}, ProtocolVersion: 5}
		if err := pk.PubackEncode(&buf); err != nil || buf.Len() != 4 {
			panic(fmt.Sprintf("mqtt: unexpected acknowledgement encoding %x (%v)", buf.Bytes(), err))
		}
		copy(t[qos][:], buf.Bytes())
	}
	return t
}()

// maxAckBatch bounds the acknowledgements written at once.
const maxAckBatch = 256

// send writes acknowledgements in one write: PUBACK (QoS 1) or PUBREC
// (QoS 2), and takes them off the queue. A successful PUBREC is recorded
// in the client's inflight state first, so mochi answers the PUBREL with
// PUBCOMP. The write takes the client's lock, as mochi's own writes do.
func (c *conn) send(batch []pendingAck) {
	rel, b := c.encodeFor(batch)
	var err error
	if b != nil {
		c.cl.Lock()
		_, err = c.cl.Net.Conn.Write(b)
		c.cl.Unlock()
	}
	c.wrote(err, len(batch), rel)
}

// encodeFor encodes batch into c.buf (see encode) and returns the bytes
// to write, counted as sent (before the write: a client holding the
// acknowledgement finds it counted), or nil when the client is gone.
func (c *conn) encodeFor(batch []pendingAck) (rel int, b []byte) {
	rel = c.encode(batch, &c.buf)
	if c.cl.Closed() || c.cl.Net.Conn == nil {
		return rel, nil
	}
	c.s.metrics.ackBytes.Add(int64(c.buf.Len()))
	return rel, c.buf.Bytes()
}

// wrote takes n written acknowledgements off the queue, rel of them QoS 2
// flows now waiting for their PUBREL (counted here, once, against Receive
// Maximum). A failed write is only logged: the client retransmits and is
// recognised.
func (c *conn) wrote(err error, n, rel int) {
	if err != nil {
		c.s.logger.Debug("mqtt: acknowledgements not sent", "client", c.cl.ID, "count", n, "err", err)
	}
	c.sent(n, rel)
}

// encode puts batch's acknowledgements in buf, recording each successful
// PUBREC in the client's inflight state, and returns how many QoS 2 flows
// of an MQTT 5 client now wait for their PUBREL (see wrote).
func (c *conn) encode(batch []pendingAck, buf *bytes.Buffer) (rel int) {
	buf.Reset()
	now := time.Now()
	for _, a := range batch {
		if a.drop {
			continue
		}
		if !a.appended.IsZero() {
			c.s.metrics.ackWait.Observe(now.Sub(a.appended).Seconds())
		}
		typ := packets.Puback
		if a.qos == 2 {
			typ = packets.Pubrec
		}
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: typ}, PacketID: a.id, ReasonCode: a.code.Code,
			ProtocolVersion: c.cl.Properties.ProtocolVersion, Created: now.Unix()}
		if a.code.Code >= packets.ErrUnspecifiedError.Code {
			pk.Properties.ReasonString = a.code.Reason
			pk.PubackEncode(buf) // the same encoding serves PUBREC
			continue
		}
		if a.qos == 2 && c.cl.State.Inflight.Set(pk) && c.v5 {
			rel++
		}
		// A successful acknowledgement is the same bytes but for its
		// packet id: mochi's encoding of it, with the id put in.
		t := &successAcks[a.qos&3]
		n := len(buf.Bytes())
		buf.Write(t[:])
		b := buf.Bytes()[n:]
		b[2], b[3] = byte(a.id>>8), byte(a.id)
	}
	return rel
}

// released is told that a QoS 2 flow's PUBREC state ended (its PUBREL came,
// or a retransmitted PUBLISH will be acknowledged again).
func (c *conn) released() {
	if !c.v5 {
		return
	}
	c.mu.Lock()
	c.unreleased-- // may pass below zero until the drain adds the flow it sent: a PUBREL can beat it
	c.mu.Unlock()
}

// countUnreleased counts the QoS 2 flows a resumed session brings, still
// waiting for their PUBREL.
func (c *conn) countUnreleased() {
	if !c.v5 || c.cl.State.Inflight.Len() == 0 {
		return
	}
	n := 0
	for _, pk := range c.cl.State.Inflight.GetAll(false) {
		if pk.FixedHeader.Type == packets.Pubrec {
			n++
		}
	}
	c.mu.Lock()
	c.unreleased = n
	c.mu.Unlock()
}
