package testbed

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Scenario 7: two edges mirroring into a replicated center while the
// leaders of their copies' partitions are killed (5 times) and the whole
// center restarts once. Each edge takes acks=all load on its own topic;
// at the end each copy holds exactly what its edge holds, offset for
// offset (no duplicate, no gap), the edges' own histories check, and the
// copies' replicas are identical below the high watermark.
func TestJepsenMirrorIntoReplicatedCenter(t *testing.T) {
	c := newJepsenCluster(t, 3, netLoopback, "--default-replication-factor", "3", "--min-insync-replicas", "2")
	c.startAll()
	ctx, cancel := context.WithTimeout(context.Background(), tortureSize(4*time.Minute, 30*time.Minute))
	defer cancel()
	var mirrorTo []string
	for _, p := range c.procs {
		mirrorTo = append(mirrorTo, p.mirrorAddr)
	}
	edges := map[string]*ferryProc{}
	loads := map[string]*workload{}
	for _, id := range []string{"gw1", "gw2"} {
		dir := t.TempDir()
		createTopic(t, dir, "telemetry", "--partitions", "4")
		e := startEdge(t, dir, "--mirror-to", strings.Join(mirrorTo, ","), "--mirror-edge-id", id, "--mirror-token", "s3cret",
			"--mirror-topics", "telemetry")
		edges[id] = e
		loads[id] = startWorkload(t, []string{e.kafkaAddr}, 500, 0, "telemetry")
	}
	copies := []string{"gw1.telemetry", "gw2.telemetry"}
	c.waitFor("both copies at the center", func() bool {
		for _, topic := range copies {
			if md, err := c.metadata(ctx, topic); err != nil || len(md) != 4 {
				return false
			}
		}
		return true
	})
	c.awaitInSync(ctx, copies...)

	kills := tortureSize(5, 5)
	for k := range kills {
		topic := copies[k%2]
		victim, parts := c.busiestLeader(ctx, topic, loads[strings.TrimSuffix(topic, ".telemetry")])
		c.kill9(victim)
		t.Logf("kill %d: node %d, leading %v", k, victim+1, parts)
		loads["gw1"].awaitAcks(200, 30*time.Second)
		c.start(victim)
		c.awaitInSync(ctx, copies...)
		if k == kills/2 { // the whole center, once
			for i := range c.procs {
				c.stop(i)
			}
			loads["gw1"].awaitAcks(200, 30*time.Second) // the edges take load with no center
			c.startAll()
			c.awaitInSync(ctx, copies...)
			t.Logf("the whole center restarted")
		}
	}

	var problems []string
	for id, e := range edges {
		w := loads[id]
		w.stop()
		h := w.history()
		final, ends := readBack(t, ctx, []string{e.kafkaAddr}, "telemetry")
		h.Final = final
		problems = append(problems, checkHistory(h)...)
		copyTopic := id + ".telemetry"
		var copyEnds map[int32]int64
		c.waitFor(copyTopic+" caught up with its edge", func() bool {
			copyEnds = endsOf(t, c.kafka[0], copyTopic)
			for p, end := range ends {
				if copyEnds[p] != end {
					return false
				}
			}
			return true
		})
		copied, _ := readBack(t, ctx, c.kafkaAddrs(), copyTopic)
		for p, recs := range final {
			got := copied[tp{copyTopic, p.Partition}]
			for off, v := range recs {
				if got[off] != v {
					problems = append(problems, fmt.Sprintf("%s-%d@%d: the edge has %q, the center %q", copyTopic, p.Partition, off, v, got[off]))
				}
			}
			if len(got) != len(recs) {
				problems = append(problems, fmt.Sprintf("%s-%d: %d records at the center, %d at the edge", copyTopic, p.Partition, len(got), len(recs)))
			}
		}
		e.cmd.Process.Signal(syscall.SIGTERM)
		<-e.done
	}
	slices.Sort(problems)
	problems = append(problems, c.verify(ctx, nil, copies...)...)
	failOn(t, problems)
}
