package mqtt

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// requireTool returns the path of an external program, skipping the test
// when it is missing on a developer's machine and failing it under CI=true,
// where `make test` must have installed it.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/" + name); serr == nil {
			return "/usr/sbin/" + name
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI=true (make deps installs it): %v", name, err)
		}
		t.Skipf("%s not installed (make deps installs it)", name)
	}
	return path
}

// mosquitto is a Debian mosquitto broker on a 127.0.0.1 port.
type mosquitto struct {
	addr string
	cmd  *exec.Cmd
}

func startMosquitto(t *testing.T, bin, addr string) *mosquitto {
	t.Helper()
	if addr == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = ln.Addr().String()
		ln.Close()
	}
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(conf, []byte("listener "+port+" 127.0.0.1\nallow_anonymous true\npersistence false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m := &mosquitto{addr: addr, cmd: cmd}
	t.Cleanup(m.kill)
	waitFor(t, "mosquitto to listen", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return m
}

func (m *mosquitto) kill() {
	if m.cmd.ProcessState == nil {
		m.cmd.Process.Kill()
		m.cmd.Wait()
	}
}

func mosquittoClient(t *testing.T, addr, id string) *paho.Client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: nc})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
	return c
}

// The bridge subscribes to a real Mosquitto and ingests what it receives
// through the rules, in order; when Mosquitto restarts, the bridge
// reconnects with backoff, subscribes again and goes on ingesting.
func TestBridgeFromMosquitto(t *testing.T) {
	bin := requireTool(t, "mosquitto")
	m := startMosquitto(t, bin, "")
	up := mosquittoClient(t, m.addr, "sensor-gw")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// A retained message is there before the bridge subscribes: its
	// arrival says the subscription is in place.
	if _, err := up.Publish(ctx, &paho.Publish{Topic: "factory/a/probe/telemetry", QoS: 1, Retain: true, Payload: []byte("probe")}); err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, "", func(o *Options) {
		o.Bridges = []Bridge{{Name: "mosq", URL: "mqtt://" + m.addr, Filters: []string{"factory/#"}}}
	})
	waitFor(t, "the retained probe to be bridged", func() bool { return b.count("telemetry") == 1 })
	for i := 0; i < 100; i++ {
		if _, err := up.Publish(ctx, &paho.Publish{Topic: "factory/a/dev1/telemetry", QoS: 1, Payload: fmt.Appendf(nil, "%d", i),
			Properties: &paho.PublishProperties{ContentType: "text/plain"}}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "100 bridged messages", func() bool { return b.count("telemetry") == 101 })

	// Mosquitto goes away and comes back on the same port.
	m.kill()
	waitFor(t, "the bridge to notice", func() bool { return testutilToFloat(b.srv.metrics.bridgeUp.WithLabelValues("mosq")) == 0 })
	m2 := startMosquitto(t, bin, m.addr)
	waitFor(t, "the bridge to reconnect", func() bool { return testutilToFloat(b.srv.metrics.bridgeUp.WithLabelValues("mosq")) == 1 })
	up2 := mosquittoClient(t, m2.addr, "sensor-gw")
	// Publish until the resubscription is in place, then a marker.
	waitFor(t, "the bridge to resubscribe", func() bool {
		up2.Publish(ctx, &paho.Publish{Topic: "factory/a/probe/telemetry", QoS: 1, Payload: []byte("probe")})
		return b.count("telemetry") > 101
	})
	if _, err := up2.Publish(ctx, &paho.Publish{Topic: "factory/a/dev1/telemetry", QoS: 1, Payload: []byte("after")}); err != nil {
		t.Fatal(err)
	}
	var dev1 []string
	waitFor(t, "the message published after the restart", func() bool {
		dev1 = dev1[:0]
		for _, rs := range b.records(t, "telemetry") {
			for _, r := range rs {
				if string(r.Key) == "dev1" {
					dev1 = append(dev1, string(r.Value))
					if cid, _ := header(r, HeaderClientID); cid != "bridge:mosq" {
						t.Fatalf("client id header %q", cid)
					}
					if ct, _ := header(r, HeaderContentType); ct != "text/plain" && string(r.Value) != "after" {
						t.Fatalf("content type header %q", ct)
					}
				}
			}
		}
		return len(dev1) == 101
	})
	for i := 0; i < 100; i++ {
		if dev1[i] != fmt.Sprint(i) {
			t.Fatalf("bridged out of order at %d: %v", i, dev1[:i+1])
		}
	}
	if dev1[100] != "after" {
		t.Fatalf("last %q", dev1[100])
	}
}
