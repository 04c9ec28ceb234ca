package mirror

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"

	flog "ferry/log"
	"ferry/mirror/wire"
)

// SenderOptions configure a Sender.
type SenderOptions struct {
	Log *flog.Log
	// StatePath is the bbolt file holding the edge id and checkpoints.
	StatePath string
	// Center is the receiver's host:port, or several, comma-separated: the
	// nodes of a center cluster, tried in turn, the next after each failed
	// or ended session (a node that is not the edge's home refuses it, and
	// the next is tried). TLS, when set, secures the link.
	Center string
	TLS    *tls.Config
	// EdgeID names this edge at the center; empty means the hostname
	// (or, when it is not a valid id, a generated one), chosen once and
	// kept in StatePath. Token authenticates it.
	EdgeID string
	Token  string
	// Topics are the topics mirrored, as path.Match patterns; empty means
	// every topic except those starting with "__".
	Topics []string
	// Level is the zstd level of chunks; 0 means zstd.SpeedDefault.
	Level zstd.EncoderLevel
	// Window is how many chunks may await the center's acknowledgement;
	// 0 means 8. ChunkBytes bounds a chunk before compression; 0 means
	// 1 MiB. A chunk is whole batches, at least one: a batch larger than
	// ChunkBytes (a Kafka producer's may reach 1 MB) is one chunk, and a
	// cut link resends it whole.
	Window     int
	ChunkBytes int
	// AckTimeout ends a connection on which chunks await acknowledgement
	// and none has come for this long plus the time the bytes in flight
	// take at MinRate (a half-open link, say); 0 means 2 minutes.
	// MinRate is the slowest link rate, bytes/s, the mirror must work
	// over; 0 means 8 KiB/s.
	AckTimeout time.Duration
	MinRate    int
	// RateLimit caps the link in bytes/s (0: uncapped); RateSchedule
	// overrides it by time of day.
	RateLimit    int
	RateSchedule Schedule
	// Classes give topics priority classes on the link (0 first; default
	// 1). Shares guarantee classes part of the link's bytes whenever they
	// have chunks waiting (see gate), at most 100% in all; nil: strict
	// priority.
	Classes []Class
	Shares  []Share
	// CatchUp orders a backlog: CatchUpOldestFirst (the default) ships each
	// partition in offset order; CatchUpLiveTailFirst ships a partition
	// whose backlog at connection is more than a window of chunks newest
	// first: the live tail from the durable end on, and the backlog behind
	// it (the center stages the tail until the backfill reaches it; see
	// tail.go).
	CatchUp CatchUp
	// Kafka, when set, makes a Kafka cluster the target instead of a
	// ferry center (Center and Token are then unused): see kafka.go.
	Kafka *KafkaOptions
	// Now is the wall clock of RateSchedule's time of day and of the
	// status's backlog ages (measured against the log's timestamps, so the
	// log's clock); nil means time.Now. Deadlines and backoffs stay on
	// Go's monotonic clock.
	Now        func() time.Time
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Sender ships the edge's log to the center: durable, batch-aligned ranges
// read from each mirrored partition, zstd-compressed, pipelined, resumed
// where the center's copy ends after any cut or restart. It pins what the
// center has not acknowledged against retention.
type Sender struct {
	opts    SenderOptions
	logger  *slog.Logger
	metrics *senderMetrics
	cp      *checkpoints
	edge    string
	enc     *zstd.Encoder
	limiter *linkLimiter
	state   *linkState

	centers    []string      // opts.Center, split
	nextCenter atomic.Uint32 // which of centers the next session dials
	oldCenter  atomic.Bool   // a center refused wire.Version: hello with MinVersion (heads.go)

	mu    sync.Mutex
	acked map[partKey]int64 // next offset the center needs, per partition
	dirty bool
	// splits are the partitions shipping a live tail ahead of their
	// backfill in this session.
	splits map[partKey]*split
	// lost is, per partition, the first offset the disk budget dropped
	// before the center had it, until a gap has told the center (kept in
	// bbolt).
	lost map[partKey]int64
	// deleted is, per partition, the first offset of lost that a
	// DeleteRecords removed (deleterecords.go): the gap's reason.
	deleted map[partKey]int64
	// blocked are the partitions whose shipping stopped this session at
	// a local read failure (a corrupt segment, a disabled partition): the
	// center has everything before it, the rest of the link goes on, and
	// the next session tries again.
	blocked map[partKey]*blockedPart
}

// blockedPart is where and why a partition's shipping stopped.
type blockedPart struct {
	at  int64
	err error
}

// NewSender opens the checkpoints. Its owner registers the sender as the
// log's shipper (log.Log.SetShipper) before arming the disk budget, so it
// pins what the center has not acknowledged; Run ships.
func NewSender(opts SenderOptions) (*Sender, error) {
	if opts.Log == nil || opts.StatePath == "" || (opts.Center == "") == (opts.Kafka == nil) {
		return nil, errors.New("mirror: SenderOptions needs Log, StatePath and a target: Center or Kafka")
	}
	if opts.Kafka != nil {
		if len(opts.Kafka.Brokers) == 0 {
			return nil, errors.New("mirror: a Kafka target needs its bootstrap brokers")
		}
		if opts.CatchUp == CatchUpLiveTailFirst {
			return nil, errors.New("mirror: live-tail-first cannot be used with a Kafka target: a Kafka partition cannot take records out of order")
		}
		opts.Center = opts.Kafka.target()
	}
	var centers []string
	for _, c := range strings.Split(opts.Center, ",") {
		if c = strings.TrimSpace(c); c != "" {
			centers = append(centers, c)
		}
	}
	if len(centers) == 0 {
		return nil, errors.New("mirror: SenderOptions.Center names no address")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Window <= 0 {
		opts.Window = 8
	}
	if opts.ChunkBytes <= 0 {
		opts.ChunkBytes = 1 << 20
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = 2 * time.Minute
	}
	if opts.MinRate <= 0 {
		opts.MinRate = 8 << 10
	}
	if opts.Level == 0 {
		opts.Level = zstd.SpeedDefault
	}
	if opts.CatchUp == "" {
		opts.CatchUp = CatchUpOldestFirst
	}
	if _, err := ParseCatchUp(string(opts.CatchUp)); err != nil {
		return nil, err
	}
	if err := checkShares(opts.Shares); err != nil {
		return nil, fmt.Errorf("mirror: class shares: %w", err)
	}
	for _, pat := range opts.Topics {
		if _, err := path.Match(pat, ""); err != nil {
			return nil, fmt.Errorf("mirror: topic pattern %q: %w", pat, err)
		}
	}
	state := new(linkState)
	m, err := newSenderMetrics(opts.Registerer, state, opts.Kafka != nil)
	if err != nil {
		return nil, err
	}
	cp, err := openCheckpoints(opts.StatePath)
	if err != nil {
		return nil, err
	}
	edge, err := cp.edgeID(opts.EdgeID)
	if err == nil {
		err = flog.ValidateTopicName(edge)
	}
	if err != nil {
		cp.close()
		return nil, fmt.Errorf("mirror: edge id: %w", err)
	}
	acked, err := cp.load()
	if err != nil {
		cp.close()
		return nil, err
	}
	lost, err := cp.loadLost()
	if err != nil {
		cp.close()
		return nil, err
	}
	deleted, err := cp.loadBucket(bucketDeleted)
	if err != nil {
		cp.close()
		return nil, err
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(opts.Level), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)))
	if err != nil {
		cp.close()
		return nil, err
	}
	s := &Sender{limiter: newLinkLimiter(opts.RateLimit, opts.RateSchedule, opts.Now), opts: opts, logger: opts.Logger.With("component", "mirror", "edge", edge, "center", opts.Center),
		metrics: m, state: state, cp: cp, edge: edge, enc: enc, acked: acked, lost: lost, deleted: deleted}
	s.centers = centers
	return s, nil
}

