package mirror

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	flog "ferry/log"
	"ferry/mirror/wire"
)

// The mirror's second target: an existing Kafka cluster, with no ferry at
// the center. The sender keeps everything it has for a ferry center (topic
// selection, priority classes and shares through the gate, the rate cap
// and its schedule, the retention guard, drop-oldest's loss records) and
// swaps the link: a franz-go producer writing the edge's records one by one
// into {edge}.{topic}, edge partition p into target partition p.
//
// Exactly once rests on the target, never on local state alone: every
// record carries its edge offset in the header ferry.offset, and at the
// start of every session (the first, and the next after any failure,
// ambiguous or not) the sender reads the last such header back from each
// target partition's tail and resumes after it. The producer is idempotent
// with acks=all, so the broker drops a retried batch it already has within
// a session; a session ends at the first record that fails, its client
// closed with what was in flight, and the next starts from the tail.
//
// Two modes:
//   - idempotent (the default): nothing is lost, and a record is written
//     twice only if a request of a session that ended (an edge killed, a
//     client closed after a timeout) still lands at the broker after the
//     next session read the tail: Kafka cannot fence an idempotent
//     producer. Consumers may read with read_uncommitted.
//   - transactional (KafkaOptions.Transactional): the producer has the
//     transactional id ferry-mirror.{edge}; records go in transactions
//     committed about every 100 ms or a window of chunks, and the committed
//     records' ferry.offset headers are the checkpoint, committed
//     atomically with the data. Starting a session fences every earlier
//     producer of the same edge (its transaction is aborted), so a late
//     request cannot land: exactly once for read_committed consumers, at a
//     transaction's latency.
//
// A gap the edge dropped under drop-oldest before the target had it is
// told on the next record shipped: a header ferry.gap "FROM-TO" (edge
// offsets) and ferry_mirror_gaps_sent_total. Live-tail-first catch-up is
// refused: a Kafka partition cannot take records out of order, and a
// separate tail topic would be one more thing for every consumer to merge.

// Header keys the sender adds to every record (ferry.offset) and to the
// first record after a gap (ferry.gap).
const (
	HeaderOffset = "ferry.offset"
	HeaderGap    = "ferry.gap"
)

// KafkaOptions make a Kafka cluster the mirror's target instead of a
// ferry center.
type KafkaOptions struct {
	// Brokers are the bootstrap brokers, host:port.
	Brokers []string
	// TLS, when set, secures every connection; SASL authenticates (PLAIN,
	// SCRAM-SHA-256/512 from franz-go's sasl packages).
	TLS  *tls.Config
	SASL sasl.Mechanism
	// TopicTemplate names the target topic of an edge topic; {edge} and
	// {topic} are replaced. Empty means "{edge}.{topic}".
	TopicTemplate string
	// ReplicationFactor and MinInsyncReplicas configure the topics the
	// sender creates; 0 leaves each to the cluster's default.
	ReplicationFactor int16
	MinInsyncReplicas int
	// Transactional selects the transactional mode (see above).
	Transactional bool
	// ClientOpts are appended to the producer's options (tests).
	ClientOpts []kgo.Opt
}

