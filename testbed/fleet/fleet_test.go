package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

func rec(p int32, off int64, key string, seq int64) Record {
	return Record{Partition: p, Offset: off, Key: []byte(key), Value: fmt.Appendf(nil, `{"device":%q,"seq":%d,"sent_us":1}`, key, seq)}
}

func TestCheck(t *testing.T) {
	l := NewLedger()
	for seq := range int64(6) {
		l.begin()
		o := Acked
		if seq == 4 {
			o = Failed
		}
		l.end("a", seq, o)
	}
	l.begin()
	l.end("b", 0, Acked)

	ok := []Record{rec(0, 0, "a", 0), rec(0, 1, "a", 1), rec(1, 0, "b", 0), rec(0, 2, "a", 2), rec(0, 3, "a", 3), rec(0, 4, "a", 5)}
	if v := Check(l, ok); !v.OK() || v.AckedPresent != 6 || v.FailedAbsent != 1 {
		t.Fatalf("a complete log: %+v", v)
	}
	withFailed := append(ok[:5:5], rec(0, 4, "a", 4), rec(0, 5, "a", 5))
	if v := Check(l, withFailed); !v.OK() || v.FailedPresent != 1 {
		t.Fatalf("a failed publish stored once is fine: %+v", v)
	}

	for _, tc := range []struct {
		name string
		recs []Record
		bad  func(Verdict) int64
	}{
		{"missing", ok[1:], func(v Verdict) int64 { return v.Missing.N }},
		{"duplicate", append(ok[:3:3], rec(0, 2, "a", 1), rec(0, 3, "a", 2), rec(0, 4, "a", 3), rec(0, 5, "a", 5)),
			func(v Verdict) int64 { return v.Duplicates.N }},
		{"reordered", []Record{rec(0, 0, "a", 1), rec(0, 1, "a", 0), rec(1, 0, "b", 0), rec(0, 2, "a", 2), rec(0, 3, "a", 3), rec(0, 4, "a", 5)},
			func(v Verdict) int64 { return v.OutOfOrder.N }},
		{"never sent", append(ok[:6:6], rec(0, 5, "a", 9)), func(v Verdict) int64 { return v.Unknown.N }},
		{"not a payload", append(ok[:6:6], Record{Value: []byte("hello")}), func(v Verdict) int64 { return v.Unknown.N }},
		{"two partitions", []Record{rec(0, 0, "a", 0), rec(0, 1, "a", 1), rec(1, 0, "b", 0), rec(1, 1, "a", 2), rec(0, 3, "a", 3), rec(0, 4, "a", 5)},
			func(v Verdict) int64 { return v.Misrouted.N }},
		{"wrong key", []Record{rec(0, 0, "a", 0), rec(0, 1, "a", 1), {Partition: 1, Key: []byte("x"), Value: []byte(`{"device":"b","seq":0}`)},
			rec(0, 2, "a", 2), rec(0, 3, "a", 3), rec(0, 4, "a", 5)}, func(v Verdict) int64 { return v.Misrouted.N }},
	} {
		v := Check(l, tc.recs)
		if v.OK() || tc.bad(v) == 0 {
			t.Errorf("%s: not caught: %+v", tc.name, v)
		}
		if len(v.Problems()) == 0 || !strings.Contains(v.String(), "PROBLEMS") {
			t.Errorf("%s: not described: %q", tc.name, v.String())
		}
	}
}

func TestHistogram(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	for _, q := range []float64{0.5, 0.9, 0.99} {
		want := time.Duration(q*1000) * time.Millisecond
		got := h.Quantile(q)
		if got < want || float64(got) > float64(want)*1.021 {
			t.Errorf("q%.2f = %v, want %v within 2%%", q, got, want)
		}
	}
	if h.Quantile(1) != time.Second || h.Count() != 1000 {
		t.Errorf("max %v, count %d", h.Quantile(1), h.Count())
	}
	var empty Histogram
	if empty.Quantile(0.5) != 0 || empty.Mean() != 0 {
		t.Error("an empty histogram has no quantiles")
	}
}

func TestBackoff(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	b := Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 10: time.Second} {
		for range 100 {
			if d := b.Delay(n, rnd); d < want/2 || d > want {
				t.Fatalf("Delay(%d) = %v, want within [%v, %v]", n, d, want/2, want)
			}
		}
	}
}

