package mirror

import (
	"bufio"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"

	flog "ferry/log"
	"ferry/mirror/wire"
)

// Target is what the receiver needs of the center's storage: topics it can
// create and the copies it appends to at given offsets. A *log.Log is one
// through LogTarget; a replicated log can sit behind the same narrow
// interface later.
type Target interface {
	PartitionCount(topic string) (int32, error)
	CreateTopic(name string, partitions int32, configs map[string]string) (flog.TopicInfo, error)
	AddPartitions(name string, total int32) error
	// Partition returns one partition of the center: the copy of an edge's
	// partition, or its staged live tail (tail.go).
	Partition(topic string, partition int32) (Copy, error)
}

// Copy is what the receiver needs of one partition it writes at the
// center, the copy of an edge's partition or its staged live tail: where
// it starts and ends, appends that keep the edge's offsets, a durability
// wait before acknowledging, and reads and clearing for the live-tail
// merge. *log.Partition is one; a replicated partition can sit behind it.
type Copy interface {
	// StartOffset, EndOffset and DurableOffset are where the partition
	// starts, where the next append goes, and how far it is durable; Size
	// is the bytes it holds (0 and start == end: it never held anything).
	StartOffset() int64
	EndOffset() int64
	DurableOffset() int64
	Size() int64
	// AppendAt appends batches at the offsets they carry, which must
	// continue the partition (log.ErrOffsetMismatch otherwise); AppendGap
	// appends a record-less batch spanning from..to (offsets the edge
	// dropped).
	AppendAt(batches ...[]byte) (flog.AppendResult, error)
	AppendGap(from, to int64, timestamp int64) (flog.AppendResult, error)
	// SyncSoon asks for the partition to be durable up to offset without
	// waiting; WaitDurable waits until it is (or ctx ends, or an fsync
	// fails).
	SyncSoon(offset int64)
	WaitDurable(ctx context.Context, offset int64) error
	// Read reads whole batches from offset on (the merge of a staged tail
	// into its copy); Clear empties the partition, keeping its end (a
	// staged tail once merged).
	Read(offset int64, maxBytes int, dst []byte) (flog.ReadResult, error)
	Clear() error
}

// LogTarget is a *log.Log as the receiver's Target. An adapter, because
// Go's method sets are exact: log.Log.Partition returns *log.Partition,
// and a method returning a concrete type does not satisfy one returning
// an interface it implements.
type LogTarget struct{ *flog.Log }

// Partition returns the log's partition as a Copy (a nil interface, not a
// nil *log.Partition, with an error).
func (t LogTarget) Partition(topic string, partition int32) (Copy, error) {
	p, err := t.Log.Partition(topic, partition)
	if err != nil {
		return nil, err
	}
	return p, nil
}

var (
	_ Target = LogTarget{}
	_ Copy   = (*flog.Partition)(nil)
)

// Cluster places the receiver among the nodes of a center cluster: an
// edge's copies live together on one node (its home), which alone
// receives it. Nil: a center of one node.
type Cluster interface {
	// Admit is asked once an edge has authenticated: it registers the
	// edge's session here, which fences any older one on any node, and
	// answers its epoch; or it refuses the edge with an error saying where
	// it ships instead (its home is another node, or is down).
	Admit(edge string) (epoch int64, err error)
	// Current says whether epoch is still the edge's newest session, here.
	Current(edge string, epoch int64) bool
	// CreateTopic creates an edge's topic at the center, placed with the
	// edge's other topics (here, once admitted); AddPartitions grows one.
	CreateTopic(edge, name string, partitions int32, configs map[string]string) (flog.TopicInfo, error)
	AddPartitions(name string, total int32) error
	// Leads says whether this node leads a partition of the center.
	Leads(topic string, partition int32) bool
}

