package mqtt

import (
	"testing"

	"github.com/eclipse/paho.golang/paho"
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
