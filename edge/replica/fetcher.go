package replica

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// fetchVersion is the Fetch version followers send: the newest the Kafka
// front end serves, with ReplicaID, CurrentLeaderEpoch, LastFetchedEpoch
// and DivergingEpoch.
const fetchVersion = 12

// maxResponseBytes bounds a fetch answer's frame: the asked-for maximum
// plus room for one batch larger than it (the first batch comes whole) and
// the framing. A larger frame closes the connection.
const maxResponseBytes = 128 << 20

// undurableRetry is how soon, with DurableFollowers, a partition whose end
// is not durable yet is looked at again.
const undurableRetry = 50 * time.Millisecond

// fetcher fetches, for one leader broker, every partition this node
// follows on it (Kafka's ReplicaFetcherThread): one Fetch per round for
// all of them, on one connection (Metadata.Dial), reconnecting with a
// backoff when it fails.
type fetcher struct {
	m      *Manager
	leader int32
	quit   chan struct{}
	wake   chan struct{} // a partition was added

	mu    sync.Mutex
	parts map[*partState]*fetchState
}

// fetchState is one followed partition in a fetcher.
type fetchState struct {
	epoch   int32     // the leader epoch followed (CurrentLeaderEpoch)
	retryAt time.Time // after an error, not fetched before then
	backoff time.Duration
}

func newFetcher(m *Manager, leader int32) *fetcher {
	return &fetcher{m: m, leader: leader, quit: make(chan struct{}), wake: make(chan struct{}, 1), parts: map[*partState]*fetchState{}}
}

func (f *fetcher) add(st *partState, epoch int32) {
	f.mu.Lock()
	f.parts[st] = &fetchState{epoch: epoch}
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// remove takes st out; it returns how many partitions are left.
func (f *fetcher) remove(st *partState) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.parts, st)
	return len(f.parts)
}

func (f *fetcher) stop() { close(f.quit) }

