package mqtt

import (
	"fmt"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	flog "ferry/log"
)

// TestPubackDoesNotWaitForFlushMs: under flush.policy=interval with
// flush.ms at its maximum (a minute), QoS 1 and 2 publishes are
// acknowledged once their records are fsynced, which starts because the
// acknowledgement waits (group commit on demand), not at the next interval:
// pub gives each 10 s.
func TestPubackDoesNotWaitForFlushMs(t *testing.T) {
	b := startBroker(t, "", func(o *Options) { o.Rules = nil; o.DefaultTopic = "slowflush" })
	if err := b.log.AlterConfigs("slowflush", map[string]string{"flush.policy": "interval", "flush.ms": "60000"}, nil); err != nil {
		t.Fatal(err)
	}
	part, err := b.log.Partition("slowflush", 0)
	if err != nil {
		t.Fatal(err)
	}
	c := b.connect(t, &paho.Connect{ClientID: "d", CleanStart: true}, nil)
	for i := range 4 { // the first group commit may start at once anyway: none ran before
		pub(t, c, &paho.Publish{Topic: "x", QoS: byte(1 + i%2), Payload: []byte{byte(i)}})
		if end, durable := part.EndOffset(), part.DurableOffset(); durable < end {
			t.Fatalf("publish %d acknowledged with durable offset %d < end offset %d", i, durable, end)
		}
	}
}

// TestPubacksOnTwoPartitionsSyncTogether: a connection's publishes to two
// partitions, the second queued behind the first's PUBACK, have their
// fsyncs asked for as they are appended, so the second partition's begins
// while the first's is held, not once the first's PUBACK is out (with
// flush.ms a minute nothing else would start it). The PUBACKs still wait
// for both.
func TestPubacksOnTwoPartitionsSyncTogether(t *testing.T) {
	h := &heldFS{release: make(chan struct{})}
	b := startBrokerFS(t, "", h, nil)
	var once sync.Once
	release := func() { once.Do(func() { h.hold.Store(false); close(h.release) }) }
	t.Cleanup(release) // before the broker stops, which fsyncs
	if err := b.log.AlterConfigs("telemetry", map[string]string{"flush.policy": "interval", "flush.ms": "60000"}, nil); err != nil {
		t.Fatal(err)
	}
	// Two devices whose records go to different partitions.
	devs := []string{"d0"}
	for i := 1; len(devs) < 2; i++ {
		d := fmt.Sprintf("d%d", i)
		if flog.PartitionForKey([]byte(d), telemetryRule.Partitions) != flog.PartitionForKey([]byte(devs[0]), telemetryRule.Partitions) {
			devs = append(devs, d)
		}
	}
	rc := dialRaw(t, b.addr, 5)
	rc.connect(connectOpts{id: "gw", clean: true})
	// A first group commit on each partition: the next interval is a
	// minute away.
	for i, d := range devs {
		rc.publish("factory/s1/"+d+"/telemetry", []byte("warm"), 1, uint16(1+i), false)
		rc.expect(packets.Puback)
	}
	h.hold.Store(true)
	for i, d := range devs {
		rc.publish("factory/s1/"+d+"/telemetry", []byte("x"), 1, uint16(3+i), false)
	}
	waitFor(t, "both partitions' fsyncs held at once", func() bool { return h.held.Load() == 2 })
	release()
	for i := range devs {
		if pk := rc.expect(packets.Puback); pk.PacketID != uint16(3+i) || pk.ReasonCode != 0 {
			t.Fatalf("PUBACK %d reason %#x, want %d", pk.PacketID, pk.ReasonCode, 3+i)
		}
	}
}
