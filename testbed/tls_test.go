package testbed

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestTLSEndToEnd tries TLS as the README tells an operator to, with real
// processes: `ferry certs` makes a CA, the node's certificate and gw1's;
// a center whose mirror receiver takes edges by client certificate only
// (no token); an edge serving Kafka over TLS and mirroring over mutual
// TLS. Records produced over TLS at the edge reach the center. Then the
// node's certificate is reissued and the edge gets SIGHUP: it keeps
// running, and new Kafka connections get the new certificate.
func TestTLSEndToEnd(t *testing.T) {
	bin := ferryBinary(t)
	dir := filepath.Join(t.TempDir(), "certs")
	certs := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(bin, append([]string{"certs"}, append(args, "--dir", dir)...)...).CombinedOutput(); err != nil {
			t.Fatalf("ferry certs %v: %v\n%s", args, err, out)
		}
	}
	certs("init")
	certs("node", "--host", "localhost,127.0.0.1")
	certs("edge", "gw1")
	file := func(name string) string { return filepath.Join(dir, name) }

	center := startFull(t, t.TempDir(), "", "--mirror-tls-cert", file("node.pem"), "--mirror-tls-key", file("node-key.pem"),
		"--mirror-tls-client-ca", file("ca.pem"))
	edge := startEdge(t, t.TempDir(), "--kafka-tls-cert", file("node.pem"), "--kafka-tls-key", file("node-key.pem"),
		"--mirror-to", center.mirrorAddr, "--mirror-edge-id", "gw1",
		"--mirror-tls-ca", file("ca.pem"), "--mirror-tls-cert", file("edge-gw1.pem"), "--mirror-tls-key", file("edge-gw1-key.pem"))

	caPEM, err := os.ReadFile(file("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	const n = 300
	produceKafka(t, edge.kafkaAddr, "telemetry", n, 100, "tls", kgo.DialTLSConfig(&tls.Config{RootCAs: pool}))
	deadline := time.Now().Add(60 * time.Second)
	for {
		var got int64
		for _, end := range endsOf(t, center.kafkaAddr, "gw1.telemetry") {
			got += end
		}
		if got == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the center has %d of the %d records after 60 s", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}

	served := func() string {
		t.Helper()
		c, err := tls.Dial("tcp", edge.kafkaAddr, &tls.Config{RootCAs: pool})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := served()
	certs("node", "--host", "localhost,127.0.0.1")
	if err := edge.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); served() == before; {
		select {
		case err := <-edge.exited:
			t.Fatalf("ferry edge exited on SIGHUP: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("10 s after SIGHUP the edge still serves the old certificate")
		}
		time.Sleep(20 * time.Millisecond)
	}
	produceKafka(t, edge.kafkaAddr, "telemetry", 1, 100, "after-reload", kgo.DialTLSConfig(&tls.Config{RootCAs: pool}))
}