func TestClimatePayloads(t *testing.T) {
	c, err := LoadClimate("../testdata/room-climate")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.series) < 3 || c.Readings() != 1200 {
		t.Fatalf("%d series, %d readings", len(c.series), c.Readings())
	}
	rnd := rand.New(rand.NewPCG(1, 1))
	s := c.sensor(7, 0.5, rnd)
	var alarms int
	var prev float64
	for i := range 200 {
		r, alarm := s.next()
		if alarm != "" {
			alarms++
		}
		b := appendPayload(nil, "gw1-d0007", int64(i), 1234, r, s.battery, alarm)
		var p struct {
			Device      string   `json:"device"`
			Seq         int64    `json:"seq"`
			Temperature float64  `json:"temperature"`
			Alarm       *string  `json:"alarm"`
			Battery     *float64 `json:"battery"`
		}
		if err := json.Unmarshal(b, &p); err != nil || p.Device != "gw1-d0007" || p.Seq != int64(i) || p.Battery == nil {
			t.Fatalf("payload %s: %v", b, err)
		}
		if (p.Alarm != nil) != (alarm != "") {
			t.Fatalf("payload %s for alarm %q", b, alarm)
		}
		if alarm == "" && i > 0 && prev != 0 && (p.Temperature-prev > 2 || prev-p.Temperature > 2) {
			t.Errorf("reading %d jumps from %.2f to %.2f", i, prev, p.Temperature)
		}
		if alarm == "" {
			prev = p.Temperature
		} else {
			prev = 0
		}
		if sentUS(b) != 1234 {
			t.Fatalf("sentUS(%s) = %d", b, sentUS(b))
		}
	}
	if alarms == 0 {
		t.Error("no alarm in 200 readings at probability 0.5")
	}
}

// recorder is a mochi hook that lets every client in and records every
// publish it sees (mochi acknowledges them itself).
type recorder struct {
	mqtt.HookBase
	mu   sync.Mutex
	seen map[string][]int64
}

func (h *recorder) ID() string { return "recorder" }
func (h *recorder) Provides(b byte) bool {
	return b == mqtt.OnPublish || b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (h *recorder) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }
func (h *recorder) OnACLCheck(*mqtt.Client, string, bool) bool              { return true }

func (h *recorder) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	var p payloadID
	if err := json.Unmarshal(pk.Payload, &p); err == nil && p.Seq != nil {
		h.mu.Lock()
		h.seen[p.Device] = append(h.seen[p.Device], *p.Seq)
		h.mu.Unlock()
	}
	return pk, nil
}

// TestMQTTFleet runs a small fleet against an in-process broker
// (mochi-mqtt) that drops every connection twice: every device
// reconnects, and every acknowledged publish reached the broker.
func TestMQTTFleet(t *testing.T) {
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	rh := &recorder{seen: map[string][]int64{}}
	if err := srv.AddHook(rh, nil); err != nil {
		t.Fatal(err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
	if err := srv.AddListener(tcp); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Close()

	c, err := LoadClimate("../testdata/room-climate")
	if err != nil {
		t.Fatal(err)
	}
	devs := make([]Device, 5)
	for i := range devs {
		devs[i] = Device{ID: fmt.Sprintf("d%d", i), Password: "x"}
	}
	f := NewMQTT(MQTTConfig{Addr: tcp.Address, Devices: devs, Topic: "factory/t/{device}/telemetry", Rate: 50, QoS: 1,
		BurstP: 0.05, BurstLen: 5, Climate: c, Backoff: Backoff{Base: 20 * time.Millisecond, Max: 100 * time.Millisecond}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan MQTTSummary)
	go func() { done <- f.Run(ctx) }()

	for cut := 1; cut <= 2; cut++ {
		waitUntil(t, "all devices online", func() bool { return f.Online() == int64(len(devs)) })
		before := f.Ledger().Counts().Acked
		waitUntil(t, "publishes acknowledged", func() bool { return f.Ledger().Counts().Acked > before+50 })
		for _, cl := range srv.Clients.GetAll() {
			cl.Stop(errors.New("cut by the test"))
		}
		waitUntil(t, "the devices to see the cut", func() bool { return f.Summary().Disconnects >= int64(cut*len(devs)) })
	}
	waitUntil(t, "all devices back", func() bool { return f.Online() == int64(len(devs)) })
	cancel()
	s := <-done
	if s.Disconnects < 2*int64(len(devs)) || s.Connects < 3*int64(len(devs)) || s.NeverConnected != 0 {
		t.Errorf("reconnections not counted: %s", s)
	}
	if s.Acked == 0 || s.Pending != 0 || s.Sent != s.Acked+s.Failed {
		t.Errorf("counts: %+v", s.Counts)
	}
	// Every acknowledged publish reached the broker (mochi stores no log:
	// its hook's record stands for one; it does not deduplicate, so a
	// retransmission may show twice).
	var recs []Record
	rh.mu.Lock()
	for d, seqs := range rh.seen {
		last := int64(-1)
		for _, seq := range seqs {
			if seq > last {
				recs = append(recs, rec(0, 0, d, seq))
				last = seq
			}
		}
	}
	rh.mu.Unlock()
	if v := Check(f.Ledger(), recs); v.Missing.N != 0 || v.Unknown.N != 0 {
		t.Errorf("%s", v)
	}
	t.Logf("%s", s)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