// ReceiverOptions configure a Receiver.
type ReceiverOptions struct {
	// Log is the center's storage: LogTarget{l} for a *log.Log.
	Log Target
	// Cluster, for a node of a center cluster; nil: a center of one node.
	Cluster Cluster
	// Tokens maps edge ids to their tokens. An edge connecting over TLS
	// with a client certificate the listener verified is known by the
	// certificate's common name (or a DNS name in it), which must be its
	// edge id; it needs no token unless Tokens lists one for it too (then
	// both must hold). Any other edge must be in Tokens.
	Tokens map[string]string
	// TopicTemplate names an edge's topic at the center: {edge} and
	// {topic} are replaced. Empty means "{edge}.{topic}".
	TopicTemplate string
	Registerer    prometheus.Registerer
	Logger        *slog.Logger
	// MaxChunkBytes caps a chunk's uncompressed size: a chunk declaring
	// more is refused before it is inflated, and one inflating past what
	// it declared is refused as the decoder passes it (reason "inflated").
	// 0 means wire.MaxFrame.
	MaxChunkBytes int64
	// EdgeRetention is how long an edge that disconnected stays in the
	// status and the metrics labelled by edge (fleet.go); 0 means
	// DefaultEdgeRetention.
	EdgeRetention time.Duration
	// Now is the wall clock of the fleet's times and retention, and the
	// timestamp of each gap stored; nil: time.Now.
	Now func() time.Time
}

// Receiver is the center's end of the mirror: it authenticates edges,
// tells each where its partitions resume, and appends the chunks they send
// with the edge's offsets, acknowledging each once durable.
type Receiver struct {
	opts    ReceiverOptions
	logger  *slog.Logger
	metrics *receiverMetrics
	dec     *zstd.Decoder

	mu     sync.Mutex
	ln     []net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
	edges  map[string]*edgeSlot  // the connection serving each edge
	known  map[string]*edgeState // every edge remembered (fleet.go)
}

// NewReceiver makes a receiver; it serves nothing until Serve.
func NewReceiver(opts ReceiverOptions) (*Receiver, error) {
	if opts.Log == nil {
		return nil, errors.New("mirror: ReceiverOptions.Log is nil")
	}
	if opts.TopicTemplate == "" {
		opts.TopicTemplate = "{edge}.{topic}"
	}
	if !strings.Contains(opts.TopicTemplate, "{topic}") {
		return nil, fmt.Errorf("mirror: topic template %q lacks {topic}", opts.TopicTemplate)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	for edge := range opts.Tokens {
		if err := flog.ValidateTopicName(edge); err != nil {
			return nil, fmt.Errorf("mirror: edge id %q: %w", edge, err)
		}
	}
	m, err := newReceiverMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	if opts.EdgeRetention <= 0 {
		opts.EdgeRetention = DefaultEdgeRetention
	}
	if opts.MaxChunkBytes <= 0 || opts.MaxChunkBytes > math.MaxUint32 {
		opts.MaxChunkBytes = wire.MaxFrame
	}
	// DecodeAll writes into a buffer of the chunk's declared size and no
	// further (WithDecodeAllCapLimit): a chunk never takes more memory
	// than it declared, which is at most MaxChunkBytes.
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(uint64(opts.MaxChunkBytes)), zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)))
	if err != nil {
		return nil, err
	}
	r := &Receiver{opts: opts, logger: opts.Logger, metrics: m, dec: dec, conns: map[net.Conn]struct{}{}, edges: map[string]*edgeSlot{}, known: map[string]*edgeState{}}
	if err := register(opts.Registerer, fleetCollector{r}); err != nil {
		return nil, err
	}
	return r, nil
}

// Serve accepts edges on ln until Close; it returns nil after Close.
func (r *Receiver) Serve(ln net.Listener) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		ln.Close()
		return nil
	}
	r.ln = append(r.ln, ln)
	r.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			r.mu.Lock()
			closed := r.closed
			r.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			c.Close()
			return nil
		}
		r.conns[c] = struct{}{}
		r.wg.Add(1)
		r.mu.Unlock()
		go func() {
			defer r.wg.Done()
			r.serveConn(c)
			r.mu.Lock()
			delete(r.conns, c)
			r.mu.Unlock()
		}()
	}
}

// Close stops accepting, ends every edge's connection (unacknowledged
// chunks are resent on reconnection) and waits for them.
func (r *Receiver) Close() error {
	r.mu.Lock()
	r.closed = true
	for _, ln := range r.ln {
		ln.Close()
	}
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	r.dec.Close()
	return nil
}

// edgeSlot is the connection serving an edge; done is closed when its
// serving goroutine has finished (nothing more of it gets stored).
type edgeSlot struct {
	c    net.Conn
	done chan struct{}
}

// rejectError is a refusal to tell the edge before closing; reason labels
// ferry_mirror_receiver_rejected_total.
type rejectError struct{ reason, msg string }

func (e rejectError) Error() string { return e.msg }

func rejectf(format string, a ...any) error {
	return rejectError{"protocol", fmt.Sprintf(format, a...)}
}

