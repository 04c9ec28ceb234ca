package testbed

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kgo"
)

// waitMirrored waits until the center's copy of topic ends where the
// edge's does, partition by partition, then checks every record is the
// same, at the same offset.
func waitMirrored(t *testing.T, edge, center *ferryProc, topic string) int {
	t.Helper()
	want := endsOf(t, edge.kafkaAddr, topic)
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := endsOf(t, center.kafkaAddr, "gw1."+topic)
		done := len(got) == len(want)
		for p, e := range want {
			done = done && got[p] == e
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the center has %v, the edge %v, after 60 s", topic, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	src := readAll(t, edge.kafkaAddr, topic)
	dst := readAll(t, center.kafkaAddr, "gw1."+topic)
	if len(src) != len(dst) {
		t.Fatalf("%s: edge %d records, center %d", topic, len(src), len(dst))
	}
	for at, v := range src {
		if dst[at] != v {
			t.Fatalf("%s at %s: edge %q, center %q", topic, at, v, dst[at])
		}
	}
	return len(src)
}

// TestMirrorEdgeToCenter runs a real `ferry edge` mirroring to a real
// `ferry full`, producing through Kafka (acks=all) and MQTT (QoS 1) at the
// edge all along, while the center and then the edge are killed with
// SIGKILL and restarted. In the end the center holds exactly the edge's
// records, at the edge's offsets, each once.
func TestMirrorEdgeToCenter(t *testing.T) {
	edgeDir, centerDir := t.TempDir(), t.TempDir()
	center := startFull(t, centerDir, "", "--mirror-token", "gw1=s3cret")
	mirrorAddr := center.mirrorAddr
	edgeArgs := []string{"--mirror-to", mirrorAddr, "--mirror-edge-id", "gw1", "--mirror-token", "s3cret", "--default-partitions", "3"}
	edge := startEdge(t, edgeDir, edgeArgs...)

	var produced atomic.Int64
	load := func(edge *ferryProc, stop <-chan struct{}) *sync.WaitGroup {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { // Kafka, acks=all
			defer wg.Done()
			cl, err := kgo.NewClient(kgo.SeedBrokers(edge.kafkaAddr), kgo.DefaultProduceTopic("orders"), kgo.AllowAutoTopicCreation(),
				kgo.RecordRetries(2), kgo.RecordDeliveryTimeout(5*time.Second))
			if err != nil {
				return
			}
			// Closing the client fails what it still holds: against a
			// killed broker it would otherwise retry on.
			go func() { <-stop; cl.Close() }()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i % 17)), Value: []byte(fmt.Sprintf("order-%d", i))}).FirstErr()
				cancel()
				if err != nil {
					return // the edge was killed
				}
				produced.Add(1)
			}
		}()
		go func() { // MQTT, QoS 1
			defer wg.Done()
			c, err := dialPaho(edge.mqttAddr, "dev1")
			if err != nil {
				return
			}
			defer c.Disconnect(&paho.Disconnect{})
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := c.Publish(ctx, &paho.Publish{Topic: "factory/a/dev1/telemetry", QoS: 1, Payload: []byte(fmt.Sprintf(`{"seq":%d}`, i))})
				cancel()
				if err != nil {
					return
				}
				produced.Add(1)
			}
		}()
		return &wg
	}

	// Steady load; the center is killed and comes back on the same address.
	stop := make(chan struct{})
	wg := load(edge, stop)
	waitFor(t, "some load", func() bool { return produced.Load() > 300 })
	center.cmd.Process.Signal(syscall.SIGKILL)
	<-center.exited
	waitFor(t, "more load while the center is away", func() bool { return produced.Load() > 600 })
	center = startFull(t, centerDir, mirrorAddr, "--mirror-token", "gw1=s3cret")
	waitFor(t, "more load", func() bool { return produced.Load() > 900 })

	// Now the edge is killed mid-load, and restarted.
	edge.cmd.Process.Signal(syscall.SIGKILL)
	<-edge.exited
	close(stop)
	wg.Wait()
	edge = startEdge(t, edgeDir, edgeArgs...)
	stop2 := make(chan struct{})
	wg2 := load(edge, stop2)
	waitFor(t, "load after the edge restarted", func() bool { return produced.Load() > 1200 })
	close(stop2)
	wg2.Wait()

	n := waitMirrored(t, edge, center, "orders") + waitMirrored(t, edge, center, "telemetry")
	t.Logf("%d records acknowledged at the edge; %d records at the center, identical, after a SIGKILL of each side", produced.Load(), n)
	if int64(n) < produced.Load() {
		t.Fatalf("the center has %d records, fewer than the %d acknowledged at the edge", n, produced.Load())
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