// ParseKafkaSASL gives the SASL mechanism named by mech (none, plain,
// scram-sha-256 or scram-sha-512) with a user and password; nil for none.
func ParseKafkaSASL(mech, user, pass string) (sasl.Mechanism, error) {
	switch strings.ToLower(mech) {
	case "", "none":
		return nil, nil
	case "plain":
		return plain.Auth{User: user, Pass: pass}.AsMechanism(), nil
	case "scram-sha-256":
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(), nil
	case "scram-sha-512":
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("SASL mechanism %q: want none, plain, scram-sha-256 or scram-sha-512", mech)
}

// Target is where the sender ships: the center's host:port, or
// kafka://BROKERS.
func (s *Sender) Target() string { return s.opts.Center }

// Kafka link errors, beside those of the link to a ferry center.
const (
	reasonAuth      = "auth"                // SASL refused
	reasonTopicAuth = "topic_authorization" // the target refused a topic (or the cluster, or the transactional id)
	reasonNotLeader = "not_leader"          // the partition's leader moved and retries ran out
	reasonThrottled = "throttled"           // the target throttled the producer (quota)
	reasonUnknown   = "unknown_topic"       // a target topic or partition went missing
	reasonFenced    = "fenced"              // another sender of this edge took over (transactional)
	reasonTarget    = "target"              // any other error the target answered
)

var kafkaErrorReasons = []string{reasonAuth, reasonTopicAuth, reasonNotLeader, reasonThrottled, reasonUnknown, reasonFenced, reasonTarget}

// classifyKafka gives a Kafka session's failure its reason.
func classifyKafka(err error) string {
	var ke *kerr.Error
	switch {
	case err == nil, errors.Is(err, errTopicsChanged):
		return ""
	case errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, kerr.IllegalSaslState), errors.Is(err, kerr.UnsupportedSaslMechanism):
		return reasonAuth
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed),
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		return reasonTopicAuth
	case errors.Is(err, kerr.NotLeaderForPartition), errors.Is(err, kerr.LeaderNotAvailable):
		return reasonNotLeader
	case errors.Is(err, kerr.ThrottlingQuotaExceeded), errors.Is(err, kerr.PolicyViolation):
		return reasonThrottled
	case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.UnknownTopicID):
		return reasonUnknown
	case errors.Is(err, kerr.ProducerFenced), errors.Is(err, kerr.InvalidProducerEpoch), errors.Is(err, kerr.TransactionalIDNotFound):
		return reasonFenced
	case errors.Is(err, kgo.ErrRecordTimeout):
		return reasonAckTimeout
	case errors.As(err, &ke):
		return reasonTarget
	}
	return classify(err)
}

// target is the Kafka target's name in Status and logs.
func (o *KafkaOptions) target() string { return "kafka://" + strings.Join(o.Brokers, ",") }

func (o *KafkaOptions) topic(edge, topic string) string {
	tmpl := o.TopicTemplate
	if tmpl == "" {
		tmpl = "{edge}.{topic}"
	}
	return strings.NewReplacer("{edge}", edge, "{topic}", topic).Replace(tmpl)
}

// kafkaClientOpts are the options shared by the producer and the tail
// readers.
func (s *Sender) kafkaClientOpts() []kgo.Opt {
	k := s.opts.Kafka
	opts := []kgo.Opt{kgo.SeedBrokers(k.Brokers...), kgo.ClientID("ferry-mirror-" + s.edge),
		kgo.DialTimeout(10 * time.Second), kgo.RetryTimeout(s.opts.AckTimeout)}
	if k.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(k.TLS.Clone()))
	}
	if k.SASL != nil {
		opts = append(opts, kgo.SASL(k.SASL))
	}
	return opts
}

// kafkaHooks count what the producer sees on the wire.
type kafkaHooks struct{ s *Sender }

func (h kafkaHooks) OnProduceBatchWritten(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.ProduceBatchMetrics) {
	h.s.state.wireBytes.Add(int64(m.CompressedBytes))
	h.s.state.rawBytes.Add(int64(m.UncompressedBytes))
}

func (h kafkaHooks) OnBrokerThrottle(_ kgo.BrokerMetadata, d time.Duration, _ bool) {
	if d <= 0 {
		return
	}
	h.s.metrics.linkErrs.WithLabelValues(reasonThrottled).Inc()
	now := time.Now()
	h.s.state.errs.last.Store(&LinkError{Reason: reasonThrottled, Message: "the target throttled the producer for " + d.String(), At: now, RetryAt: now.Add(d)})
}

func (h kafkaHooks) OnBrokerConnect(m kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err == nil {
		return
	}
	reason := classify(err)
	if reason == reasonLink {
		reason = reasonDial
	}
	now := time.Now()
	h.s.state.errs.last.Store(&LinkError{Reason: reason, Message: fmt.Sprintf("broker %s:%d: %v", m.Host, m.Port, err), At: now, RetryAt: now})
}

