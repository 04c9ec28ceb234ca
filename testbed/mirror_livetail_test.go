package testbed

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestMirrorLiveTailFirst: after an outage, an edge with
// --mirror-catchup live-tail-first over a slow link ships records produced
// after reconnecting ahead of its backlog: the center holds them in
// __tail.gw1.telemetry (readable over Kafka, at the edge's offsets) while
// its copy gw1.telemetry is still below them, then merges them. The copy
// ends identical to the edge's log, every record once, in order, at its
// offsets.
func TestMirrorLiveTailFirst(t *testing.T) {
	edgeDir := t.TempDir()
	createTopic(t, edgeDir, "telemetry")
	center := startFull(t, t.TempDir(), "", "--mirror-token", "gw1=s3cret")
	link := newFlakyLink(t, center.mirrorAddr)
	edge := startEdge(t, edgeDir, "--mirror-to", link.addr(), "--mirror-edge-id", "gw1", "--mirror-token", "s3cret",
		"--mirror-catchup", "live-tail-first", "--mirror-chunk-bytes", "16384")
	produceKafka(t, edge.kafkaAddr, "telemetry", 100, 200, "before")
	waitFor(t, "the first records at the center", func() bool { return sumEnds(endsOf(t, center.kafkaAddr, "gw1.telemetry")) == 100 })

	// An outage: a 2 MB backlog builds up; the link comes back at 256 KiB/s.
	link.proxy.Stop()
	waitFor(t, "the edge to see the link down", func() bool {
		return ferryMetrics(t, edge.adminAddr, "ferry_mirror_link_up")["ferry_mirror_link_up"] == 0
	})
	// In batches of at most 16 KiB, as the chunks: the in-flight window
	// (8 chunks) then holds a small part of the backlog.
	produceKafka(t, edge.kafkaAddr, "telemetry", 4000, 500, "backlog", kgo.ProducerBatchMaxBytes(16<<10))
	backlogEnd := sumEnds(endsOf(t, edge.kafkaAddr, "telemetry"))
	link.toxic("bw", "bandwidth", `"rate":256`)
	if err := link.proxy.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the edge to split the partition", func() bool { return mirrorLiveTailFrom(t, edge.adminAddr, "telemetry", 0) == backlogEnd })
	produceKafka(t, edge.kafkaAddr, "telemetry", 50, 200, "live")
	edgeEnd := sumEnds(endsOf(t, edge.kafkaAddr, "telemetry"))

	waitFor(t, "the live records staged at the center ahead of the copy", func() bool {
		return sumEnds(endsOf(t, center.kafkaAddr, "__tail.gw1.telemetry")) == edgeEnd
	})
	if copyEnd := sumEnds(endsOf(t, center.kafkaAddr, "gw1.telemetry")); copyEnd >= backlogEnd {
		t.Fatalf("the copy reached %d, past the backlog's end %d, before the live tail was staged: nothing went first", copyEnd, backlogEnd)
	}
	staged := readPast(t, center.kafkaAddr, "__tail.gw1.telemetry")
	atEdge := readAll(t, edge.kafkaAddr, "telemetry")
	for at, v := range staged {
		if atEdge[at] != v {
			t.Fatalf("staged record at %s differs from the edge's", at)
		}
	}
	if len(staged) != int(edgeEnd-backlogEnd) {
		t.Fatalf("%d records staged, want the %d live ones", len(staged), edgeEnd-backlogEnd)
	}

	// The link speeds up; the backfill reaches the tail; the copy is whole.
	link.remove("bw")
	waitFor(t, "the copy to reach the edge's end", func() bool { return sumEnds(endsOf(t, center.kafkaAddr, "gw1.telemetry")) == edgeEnd })
	got := readAll(t, center.kafkaAddr, "gw1.telemetry")
	if len(got) != len(atEdge) {
		t.Fatalf("the copy holds %d records, the edge %d", len(got), len(atEdge))
	}
	for at, v := range atEdge {
		if got[at] != v {
			t.Fatalf("at %s the copy has %.40q, the edge %.40q", at, got[at], v)
		}
	}
	waitFor(t, "the edge to count the tail acknowledged", func() bool {
		return mirrorAcked(t, edge.adminAddr, "telemetry", 0) == edgeEnd && mirrorLiveTailFrom(t, edge.adminAddr, "telemetry", 0) == 0
	})
}