// EdgeID is the id this edge has at the center.
func (s *Sender) EdgeID() string { return s.edge }

// mirrored reports whether a topic is shipped.
func (s *Sender) mirrored(topic string) bool {
	if len(s.opts.Topics) == 0 {
		return !strings.HasPrefix(topic, "__")
	}
	for _, pat := range s.opts.Topics {
		if ok, _ := path.Match(pat, topic); ok {
			return true
		}
	}
	return false
}

// The sender is what the mirror plugs into the edge's log: RetainFrom,
// EvictRank (priority.go) and WillDrop.
var _ flog.Shipper = (*Sender)(nil)

// RetainFrom keeps every segment holding a record the center has not
// acknowledged.
func (s *Sender) RetainFrom(topic string, partition int32) int64 {
	if !s.mirrored(topic) {
		return math.MaxInt64
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked[partKey{topic, partition}] // 0 until acknowledged: all of it
}

// WillDrop records that the disk budget's drop-oldest policy is deleting
// offsets from..to of a partition: those the center has not acknowledged
// are lost. It counts them and notes durably where the loss starts, so
// the center is told the exact range (a gap) even after a restart.
func (s *Sender) WillDrop(topic string, partition int32, from, to int64) {
	first, ok := s.noteLost(topic, partition, from, to, nil, "recording dropped records")
	if !ok {
		return
	}
	s.metrics.dropped.WithLabelValues(topic).Add(float64(to + 1 - first))
	s.logger.Error("mirror: records dropped before the center had them; the center will be told the gap",
		"topic", topic, "partition", partition, "from_offset", first, "to_offset", to)
}

// noteLost notes durably that offsets from..to of a mirrored partition are
// going before the center acknowledged them: where the loss starts (and,
// with reason, the sender's deleted map, there and in its bucket too, so
// the gap's cause survives a restart).
// It returns the first offset lost, and false when none is (not mirrored,
// or all acknowledged already).
func (s *Sender) noteLost(topic string, partition int32, from, to int64, reason map[partKey]int64, what string) (int64, bool) {
	if !s.mirrored(topic) {
		return 0, false
	}
	k := partKey{topic, partition}
	s.mu.Lock()
	first := max(from, s.acked[k])
	if to < first {
		s.mu.Unlock()
		return 0, false
	}
	var err error
	if was, ok := s.lost[k]; !ok || first < was {
		s.lost[k] = first
		err = s.cp.setLost(k, first)
	}
	if was, ok := reason[k]; reason != nil && (!ok || first < was) && err == nil {
		reason[k] = first
		err = s.cp.setIn(bucketDeleted, k, first)
	}
	s.mu.Unlock()
	if err != nil {
		s.logger.Error("mirror: "+what, "topic", topic, "partition", partition, "err", err)
	}
	return first, true
}

// Acked returns the next offset the center needs for a partition.
func (s *Sender) Acked(topic string, partition int32) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked[partKey{topic, partition}]
}

