package edge

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"ferry/edge/certs"
)

// testCA is a CA saved in a temporary directory, issuing certificates into
// it as `ferry certs` does.
type testCA struct {
	t    *testing.T
	dir  string
	ca   *certs.CA
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	ca, err := certs.NewCA("ferry test CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &testCA{t: t, dir: dir, ca: ca, pool: pool}
}

func (c *testCA) caFile() string { return filepath.Join(c.dir, certs.CACertFile) }

// issue writes name.pem and name-key.pem and returns their paths.
func (c *testCA) issue(name string, req certs.Request) (certFile, keyFile string) {
	c.t.Helper()
	certPEM, keyPEM, err := c.ca.Issue(req)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := certs.WritePair(c.dir, name, certPEM, keyPEM); err != nil {
		c.t.Fatal(err)
	}
	return filepath.Join(c.dir, name+".pem"), filepath.Join(c.dir, name+"-key.pem")
}

// client is a client certificate of the CA, as a tls.Certificate.
func (c *testCA) client(name string, req certs.Request) tls.Certificate {
	c.t.Helper()
	req.CommonName, req.Kind = name, certs.ClientCert
	cert, key := c.issue(name, req)
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		c.t.Fatal(err)
	}
	return pair
}

func (c *testCA) server(name string, files certs.ServerFiles) *certs.Server {
	c.t.Helper()
	files.Name = name
	files.Cert, files.Key = c.issue(name, certs.Request{CommonName: "node", Hosts: []string{"127.0.0.1", "localhost"}})
	s, err := certs.NewServer(files)
	if err != nil {
		c.t.Fatal(err)
	}
	return s
}

