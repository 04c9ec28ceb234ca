package certs

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestIssueAndSave: a CA saved and loaded again signs server and client
// certificates that verify against it for what they are for, with their
// hosts; keys are written 0600; a CA already there is not replaced.
func TestIssueAndSave(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	ca, err := NewCA("test CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(dir); err == nil || !strings.Contains(err.Error(), "already") {
		t.Fatalf("saving a second CA over the first: %v", err)
	}
	ca, err = LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"ca-key.pem": 0o600, "ca.pem": 0o644} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode().Perm() != mode {
			t.Fatalf("%s: %v, mode %v, want %v", name, err, st.Mode().Perm(), mode)
		}
	}
	pool, err := LoadPool(filepath.Join(dir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(Request{CommonName: "node", Hosts: []string{"localhost", "127.0.0.1"}, Kind: ServerCert})
	if err != nil {
		t.Fatal(err)
	}
	server := parse(t, certPEM, keyPEM)
	for _, host := range []string{"localhost", "127.0.0.1"} {
		if _, err := server.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("server certificate for %s: %v", host, err)
		}
	}
	if _, err := server.Verify(x509.VerifyOptions{Roots: pool, DNSName: "other.example"}); err == nil {
		t.Error("the server certificate verifies for a host it does not name")
	}
	if d := time.Until(server.NotAfter); d < DefaultValidity-2*time.Hour {
		t.Errorf("valid for %v more, want about %v", d, DefaultValidity)
	}
	certPEM, keyPEM, err = ca.Issue(Request{CommonName: "gw1", Kind: ClientCert})
	if err != nil {
		t.Fatal(err)
	}
	client := parse(t, certPEM, keyPEM)
	if _, err := client.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil || client.Subject.CommonName != "gw1" {
		t.Errorf("client certificate %q: %v", client.Subject.CommonName, err)
	}
	if err := WritePair(dir, "../escape", certPEM, keyPEM); err == nil {
		t.Error("WritePair wrote outside its directory")
	}
}

func parse(t *testing.T, certPEM, keyPEM []byte) *x509.Certificate {
	t.Helper()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair.Leaf
}

// TestServerReload: Reload takes the files' new certificate; a reload
// from broken files fails and keeps the certificate loaded before.
func TestServerReload(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("test CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	issue := func() {
		certPEM, keyPEM, err := ca.Issue(Request{CommonName: "node", Hosts: []string{"127.0.0.1"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := WritePair(dir, "node", certPEM, keyPEM); err != nil {
			t.Fatal(err)
		}
	}
	issue()
	files := ServerFiles{Name: "kafka", Cert: filepath.Join(dir, "node.pem"), Key: filepath.Join(dir, "node-key.pem")}
	s, err := NewServer(files)
	if err != nil {
		t.Fatal(err)
	}
	first := s.Leaf().SerialNumber
	issue()
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	second := s.Leaf().SerialNumber
	if second.Cmp(first) == 0 {
		t.Fatal("Reload kept the old certificate")
	}
	if err := os.WriteFile(files.Key, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "kafka TLS") {
		t.Fatalf("Reload of a broken key: %v", err)
	}
	if s.Leaf().SerialNumber.Cmp(second) != 0 {
		t.Fatal("a failed Reload changed the certificate")
	}
	conf, err := s.Config().GetConfigForClient(&tls.ClientHelloInfo{})
	if err != nil || conf.Certificates[0].Leaf.SerialNumber.Cmp(second) != 0 {
		t.Fatalf("the listener's configuration after a failed reload: %v", err)
	}

	if _, err := NewServer(ServerFiles{Name: "mqtt", ClientCA: "ca.pem"}); err == nil {
		t.Error("a client CA without a certificate was taken")
	}
	if s, err := NewServer(ServerFiles{Name: "mqtt"}); s != nil || err != nil {
		t.Errorf("no files: %v, %v; want nil, nil", s, err)
	}
}
