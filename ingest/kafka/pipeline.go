package kafka

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// Pipelined produce: a connection's answers leave in request order, but a
// produce waiting for durability does not hold its connection.
//
//   - The connection's goroutine (the reader) reads, decodes and serves
//     requests one at a time, as Kafka's broker does; a produce's appends
//     happen there, in request order, so a refused append is answered before
//     the next request is read and an idempotent producer's next batch meets
//     the sequence check exactly as it would in Kafka (a gap is
//     OUT_OF_ORDER_SEQUENCE_NUMBER).
//   - Only the wait for durability (acks=all under the topic's flush.policy)
//     is deferred: it runs in a goroutine per waiting produce, owned by the
//     connection, while the reader goes on to the next request. The fsyncs
//     of every partition the produce appended to are asked for first
//     (SyncSoon), so they run together, not one after another. A failed
//     fsync fails every waiter on the partition (the log's failDurability), so
//     a produce appended behind a failed one fails with it.
//   - Every answer joins the connection's queue in request order and is
//     written once it and every answer before it are complete, by whichever
//     goroutine completes the head (flush): no goroutine sits idle per
//     connection, and an answer that is complete with nothing before it is
//     written by the reader itself, as before pipelining.
//   - Only produce is pipelined. Any other request waits until every answer
//     before it is written (drain): Kafka processes a connection's requests
//     one at a time, and group, SASL and fetch requests keep that order.
//   - The queue is bounded: at most maxPipelined answers and, past the first,
//     maxPipelinedBytes of their requests' frames. A client over either is not
//     read from until answers leave (TCP's back-pressure).
//   - When the connection ends (the client closes, a deadline, a malformed
//     frame, the server's Close), answers not yet written are dropped, as a
//     cut connection loses them, the waits are cancelled, and the reader
//     returns only after every waiter has.
//
// A consumer may read a produce's records once they are appended, before
// they are durable and before the produce is answered, as before pipelining
// (DESIGN.md, README's acknowledgements).
const (
	maxPipelined      = 16
	maxPipelinedBytes = 16 << 20
)

// pipelineLimits bound a connection's answer queue: maxPipelined and
// maxPipelinedBytes, lowered by tests.
type pipelineLimits struct{ answers, bytes int }

// answer is one response in the connection's queue.
type answer struct {
	rq      request
	resp    kmsg.Response
	latency prometheus.Observer // for produce: observed when written
	began   time.Time
	cost    int           // the request's frame bytes, in the queue's bound
	ready   bool          // complete; under conn.pmu
	written chan struct{} // closed once written or dropped
}

// durableWait is one appended partition of a produce whose answer waits for
// the records to be durable.
type durableWait struct {
	p      *flog.Partition
	rl     ReplicaLeader // a replicated partition's leader: the wait is for its high watermark
	last   int64
	ti, pi int // where the partition's answer is in the response
}

// answerNext queues a's answer behind every earlier one, waiting for room
// first, and starts the durability waits of a produce. It returns false if
// the connection is ending.
func (c *conn) answerNext(a *answer, cost int, waits []durableWait, timeout time.Duration) bool {
	c.pmu.Lock()
	for {
		if c.dropped {
			c.pmu.Unlock()
			return false
		}
		n := len(c.answers)
		if n == 0 || n < c.s.pipeline.answers && c.answerBytes+cost <= c.s.pipeline.bytes {
			break
		}
		c.pmu.Unlock()
		select {
		case <-c.room:
		case <-c.ctx.Done():
			return false
		}
		c.pmu.Lock()
	}
	a.cost, a.ready, a.written = cost, len(waits) == 0, make(chan struct{})
	c.answers = append(c.answers, a)
	c.answerBytes += cost
	c.pmu.Unlock()
	if len(waits) > 0 {
		// Every partition's fsync is asked for before the wait begins,
		// so they run together, not one after the other.
		for _, w := range waits {
			w.p.SyncSoon(w.last)
		}
		c.waiters.Add(1)
		go c.awaitDurable(a, waits, timeout)
		return true
	}
	c.flush()
	return true
}

// drain waits until every queued answer is written. It returns false if the
// connection is ending.
func (c *conn) drain() bool {
	for {
		c.pmu.Lock()
		n, dropped := len(c.answers), c.dropped
		c.pmu.Unlock()
		switch {
		case dropped:
			return false
		case n == 0:
			return true
		}
		select {
		case <-c.room:
		case <-c.ctx.Done():
			return false
		}
	}
}

// awaitWritten waits until a is written (or dropped). It returns false if
// the connection ended first.
func (c *conn) awaitWritten(a *answer) bool {
	select {
	case <-a.written:
	case <-c.ctx.Done():
		return false
	}
	c.pmu.Lock()
	defer c.pmu.Unlock()
	return !c.dropped
}

// awaitDurable is a produce's durability wait, in its own goroutine: every
// appended partition durable (a replicated one committed: its high
// watermark past the batch), the request's timeout, or the connection's
// end; then the answer is complete.
func (c *conn) awaitDurable(a *answer, waits []durableWait, timeout time.Duration) {
	defer c.waiters.Done()
	resp := a.resp.(*kmsg.ProduceResponse)
	ctx, cancel := context.WithTimeout(c.ctx, timeout)
	for _, w := range waits {
		wait := w.p.WaitDurable
		if w.rl != nil {
			wait = w.rl.WaitCommitted
		}
		if err := wait(ctx, w.last); err != nil {
			code := errorCode(err)
			resp.Topics[w.ti].Partitions[w.pi].ErrorCode = code
			c.s.metrics.partitionError("Produce", code)
		}
	}
	cancel()
	c.pmu.Lock()
	a.ready = true
	c.pmu.Unlock()
	c.flush()
}

// flush writes the complete answers at the head of the queue, unless
// another goroutine is writing (it will see them: readiness and the check
// are under c.pmu). A failed write closes the connection; from then on, and
// once the connection is ending, answers are dropped instead.
func (c *conn) flush() {
	c.pmu.Lock()
	if c.writing {
		c.pmu.Unlock()
		return
	}
	c.writing = true
	for len(c.answers) > 0 && (c.answers[0].ready || c.dropped) {
		a, dropped := c.answers[0], c.dropped
		c.pmu.Unlock()
		ok := !dropped && c.write(a.rq, a.resp, a.latency, a.began)
		if !ok {
			c.nc.Close() // the reader's next read fails: the connection ends
		}
		close(a.written)
		c.pmu.Lock()
		c.answers[0] = nil
		c.answers = c.answers[1:]
		c.answerBytes -= a.cost
		c.dropped = c.dropped || !ok
		select {
		case c.room <- struct{}{}:
		default:
		}
	}
	c.writing = false
	c.pmu.Unlock()
}

// endPipeline is the reader's last act: answers still queued are dropped,
// the waits cancelled, and it returns once every waiter has ended.
func (c *conn) endPipeline() {
	c.pmu.Lock()
	c.dropped = true
	c.pmu.Unlock()
	c.cancel()
	c.nc.Close()
	c.waiters.Wait()
	c.flush()
}
