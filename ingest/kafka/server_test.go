package kafka

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// testRebalanceDelay is the test brokers' initial rebalance delay: short,
// so tests do not wait Kafka's 3 s for every new group, but not none.
const testRebalanceDelay = 50 * time.Millisecond

type testBroker struct {
	srv  *Server
	log  *flog.Log
	addr string
	reg  *prometheus.Registry
	dir  string
}

// startBroker runs a Server on 127.0.0.1 over a log in a temporary directory.
func startBroker(t testing.TB, mod func(*Options)) *testBroker {
	t.Helper()
	return startBrokerOn(t, mod, nil)
}

// startBrokerOn is startBroker with the listener wrapped (TLS), unless wrap
// is nil.
func startBrokerOn(t testing.TB, mod func(*Options), wrap func(net.Listener) net.Listener) *testBroker {
	t.Helper()
	return startBrokerLog(t, nil, mod, wrap)
}

// startBrokerLog is startBrokerOn over a log whose options logMod changes
// (its clock, say), unless it is nil.
func startBrokerLog(t testing.TB, logMod func(*flog.Options), mod func(*Options), wrap func(net.Listener) net.Listener) *testBroker {
	t.Helper()
	dir := t.TempDir()
	lopts := flog.Options{Dir: dir, RetentionCheckInterval: -1, Logger: slog.New(slog.DiscardHandler)}
	if logMod != nil {
		logMod(&lopts)
	}
	l, err := flog.Open(lopts)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := OpenProducerIDs(filepath.Join(dir, "producer-ids.db"))
	if err != nil {
		t.Fatal(err)
	}
	groups, err := OpenGroupsOptions(filepath.Join(dir, "groups.db"), GroupsOptions{Logger: slog.New(slog.DiscardHandler), InitialRebalanceDelay: testRebalanceDelay})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	opts := Options{Log: l, ProducerIDs: ids, Groups: groups, AutoCreateTopics: true, DefaultPartitions: 3, Registerer: reg, Logger: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&opts)
	}
	srv, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if wrap != nil {
		ln = wrap(ln)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		ids.Close()
		groups.Close()
		l.Close()
	})
	return &testBroker{srv: srv, log: l, addr: addr, reg: reg, dir: dir}
}

func (b *testBroker) client(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	c, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.addr), kgo.FetchMaxWait(time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// consume reads n records from the start of topic.
func consume(t *testing.T, b *testBroker, topic string, n int) []*kgo.Record {
	t.Helper()
	c := b.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var out []*kgo.Record
	ctx := ctxT(t)
	for len(out) < n {
		fs := c.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before the deadline", len(out), n)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", topic, p, err) })
		out = append(out, fs.Records()...)
	}
	return out
}

