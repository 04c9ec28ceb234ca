package testbed

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestMirrorResetMidChunk resets the link (an RST through toxiproxy) three
// times while the mirror ships over a slow, far link, each time once the
// center's copy has moved on and while chunks are on the wire. After each
// the edge reconnects and the center's copy moves on; in the end it is
// identical to the edge's.
//
// A chunk is whole batches, at least one, whatever --mirror-chunk-bytes
// says, and franz-go puts up to 1 MB in a batch: one ProduceSync of 3000
// records lands as one batch per partition, so the whole slow phase would
// be two chunks, the first reset would leave a single chunk to resend, and
// the mirror would be done before a second reset could fall mid-chunk.
// The producer's batches are therefore kept to 16 KiB, as the chunks are.
func TestMirrorResetMidChunk(t *testing.T) {
	center := startFull(t, t.TempDir(), "", "--mirror-token", "gw1=s3cret")
	link := newFlakyLink(t, center.mirrorAddr)
	edge := startEdge(t, t.TempDir(), "--mirror-to", link.addr(), "--mirror-edge-id", "gw1", "--mirror-token", "s3cret",
		"--default-partitions", "2", "--mirror-chunk-bytes", "16384", "--mirror-ack-timeout", "3s", "--mirror-min-rate", "16384")

	produceKafka(t, edge.kafkaAddr, "orders", 500, 100, "before")
	waitMirrored(t, edge, center, "orders")

	centerEnd := func() int64 { return sumEnds(endsOf(t, center.kafkaAddr, "gw1.orders")) }
	metric := func(name string) float64 { return ferryMetrics(t, edge.adminAddr, name)[name] }

	link.toxic("bw", "bandwidth", `"rate":64`)
	link.toxic("far", "latency", `"latency":200`)
	produceKafka(t, edge.kafkaAddr, "orders", 3000, 200, "slow", kgo.ProducerBatchMaxBytes(16<<10)) // ~600 KiB: 10 s at 64 KiB/s
	total := sumEnds(endsOf(t, edge.kafkaAddr, "orders"))
	var lost float64 // chunks sent and never acknowledged, cut by earlier resets
	for i := 1; i <= 3; i++ {
		last := centerEnd()
		waitFor(t, "the mirror to make progress", func() bool {
			c := centerEnd()
			if c == total {
				t.Fatalf("reset %d: the mirror finished before the link could be reset mid-chunk", i)
			}
			return c > last
		})
		reconnects := metric("ferry_mirror_connects_total")
		inFlight := metric("ferry_mirror_chunks_sent_total") - metric("ferry_mirror_chunks_acked_total") - lost
		link.toxic("reset", "reset_peer", `"timeout":0`)
		waitFor(t, "the reset to cut the link", func() bool { return metric("ferry_mirror_link_up") == 0 })
		link.remove("reset")
		waitFor(t, "the edge to reconnect", func() bool { return metric("ferry_mirror_connects_total") > reconnects })
		lost = metric("ferry_mirror_chunks_sent_total") - metric("ferry_mirror_chunks_acked_total")
		t.Logf("reset %d with %.0f chunks in flight; the center had %d of %d records", i, inFlight, centerEnd(), total)
	}
	n := waitMirrored(t, edge, center, "orders")
	t.Logf("%d records identical at the center after 3 resets mid-chunk over a 64 KiB/s, 200 ms link", n)
}
