package testbed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// budgetProducer produces to a topic with acks=all and no retries, so that
// a refusal reaches the test: it keeps every record the edge acknowledged,
// with its partition and offset, and every value it refused.
type budgetProducer struct {
	t       *testing.T
	cl      *kgo.Client
	seq     int
	acked   []*kgo.Record
	refused map[string]bool
	// refusedBatches counts partitions refused, request by request: the
	// edge's ferry_kafka_partition_errors_total counts as many.
	refusedBatches int
}

func newBudgetProducer(t *testing.T, addr, topic string) *budgetProducer {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.DisableIdempotentWrite(), kgo.RecordRetries(0), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &budgetProducer{t: t, cl: cl, refused: map[string]bool{}}
}

// produce sends n records of about 1 KiB in one request and returns how
// many the edge refused with THROTTLING_QUOTA_EXCEEDED; any other error
// fails the test.
func (p *budgetProducer) produce(n int, tag string) (refused int) {
	p.t.Helper()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		pad := make([]byte, 480)
		rand.Read(pad)
		recs[i] = &kgo.Record{Key: []byte(fmt.Sprintf("dev%d", p.seq%8)), Value: []byte(fmt.Sprintf("%s-%06d-%s", tag, p.seq, hex.EncodeToString(pad)))}
		p.seq++
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	parts := map[int32]bool{}
	for _, r := range p.cl.ProduceSync(ctx, recs...) {
		switch {
		case r.Err == nil:
			p.acked = append(p.acked, r.Record)
		case errors.Is(r.Err, kerr.ThrottlingQuotaExceeded):
			p.refused[string(r.Record.Value)] = true
			parts[r.Record.Partition] = true
			refused++
		default:
			p.t.Fatalf("produce: %v", r.Err)
		}
	}
	p.refusedBatches += len(parts)
	return refused
}

// mqttDevice publishes QoS 1 telemetry as device dev1 over MQTT 5,
// keeping the payloads the edge acknowledged and those it refused with
// PUBACK 0x97 (quota exceeded).
type mqttDevice struct {
	t       *testing.T
	c       *paho.Client
	seq     int
	acked   []string
	refused map[string]bool
}

func (d *mqttDevice) publish(tag string) (quotaExceeded bool) {
	d.t.Helper()
	payload := fmt.Sprintf(`{"tag":%q,"seq":%d}`, tag, d.seq)
	d.seq++
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, err := d.c.Publish(ctx, &paho.Publish{Topic: "factory/s1/dev1/telemetry", QoS: 1, Payload: []byte(payload)})
	switch {
	case err == nil:
		d.acked = append(d.acked, payload)
		return false
	case pr != nil && pr.ReasonCode == 0x97:
		d.refused[payload] = true
		return true
	}
	d.t.Fatalf("MQTT publish %s: %v (PUBACK %+v)", payload, err, pr)
	return false
}