func TestKeyedProduceConsumeRoundTrip(t *testing.T) {
	b := startBroker(t, nil)
	ctx := ctxT(t)
	if _, err := b.log.CreateTopic("user-events", 4, nil); err != nil {
		t.Fatal(err)
	}
	p := b.client(t, kgo.DefaultProduceTopic("user-events"))
	const n = 400
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("user-%d", i%17)
		p.Produce(ctx, &kgo.Record{Key: []byte(key), Value: []byte(fmt.Sprintf(`{"n":%d}`, i))}, func(r *kgo.Record, err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	recs := consume(t, b, "user-events", n)
	last := map[string]int{}
	for _, r := range recs {
		// Every record lands where Kafka's partitioner puts its key.
		if want := flog.PartitionForKey(r.Key, 4); r.Partition != want {
			t.Fatalf("key %s on partition %d, Kafka's partitioner says %d", r.Key, r.Partition, want)
		}
		var v int
		fmt.Sscanf(string(r.Value), `{"n":%d}`, &v)
		if prev, ok := last[string(r.Key)]; ok && v <= prev {
			t.Fatalf("key %s out of order: %d after %d", r.Key, v, prev)
		}
		last[string(r.Key)] = v
	}
	if len(recs) != n {
		t.Fatalf("%d records, want %d", len(recs), n)
	}
}

func TestAllCodecsRoundTrip(t *testing.T) {
	b := startBroker(t, nil)
	for _, codec := range []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()} {
		topic := fmt.Sprintf("codec-%d", len(b.log.Topics()))
		p := b.client(t, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(codec), kgo.AllowAutoTopicCreation())
		ctx := ctxT(t)
		var rs []*kgo.Record
		for i := 0; i < 50; i++ {
			rs = append(rs, &kgo.Record{Key: []byte("k"), Value: []byte(strings.Repeat(fmt.Sprint(i), 30))})
		}
		if err := p.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
		got := consume(t, b, topic, 50)
		for i, r := range got {
			if string(r.Value) != strings.Repeat(fmt.Sprint(i), 30) {
				t.Fatalf("%s: record %d = %q", topic, i, r.Value)
			}
		}
	}
}

func TestAcks(t *testing.T) {
	b := startBroker(t, nil)
	b.log.CreateTopic("acks", 1, map[string]string{flog.ConfigFlushPolicy: "interval", flog.ConfigFlushMs: "20"})
	part, _ := b.log.Partition("acks", 0)
	for _, tc := range []struct {
		name string
		acks kgo.Acks
	}{{"none", kgo.NoAck()}, {"leader", kgo.LeaderAck()}, {"all", kgo.AllISRAcks()}} {
		p := b.client(t, kgo.DefaultProduceTopic("acks"), kgo.RequiredAcks(tc.acks), kgo.DisableIdempotentWrite())
		before := part.EndOffset()
		if err := p.ProduceSync(ctxT(t), &kgo.Record{Value: []byte(tc.name)}).FirstErr(); err != nil {
			t.Fatalf("acks=%s: %v", tc.name, err)
		}
		if tc.name == "all" && part.DurableOffset() <= before {
			t.Fatalf("acks=all answered before the record was durable")
		}
	}
	if got := consume(t, b, "acks", 3); string(got[0].Value) != "none" || string(got[2].Value) != "all" {
		t.Fatalf("records %q %q", got[0].Value, got[2].Value)
	}
}

// TestIdempotentRetryIsNotStoredTwice sends the same idempotent batch twice,
// as a producer retrying after a lost response does.
func TestIdempotentRetryIsNotStoredTwice(t *testing.T) {
	b := startBroker(t, nil)
	b.log.CreateTopic("idem", 1, nil)
	c := b.client(t)
	ctx := ctxT(t)
	initResp, err := kmsg.NewPtrInitProducerIDRequest().RequestWith(ctx, c)
	if err != nil || initResp.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %v %v", initResp, err)
	}
	batch := flog.AppendBatch(nil, []flog.Record{{Key: []byte("k"), Value: []byte("once"), Timestamp: time.Now().UnixMilli()}})
	setProducer(batch, initResp.ProducerID, initResp.ProducerEpoch, 0)
	produce := func() *kmsg.ProduceResponseTopicPartition {
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = -1, 5000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = "idem"
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = append([]byte(nil), batch...)
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		return &resp.Topics[0].Partitions[0]
	}
	first, second := produce(), produce()
	if first.ErrorCode != 0 || second.ErrorCode != 0 || second.BaseOffset != first.BaseOffset {
		t.Fatalf("retry: first %+v, second %+v", first, second)
	}
	p, _ := b.log.Partition("idem", 0)
	if p.EndOffset() != 1 {
		t.Fatalf("the retried batch was stored twice: end offset %d", p.EndOffset())
	}
	// A sequence gap is refused as Kafka refuses it.
	setProducer(batch, initResp.ProducerID, initResp.ProducerEpoch, 5)
	if r := produce(); r.ErrorCode != kerr.OutOfOrderSequenceNumber.Code {
		t.Fatalf("gap: error %d", r.ErrorCode)
	}
}

// setProducer stamps producer fields on a batch and recomputes its CRC.
func setProducer(b []byte, id int64, epoch int16, seq int32) {
	binary.BigEndian.PutUint64(b[43:], uint64(id))
	binary.BigEndian.PutUint16(b[51:], uint16(epoch))
	binary.BigEndian.PutUint32(b[53:], uint32(seq))
	h, _ := flog.ParseBatch(b) // header only; CRC recomputed below
	_ = h
	recomputeCRC(b)
}

