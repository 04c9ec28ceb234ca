package kafka

import (
	"math"
	"sync"
	"time"
)

// Produce quotas (Options.ProduceQuota), as Kafka's user and client-id
// quotas work since KIP-219:
//
//   - The principal is the SASL user (User:NAME) with SASL on, else the
//     client id: every connection of a principal draws on the same bucket.
//   - A Produce request costs the bytes of its records (every partition's,
//     whatever the answer), taken from a token bucket that fills at the quota
//     and holds at most the burst. It may go below zero: the debt is what
//     the principal sent over its quota.
//   - A request that leaves the bucket in debt is still appended and
//     answered, with throttle_time_ms the time the debt takes to be paid;
//     then the connection reads nothing more for that long (it is muted), so
//     a client that ignores the throttle is held back all the same. Produce
//     v3-5 clients expect the broker to throttle before answering (Kafka
//     before 2.0): their answer is delayed instead. acks=0 requests are not
//     answered but mute the connection too.
//   - Counted in ferry_kafka_throttled_requests_total and
//     ferry_kafka_throttle_seconds_total (no principal label: too many).
//
// A full bucket is the same as none, so buckets full at a sweep are dropped:
// a client inventing client ids costs one small entry each until the next
// sweep, which runs when the map has doubled since the last.

// produceQuotas are the principals' token buckets.
type produceQuotas struct {
	rate, burst float64 // bytes per second, bytes

	mu      sync.Mutex
	buckets map[string]*quotaBucket // by principal
	sweepAt int                     // sweep when the map is this large
}

// quotaBucket is one principal's tokens (bytes; negative: debt) at a time.
type quotaBucket struct {
	tokens float64
	at     time.Time
}

// newProduceQuotas returns the quotas for a rate in bytes per second (nil
// for 0: no quota) and a burst in bytes (0: one second of the rate).
func newProduceQuotas(rate, burst int64) *produceQuotas {
	if rate <= 0 {
		return nil
	}
	if burst <= 0 {
		burst = rate
	}
	return &produceQuotas{rate: float64(rate), burst: float64(burst), buckets: map[string]*quotaBucket{}, sweepAt: 1024}
}

// charge takes n bytes from principal's bucket at now and returns how long
// the principal must wait to be back within its quota (0: it is).
func (q *produceQuotas) charge(principal string, n int, now time.Time) time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	b := q.buckets[principal]
	if b == nil {
		if len(q.buckets) >= q.sweepAt {
			q.sweep(now)
		}
		b = &quotaBucket{tokens: q.burst, at: now}
		q.buckets[principal] = b
	}
	b.refill(now, q.rate, q.burst)
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(math.Ceil(-b.tokens / q.rate * float64(time.Second)))
}

// sweep drops the buckets that are full at now; q.mu is held.
func (q *produceQuotas) sweep(now time.Time) {
	for p, b := range q.buckets {
		if b.refill(now, q.rate, q.burst); b.tokens >= q.burst {
			delete(q.buckets, p)
		}
	}
	q.sweepAt = max(1024, 2*len(q.buckets))
}

func (b *quotaBucket) refill(now time.Time, rate, burst float64) {
	if el := now.Sub(b.at); el > 0 {
		b.tokens = min(burst, b.tokens+rate*el.Seconds())
		b.at = now
	}
}

// quotaPrincipal is whom a connection's produce requests are charged to.
func (c *conn) quotaPrincipal() string {
	if c.s.sasl != nil {
		return c.principal
	}
	return "client-id:" + c.clientID
}

// throttleProduce charges a Produce request's record bytes to the
// connection's principal. Over quota, it returns the throttle time for the
// answer and has the connection muted (or the answer delayed) for as long.
func (c *conn) throttleProduce(recordBytes int) int32 {
	q := c.s.quotas
	if q == nil {
		return 0
	}
	d := q.charge(c.quotaPrincipal(), recordBytes, time.Now())
	if d <= 0 {
		return 0
	}
	d = min(d, time.Duration(math.MaxInt32)*time.Millisecond)
	c.throttle = d
	c.s.metrics.throttled.Inc()
	c.s.metrics.throttleSeconds.Add(d.Seconds())
	return int32((d + time.Millisecond - 1) / time.Millisecond)
}
