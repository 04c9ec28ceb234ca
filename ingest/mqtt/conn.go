package mqtt

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	flog "ferry/log"
)

// conn is ferry's state for one connected client: who it is, and the
// acknowledgements it is owed, in the order its publishes arrived.
//
// A QoS 1/2 publish is appended at once and its acknowledgement queued;
// the connection goes on reading. A drain goroutine, running only while
// acknowledgements are queued and for drainLinger after, waits for each
// one's record to be durable and writes it, so acknowledgements leave in
// publish order (MQTT requires that for QoS 1) and one slow fsync never
// holds up the next append.
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

	mu         sync.Mutex
	unreleased int // QoS 2 publishes PUBREC'd and waiting for their PUBREL
	queue      []pendingAck
	qbuf       []pendingAck  // the queue's array, reused once the queue is empty
	running    bool          // a drain goroutine owns the queue's head
	wake       chan struct{} // (1) tells a lingering drain the queue has more
	space      chan struct{} // closed and replaced when the queue shrinks, if waited on
	waited     bool          // someone waits on space
	early      []refusal     // refusals of records whose acknowledgement is not queued yet

	// Owned by the running drain goroutine (at most one at a time), kept
	// so that a drain per message, the one-in-flight client's pattern,
	// allocates nothing.
	batch []pendingAck
	buf   bytes.Buffer
}

// maxKeptQueue bounds the queue array a connection keeps between bursts.
const maxKeptQueue = 64

// drainLinger is how long a drain goroutine waits for the next
// acknowledgement once its queue is empty before it exits. A client that
// waits for each PUBACK before its next publish empties the queue every
// time; a drain started for each publish cost a goroutine start, the
// growth of its stack to the depth of a socket write, and its exit, per
// message. Lingering past one group commit (10 ms by default) and the
// client's round trip keeps one drain per active publisher; an idle
// connection holds none.
const drainLinger = 50 * time.Millisecond

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
	return &conn{s: s, cl: cl, device: device, username: username, v5: cl.Properties.ProtocolVersion == 5,
		ctx: ctx, cancel: cancel, space: make(chan struct{}), wake: make(chan struct{}, 1)}
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
	start := !c.running
	c.running = true
	c.mu.Unlock()
	if a.part != nil {
		// The fsync is asked for now, not when the drain reaches this
		// acknowledgement: one waiting on another partition's fsync
		// ahead of it then does not delay this one's.
		a.part.SyncSoon(a.offset)
	}
	if start {
		c.s.acks.Add(1)
		go c.drain()
	} else {
		select {
		case c.wake <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
	return true
}

// outstanding returns how many acknowledgements are queued.
func (c *conn) outstanding() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// drain sends queued acknowledgements in order, each once its record is
// durable, and exits when the queue has stayed empty for drainLinger, the
// server is closing with the queue empty, or the connection ends (unsent
// acknowledgements are then retransmitted by the client and recognised as
// duplicates). Every acknowledgement that is ready when the head becomes
// durable (one fsync usually covers many) leaves in the same write.
func (c *conn) drain() {
	defer c.s.acks.Done()
	var linger *time.Timer
	defer func() {
		if linger != nil {
			linger.Stop()
		}
	}()
	for {
		c.mu.Lock()
		if len(c.queue) == 0 && c.ctx.Err() == nil {
			c.mu.Unlock()
			if linger == nil {
				linger = time.NewTimer(drainLinger)
			} else {
				linger.Reset(drainLinger)
			}
			select {
			case <-c.wake:
				continue
			case <-linger.C:
			case <-c.ctx.Done():
			case <-c.s.quit:
			}
			c.mu.Lock()
		}
		if len(c.queue) == 0 || c.ctx.Err() != nil {
			c.queue = c.qbuf[:0]
			c.running = false
			c.mu.Unlock()
			return
		}
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
		c.mu.Lock()
		batch := c.batch[:0]
		for i := range c.queue {
			a := &c.queue[i]
			if len(batch) == maxAckBatch || !a.ready() {
				break
			}
			batch = append(batch, *a)
		}
		c.mu.Unlock()

		rel := c.send(batch, &c.buf)
		if cap(batch) <= maxKeptQueue {
			c.batch = batch[:0]
		}

		c.mu.Lock()
		c.queue = c.queue[len(batch):]
		c.unreleased += rel
		if c.waited {
			close(c.space)
			c.space = make(chan struct{})
			c.waited = false
		}
		c.mu.Unlock()
	}
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
// (QoS 2). A successful PUBREC is recorded in the client's inflight state
// first, so mochi answers the PUBREL with PUBCOMP. The write takes the
// client's lock, as mochi's own writes do.
//
// It returns how many QoS 2 flows of an MQTT 5 client now wait for their
// PUBREL, which the caller counts as it takes the batch off the queue (so
// that a flow never counts twice, or not at all, against Receive Maximum).
func (c *conn) send(batch []pendingAck, buf *bytes.Buffer) (rel int) {
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
		pk := packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: typ},
			PacketID:        a.id,
			ReasonCode:      a.code.Code,
			ProtocolVersion: c.cl.Properties.ProtocolVersion,
			Created:         now.Unix(),
		}
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
	if c.cl.Closed() || c.cl.Net.Conn == nil {
		return rel
	}
	c.s.metrics.ackBytes.Add(int64(buf.Len())) // before the write: a client holding the acknowledgement finds it counted
	c.cl.Lock()
	_, err := c.cl.Net.Conn.Write(buf.Bytes())
	c.cl.Unlock()
	if err != nil {
		c.s.logger.Debug("mqtt: acknowledgements not sent", "client", c.cl.ID, "count", len(batch), "err", err)
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