// kafkaSession connects to the target, makes sure the topics are there,
// reads back where each partition's copy ends and ships from there until
// a record fails or ctx ends.
func (s *Sender) kafkaSession(ctx context.Context) error {
	k := s.opts.Kafka
	opts := append(s.kafkaClientOpts(),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.ZstdCompression(), kgo.Lz4Compression(), kgo.NoCompression()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.MetadataMinAge(time.Second), // a moved leader is found again within a second
		kgo.UnknownTopicRetries(3),
		kgo.WithHooks(kafkaHooks{s}))
	if k.Transactional {
		opts = append(opts, kgo.TransactionalID("ferry-mirror."+s.edge), kgo.TransactionTimeout(time.Minute))
	}
	opts = append(opts, k.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return asLink(reasonTarget, err)
	}
	defer cl.Close()
	s.metrics.reconnect.Inc()
	adm := kadm.NewClient(cl)

	parts, version := s.partitions()
	counts := map[string]int32{}
	for _, p := range parts {
		counts[p.Topic] = p.Partitions
	}
	if err := s.ensureKafkaTopics(ctx, adm, counts); err != nil {
		return err
	}
	if k.Transactional {
		// Fence every earlier producer of this edge (its open transaction
		// is aborted) before reading the tails, so that nothing it had in
		// flight can commit behind them.
		if _, _, err := cl.ProducerID(ctx); err != nil {
			return fmt.Errorf("initializing the transactional producer: %w", err)
		}
	}
	tails, err := s.kafkaTails(ctx, adm, parts)
	if err != nil {
		return err
	}
	if k.Transactional {
		if err := cl.BeginTransaction(); err != nil {
			return err
		}
	}
	s.state.up.Store(true)
	s.logger.Info("mirror: connected to the Kafka target", "partitions", len(parts), "transactional", k.Transactional)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	kl := &kafkaLink{s: s, cl: cl, window: newGate(s.opts.Window, s.opts.ChunkBytes, s.opts.Shares, s.limiter.wait), topicsV: version,
		commitNow: make(chan struct{}, 1)}
	errc := make(chan error, len(parts)+3)
	var wg sync.WaitGroup
	s.mu.Lock()
	s.splits = map[partKey]*split{}
	s.blocked = map[partKey]*blockedPart{}
	s.mu.Unlock()
	for _, p := range parts {
		key := partKey{p.Topic, p.Partition}
		part, err := s.opts.Log.Partition(p.Topic, p.Partition)
		if err != nil {
			cancel()
			wg.Wait()
			return err
		}
		next := tails[key]
		s.mu.Lock()
		if next < 0 {
			next = part.StartOffset()
			if lost, ok := s.lost[key]; ok && lost < next {
				next = lost
			}
		}
		s.acked[key], s.dirty = next, true // the target's word, even if it went back
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.shipEnded(key, kl.ship(ctx, key, part, next, k.topic(s.edge, p.Topic)), errc)
		}()
	}
	wg.Add(1)
	go func() { defer wg.Done(); errc <- kl.watchTopics(ctx) }()
	if k.Transactional {
		wg.Add(1)
		go func() { defer wg.Done(); errc <- kl.committer(ctx) }()
	}
	err = <-errc
	cancel()
	wg.Wait()
	return err
}

