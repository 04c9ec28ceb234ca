package kafka

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// wildcardListener is a listener on 127.0.0.1 that reports itself bound to
// every address, as a node started with --kafka-addr :9092 is (tests bind
// 127.0.0.1 only).
type wildcardListener struct{ net.Listener }

func (l wildcardListener) Addr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4zero, Port: l.Listener.Addr().(*net.TCPAddr).Port}
}

// lockedBuffer is a log destination the server's goroutines may share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// metadataBroker asks the broker for Metadata over a raw connection (a
// client would go on to dial the advertised name) and returns the one
// broker it lists.
func metadataBroker(t *testing.T, b *testBroker) kmsg.MetadataResponseBroker {
	t.Helper()
	c := dialRaw(t, b)
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 1
	frame := encodeRequest(req, 1, "adv")
	if _, err := c.Write(binary.BigEndian.AppendUint32(nil, uint32(len(frame)))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(frame); err != nil {
		t.Fatal(err)
	}
	resp := kmsg.NewPtrMetadataResponse()
	resp.Version = 1
	if err := resp.ReadFrom(readResponse(t, c)); err != nil || len(resp.Brokers) != 1 {
		t.Fatalf("metadata: %+v %v", resp, err)
	}
	return resp.Brokers[0]
}

// TestWildcardListenerAdvertisesTheHostname: bound to every address with
// nothing configured to advertise, the broker tells clients the machine's
// hostname (as Kafka does), not localhost, which a client elsewhere would
// take for itself; it logs what it advertises, and warns when that is a
// loopback name.
func TestWildcardListenerAdvertisesTheHostname(t *testing.T) {
	for _, tc := range []struct {
		host string
		warn bool
	}{{"ferry-edge-7", false}, {"localhost", true}} {
		t.Run(tc.host, func(t *testing.T) {
			old := hostname
			hostname = func() (string, error) { return tc.host, nil }
			t.Cleanup(func() { hostname = old }) // after the broker's cleanup, registered later
			logs := &lockedBuffer{}
			b := startBrokerOn(t, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(logs, nil)) },
				func(ln net.Listener) net.Listener { return wildcardListener{ln} })
			_, p, _ := net.SplitHostPort(b.addr)
			port, _ := strconv.Atoi(p)
			br := metadataBroker(t, b)
			if br.Host != tc.host || br.Port != int32(port) {
				t.Fatalf("advertised %s:%d, want %s:%d", br.Host, br.Port, tc.host, port)
			}
			want := fmt.Sprintf("advertised=%s:%d", tc.host, port)
			waitFor(t, "the start log line", func() bool { return strings.Contains(logs.String(), want) })
			if warned := strings.Contains(logs.String(), "level=WARN"); warned != tc.warn {
				t.Fatalf("warned %v, want %v:\n%s", warned, tc.warn, logs.String())
			}
		})
	}
	// A configured address is advertised as it is, and a listener on one
	// address advertises that address.
	if adv, _ := advertisedAddr("edge.example:9092", &net.TCPAddr{IP: net.IPv4zero, Port: 1}); adv != "edge.example:9092" {
		t.Fatalf("configured: %s", adv)
	}
	if adv, wild := advertisedAddr("", &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 9092}); adv != "10.1.2.3:9092" || wild {
		t.Fatalf("bound to one address: %s %v", adv, wild)
	}
}