// Run ships until ctx ends, reconnecting with jittered exponential backoff
// after every failure, then saves the checkpoints and closes.
func (s *Sender) Run(ctx context.Context) error {
	defer s.close()
	saver := time.NewTicker(time.Second)
	defer saver.Stop()
	saveDone := make(chan struct{})
	go func() {
		defer close(saveDone)
		for {
			select {
			case <-saver.C:
				s.saveCheckpoints()
				s.updateBacklog()
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() { <-saveDone }()
	var attempt, refusedInRow int
	for ctx.Err() == nil {
		start := time.Now()
		var err error
		if s.opts.Kafka != nil {
			err = s.kafkaSession(ctx)
		} else {
			err = s.session(ctx)
		}
		s.state.up.Store(false)
		if ctx.Err() != nil {
			break
		}
		s.nextCenter.Add(1)
		if time.Since(start) > 30*time.Second {
			attempt = 0 // a session that lasted: start the backoff afresh
		}
		attempt++
		wait := backoff(attempt)
		reason := classify(err)
		if s.opts.Kafka != nil {
			reason = classifyKafka(err)
		}
		// A node of a center cluster refuses an edge whose copies another
		// node leads (after a failover, say): the next node of the list is
		// dialled at once; the backoff grows only between rounds in which
		// every node of the list refused.
		if reason == reasonRefused && len(s.centers) > 1 {
			if refusedInRow++; refusedInRow%len(s.centers) != 0 {
				attempt--
				wait = 0
			}
		} else {
			refusedInRow = 0
		}
		if reason != "" {
			s.state.errs.failures.Add(1)
			now := time.Now()
			s.state.errs.last.Store(&LinkError{Reason: reason, Message: err.Error(), At: now, RetryAt: now.Add(wait)})
			s.metrics.linkErrs.WithLabelValues(reason).Inc()
			s.logger.Warn("mirror: link down; reconnecting", "reason", reason, "err", err, "in", wait.Round(time.Millisecond))
		} else {
			s.logger.Info("mirror: reconnecting", "why", err, "in", wait.Round(time.Millisecond))
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
	return nil
}

// shipEnded handles how one partition's shipping ended: a partition the
// edge cannot read past some offset stops there alone (blocked, logged,
// counted) while the others ship on; any other error ends the session.
func (s *Sender) shipEnded(key partKey, err error, errc chan<- error) {
	var se *storageError
	if errors.As(err, &se) {
		s.logger.Error("mirror: a partition stopped shipping: the edge cannot read its own log there (run ferry log verify)",
			"topic", key.topic, "partition", key.partition, "offset", se.at, "err", se.err)
		s.mu.Lock()
		s.blocked[key] = &blockedPart{at: se.at, err: se.err}
		s.mu.Unlock()
		s.metrics.readErrs.Inc()
		return
	}
	if err != nil {
		errc <- err
	}
}

// center is the address the next session dials.
func (s *Sender) center() string {
	return s.centers[int(s.nextCenter.Load()%uint32(len(s.centers)))]
}

// backoff is jittered exponential: 200 ms doubling to 30 s, each wait
// drawn between half and all of it.
func backoff(attempt int) time.Duration {
	d := 200 * time.Millisecond << min(attempt-1, 8)
	d = min(d, 30*time.Second)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

func (s *Sender) close() {
	s.saveCheckpoints()
	s.enc.Close()
	s.cp.close()
}

func (s *Sender) saveCheckpoints() {
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return
	}
	snap := make(map[partKey]int64, len(s.acked))
	for k, v := range s.acked {
		snap[k] = v
	}
	s.dirty = false
	s.mu.Unlock()
	if err := s.cp.save(snap); err != nil {
		s.logger.Error("mirror: saving checkpoints", "err", err)
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
	}
}

func (s *Sender) updateBacklog() {
	for _, t := range s.opts.Log.Topics() {
		if !s.mirrored(t.Name) {
			continue
		}
		for p := int32(0); p < t.Partitions; p++ {
			part, err := s.opts.Log.Partition(t.Name, p)
			if err != nil {
				continue
			}
			back := part.EndOffset() - max(s.Acked(t.Name, p), part.StartOffset())
			s.metrics.backlog.WithLabelValues(t.Name, strconv.Itoa(int(p))).Set(float64(max(back, 0)))
		}
	}
}

// sentChunk is a chunk (or gap) awaiting its acknowledgement.
type sentChunk struct {
	key  partKey
	next int64
	wire int  // bytes on the link
	tail bool // of a live tail shipped ahead of its backfill
}

// link is one connection to the center.
type link struct {
	s       *Sender
	c       net.Conn
	wmu     sync.Mutex
	window  *gate
	fifoMu  sync.Mutex
	fifo    []sentChunk
	inWire  int    // bytes of the chunks in fifo
	topicsV string // the mirrored partitions the session announced
}

// session connects, shakes hands and ships until the link fails or ctx
// ends.
func (s *Sender) session(ctx context.Context) error {
	d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second}
	var c net.Conn
	var err error
	addr := s.center()
	if s.opts.TLS != nil {
		tc := s.opts.TLS
		if tc.ServerName == "" && len(s.centers) > 1 {
			// Each node of the list is verified by its own name.
			tc = tc.Clone()
			tc.ServerName, _, _ = net.SplitHostPort(addr)
		}
		c, err = tls.DialWithDialer(&d, "tcp", addr, tc)
	} else {
		c, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	s.metrics.reconnect.Inc()

	parts, version := s.partitions()
	h := &wire.Hello{Version: s.helloVersion(), Edge: s.edge, Token: s.opts.Token, Parts: parts}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(h.Encode(nil)); err != nil {
		return err
	}
	br := bufio.NewReaderSize(c, 64<<10)
	msg, _, err := wire.ReadFrame(br, nil)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = asLink(reasonLink, err) // no answer to the hello: not an acknowledgement's
		}
		return fmt.Errorf("reading welcome: %w", plaintextHint(err, s.opts.TLS != nil))
	}
	var w *wire.Welcome
	switch m := msg.(type) {
	case *wire.Welcome:
		w = m
	case *wire.Error:
		if s.refusedVersion(h.Version, m.Message) {
			return asLink(reasonProtocol, fmt.Errorf("center refused protocol version %d: %s", h.Version, m.Message))
		}
		return asLink(reasonRefused, fmt.Errorf("center refused: %s", m.Message))
	default:
		return asLink(reasonProtocol, fmt.Errorf("expected welcome, got %T", msg))
	}
	c.SetDeadline(time.Time{})
	s.state.up.Store(true)
	s.logger.Info("mirror: connected to the center", "partitions", len(parts))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	l := &link{s: s, c: c, window: newGate(s.opts.Window, s.opts.ChunkBytes, s.opts.Shares, s.limiter.wait), topicsV: version}
	errc := make(chan error, 2*len(w.Resume)+4) // every goroutine below sends at most once
	var wg sync.WaitGroup
	// ship runs a shipper; one that is done (a backfill reaching its live
	// tail) does not end the session.
	ship := func(key partKey, part *flog.Partition, from, limit int64, flags uint8) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.shipEnded(key, l.ship(ctx, key, part, from, limit, flags), errc)
		}()
	}
	s.mu.Lock()
	s.splits = map[partKey]*split{}
	s.blocked = map[partKey]*blockedPart{}
	s.mu.Unlock()
	for _, r := range w.Resume {
		key := partKey{r.Topic, r.Partition}
		part, err := s.opts.Log.Partition(r.Topic, r.Partition)
		if err != nil {
			cancel() // the shippers started so far end before the next session
			c.Close()
			wg.Wait()
			return err
		}
		next := r.Next
		s.mu.Lock()
		if next < 0 {
			// The center has nothing: start at the log's start, or where
			// records dropped unshipped begin, so the gap is told.
			next = part.StartOffset()
			if lost, ok := s.lost[key]; ok && lost < next {
				next = lost
			}
		}
		if next > s.acked[key] {
			s.acked[key], s.dirty = next, true
		}
		sp := s.splitAt(r, part, next)
		if sp != nil {
			s.splits[key] = sp
		}
		s.mu.Unlock()
		if sp == nil {
			ship(key, part, next, math.MaxInt64, 0)
			continue
		}
		s.logger.Info("mirror: live tail first", "topic", r.Topic, "partition", r.Partition, "backfill_from", next, "tail_from", sp.at, "tail_next", sp.tailAcked)
		ship(key, part, next, sp.at, 0)
		ship(key, part, sp.tailAcked, math.MaxInt64, wire.FlagTail)
	}
	wg.Add(3)
	go func() { defer wg.Done(); errc <- l.readAcks(br) }()
	go func() { defer wg.Done(); errc <- l.watchTopics(ctx) }()
	go func() { defer wg.Done(); errc <- l.pinger(ctx) }()
	if h.Version >= 4 {
		wg.Add(1)
		go func() { defer wg.Done(); errc <- l.reportHeads(ctx, parts) }()
	}
	err = <-errc
	cancel()
	c.Close()
	wg.Wait()
	return err
}

// partitions lists the mirrored partitions, and a string that changes
// when the set does.
func (s *Sender) partitions() ([]wire.PartRef, string) {
	var out []wire.PartRef
	var v strings.Builder
	for _, t := range s.opts.Log.Topics() {
		if !s.mirrored(t.Name) {
			continue
		}
		fmt.Fprintf(&v, "%s/%d,", t.Name, t.Partitions)
		for p := int32(0); p < t.Partitions; p++ {
			out = append(out, wire.PartRef{Topic: t.Name, Partition: p, Partitions: t.Partitions})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out, v.String()
}

// pingEvery is how often an idle edge tells the center it is still there;
// the center gives up on an edge silent for twice as long.
const pingEvery = 30 * time.Second

// pinger keeps an idle link alive.
func (l *link) pinger(ctx context.Context) error {
	t := time.NewTicker(pingEvery)
	defer t.Stop()
	frame := (&wire.Ping{}).Encode(nil)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			l.wmu.Lock()
			_, err := l.c.Write(frame)
			l.wmu.Unlock()
			if err != nil {
				return err
			}
		}
	}
}

// errTopicsChanged ends a session so the next one announces the new set.
var errTopicsChanged = errors.New("mirrored topics changed")

// watchTopics ends the session when a mirrored topic appears, goes or
// grows, so the next session announces it.
func (l *link) watchTopics(ctx context.Context) error {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if _, v := l.s.partitions(); v != l.topicsV {
				return errTopicsChanged
			}
		}
	}
}

