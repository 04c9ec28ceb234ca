package edge

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"ferry/devices"
	"ferry/ingest/mqtt"
	flog "ferry/log"
)

func mqttConnect(t *testing.T, addr string, cp *paho.Connect) (*paho.Client, *paho.Connack, error) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: nc})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cp.KeepAlive = 30
	ack, err := c.Connect(ctx, cp)
	if err != nil {
		nc.Close()
		return nil, ack, err
	}
	return c, ack, nil
}

// TestMQTTWithDeviceRegistry runs the node with --auth registry over a
// registry made beforehand (as `ferry devices add` does): passwords,
// disabled devices and {device} ACLs are enforced, and presence is kept in
// the registry and appended to the presence topic.
func TestMQTTWithDeviceRegistry(t *testing.T) {
	dir := t.TempDir()
	reg, err := devices.Open(filepath.Join(dir, devices.FileName), devices.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	acl := devices.ACL{Publish: []string{"factory/+/{device}/#"}, Subscribe: []string{"factory/+/{device}/#"}}
	for _, d := range []devices.Device{{ID: "dev1", Enabled: true, ACL: acl}, {ID: "dev2", Enabled: false, ACL: acl}} {
		if err := reg.Add(d, "secret-"+d.ID); err != nil {
			t.Fatal(err)
		}
	}
	reg.Close()

	n, err := Start(Options{DataDir: dir, AdminAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", AuthMode: AuthRegistry,
		MQTT: mqtt.Options{Rules: []mqtt.Rule{{Filter: "factory/+site/+device/telemetry", Topic: "telemetry", Key: "{device}"}},
			PresenceTopic: "__devices"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	addr := n.MQTTAddrs()[0]

	for _, tc := range []struct {
		user, pass string
		reason     byte
	}{{"dev1", "wrong", 0x86}, {"nobody", "secret-dev1", 0x86}, {"dev2", "secret-dev2", 0x87}} {
		if _, ack, err := mqttConnect(t, addr, &paho.Connect{ClientID: tc.user, Username: tc.user, UsernameFlag: true,
			Password: []byte(tc.pass), PasswordFlag: true, CleanStart: true}); err == nil || ack == nil || ack.ReasonCode != tc.reason {
			t.Errorf("%s/%s: connack %+v err %v, want reason %#x", tc.user, tc.pass, ack, err, tc.reason)
		}
	}

	c, _, err := mqttConnect(t, addr, &paho.Connect{ClientID: "dev1", Username: "dev1", UsernameFlag: true,
		Password: []byte("secret-dev1"), PasswordFlag: true, CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Publish(ctx, &paho.Publish{Topic: "factory/lyon/dev1/telemetry", QoS: 1, Payload: []byte("21.5")}); err != nil {
		t.Fatalf("own topic: %v", err)
	}
	if resp, err := c.Publish(ctx, &paho.Publish{Topic: "factory/lyon/dev2/telemetry", QoS: 1, Payload: []byte("spoof")}); err == nil || resp == nil || resp.ReasonCode != 0x87 {
		t.Errorf("another device's topic: %+v %v, want PUBACK 0x87", resp, err)
	}
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "factory/#", QoS: 1}}}); err == nil {
		t.Error("subscription to factory/# allowed by an ACL of factory/+/{device}/#")
	}
	p, err := n.devices.Presence("dev1")
	if err != nil || !p.Online || p.MessagesIn != 1 || p.BytesIn != 4 {
		t.Errorf("presence while connected: %+v %v", p, err)
	}
	c.Disconnect(&paho.Disconnect{})
	waitUntil(t, "dev1 offline", func() bool { p, _ := n.devices.Presence("dev1"); return !p.Online })

	part, err := n.Log().Partition("__devices", 0)
	if err != nil {
		t.Fatal(err)
	}
	// The registry marks the device offline before the disconnect event
	// is appended: wait for the event too.
	waitUntil(t, "the disconnect event", func() bool { return part.EndOffset() >= 2 })
	rr, err := part.Read(0, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	for data := rr.Data; len(data) > 0; {
		h, err := flog.ParseBatch(data)
		if err != nil {
			t.Fatal(err)
		}
		_, recs, _ := flog.DecodeRecords(data[:h.Length])
		for _, r := range recs {
			var ev struct{ Event, Device string }
			if err := json.Unmarshal(r.Value, &ev); err != nil || string(r.Key) != ev.Device {
				t.Fatalf("presence record %s key %s: %v", r.Value, r.Key, err)
			}
			events = append(events, ev.Event+" "+ev.Device)
		}
		data = data[h.Length:]
	}
	if len(events) != 2 || events[0] != "connect dev1" || events[1] != "disconnect dev1" {
		t.Errorf("presence topic holds %v, want connect and disconnect of dev1", events)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate for one common name.
type testPKI struct {
	pool   *x509.CertPool
	server tls.Certificate
	client tls.Certificate
}

func newTestPKI(t *testing.T, clientCN string) testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ferry test CA"}, IsCA: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) tls.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return testPKI{pool: pool, server: leaf(2, "127.0.0.1", x509.ExtKeyUsageServerAuth), client: leaf(3, clientCN, x509.ExtKeyUsageClientAuth)}
}

// TestMQTTOverMutualTLS: a device registered by certificate connects over
// TLS with its client certificate and no password; its identity (and so
// its ACL) is the certificate's. A client without a certificate is refused
// at the handshake.
func TestMQTTOverMutualTLS(t *testing.T) {
	dir := t.TempDir()
	pki := newTestPKI(t, "sensor-42.example")
	reg, err := devices.Open(filepath.Join(dir, devices.FileName), devices.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Add(devices.Device{ID: "sensor42", Enabled: true, CertCN: "sensor-42.example",
		ACL: devices.ACL{Publish: []string{"factory/+/{device}/#"}}}, ""); err != nil {
		t.Fatal(err)
	}
	reg.Close()
	n, err := Start(Options{DataDir: dir, AdminAddr: "127.0.0.1:0", MQTTTLSAddr: "127.0.0.1:0", AuthMode: AuthRegistry,
		MQTTTLS: &tls.Config{Certificates: []tls.Certificate{pki.server}, ClientCAs: pki.pool, ClientAuth: tls.RequireAndVerifyClientCert},
		Logger:  slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	addr := n.MQTTAddrs()[0]

	dial := func(certs []tls.Certificate) (*paho.Client, error) {
		tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pki.pool, Certificates: certs, ServerName: "127.0.0.1"})
		if err != nil {
			return nil, err
		}
		c := paho.NewClient(paho.ClientConfig{Conn: packetsThreadSafe(tc)})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.Connect(ctx, &paho.Connect{ClientID: "sensor42", CleanStart: true, KeepAlive: 30}); err != nil {
			tc.Close()
			return nil, err
		}
		return c, nil
	}
	c, err := dial([]tls.Certificate{pki.client})
	if err != nil {
		t.Fatalf("device with its certificate: %v", err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Publish(ctx, &paho.Publish{Topic: "factory/x/sensor42/telemetry", QoS: 1, Payload: []byte("1")}); err != nil {
		t.Fatalf("publish under the certificate's identity: %v", err)
	}
	if resp, err := c.Publish(ctx, &paho.Publish{Topic: "factory/x/other/telemetry", QoS: 1, Payload: []byte("1")}); err == nil || resp.ReasonCode != 0x87 {
		t.Errorf("publish outside the ACL: %+v %v", resp, err)
	}
	if _, err := dial(nil); err == nil {
		t.Error("a client without a certificate was accepted")
	}
}

// TestMQTTOverWebSocket publishes through the WebSocket listener with
// autopaho's ws:// transport.
func TestMQTTOverWebSocket(t *testing.T) {
	n, err := Start(Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", MQTTWSAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
		MQTT: mqtt.Options{Rules: []mqtt.Rule{{Filter: "factory/+site/+device/telemetry", Topic: "telemetry", Key: "{device}"}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	u, _ := url.Parse("ws://" + n.MQTTWSAddr() + "/mqtt")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{ServerUrls: []*url.URL{u}, KeepAlive: 30,
		CleanStartOnInitialConnection: true, ReconnectBackoff: autopaho.NewConstantBackoff(100 * time.Millisecond),
		ClientConfig: paho.ClientConfig{ClientID: "wsdev"}})
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Disconnect(context.Background())
	if err := cm.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cm.Publish(ctx, &paho.Publish{Topic: "factory/x/wsdev/telemetry", QoS: 1, Payload: []byte("via ws")}); err != nil {
		t.Fatal(err)
	}
	part, err := n.Log().Partition("telemetry", 0)
	if err != nil {
		t.Fatalf("no telemetry topic: %v", err)
	}
	if part.EndOffset() != 1 {
		t.Fatalf("%d records, want 1", part.EndOffset())
	}
}

// packetsThreadSafe: paho writes from several goroutines, which a
// tls.Conn does not allow.
func packetsThreadSafe(c net.Conn) net.Conn { return packets.NewThreadSafeConn(c) }

// TestACLChangesReachConnectedSubscribers: the registry's subscribe ACL is
// asked before every delivery, so a device whose ACL is narrowed
// (SetACL) or who is disabled stops receiving what it may no longer see,
// on the connection it has.
func TestACLChangesReachConnectedSubscribers(t *testing.T) {
	dir := t.TempDir()
	n, err := Start(Options{DataDir: dir, AdminAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", AuthMode: AuthRegistry,
		MQTT: mqtt.Options{DefaultTopic: "mqtt"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	reg := n.devices
	if err := reg.Add(devices.Device{ID: "dev1", Enabled: true, ACL: devices.ACL{Subscribe: []string{"factory/+/{device}/#"}}}, "pw1"); err != nil {
		t.Fatal(err)
	}
	if err := reg.Add(devices.Device{ID: "pub", Enabled: true, ACL: devices.ACL{Publish: []string{"factory/#"}}}, "pw2"); err != nil {
		t.Fatal(err)
	}
	addr := n.MQTTAddrs()[0]
	got := make(chan string, 16)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	sub := paho.NewClient(paho.ClientConfig{Conn: nc, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			got <- pr.Packet.Topic + " " + string(pr.Packet.Payload)
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := sub.Connect(ctx, &paho.Connect{ClientID: "dev1", Username: "dev1", UsernameFlag: true, Password: []byte("pw1"),
		PasswordFlag: true, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	defer sub.Disconnect(&paho.Disconnect{})
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "factory/+/dev1/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	pub, _, err := mqttConnect(t, addr, &paho.Connect{ClientID: "pub", Username: "pub", UsernameFlag: true, Password: []byte("pw2"),
		PasswordFlag: true, CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Disconnect(&paho.Disconnect{})
	publish := func(topic, payload string) {
		t.Helper()
		// QoS 1: the PUBACK comes after the delivery was attempted.
		if _, err := pub.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}); err != nil {
			t.Fatal(err)
		}
	}
	next := func() string {
		t.Helper()
		select {
		case s := <-got:
			return s
		case <-ctx.Done():
			t.Fatal("nothing received")
			return ""
		}
	}

	publish("factory/a/dev1/telemetry", "1")
	if s := next(); s != "factory/a/dev1/telemetry 1" {
		t.Fatalf("received %q", s)
	}
	if err := reg.SetACL("dev1", nil, []string{"factory/+/{device}/status"}); err != nil {
		t.Fatal(err)
	}
	publish("factory/a/dev1/telemetry", "2")
	publish("factory/a/dev1/status", "3")
	if s := next(); s != "factory/a/dev1/status 3" {
		t.Fatalf("after SetACL narrowed it: received %q", s)
	}
	if err := reg.SetEnabled("dev1", false); err != nil {
		t.Fatal(err)
	}
	publish("factory/a/dev1/status", "4")
	if err := reg.SetEnabled("dev1", true); err != nil {
		t.Fatal(err)
	}
	publish("factory/a/dev1/status", "5")
	if s := next(); s != "factory/a/dev1/status 5" {
		t.Fatalf("while disabled: received %q", s)
	}
}
