package mqtt

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	flog "ferry/log"
)

// The broker restarts between storing a publish and sending its PUBACK,
// and meanwhile a Kafka producer's batch stamped 2100 became the newest in
// the rule's topic: the recent publishes are still read back (the window
// ends at that record's time in the log, not at 2100), so the device's
// retransmission is not stored twice.
func TestRetransmissionAfterRestartBehindAFutureTimestamp(t *testing.T) {
	dir := t.TempDir()
	a := startBroker(t, dir, nil)
	sess := connectOpts{id: "gw8", clean: false, sessionExpiry: 3600}
	rc := dialRaw(t, a.addr, 5)
	rc.connect(sess)
	rc.publish("factory/a/gw8/telemetry", []byte("21.5"), 1, 5, false)
	waitFor(t, "the publish to be stored", func() bool { return a.count("telemetry") == 1 })
	rc.c.Close() // the acknowledgement is lost
	a.stop(t, nil)

	l, err := flog.Open(flog.Options{Dir: filepath.Join(dir, "log"), RetentionCheckInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	year2100 := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	parts, _ := l.PartitionCount("telemetry")
	for p := int32(0); p < parts; p++ {
		part, _ := l.Partition("telemetry", p)
		if _, err := part.Append(flog.AppendBatch(nil, []flog.Record{{Value: []byte("from kafka"), Timestamp: year2100}})); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	b := startBroker(t, dir, nil)
	rc2 := dialRaw(t, b.addr, 5)
	if ack := rc2.connect(sess); !ack.SessionPresent {
		t.Fatal("session not restored")
	}
	rc2.publish("factory/a/gw8/telemetry", []byte("21.5"), 1, 5, true)
	if ack := rc2.expect(packets.Puback); ack.PacketID != 5 || ack.ReasonCode != 0 {
		t.Fatalf("PUBACK %+v", ack)
	}
	if got, want := b.count("telemetry"), 1+int64(parts); got != want {
		t.Fatalf("%d records after the retransmission, want %d: it was stored twice", got, want)
	}
}
