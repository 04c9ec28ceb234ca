package edge

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"ferry/ingest/mqtt"
)

// mqtt311 is a bare MQTT 3.1.1 client: CONNECT, then QoS 1 PUBLISHes, each
// waiting for its PUBACK (3.1.1 has no negative PUBACK: a failed publish
// closes the connection).
type mqtt311 struct {
	c  net.Conn
	r  *bufio.Reader
	id uint16
}

func mqttString(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

func dial311(t *testing.T, addr, clientID string) *mqtt311 {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	body := append(mqttString("MQTT"), 4, 0x02, 0, 30) // level 4, clean session, keep alive 30 s
	body = append(body, mqttString(clientID)...)
	m := &mqtt311{c: c, r: bufio.NewReader(c)}
	if _, err := c.Write(append([]byte{0x10, byte(len(body))}, body...)); err != nil {
		t.Fatal(err)
	}
	typ, rest := m.read(t)
	if typ != 0x20 || len(rest) != 2 || rest[1] != 0 {
		t.Fatalf("CONNACK: type %#x %v", typ, rest)
	}
	return m
}

// read reads one packet (whose remaining length fits in one byte).
func (m *mqtt311) read(t *testing.T) (byte, []byte) {
	t.Helper()
	m.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hdr [2]byte
	if _, err := io.ReadFull(m.r, hdr[:]); err != nil {
		t.Fatalf("reading a packet: %v (the connection was closed)", err)
	}
	rest := make([]byte, hdr[1])
	if _, err := io.ReadFull(m.r, rest); err != nil {
		t.Fatal(err)
	}
	return hdr[0] & 0xf0, rest
}

func (m *mqtt311) publish(t *testing.T, topic, payload string) {
	t.Helper()
	m.id++
	body := append(mqttString(topic), byte(m.id>>8), byte(m.id))
	body = append(body, payload...)
	if _, err := m.c.Write(append([]byte{0x32, byte(len(body))}, body...)); err != nil {
		t.Fatal(err)
	}
	typ, rest := m.read(t)
	if typ != 0x40 || len(rest) != 2 || uint16(rest[0])<<8|uint16(rest[1]) != m.id {
		t.Fatalf("PUBACK of %d: type %#x %v", m.id, typ, rest)
	}
}

// TestRuleTopicDeletedIsCreatedAgain: deleting the topic an MQTT rule
// writes to, through the admin API or Kafka's DeleteTopics, does not make
// the rule's publishes fail: the topic is created again with the rule's
// partitions, MQTT 5 publishes are acknowledged with success and a 3.1.1
// connection stays up.
func TestRuleTopicDeletedIsCreatedAgain(t *testing.T) {
	rule, err := mqtt.ParseRule("factory/+site/+device/telemetry -> telemetry key={device} partitions=3")
	if err != nil {
		t.Fatal(err)
	}
	n, err := Start(Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
		MQTT: mqtt.Options{Rules: []mqtt.Rule{rule}}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c5, _, err := mqttConnect(t, n.MQTTAddrs()[0], &paho.Connect{ClientID: "dev5", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c5.Disconnect(&paho.Disconnect{})
	c3 := dial311(t, n.MQTTAddrs()[0], "dev3")
	kc, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	adm := kadm.NewClient(kc)

	publishBoth := func(when string) {
		t.Helper()
		resp, err := c5.Publish(ctx, &paho.Publish{Topic: "factory/a/dev5/telemetry", QoS: 1, Payload: []byte("21.5")})
		if err != nil || resp == nil || resp.ReasonCode != 0 {
			t.Fatalf("%s: MQTT 5 publish: %+v %v, want PUBACK success", when, resp, err)
		}
		c3.publish(t, "factory/a/dev3/telemetry", "22.5")
		info, err := n.Log().Topic("telemetry")
		if err != nil || info.Partitions != 3 {
			t.Fatalf("%s: topic telemetry: %+v %v, want 3 partitions", when, info, err)
		}
		var stored int64
		for p := int32(0); p < 3; p++ {
			part, err := n.Log().Partition("telemetry", p)
			if err != nil {
				t.Fatal(err)
			}
			stored += part.EndOffset() - part.StartOffset()
		}
		if stored != 2 {
			t.Fatalf("%s: %d records in telemetry, want the 2 just published", when, stored)
		}
	}
	publishBoth("before any delete")

	if code, body := call(t, n, "", http.MethodDelete, "/api/topics/telemetry", nil); code != http.StatusOK && code != http.StatusNoContent {
		t.Fatalf("admin delete: %d %s", code, body)
	}
	publishBoth("after the admin API deleted the topic")

	resps, err := adm.DeleteTopics(ctx, "telemetry")
	if err != nil {
		t.Fatal(err)
	}
	if r := resps["telemetry"]; r.Err != nil {
		t.Fatalf("DeleteTopics: %v", r.Err)
	}
	publishBoth("after Kafka DeleteTopics deleted the topic")
}