// centerError is the center's own failure storing what an edge sent (a
// storage error): the edge is not at fault and resends after reconnecting.
type centerError struct{ err error }

func (e centerError) Error() string { return "center: " + e.err.Error() }
func (e centerError) Unwrap() error { return e.err }

// centerFailed wraps a storage error that is not already a refusal.
func centerFailed(err error) error {
	if rej := (rejectError{}); err == nil || errors.As(err, &rej) {
		return err
	}
	return centerError{err}
}

// chunkRejectf refuses a chunk (or gap) whose content is wrong.
func chunkRejectf(format string, a ...any) error {
	return rejectError{"chunk", fmt.Sprintf(format, a...)}
}

// inflateRejectf refuses a chunk, or a batch in it, inflating past a cap.
func inflateRejectf(format string, a ...any) error {
	return rejectError{"inflated", fmt.Sprintf(format, a...)}
}

func authRejectf(format string, a ...any) error {
	return rejectError{"auth", fmt.Sprintf(format, a...)}
}

// edgeConn is one connected edge.
type edgeConn struct {
	r      *Receiver
	c      net.Conn
	edge   string
	logger *slog.Logger
	wmu    sync.Mutex // serialises writes: acks and the final error
	acks   chan pendingAck
	parts  map[partKey]Copy
	slot   *edgeSlot
	// certNames are the names in the edge's verified client certificate.
	certNames []string
	counts    map[string]int32 // partitions of each announced topic
	tails     map[partKey]Copy // staged live tails (tail.go)
	epoch     int64            // the edge's session epoch in a cluster
	authed    bool             // the edge is who it says (errors are then its own)
	st        *edgeState       // what the center remembers of it, once connected
}

type partKey struct {
	topic     string // the edge's topic name
	partition int32
}

type pendingAck struct {
	key    partKey
	part   Copy
	next   int64 // durable up to here (exclusive) before acknowledging
	copied int64 // where the copy ended once the frame was stored
}

func (r *Receiver) serveConn(c net.Conn) {
	defer c.Close()
	logger := r.logger.With("remote", c.RemoteAddr().String())
	br := bufio.NewReaderSize(c, 64<<10)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if tc, ok := c.(*tls.Conn); ok {
		if err := tc.Handshake(); err != nil {
			r.metrics.rejected.WithLabelValues("tls").Inc()
			logger.Warn("mirror: TLS handshake failed", "err", err)
			return
		}
	}
	c.SetWriteDeadline(time.Time{})
	msg, buf, err := wire.ReadFrame(br, nil)
	if errors.Is(err, wire.ErrMalformed) {
		r.refuse(c, logger, "malformed", err)
		return
	}
	if err != nil {
		r.metrics.rejected.WithLabelValues("malformed").Inc()
		logger.Warn("mirror: no hello", "err", err)
		return
	}
	h, ok := msg.(*wire.Hello)
	if !ok {
		r.refuse(c, logger, "protocol", rejectf("expected hello, got %T", msg))
		return
	}
	var certNames []string
	if tc, ok := c.(*tls.Conn); ok {
		if st := tc.ConnectionState(); len(st.VerifiedChains) > 0 {
			leaf := st.VerifiedChains[0][0]
			certNames = append([]string{leaf.Subject.CommonName}, leaf.DNSNames...)
		}
	}
	e := &edgeConn{r: r, c: c, edge: h.Edge, certNames: certNames, logger: logger.With("edge", h.Edge), acks: make(chan pendingAck, 1024), parts: map[partKey]Copy{}, tails: map[partKey]Copy{},
		slot: &edgeSlot{c: c, done: make(chan struct{})}}
	defer func() {
		r.noteGone(e)
		r.mu.Lock()
		if r.edges[e.edge] == e.slot {
			delete(r.edges, e.edge)
		}
		r.mu.Unlock()
		close(e.slot.done)
	}()
	w, err := r.handshake(e, h)
	if err != nil {
		reason := "center" // the center's own failure (storage), not the edge's fault
		if rej := (rejectError{}); errors.As(err, &rej) {
			reason = rej.reason
		} else {
			e.logger.Error("mirror: the center failed to take an edge's hello", "err", err)
		}
		if e.authed {
			r.noteError(e.edge, reason, err)
		}
		r.refuse(c, e.logger, reason, err)
		return
	}
	if err := e.write(w.Encode(nil)); err != nil {
		return
	}
	e.logger.Info("mirror: edge connected", "partitions", len(h.Parts))
	r.metrics.edges.Inc()
	defer r.metrics.edges.Dec()
	ctx, cancel := context.WithCancel(context.Background())
	var ackers sync.WaitGroup
	ackers.Add(1)
	go func() { defer ackers.Done(); e.ackLoop(ctx) }()
	err = e.readChunks(br, buf)
	close(e.acks)
	if err != nil {
		var rej rejectError
		var failed centerError
		switch {
		case errors.As(err, &rej):
			r.metrics.rejected.WithLabelValues(rej.reason).Inc()
			r.noteError(e.edge, rej.reason, err)
			e.logger.Error("mirror: refused; closing the edge's connection", "reason", rej.reason, "err", err)
			e.write((&wire.Error{Message: err.Error()}).Encode(nil))
		case errors.As(err, &failed):
			r.metrics.rejected.WithLabelValues("center").Inc()
			r.noteError(e.edge, "center", err)
			e.logger.Error("mirror: the center failed storing an edge's data; closing the connection", "err", err)
			e.write((&wire.Error{Message: err.Error()}).Encode(nil))
		default:
			e.logger.Info("mirror: edge disconnected", "err", err)
		}
		cancel()
	}
	ackers.Wait()
	cancel()
}

