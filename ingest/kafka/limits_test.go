package kafka

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
)

// The read deadlines of conn.go, shortened. Each test waits for the server
// to close the connection with a read deadline of its own (closedByServer),
// never by sleeping, and checks the close was counted under its reason.

func dialRaw(t *testing.T, b *testBroker) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readResponse reads one response frame from c and returns its body after
// the correlation id (response header v0).
func readResponse(t *testing.T, c net.Conn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	var head [4]byte
	if _, err := io.ReadFull(c, head[:]); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint32(head[:]))
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatal(err)
	}
	return body[4:]
}

func timeouts(b *testBroker, reason string) float64 {
	return testutil.ToFloat64(b.srv.metrics.timeout(reason))
}

// A client that starts a frame and stops (slowloris) is cut off after the
// request timeout, however long the idle timeout.
func TestRequestReadTimeout(t *testing.T) {
	b := startBroker(t, func(o *Options) { o.RequestTimeout = 300 * time.Millisecond })
	c := dialRaw(t, b)
	began := time.Now()
	if _, err := c.Write([]byte{0, 0}); err != nil { // half a size prefix
		t.Fatal(err)
	}
	if !closedByServer(c) {
		t.Fatal("a connection that sent 2 bytes of a frame was not closed")
	}
	if el := time.Since(began); el < 300*time.Millisecond {
		t.Fatalf("closed after %v, before the request timeout", el)
	}
	// A frame trickled a byte at a time, each byte well within the
	// timeout, is cut off all the same: the deadline is the whole request's.
	c = dialRaw(t, b)
	frame := encodeRequest(kmsg.NewPtrApiVersionsRequest(), 1, "slow")
	frame = append(binary.BigEndian.AppendUint32(nil, uint32(len(frame))), frame...)
	go func() {
		for _, x := range frame {
			if _, err := c.Write([]byte{x}); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond) // the trickle's pace, not a wait for anything
		}
	}()
	if !closedByServer(c) {
		t.Fatal("a trickled frame was not cut off")
	}
	if got := timeouts(b, timeoutRequest); got != 2 {
		t.Fatalf("request timeouts counted: %v, want 2", got)
	}
	if got := timeouts(b, timeoutIdle); got != 0 {
		t.Fatalf("idle timeouts counted: %v", got)
	}
}

// A TLS handshake that stalls is cut off at the request timeout, not left
// for the idle timeout; a client that completes it is served.
func TestTLSHandshakeTimeout(t *testing.T) {
	// A self-signed certificate for 127.0.0.1 (the front end must not
	// import the node's certs package).
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pair := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}}
	b := startBrokerOn(t, func(o *Options) { o.RequestTimeout = 300 * time.Millisecond },
		func(ln net.Listener) net.Listener { return tls.NewListener(ln, cfg) })
	c := dialRaw(t, b)
	if _, err := c.Write([]byte{0x16, 0x03}); err != nil { // the start of a ClientHello
		t.Fatal(err)
	}
	if !closedByServer(c) {
		t.Fatal("a stalled TLS handshake was not cut off")
	}
	if got := timeouts(b, timeoutRequest); got != 1 {
		t.Fatalf("request timeouts counted: %v, want 1", got)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	tc, err := tls.Dial("tcp", b.addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	rawRequest(t, tc, kmsg.NewPtrApiVersionsRequest())
	readResponse(t, tc)
}

// A connection that sends nothing is closed after the idle timeout, and so
// is one that goes quiet after a request.
func TestIdleTimeout(t *testing.T) {
	b := startBroker(t, func(o *Options) { o.IdleTimeout = 300 * time.Millisecond })
	c := dialRaw(t, b)
	if !closedByServer(c) {
		t.Fatal("a silent connection was not closed")
	}
	c = dialRaw(t, b)
	rawRequest(t, c, kmsg.NewPtrApiVersionsRequest())
	readResponse(t, c)
	if !closedByServer(c) {
		t.Fatal("a connection idle after a request was not closed")
	}
	if got := timeouts(b, timeoutIdle); got != 2 {
		t.Fatalf("idle timeouts counted: %v, want 2", got)
	}
}

// Under SASL, a connection that keeps asking ApiVersions but never
// authenticates is closed at the authentication deadline: activity does
// not extend it.
func TestAuthTimeout(t *testing.T) {
	b := startBroker(t, func(o *Options) {
		o.SASLMechanisms = []string{SASLPlain}
		o.Credentials = memCreds{"alice": "s3cret"}
		o.AuthTimeout = 500 * time.Millisecond
	})
	c := dialRaw(t, b)
	began := time.Now()
	for {
		av := kmsg.NewPtrApiVersionsRequest()
		av.SetVersion(0)
		frame := encodeRequest(av, 1, "anon")
		if _, err := c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(frame))), frame...)); err != nil {
			break
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var head [4]byte
		if _, err := io.ReadFull(c, head[:]); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("no answer and no close")
			}
			break
		}
		if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(head[:]))); err != nil {
			break
		}
		if time.Since(began) > 20*time.Second {
			t.Fatal("an unauthenticated connection was never closed")
		}
		time.Sleep(50 * time.Millisecond) // the client's pace
	}
	if el := time.Since(began); el < 500*time.Millisecond {
		t.Fatalf("closed after %v, before the authentication timeout", el)
	}
	if got := timeouts(b, timeoutAuth); got != 1 {
		t.Fatalf("authentication timeouts counted: %v, want 1", got)
	}
}

// Clients whose quiet gaps are shorter than the timeouts keep working, well
// past each timeout in all: an authenticated connection has no
// authentication deadline left, a request deadline ends with its request,
// and the idle deadline restarts at every request.
func TestTimeoutsSpareLiveClients(t *testing.T) {
	b := startBroker(t, func(o *Options) {
		o.SASLMechanisms = []string{SASLPlain}
		o.Credentials = memCreds{"alice": "s3cret"}
		o.SuperUsers = []string{"alice"}
		o.AuthTimeout = 300 * time.Millisecond
		o.RequestTimeout = 300 * time.Millisecond
	})
	b.log.CreateTopic("gaps", 1, nil)
	cl := b.client(t, kgo.SASL(plain.Auth{User: "alice", Pass: "s3cret"}.AsMechanism()), kgo.DefaultProduceTopic("gaps"))
	ctx := ctxT(t)
	for i := range 4 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
		time.Sleep(400 * time.Millisecond) // the gap under test
	}
	for _, r := range []string{timeoutIdle, timeoutRequest, timeoutAuth} {
		if got := timeouts(b, r); got != 0 {
			t.Fatalf("%s timeouts: %v, want 0 (a live client was cut off)", r, got)
		}
	}
	// The idle deadline, on one raw connection (franz-go's spare
	// connections would rightly idle out), gaps adding up past it.
	b = startBroker(t, func(o *Options) { o.IdleTimeout = time.Second })
	c := dialRaw(t, b)
	for range 4 {
		rawRequest(t, c, kmsg.NewPtrApiVersionsRequest())
		readResponse(t, c)
		time.Sleep(400 * time.Millisecond) // the gap under test
	}
	if got := timeouts(b, timeoutIdle); got != 0 {
		t.Fatalf("idle timeouts: %v, want 0", got)
	}
}
