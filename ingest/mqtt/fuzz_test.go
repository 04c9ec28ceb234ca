package mqtt

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	flog "ferry/log"
)

// refMatch is MQTT topic matching written the obvious way, as an oracle.
func refMatch(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	f, tl := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, lv := range f {
		if lv == "#" {
			return true
		}
		if i >= len(tl) {
			return false
		}
		if lv != "+" && lv != tl[i] {
			return false
		}
	}
	return len(f) == len(tl)
}

// FuzzRoute feeds arbitrary filters and topics through the ingest mapping:
// rule compilation and matching agree with the oracle, the captured levels
// put back into the filter give the topic again, and the record built
// from the publish is a valid batch that decodes to what went in.
func FuzzRoute(f *testing.F) {
	for _, s := range [][2]string{
		{"factory/+site/+device/telemetry", "factory/lyon/dev1/telemetry"},
		{"a/#rest", "a"}, {"a/#rest", "a/b/c"}, {"+/+", "/"}, {"#", "$SYS/x"}, {"$SYS/#", "$SYS/broker/load"},
		{"a/+x/b", "a//b"}, {"+a/#b", "x"}, {"a/b", "a/b/"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, filter, topic string) {
		// Name every wildcard level, so each is captured.
		levels := strings.Split(filter, "/")
		plain := make([]string, len(levels))
		for i, lv := range levels {
			plain[i] = lv
			if strings.HasPrefix(lv, "+") || strings.HasPrefix(lv, "#") {
				plain[i] = lv[:1]
				levels[i] = lv[:1] + "c" + strconv.Itoa(i)
			}
		}
		c, err := compileRule(Rule{Filter: strings.Join(levels, "/"), Topic: "t", Key: "{topic}"})
		if err != nil {
			return
		}
		vals := make([]string, len(c.captures))
		got := c.match(topic, vals)
		if want := refMatch(strings.Join(plain, "/"), topic); got != want {
			t.Fatalf("filter %q topic %q: match %v, oracle %v", filter, topic, got, want)
		}
		if !got {
			return
		}
		var rebuilt []string
		ci := 0
		for _, lv := range c.levels {
			switch lv.kind {
			case 'l':
				rebuilt = append(rebuilt, lv.text)
			case '+':
				rebuilt = append(rebuilt, vals[ci])
				ci++
			case '#':
				if strings.Count(topic, "/") >= len(rebuilt) {
					rebuilt = append(rebuilt, vals[ci])
				}
			}
		}
		if r := strings.Join(rebuilt, "/"); r != topic {
			t.Fatalf("filter %q topic %q: captures %q rebuild %q", filter, topic, vals, r)
		}
		if key := string(c.renderKey(nil, vals, "cid", "user", "dev", topic)); key != topic {
			t.Fatalf("key {topic} rendered %q", key)
		}

		// The record it becomes is a valid batch that decodes to the
		// publish: key, payload, and every header in order.
		info := publishInfo{Topic: topic, Payload: []byte(filter), QoS: 1, Retain: true, ClientID: "cid", PacketID: 7,
			V5: true, Props: publishProps{ContentType: filter, User: []packets.UserProperty{{Key: filter, Val: topic}}}}
		rec := c.record(&info, vals, 1700000000000, nil)
		batch := flog.AppendBatch(nil, []flog.Record{rec})
		if _, err := flog.ValidateBatch(batch); err != nil {
			t.Fatalf("record batch invalid: %v", err)
		}
		_, recs, err := flog.DecodeRecords(batch)
		if err != nil || len(recs) != 1 {
			t.Fatalf("decode: %v %d", err, len(recs))
		}
		r := recs[0]
		if string(r.Key) != topic || string(r.Value) != filter || r.Timestamp != 1700000000000 || len(r.Headers) != len(rec.Headers) {
			t.Fatalf("record round trip: %+v", r)
		}
		for i, h := range r.Headers {
			if h.Key != rec.Headers[i].Key || string(h.Value) != string(rec.Headers[i].Value) {
				t.Fatalf("header %d: %q=%q, want %q=%q", i, h.Key, h.Value, rec.Headers[i].Key, rec.Headers[i].Value)
			}
		}
	})
}

func encode(pk packets.Packet, enc func(*packets.Packet, *bytes.Buffer) error) []byte {
	var buf bytes.Buffer
	if err := enc(&pk, &buf); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// fuzzSeeds are whole client conversations, encoded by mochi's codec: the
// shapes the fuzzer mutates into malformed ones.
func fuzzSeeds() [][]byte {
	connect := func(v byte) []byte {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: v,
			Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "fz", Clean: true, Keepalive: 5,
				UsernameFlag: true, Username: []byte("u"), PasswordFlag: true, Password: []byte("p")}}
		if v == 5 {
			pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = 60, true
			pk.Properties.ReceiveMaximum = 10
		}
		return encode(pk, (*packets.Packet).ConnectEncode)
	}
	publish := func(v, qos byte, id uint16) []byte {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: qos == 1}, ProtocolVersion: v,
			TopicName: "factory/a/fz/telemetry", Payload: []byte(`{"t":21.5}`), PacketID: id}
		if v == 5 {
			pk.Properties.ContentType = "application/json"
			pk.Properties.User = []packets.UserProperty{{Key: "k", Val: "v"}}
			pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = 1, true
		}
		return encode(pk, (*packets.Packet).PublishEncode)
	}
	sub := func(v byte) []byte {
		return encode(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, ProtocolVersion: v, PacketID: 9,
			Filters: packets.Subscriptions{{Filter: "factory/#", Qos: 1}, {Filter: "$share/g/a/+", Qos: 2}}}, (*packets.Packet).SubscribeEncode)
	}
	var out [][]byte
	for _, v := range []byte{4, 5} {
		conv := append(append(append(connect(v), publish(v, 0, 0)...), publish(v, 1, 1)...), publish(v, 2, 2)...)
		conv = append(conv, sub(v)...)
		conv = append(conv, 0xc0, 0x00) // PINGREQ
		out = append(out, conv, connect(v), append(connect(v), publish(v, 1, 3)...))
	}
	out = append(out, []byte{0x10, 0xff, 0xff, 0xff, 0xff, 0x7f}, []byte{0x30, 0x02, 0x00, 0x05})
	return out
}

// FuzzMalformedPackets sends arbitrary bytes to a live listener, as a
// client would. Whatever they are, the broker answers or closes that
// connection, never crashes or wedges, and serves the next client.
func FuzzMalformedPackets(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	b := startBroker(f, "", func(o *Options) { o.ConnectTimeout = 100 * time.Millisecond; o.MaxPacketSize = 64 << 10 })
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.Dial("tcp", b.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(data)
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, c) // the broker ends it: it sees EOF after our bytes
		c.Close()

		rc := dialRaw(t, b.addr, 5)
		rc.connect(connectOpts{id: "probe", clean: true})
		rc.publish("probe", []byte("ok"), 1, 1, false)
		if ack := rc.expect(packets.Puback); ack.ReasonCode != 0 {
			t.Fatalf("broker unwell after %x: PUBACK %#x", data, ack.ReasonCode)
		}
		rc.c.Close()
	})
}
