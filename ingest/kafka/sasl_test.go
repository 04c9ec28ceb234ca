package kafka

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	xscram "github.com/xdg-go/scram"
)

// memCreds are in-memory Credentials for the protocol tests: one user per
// name, its SCRAM credentials derived as the device registry derives them
// (the registry's own tests cover its storage; edge's tests the two
// together).
type memCreds map[string]string

func (m memCreds) CheckPlain(user, password string) error {
	if pw, ok := m[user]; ok && pw == password {
		return nil
	}
	return ErrBadCredentials
}

func (m memCreds) SCRAM(mechanism, user string) (SCRAMCredential, error) {
	pw, ok := m[user]
	h := scramHashFor(mechanism)
	if !ok || h == nil {
		return SCRAMCredential{}, ErrBadCredentials
	}
	c, _ := xscram.HashGeneratorFcn(h).NewClientUnprepped(user, pw, "")
	salt := sha256.Sum256([]byte(user))
	sc, err := c.GetStoredCredentialsWithError(xscram.KeyFactors{Salt: string(salt[:16]), Iters: 4096})
	return SCRAMCredential{Salt: salt[:16], Iterations: sc.Iters, StoredKey: sc.StoredKey, ServerKey: sc.ServerKey}, err
}

// SCRAMDecoy shows a fixed salt per user and the iteration count memCreds'
// users have.
func (m memCreds) SCRAMDecoy(mechanism, user string) SCRAMCredential {
	salt := sha256.Sum256([]byte("decoy " + user))
	key := make([]byte, scramHashFor(mechanism)().Size())
	return SCRAMCredential{Salt: salt[:16], Iterations: 4096, StoredKey: key, ServerKey: key}
}

func startSASLBroker(t *testing.T) *testBroker {
	return startBroker(t, func(o *Options) {
		o.SASLMechanisms = []string{SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512}
		o.Credentials = memCreds{"alice": "s3cret"}
		o.AuthFailureDelay = -1
	})
}

// rawRequest writes one request frame on c.
func rawRequest(t *testing.T, c net.Conn, req kmsg.Request) {
	t.Helper()
	frame := encodeRequest(req, 1, "raw")
	if _, err := c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(frame))), frame...)); err != nil {
		t.Fatal(err)
	}
}

// closedByServer reports whether the server closed c (a read ends in EOF
// or a reset, not a timeout).
func closedByServer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

func TestSASLClients(t *testing.T) {
	b := startSASLBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mechs := map[string]func(user, pass string) kgo.Opt{
		SASLPlain: func(u, p string) kgo.Opt { return kgo.SASL(plain.Auth{User: u, Pass: p}.AsMechanism()) },
		SASLSCRAMSHA256: func(u, p string) kgo.Opt {
			return kgo.SASL(scram.Auth{User: u, Pass: p}.AsSha256Mechanism())
		},
		SASLSCRAMSHA512: func(u, p string) kgo.Opt {
			return kgo.SASL(scram.Auth{User: u, Pass: p}.AsSha512Mechanism())
		},
	}
	for name, opt := range mechs {
		t.Run(name, func(t *testing.T) {
			for _, tc := range []struct {
				user, pass string
				ok         bool
			}{{"alice", "s3cret", true}, {"alice", "wrong", false}, {"mallory", "s3cret", false}} {
				cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), opt(tc.user, tc.pass), kgo.RequestRetries(0))
				if err != nil {
					t.Fatal(err)
				}
				err = cl.Ping(ctx)
				cl.Close()
				if tc.ok && err != nil {
					t.Fatalf("%s/%s: %v", tc.user, tc.pass, err)
				}
				if !tc.ok && !errors.Is(err, kerr.SaslAuthenticationFailed) {
					t.Fatalf("%s/%s: %v, want SASL_AUTHENTICATION_FAILED", tc.user, tc.pass, err)
				}
			}
			if ok := testutil.ToFloat64(b.srv.metrics.auths.WithLabelValues(name, "ok")); ok != 1 {
				t.Errorf("%s ok count %v", name, ok)
			}
			if failed := testutil.ToFloat64(b.srv.metrics.auths.WithLabelValues(name, "failed")); failed != 2 {
				t.Errorf("%s failed count %v", name, failed)
			}
		})
	}
}