// ensureKafkaTopics creates each target topic that is missing with the
// edge topic's partition count, and grows one that has fewer.
func (s *Sender) ensureKafkaTopics(ctx context.Context, adm *kadm.Client, counts map[string]int32) error {
	if len(counts) == 0 {
		return nil
	}
	k := s.opts.Kafka
	names := make([]string, 0, len(counts))
	want := map[string]int32{}
	for t, n := range counts {
		name := k.topic(s.edge, t)
		names = append(names, name)
		want[name] = n
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	details, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return fmt.Errorf("listing the target's topics: %w", err)
	}
	var configs map[string]*string
	if k.MinInsyncReplicas > 0 {
		v := strconv.Itoa(k.MinInsyncReplicas)
		configs = map[string]*string{"min.insync.replicas": &v}
	}
	rf := k.ReplicationFactor
	if rf == 0 {
		rf = -1
	}
	for _, name := range names {
		d, ok := details[name]
		switch {
		case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
			r, err := adm.CreateTopic(ctx, want[name], rf, configs, name)
			if err == nil {
				err = r.Err
			}
			if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
				return fmt.Errorf("creating %s at the target: %w", name, err)
			}
			s.logger.Info("mirror: created the target topic", "topic", name, "partitions", want[name])
		case d.Err != nil:
			return fmt.Errorf("target topic %s: %w", name, d.Err)
		case int32(len(d.Partitions)) < want[name]:
			rs, err := adm.UpdatePartitions(ctx, int(want[name]), name)
			if err == nil {
				var r kadm.CreatePartitionsResponse
				if r, err = rs.On(name, nil); err == nil {
					err = r.Err
				}
			}
			if err != nil {
				return fmt.Errorf("growing %s at the target to %d partitions: %w", name, want[name], err)
			}
			s.logger.Info("mirror: grew the target topic", "topic", name, "partitions", want[name])
		}
	}
	return nil
}

// kafkaTails reads, for every mirrored partition, the edge offset after
// the last record of its copy at the target (the ferry.offset header of
// the partition's last record; of its last committed one in the
// transactional mode): -1 when the copy is empty.
func (s *Sender) kafkaTails(ctx context.Context, adm *kadm.Client, parts []wire.PartRef) (map[partKey]int64, error) {
	out := make(map[partKey]int64, len(parts))
	if len(parts) == 0 {
		return out, nil
	}
	k := s.opts.Kafka
	ctx, cancel := context.WithTimeout(ctx, s.opts.AckTimeout)
	defer cancel()
	names := map[string]string{} // target topic → edge topic
	var list []string
	for _, p := range parts {
		out[partKey{p.Topic, p.Partition}] = -1
		if n := k.topic(s.edge, p.Topic); names[n] == "" {
			names[n] = p.Topic
			list = append(list, n)
		}
	}
	starts, err := adm.ListStartOffsets(ctx, list...)
	if err != nil {
		return nil, fmt.Errorf("reading the target's start offsets: %w", err)
	}
	var ends kadm.ListedOffsets
	if k.Transactional {
		ends, err = adm.ListCommittedOffsets(ctx, list...)
	} else {
		ends, err = adm.ListEndOffsets(ctx, list...)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the target's end offsets: %w", err)
	}
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("reading the target's end offsets: %w", err)
	}
	type span struct{ start, end int64 }
	todo := map[string]map[int32]span{}
	for _, p := range parts {
		name := k.topic(s.edge, p.Topic)
		e, ok := ends.Lookup(name, p.Partition)
		st, ok2 := starts.Lookup(name, p.Partition)
		if !ok || !ok2 || e.Offset <= st.Offset {
			continue
		}
		if todo[name] == nil {
			todo[name] = map[int32]span{}
		}
		todo[name][p.Partition] = span{st.Offset, e.Offset}
	}
	// Read back a window before each end, wider each round, until a
	// record of ours is found or the window reaches the start: one record
	// in the idempotent mode, past the transaction markers in the other.
	back := int64(1)
	if k.Transactional {
		back = 16
	}
	for len(todo) > 0 {
		from := map[string]map[int32]kgo.Offset{}
		for t, ps := range todo {
			from[t] = map[int32]kgo.Offset{}
			for p, sp := range ps {
				from[t][p] = kgo.NewOffset().At(max(sp.start, sp.end-back))
			}
		}
		copts := append(s.kafkaClientOpts(), kgo.ConsumePartitions(from), kgo.KeepControlRecords(), kgo.FetchMaxWait(time.Second))
		if k.Transactional {
			copts = append(copts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
		}
		rd, err := kgo.NewClient(copts...)
		if err != nil {
			return nil, err
		}
		found, err := readTails(ctx, rd, todo2ends(todo, func(sp span) int64 { return sp.end }))
		rd.Close()
		if err != nil {
			return nil, fmt.Errorf("reading back the target's tail: %w", err)
		}
		for t, ps := range todo {
			for p, sp := range ps {
				off, ok := found[t][p]
				switch {
				case ok && off >= 0:
					out[partKey{names[t], p}] = off + 1
					delete(ps, p)
				case ok:
					return nil, asLink(reasonTarget, fmt.Errorf("%s partition %d at the target ends in records without a %s header: not this edge's copy", t, p, HeaderOffset))
				case sp.end-back <= sp.start:
					delete(ps, p) // nothing of ours in the whole partition
				}
			}
			if len(ps) == 0 {
				delete(todo, t)
			}
		}
		back *= 8
	}
	return out, nil
}