// createTopic creates a topic in a stopped node's data directory.
func createTopic(t *testing.T, dataDir, topic string, args ...string) {
	t.Helper()
	out, err := exec.Command(ferryBinary(t), append([]string{"topics", "create", topic, "--data-dir", dataDir, "--create-data-dir"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ferry topics create %s: %v\n%s", topic, err, out)
	}
}

// TestMirrorDiskBudgetBlocks: the link to the center goes down for long
// enough that the edge's unshipped records reach its data-disk budget
// (--max-disk-bytes, the block policy). Producers then get back-pressure —
// Kafka THROTTLING_QUOTA_EXCEEDED, MQTT 5 PUBACK 0x97 — that the edge's
// /metrics shows, and the edge stores nothing more. Once the link is back
// the backlog ships, the budget frees the shipped segments, a producer
// that kept retrying gets through and new records are taken again. The
// center ends with every record the edge acknowledged, once, in order, at
// the edge's offsets, and none of those it refused.
func TestMirrorDiskBudgetBlocks(t *testing.T) {
	const budget = 4 << 20
	edgeDir := t.TempDir()
	createTopic(t, edgeDir, "orders", "--partitions", "2", "--config", "segment.bytes=1048576")
	createTopic(t, edgeDir, "telemetry", "--config", "segment.bytes=1048576")
	center := startFull(t, t.TempDir(), "", "--mirror-token", "gw1=s3cret")
	link := newFlakyLink(t, center.mirrorAddr)
	edge := startEdge(t, edgeDir, "--mirror-to", link.addr(), "--mirror-edge-id", "gw1", "--mirror-token", "s3cret",
		"--max-disk-bytes", fmt.Sprint(budget), "--mirror-chunk-bytes", "262144")
	metrics := func(prefix string) (sum float64) {
		for _, v := range ferryMetrics(t, edge.adminAddr, prefix) {
			sum += v
		}
		return sum
	}
	const throttled = `ferry_kafka_partition_errors_total{api="Produce",error="THROTTLING_QUOTA_EXCEEDED"}`
	const mqttErrors = `ferry_mqtt_publishes_total{qos="1",result="error"}`
	caughtUp := func(topic string) bool {
		want, got := endsOf(t, edge.kafkaAddr, topic), endsOf(t, center.kafkaAddr, "gw1."+topic)
		for p, e := range want {
			if got[p] != e {
				return false
			}
		}
		return len(want) > 0
	}

	kp := newBudgetProducer(t, edge.kafkaAddr, "orders")
	pc, err := dialPaho(edge.mqttAddr, "dev1")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Disconnect(&paho.Disconnect{})
	dev := &mqttDevice{t: t, c: pc, refused: map[string]bool{}}

	// The link is up: records ship as they come.
	if kp.produce(200, "before") != 0 {
		t.Fatal("refused with the link up and the disk nearly empty")
	}
	for i := 0; i < 20; i++ {
		if dev.publish("before") {
			t.Fatal("MQTT publish refused with the link up and the disk nearly empty")
		}
	}
	waitFor(t, "the center to have the records produced before the outage", func() bool { return caughtUp("orders") && caughtUp("telemetry") })

	// A long outage: produce until the budget pushes back.
	link.proxy.Stop()
	waitFor(t, "the edge to see the link down", func() bool { return metrics("ferry_mirror_link_up") == 0 })
	for kp.produce(64, "outage") == 0 {
		if len(kp.acked) > 16*budget>>10 {
			t.Fatalf("%d records (about %d MiB) taken with a %d MiB budget and the link down: no back-pressure", len(kp.acked), len(kp.acked)>>10, budget>>20)
		}
	}
	takenInOutage := len(kp.acked) - 200
	t.Logf("back-pressure after %d records (about %.1f MiB) taken during the outage", takenInOutage, float64(takenInOutage)/1024)

	// The block holds while the link is down: everything is refused and
	// nothing stored, over Kafka and MQTT 5.
	ends := endsOf(t, edge.kafkaAddr, "orders")
	for i := 0; i < 3; i++ {
		if n := kp.produce(16, "blocked"); n != 16 {
			t.Fatalf("blocked: %d of 16 records refused", n)
		}
		if !dev.publish("blocked") {
			t.Fatal("blocked: an MQTT 5 publish was acknowledged")
		}
	}
	if got := endsOf(t, edge.kafkaAddr, "orders"); fmt.Sprint(got) != fmt.Sprint(ends) {
		t.Fatalf("refused produces moved the edge's end offsets: %v → %v", ends, got)
	}
	// A producer with the client's defaults retries the refusal and waits.
	patient, err := kgo.NewClient(kgo.SeedBrokers(edge.kafkaAddr), kgo.DefaultProduceTopic("orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer patient.Close()
	waited := make(chan kgo.ProduceResults, 1)
	throttledBefore := metrics(throttled)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		waited <- patient.ProduceSync(ctx, &kgo.Record{Key: []byte("dev0"), Value: []byte("patient")})
	}()
	waitFor(t, "the patient producer to be refused", func() bool { return metrics(throttled) > throttledBefore })

	// /metrics shows the block.
	if got := metrics(throttled); got < float64(kp.refusedBatches+1) {
		t.Errorf("%s = %v after %d batches refused and the patient producer's", throttled, got, kp.refusedBatches)
	}
	if got := metrics(mqttErrors); got < float64(len(dev.refused)) {
		t.Errorf("%s = %v after %d MQTT publishes refused", mqttErrors, got, len(dev.refused))
	}
	backlog := sumEnds(ends) - sumEnds(endsOf(t, center.kafkaAddr, "gw1.orders"))
	if backlog != int64(takenInOutage) {
		t.Fatalf("the edge holds %d unshipped records, %d were taken during the outage", backlog, takenInOutage)
	}
	waitFor(t, "the backlog in /metrics", func() bool {
		return metrics(`ferry_mirror_backlog_records{partition="0",topic="orders"}`)+
			metrics(`ferry_mirror_backlog_records{partition="1",topic="orders"}`) == float64(backlog)
	})
	select {
	case res := <-waited:
		t.Fatalf("the patient producer got through while the budget was full: %v", res.FirstErr())
	default:
	}
	// Everything is still at the edge: nothing was dropped for the budget.
	atEdge := readAll(t, edge.kafkaAddr, "orders")

	// The link is back: the backlog ships, the budget frees, producers get through.
	if err := link.proxy.Start(); err != nil {
		t.Fatal(err)
	}
	var res kgo.ProduceResults
	select {
	case res = <-waited:
	case <-time.After(60 * time.Second):
		t.Fatal("the patient producer still waits 60 s after the link came back")
	}
	if err := res.FirstErr(); err != nil {
		t.Fatalf("the patient producer: %v", err)
	}
	kp.acked = append(kp.acked, res[0].Record)
	starts := func() map[int32]int64 { return startsOf(t, edge.kafkaAddr, "orders") }
	waitFor(t, "the budget to free shipped segments", func() bool { return sumEnds(starts()) > 0 })
	if n := kp.produce(200, "after"); n != 0 {
		t.Fatalf("after the backlog shipped: %d of 200 records refused", n)
	}
	for i := 0; i < 20; i++ {
		if dev.publish("after") {
			t.Fatal("after the backlog shipped: an MQTT publish refused")
		}
	}
	waitFor(t, "the center to catch up", func() bool { return caughtUp("orders") && caughtUp("telemetry") })
	t.Logf("edge log starts at %v after the budget freed what was shipped", starts())

	// The center has exactly what the edge acknowledged, where the edge put it.
	got := readAll(t, center.kafkaAddr, "gw1.orders")
	if len(got) != len(kp.acked) {
		t.Errorf("the center has %d records in gw1.orders, the edge acknowledged %d", len(got), len(kp.acked))
	}
	last := map[int32]int64{0: -1, 1: -1}
	for _, r := range kp.acked {
		at := fmt.Sprintf("%d/%d", r.Partition, r.Offset)
		if r.Offset <= last[r.Partition] {
			t.Fatalf("the edge acknowledged %s after offset %d of partition %d", at, last[r.Partition], r.Partition)
		}
		last[r.Partition] = r.Offset
		if got[at] != string(r.Value) {
			t.Fatalf("acknowledged record at %s: the center has %.40q, want %.40q", at, got[at], r.Value)
		}
		if v, ok := atEdge[at]; ok && v != got[at] {
			t.Fatalf("at %s: the edge had %.40q, the center has %.40q", at, v, got[at])
		}
	}
	for at, v := range got {
		if kp.refused[v] {
			t.Fatalf("a record the edge refused is at the center, at %s", at)
		}
	}

	// MQTT: each acknowledged publish once and in order, none refused.
	recs := consumeAll(t, center.kafkaAddr, "gw1.telemetry")
	sort.Slice(recs, func(i, j int) bool { return recs[i].Offset < recs[j].Offset })
	var payloads []string
	for _, r := range recs {
		if dev.refused[string(r.Value)] {
			t.Fatalf("a publish the edge refused is at the center: %s", r.Value)
		}
		payloads = append(payloads, string(r.Value))
	}
	if strings.Join(payloads, "\n") != strings.Join(dev.acked, "\n") {
		t.Fatalf("gw1.telemetry holds %d publishes, want the %d acknowledged, once each, in order:\n%v\nwant\n%v", len(payloads), len(dev.acked), payloads, dev.acked)
	}
	t.Logf("the center has the %d Kafka records and %d MQTT publishes the edge acknowledged; %d and %d refused, none stored",
		len(kp.acked), len(dev.acked), len(kp.refused), len(dev.refused))
}