// startTLSNode starts a node whose Kafka and admin listeners serve TLS
// with the servers given (nil: plain).
func startTLSNode(t *testing.T, kafkaTLS, adminTLS *certs.Server) *Node {
	t.Helper()
	opts := Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", AutoCreateTopics: true, Logger: slog.New(slog.DiscardHandler)}
	for _, s := range []*certs.Server{kafkaTLS, adminTLS} {
		if s != nil {
			opts.TLSCerts = append(opts.TLSCerts, s)
		}
	}
	if kafkaTLS != nil {
		opts.KafkaTLS = kafkaTLS.Config()
	}
	if adminTLS != nil {
		opts.AdminTLS = adminTLS.Config()
	}
	n, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// apiVersions dials the Kafka listener at addr (over TLS with conf, plain
// without) and asks for ApiVersions: nil once an answer to it came back,
// else what stopped it (a refused certificate surfaces here, as TLS 1.3
// reports it after the client's side of the handshake).
func apiVersions(addr string, conf *tls.Config) error {
	var c net.Conn
	var err error
	if conf != nil {
		c, err = tls.Dial("tcp", addr, conf)
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// size 10; api key 18 (ApiVersions), version 0, correlation id 7, no client id
	if _, err := c.Write([]byte{0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 7, 0xff, 0xff}); err != nil {
		return err
	}
	var head [8]byte
	if _, err := io.ReadFull(c, head[:]); err != nil {
		return err
	}
	if id := binary.BigEndian.Uint32(head[4:]); id != 7 {
		return fmt.Errorf("not a Kafka answer: % x", head)
	}
	return nil
}

// TestKafkaOverTLS: franz-go and kcat produce and consume over a TLS Kafka
// listener, verifying it with the CA; a client trusting another CA, and
// one shown an expired server certificate, refuse it; a plain client gets
// nothing.
func TestKafkaOverTLS(t *testing.T) {
	pki := newTestCA(t)
	n := startTLSNode(t, pki.server("kafka", certs.ServerFiles{}), nil)
	addr := n.KafkaAddr()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DialTLSConfig(&tls.Config{RootCAs: pki.pool}),
		kgo.DefaultProduceTopic("secure"), kgo.AllowAutoTopicCreation(),
		kgo.ConsumeTopics("secure"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("dev1"), Value: []byte("over tls")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	fs := cl.PollRecords(ctx, 1)
	if err := fs.Err0(); err != nil {
		t.Fatal(err)
	}
	if recs := fs.Records(); len(recs) != 1 || string(recs[0].Value) != "over tls" {
		t.Fatalf("consumed %v", recs)
	}

	if kcat, err := exec.LookPath("kcat"); err == nil {
		ssl := []string{"-b", addr, "-X", "security.protocol=ssl", "-X", "ssl.ca.location=" + pki.caFile()}
		run := func(stdin string, args ...string) (string, error) {
			cmd := exec.Command(kcat, append(append([]string{}, ssl...), args...)...)
			cmd.Stdin = strings.NewReader(stdin)
			var out, errOut bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errOut
			err := cmd.Run()
			return out.String() + errOut.String(), err
		}
		if out, err := run("k2:from kcat\n", "-P", "-t", "secure", "-K:"); err != nil {
			t.Fatalf("kcat -P over TLS: %v\n%s", err, out)
		}
		out, err := run("", "-C", "-t", "secure", "-o", "beginning", "-e", "-f", "%k=%s\n")
		if err != nil || !strings.Contains(out, "dev1=over tls") || !strings.Contains(out, "k2=from kcat") {
			t.Fatalf("kcat -C over TLS: %v\n%s", err, out)
		}
		// kcat trusting another CA fails the handshake.
		other := newTestCA(t)
		ssl[len(ssl)-1] = "ssl.ca.location=" + other.caFile()
		if out, err := run("", "-L", "-m", "2"); err == nil {
			t.Fatalf("kcat trusting another CA listed the broker:\n%s", out)
		}
	} else if os.Getenv("CI") == "true" {
		t.Fatal("kcat is required under CI=true (make deps installs it)")
	}

	if err := apiVersions(addr, &tls.Config{RootCAs: newTestCA(t).pool}); err == nil {
		t.Fatal("a client trusting another CA accepted the listener")
	}
	if err := apiVersions(addr, &tls.Config{RootCAs: pki.pool}); err != nil {
		t.Fatalf("a client trusting the CA: %v", err)
	}

	// An expired certificate on the listener is refused by clients.
	expired, key := pki.issue("kafka-expired", certs.Request{CommonName: "node", Hosts: []string{"127.0.0.1"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	expiredSrv, err := certs.NewServer(certs.ServerFiles{Name: "kafka", Cert: expired, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	n2 := startTLSNode(t, expiredSrv, nil)
	if err := apiVersions(n2.KafkaAddr(), &tls.Config{RootCAs: pki.pool}); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("a client shown an expired certificate: %v", err)
	}

	// A plain Kafka client gets no answer it can read as Kafka.
	if err := apiVersions(addr, nil); err == nil {
		t.Fatal("a plain client talked to the TLS listener")
	}
}

// TestKafkaMutualTLS: with a client CA, a Kafka client must show a valid
// certificate of that CA: none, one from another CA and an expired one
// are refused; franz-go and kcat with a valid one get through.
func TestKafkaMutualTLS(t *testing.T) {
	pki := newTestCA(t)
	n := startTLSNode(t, pki.server("kafka", certs.ServerFiles{ClientCA: pki.caFile()}), nil)
	addr := n.KafkaAddr()
	good := pki.client("app1", certs.Request{})
	expired := pki.client("app-old", certs.Request{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	stranger := newTestCA(t).client("app1", certs.Request{})

	for name, c := range map[string][]tls.Certificate{"no certificate": nil, "another CA's": {stranger}, "an expired": {expired}} {
		if err := apiVersions(addr, &tls.Config{RootCAs: pki.pool, Certificates: c}); err == nil {
			t.Errorf("a client with %s certificate was accepted", name)
		}
	}
	if err := apiVersions(addr, &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{good}}); err != nil {
		t.Fatalf("a client with a valid certificate: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DialTLSConfig(&tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{good}}),
		kgo.DefaultProduceTopic("mtls"), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("with a certificate")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	if kcat, err := exec.LookPath("kcat"); err == nil {
		args := []string{"-b", addr, "-X", "security.protocol=ssl", "-X", "ssl.ca.location=" + pki.caFile(), "-m", "2", "-L", "-t", "mtls"}
		if out, err := exec.Command(kcat, args...).CombinedOutput(); err == nil {
			t.Fatalf("kcat without a client certificate listed the broker:\n%s", out)
		}
		args = append(args, "-X", "ssl.certificate.location="+filepath.Join(pki.dir, "app1.pem"), "-X", "ssl.key.location="+filepath.Join(pki.dir, "app1-key.pem"))
		if out, err := exec.Command(kcat, args...).CombinedOutput(); err != nil || !strings.Contains(string(out), `topic "mtls"`) {
			t.Fatalf("kcat with its client certificate: %v\n%s", err, out)
		}
	}
}

// TestAdminOverTLS: the admin listener serves HTTPS verified by the CA;
// with a client CA it requires a client certificate of that CA.
func TestAdminOverTLS(t *testing.T) {
	pki := newTestCA(t)
	get := func(addr string, conf *tls.Config) (string, error) {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}, Timeout: 10 * time.Second}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get("https://" + addr + "/readyz")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.Status + " " + string(b), nil
	}
	n := startTLSNode(t, nil, pki.server("admin", certs.ServerFiles{}))
	if out, err := get(n.AdminAddr(), &tls.Config{RootCAs: pki.pool}); err != nil || !strings.HasPrefix(out, "200") {
		t.Fatalf("GET https://…/readyz: %q, %v", out, err)
	}
	if _, err := get(n.AdminAddr(), &tls.Config{RootCAs: newTestCA(t).pool}); err == nil {
		t.Fatal("a client trusting another CA accepted the admin listener")
	}
	if resp, err := http.Get("http://" + n.AdminAddr() + "/readyz"); err == nil && resp.StatusCode == 200 {
		t.Fatal("the TLS admin listener answered plain HTTP")
	}

	m := startTLSNode(t, nil, pki.server("admin-mtls", certs.ServerFiles{ClientCA: pki.caFile()}))
	if _, err := get(m.AdminAddr(), &tls.Config{RootCAs: pki.pool}); err == nil {
		t.Fatal("mutual TLS: a client without a certificate got an answer")
	}
	stranger := newTestCA(t).client("ops", certs.Request{})
	if _, err := get(m.AdminAddr(), &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{stranger}}); err == nil {
		t.Fatal("mutual TLS: a client with another CA's certificate got an answer")
	}
	ops := pki.client("ops", certs.Request{})
	if out, err := get(m.AdminAddr(), &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{ops}}); err != nil || !strings.HasPrefix(out, "200") {
		t.Fatalf("mutual TLS with a valid certificate: %q, %v", out, err)
	}
}

// TestReloadTLS: after the files are replaced, ReloadTLS makes new
// connections get the new certificate (and a new client CA), while a
// reload from broken files fails, is reported, and keeps the old one.
func TestReloadTLS(t *testing.T) {
	pki := newTestCA(t)
	kafkaSrv := pki.server("kafka", certs.ServerFiles{})
	n := startTLSNode(t, kafkaSrv, pki.server("admin", certs.ServerFiles{}))
	served := func(addr string) string {
		t.Helper()
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pki.pool})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	kafka0, admin0 := served(n.KafkaAddr()), served(n.AdminAddr())
	open, err := tls.Dial("tcp", n.KafkaAddr(), &tls.Config{RootCAs: pki.pool})
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()

	pki.issue("kafka", certs.Request{CommonName: "node", Hosts: []string{"127.0.0.1"}})
	pki.issue("admin", certs.Request{CommonName: "node", Hosts: []string{"127.0.0.1"}})
	if err := n.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	kafka1, admin1 := served(n.KafkaAddr()), served(n.AdminAddr())
	if kafka1 == kafka0 || admin1 == admin0 {
		t.Fatalf("after the reload: kafka serves %s (was %s), admin %s (was %s)", kafka1, kafka0, admin1, admin0)
	}
	if got := open.ConnectionState().PeerCertificates[0].SerialNumber.String(); got != kafka0 {
		t.Fatal("an open connection's certificate changed")
	}

	// Broken files: the reload fails naming the listener, the Kafka
	// listener keeps its certificate and the admin one takes its new one.
	if err := os.WriteFile(filepath.Join(pki.dir, "kafka.pem"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	pki.issue("admin", certs.Request{CommonName: "node", Hosts: []string{"127.0.0.1"}})
	if err := n.ReloadTLS(); err == nil || !strings.Contains(err.Error(), "kafka TLS") {
		t.Fatalf("reload from a broken certificate: %v", err)
	}
	if got := served(n.KafkaAddr()); got != kafka1 {
		t.Fatalf("after a failed reload the Kafka listener serves %s, want %s", got, kafka1)
	}
	if got := served(n.AdminAddr()); got == admin1 {
		t.Fatal("the admin listener was not reloaded beside a failing one")
	}
}
