package kafka

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// conn is one client connection. Like a Kafka broker, it serves one
// request at a time and answers in request order; pipelined requests wait in
// the socket and the read buffer, except that a produce waiting for
// durability does not hold the connection: its answer waits in the
// connection's queue while the next requests are read (pipeline.go). A
// malformed frame or request closes the connection (and counts), never the
// process.
//
// Its reads have deadlines, so a client cannot hold a connection (and its
// goroutine and buffer) by saying nothing or next to nothing: waiting for a
// request's first byte, Options.IdleTimeout; from there to the request's
// last byte (and for a TLS handshake), Options.RequestTimeout; and with SASL, until authenticated,
// no later than Options.AuthTimeout after the accept. Writes have
// writeTimeout. A connection over its produce quota is muted (quota.go): it
// reads nothing until its throttle time has passed.
type conn struct {
	s        *Server
	nc       net.Conn
	logger   *slog.Logger
	out      []byte // response buffer, reused
	clientID string // of the request being served
	host     string // the client's IP address, for ACLs

	// SASL (sasl.go): the exchange under way, then the principal
	// ("User:NAME") once authenticated; super if it is a super user.
	exchange   *saslExchange
	principal  string
	super      bool
	closeAfter bool // close once the response is written (failed authentication)
	replica    bool // a broker's connection from the cluster listener (ServeReplica)

	authBy   time.Time     // with SASL: closed if not authenticated by then (zero: never)
	throttle time.Duration // set by a produce over quota: how long to mute the connection

	// Set by an acks=all produce for handle: the appended partitions whose
	// durability its answer waits for, and for how long (pipeline.go).
	durable        []durableWait
	durableTimeout time.Duration

	// The answer queue (pipeline.go). ctx ends with the connection and
	// cancels the durability waits, each a goroutine counted in waiters.
	ctx         context.Context
	cancel      context.CancelFunc
	waiters     sync.WaitGroup
	room        chan struct{} // an answer left the queue (capacity 1)
	pmu         sync.Mutex
	answers     []*answer // not yet written, in request order
	answerBytes int       // their requests' frame bytes
	writing     bool      // a goroutine is writing the head of answers
	dropped     bool      // the connection is ending: nothing more is written
}

const writeTimeout = 30 * time.Second

func newConn(s *Server, nc net.Conn) *conn {
	host := nc.RemoteAddr().String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	c := &conn{s: s, nc: nc, host: host, logger: s.logger.With("remote", nc.RemoteAddr().String()), room: make(chan struct{}, 1)}
	c.ctx, c.cancel = context.WithCancel(s.ctx)
	if s.sasl != nil && s.opts.AuthTimeout > 0 {
		c.authBy = time.Now().Add(s.opts.AuthTimeout)
	}
	return c
}

// Reasons a read deadline closes a connection, the values of the timeouts
// metric's label.
const (
	timeoutIdle    = "idle"
	timeoutRequest = "request"
	timeoutAuth    = "authentication"
)

// setReadDeadline sets the deadline of the next reads: d from now (none for
// 0), or, if sooner, the authentication deadline of a connection not yet
// authenticated. It returns which of them it is, for readEnded.
func (c *conn) setReadDeadline(d time.Duration, reason string) string {
	var at time.Time
	if d > 0 {
		at = time.Now().Add(d)
	}
	if !c.authBy.IsZero() && c.principal == "" && (at.IsZero() || c.authBy.Before(at)) {
		at, reason = c.authBy, timeoutAuth
	}
	c.nc.SetReadDeadline(at)
	return reason
}

// readEnded logs, and counts if it was a deadline, why reading a request
// failed; reason is what setReadDeadline returned.
func (c *conn) readEnded(err error, reason string, midRequest bool) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.s.metrics.timeout(reason).Inc()
		c.logger.Info("closing connection: timed out", "reason", reason, "mid_request", midRequest, "authenticated", c.principal != "", "client_id", c.clientID)
		return
	}
	switch {
	case midRequest:
		c.logger.Debug("connection closed mid-request", "err", err)
	case !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed):
		c.logger.Debug("connection read ended", "err", err)
	}
}

// mute waits d (a throttle) without reading, or until the server closes.
func (c *conn) mute(d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.s.ctx.Done():
	}
}