// TestSASLRefusesUnauthenticatedRequests: before authentication only
// ApiVersions and the SASL APIs are served; anything else closes the
// connection, and counts.
func TestSASLRefusesUnauthenticatedRequests(t *testing.T) {
	b := startSASLBroker(t)
	c, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	av := kmsg.NewPtrApiVersionsRequest()
	av.SetVersion(0)
	rawRequest(t, c, av)
	var head [4]byte
	if _, err := io.ReadFull(c, head[:]); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint32(head[:]))
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatal(err)
	}
	resp := kmsg.NewPtrApiVersionsResponse()
	if err := resp.ReadFrom(body[4:]); err != nil {
		t.Fatal(err)
	}
	keys := map[int16]bool{}
	for _, k := range resp.ApiKeys {
		keys[k.ApiKey] = true
	}
	if !keys[17] || !keys[36] || !keys[29] {
		t.Fatalf("ApiVersions: SaslHandshake %t, SaslAuthenticate %t, DescribeAcls (served always: SECURITY_DISABLED without ACLs) %t", keys[17], keys[36], keys[29])
	}
	md := kmsg.NewPtrMetadataRequest()
	md.SetVersion(9)
	rawRequest(t, c, md)
	if !closedByServer(c) {
		t.Fatal("a Metadata request before authentication was not refused")
	}
	if got := testutil.ToFloat64(b.srv.metrics.unauthenticated); got != 1 {
		t.Fatalf("ferry_kafka_unauthenticated_requests_total = %v", got)
	}
	// Without SASL at all, a franz-go client gets nowhere either.
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.RequestRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.Ping(ctx); err == nil {
		t.Fatal("a client without SASL was served")
	}
}

