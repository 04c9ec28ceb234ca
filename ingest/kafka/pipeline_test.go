package kafka

import (
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// syncGate is a filesystem whose segment fsyncs can be held (a slow disk)
// and then released, failing or not.
type syncGate struct {
	flog.OSFS
	mu      sync.Mutex
	held    chan struct{} // non-nil: fsyncs wait until it is closed
	fail    error
	waiting int // fsyncs held now
}

func (g *syncGate) OpenFile(name string, flag int, perm fs.FileMode) (flog.File, error) {
	f, err := g.OSFS.OpenFile(name, flag, perm)
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return gatedFile{f, g}, nil
}

// hold makes fsyncs wait from now on.
func (g *syncGate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held == nil {
		g.held = make(chan struct{})
	}
}

// release lets held and later fsyncs go on, failing with err if not nil.
func (g *syncGate) release(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fail = err
	if g.held != nil {
		close(g.held)
		g.held = nil
	}
}

func (g *syncGate) heldSyncs() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting
}

type gatedFile struct {
	flog.File
	g *syncGate
}

func (f gatedFile) Sync() error {
	g := f.g
	g.mu.Lock()
	held := g.held
	if held != nil {
		g.waiting++
	}
	g.mu.Unlock()
	if held != nil {
		<-held
		g.mu.Lock()
		g.waiting--
		g.mu.Unlock()
	}
	g.mu.Lock()
	err := g.fail
	g.mu.Unlock()
	if err != nil {
		return err
	}
	return f.File.Sync()
}

// startGatedBroker is startBroker over a log whose fsyncs g holds, with
// the connections' answer queues bounded by limits (zero: the defaults).
// The gate is released before the broker closes; stop closes it early.
func startGatedBroker(t *testing.T, dir string, g *syncGate, limits pipelineLimits) (b *testBroker, stop func()) {
	t.Helper()
	return startGatedBrokerAt(t, "127.0.0.1:0", dir, g, limits)
}