func (c *conn) serve() {
	defer c.endPipeline() // closes nc
	r := bufio.NewReaderSize(c.nc, 64<<10)
	var sizeBuf [4]byte
	var body bytes.Buffer
	if tc, ok := c.nc.(*tls.Conn); ok {
		// The handshake is a request's worth of reading: it may not
		// trickle on for the idle timeout.
		reason := c.setReadDeadline(c.s.opts.RequestTimeout, timeoutRequest)
		c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if err := tc.Handshake(); err != nil {
			c.readEnded(err, reason, true)
			return
		}
	}
	for {
		// Idle until a request's first byte, then the request deadline for
		// the rest of it (a buffered pipelined request starts at once).
		reason := c.setReadDeadline(c.s.opts.IdleTimeout, timeoutIdle)
		if _, err := r.Peek(1); err != nil {
			c.readEnded(err, reason, false)
			return
		}
		reason = c.setReadDeadline(c.s.opts.RequestTimeout, timeoutRequest)
		if _, err := io.ReadFull(r, sizeBuf[:]); err != nil {
			c.readEnded(err, reason, true)
			return
		}
		size := int32(binary.BigEndian.Uint32(sizeBuf[:]))
		limit := c.s.opts.MaxRequestBytes
		if c.s.sasl != nil && c.principal == "" {
			limit = min(limit, preAuthMaxRequestBytes)
		}
		if size < 8 || size > limit {
			c.malformed("frame_size", "request frame size out of bounds", "size", size, "max", limit, "authenticated", c.principal != "")
			return
		}
		// Grow the buffer as bytes arrive, never from the declared size
		// alone: a client cannot make the broker allocate what it does not
		// send.
		body.Reset()
		if _, err := io.CopyN(&body, r, int64(size)); err != nil {
			c.readEnded(err, reason, true)
			return
		}
		key := int16(-1) // the frame is at least 8 bytes: its API key is there
		if b := body.Bytes(); len(b) >= 2 {
			key = int16(binary.BigEndian.Uint16(b))
		}
		c.s.metrics.api(key).bytesIn.Add(float64(size + 4))
		if !c.handle(body.Bytes()) {
			return
		}
	}
}

// headerReader reads the request header, its tagged fields included
// (skipTags). It does not use kmsg.SkipTags, which loops on the count it
// reads until the count is exhausted, bytes or not.
type headerReader struct {
	b   []byte
	bad bool
}