// TestSASLCapsUnauthenticatedFrames: a stranger declaring a frame above
// the pre-authentication cap (but below MaxRequestBytes) is cut off at the
// size prefix; the bytes that follow are never read, nothing of the declared
// size is allocated.
func TestSASLCapsUnauthenticatedFrames(t *testing.T) {
	b := startSASLBroker(t)
	c, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	declared := uint32(50 << 20)
	if _, err := c.Write(binary.BigEndian.AppendUint32(nil, declared)); err != nil {
		t.Fatal(err)
	}
	// Keep sending: a server that read the frame would take it all.
	go func() {
		chunk := bytes.Repeat([]byte{0}, 64<<10)
		for i := 0; i < 800; i++ {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	if !closedByServer(c) {
		t.Fatal("a 50 MiB unauthenticated frame was not refused")
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Errorf("the server allocated %d MiB for a refused frame", grew>>20)
	}
	if got := testutil.ToFloat64(b.srv.metrics.malformed.WithLabelValues("frame_size")); got != 1 {
		t.Fatalf("frame_size refusals = %v", got)
	}
}

// TestSASLStateErrors: SaslAuthenticate before a handshake, and a
// mechanism not enabled, are answered and close the connection.
func TestSASLStateErrors(t *testing.T) {
	b := startBroker(t, func(o *Options) {
		o.SASLMechanisms = []string{SASLSCRAMSHA512}
		o.Credentials = memCreds{"alice": "s3cret"}
	})
	for _, tc := range []struct {
		req  kmsg.Request
		code int16
	}{
		{&kmsg.SASLAuthenticateRequest{Version: 1, SASLAuthBytes: []byte("\x00alice\x00s3cret")}, kerr.IllegalSaslState.Code},
		{&kmsg.SASLHandshakeRequest{Version: 1, Mechanism: "PLAIN"}, kerr.UnsupportedSaslMechanism.Code},
	} {
		c, err := net.Dial("tcp", b.addr)
		if err != nil {
			t.Fatal(err)
		}
		rawRequest(t, c, tc.req)
		var head [8]byte
		if _, err := io.ReadFull(c, head[:]); err != nil {
			t.Fatal(err)
		}
		body := make([]byte, binary.BigEndian.Uint32(head[:4])-4)
		io.ReadFull(c, body)
		if code := int16(binary.BigEndian.Uint16(body)); code != tc.code {
			t.Errorf("%s: error %d, want %d", kmsg.NameForKey(tc.req.Key()), code, tc.code)
		}
		if !closedByServer(c) {
			t.Errorf("%s: connection left open", kmsg.NameForKey(tc.req.Key()))
		}
		c.Close()
	}
}

func TestParseSASLMechanisms(t *testing.T) {
	got, err := ParseSASLMechanisms("plain, scram-sha-256,SCRAM-SHA-512,plain")
	if err != nil || strings.Join(got, " ") != "PLAIN SCRAM-SHA-256 SCRAM-SHA-512" {
		t.Fatalf("%v, %v", got, err)
	}
	if _, err := ParseSASLMechanisms("gssapi"); err == nil {
		t.Fatal("GSSAPI accepted")
	}
	if got, err := ParseSASLMechanisms(""); err != nil || got != nil {
		t.Fatalf("empty: %v, %v", got, err)
	}
}

// FuzzSASLExchange feeds arbitrary SASL messages to a mechanism's server
// side: PLAIN's one message, SCRAM's client-first and client-final. It must
// never panic, and never authenticate anyone but a user whose password the
// messages prove. The seed corpus (testdata/fuzz/FuzzSASLExchange) holds
// real exchanges, right and wrong, as franz-go's and xdg-go's clients
// write them.
func FuzzSASLExchange(f *testing.F) {
	mechs := []string{SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512}
	f.Add(uint8(0), []byte("\x00alice\x00s3cret"), []byte(nil))
	f.Add(uint8(1), []byte("n,,n=alice,r=abcdefgh"), []byte("c=biws,r=abcdefgh,p=AAAA"))
	f.Add(uint8(2), []byte("n,a=bob,n=alice,r=x,tokenauth=true"), []byte("c=biws,r=x,p="))
	f.Fuzz(func(t *testing.T, mech uint8, first, final []byte) {
		ss, err := newSASLServer(mechs, memCreds{"alice": "s3cret"})
		if err != nil {
			t.Fatal(err)
		}
		m := mechs[int(mech)%len(mechs)]
		x := ss.start(m)
		answer, user, err := ss.step(x, first)
		if err == nil && user == "" {
			if !bytes.HasPrefix(answer, []byte("r=")) {
				t.Fatalf("server-first %q", answer)
			}
			_, user, err = ss.step(x, final)
		}
		if err == nil && user != "alice" {
			t.Fatalf("%s authenticated %q", m, user)
		}
		if m == SASLPlain && err == nil && !bytes.HasSuffix(first, []byte("\x00alice\x00s3cret")) {
			t.Fatalf("PLAIN accepted %q", first)
		}
	})
}

// TestUnauthenticatedBodyNotDecoded: before authentication a request other
// than ApiVersions and SASL's is refused on its header alone — a body that
// would not even decode is never looked at, so a stranger's 64 KiB of
// declared arrays allocates nothing — while ApiVersions still decodes.
func TestUnauthenticatedBodyNotDecoded(t *testing.T) {
	fetch := kmsg.NewPtrFetchRequest()
	fetch.Version = 12
	frame := encodeRequest(fetch, 7, "stranger")
	frame = append(frame[:len(frame)-1], 0xff, 0xff, 0xff, 0xff) // a body that does not decode
	rq, req, _, _, err := decodeRequest(frame, preAuthAPI)
	if !errors.Is(err, errUnauthenticated) || req != nil || rq.key != 1 {
		t.Fatalf("Fetch before authentication: key %d, request %v, err %v; want refused on its header", rq.key, req, err)
	}
	if _, _, _, reason, err := decodeRequest(frame, nil); err == nil || reason != "body" {
		t.Fatalf("the same frame once authenticated: reason %q, err %v; want a body that does not decode", reason, err)
	}
	av := kmsg.NewPtrApiVersionsRequest()
	av.Version = 3
	if _, req, _, _, err := decodeRequest(encodeRequest(av, 8, "stranger"), preAuthAPI); err != nil || req == nil {
		t.Fatalf("ApiVersions before authentication: %v %v", req, err)
	}
}