// run is the fetcher's goroutine, until stop or the manager's Close.
func (f *fetcher) run() {
	defer f.m.wg.Done()
	ctx, cancel := context.WithCancel(f.m.ctx)
	defer cancel()
	go func() {
		select {
		case <-f.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	logger := f.m.logger.With("leader", f.leader)
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		nc, err := f.m.md.Dial(ctx, f.leader)
		if err == nil {
			backoff = 50 * time.Millisecond
			err = f.fetchOn(ctx, nc)
			nc.Close()
		}
		if ctx.Err() != nil {
			return
		}
		f.m.metrics.fetchErrors.WithLabelValues("connection").Inc()
		logger.Warn("replica fetching interrupted; reconnecting", "err", err, "backoff", backoff)
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// fetchOn fetches round after round on one connection until an error or
// ctx ends. Closing the connection when ctx ends unblocks a long poll.
func (f *fetcher) fetchOn(ctx context.Context, nc net.Conn) error {
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	rc := &replicaConn{nc: nc, clientID: fmt.Sprintf("ferry-replica-%d", f.m.self)}
	for ctx.Err() == nil {
		req, sent := f.request()
		if req == nil {
			// Nothing to fetch now: wait for a partition, or for the
			// earliest retry.
			if !f.idle(ctx) {
				return ctx.Err()
			}
			continue
		}
		deadline := time.Now().Add(f.m.opts.FetchMaxWait + 30*time.Second)
		r, err := rc.roundTrip(req, deadline)
		if err != nil {
			return err
		}
		resp := r.(*kmsg.FetchResponse)
		if resp.ErrorCode != 0 {
			return fmt.Errorf("fetch from broker %d: %w", f.leader, kerr.ErrorForCode(resp.ErrorCode))
		}
		f.handle(ctx, sent, resp)
	}
	return ctx.Err()
}

// sent is what one fetch asked for, per partition, to check the answer
// against.
type sent struct {
	st     *partState
	epoch  int32
	offset int64
}

// request builds the next Fetch: every followed partition not waiting for
// a retry, at its end offset, with its last fetched epoch.
func (f *fetcher) request() (*kmsg.FetchRequest, map[tp]sent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(fetchVersion)
	req.ReplicaID = f.m.self
	req.MaxWaitMillis = int32(f.m.opts.FetchMaxWait / time.Millisecond)
	req.MinBytes, req.MaxBytes = 1, f.m.opts.FetchMaxBytes
	req.SessionID, req.SessionEpoch = 0, -1 // full fetches, no session
	out := map[tp]sent{}
	topics := map[string]int{}
	for st, fs := range f.parts {
		if now.Before(fs.retryAt) {
			continue
		}
		if end := st.p.EndOffset(); f.m.opts.DurableFollowers && st.p.DurableOffset() < end {
			// The fetch offset tells the leader this replica holds
			// everything below it: with DurableFollowers, durably. An end
			// that is not durable (a failed fsync disabled the log, or
			// appends of an earlier role are not synced yet) is not
			// reported: the partition waits for the sync, out of the
			// in-sync set if it never comes.
			st.p.SyncSoon(end - 1)
			fs.retryAt = now.Add(undurableRetry)
			continue
		}
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = st.tp.partition
		rp.CurrentLeaderEpoch = fs.epoch
		rp.FetchOffset = st.p.EndOffset()
		rp.LastFetchedEpoch = lastEpoch(st.p)
		rp.LogStartOffset = st.p.StartOffset()
		rp.PartitionMaxBytes = f.m.opts.PartitionMaxBytes
		i, ok := topics[st.tp.topic]
		if !ok {
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic = st.tp.topic
			req.Topics = append(req.Topics, rt)
			i = len(req.Topics) - 1
			topics[st.tp.topic] = i
		}
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, rp)
		out[st.tp] = sent{st: st, epoch: fs.epoch, offset: rp.FetchOffset}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return req, out
}

// lastEpoch is the epoch of the log's last batch as its leader-epoch cache
// knows it, -1 for none (Kafka's latestEpoch).
func lastEpoch(p *flog.Partition) int32 {
	es := p.LeaderEpochs()
	if len(es) == 0 {
		return -1
	}
	return es[len(es)-1].Epoch
}

// idle waits for a partition to be added, or until the earliest retry.
func (f *fetcher) idle(ctx context.Context) bool {
	f.mu.Lock()
	var next time.Time
	for _, fs := range f.parts {
		if next.IsZero() || fs.retryAt.Before(next) {
			next = fs.retryAt
		}
	}
	f.mu.Unlock()
	d := time.Hour
	if !next.IsZero() {
		d = max(time.Until(next), time.Millisecond)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-f.wake:
	case <-ctx.Done():
		return false
	}
	return true
}

// handle applies one fetch answer: for each partition still followed at
// the epoch it was asked at, the records appended as they are, a
// divergence cut, or an error's retry; then the leader's high watermark.
// With DurableFollowers, what was appended is made durable before the next
// fetch reports it.
func (f *fetcher) handle(ctx context.Context, asked map[tp]sent, resp *kmsg.FetchResponse) {
	var appended []*partState
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			s, ok := asked[tp{rt.Topic, rp.Partition}]
			if !ok {
				continue
			}
			if err := f.apply(s, &rp); err != nil {
				f.failed(s.st, err)
				continue
			}
			f.succeeded(s.st)
			if len(rp.RecordBatches) > 0 {
				appended = append(appended, s.st)
			}
		}
	}
	if f.m.opts.DurableFollowers && len(appended) > 0 {
		for _, st := range appended {
			st.p.SyncSoon(st.p.EndOffset() - 1)
		}
		for _, st := range appended {
			if err := st.p.WaitDurable(ctx, st.p.EndOffset()-1); err != nil && ctx.Err() == nil {
				f.failed(st, err)
			}
		}
	}
}

// apply writes one partition's answer under its role, if it is still
// followed at the epoch asked.
func (f *fetcher) apply(s sent, rp *kmsg.FetchResponseTopicPartition) error {
	st := s.st
	st.role.RLock()
	defer st.role.RUnlock()
	f.mu.Lock()
	owned := f.parts[st] != nil
	f.mu.Unlock()
	if !owned || !st.following(f.leader, s.epoch) {
		// The role changed meanwhile, or a newer fetcher of the same
		// leader took the partition over: the answer is stale.
		return nil
	}
	if rp.ErrorCode == kerr.OffsetOutOfRange.Code && rp.LogStartOffset > st.p.EndOffset() {
		// The leader no longer holds what this log would continue with
		// (retention cut it): start over at the leader's log start
		// (Kafka's truncateFullyAndStartAt).
		if err := st.p.StartOver(rp.LogStartOffset); err != nil {
			return err
		}
		f.m.metrics.truncations.Inc()
		f.m.logger.Warn("follower behind the leader's log start; starting over there", "topic", st.tp.topic,
			"partition", st.tp.partition, "leader", f.leader, "leader_log_start", rp.LogStartOffset)
		return nil
	}
	if rp.ErrorCode != 0 {
		return fmt.Errorf("fetching %s-%d from broker %d: %w", st.tp.topic, st.tp.partition, f.leader, kerr.ErrorForCode(rp.ErrorCode))
	}
	if rp.DivergingEpoch.Epoch >= 0 || rp.DivergingEpoch.EndOffset >= 0 {
		return f.truncate(st, rp.DivergingEpoch.Epoch, rp.DivergingEpoch.EndOffset)
	}
	if len(rp.RecordBatches) > 0 {
		batches := splitBatches(rp.RecordBatches)
		if len(batches) > 0 {
			if _, err := st.p.AppendAt(batches...); err != nil {
				return err
			}
			f.m.metrics.fetched.Add(float64(len(rp.RecordBatches)))
		}
	}
	// The leader's high watermark, never above this log's end
	// (AdvanceHighWatermark caps it).
	st.p.AdvanceHighWatermark(rp.HighWatermark)
	f.followLogStart(st, rp.LogStartOffset)
	return nil
}

// followLogStart moves this log's start up to the leader's, as far as the
// high watermark (Kafka's follower maybeIncrementLogStartOffset): records
// the leader deleted (DeleteRecords, retention) are gone here too, so a
// new leader elected from here does not bring them back.
func (f *fetcher) followLogStart(st *partState, leaderStart int64) {
	start := min(leaderStart, st.p.HighWatermark())
	if start <= st.p.StartOffset() {
		return
	}
	if start == st.p.EndOffset() {
		// Nothing of this log is left at the leader (a staged live tail
		// the mirror receiver cleared once merged): empty it as the
		// leader's is, segments and all, so that elected later it is an
		// empty staging, not records hidden below the start.
		if err := st.p.Clear(); err != nil {
			f.m.logger.Warn("follower log not cleared as the leader's", "topic", st.tp.topic, "partition", st.tp.partition,
				"leader", f.leader, "leader_log_start", leaderStart, "err", err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(f.m.ctx, 10*time.Second)
	defer cancel()
	if _, err := f.m.log.DeleteRecords(ctx, st.tp.topic, st.tp.partition, start); err != nil {
		f.m.logger.Warn("follower log start not moved to the leader's", "topic", st.tp.topic, "partition", st.tp.partition,
			"leader", f.leader, "leader_log_start", leaderStart, "err", err)
	}
}

// truncate cuts the follower's log where it diverges from the leader's
// (Kafka's truncateOnFetchResponse): the leader's epoch ended at end; if
// this log has that epoch, at the lower of the two ends of it, else at the
// lower of the leader's end and where this log's largest epoch below it
// ended. The next fetch checks again from there.
func (f *fetcher) truncate(st *partState, epoch int32, end int64) error {
	target := min(end, st.p.EndOffset())
	if epoch >= 0 {
		e, myEnd, err := st.p.EndOffsetForEpoch(epoch)
		if err != nil {
			return err
		}
		if e >= 0 && myEnd >= 0 {
			target = min(end, myEnd)
		}
	}
	before := st.p.EndOffset()
	got, err := st.p.TruncateTo(target)
	if err != nil {
		return err
	}
	f.m.metrics.truncations.Inc()
	f.m.logger.Info("follower log diverged from the leader's; truncated", "topic", st.tp.topic, "partition", st.tp.partition,
		"leader", f.leader, "diverging_epoch", epoch, "epoch_end_offset", end, "from_end_offset", before, "to_end_offset", got)
	return nil
}

// failed delays the partition's next fetch (100 ms, doubling to 2 s),
// unless it is no longer followed.
func (f *fetcher) failed(st *partState, err error) {
	name := "storage" // the follower's log refused
	var ke *kerr.Error
	if errors.As(err, &ke) {
		name = ke.Message
	}
	f.m.metrics.fetchErrors.WithLabelValues(name).Inc()
	f.mu.Lock()
	defer f.mu.Unlock()
	fs := f.parts[st]
	if fs == nil {
		return
	}
	fs.backoff = min(max(2*fs.backoff, 100*time.Millisecond), 2*time.Second)
	fs.retryAt = time.Now().Add(fs.backoff)
	f.m.logger.Info("replica fetch of a partition failed; retrying", "topic", st.tp.topic, "partition", st.tp.partition,
		"leader", f.leader, "err", err, "backoff", fs.backoff)
}

func (f *fetcher) succeeded(st *partState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fs := f.parts[st]; fs != nil {
		fs.backoff = 0
	}
}

// splitBatches cuts a fetch's records into whole RecordBatches, dropping a
// partial one at the end (a leader may cut its answer inside a batch).
func splitBatches(data []byte) [][]byte {
	const headerLen = 61 // RecordBatch v2 header, up to the record count
	var out [][]byte
	for len(data) >= 12 {
		size := int(binary.BigEndian.Uint32(data[8:12])) + 12
		if size < headerLen || size > len(data) {
			break
		}
		out = append(out, data[:size:size])
		data = data[size:]
	}
	return out
}

// replicaConn is a follower's end of a replica-fetch connection: Kafka
// frames, one request at a time.
type replicaConn struct {
	nc       net.Conn
	clientID string
	corr     int32
	buf      []byte
}

// roundTrip sends req and reads its answer by the deadline.
func (c *replicaConn) roundTrip(req kmsg.Request, deadline time.Time) (kmsg.Response, error) {
	c.corr++
	b := append(c.buf[:0], 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(req.Key()))
	b = binary.BigEndian.AppendUint16(b, uint16(req.GetVersion()))
	b = binary.BigEndian.AppendUint32(b, uint32(c.corr))
	b = binary.BigEndian.AppendUint16(b, uint16(len(c.clientID)))
	b = append(b, c.clientID...)
	if req.IsFlexible() {
		b = append(b, 0) // no tagged fields in the header
	}
	b = req.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	c.buf = b[:0]
	c.nc.SetDeadline(deadline)
	if _, err := c.nc.Write(b); err != nil {
		return nil, err
	}
	var size [4]byte
	if _, err := io.ReadFull(c.nc, size[:]); err != nil {
		return nil, err
	}
	n := int64(binary.BigEndian.Uint32(size[:]))
	if n < 4 || n > maxResponseBytes {
		return nil, fmt.Errorf("response frame of %d bytes", n)
	}
	body := make([]byte, 0, min(n, 1<<20))
	w := bytesWriter{&body}
	if _, err := io.CopyN(w, c.nc, n); err != nil {
		return nil, err
	}
	if corr := int32(binary.BigEndian.Uint32(body)); corr != c.corr {
		return nil, fmt.Errorf("response to request %d, expected %d", corr, c.corr)
	}
	body = body[4:]
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	if resp.IsFlexible() {
		// Response header v1: tagged fields, none expected; skip them.
		var err error
		if body, err = skipTags(body); err != nil {
			return nil, err
		}
	}
	if err := resp.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", kmsg.NameForKey(req.Key()), err)
	}
	return resp, nil
}

// bytesWriter appends to a slice, growing it only with the bytes that
// come.
type bytesWriter struct{ b *[]byte }

func (w bytesWriter) Write(p []byte) (int, error) {
	*w.b = append(*w.b, p...)
	return len(p), nil
}

// skipTags skips a tagged-field section: a count, then each field's key,
// size and bytes, each bounded by the bytes left.
func skipTags(b []byte) ([]byte, error) {
	bad := errors.New("bad tagged fields in response header")
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, bad
	}
	b = b[k:]
	for ; n > 0; n-- {
		if _, k = binary.Uvarint(b); k <= 0 {
			return nil, bad
		}
		b = b[k:]
		size, k := binary.Uvarint(b)
		if k <= 0 || size > uint64(len(b)-k) {
			return nil, bad
		}
		b = b[k+int(size):]
	}
	return b, nil
}

// sleep waits d or until ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