func (r *Receiver) refuse(c net.Conn, logger *slog.Logger, reason string, err error) {
	r.metrics.rejected.WithLabelValues(reason).Inc()
	logger.Warn("mirror: edge refused", "reason", reason, "err", err)
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Write((&wire.Error{Message: err.Error()}).Encode(nil))
}

// handshake authenticates the edge, makes sure its topics exist at the
// center and answers where each partition resumes: at the center's durable
// end of its copy.
func (r *Receiver) handshake(e *edgeConn, h *wire.Hello) (*wire.Welcome, error) {
	if h.Version < wire.MinVersion || h.Version > wire.Version {
		return nil, rejectf("protocol version %d not supported (want %d to %d)", h.Version, wire.MinVersion, wire.Version)
	}
	if err := r.authenticate(e, h); err != nil {
		return nil, err
	}
	e.authed = true
	if c := r.opts.Cluster; c != nil {
		epoch, err := c.Admit(h.Edge)
		if err != nil {
			return nil, rejectError{"cluster", err.Error()}
		}
		e.epoch = epoch
	}
	// One connection per edge: a new one replaces the old (a reconnect
	// after a cut the center has not noticed yet), once the old one has
	// stopped storing, so the resume points below are final.
	r.mu.Lock()
	old := r.edges[h.Edge]
	r.edges[h.Edge] = e.slot
	r.mu.Unlock()
	if old != nil {
		old.c.Close()
		select {
		case <-old.done:
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("edge %q: its previous connection did not end", h.Edge)
		}
	}

	counts := map[string]int32{}
	for _, p := range h.Parts {
		if err := flog.ValidateTopicName(p.Topic); err != nil {
			return nil, rejectf("topic %q: %v", p.Topic, err)
		}
		if p.Partition < 0 || p.Partition >= p.Partitions {
			return nil, rejectf("partition %d of %q outside its %d partitions", p.Partition, p.Topic, p.Partitions)
		}
		counts[p.Topic] = max(counts[p.Topic], p.Partitions)
	}
	for topic, n := range counts {
		if err := r.ensureTopic(h.Edge, r.centerTopic(h.Edge, topic), n, nil); err != nil {
			return nil, err
		}
	}
	e.counts = counts
	w := &wire.Welcome{}
	for _, p := range h.Parts {
		part, err := r.opts.Log.Partition(r.centerTopic(h.Edge, p.Topic), p.Partition)
		if err != nil {
			return nil, err
		}
		if c := r.opts.Cluster; c != nil && !c.Leads(r.centerTopic(h.Edge, p.Topic), p.Partition) {
			return nil, rejectf("the center's copy of %s-%d is led by another node", p.Topic, p.Partition)
		}
		key := partKey{p.Topic, p.Partition}
		e.parts[key] = part
		tailFrom, tailNext, err := e.resumeTail(key)
		if err != nil {
			return nil, err
		}
		next := part.DurableOffset()
		if isEmpty(part) {
			next = -1 // empty: the edge starts from its own log start
		}
		w.Resume = append(w.Resume, wire.Resume{Topic: p.Topic, Partition: p.Partition, Next: next, TailFrom: tailFrom, TailNext: tailNext})
	}
	r.noteEdge(e, h.Version)
	return w, nil
}

