package mqtt

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// tableAuth is a small Authenticator: devices with passwords, a disabled
// one, publish/subscribe prefixes per device, and a publish budget.
type tableAuth struct {
	passwords map[string]string
	disabled  map[string]bool
	budget    atomic.Int64 // publishes allowed before Allow says no; <0: unlimited
	calls     atomic.Int64 // Authenticate calls
	narrowed  sync.Map     // device → true: its subscribe ACL now allows only its status topics
	revoked   sync.Map     // device → true: disabled since it connected (every subscribe check fails)
}

func newTableAuth() *tableAuth {
	a := &tableAuth{passwords: map[string]string{"dev1": "pw1", "dev2": "pw2", "off": "pw"}, disabled: map[string]bool{"off": true}}
	a.budget.Store(-1)
	return a
}

func (a *tableAuth) Authenticate(username string, password []byte, certCN string) (string, error) {
	a.calls.Add(1)
	pw, ok := a.passwords[username]
	if !ok || pw != string(password) {
		return "", ErrBadCredentials
	}
	if a.disabled[username] {
		return "", fmt.Errorf("%w: disabled", ErrNotAuthorized)
	}
	return username, nil
}

// A device may publish and subscribe under factory/<anything>/<itself>/.
func (a *tableAuth) CanPublish(device, topic string) bool {
	l := strings.Split(topic, "/")
	return len(l) >= 4 && l[0] == "factory" && l[2] == device
}

func (a *tableAuth) CanSubscribe(device, filter string) bool {
	if _, ok := a.revoked.Load(device); ok {
		return false
	}
	l := strings.Split(filter, "/")
	if _, ok := a.narrowed.Load(device); ok && (len(l) != 4 || l[3] != "status") {
		return false
	}
	return len(l) >= 3 && l[0] == "factory" && l[1] != "#" && l[2] == device
}

func (a *tableAuth) Allow(string) bool {
	for {
		b := a.budget.Load()
		if b < 0 {
			return true
		}
		if b == 0 {
			return false
		}
		if a.budget.CompareAndSwap(b, b-1) {
			return true
		}
	}
}

func TestConnectAuthentication(t *testing.T) {
	b := startBroker(t, "", func(o *Options) { o.Auth = newTableAuth() })
	for _, tc := range []struct {
		name, id, user, pass string
		v5, v3               byte // CONNACK reason (v5) / return code (3.1.1)
		result               string
	}{
		{"good password", "dev1", "dev1", "pw1", 0x00, 0x00, "accepted"},
		{"empty client id takes an assigned one", "", "dev1", "pw1", 0x00, 0x00, "accepted"},
		{"wrong password", "dev1", "dev1", "nope", 0x86, 0x04, "bad_credentials"},
		{"unknown device", "ghost", "ghost", "pw1", 0x86, 0x04, "bad_credentials"},
		{"no credentials", "dev1", "", "", 0x86, 0x04, "bad_credentials"},
		{"disabled device", "off", "off", "pw", 0x87, 0x05, "not_authorized"},
		{"another device's client id", "dev2", "dev1", "pw1", 0x85, 0x02, "bad_client_id"},
	} {
		for _, version := range []byte{4, 5} {
			t.Run(fmt.Sprintf("%s/v%d", tc.name, version), func(t *testing.T) {
				before := testutilCount(b, tc.result)
				rc := dialRaw(t, b.addr, version)
				ack := rc.connect(connectOpts{id: tc.id, user: tc.user, pass: tc.pass, clean: true})
				want := tc.v5
				if version == 4 {
					want = tc.v3
				}
				if ack.ReasonCode != want {
					t.Fatalf("CONNACK %#x, want %#x", ack.ReasonCode, want)
				}
				if got := testutilCount(b, tc.result) - before; got != 1 {
					t.Errorf("connects{result=%q} rose by %v", tc.result, got)
				}
				if want != 0 {
					if _, closed := rc.closed(); !closed {
						t.Error("refused connection left open")
					}
				}
			})
		}
	}
}

