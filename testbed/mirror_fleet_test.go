package testbed

import (
	"fmt"
	"testing"
	"time"
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
		deadline := time.Now().Add(60 * time.Second)
		for {
			got := readAllIfAny(t, center.kafkaAddr, id+".telemetry", len(want))
			if len(got) == len(want) {
				for at, v := range want {
					if got[at] != v {
						t.Fatalf("%s at %s: edge %q, center %q", id, at, v, got[at])
					}
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the center has %d of %d records after 60 s", id, len(got), len(want))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// readAllIfAny reads a topic once its end offsets say it holds at least
// want records; before that it returns nil.
func readAllIfAny(t *testing.T, addr, topic string, want int) map[string]string {
	t.Helper()
	var n int64
	for _, e := range endsOf(t, addr, topic) {
		n += e
	}
	if n < int64(want) {
		return nil
	}
	return readAll(t, addr, topic)
}