// ensureTopic creates edge's topic at the center with n partitions and the
// given configs, or grows it to n (through the cluster, in one).
func (r *Receiver) ensureTopic(edge, name string, n int32, configs map[string]string) error {
	have, err := r.opts.Log.PartitionCount(name)
	create, grow := func() error { _, err := r.opts.Log.CreateTopic(name, n, configs); return err }, r.opts.Log.AddPartitions
	if c := r.opts.Cluster; c != nil {
		create = func() error { _, err := c.CreateTopic(edge, name, n, configs); return err }
		grow = c.AddPartitions
	}
	switch {
	case errors.Is(err, flog.ErrUnknownTopic):
		if err := create(); err != nil && !errors.Is(err, flog.ErrTopicExists) {
			return fmt.Errorf("creating %q: %w", name, err)
		}
	case err != nil:
		return err
	case have < n:
		if err := grow(name, n); err != nil {
			return fmt.Errorf("growing %q to %d partitions: %w", name, n, err)
		}
	}
	return nil
}

// isEmpty says a partition holds nothing and never did since its start.
func isEmpty(p Copy) bool { return p.EndOffset() == p.StartOffset() && p.Size() == 0 }

// authenticate checks who the edge says it is: by its verified client
// certificate, its token, or both when it has both.
func (r *Receiver) authenticate(e *edgeConn, h *wire.Hello) error {
	if err := flog.ValidateTopicName(h.Edge); err != nil {
		return authRejectf("edge id %q: %v", h.Edge, err)
	}
	byCert := slices.Contains(e.certNames, h.Edge)
	if len(e.certNames) > 0 && !byCert {
		return authRejectf("the client certificate names %q, not edge %q", e.certNames[0], h.Edge)
	}
	want, hasToken := r.opts.Tokens[h.Edge]
	switch {
	case hasToken && subtle.ConstantTimeCompare([]byte(want), []byte(h.Token)) != 1:
		return authRejectf("wrong token for edge %q", h.Edge)
	case !hasToken && !byCert:
		return authRejectf("unknown edge %q", h.Edge)
	}
	return nil
}

func (r *Receiver) centerTopic(edge, topic string) string {
	return strings.NewReplacer("{edge}", edge, "{topic}", topic).Replace(r.opts.TopicTemplate)
}

func (e *edgeConn) write(b []byte) error {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	e.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_, err := e.c.Write(b)
	return err
}

// readChunks appends every chunk the edge sends until the connection ends
// or a chunk is refused (a rejectError: nothing of it was stored).
//
// buf holds the frame just read, and a Chunk's Data points into it; scratch
// is where a zstd chunk is decompressed. They must never share memory: a
// chunk sent as stored (CodecNone) is its own raw bytes, so keeping those
// as the next chunk's scratch had the next zstd chunk decompressed into the
// frame buffer holding its own compressed bytes, overwriting them while
// they were read (issue 13).
func (e *edgeConn) readChunks(br *bufio.Reader, buf []byte) error {
	var scratch []byte
	for {
		e.c.SetReadDeadline(time.Now().Add(2 * pingEvery))
		msg, b, err := wire.ReadFrame(br, buf)
		buf = b
		if err != nil {
			if errors.Is(err, wire.ErrMalformed) {
				return rejectError{"malformed", err.Error()}
			}
			return err
		}
		now := e.r.now()
		e.st.seen(now)
		switch m := msg.(type) {
		case *wire.Ping:
			continue
		case *wire.Heads:
			if err := e.noteHeads(m, now); err != nil {
				return err
			}
			continue
		case *wire.Gap:
			if err := e.storeGap(m); err != nil {
				return centerFailed(err)
			}
			continue
		}
		ch, ok := msg.(*wire.Chunk)
		if !ok {
			return rejectf("expected a chunk, got %T", msg)
		}
		raw, err := e.r.unpack(ch, &scratch)
		if err != nil {
			return err
		}
		if c := e.r.opts.Cluster; c != nil && !c.Current(e.edge, e.epoch) {
			// A newer session of this edge, on this node or another, has
			// taken over: this one stores nothing more.
			return rejectError{"cluster", fmt.Sprintf("edge %q has a newer session (this one's epoch is %d)", e.edge, e.epoch)}
		}
		key := partKey{ch.Topic, ch.Partition}
		_, ok = e.parts[key]
		if !ok {
			return rejectf("chunk for %s-%d, which the edge did not announce", ch.Topic, ch.Partition)
		}
		target, err := e.route(key, ch.Flags, ch.Base)
		if err != nil {
			return centerFailed(err)
		}
		before := target.EndOffset()
		stored, err := appendChunk(target, ch, raw)
		if err != nil {
			return centerFailed(err)
		}
		e.st.noteChunk(now, target.EndOffset()-before, len(ch.Data))
		if err := e.mergeTail(key); err != nil {
			return centerFailed(err)
		}
		e.r.metrics.chunks.Inc()
		e.r.metrics.wireBytes.Add(float64(len(ch.Data)))
		e.r.metrics.rawBytes.Add(float64(len(raw)))
		e.r.metrics.trimmed.Add(float64(len(raw) - stored))
		e.queueAck(pendingAck{key: key, part: target, next: ch.Last + 1, copied: e.parts[key].EndOffset()})
	}
}

