package testbed

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestClusterEdgesSurviveKill9OfTheirNode (issue 15, test 4): two `ferry
// edge` processes mirror into a center of three `ferry full` processes,
// each given the center as a list (in opposite orders, so they first reach
// different nodes). kill -9 of the node an edge is connected to: its
// copies' leadership moves to an in-sync replica (replication factor 3,
// the cluster's default), the edge redials its list, reaches the new
// leader and resumes from the committed end; the other edge ships on. Both
// copies end exact: the same offsets and the same record batches, byte for
// byte (the center's leader epoch masked), as the edges' logs, nothing
// twice; and again after the killed node is back.
func TestClusterEdgesSurviveKill9OfTheirNode(t *testing.T) {
	c := newClusterProcs(t, 3)
	c.startAll()
	forward := []string{c.procs[0].mirrorAddr, c.procs[1].mirrorAddr, c.procs[2].mirrorAddr}
	backward := []string{forward[2], forward[1], forward[0]}
	edges := map[string]*ferryProc{}
	for id, list := range map[string][]string{"gw1": forward, "gw2": backward} {
		edges[id] = startEdge(t, t.TempDir(), "--mirror-to", strings.Join(list, ","), "--mirror-edge-id", id,
			"--mirror-token", "s3cret", "--default-partitions", "2")
	}
	for id, e := range edges {
		produceKafka(t, e.kafkaAddr, "telemetry", 200, 120, id+"-a")
	}
	home := map[string]int{}
	for id, e := range edges {
		mirroredExactly(t, c, id, e)
		home[id] = connectedAt(t, c, id)
	}
	t.Logf("gw1 at node %d, gw2 at node %d", home["gw1"]+1, home["gw2"]+1)

	// kill -9 gw1's node while gw1 has records to ship.
	victim := home["gw1"]
	produceKafka(t, edges["gw1"].kafkaAddr, "telemetry", 150, 120, "gw1-b")
	c.kill9(victim)
	produceKafka(t, edges["gw1"].kafkaAddr, "telemetry", 150, 120, "gw1-c")
	// gw1 goes on at the new leader of its copies; gw2 ships on.
	produceKafka(t, edges["gw2"].kafkaAddr, "telemetry", 150, 120, "gw2-b")
	for id, e := range edges {
		mirroredExactly(t, c, id, e)
	}
	if at := connectedAt(t, c, "gw1"); at == victim {
		t.Fatalf("gw1 connected to node %d, which was killed", at+1)
	}

	c.start(victim)
	produceKafka(t, edges["gw1"].kafkaAddr, "telemetry", 100, 120, "gw1-d")
	produceKafka(t, edges["gw2"].kafkaAddr, "telemetry", 100, 120, "gw2-c")
	for id, e := range edges {
		mirroredExactly(t, c, id, e)
	}
}