// send writes a frame that the center acknowledges, once the window (the
// gate) has a slot for its level and the rate cap has let it go.
func (l *link) send(ctx context.Context, lvl int, frame []byte, sc sentChunk) error {
	if err := l.window.acquire(ctx, lvl, len(frame)); err != nil {
		return err
	}
	// The center acknowledges in the order frames arrive: queue and write
	// under one lock, so the queue has the link's order.
	l.wmu.Lock()
	l.fifoMu.Lock()
	l.fifo = append(l.fifo, sc)
	l.inWire += sc.wire
	l.armAckDeadline()
	l.fifoMu.Unlock()
	_, err := l.c.Write(frame)
	l.wmu.Unlock()
	return err
}

// advance records the center's acknowledgement of a partition up to next;
// a loss it covers has been told (a gap) and is forgotten.
func (s *Sender) advance(k partKey, next int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if next > s.acked[k] {
		s.acked[k], s.dirty = next, true
	}
	if lost, ok := s.lost[k]; ok && next > lost {
		delete(s.lost, k)
		if _, ok := s.deleted[k]; ok {
			delete(s.deleted, k)
			if err := s.cp.setIn(bucketDeleted, k, -1); err != nil {
				s.logger.Error("mirror: clearing a reported deletion", "topic", k.topic, "partition", k.partition, "err", err)
			}
		}
		if err := s.cp.setLost(k, -1); err != nil {
			s.logger.Error("mirror: clearing a reported loss", "topic", k.topic, "partition", k.partition, "err", err)
		}
	}
}