func todo2ends[S any](todo map[string]map[int32]S, end func(S) int64) map[string]map[int32]int64 {
	out := map[string]map[int32]int64{}
	for t, ps := range todo {
		out[t] = map[int32]int64{}
		for p, sp := range ps {
			out[t][p] = end(sp)
		}
	}
	return out
}

// readTails polls rd until it has read every partition of ends up to its
// end offset, and returns per partition the largest ferry.offset of its
// data records: absent when there were none, -2 when none had one.
func readTails(ctx context.Context, rd *kgo.Client, ends map[string]map[int32]int64) (map[string]map[int32]int64, error) {
	found := map[string]map[int32]int64{}
	left := 0
	for _, ps := range ends {
		left += len(ps)
	}
	done := map[string]map[int32]bool{}
	for left > 0 {
		fs := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("%s partition %d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return nil, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := ends[r.Topic][r.Partition]
			if !ok || done[r.Topic][r.Partition] {
				return
			}
			if !r.Attrs.IsControl() {
				off, ok := recordEdgeOffset(r)
				if found[r.Topic] == nil {
					found[r.Topic] = map[int32]int64{}
				}
				if !ok {
					if _, seen := found[r.Topic][r.Partition]; !seen {
						found[r.Topic][r.Partition] = -2 // foreign record
					}
				} else {
					found[r.Topic][r.Partition] = max(found[r.Topic][r.Partition], off)
				}
			}
			if r.Offset >= end-1 {
				if done[r.Topic] == nil {
					done[r.Topic] = map[int32]bool{}
				}
				done[r.Topic][r.Partition] = true
				left--
			}
		})
	}
	return found, nil
}

// recordEdgeOffset is a target record's ferry.offset header.
func recordEdgeOffset(r *kgo.Record) (int64, bool) {
	for _, h := range r.Headers {
		if h.Key == HeaderOffset {
			off, err := strconv.ParseInt(string(h.Value), 10, 64)
			return off, err == nil && off >= 0
		}
	}
	return 0, false
}

// kafkaLink is one session with a Kafka target.
type kafkaLink struct {
	s       *Sender
	cl      *kgo.Client
	window  *gate
	topicsV string

	// The transactional mode: shippers produce under txMu's read lock;
	// the committer takes it whole to flush, commit and begin the next
	// transaction, then acknowledges the chunks it committed.
	txMu      sync.RWMutex
	pendMu    sync.Mutex
	pending   []*kafkaChunk
	commitNow chan struct{}
}

// kafkaChunk is a chunk's records on their way to the target.
type kafkaChunk struct {
	key  partKey
	next int64 // the edge offset after its last record
	gap  bool  // it tells a gap (a header on its first record)
	left atomic.Int64
	err  atomic.Pointer[error]
	done chan struct{} // closed when every record is answered
}

func (kl *kafkaLink) watchTopics(ctx context.Context) error {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if _, v := kl.s.partitions(); v != kl.topicsV {
				return errTopicsChanged
			}
		}
	}
}