// mirrorStatus is the edge's GET /api/mirror.
func mirrorStatus(t *testing.T, e *ferryProc) (st struct {
	LinkUp    bool `json:"link_up"`
	LastError *struct {
		Reason  string    `json:"reason"`
		Message string    `json:"message"`
		At      time.Time `json:"at"`
	} `json:"last_error"`
}) {
	t.Helper()
	resp, err := http.Get("http://" + e.adminAddr + "/api/mirror")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// connectedAt is the node (0-based) whose mirror receiver has the edge
// connected, waiting for exactly one to.
func connectedAt(t *testing.T, c *clusterProcs, edge string) int {
	t.Helper()
	at := -1
	c.waitFor(edge+" connected to one node", func() bool {
		at = -1
		for i, p := range c.procs {
			if p == nil {
				continue
			}
			resp, err := http.Get("http://" + p.adminAddr + "/api/mirror/edges")
			if err != nil {
				return false
			}
			var rs struct {
				Edges []struct {
					Edge      string `json:"edge"`
					Connected bool   `json:"connected"`
				} `json:"edges"`
			}
			err = json.NewDecoder(resp.Body).Decode(&rs)
			resp.Body.Close()
			if err != nil {
				return false
			}
			for _, e := range rs.Edges {
				if e.Edge == edge && e.Connected {
					if at >= 0 {
						return false // the older session not yet ended
					}
					at = i
				}
			}
		}
		return at >= 0
	})
	return at
}

// mirroredExactly waits until the center's copy of the edge's telemetry
// ends where the edge's log does, partition by partition, then checks that
// the copy is the edge's log byte for byte: the same record batches at the
// same offsets (a record shipped twice would move every later offset and
// the end).
func mirroredExactly(t *testing.T, c *clusterProcs, edge string, e *ferryProc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src := rawLog(t, ctx, []string{e.kafkaAddr}, "telemetry")
	for p, b := range src {
		if batchesEnd(b) == 0 {
			t.Fatalf("%s partition %d: nothing in the edge's log", edge, p)
		}
	}
	var dst map[int32][]byte
	c.waitFor(edge+"'s copy at the end of its log", func() bool {
		dst = rawLogIfLed(ctx, c.kafkaAddrs(), edge+".telemetry")
		if len(dst) != len(src) {
			return false
		}
		for p, b := range src {
			if batchesEnd(dst[p]) != batchesEnd(b) {
				return false
			}
		}
		return true
	})
	for p, b := range src {
		if !bytes.Equal(maskEpochs(dst[p]), maskEpochs(b)) {
			t.Fatalf("%s partition %d: the copy (%d bytes, end %d) differs from the edge's log (%d bytes, end %d)",
				edge, p, len(dst[p]), batchesEnd(dst[p]), len(b), batchesEnd(b))
		}
	}
}

// rawLog reads every partition of topic from its leader, as the record
// batches the log holds, through its end.
func rawLog(t *testing.T, ctx context.Context, addrs []string, topic string) map[int32][]byte {
	t.Helper()
	out := rawLogIfLed(ctx, addrs, topic)
	if out == nil {
		t.Fatalf("%s at %v: not every partition readable", topic, addrs)
	}
	return out
}

// rawLogIfLed is rawLog, nil while a partition has no leader or cannot be
// read.
func rawLogIfLed(ctx context.Context, addrs []string, topic string) map[int32][]byte {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		return nil
	}
	defer cl.Close()
	md, err := kadm.NewClient(cl).Metadata(ctx, topic)
	if err != nil || md.Topics[topic].Err != nil {
		return nil
	}
	td := md.Topics[topic]
	out := map[int32][]byte{}
	for _, p := range td.Partitions {
		if p.Err != nil || p.Leader < 0 {
			return nil
		}
		var raw []byte
		for next := int64(0); ; {
			req := kmsg.NewPtrFetchRequest()
			req.ReplicaID, req.MaxWaitMillis, req.MinBytes, req.MaxBytes = -1, 0, 1, 16<<20
			ft := kmsg.NewFetchRequestTopic()
			ft.Topic, ft.TopicID = topic, td.ID
			fp := kmsg.NewFetchRequestTopicPartition()
			fp.Partition, fp.FetchOffset, fp.PartitionMaxBytes = p.Partition, next, 16<<20
			ft.Partitions = append(ft.Partitions, fp)
			req.Topics = append(req.Topics, ft)
			resp, err := cl.Broker(int(p.Leader)).Request(ctx, req)
			if err != nil {
				return nil
			}
			fr := resp.(*kmsg.FetchResponse)
			if fr.ErrorCode != 0 || len(fr.Topics) != 1 || len(fr.Topics[0].Partitions) != 1 || fr.Topics[0].Partitions[0].ErrorCode != 0 {
				return nil
			}
			rp := fr.Topics[0].Partitions[0]
			whole := wholeBatches(rp.RecordBatches)
			raw = append(raw, whole...)
			if end := batchesEnd(raw); end > next {
				next = end
			}
			if next >= rp.HighWatermark || len(whole) == 0 {
				break
			}
		}
		out[p.Partition] = raw
	}
	return out
}

// wholeBatches is the prefix of b made of whole record batches (a fetch
// may end with a partial one).
func wholeBatches(b []byte) []byte {
	n := 0
	for len(b)-n >= 12 {
		size := 12 + int(int32(binary.BigEndian.Uint32(b[n+8:])))
		if size < 61 || len(b)-n < size {
			break
		}
		n += size
	}
	return b[:n]
}

// batchesEnd is the offset after the last record of whole batches b.
func batchesEnd(b []byte) int64 {
	var end int64
	for n := 0; len(b)-n >= 61; {
		base := int64(binary.BigEndian.Uint64(b[n:]))
		size := 12 + int(int32(binary.BigEndian.Uint32(b[n+8:])))
		if size < 61 {
			break
		}
		lastDelta := int64(int32(binary.BigEndian.Uint32(b[n+23:])))
		end = base + lastDelta + 1
		n += size
	}
	return end
}

// maskEpochs is raw record batches with each batch's partition leader
// epoch (bytes 12–15, outside the CRC) zeroed: a replicated center's
// leader stamps its own.
func maskEpochs(raw []byte) []byte {
	out := bytes.Clone(raw)
	for i := 0; i+16 <= len(out); {
		clear(out[i+12 : i+16])
		i += int(binary.BigEndian.Uint32(out[i+8:])) + 12
	}
	return out
}