func TestLongPollFetchWakesOnProduce(t *testing.T) {
	b := startBroker(t, nil)
	b.log.CreateTopic("wake", 1, nil)
	c := b.client(t, kgo.ConsumeTopics("wake"), kgo.FetchMaxWait(5*time.Second))
	ctx := ctxT(t)
	// Let the consumer reach its long poll, then produce.
	polled := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		for {
			fs := c.PollFetches(ctx)
			if len(fs.Records()) > 0 || ctx.Err() != nil {
				polled <- time.Since(start)
				return
			}
		}
	}()
	p, _ := b.log.Partition("wake", 0)
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(b.srv.metrics.requests.WithLabelValues("Fetch")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("consumer never fetched")
		}
		time.Sleep(5 * time.Millisecond)
	}
	produced := time.Now()
	if _, err := p.Append(flog.AppendBatch(nil, []flog.Record{{Value: []byte("now"), Timestamp: produced.UnixMilli()}})); err != nil {
		t.Fatal(err)
	}
	select {
	case <-polled:
		if lag := time.Since(produced); lag > 2500*time.Millisecond {
			t.Fatalf("long poll woke %v after the produce: not woken by it (max wait 5 s)", lag)
		}
	case <-ctx.Done():
		t.Fatal("no record")
	}
}