// startGatedBrokerAt is startGatedBroker listening on addr.
func startGatedBrokerAt(t *testing.T, addr, dir string, g *syncGate, limits pipelineLimits) (b *testBroker, stop func()) {
	t.Helper()
	var fsys flog.FS = flog.OSFS{}
	if g != nil {
		fsys = g
	}
	l, err := flog.Open(flog.Options{Dir: dir, FS: fsys, RetentionCheckInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := OpenProducerIDs(filepath.Join(dir, "producer-ids.db"))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv, err := NewServer(Options{Log: l, ProducerIDs: ids, Registerer: reg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if limits.answers > 0 {
		srv.pipeline = limits
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			if g != nil {
				g.release(nil)
			}
			srv.Close()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			ids.Close()
			l.Close()
		})
	}
	t.Cleanup(stop)
	return &testBroker{srv: srv, log: l, addr: ln.Addr().String(), reg: reg, dir: dir}, stop
}

// pipeConn speaks the protocol frame by frame, so requests can be pipelined
// and answers read in the order they come.
type pipeConn struct {
	t  *testing.T
	nc net.Conn
	f  *kmsg.RequestFormatter
}

func dialPipe(t *testing.T, addr string) *pipeConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &pipeConn{t: t, nc: nc, f: kmsg.NewRequestFormatter(kmsg.FormatterClientID("raw"))}
}

// send writes requests, numbered from corr, in one write.
func (r *pipeConn) send(corr int32, reqs ...kmsg.Request) {
	r.t.Helper()
	var b []byte
	for i, req := range reqs {
		// AppendRequest frames correctly only into an empty slice.
		b = append(b, r.f.AppendRequest(nil, req, corr+int32(i))...)
	}
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

// read reads the next answer into resp (non-flexible versions only) and
// returns its correlation id.
func (r *pipeConn) read(resp kmsg.Response) int32 {
	r.t.Helper()
	r.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(r.nc, size[:]); err != nil {
		r.t.Fatalf("reading an answer: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(r.nc, body); err != nil {
		r.t.Fatalf("reading an answer: %v", err)
	}
	if err := resp.ReadFrom(body[4:]); err != nil {
		r.t.Fatalf("answer %d does not decode as %s: %v", binary.BigEndian.Uint32(body), kmsg.NameForKey(resp.Key()), err)
	}
	return int32(binary.BigEndian.Uint32(body))
}

// produceReq is a Produce v7 of one batch to topic's partition 0.
func produceReq(topic string, acks int16, batch []byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 7, acks, 30000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

func produceAnswer(t *testing.T, r *pipeConn, corr int32) kmsg.ProduceResponseTopicPartition {
	t.Helper()
	resp := kmsg.NewPtrProduceResponse()
	resp.Version = 7
	if got := r.read(resp); got != corr {
		t.Fatalf("answer to request %d came where %d's was due", got, corr)
	}
	return resp.Topics[0].Partitions[0]
}

func batchOf(value string) []byte {
	return flog.AppendBatch(nil, []flog.Record{{Value: []byte(value), Timestamp: time.Now().UnixMilli()}})
}

// idempotentBatch is a one-record batch of producer id/epoch at seq.
func idempotentBatch(value string, id int64, epoch int16, seq int32) []byte {
	b := batchOf(value)
	setProducer(b, id, epoch, seq)
	return b
}

// TestProducePipelinesDurabilityWaits: a franz-go producer with its default
// pipelining (idempotent, 5 requests in flight) and acks=all, on a disk whose
// fsync is held: the connection appends the next requests while the first
// waits for durability, a consumer reads the appended records meanwhile,
// and the answers come back in order once the fsync completes.
func TestProducePipelinesDurabilityWaits(t *testing.T) {
	g := &syncGate{}
	b, _ := startGatedBroker(t, t.TempDir(), g, pipelineLimits{})
	if _, err := b.log.CreateTopic("pipe", 1, nil); err != nil {
		t.Fatal(err)
	}
	part, _ := b.log.Partition("pipe", 0)
	cl := b.client(t, kgo.DefaultProduceTopic("pipe"), kgo.ProducerLinger(0), kgo.RequiredAcks(kgo.AllISRAcks()))
	ctx := ctxT(t)
	// Connect and get a producer id before the disk slows down.
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("warm-up")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	g.hold()

	const n = 5
	var mu sync.Mutex
	var answered []int64 // offsets, in the order the promises ran
	var errs []error
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Value: []byte{byte('a' + i)}}, func(r *kgo.Record, err error) {
			defer wg.Done()
			mu.Lock()
			answered = append(answered, r.Offset)
			errs = append(errs, err)
			mu.Unlock()
		})
		// One request each: the next record goes once this one is
		// appended (its request in flight, its answer held by the fsync).
		waitFor(t, "record appended", func() bool { return part.EndOffset() == int64(2+i) })
	}
	mu.Lock()
	early := len(answered)
	mu.Unlock()
	if early != 0 {
		t.Fatalf("%d records answered while their fsync was held", early)
	}
	if got := testutil.ToFloat64(b.srv.metrics.requests.WithLabelValues("Produce")); got < n+1 {
		t.Fatalf("%v produce requests: the records were not pipelined one request each", got)
	}
	// A consumer reads records once they are appended: before they are
	// durable, and before their produce is answered.
	got := consume(t, b, "pipe", 1+n)
	for i, r := range got[1:] {
		if r.Value[0] != byte('a'+i) {
			t.Fatalf("record %d is %q", i+1, r.Value)
		}
	}
	mu.Lock()
	early = len(answered)
	mu.Unlock()
	if early != 0 || part.DurableOffset() != 1 {
		t.Fatalf("%d answers, durable offset %d before the fsync was released", early, part.DurableOffset())
	}
	g.release(nil)
	wg.Wait()
	for i, off := range answered {
		if errs[i] != nil || off != int64(1+i) {
			t.Fatalf("answer %d: offset %d, %v (answers %v)", i, off, errs[i], answered)
		}
	}
	if part.DurableOffset() != 1+n {
		t.Fatalf("durable offset %d after every answer", part.DurableOffset())
	}
}

// TestPipelinedFsyncFailureFailsEveryWaiter: two idempotent produces
// appended on one connection, both waiting for one fsync that fails: both
// fail, in order, and so does the next (the partition is disabled). After a
// restart over a sound disk the producer's retries are recognised as the
// batches already stored and its next sequence follows them: the sequences
// stayed correct across the failure.
func TestPipelinedFsyncFailureFailsEveryWaiter(t *testing.T) {
	dir := t.TempDir()
	g := &syncGate{}
	b, stop := startGatedBroker(t, dir, g, pipelineLimits{})
	b.log.CreateTopic("fail", 1, nil)
	part, _ := b.log.Partition("fail", 0)
	init := kmsg.NewPtrInitProducerIDRequest()
	initResp, err := init.RequestWith(ctxT(t), b.client(t))
	if err != nil || initResp.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %v %v", initResp, err)
	}
	id, epoch := initResp.ProducerID, initResp.ProducerEpoch
	g.hold()
	r := dialPipe(t, b.addr)
	r.send(1, produceReq("fail", -1, idempotentBatch("s0", id, epoch, 0)), produceReq("fail", -1, idempotentBatch("s1", id, epoch, 1)))
	waitFor(t, "both batches appended", func() bool { return part.EndOffset() == 2 })
	waitFor(t, "the fsync held", func() bool { return g.heldSyncs() > 0 })
	g.release(errors.New("injected fsync failure"))
	for corr := int32(1); corr <= 2; corr++ {
		if a := produceAnswer(t, r, corr); a.ErrorCode != kerr.KafkaStorageError.Code {
			t.Fatalf("request %d after the failed fsync: error %d, want KAFKA_STORAGE_ERROR", corr, a.ErrorCode)
		}
	}
	r.send(3, produceReq("fail", -1, idempotentBatch("s2", id, epoch, 2)))
	if a := produceAnswer(t, r, 3); a.ErrorCode != kerr.KafkaStorageError.Code {
		t.Fatalf("a produce to the disabled partition: error %d", a.ErrorCode)
	}

	// Restart over a sound disk: what reached the file is recovered.
	stop()
	b, _ = startGatedBroker(t, dir, nil, pipelineLimits{})
	part, _ = b.log.Partition("fail", 0)
	stored := part.EndOffset()
	r = dialPipe(t, b.addr)
	r.send(4, produceReq("fail", -1, idempotentBatch("s0", id, epoch, 0)),
		produceReq("fail", -1, idempotentBatch("s1", id, epoch, 1)),
		produceReq("fail", -1, idempotentBatch("s2", id, epoch, 2)))
	for i, corr := range []int32{4, 5, 6} {
		a := produceAnswer(t, r, corr)
		if a.ErrorCode != 0 || a.BaseOffset != int64(i) {
			t.Fatalf("retry of sequence %d: offset %d error %d (%d batches recovered)", i, a.BaseOffset, a.ErrorCode, stored)
		}
	}
	if part.EndOffset() != 3 {
		t.Fatalf("end offset %d: a retried batch was stored twice", part.EndOffset())
	}
}

