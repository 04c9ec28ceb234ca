package statuspage

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// counterSource returns samples whose counters the test sets.
type counterSource struct{ in, kafkaOut, mqttOut int64 }

func (c *counterSource) collect() Sample {
	return Sample{RecordsIn: c.in, KafkaOut: c.kafkaOut, MQTTOut: c.mqttOut}
}

func TestSamplerKeepsTheLastHourOldestFirst(t *testing.T) {
	src := &counterSource{}
	s := NewSampler(Node{Mode: "edge"}, time.Minute, src.collect)
	t0 := time.Unix(1_700_000_000, 0)
	for i := range 75 {
		src.in += 600 // 10 records/s over each minute
		s.Record(t0.Add(time.Duration(i) * time.Minute))
	}
	h := s.History()
	if len(h.Samples) != 60 || h.IntervalSeconds != 60 || h.WindowSeconds != 3600 {
		t.Fatalf("%d samples every %v s over %v s, want 60 every 60 s over 3600 s", len(h.Samples), h.IntervalSeconds, h.WindowSeconds)
	}
	for i, smp := range h.Samples {
		if want := t0.Add(time.Duration(15+i) * time.Minute).UnixMilli(); smp.Time != want {
			t.Fatalf("sample %d at %d, want %d (the oldest 15 dropped, oldest first)", i, smp.Time, want)
		}
		if smp.InPerSec != 10 {
			t.Fatalf("sample %d: %v records/s in, want 10", i, smp.InPerSec)
		}
	}
}

func TestSamplerRates(t *testing.T) {
	src := &counterSource{in: 100, kafkaOut: 50, mqttOut: 5}
	s := NewSampler(Node{}, 5*time.Second, src.collect)
	t0 := time.Unix(1_700_000_000, 0)
	if first := s.Record(t0); first.InPerSec != 0 || first.OutPerSec != 0 {
		t.Fatalf("first sample has rates %v/%v, want none (nothing to compare with)", first.InPerSec, first.OutPerSec)
	}
	src.in, src.kafkaOut, src.mqttOut = 150, 80, 25 // +50 in, +30 +20 out over 5 s
	if smp := s.Record(t0.Add(5 * time.Second)); smp.InPerSec != 10 || smp.OutPerSec != 10 {
		t.Fatalf("rates %v in, %v out, want 10 and 10", smp.InPerSec, smp.OutPerSec)
	}
	src.in = 40 // a topic deleted: the sum of end offsets went down
	if smp := s.Record(t0.Add(10 * time.Second)); smp.InPerSec != 0 {
		t.Fatalf("after a counter went down: %v records/s in, want 0", smp.InPerSec)
	}
}

func TestSamplerRingBounds(t *testing.T) {
	for _, c := range []struct {
		interval time.Duration
		want     int
	}{{0, 720}, {5 * time.Second, 720}, {time.Millisecond, maxSamples}, {2 * time.Hour, 2}} {
		if got := len(NewSampler(Node{}, c.interval, (&counterSource{}).collect).ring); got != c.want {
			t.Errorf("interval %v: ring of %d, want %d", c.interval, got, c.want)
		}
	}
}

func TestHistoryServedAsJSON(t *testing.T) {
	src := &counterSource{in: 7}
	s := NewSampler(Node{Mode: "edge", KafkaAddr: "127.0.0.1:9092"}, time.Second, src.collect)
	s.Record(time.Now())
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/history", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var h History
	if err := json.Unmarshal(rec.Body.Bytes(), &h); err != nil {
		t.Fatal(err)
	}
	if h.Node.Mode != "edge" || h.IntervalSeconds != 1 || len(h.Samples) != 1 || h.Samples[0].RecordsIn != 7 || h.Samples[0].Mirror != nil {
		t.Fatalf("%+v", h)
	}
	var raw struct {
		Samples []map[string]any `json:"samples"`
	}
	json.Unmarshal(rec.Body.Bytes(), &raw)
	for _, k := range []string{"t", "records_in", "kafka_records_out", "mqtt_messages_out", "in_per_sec", "out_per_sec", "disk_bytes",
		"disk_budget_bytes", "appends_blocked", "devices_online", "consumer_lag"} {
		if _, ok := raw.Samples[0][k]; !ok {
			t.Errorf("a sample has no %q: the page reads it", k)
		}
	}
}