// queueAck hands an acknowledgement to the ack loop, asking for its fsync
// first: the loop waits for one partition at a time, and the fsyncs of the
// partitions queued behind it then run meanwhile, not after it.
func (e *edgeConn) queueAck(a pendingAck) {
	a.part.SyncSoon(a.next - 1)
	e.acks <- a
}

// maxGap bounds a gap's offsets: 2^40, far beyond what an edge's disk
// holds, and 512 record-less batches at most.
const maxGap = 1 << 40

// storeGap records offsets the edge dropped before shipping them: a batch
// with no records spanning them (log.Partition.AppendGap), so the gap is
// explicit in the center's copy and consumers step over it. A gap must
// start where the copy (or the staged tail, for a tail's gap) ends, or
// anywhere in an empty one; the part of it already there is trimmed.
func (e *edgeConn) storeGap(g *wire.Gap) error {
	key := partKey{g.Topic, g.Partition}
	if _, ok := e.parts[key]; !ok {
		return rejectf("gap for %s-%d, which the edge did not announce", g.Topic, g.Partition)
	}
	if g.From < 0 || g.To < g.From || g.To-g.From >= maxGap {
		return chunkRejectf("gap %s-%d from %d to %d: want 0 <= from <= to, less than %d offsets", g.Topic, g.Partition, g.From, g.To, int64(maxGap))
	}
	part, err := e.route(key, g.Flags, g.From)
	if err != nil {
		return err
	}
	from := max(g.From, part.EndOffset())
	if isEmpty(part) {
		from = g.From // an empty copy starts with the gap
	}
	if from <= g.To {
		if _, err := part.AppendGap(from, g.To, e.r.now().UnixMilli()); err != nil {
			if errors.Is(err, flog.ErrOffsetMismatch) {
				return chunkRejectf("gap %s-%d from %d: %v", g.Topic, g.Partition, g.From, err)
			}
			return err
		}
		e.st.noteGap(g.To + 1 - from)
		e.logger.Error("mirror: the edge dropped records before shipping them; the gap is recorded in the copy",
			"topic", g.Topic, "partition", g.Partition, "from_offset", from, "to_offset", g.To, "records", g.To+1-from, "reason", g.Reason)
	}
	if err := e.mergeTail(key); err != nil {
		return err
	}
	e.queueAck(pendingAck{key: key, part: part, next: g.To + 1, copied: e.parts[key].EndOffset()})
	return nil
}