// TestProducerSequencesAcrossFsyncFailure: a franz-go idempotent producer
// with three requests pipelined behind a held fsync that then fails. None
// is acknowledged while the partition is disabled; once the broker restarts
// over a sound disk at the same address, the producer's retries (the same
// sequences) are recognised as the batches already stored: every record is
// acknowledged once, at the offset it was first appended at, in order.
func TestProducerSequencesAcrossFsyncFailure(t *testing.T) {
	dir := t.TempDir()
	g := &syncGate{}
	b, stop := startGatedBroker(t, dir, g, pipelineLimits{})
	b.log.CreateTopic("seq", 1, nil)
	part, _ := b.log.Partition("seq", 0)
	cl := b.client(t, kgo.DefaultProduceTopic("seq"), kgo.ProducerLinger(0),
		kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond }), kgo.MetadataMinAge(20*time.Millisecond))
	ctx := ctxT(t)
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("warm-up")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	g.hold()
	const n = 3
	var mu sync.Mutex
	var offsets []int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Value: []byte{byte('a' + i)}}, func(r *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				t.Errorf("record %q: %v", r.Value, err)
			}
			mu.Lock()
			offsets = append(offsets, r.Offset)
			mu.Unlock()
		})
		waitFor(t, "record appended", func() bool { return part.EndOffset() == int64(2+i) })
	}
	g.release(errors.New("injected fsync failure"))
	storageErrors := b.srv.metrics.partErrors.WithLabelValues("Produce", kerr.KafkaStorageError.Message)
	waitFor(t, "the failed answers and a refused retry", func() bool { return testutil.ToFloat64(storageErrors) > n })
	mu.Lock()
	acked := len(offsets)
	mu.Unlock()
	if acked != 0 {
		t.Fatalf("%d records acknowledged after their fsync failed", acked)
	}
	stop()
	b, _ = startGatedBrokerAt(t, b.addr, dir, nil, pipelineLimits{})
	wg.Wait()
	for i, off := range offsets {
		if off != int64(1+i) {
			t.Fatalf("acknowledged offsets %v, want 1..%d in order", offsets, n)
		}
	}
	part, _ = b.log.Partition("seq", 0)
	if part.EndOffset() != 1+n {
		t.Fatalf("end offset %d: a retried batch was stored twice", part.EndOffset())
	}
}

