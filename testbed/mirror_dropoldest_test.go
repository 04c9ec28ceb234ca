package testbed

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// readPast consumes a topic from its start until every partition's last
// record (end offset - 1) has come, stepping over gaps; by
// "partition/offset".
func readPast(t *testing.T, addr, topic string) map[string]string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends := endOffsets(t, cl, topic)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := map[string]string{}
	next := map[int32]int64{}
	done := func() bool {
		for p, e := range ends {
			if next[p] < e {
				return false
			}
		}
		return true
	}
	for !done() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: read to %v of %v", topic, next, ends)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got[fmt.Sprintf("%d/%d", r.Partition, r.Offset)] = string(r.Value)
			next[r.Partition] = r.Offset + 1
		})
	}
	return got
}

// mirrorAcked is how far the center has acknowledged a partition, as the
// edge's admin API (GET /api/mirror) says.
func mirrorAcked(t *testing.T, adminAddr, topic string, partition int32) int64 {
	return mirrorPartition(t, adminAddr, topic, partition).Acked
}

// mirrorLiveTailFrom is where the partition's live tail starts while it
// ships ahead of the backfill (0 when it ships in order).
func mirrorLiveTailFrom(t *testing.T, adminAddr, topic string, partition int32) int64 {
	return mirrorPartition(t, adminAddr, topic, partition).LiveTailFrom
}

type mirrorPartitionStatus struct {
	Topic        string `json:"topic"`
	Partition    int32  `json:"partition"`
	Acked        int64  `json:"acked"`
	LiveTailFrom int64  `json:"live_tail_from"`
}

func mirrorPartition(t *testing.T, adminAddr, topic string, partition int32) mirrorPartitionStatus {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/api/mirror")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Partitions []mirrorPartitionStatus `json:"partitions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Partitions {
		if p.Topic == topic && p.Partition == partition {
			return p
		}
	}
	return mirrorPartitionStatus{Acked: -1, LiveTailFrom: -1}
}

