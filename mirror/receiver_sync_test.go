package mirror

import (
	"io/fs"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	flog "ferry/log"
	"ferry/mirror/wire"
)

// heldSyncFS is the operating system's filesystem whose fsyncs, once hold
// is set, wait until release is closed, counting themselves while they do.
type heldSyncFS struct {
	flog.OSFS
	hold    atomic.Bool
	held    atomic.Int32
	release chan struct{}
}

type heldSyncFile struct {
	flog.File
	h *heldSyncFS
}

func (h *heldSyncFS) OpenFile(name string, flag int, perm fs.FileMode) (flog.File, error) {
	f, err := h.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return heldSyncFile{f, h}, nil
}

func (f heldSyncFile) Sync() error {
	if f.h.hold.Load() {
		f.h.held.Add(1)
		<-f.h.release
		f.h.held.Add(-1)
	}
	return f.File.Sync()
}

// TestReceiverSyncsPartitionsTogether: chunks of two partitions waiting for
// their acknowledgements have their fsyncs asked for as they are stored,
// so the second partition's begins while the first's is held, not once the
// first is acknowledged (with flush.ms a minute nothing else would start
// it). The acknowledgements still wait for both.
func TestReceiverSyncsPartitionsTogether(t *testing.T) {
	h := &heldSyncFS{release: make(chan struct{})}
	l, err := flog.Open(flog.Options{Dir: t.TempDir(), FS: h, RetentionCheckInterval: -1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	c := startCenter(t, l, "")
	var once sync.Once
	release := func() { once.Do(func() { h.hold.Store(false); close(h.release) }) }
	t.Cleanup(release) // before the center stops

	r := dialCenter(t, c.addr)
	r.send((&wire.Hello{Version: wire.Version, Edge: "gw1", Token: "s3cret", Parts: []wire.PartRef{
		{Topic: "telemetry", Partition: 0, Partitions: 2}, {Topic: "telemetry", Partition: 1, Partitions: 2}}}).Encode(nil))
	if m, ok := r.read().(*wire.Welcome); !ok {
		t.Fatalf("got %+v, want a welcome", m)
	}
	if err := l.AlterConfigs(c.recv.centerTopic("gw1", "telemetry"), map[string]string{flog.ConfigFlushMs: "60000"}, nil); err != nil {
		t.Fatal(err)
	}
	chunk := func(p int32, base int64) []byte {
		b := flog.AppendBatch(nil, []flog.Record{{Value: []byte("v"), Timestamp: time.Now().UnixMilli()}})
		for i := range 8 {
			b[i] = byte(uint64(base) >> (56 - 8*i))
		}
		return (&wire.Chunk{Topic: "telemetry", Partition: p, Base: base, Last: base, RawLen: uint32(len(b)), CRC: wire.Checksum(b), Data: b}).Encode(nil)
	}
	ack := func(p int32, next int64) {
		t.Helper()
		if m, ok := r.read().(*wire.Ack); !ok || m.Partition != p || m.Next != next {
			t.Fatalf("got %+v, want the acknowledgement of partition %d up to %d", m, p, next)
		}
	}
	// A first group commit on each partition: the next interval is a
	// minute away.
	for p := range int32(2) {
		r.send(chunk(p, 0))
		ack(p, 1)
	}
	h.hold.Store(true)
	r.send(append(chunk(0, 1), chunk(1, 1)...))
	deadline := time.Now().Add(10 * time.Second)
	for h.held.Load() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d fsyncs held, want both partitions' at once", h.held.Load())
		}
		time.Sleep(2 * time.Millisecond)
	}
	release()
	ack(0, 2)
	ack(1, 2)
}