// TestPipelinedRefusedAppend: a batch refused on a connection with earlier
// answers waiting is answered with its error, and the idempotent producer's
// next sequence behind it is OUT_OF_ORDER_SEQUENCE_NUMBER, as in Kafka: the
// appends stay in request order.
func TestPipelinedRefusedAppend(t *testing.T) {
	g := &syncGate{}
	b, _ := startGatedBroker(t, t.TempDir(), g, pipelineLimits{})
	b.log.CreateTopic("refuse", 1, nil)
	part, _ := b.log.Partition("refuse", 0)
	initResp, err := kmsg.NewPtrInitProducerIDRequest().RequestWith(ctxT(t), b.client(t))
	if err != nil || initResp.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %v %v", initResp, err)
	}
	id, epoch := initResp.ProducerID, initResp.ProducerEpoch
	corrupt := idempotentBatch("s1", id, epoch, 1)
	corrupt[len(corrupt)-1] ^= 0xff // the CRC no longer matches
	g.hold()
	r := dialPipe(t, b.addr)
	r.send(1,
		produceReq("refuse", -1, idempotentBatch("s0", id, epoch, 0)),
		produceReq("refuse", -1, corrupt),
		produceReq("refuse", -1, idempotentBatch("s2", id, epoch, 2)),
		produceReq("refuse", -1, idempotentBatch("s1", id, epoch, 1)))
	waitFor(t, "the retried batch appended behind the first", func() bool { return part.EndOffset() == 2 })
	g.release(nil)
	want := []struct {
		code int16
		off  int64
	}{{0, 0}, {kerr.CorruptMessage.Code, -1}, {kerr.OutOfOrderSequenceNumber.Code, -1}, {0, 1}}
	for i, w := range want {
		if a := produceAnswer(t, r, int32(1+i)); a.ErrorCode != w.code || a.BaseOffset != w.off {
			t.Fatalf("request %d: error %d offset %d, want %d at %d", 1+i, a.ErrorCode, a.BaseOffset, w.code, w.off)
		}
	}
}