// unpack decompresses a chunk and checks it against its CRC. The raw bytes
// are ch.Data itself for a chunk sent as stored, else decompressed into
// *scratch, which grows as needed (never past the size the chunk declares,
// itself capped by MaxChunkBytes) and is kept for the next chunk; scratch
// must not share memory with ch.Data.
func (r *Receiver) unpack(ch *wire.Chunk, scratch *[]byte) ([]byte, error) {
	if int64(ch.RawLen) > r.opts.MaxChunkBytes {
		return nil, inflateRejectf("chunk %s-%d at %d of %d uncompressed bytes (at most %d)", ch.Topic, ch.Partition, ch.Base, ch.RawLen, r.opts.MaxChunkBytes)
	}
	raw := ch.Data
	switch ch.Codec {
	case wire.CodecNone:
	case wire.CodecZstd:
		if cap(*scratch) < int(ch.RawLen) {
			*scratch = make([]byte, 0, ch.RawLen)
		}
		var err error
		raw, err = r.dec.DecodeAll(ch.Data, (*scratch)[:0:ch.RawLen])
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) {
			return nil, inflateRejectf("chunk %s-%d at %d: inflates past the %d bytes it declared", ch.Topic, ch.Partition, ch.Base, ch.RawLen)
		}
		if err != nil {
			return nil, chunkRejectf("chunk %s-%d at %d: zstd: %v", ch.Topic, ch.Partition, ch.Base, err)
		}
		*scratch = raw[:0]
	default:
		return nil, chunkRejectf("chunk codec %d unknown", ch.Codec)
	}
	if uint32(len(raw)) != ch.RawLen {
		return nil, chunkRejectf("chunk %s-%d at %d: %d bytes, header says %d", ch.Topic, ch.Partition, ch.Base, len(raw), ch.RawLen)
	}
	if wire.Checksum(raw) != ch.CRC {
		return nil, chunkRejectf("chunk %s-%d at %d: checksum mismatch", ch.Topic, ch.Partition, ch.Base)
	}
	return raw, nil
}

// appendChunk stores the batches of a chunk the center does not have yet,
// with their offsets (AppendAt): a chunk overlapping the center's end is
// trimmed, not stored twice. Its framing is checked first: whole batches,
// offsets running from Base to Last without gaps or going back, and the
// CRC of each batch trimmed; AppendAt then validates every batch it stores
// (CRC included, so it is computed once) before writing any, so nothing of
// a refused chunk is stored. It returns the bytes stored.
func appendChunk(part Copy, ch *wire.Chunk, raw []byte) (int, error) {
	var store [][]byte
	stored := 0
	next, end := ch.Base, part.EndOffset()
	for pos := 0; pos < len(raw); {
		h, err := flog.ParseBatchHeader(raw[pos:])
		if err == nil && h.LastOffset() < end {
			// The center has it (a resent chunk overlapping what was
			// acknowledged): AppendAt will not see it, check it here.
			h, err = flog.ParseBatch(raw[pos:])
		}
		if err != nil {
			return 0, chunkRejectf("chunk %s-%d at %d: batch at byte %d: %v", ch.Topic, ch.Partition, ch.Base, pos, err)
		}
		if h.BaseOffset != next {
			return 0, chunkRejectf("chunk %s-%d: batch at offset %d where %d was due (offsets must run on without gaps)", ch.Topic, ch.Partition, h.BaseOffset, next)
		}
		next = h.LastOffset() + 1
		if h.LastOffset() >= end {
			store = append(store, raw[pos:pos+int(h.Length)])
			stored += int(h.Length)
		}
		pos += int(h.Length)
	}
	if next == ch.Base || next != ch.Last+1 {
		return 0, chunkRejectf("chunk %s-%d: batches end at %d, header says %d", ch.Topic, ch.Partition, next-1, ch.Last)
	}
	if len(store) == 0 {
		return 0, nil
	}
	if _, err := part.AppendAt(store...); err != nil {
		if errors.Is(err, flog.ErrInflatedTooLarge) {
			return 0, inflateRejectf("chunk %s-%d: %v", ch.Topic, ch.Partition, err)
		}
		if errors.Is(err, flog.ErrOffsetMismatch) || errors.Is(err, flog.ErrCorruptBatch) {
			return 0, chunkRejectf("chunk %s-%d: %v", ch.Topic, ch.Partition, err)
		}
		return 0, err
	}
	return stored, nil
}

// ackLoop acknowledges chunks in order, each once the center's copy is
// durable up to its end.
func (e *edgeConn) ackLoop(ctx context.Context) {
	var buf []byte
	for a := range e.acks {
		if err := a.part.WaitDurable(ctx, a.next-1); err != nil {
			if ctx.Err() == nil {
				e.logger.Error("mirror: copy not durable; not acknowledging", "topic", a.key.topic, "partition", a.key.partition, "err", err)
				e.c.Close()
			}
			for range e.acks {
			}
			return
		}
		buf = (&wire.Ack{Topic: a.key.topic, Partition: a.key.partition, Next: a.next, Copied: a.copied}).Encode(buf)
		if err := e.write(buf); err != nil {
			e.c.Close()
			for range e.acks {
			}
			return
		}
		e.r.metrics.acks.Inc()
	}
}
