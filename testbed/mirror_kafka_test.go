package testbed

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// answerDropper wraps a kfake broker's listener: while armed, the broker
// still serves every request but none of its answers reaches the client.
type answerDropper struct {
	net.Listener
	armed *atomic.Bool
}

func (d answerDropper) Accept() (net.Conn, error) {
	c, err := d.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return droppingConn{c, d.armed}, nil
}

type droppingConn struct {
	net.Conn
	armed *atomic.Bool
}

func (c droppingConn) Write(b []byte) (int, error) {
	if c.armed.Load() {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// TestMirrorKafkaSurvivesEdgeKill9 runs a real `ferry edge --mirror-kafka`
// into a kfake cluster (in this process, on 127.0.0.1; it models neither
// replication nor crash-faithful persistence, and it is the edge that is
// killed here). Mid-shipment the cluster stores the edge's produce requests
// but their answers are lost, and the edge is killed with SIGKILL: the
// ambiguous case. Restarted, the edge reads the target's tail and goes on:
// at the target every edge record is there once, in order per partition,
// its ferry.offset header its edge offset and its value the edge's.
func TestMirrorKafkaSurvivesEdgeKill9(t *testing.T) {
	var armed atomic.Bool
	var storedArmed atomic.Int64
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.ListenFn(func(network, addr string) (net.Listener, error) {
		ln, err := net.Listen(network, "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		return answerDropper{ln, &armed}, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if armed.Load() {
			storedArmed.Add(1)
		}
		return nil, nil, false
	})
	target := c.ListenAddrs()[0]

	dir := t.TempDir()
	if out, err := exec.Command(ferryBinary(t), "topics", "create", "telemetry", "--partitions", "2", "--data-dir", dir, "--create-data-dir").CombinedOutput(); err != nil {
		t.Fatalf("topics create: %v\n%s", err, out)
	}
	args := []string{"--mirror-kafka", target, "--mirror-edge-id", "gw1", "--mirror-topics", "telemetry", "--mirror-ack-timeout", "5s",
		"--mirror-chunk-bytes", "4096"}
	edge := startEdge(t, dir, args...)
	produce := func(addr string, n int, tag string) {
		t.Helper()
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("telemetry"), kgo.ProducerLinger(time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for i := 0; i < n; i++ {
			r := &kgo.Record{Key: []byte("dev" + strconv.Itoa(i%7)), Value: fmt.Appendf(nil, `{"seq":"%s-%d"}`, tag, i)}
			cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
				if err != nil {
					t.Errorf("producing to the edge: %v", err)
				}
			})
		}
		if err := cl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	caughtUp := func(edgeAddr string) {
		t.Helper()
		want := sumEnds(endsOf(t, edgeAddr, "telemetry"))
		deadline := time.Now().Add(60 * time.Second)
		for topicEnd(t, target, "gw1.telemetry") < want {
			if time.Now().After(deadline) {
				t.Fatalf("the target has %d records after 60 s, the edge %d", topicEnd(t, target, "gw1.telemetry"), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	produce(edge.kafkaAddr, 2000, "a")
	caughtUp(edge.kafkaAddr)

	armed.Store(true)
	produce(edge.kafkaAddr, 2000, "b")
	deadline := time.Now().Add(30 * time.Second)
	for storedArmed.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the target stored no shipment while its answers were lost")
		}
		time.Sleep(5 * time.Millisecond)
	}
	edge.cmd.Process.Signal(syscall.SIGKILL)
	<-edge.done
	armed.Store(false)

	start := time.Now()
	edge = startEdge(t, dir, args...)
	caughtUp(edge.kafkaAddr)
	produce(edge.kafkaAddr, 500, "c")
	caughtUp(edge.kafkaAddr)
	t.Logf("after the kill -9: %s from the restart to the target holding 500 records produced after it (process start included)",
		time.Since(start).Round(time.Millisecond))

	ends := endsOf(t, edge.kafkaAddr, "telemetry")
	edgeRecs := readAll(t, edge.kafkaAddr, "telemetry")
	got := consumeAll(t, target, "gw1.telemetry")
	next := map[int32]int64{}
	for _, r := range got {
		off, err := strconv.ParseInt(recordHeader(r, "ferry.offset"), 10, 64)
		if err != nil {
			t.Fatalf("target record %d/%d without a ferry.offset header", r.Partition, r.Offset)
		}
		if off != next[r.Partition] {
			t.Fatalf("partition %d: target record %d carries edge offset %d, want %d (a duplicate or a gap)", r.Partition, r.Offset, off, next[r.Partition])
		}
		if v := edgeRecs[fmt.Sprintf("%d/%d", r.Partition, off)]; v != string(r.Value) {
			t.Fatalf("partition %d edge offset %d: target has %q, edge %q", r.Partition, off, r.Value, v)
		}
		next[r.Partition]++
	}
	for p, e := range ends {
		if next[p] != e {
			t.Fatalf("partition %d: the target has %d records, the edge %d", p, next[p], e)
		}
	}
}