func TestFetchErrorsAndListOffsets(t *testing.T) {
	b := startBroker(t, nil)
	b.log.CreateTopic("lo", 1, nil)
	p, _ := b.log.Partition("lo", 0)
	for i := int64(0); i < 5; i++ {
		p.Append(flog.AppendBatch(nil, []flog.Record{{Value: []byte{byte(i)}, Timestamp: 1000 + i*10}}))
	}
	c := b.client(t)
	ctx := ctxT(t)
	adm := kadm.NewClient(c)
	start, err := adm.ListStartOffsets(ctx, "lo")
	if err != nil || start["lo"][0].Offset != 0 {
		t.Fatalf("start offsets: %v %v", start, err)
	}
	end, err := adm.ListEndOffsets(ctx, "lo")
	if err != nil || end["lo"][0].Offset != 5 {
		t.Fatalf("end offsets: %v %v", end, err)
	}
	byTime, err := adm.ListOffsetsAfterMilli(ctx, 1015, "lo")
	if err != nil || byTime["lo"][0].Offset != 2 {
		t.Fatalf("offset after 1015 ms: %v %v", byTime, err)
	}
	// A fetch past the end is OFFSET_OUT_OF_RANGE.
	req := kmsg.NewPtrFetchRequest()
	req.MaxBytes, req.MaxWaitMillis = 1<<20, 10
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = "lo"
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.FetchOffset, rp.PartitionMaxBytes = 99, 1<<20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	req.SetVersion(11)
	resp, err := req.RequestWith(ctx, c)
	if err != nil || resp.Topics[0].Partitions[0].ErrorCode != kerr.OffsetOutOfRange.Code || resp.Topics[0].Partitions[0].HighWatermark != 5 {
		t.Fatalf("fetch past the end: %+v %v", resp, err)
	}
	if got := testutil.ToFloat64(b.srv.metrics.partErrors.WithLabelValues("Fetch", "OFFSET_OUT_OF_RANGE")); got != 1 {
		t.Fatalf("fetch OFFSET_OUT_OF_RANGE counted %v times, want 1", got)
	}
	// A fetch inside a batch returns the whole batch.
	p.Append(flog.AppendBatch(nil, []flog.Record{{Value: []byte("a")}, {Value: []byte("b")}, {Value: []byte("c")}}))
	req.Topics[0].Partitions[0].FetchOffset = 6
	resp, err = req.RequestWith(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	h, err := flog.ParseBatch(resp.Topics[0].Partitions[0].RecordBatches)
	if err != nil || h.BaseOffset != 5 || h.NumRecords != 3 {
		t.Fatalf("fetch inside a batch: %+v %v", h, err)
	}
}

func TestAdminAPIs(t *testing.T) {
	b := startBroker(t, func(o *Options) { o.AutoCreateTopics = false })
	c := b.client(t)
	adm := kadm.NewClient(c)
	ctx := ctxT(t)
	resp, err := adm.CreateTopics(ctx, 2, 1, map[string]*string{"retention.ms": kmsg.StringPtr("60000")}, "orders", "bad/name")
	if err != nil {
		t.Fatal(err)
	}
	if resp["orders"].Err != nil || resp["orders"].ID == [16]byte{} {
		t.Fatalf("create orders: %+v", resp["orders"])
	}
	if !errorIs(resp["bad/name"].Err, kerr.InvalidTopicException) {
		t.Fatalf("create bad/name: %v", resp["bad/name"].Err)
	}
	again, _ := adm.CreateTopics(ctx, 2, 1, nil, "orders")
	if !errorIs(again["orders"].Err, kerr.TopicAlreadyExists) {
		t.Fatalf("create twice: %v", again["orders"].Err)
	}
	rf3, _ := adm.CreateTopics(ctx, 1, 3, nil, "replicated")
	if !errorIs(rf3["replicated"].Err, kerr.InvalidReplicationFactor) {
		t.Fatalf("replication factor 3: %v", rf3["replicated"].Err)
	}
	badCfg, _ := adm.CreateTopics(ctx, 1, 1, map[string]*string{"retention.hours": kmsg.StringPtr("1")}, "cfg")
	if !errorIs(badCfg["cfg"].Err, kerr.InvalidConfig) {
		t.Fatalf("bad config: %v", badCfg["cfg"].Err)
	}
	if _, err := adm.CreatePartitions(ctx, 2, "orders"); err != nil {
		t.Fatal(err)
	}
	if info, _ := b.log.Topic("orders"); info.Partitions != 4 {
		t.Fatalf("partitions after CreatePartitions: %d", info.Partitions)
	}
	// Describe, then alter live.
	rcs, err := adm.DescribeTopicConfigs(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	cfgs := map[string]*kadm.Config{}
	for i := range rcs[0].Configs {
		cfgs[rcs[0].Configs[i].Key] = &rcs[0].Configs[i]
	}
	if cfgs["retention.ms"].MaybeValue() != "60000" || cfgs["retention.ms"].Source != kmsg.ConfigSourceDynamicTopicConfig || cfgs["segment.bytes"].Source != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("describe configs: %+v", cfgs)
	}
	alt, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "flush.policy", Value: kmsg.StringPtr("always")}, {Op: kadm.DeleteConfig, Name: "retention.ms"}}, "orders")
	if err != nil || alt[0].Err != nil {
		t.Fatalf("alter: %v %v", alt, err)
	}
	if cfg, _ := b.log.TopicConfig("orders"); cfg.Flush != flog.FlushAlways || cfg.RetentionAge != 7*24*time.Hour {
		t.Fatalf("alter did not take effect: %+v", cfg)
	}
	bad, _ := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "flush.policy", Value: kmsg.StringPtr("sometimes")}}, "orders")
	if !errorIs(bad[0].Err, kerr.InvalidConfig) {
		t.Fatalf("bad alter: %v", bad[0].Err)
	}
	// Metadata without auto-creation: unknown topic.
	md, err := adm.Metadata(ctx, "nope")
	if err != nil || !errorIs(md.Topics["nope"].Err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("metadata of unknown topic: %+v %v", md.Topics["nope"], err)
	}
	if _, err := b.log.Topic("nope"); err == nil {
		t.Fatal("metadata created a topic with auto-creation off")
	}
	del, err := adm.DeleteTopics(ctx, "orders", "missing")
	if err != nil || del["orders"].Err != nil || !errorIs(del["missing"].Err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("delete: %+v %v", del, err)
	}
}

func errorIs(err error, want *kerr.Error) bool {
	return err != nil && strings.Contains(err.Error(), want.Message)
}