// ship produces one partition's records from next on, chunk by chunk
// (whole durable batches of up to ChunkBytes), each through the gate.
// In the idempotent mode a chunk is acknowledged when the target has all
// its records; in the transactional mode when their transaction commits.
func (kl *kafkaLink) ship(ctx context.Context, key partKey, part *flog.Partition, next int64, topic string) error {
	s := kl.s
	lvl := level(classOf(s.opts.Classes, key.topic), false)
	var gapHeader []byte // told on the next record shipped
	// The chunks in flight, in order: acknowledgements apply in order. A
	// failed record ends this shipper too (cancel), even one waiting for
	// the window.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	inflight := make(chan *kafkaChunk, s.opts.Window+1)
	ackDone := make(chan error, 1)
	go func() {
		err := kl.acks(ctx, inflight)
		if err != nil {
			cancel()
			for range inflight { // until ship sees ctx end and closes it
			}
		}
		ackDone <- err
	}()
	fail := func(err error) error {
		close(inflight)
		if aerr := <-ackDone; aerr != nil && !errors.Is(aerr, context.Canceled) {
			return aerr
		}
		return err
	}
	for {
		if start := part.StartOffset(); next < start {
			gapHeader = fmt.Appendf(nil, "%d-%d", next, start-1)
			s.logger.Warn("mirror: the target will be told of a gap on the next record", "topic", key.topic, "partition", key.partition,
				"from_offset", next, "to_offset", start-1)
			next = start
		}
		if err := part.WaitDurable(ctx, next); err != nil {
			if ctx.Err() == nil {
				return fail(&storageError{at: next, err: err})
			}
			return fail(err)
		}
		durable := part.DurableOffset()
		rr, err := part.Read(next, s.opts.ChunkBytes, nil)
		if errors.Is(err, flog.ErrOffsetOutOfRange) && next < part.StartOffset() {
			continue // dropped while we waited: a gap
		}
		var raw []byte
		var last int64
		if err == nil {
			raw, last, _, err = wholeBatches(rr.Data, next, durable)
		}
		if err != nil {
			return fail(&storageError{at: next, err: err})
		}
		recs, err := chunkRecords(raw, topic, key.partition)
		if err != nil {
			return fail(&storageError{at: next, err: err})
		}
		if len(recs) == 0 {
			// Control batches only: nothing to ship. A gap waits for the
			// next record.
			next = last + 1
			if gapHeader == nil {
				s.advance(key, next)
			}
			continue
		}
		if err := kl.window.acquire(ctx, lvl, s.wireEstimate(len(raw))); err != nil {
			return fail(err)
		}
		ch := &kafkaChunk{key: key, next: last + 1, done: make(chan struct{})}
		if gapHeader != nil {
			recs[0].Headers = append(recs[0].Headers, kgo.RecordHeader{Key: HeaderGap, Value: gapHeader})
			ch.gap = true
			gapHeader = nil
		}
		ch.left.Store(int64(len(recs)))
		if s.opts.Kafka.Transactional {
			kl.txMu.RLock()
		}
		for _, r := range recs {
			kl.cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
				if err != nil {
					ch.err.CompareAndSwap(nil, &err)
				}
				if ch.left.Add(-1) == 0 {
					close(ch.done)
				}
			})
		}
		if s.opts.Kafka.Transactional {
			kl.pendMu.Lock()
			kl.pending = append(kl.pending, ch)
			n := len(kl.pending)
			kl.pendMu.Unlock()
			kl.txMu.RUnlock()
			if n >= s.opts.Window {
				select {
				case kl.commitNow <- struct{}{}:
				default:
				}
			}
		}
		select {
		case inflight <- ch:
		case <-ctx.Done():
			return fail(ctx.Err())
		}
		s.metrics.chunks.Inc()
		next = last + 1
	}
}

// wireEstimate is what a chunk of raw stored bytes will take on the wire,
// by the producer's compression so far (as stored until it has some): the
// gate's rate cap and shares count wire bytes, as with a center, though
// the producer compresses only after the gate.
func (s *Sender) wireEstimate(raw int) int {
	w, r := s.state.wireBytes.Load(), s.state.rawBytes.Load()
	if w <= 0 || r <= 0 {
		return raw
	}
	return max(int(int64(raw)*w/r), 1)
}