// TestMirrorDiskBudgetDropsOldest: under --max-disk-policy drop-oldest, a
// long outage fills the edge's data-disk budget. Producers are never
// refused; the oldest unshipped records of the lowest priority class
// (telemetry) go, alarms keep all of theirs. The edge counts exactly what it
// dropped; back online, the center's copy has every record the edge still
// had, at the edge's offsets, and the dropped range as an explicit gap that
// a Kafka consumer steps over, counted at the center too. Nothing else is
// lost.
func TestMirrorDiskBudgetDropsOldest(t *testing.T) {
	const budget = 4 << 20
	edgeDir := t.TempDir()
	createTopic(t, edgeDir, "alarms", "--config", "segment.bytes=1048576")
	createTopic(t, edgeDir, "telemetry", "--config", "segment.bytes=1048576")
	center := startFull(t, t.TempDir(), "", "--mirror-token", "gw1=s3cret")
	link := newFlakyLink(t, center.mirrorAddr)
	edge := startEdge(t, edgeDir, "--mirror-to", link.addr(), "--mirror-edge-id", "gw1", "--mirror-token", "s3cret",
		"--max-disk-bytes", fmt.Sprint(budget), "--max-disk-policy", "drop-oldest", "--mirror-priority", "alarms=0,telemetry=2",
		"--mirror-chunk-bytes", "262144")
	metric := func(addr, series string) (sum float64) {
		for _, v := range ferryMetrics(t, addr, series) {
			sum += v
		}
		return sum
	}
	alarms := newBudgetProducer(t, edge.kafkaAddr, "alarms")
	telemetry := newBudgetProducer(t, edge.kafkaAddr, "telemetry")
	if alarms.produce(100, "alarm") != 0 || telemetry.produce(200, "before") != 0 {
		t.Fatal("refused with the link up")
	}
	shippedBefore := int64(len(telemetry.acked))
	waitFor(t, "the center to have the records before the outage, and the edge its acknowledgements", func() bool {
		return sumEnds(endsOf(t, center.kafkaAddr, "gw1.telemetry")) == shippedBefore && sumEnds(endsOf(t, center.kafkaAddr, "gw1.alarms")) == 100 &&
			mirrorAcked(t, edge.adminAddr, "telemetry", 0) == shippedBefore
	})

	// A long outage: twice the budget of telemetry, some alarms; nothing refused.
	link.proxy.Stop()
	waitFor(t, "the edge to see the link down", func() bool { return metric(edge.adminAddr, "ferry_mirror_link_up") == 0 })
	for i := 0; len(telemetry.acked) < 2*budget>>10; i++ {
		if telemetry.produce(256, "outage") != 0 {
			t.Fatal("a producer was refused under drop-oldest")
		}
		if i%8 == 0 && alarms.produce(16, "alarm") != 0 {
			t.Fatal("an alarm was refused under drop-oldest")
		}
	}
	// Production has stopped: once the log is back within its budget,
	// nothing more is dropped.
	waitFor(t, "the budget to drop telemetry's oldest unshipped segments", func() bool {
		return metric(edge.adminAddr, "ferry_log_disk_bytes") <= budget
	})
	telStart := startsOf(t, edge.kafkaAddr, "telemetry")[0]
	if telStart <= shippedBefore {
		t.Fatalf("telemetry starts at %d: nothing unshipped was dropped", telStart)
	}
	if s := startsOf(t, edge.kafkaAddr, "alarms")[0]; s != 0 {
		t.Fatalf("alarms (class 0) lost records: starts at %d while telemetry (class 2) had records to drop", s)
	}
	// The count is exact: the unshipped records below the new start.
	if got := metric(edge.adminAddr, `ferry_mirror_dropped_records_total{topic="telemetry"}`); got != float64(telStart-shippedBefore) {
		t.Fatalf("ferry_mirror_dropped_records_total = %v; telemetry starts at %d, %d records were shipped before the outage", got, telStart, shippedBefore)
	}
	lost := telStart - shippedBefore
	t.Logf("the budget dropped telemetry offsets %d..%d (%d records) of %d produced", shippedBefore, telStart-1, lost, len(telemetry.acked))

	// Back online: the center catches up, gap included.
	if err := link.proxy.Start(); err != nil {
		t.Fatal(err)
	}
	edgeEnds := map[string]int64{"telemetry": sumEnds(endsOf(t, edge.kafkaAddr, "telemetry")), "alarms": sumEnds(endsOf(t, edge.kafkaAddr, "alarms"))}
	waitFor(t, "the center to catch up", func() bool {
		return sumEnds(endsOf(t, center.kafkaAddr, "gw1.telemetry")) == edgeEnds["telemetry"] &&
			sumEnds(endsOf(t, center.kafkaAddr, "gw1.alarms")) == edgeEnds["alarms"]
	})
	if got := metric(center.adminAddr, `ferry_mirror_receiver_gap_records_total{edge="gw1"}`); got != float64(lost) {
		t.Errorf("the center counted %v gap records, the edge dropped %d", got, lost)
	}
	got := readPast(t, center.kafkaAddr, "gw1.telemetry")
	for _, r := range telemetry.acked {
		at := fmt.Sprintf("0/%d", r.Offset)
		v, ok := got[at]
		switch dropped := r.Offset >= shippedBefore && r.Offset < telStart; {
		case dropped && ok:
			t.Fatalf("offset %d, dropped at the edge, is at the center", r.Offset)
		case !dropped && v != string(r.Value):
			t.Fatalf("acknowledged record at %s: the center has %.40q, want %.40q", at, v, r.Value)
		}
	}
	if want := int64(len(telemetry.acked)) - lost; int64(len(got)) != want {
		t.Fatalf("the center holds %d telemetry records, want the %d acknowledged and not dropped", len(got), want)
	}
	gotAlarms := readPast(t, center.kafkaAddr, "gw1.alarms")
	for _, r := range alarms.acked {
		if gotAlarms[fmt.Sprintf("0/%d", r.Offset)] != string(r.Value) {
			t.Fatalf("alarm at offset %d missing or different at the center", r.Offset)
		}
	}
}