// TestMalformedFramesCloseOnlyThatConnection sends bad frames on raw
// connections: each is closed and counted, and the broker serves others.
func TestMalformedFramesCloseOnlyThatConnection(t *testing.T) {
	b := startBroker(t, nil)
	for name, frame := range map[string][]byte{
		"oversized length":    {0x7f, 0xff, 0xff, 0xff},
		"negative length":     {0xff, 0xff, 0xff, 0xf0},
		"garbage header":      {0, 0, 0, 8, 0x7f, 0x7f, 0, 1, 0, 0, 0, 1},
		"undecodable body":    frameOf([]byte{0, 3, 0, 9, 0, 0, 0, 1, 0, 0, 0, 0x05, 0xff, 0xff}),
		"unsupported produce": {0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0},
	} {
		nc, err := net.Dial("tcp", b.addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.Write(frame)
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := nc.Read(make([]byte, 1))
		if ne, ok := err.(net.Error); err == nil || ok && ne.Timeout() {
			t.Fatalf("%s: connection not closed by the broker (read %d bytes, %v)", name, n, err)
		}
		nc.Close()
	}
	for reason, want := range map[string]float64{"frame_size": 2, "header": 1, "unsupported": 1, "body": 1} {
		if got := testutil.ToFloat64(b.srv.metrics.malformed.WithLabelValues(reason)); got != want {
			t.Fatalf("malformed{reason=%s} = %v, want %v", reason, got, want)
		}
	}
	// The broker still serves.
	if _, err := kadm.NewClient(b.client(t)).ListBrokers(ctxT(t)); err != nil {
		t.Fatalf("after malformed frames: %v", err)
	}
}

func frameOf(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// TestApiVersionsFallback asks with a version above ours: the answer is v0
// with UNSUPPORTED_VERSION and our range, as Kafka answers.
func TestApiVersionsFallback(t *testing.T) {
	b := startBroker(t, nil)
	nc, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req := []byte{0, 18, 0, 99, 0, 0, 0, 7, 0xff, 0xff, 0} // key 18 v99, corr 7, null client id, no tags
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(req)))
	nc.Write(append(frame, req...))
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(nc, size[:]); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	io.ReadFull(nc, body)
	if corr := binary.BigEndian.Uint32(body); corr != 7 {
		t.Fatalf("correlation %d", corr)
	}
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(0)
	if err := resp.ReadFrom(body[4:]); err != nil {
		t.Fatal(err)
	}
	if resp.ErrorCode != kerr.UnsupportedVersion.Code || len(resp.ApiKeys) != 1 || resp.ApiKeys[0].MaxVersion != 3 {
		t.Fatalf("fallback answer: %+v", resp)
	}
}

// TestCloseWakesLongPolls: Close returns promptly with fetches parked.
func TestCloseWakesLongPolls(t *testing.T) {
	b := startBroker(t, nil)
	b.log.CreateTopic("idle", 1, nil)
	c := b.client(t, kgo.ConsumeTopics("idle"), kgo.FetchMaxWait(20*time.Second))
	var wg sync.WaitGroup
	wg.Add(1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { defer wg.Done(); c.PollFetches(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(b.srv.metrics.requests.WithLabelValues("Fetch")) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	b.srv.Close()
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("Close took %v with a parked long poll", el)
	}
	cancel()
	wg.Wait()
}

func startBenchBroker(b *testing.B) *testBroker { return startBroker(b, nil) }

// TestCorruptBatchIsRefusedAndCounted produces a batch with a flipped byte:
// CORRUPT_MESSAGE, nothing stored, and the error counted.
func TestCorruptBatchIsRefusedAndCounted(t *testing.T) {
	b := startBroker(t, nil)
	b.log.CreateTopic("bad", 1, nil)
	batch := flog.AppendBatch(nil, []flog.Record{{Value: []byte("payload"), Timestamp: time.Now().UnixMilli()}})
	batch[len(batch)-2] ^= 0xff
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = 1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "bad"
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxT(t), b.client(t))
	if err != nil || resp.Topics[0].Partitions[0].ErrorCode != kerr.CorruptMessage.Code {
		t.Fatalf("corrupt batch: %+v %v", resp, err)
	}
	if p, _ := b.log.Partition("bad", 0); p.EndOffset() != 0 {
		t.Fatalf("a corrupt batch was stored")
	}
	if got := testutil.ToFloat64(b.srv.metrics.partErrors.WithLabelValues("Produce", "CORRUPT_MESSAGE")); got != 1 {
		t.Fatalf("CORRUPT_MESSAGE counted %v times", got)
	}
}