// wholeBatches keeps the batches of data, as Partition.Read returned them
// (their CRCs checked), that start at next and end below durable.
// compressed says every batch is already compressed by its producer (sent
// as it is).
func wholeBatches(data []byte, next, durable int64) (raw []byte, last int64, compressed bool, err error) {
	compressed, last = true, -1
	pos := 0
	for pos < len(data) {
		h, err := flog.ParseBatchHeader(data[pos:])
		if err != nil {
			return nil, 0, false, err
		}
		if pos == 0 && h.BaseOffset != next {
			return nil, 0, false, fmt.Errorf("read starts at batch %d, not at %d", h.BaseOffset, next)
		}
		if h.LastOffset() >= durable || int(h.Length) > len(data)-pos {
			break
		}
		if h.Codec() == 0 {
			compressed = false
		}
		last = h.LastOffset()
		pos += int(h.Length)
	}
	if pos == 0 {
		return nil, 0, false, fmt.Errorf("no whole durable batch at %d (durable to %d)", next, durable)
	}
	return data[:pos], last, compressed, nil
}

// armAckDeadline gives the next acknowledgement AckTimeout plus the time
// the bytes in flight take at MinRate; with nothing in flight the link may
// be silent (the pinger keeps it alive). fifoMu is held.
func (l *link) armAckDeadline() {
	if len(l.fifo) == 0 {
		l.c.SetReadDeadline(time.Time{})
		return
	}
	slowest := l.s.opts.MinRate
	if r, _ := l.s.limiter.rate(); r > 0 && r < slowest {
		slowest = r // capped below the assumed slowest link
	}
	transfer := time.Duration(float64(l.inWire) / float64(slowest) * float64(time.Second))
	l.c.SetReadDeadline(time.Now().Add(l.s.opts.AckTimeout + transfer))
}

