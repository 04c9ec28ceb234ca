package edge

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

func TestLoopbackOnly(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "localhost:8080": true, "[::1]:8080": true, "127.0.0.2:1": true,
		":8080": false, "0.0.0.0:8080": false, "[::]:8080": false, "10.0.0.5:8080": false, "gw1:8080": false, "nonsense": false,
	} {
		if got := loopbackOnly(addr); got != want {
			t.Errorf("loopbackOnly(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestAdminBeyondLoopbackNeedsToken: the admin API, which can add devices
// and change their passwords, does not serve beyond loopback without a
// token unless told to, and never while clients must authenticate.
func TestAdminBeyondLoopbackNeedsToken(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want []string // in the error
	}{
		{"no token", Options{}, []string{"--admin-token", "--admin-insecure-open", "127.0.0.1"}},
		{"registry auth, opted out", Options{AdminInsecureOpen: true, AuthMode: AuthRegistry, MQTTAddr: "127.0.0.1:0"}, []string{"--admin-token", "--auth registry"}},
		{"kafka sasl, opted out", Options{AdminInsecureOpen: true, KafkaAddr: "127.0.0.1:0", KafkaSASL: []string{"PLAIN"}}, []string{"--admin-token", "--kafka-sasl"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.DataDir, o.AdminAddr, o.Logger = t.TempDir(), "0.0.0.0:0", slog.New(slog.DiscardHandler)
			n, err := Start(o)
			if err == nil {
				n.Close()
				t.Fatal("the node started with an open admin API")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// openWarnings starts a node with opts on 127.0.0.1, every address counted
// as beyond loopback, and returns the node's warnings about open listeners
// (listener → the flag that closes it) and whether it logged the opt-out.
func openWarnings(t *testing.T, opts Options) (map[string]string, bool) {
	t.Helper()
	var buf syncBuffer
	opts.DataDir, opts.AdminAddr = t.TempDir(), "127.0.0.1:0"
	opts.Logger = slog.New(slog.NewJSONHandler(&buf, nil))
	opts.loopback = func(string) bool { return false }
	n, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	warned, optOut := map[string]string{}, false
	for _, line := range strings.Split(buf.b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		msg, _ := m["msg"].(string)
		if strings.HasPrefix(msg, "listener open to the network without authentication") {
			l, _ := m["listener"].(string)
			if _, dup := warned[l]; dup {
				t.Errorf("listener %s warned about twice", l)
			}
			warned[l], _ = m["close_with"].(string)
		}
		if strings.HasPrefix(msg, "--admin-insecure-open") && m["level"] == "ERROR" {
			optOut = true
		}
	}
	return warned, optOut
}

// TestOpenListenersWarned: every listener open beyond loopback without
// authentication is warned about once at start, with the flag that closes
// it; an authenticated one is not.
func TestOpenListenersWarned(t *testing.T) {
	warned, optOut := openWarnings(t, Options{AdminInsecureOpen: true, KafkaAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", MQTTWSAddr: "127.0.0.1:0"})
	want := map[string]string{"kafka": "--kafka-sasl", "mqtt": "--auth registry", "mqtt-ws": "--auth registry", "admin": "--admin-token"}
	if len(warned) != len(want) {
		t.Errorf("warned about %v, want %v", warned, want)
	}
	for l, flag := range want {
		if warned[l] != flag {
			t.Errorf("listener %s: close_with %q, want %q", l, warned[l], flag)
		}
	}
	if !optOut {
		t.Error("--admin-insecure-open was not logged at error level")
	}

	warned, optOut = openWarnings(t, Options{AdminToken: "t0ken", AuthMode: AuthRegistry, KafkaSASL: []string{"PLAIN"},
		KafkaAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0"})
	if len(warned) != 0 || optOut {
		t.Errorf("authenticated listeners warned about: %v (opt-out logged: %v)", warned, optOut)
	}

	// Mutual TLS authenticates too: no token needed, nothing to warn of.
	mtls := &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert}
	warned, optOut = openWarnings(t, Options{AdminTLS: mtls, KafkaTLS: mtls, KafkaAddr: "127.0.0.1:0"})
	if len(warned) != 0 || optOut {
		t.Errorf("listeners under mutual TLS warned about: %v (opt-out logged: %v)", warned, optOut)
	}
}

// TestLoopbackListenersNotWarned: on loopback, nothing is open to the network.
func TestLoopbackListenersNotWarned(t *testing.T) {
	var buf syncBuffer
	n, err := Start(Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	if s := buf.b.String(); strings.Contains(s, "without authentication") {
		t.Errorf("loopback listeners warned about:\n%s", s)
	}
}
