package testbed

import (
	"fmt"
	"testing"
)

// TestMirrorThreeEdges: three real edges ship into one center, each into
// its own namespace ({edge}.{topic}), with the same topic name at every
// edge; each center topic is exactly its edge's.
func TestMirrorThreeEdges(t *testing.T) {
	center := startFull(t, t.TempDir(), "", "--mirror-token", "gw1=t1", "--mirror-token", "gw2=t2", "--mirror-token", "gw3=t3")
	edges := map[string]*ferryProc{}
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("gw%d", i)
		edges[id] = startEdge(t, t.TempDir(), "--mirror-to", center.mirrorAddr, "--mirror-edge-id", id,
			"--mirror-token", fmt.Sprintf("t%d", i), "--default-partitions", "2")
		produceKafka(t, edges[id].kafkaAddr, "telemetry", 300*i, 80, id)
	}
	for id, e := range edges {
		want := readAll(t, e.kafkaAddr, "telemetry")
		waitFor(t, id+"'s records at the center", func() bool {
			return sumEnds(endsOf(t, center.kafkaAddr, id+".telemetry")) >= int64(len(want))
		})
		got := readAll(t, center.kafkaAddr, id+".telemetry")
		if len(got) != len(want) {
			t.Fatalf("%s: the center has %d records, the edge %d", id, len(got), len(want))
		}
		for at, v := range want {
			if got[at] != v {
				t.Fatalf("%s at %s: edge %q, center %q", id, at, v, got[at])
			}
		}
	}
}