// An ACL refusal of a QoS 1 publish is a PUBACK "not authorized" under
// MQTT 5; MQTT 3.1.1 cannot say it, so the device gets the positive PUBACK
// its spec requires and the message is dropped. Either way nothing is
// stored and the refusal is counted. Wildcard tricks do not widen an ACL.
func TestPublishACL(t *testing.T) {
	b := startBroker(t, "", func(o *Options) { o.Auth = newTableAuth() })
	for _, version := range []byte{4, 5} {
		rc := dialRaw(t, b.addr, version)
		rc.connect(connectOpts{id: "dev1", user: "dev1", pass: "pw1", clean: true})
		rc.publish("factory/a/dev2/telemetry", []byte("spoof"), 1, 1, false)
		ack := rc.expect(packets.Puback)
		want := byte(0x87)
		if version == 4 {
			want = 0
		}
		if ack.PacketID != 1 || ack.ReasonCode != want {
			t.Errorf("v%d: PUBACK id %d reason %#x, want reason %#x", version, ack.PacketID, ack.ReasonCode, want)
		}
		rc.publish("factory/a/dev1/telemetry", []byte("mine"), 1, 2, false)
		if ack := rc.expect(packets.Puback); ack.ReasonCode != 0 {
			t.Errorf("v%d: own topic refused: %#x", version, ack.ReasonCode)
		}
		rc.publish("factory/a/dev2/telemetry", []byte("q0"), 0, 0, false)
	}
	if got := b.count("telemetry"); got != 2 {
		t.Errorf("%d records stored, want only the 2 own-topic publishes", got)
	}
	defer func() {
		if got := b.count("telemetry"); got != 2 {
			t.Errorf("%d records stored in the end, want 2", got)
		}
	}()
	// Two QoS 1 and two QoS 0 refusals; QoS 0 has no answer to wait for.
	// Three were dropped silently: the MQTT 5 QoS 1 one was told.
	waitFor(t, "four refusals counted", func() bool {
		return b.publishes("1", resultNotAuthorized) == 2 && b.publishes("0", resultNotAuthorized) == 2 &&
			b.srv.Dropped()["not_authorized"] == 3
	})

	rc := dialRaw(t, b.addr, 5)
	rc.connect(connectOpts{id: "dev1", user: "dev1", pass: "pw1", clean: true})
	for i, f := range []string{"factory/#", "factory/+/dev2/#", "#", "+/+/dev1/#", "factory/a/dev1/#"} {
		ack := rc.subscribe(f, 1, uint16(10+i))
		allowed := f == "factory/a/dev1/#"
		if got := len(ack.ReasonCodes) == 1 && ack.ReasonCodes[0] < 0x80; got != allowed {
			t.Errorf("subscribe %q: reason codes %v, allowed=%v", f, ack.ReasonCodes, allowed)
		}
	}
}

// Over its publish rate an MQTT 5 device gets PUBACK "quota exceeded" and
// the message is not stored.
func TestRateLimit(t *testing.T) {
	auth := newTableAuth()
	b := startBroker(t, "", func(o *Options) { o.Auth = auth })
	rc := dialRaw(t, b.addr, 5)
	rc.connect(connectOpts{id: "dev1", user: "dev1", pass: "pw1", clean: true})
	auth.budget.Store(2)
	var codes []byte
	for i := uint16(1); i <= 4; i++ {
		rc.publish("factory/a/dev1/telemetry", []byte{byte(i)}, 1, i, false)
		codes = append(codes, rc.expect(packets.Puback).ReasonCode)
	}
	if fmt.Sprint(codes) != fmt.Sprint([]byte{0, 0, 0x97, 0x97}) {
		t.Errorf("PUBACK reasons %v, want two successes then quota exceeded", codes)
	}
	if got := b.count("telemetry"); got != 2 {
		t.Errorf("%d stored, want 2", got)
	}
	if got := b.publishes("1", resultRateLimited); got != 2 {
		t.Errorf("rate_limited = %v", got)
	}
}

func testutilCount(b *testBroker, result string) float64 {
	return testutilToFloat(b.srv.metrics.connects.WithLabelValues(result))
}