func (r *headerReader) Uvarint() uint32 {
	v, n := uvarint32(r.b) // as kmsg reads a uvarint (prepass.go)
	if n == 0 {
		r.bad, r.b = true, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *headerReader) Span(n int) []byte {
	if n < 0 || n > len(r.b) {
		r.bad, r.b = true, nil
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}

// skipTags skips tagged fields and returns how many there were: a count,
// then each field's key, size and bytes. A field takes at least two bytes
// (key and size), so a count above half the bytes left is refused before
// anything loops on it, and so is a count over maxFrameTags, the cap on a
// frame's header and body tags together (prepass.go).
func (r *headerReader) skipTags() int {
	n := r.Uvarint()
	if r.bad || int64(n) > int64(len(r.b))/2 || n > maxFrameTags {
		r.bad, r.b = true, nil
		return 0
	}
	for i := n; i > 0 && !r.bad; i-- {
		r.Uvarint() // key
		r.Span(int(r.Uvarint()))
	}
	return int(n)
}

func (r *headerReader) int16() int16 {
	s := r.Span(2)
	if s == nil {
		return 0
	}
	return int16(binary.BigEndian.Uint16(s))
}

func (r *headerReader) int32() int32 {
	s := r.Span(4)
	if s == nil {
		return 0
	}
	return int32(binary.BigEndian.Uint32(s))
}

// request is one decoded request with its header fields.
type request struct {
	key, version int16
	corr         int32
	clientID     string
}

// decodeRequest parses a request frame (without its size prefix): header,
// then body at the header's version. It returns a ready response instead of
// a request for an ApiVersions at a version above ours, and on failure the
// reason for the malformed-request counter.
// errUnauthenticated is a request, other than ApiVersions and SASL's, on
// a connection that has not authenticated: its body is never decoded.
var errUnauthenticated = errors.New("request before SASL authentication")

// preAuthAPI reports whether a connection that has not authenticated may
// send key: ApiVersions, SaslHandshake, SaslAuthenticate.
func preAuthAPI(key int16) bool { return key == 18 || key == 17 || key == 36 }

// decodeRequest decodes a request frame. With mayDecode, a request whose
// key it refuses is not decoded past its header (errUnauthenticated): a
// stranger's request costs no allocation its body asks for.
func decodeRequest(frame []byte, mayDecode func(key int16) bool) (rq request, req kmsg.Request, early kmsg.Response, reason string, err error) {
	hr := &headerReader{b: frame}
	rq = request{key: hr.int16(), version: hr.int16(), corr: hr.int32()}
	if n := hr.int16(); n > 0 {
		rq.clientID = string(hr.Span(int(n)))
	}
	if hr.bad {
		return rq, nil, nil, "header", errors.New("truncated request header")
	}
	h, ok := handlers[rq.key]
	if rq.key == 18 && ok && rq.version > h.max {
		// KIP-511: answer an ApiVersions we cannot parse with a v0
		// response listing our range, so the client retries within it.
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.Version = 0
		resp.ErrorCode = kerr.UnsupportedVersion.Code
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = 18, h.min, h.max
		resp.ApiKeys = append(resp.ApiKeys, k)
		return rq, nil, resp, "", nil
	}
	if mayDecode != nil && !mayDecode(rq.key) {
		return rq, nil, nil, "", errUnauthenticated
	}
	if !ok || rq.version < h.min || rq.version > h.max {
		return rq, nil, nil, "unsupported", fmt.Errorf("unsupported API key %d version %d", rq.key, rq.version)
	}
	req = kmsg.RequestForKey(rq.key)
	req.SetVersion(rq.version)
	tags := 0
	if req.IsFlexible() {
		tags = hr.skipTags()
		if hr.bad {
			return rq, nil, nil, "header", errors.New("bad tagged fields in request header")
		}
	}
	// kmsg sizes a slice by a count as if each element took a byte, and
	// keeps each unknown tagged field in a map: walk the body first,
	// refusing it malformed or over maxFrameTags (prepass.go).
	if _, err := prepassBody(rq.key, rq.version, hr.b, tags); err != nil {
		return rq, nil, nil, "body", fmt.Errorf("%s v%d refused before decoding: %w", kmsg.NameForKey(rq.key), rq.version, err)
	}
	if err := req.ReadFrom(hr.b); err != nil {
		return rq, nil, nil, "body", fmt.Errorf("%s v%d does not decode: %w", kmsg.NameForKey(rq.key), rq.version, err)
	}
	return rq, req, nil, "", nil
}

// handle decodes, serves and answers one request (queues its answer: a
// produce's may wait for durability, pipeline.go). false closes the
// connection.
func (c *conn) handle(frame []byte) bool {
	began, size := time.Now(), len(frame)
	var mayDecode func(int16) bool
	if c.s.sasl != nil && c.principal == "" {
		mayDecode = preAuthAPI
	}
	rq, req, early, reason, err := decodeRequest(frame, mayDecode)
	if errors.Is(err, errUnauthenticated) {
		c.s.metrics.unauthenticated.Inc()
		c.logger.Info("closing connection: request before SASL authentication", "api", kmsg.NameForKey(rq.key), "client_id", rq.clientID)
		return false
	}
	if err != nil {
		c.malformed(reason, "malformed request", "err", err, "client_id", rq.clientID)
		return false
	}
	if early != nil {
		return c.drain() && c.answerNext(&answer{rq: rq, resp: early, began: began}, size, nil, 0)
	}
	if !c.s.serves(rq.key) {
		c.malformed("unsupported", "API not served by this broker", "api_key", rq.key)
		return false
	}
	// Only produce is pipelined: anything else is served once every earlier
	// answer is written, as Kafka serves a connection.
	if rq.key != 0 && !c.drain() {
		return false
	}
	c.clientID = rq.clientID
	c.s.metrics.api(rq.key).requests.Inc()
	resp, err := handlers[rq.key].serve(c.s, c.s.ctx, c, req)
	if err != nil {
		c.logger.Info("closing connection", "api", kmsg.NameForKey(rq.key), "err", err)
		return false
	}
	var latency prometheus.Observer
	if pr, ok := req.(*kmsg.ProduceRequest); ok {
		latency = c.s.metrics.produceLatency(pr.Acks)
	}
	hold := c.throttle // a produce over quota (quota.go)
	c.throttle = 0
	waits, timeout := c.durable, c.durableTimeout
	c.durable = nil
	if resp == nil { // acks=0 produce: no response at all
		if latency != nil {
			latency.Observe(time.Since(began).Seconds())
		}
		c.s.metrics.api(rq.key).observe(time.Since(began))
		c.mute(hold)
		return true
	}
	if tr, ok := resp.(kmsg.ThrottleResponse); ok && hold > 0 {
		if _, after := tr.Throttle(); !after {
			// Produce before v6: the client expects the broker to have
			// throttled before answering.
			c.mute(hold)
			hold = 0
		}
	}
	a := &answer{rq: rq, resp: resp, latency: latency, began: began}
	if !c.answerNext(a, size, waits, timeout) {
		return false
	}
	if c.closeAfter || hold > 0 {
		// Muted from the answer on (a produce over quota), or closed once
		// the answer is out (failed authentication).
		if !c.awaitWritten(a) || c.closeAfter {
			return false
		}
	}
	c.mute(hold)
	return true
}

// write encodes and sends a response. Its bytes, and for a produce the time
// since it began, are counted before the write, so a client holding the
// answer finds them in the metrics; the request duration by API is observed
// once the response is written.
func (c *conn) write(rq request, resp kmsg.Response, latency prometheus.Observer, began time.Time) bool {
	b := append(c.out[:0], 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(rq.corr))
	if resp.IsFlexible() && rq.key != 18 { // ApiVersions always uses response header v0
		b = append(b, 0)
	}
	b = resp.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	c.out = b
	if len(c.out) > 1<<20 {
		c.out = nil // do not keep a large fetch's buffer per idle connection
	}
	c.s.metrics.api(rq.key).bytesOut.Add(float64(len(b)))
	if latency != nil {
		latency.Observe(time.Since(began).Seconds())
	}
	c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.nc.Write(b); err != nil {
		c.logger.Debug("write failed", "err", err)
		return false
	}
	c.s.metrics.api(rq.key).observe(time.Since(began))
	return true
}

func (c *conn) malformed(reason, msg string, args ...any) {
	c.s.metrics.malformed.WithLabelValues(reason).Inc()
	c.logger.Warn("closing connection: "+msg, args...)
}