// readAcks applies the center's acknowledgements, which come in the order
// the chunks were sent.
func (l *link) readAcks(br *bufio.Reader) error {
	var buf []byte
	for {
		msg, b, err := wire.ReadFrame(br, buf)
		buf = b
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *wire.Ack:
			l.fifoMu.Lock()
			if len(l.fifo) == 0 {
				l.fifoMu.Unlock()
				return asLink(reasonProtocol, fmt.Errorf("acknowledgement of %s-%d to %d for nothing sent", m.Topic, m.Partition, m.Next))
			}
			want := l.fifo[0]
			l.fifo = l.fifo[1:]
			l.inWire -= want.wire
			l.armAckDeadline()
			l.fifoMu.Unlock()
			if want.key != (partKey{m.Topic, m.Partition}) || want.next != m.Next {
				return asLink(reasonProtocol, fmt.Errorf("acknowledgement of %s-%d to %d, expected %s-%d to %d", m.Topic, m.Partition, m.Next,
					want.key.topic, want.key.partition, want.next))
			}
			if err := l.s.acknowledged(want, m.Next, m.Copied); err != nil {
				return err
			}
			l.window.release()
			l.s.metrics.acked.Inc()
			l.s.state.lastAckNs.Store(time.Now().UnixNano())
		case *wire.Error:
			return asLink(reasonCenter, fmt.Errorf("center: %s", m.Message))
		default:
			return asLink(reasonProtocol, fmt.Errorf("unexpected %T from the center", msg))
		}
	}
}
