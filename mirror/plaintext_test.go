package mirror

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An edge speaking plaintext to a center that serves TLS is told the
// center may require TLS, not only "EOF".
func TestPlaintextEdgeToTLSCenterSaysSo(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake() // fails: the first record is not TLS
			c.Close()
		}
	}()
	dir := t.TempDir()
	s, err := NewSender(SenderOptions{Log: openLog(t, filepath.Join(dir, "log")), StatePath: filepath.Join(dir, "mirror.db"),
		Center: ln.Addr().String(), EdgeID: "gw1", Token: "s3cret", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "a failed session", func() bool { return s.Status().Failures >= 1 })
	if e := s.Status().LastError; e == nil || !strings.Contains(e.Message, "may require TLS") || !strings.Contains(e.Message, "--mirror-tls-ca") {
		t.Fatalf("last error %+v: want it to say the center may require TLS", e)
	}
}
