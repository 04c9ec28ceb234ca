package testbed

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// TestMQTTQueuedSessionsSurviveKill9AndRestart: three persistent sessions
// (mosquitto_sub -c over MQTT 3.1.1, mosquitto_sub -c -x over MQTT 5, and
// paho.golang with a session expiry) are offline while 20 QoS 1 messages
// are published to each; `ferry edge` is killed with SIGKILL, restarted,
// stopped gracefully and started again. Each session then gets its 20
// messages in publish order, and on the next connect at most the tail its
// client had not acknowledged when it left (strictly once with a client
// that acknowledges before leaving: TestQueuedMessagesSurviveRestartInOrder
// in ingest/mqtt).
func TestMQTTQueuedSessionsSurviveKill9AndRestart(t *testing.T) {
	msub := requireTool(t, "mosquitto_sub")
	dir := t.TempDir()
	p := startEdge(t, dir)
	const n = 20
	subs := []struct{ id, version string }{{"q-v311", "mqttv311"}, {"q-v5", "mqttv5"}}
	for _, s := range subs {
		if out, err := mosquittoSub(msub, p.mqttAddr, s.id, s.version, "-E"); err != nil {
			t.Fatalf("%s: making the session: %v %s", s.id, err, out)
		}
	}
	pahoSession(t, p.mqttAddr, "q-paho", true).Disconnect(&paho.Disconnect{})

	pub := device(t, p.mqttAddr, "q-pub", true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, id := range []string{"q-v311", "q-v5", "q-paho"} {
		for i := 1; i <= n; i++ {
			if _, err := pub.Publish(ctx, &paho.Publish{Topic: "q/" + id, QoS: 1, Payload: []byte(fmt.Sprint(i))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	pub.Disconnect(&paho.Disconnect{})
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p = startEdge(t, dir)
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-p.exited; err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	p = startEdge(t, dir)

	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprint(i + 1)
	}
	for _, s := range subs {
		out, err := mosquittoSub(msub, p.mqttAddr, s.id, s.version, "-C", fmt.Sprint(n), "-W", "20")
		if err != nil {
			t.Fatalf("%s: %v %s", s.id, err, out)
		}
		if got := strings.Fields(out); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s (%s) got %v, want %v", s.id, s.version, got, want)
		}
		// mosquitto_sub -C exits without acknowledging the last messages
		// it printed (Mosquitto itself then redelivers them too): the next
		// connect may get a tail of the queue again, in order, nothing else.
		out, _ = mosquittoSub(msub, p.mqttAddr, s.id, s.version, "-W", "1")
		if again := strings.Fields(out); len(again) > 0 && fmt.Sprint(again) != fmt.Sprint(want[n-len(again):]) {
			t.Errorf("%s: the next connect got %v, not a tail of the unacknowledged queue", s.id, again)
		}
	}
	var got []string
	c := pahoSession(t, p.mqttAddr, "q-paho", false)
	waitFor(t, "paho's 20 queued messages", func() bool { got = pahoGot(c); return len(got) >= n })
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("q-paho got %v, want %v", got, want)
	}
}

func mosquittoSub(bin, addr, id, version string, extra ...string) (string, error) {
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"-h", host, "-p", port, "-V", version, "-c", "-i", id, "-q", "1", "-t", "q/" + id}
	if version == "mqttv5" {
		args = append(args, "-x", "3600")
	}
	out, err := exec.Command(bin, append(args, extra...)...).Output()
	return string(out), err
}

// pahoClient is a paho.golang session that records what it receives.
type pahoClient struct {
	*paho.Client
	mu  sync.Mutex
	got []string
}

var pahoClients sync.Map // *paho.Client → *pahoClient

func pahoGot(c *paho.Client) []string {
	v, _ := pahoClients.Load(c)
	pc := v.(*pahoClient)
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return append([]string(nil), pc.got...)
}

// pahoSession connects a persistent MQTT 5 session (expiry one hour),
// subscribing to q/{id} at QoS 1 when subscribe is set (a resumed session
// has the subscription).
func pahoSession(t *testing.T, addr, id string, subscribe bool) *paho.Client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	pc := &pahoClient{}
	c := paho.NewClient(paho.ClientConfig{Conn: nc, PacketTimeout: 30 * time.Second,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			pc.mu.Lock()
			pc.got = append(pc.got, string(pr.Packet.Payload))
			pc.mu.Unlock()
			return true, nil
		}}})
	pc.Client = c
	pahoClients.Store(c, pc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	expiry := uint32(3600)
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: false, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}); err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
	if !subscribe {
		return c
	}
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "q/" + id, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	return c
}
