package kafka

import (
	"encoding/binary"
	"io"
	"net"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// scrapeSeries serves reg as /metrics does and returns every sample by its
// series as exposed (name{label="value",...}, labels sorted by name).
func scrapeSeries(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	out := map[string]float64{}
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// Bytes in and out are counted per API, exactly as framed on the wire,
// and a frame of an API no handler serves counts under api="unknown".
func TestMetricsBytesPerAPI(t *testing.T) {
	b := startBroker(t, nil)
	nc, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName, req.ClientSoftwareVersion = "test", "1"
	frame := frameOf(encodeRequest(req, 1, "metrics-test"))
	if _, err := nc.Write(frame); err != nil {
		t.Fatal(err)
	}
	var size [4]byte
	if _, err := io.ReadFull(nc, size[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(nc, make([]byte, binary.BigEndian.Uint32(size[:]))); err != nil {
		t.Fatal(err)
	}
	sent := 4 + int(binary.BigEndian.Uint32(size[:]))

	// A frame for API key 999: counted in, then the connection closes.
	bad := frameOf([]byte{0x03, 0xe7, 0, 0, 0, 0, 0, 2, 0xff, 0xff})
	if _, err := nc.Write(bad); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(nc, size[:]); err == nil {
		t.Fatal("an unknown API key was answered")
	}

	m := scrapeSeries(t, b.reg)
	for series, want := range map[string]float64{
		`ferry_kafka_received_bytes_total{api="ApiVersions"}`: float64(len(frame)),
		`ferry_kafka_sent_bytes_total{api="ApiVersions"}`:     float64(sent),
		`ferry_kafka_requests_total{api="ApiVersions"}`:       1,
		`ferry_kafka_received_bytes_total{api="unknown"}`:     float64(len(bad)),
		`ferry_kafka_sent_bytes_total{api="unknown"}`:         0,
		`ferry_kafka_received_bytes_total{api="Produce"}`:     0,
	} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
}

// After a known workload the consumer-group series say exactly what was
// committed and how far behind the end offsets it is, and every produce
// request is in the latency histogram under its acks.
func TestMetricsConsumerLagAndProduceLatency(t *testing.T) {
	b := startBroker(t, nil)
	ctx := ctxT(t)
	if _, err := b.log.CreateTopic("lag", 3, nil); err != nil {
		t.Fatal(err)
	}
	produced := map[int32]int{0: 10, 1: 5, 2: 0}
	all := b.client(t, kgo.DefaultProduceTopic("lag"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	one := b.client(t, kgo.DefaultProduceTopic("lag"), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	for p, n := range produced {
		for i := 0; i < n; i++ {
			cl := all
			if i%2 == 1 {
				cl = one
			}
			if err := cl.ProduceSync(ctx, &kgo.Record{Partition: p, Value: []byte("v")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	committed := map[int32]int64{0: 4, 1: 5}
	offsets := kadm.Offsets{}
	for p, o := range committed {
		offsets.Add(kadm.Offset{Topic: "lag", Partition: p, At: o, LeaderEpoch: -1})
	}
	resp, err := kadm.NewClient(b.client(t)).CommitOffsets(ctx, "readers", offsets)
	if err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", err, resp.Error())
	}

	m := scrapeSeries(t, b.reg)
	want := map[string]float64{`ferry_kafka_consumer_group_members{group="readers"}`: 0}
	for p, o := range committed {
		ps := strconv.Itoa(int(p))
		want[`ferry_kafka_consumer_group_committed_offset{group="readers",partition="`+ps+`",topic="lag"}`] = float64(o)
		want[`ferry_kafka_consumer_group_lag{group="readers",partition="`+ps+`",topic="lag"}`] = float64(int64(produced[p]) - o)
	}
	for series, w := range want {
		if got, ok := m[series]; !ok || got != w {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, w)
		}
	}
	if _, ok := m[`ferry_kafka_consumer_group_lag{group="readers",partition="2",topic="lag"}`]; ok {
		t.Error("lag reported for a partition the group never committed")
	}
	// 15 records, one produce request each: 8 with acks=all, 7 with acks=1.
	reqs := m[`ferry_kafka_requests_total{api="Produce"}`]
	nAll, nOne := m[`ferry_kafka_produce_duration_seconds_count{acks="all"}`], m[`ferry_kafka_produce_duration_seconds_count{acks="1"}`]
	if reqs != 15 || nAll != 8 || nOne != 7 {
		t.Errorf("produce requests %v, latency observations acks=all %v acks=1 %v; want 15, 8, 7", reqs, nAll, nOne)
	}
	if inf := m[`ferry_kafka_produce_duration_seconds_bucket{acks="all",le="+Inf"}`]; inf != nAll {
		t.Errorf("+Inf bucket %v != count %v", inf, nAll)
	}
}

// Every request is in the latency histogram under its API, observed once
// its response is written: the produces (acks=all, so after their fsync)
// and two fetches, one of which waits its MaxWait for records that never
// come, so its time is the wait's; an API nobody called has no series.
func TestMetricsRequestDurationPerAPI(t *testing.T) {
	b := startBroker(t, nil)
	ctx := ctxT(t)
	if _, err := b.log.CreateTopic("lat", 1, nil); err != nil {
		t.Fatal(err)
	}
	cl := b.client(t, kgo.DefaultProduceTopic("lat"))
	for i := 0; i < 3; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	fetch := func(offset int64, maxWait time.Duration) {
		req := kmsg.NewPtrFetchRequest()
		req.Version = 11
		req.ReplicaID, req.MaxWaitMillis, req.MinBytes, req.MaxBytes = -1, int32(maxWait/time.Millisecond), 1, 1<<20
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "lat"
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.FetchOffset, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = offset, 1<<20, -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
			t.Fatalf("fetch at %d: error %d", offset, code)
		}
	}
	fetch(0, 0)                    // the three records, at once
	fetch(3, 300*time.Millisecond) // at the end: waits 300 ms, answers empty

	// Observed once the response is written, which may be after the
	// client has read it: poll.
	var m map[string]float64
	deadline := time.Now().Add(10 * time.Second)
	for {
		m = scrapeSeries(t, b.reg)
		if m[`ferry_kafka_request_duration_seconds_count{api="Produce"}`] == 3 &&
			m[`ferry_kafka_request_duration_seconds_count{api="Fetch"}`] == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// (ApiVersions is left out: an answer to a version above ours, KIP-511,
	// is observed but not in requests_total.)
	for _, api := range []string{"Produce", "Fetch", "Metadata"} {
		count := m[`ferry_kafka_request_duration_seconds_count{api="`+api+`"}`]
		if reqs := m[`ferry_kafka_requests_total{api="`+api+`"}`]; count != reqs || count == 0 {
			t.Errorf("%s: %v latency observations for %v requests", api, count, reqs)
		}
		if inf := m[`ferry_kafka_request_duration_seconds_bucket{api="`+api+`",le="+Inf"}`]; inf != count {
			t.Errorf("%s: +Inf bucket %v != count %v", api, inf, count)
		}
	}
	if sum := m[`ferry_kafka_request_duration_seconds_sum{api="Fetch"}`]; sum < 0.3 || sum > 10 {
		t.Errorf("fetch latency sum %v s, want at least the 0.3 s the second one waited", sum)
	}
	// The smallest bucket is 100 µs and the largest finite one past 25 s.
	if _, ok := m[`ferry_kafka_request_duration_seconds_bucket{api="Produce",le="0.0001"}`]; !ok {
		t.Error("no 100 µs bucket")
	}
	if _, ok := m[`ferry_kafka_request_duration_seconds_bucket{api="Produce",le="26.2144"}`]; !ok {
		t.Error("no 26.2 s bucket")
	}
	if _, ok := m[`ferry_kafka_request_duration_seconds_count{api="DeleteTopics"}`]; ok {
		t.Error("a series for an API nobody called")
	}
}
