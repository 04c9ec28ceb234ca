package mqtt

import (
	"context"
	"io/fs"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	flog "ferry/log"
)

type testBroker struct {
	srv  *Server
	log  *flog.Log
	addr string
	reg  *prometheus.Registry
	dir  string
	opts Options
	done chan error
}

// heldFS is the operating system's filesystem whose fsyncs, while hold is
// set, wait until release is closed: acknowledgements that wait for
// durability stay pending for as long as a test needs.
type heldFS struct {
	flog.OSFS
	hold    atomic.Bool
	release chan struct{}
	held    atomic.Int32 // fsyncs waiting for release now
}

type heldFile struct {
	flog.File
	h *heldFS
}

func (h *heldFS) OpenFile(name string, flag int, perm fs.FileMode) (flog.File, error) {
	f, err := h.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return heldFile{f, h}, nil
}

func (f heldFile) Sync() error {
	if f.h.hold.Load() {
		f.h.held.Add(1)
		<-f.h.release
		f.h.held.Add(-1)
	}
	return f.File.Sync()
}

var telemetryRule = Rule{Filter: "factory/+site/+device/telemetry", Topic: "telemetry", Key: "{device}", Partitions: 4}

// startBroker runs a Server on 127.0.0.1 over a log in dir (a new
// temporary directory when empty).
func startBroker(t testing.TB, dir string, mod func(*Options)) *testBroker {
	t.Helper()
	return startBrokerFS(t, dir, nil, mod)
}

// startBrokerFS is startBroker over a log whose files go through fsys (nil:
// the operating system's).
func startBrokerFS(t testing.TB, dir string, fsys flog.FS, mod func(*Options)) *testBroker {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	quiet := slog.New(slog.DiscardHandler)
	l, err := flog.Open(flog.Options{Dir: filepath.Join(dir, "log"), FS: fsys, RetentionCheckInterval: -1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	opts := Options{Log: l, Rules: []Rule{telemetryRule}, DefaultTopic: "mqtt", Registerer: reg, Logger: quiet,
		SessionDB: filepath.Join(dir, "mqtt-sessions.db")}
	if mod != nil {
		mod(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	b := &testBroker{srv: srv, log: l, addr: ln.Addr().String(), reg: reg, dir: dir, opts: opts, done: done}
	t.Cleanup(func() { b.stop(t, done) })
	return b
}

func (b *testBroker) stop(t testing.TB, _ chan error) {
	if b.srv == nil {
		return
	}
	b.srv.Close()
	if err := <-b.done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if err := b.log.Close(); err != nil {
		t.Errorf("closing log: %v", err)
	}
	b.srv = nil
}

// connect makes an MQTT 5 client connection with paho.
func (b *testBroker) connect(t testing.TB, cp *paho.Connect, conf func(*paho.ClientConfig)) *paho.Client {
	t.Helper()
	c, ack, err := b.tryConnect(cp, conf)
	if err != nil {
		t.Fatalf("connect %s: %v (connack %+v)", cp.ClientID, err, ack)
	}
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
	return c
}

func (b *testBroker) tryConnect(cp *paho.Connect, conf func(*paho.ClientConfig)) (*paho.Client, *paho.Connack, error) {
	nc, err := net.Dial("tcp", b.addr)
	if err != nil {
		return nil, nil, err
	}
	cc := paho.ClientConfig{Conn: nc}
	if conf != nil {
		conf(&cc)
	}
	c := paho.NewClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	ack, err := c.Connect(ctx, cp)
	if err != nil {
		nc.Close()
		return nil, ack, err
	}
	return c, ack, nil
}

// records reads every record of a topic, partition by partition.
func (b *testBroker) records(t testing.TB, topic string) map[int32][]flog.DecodedRecord {
	t.Helper()
	n, err := b.log.PartitionCount(topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32][]flog.DecodedRecord{}
	for p := int32(0); p < n; p++ {
		part, err := b.log.Partition(topic, p)
		if err != nil {
			t.Fatal(err)
		}
		if err := forEachRecord(part, 0, func(r flog.DecodedRecord) { out[p] = append(out[p], r) }); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func (b *testBroker) count(topic string) int64 {
	n, _ := b.log.PartitionCount(topic)
	var total int64
	for p := int32(0); p < n; p++ {
		part, _ := b.log.Partition(topic, p)
		total += part.EndOffset() - part.StartOffset()
	}
	return total
}

func (b *testBroker) publishes(qos, result string) float64 {
	return testutil.ToFloat64(b.srv.metrics.publishes.WithLabelValues(qos, result))
}

func header(r flog.DecodedRecord, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// waitFor polls cond until it holds or the deadline passes; for state
// that the broker changes asynchronously and exposes no event for.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// awaitClosed waits until the broker has client id, disconnected.
func (b *testBroker) awaitClosed(t testing.TB, id string) {
	t.Helper()
	waitFor(t, id+" to disconnect", func() bool { cl, ok := b.srv.broker.Clients.Get(id); return ok && cl.Closed() })
}

func (b *testBroker) clientByID(t testing.TB, id string) *mqtt.Client {
	t.Helper()
	cl, ok := b.srv.broker.Clients.Get(id)
	if !ok {
		t.Fatalf("no client %q", id)
	}
	return cl
}

func testutilToFloat(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }
