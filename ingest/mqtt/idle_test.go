package mqtt

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// dialIdleRaw connects an MQTT 3.1.1 client that then stays idle
// (keepalive 60 s), holding nothing but its socket on the test's side.
func dialIdleRaw(t testing.TB, addr, id string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &rawClient{t: t, c: c, version: 4}
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: id, Clean: true, Keepalive: 60}}
	rc.send(pk, (*packets.Packet).ConnectEncode)
	var ack [4]byte
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(ack[:]); err != nil || ack[0]>>4 != packets.Connack || ack[3] != 0 {
		t.Fatalf("CONNACK %x: %v", ack, err)
	}
	c.SetReadDeadline(time.Time{})
	return c
}

// Idle connections cost no allocation per second: mochi's expiry passes
// copied the whole client map twice a second (about 260 KB/s with 1,000
// idle clients), garbage that kept the GC running and the heap large.
func TestIdleConnectionsAllocateNothingPerSecond(t *testing.T) {
	const n, window = 1000, 3 * time.Second
	b := startBroker(t, "", nil)
	for i := 0; i < n; i++ {
		dialIdleRaw(t, b.addr, fmt.Sprintf("idle%04d", i))
	}
	waitFor(t, "every client to be connected", func() bool { return b.srv.broker.Clients.Len() == n })
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	time.Sleep(window) // the quantity measured is what happens in this time
	runtime.ReadMemStats(&m1)
	rate := float64(m1.TotalAlloc-m0.TotalAlloc) / window.Seconds()
	t.Logf("%d idle connections: %.0f B/s allocated, %.1f mallocs/s", n, rate, float64(m1.Mallocs-m0.Mallocs)/window.Seconds())
	// What remains does not grow with the connections: the $SYS topics
	// every 10 s and the retained-expiry pass.
	if rate > 64<<10 {
		t.Fatalf("%d idle connections allocate %.0f B/s; want under 64 KiB/s", n, rate)
	}
}

// An offline session is forgotten once its expiry interval has passed
// (ferry's sweep, which replaced mochi's pass over every client), and a
// session with a longer interval is kept.
func TestOfflineSessionExpires(t *testing.T) {
	b := startBroker(t, "", nil)
	for _, o := range []connectOpts{{id: "short", sessionExpiry: 1}, {id: "long", sessionExpiry: 3600}} {
		rc := dialRaw(t, b.addr, 5)
		rc.connect(o)
		rc.subscribe("s/"+o.id, 1, 1)
		rc.c.Close()
		b.awaitClosed(t, o.id)
	}
	waitFor(t, "the short session to expire", func() bool { _, ok := b.srv.broker.Clients.Get("short"); return !ok })
	if _, ok := b.srv.broker.Clients.Get("long"); !ok {
		t.Fatal("the session with a 3600 s expiry is gone too")
	}
	rc := dialRaw(t, b.addr, 5)
	if ack := rc.connect(connectOpts{id: "short", sessionExpiry: 60}); ack.SessionPresent {
		t.Fatal("expired session resumed")
	}
	rc = dialRaw(t, b.addr, 5)
	if ack := rc.connect(connectOpts{id: "long", sessionExpiry: 3600}); !ack.SessionPresent {
		t.Fatal("session not present")
	}
}

// An idle connection holds one goroutine, on a small stack: mochi's reader
// waited on a 16 KiB stack grown while it handled CONNECT, and its writer
// (WriteLoop) on 4 KiB, next to a 1 KiB read buffer.
func TestIdleConnectionFootprint(t *testing.T) {
	const n = 1000
	b := startBroker(t, "", nil)
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()
	for i := 0; i < n; i++ {
		dialIdleRaw(t, b.addr, fmt.Sprintf("idle%04d", i))
	}
	waitFor(t, "every client to be connected", func() bool { return b.srv.broker.Clients.Len() == n })
	runtime.GC() // stacks shrink at a GC
	runtime.GC()
	runtime.ReadMemStats(&m1)
	goroutines := float64(runtime.NumGoroutine()-g0) / n
	stack := float64(m1.StackInuse-m0.StackInuse) / n
	heap := float64(m1.HeapInuse-m0.HeapInuse) / n // the test's side of each connection included
	t.Logf("per idle connection: %.2f goroutines, %.0f B of stack, %.0f B of heap", goroutines, stack, heap)
	// One goroutine, the reader, at Go's 4 KiB floor for a waiting
	// goroutine; 6 KiB leaves room for stacks freed but not yet reused.
	if goroutines > 1.05 {
		t.Errorf("%.2f goroutines per idle connection; want 1", goroutines)
	}
	if stack > 6<<10 {
		t.Errorf("%.0f B of stack per idle connection; want at most 6 KiB", stack)
	}
}

// The mochi functions connection.go calls through go:linkname are declared
// with the signatures of mochi v2.7.9: a linkname is not type-checked, so
// another version must be read before go.mod names it.
func TestMochiVersionPinned(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mod), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "github.com/mochi-mqtt/server/v2" {
			if f[1] != "v2.7.9" {
				t.Fatalf("go.mod names mochi %s: check the signatures in connection.go against it, then this test", f[1])
			}
			return
		}
	}
	t.Fatal("go.mod does not name github.com/mochi-mqtt/server/v2")
}

// Once a burst of connects has settled, the memory it left free goes back
// to the operating system: with every device idle nothing allocates, so
// the runtime would otherwise keep the heap the burst grew to.
func TestMemoryReleasedOnceConnectsSettle(t *testing.T) {
	b := startBroker(t, "", nil)
	b.srv.churn.quiet.Store(int64(300 * time.Millisecond))
	b.srv.churn.min.Store(100)
	for i := 0; i < 150; i++ {
		dialIdleRaw(t, b.addr, fmt.Sprintf("burst%03d", i))
	}
	waitFor(t, "the memory to be released", func() bool { return b.srv.churn.released.Load() > 0 })
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	if free := m.HeapIdle - m.HeapReleased; free > 1<<20 {
		t.Fatalf("%d bytes of free heap still resident after the release", free)
	}
	if n := b.srv.churn.count.Load(); n != 0 {
		t.Fatalf("churn count %d after the release; want 0", n)
	}
}