// TestPipelinedAnswersInRequestOrder pipelines produces of every acks with
// other requests on one connection while an fsync is held: produces are
// appended past the one waiting, the first request of another kind waits
// for every answer before it, and answers leave in request order (none for
// acks=0).
func TestPipelinedAnswersInRequestOrder(t *testing.T) {
	g := &syncGate{}
	b, _ := startGatedBroker(t, t.TempDir(), g, pipelineLimits{})
	b.log.CreateTopic("order", 1, nil)
	part, _ := b.log.Partition("order", 0)
	g.hold()
	meta := kmsg.NewPtrMetadataRequest()
	meta.Version = 8
	versions := kmsg.NewPtrApiVersionsRequest()
	versions.Version = 2
	fetch := kmsg.NewPtrFetchRequest()
	fetch.Version, fetch.MaxWaitMillis, fetch.MaxBytes, fetch.ReplicaID = 11, 500, 1<<20, -1
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "order"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.FetchOffset, fp.PartitionMaxBytes = 3, 1<<20 // the end once the three produces are in: a long poll
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)

	r := dialPipe(t, b.addr)
	r.send(10,
		produceReq("order", -1, batchOf("all")),  // 10: waits for the held fsync
		produceReq("order", 1, batchOf("one")),   // 11: appended, answered behind 10
		produceReq("order", 0, batchOf("none")),  // 12: appended, never answered
		meta,                                     // 13: waits until 10 and 11 are answered
		versions,                                 // 14
		fetch,                                    // 15: a 500 ms long poll at the end
		produceReq("order", -1, batchOf("last")), // 16
	)
	waitFor(t, "the produces behind the waiting one appended", func() bool { return part.EndOffset() == 3 })
	if got := testutil.ToFloat64(b.srv.metrics.requests.WithLabelValues("Metadata")); got != 0 {
		t.Fatal("Metadata served before the produce answers ahead of it")
	}
	g.release(nil)
	if a := produceAnswer(t, r, 10); a.ErrorCode != 0 || a.BaseOffset != 0 {
		t.Fatalf("acks=all: %+v", a)
	}
	if a := produceAnswer(t, r, 11); a.ErrorCode != 0 || a.BaseOffset != 1 {
		t.Fatalf("acks=1: %+v", a)
	}
	mresp := kmsg.NewPtrMetadataResponse()
	mresp.Version = 8
	if corr := r.read(mresp); corr != 13 || len(mresp.Topics) == 0 {
		t.Fatalf("answer %d where Metadata's (13) was due (%d topics)", corr, len(mresp.Topics))
	}
	vresp := kmsg.NewPtrApiVersionsResponse()
	vresp.Version = 2
	if corr := r.read(vresp); corr != 14 || vresp.ErrorCode != 0 {
		t.Fatalf("answer %d where ApiVersions' (14) was due", corr)
	}
	fresp := kmsg.NewPtrFetchResponse()
	fresp.Version = 11
	if corr := r.read(fresp); corr != 15 || len(fresp.Topics) != 1 || fresp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("answer %d where Fetch's (15) was due: %+v", corr, fresp)
	}
	if a := produceAnswer(t, r, 16); a.ErrorCode != 0 || a.BaseOffset != 3 {
		t.Fatalf("last produce: %+v", a)
	}
}

// TestPipelineIsBounded: a client pipelining more produces than the queue
// holds, none answerable (the fsync is held), is not read from past the
// bound; the answers all come once the fsync completes.
func TestPipelineIsBounded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limits pipelineLimits
		want   int64 // batches appended: the queue's worth and one waiting for room
	}{
		{"answers", pipelineLimits{answers: 4, bytes: 1 << 20}, 5},
		{"bytes", pipelineLimits{answers: 100, bytes: 300}, 3}, // each request's frame is ~130 bytes
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &syncGate{}
			b, _ := startGatedBroker(t, t.TempDir(), g, tc.limits)
			b.log.CreateTopic("bound", 1, nil)
			part, _ := b.log.Partition("bound", 0)
			g.hold()
			r := dialPipe(t, b.addr)
			const n = 12
			reqs := make([]kmsg.Request, n)
			for i := range reqs {
				reqs[i] = produceReq("bound", -1, batchOf("v"))
			}
			r.send(1, reqs...)
			waitFor(t, "the queue full", func() bool { return part.EndOffset() >= tc.want })
			// The bound holds: given time, the reader takes no more. (A
			// negative check can only be made over a window.)
			for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
				if got := part.EndOffset(); got != tc.want {
					t.Fatalf("%d batches appended with the queue bounded to %+v", got, tc.limits)
				}
			}
			g.release(nil)
			for i := range n {
				if a := produceAnswer(t, r, int32(1+i)); a.ErrorCode != 0 || a.BaseOffset != int64(i) {
					t.Fatalf("answer %d: %+v", i, a)
				}
			}
		})
	}
}

// TestConnectionClosedMidPipeline: a client that goes away with answers
// waiting for a held fsync leaves nothing behind: the connection's goroutine
// and its durability waiters end without the fsync completing.
func TestConnectionClosedMidPipeline(t *testing.T) {
	for _, tc := range []struct {
		name string
		reqs []kmsg.Request
	}{
		{"one waiting", []kmsg.Request{produceReq("gone", -1, batchOf("a"))}},
		{"three queued", []kmsg.Request{produceReq("gone", -1, batchOf("a")), produceReq("gone", -1, batchOf("b")), produceReq("gone", 1, batchOf("c"))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &syncGate{}
			b, _ := startGatedBroker(t, t.TempDir(), g, pipelineLimits{})
			b.log.CreateTopic("gone", 1, nil)
			part, _ := b.log.Partition("gone", 0)
			g.hold()
			before := runtime.NumGoroutine()
			r := dialPipe(t, b.addr)
			r.send(1, tc.reqs...)
			waitFor(t, "the pipeline full", func() bool { return part.EndOffset() == int64(len(tc.reqs)) })
			waitFor(t, "the fsync held", func() bool { return g.heldSyncs() > 0 })
			r.nc.Close()
			waitFor(t, "the connection's goroutines to end", func() bool {
				return runtime.NumGoroutine() <= before && testutil.ToFloat64(b.srv.metrics.connections) == 0
			})
			if g.heldSyncs() == 0 {
				t.Fatal("the fsync completed: the test proves nothing")
			}
		})
	}
}

// TestServerCloseMidPipeline: Close returns promptly with answers waiting
// for an fsync that never completes.
func TestServerCloseMidPipeline(t *testing.T) {
	g := &syncGate{}
	b, _ := startGatedBroker(t, t.TempDir(), g, pipelineLimits{})
	b.log.CreateTopic("close", 1, nil)
	part, _ := b.log.Partition("close", 0)
	g.hold()
	r := dialPipe(t, b.addr)
	r.send(1, produceReq("close", -1, batchOf("a")), produceReq("close", -1, batchOf("b")))
	waitFor(t, "the pipeline full", func() bool { return part.EndOffset() == 2 })
	done := make(chan struct{})
	go func() { b.srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs on a connection with answers waiting")
	}
}

// TestProduceToTwoPartitionsSyncsThemTogether: an acks=all produce to two
// partitions asks for both fsyncs before it waits, so the second begins
// while the first is held rather than once it returns (with flush.ms a
// minute, nothing else would start it).
func TestProduceToTwoPartitionsSyncsThemTogether(t *testing.T) {
	g := &syncGate{}
	b, _ := startGatedBroker(t, t.TempDir(), g, pipelineLimits{})
	if _, err := b.log.CreateTopic("two", 2, map[string]string{flog.ConfigFlushMs: "60000"}); err != nil {
		t.Fatal(err)
	}
	r := dialPipe(t, b.addr)
	req := func(values ...string) *kmsg.ProduceRequest {
		req := produceReq("two", -1, batchOf(values[0]))
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition, rp.Records = 1, batchOf(values[1])
		req.Topics[0].Partitions = append(req.Topics[0].Partitions, rp)
		return req
	}
	// A first group commit on each partition, so the next interval is a
	// minute away.
	r.send(1, req("w0", "w1"))
	if p := produceAnswer(t, r, 1); p.ErrorCode != 0 {
		t.Fatalf("warm-up: error %d", p.ErrorCode)
	}
	g.hold()
	r.send(2, req("a0", "a1"))
	waitFor(t, "both partitions' fsyncs held at once", func() bool { return g.heldSyncs() == 2 })
	g.release(nil)
	resp := kmsg.NewPtrProduceResponse()
	resp.Version = 7
	if got := r.read(resp); got != 2 {
		t.Fatalf("answer %d", got)
	}
	for _, p := range resp.Topics[0].Partitions {
		if p.ErrorCode != 0 || p.BaseOffset != 1 {
			t.Fatalf("partition %d: error %d, offset %d", p.Partition, p.ErrorCode, p.BaseOffset)
		}
	}
}