// acks applies a partition's chunks' acknowledgements in order; the first
// failed record ends the session.
func (kl *kafkaLink) acks(ctx context.Context, inflight <-chan *kafkaChunk) error {
	s := kl.s
	// kgo's own delivery timeout counts from a record's timestamp, which
	// is the edge's (old after an outage): the ack deadline is ours.
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for ch := range inflight {
		timer.Reset(s.opts.AckTimeout)
		select {
		case <-ch.done:
		case <-timer.C:
			return asLink(reasonAckTimeout, fmt.Errorf("%s-%d: the target has not acknowledged records in %s", ch.key.topic, ch.key.partition, s.opts.AckTimeout))
		case <-ctx.Done():
			return ctx.Err() // the client is closed with the session
		}
		if e := ch.err.Load(); e != nil {
			return fmt.Errorf("producing %s-%d to the target: %w", ch.key.topic, ch.key.partition, *e)
		}
		if s.opts.Kafka.Transactional {
			continue // the committer acknowledges
		}
		kl.acknowledge(ch)
	}
	return nil
}

func (kl *kafkaLink) acknowledge(ch *kafkaChunk) {
	s := kl.s
	s.advance(ch.key, ch.next)
	if ch.gap {
		s.metrics.gaps.Inc()
	}
	kl.window.release()
	s.metrics.acked.Inc()
	s.state.lastAckNs.Store(time.Now().UnixNano())
}

// commitEvery is how long a transaction stays open with records in it.
const commitEvery = 100 * time.Millisecond

// committer commits the open transaction about every commitEvery (or
// when a window of chunks waits) and begins the next; the chunks in a
// committed transaction are acknowledged.
func (kl *kafkaLink) committer(ctx context.Context) error {
	t := time.NewTicker(commitEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-kl.commitNow:
		}
		kl.txMu.Lock()
		kl.pendMu.Lock()
		batch := kl.pending
		kl.pending = nil
		kl.pendMu.Unlock()
		if len(batch) == 0 {
			kl.txMu.Unlock()
			continue
		}
		err := kl.cl.Flush(ctx)
		for _, ch := range batch {
			if e := ch.err.Load(); e != nil && err == nil {
				err = *e
			}
		}
		commit := kgo.TryCommit
		if err != nil {
			commit = kgo.TryAbort
		}
		if eerr := kl.cl.EndTransaction(ctx, commit); err == nil {
			err = eerr
		}
		if err == nil {
			err = kl.cl.BeginTransaction()
		}
		kl.txMu.Unlock()
		if err != nil {
			return fmt.Errorf("committing a transaction at the target: %w", err)
		}
		for _, ch := range batch {
			kl.acknowledge(ch)
		}
	}
}

// chunkRecords decodes a chunk's batches into records for the target:
// keys, values, headers and timestamps as stored, plus ferry.offset.
// Control batches carry nothing to ship.
func chunkRecords(raw []byte, topic string, partition int32) ([]*kgo.Record, error) {
	var out []*kgo.Record
	for pos := 0; pos < len(raw); {
		h, err := flog.ParseBatchHeader(raw[pos:])
		if err != nil {
			return nil, err
		}
		b := raw[pos : pos+int(h.Length)]
		pos += int(h.Length)
		if h.IsControl() {
			continue
		}
		_, recs, err := flog.DecodeRecords(b)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			hs := make([]kgo.RecordHeader, 0, len(r.Headers)+2)
			for _, kh := range r.Headers {
				hs = append(hs, kgo.RecordHeader{Key: kh.Key, Value: kh.Value})
			}
			hs = append(hs, kgo.RecordHeader{Key: HeaderOffset, Value: strconv.AppendInt(nil, r.Offset, 10)})
			rec := &kgo.Record{Topic: topic, Partition: partition, Key: r.Key, Value: r.Value, Headers: hs}
			if r.Timestamp >= 0 {
				rec.Timestamp = time.UnixMilli(r.Timestamp)
			}
			out = append(out, rec)
		}
	}
	return out, nil
}
