package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ferry/edge/certs"
)

// TestCertsCommand: init makes a CA (and refuses to replace it), node a
// server certificate for its hosts, device and edge client certificates
// whose common name is the name given, all signed by the CA, keys 0600.
func TestCertsCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if code, _, errOut := ferry(t, "certs", "node", "--dir", dir); code != 1 || !strings.Contains(errOut, "ferry certs init") {
		t.Fatalf("node without a CA: exit %d, %s", code, errOut)
	}
	if code, out, errOut := ferry(t, "certs", "init", "--dir", dir); code != 0 || !strings.Contains(out, "ca.pem") {
		t.Fatalf("init: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := ferry(t, "certs", "init", "--dir", dir); code != 1 || !strings.Contains(errOut, "already") {
		t.Fatalf("init over a CA: exit %d, %s", code, errOut)
	}
	for _, args := range [][]string{
		{"node", "--host", "localhost,127.0.0.1,gw1.example"},
		{"device", "dev1"},
		{"edge", "gw1"},
	} {
		if code, out, errOut := ferry(t, append(append([]string{"certs"}, args...), "--dir", dir)...); code != 0 {
			t.Fatalf("certs %v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	if code, _, _ := ferry(t, "certs", "device", "../x", "--dir", dir); code != 2 {
		t.Errorf("a device name with a slash: exit %d, want 2", code)
	}
	pool, err := certs.LoadPool(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	load := func(name string) *x509.Certificate {
		t.Helper()
		key := filepath.Join(dir, name+"-key.pem")
		if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v (want mode 0600)", key, err)
		}
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".pem"), key)
		if err != nil {
			t.Fatal(err)
		}
		return pair.Leaf
	}
	node := load("node")
	for _, host := range []string{"localhost", "127.0.0.1", "gw1.example"} {
		if _, err := node.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("node certificate for %s: %v", host, err)
		}
	}
	for name, cn := range map[string]string{"device-dev1": "dev1", "edge-gw1": "gw1"} {
		c := load(name)
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil || c.Subject.CommonName != cn {
			t.Errorf("%s: common name %q, %v", name, c.Subject.CommonName, err)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "ca-key.pem")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("ca-key.pem: %v", err)
	}
}
