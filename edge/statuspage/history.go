package statuspage

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// Sample is the node's figures at one instant. Counters (RecordsIn,
// KafkaOut, MQTTOut) only grow while the node runs; InPerSec and OutPerSec
// are their rates since the previous sample.
type Sample struct {
	// Time is when the sample was taken, in Unix milliseconds.
	Time int64 `json:"t"`
	// RecordsIn is the sum of the end offsets of every partition of every
	// topic but the internal ones (named __*): the records ever appended.
	RecordsIn int64 `json:"records_in"`
	// KafkaOut is the records Kafka fetches returned, MQTTOut the
	// messages the MQTT broker delivered to subscribers, since the start.
	KafkaOut int64 `json:"kafka_records_out"`
	MQTTOut  int64 `json:"mqtt_messages_out"`
	// InPerSec and OutPerSec (Kafka and MQTT together) are per second
	// over the interval before this sample; 0 for the first sample.
	InPerSec  float64 `json:"in_per_sec"`
	OutPerSec float64 `json:"out_per_sec"`
	// DiskBytes is the log's size on disk; DiskBudget the data-disk budget
	// (0: none); AppendsBlocked is true while the budget blocks appends.
	DiskBytes      int64 `json:"disk_bytes"`
	DiskBudget     int64 `json:"disk_budget_bytes"`
	AppendsBlocked bool  `json:"appends_blocked"`
	// DevicesOnline is the number of connected MQTT clients.
	DevicesOnline int64 `json:"devices_online"`
	// ConsumerLag is the records between consumer groups' committed
	// offsets and the partitions' ends, summed over groups and
	// partitions; GroupLag the same per group (the largest MaxGroups).
	ConsumerLag int64            `json:"consumer_lag"`
	GroupLag    map[string]int64 `json:"group_lag,omitempty"`
	// Mirror is the mirror's state; nil when the node mirrors nothing.
	Mirror *MirrorSample `json:"mirror,omitempty"`
	// Fleet is a center's edges; nil without a mirror receiver.
	Fleet *FleetSample `json:"fleet,omitempty"`
}

// MaxEdges is how many edges a Sample keeps the copy lag of (the largest).
const MaxEdges = 8

// FleetSample is a center's edges: how many it knows and how many are
// connected, and their copy lag in records (of the edges that report it),
// summed and, for the largest MaxEdges, per edge.
type FleetSample struct {
	Edges      int              `json:"edges"`
	Connected  int              `json:"connected"`
	LagRecords int64            `json:"lag_records"`
	EdgeLag    map[string]int64 `json:"edge_lag,omitempty"`
}

// MaxGroups is how many groups a Sample keeps the lag of (the largest).
const MaxGroups = 8

// MirrorSample is the mirror's link and what the center has not yet
// acknowledged.
type MirrorSample struct {
	LinkUp         bool    `json:"link_up"`
	BacklogRecords int64   `json:"backlog_records"`
	BacklogBytes   int64   `json:"backlog_bytes"`
	OldestAge      float64 `json:"oldest_unshipped_age_seconds"`
}

// Node describes the node the page is about; it does not change while the
// node runs.
type Node struct {
	Mode       string   `json:"mode"`
	KafkaAddr  string   `json:"kafka_addr,omitempty"`
	MQTTAddrs  []string `json:"mqtt_addrs,omitempty"`
	MirrorTo   string   `json:"mirror_to,omitempty"`
	EdgeID     string   `json:"edge_id,omitempty"`
	MirrorAddr string   `json:"mirror_addr,omitempty"`
}

// History is what GET /api/history serves: the samples of the window,
// oldest first.
type History struct {
	Node            Node     `json:"node"`
	IntervalSeconds float64  `json:"interval_seconds"`
	WindowSeconds   float64  `json:"window_seconds"`
	Samples         []Sample `json:"samples"`
}

// Window is how far back a Sampler keeps samples.
const Window = time.Hour

// maxSamples bounds the ring whatever the interval.
const maxSamples = 3600

// Sampler takes a Sample every interval and keeps those of the last hour.
type Sampler struct {
	node     Node
	interval time.Duration
	collect  func() Sample

	mu   sync.Mutex // guards ring, next, n
	ring []Sample
	next int // where the next sample goes
	n    int // samples held
}

// NewSampler makes a sampler that calls collect every interval (5 s when
// interval is 0 or less). collect fills in every field but Time and the
// rates.
func NewSampler(node Node, interval time.Duration, collect func() Sample) *Sampler {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	size := int(Window / interval)
	size = min(max(size, 2), maxSamples)
	return &Sampler{node: node, interval: interval, collect: collect, ring: make([]Sample, size)}
}

// Interval is the time between two samples.
func (s *Sampler) Interval() time.Duration { return s.interval }

// Run takes a sample at once and then every interval until ctx ends.
func (s *Sampler) Run(ctx context.Context) {
	s.Record(time.Now())
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.Record(now)
		}
	}
}

// Record takes one sample now and adds it to the ring.
func (s *Sampler) Record(now time.Time) Sample {
	smp := s.collect()
	smp.Time = now.UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n > 0 {
		prev := s.ring[(s.next+len(s.ring)-1)%len(s.ring)]
		if secs := float64(smp.Time-prev.Time) / 1000; secs > 0 {
			smp.InPerSec = rate(prev.RecordsIn, smp.RecordsIn, secs)
			smp.OutPerSec = rate(prev.KafkaOut+prev.MQTTOut, smp.KafkaOut+smp.MQTTOut, secs)
		}
	}
	s.ring[s.next] = smp
	s.next = (s.next + 1) % len(s.ring)
	s.n = min(s.n+1, len(s.ring))
	return smp
}

// rate is the per-second growth of a counter; a counter that went down
// (a topic deleted) counts as no growth.
func rate(before, after int64, secs float64) float64 {
	if after <= before {
		return 0
	}
	return float64(after-before) / secs
}

// History returns the samples held, oldest first.
func (s *Sampler) History() History {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := History{Node: s.node, IntervalSeconds: s.interval.Seconds(), WindowSeconds: Window.Seconds(),
		Samples: make([]Sample, 0, s.n)}
	start := (s.next - s.n + len(s.ring)) % len(s.ring)
	for i := range s.n {
		h.Samples = append(h.Samples, s.ring[(start+i)%len(s.ring)])
	}
	return h
}

// ServeHTTP serves the history as JSON (GET /api/history).
func (s *Sampler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(s.History())
}
