package fleet

import (
	"math"
	"sync"
	"time"
)

// Histogram counts durations in buckets 2% apart from 100 µs to about an
// hour (below and above go to the first and last), so quantiles are within
// 2% at any count, in constant memory. Safe for concurrent use.
type Histogram struct {
	mu      sync.Mutex
	buckets [histBuckets]int64
	n       int64
	max     time.Duration
	sum     time.Duration
}

const (
	histMin     = 100 * time.Microsecond
	histRatio   = 1.02
	histBuckets = 900 // histMin × 1.02^900 ≈ 16 h
)

func histBucket(d time.Duration) int {
	if d <= histMin {
		return 0
	}
	i := int(math.Log(float64(d)/float64(histMin)) / math.Log(histRatio))
	return min(i, histBuckets-1)
}

// Record adds one duration (negative ones count as 0).
func (h *Histogram) Record(d time.Duration) {
	d = max(d, 0)
	i := histBucket(d)
	h.mu.Lock()
	h.buckets[i]++
	h.n++
	h.sum += d
	h.max = max(h.max, d)
	h.mu.Unlock()
}

// Count is the number of durations recorded.
func (h *Histogram) Count() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1), the upper bound of its
// bucket; 0 when nothing was recorded. Quantile(1) is the exact maximum.
func (h *Histogram) Quantile(q float64) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return 0
	}
	if q >= 1 {
		return h.max
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	var acc int64
	for i, c := range h.buckets {
		acc += c
		if acc >= max(rank, 1) {
			return min(time.Duration(float64(histMin)*math.Pow(histRatio, float64(i+1))), h.max)
		}
	}
	return h.max
}

// Mean is the mean duration.
func (h *Histogram) Mean() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}

// LatencySummary is a histogram's usual quantiles.
type LatencySummary struct {
	Count                    int64
	Mean, P50, P90, P99, Max time.Duration
}

// Summary returns the count, mean, median, 90th and 99th percentiles and
// maximum.
func (h *Histogram) Summary() LatencySummary {
	return LatencySummary{Count: h.Count(), Mean: h.Mean(), P50: h.Quantile(0.5), P90: h.Quantile(0.9), P99: h.Quantile(0.99), Max: h.Quantile(1)}
}

func (s LatencySummary) String() string {
	r := func(d time.Duration) time.Duration {
		switch {
		case d >= 10*time.Second:
			return d.Round(100 * time.Millisecond)
		case d >= 10*time.Millisecond:
			return d.Round(time.Millisecond)
		}
		return d.Round(10 * time.Microsecond)
	}
	return "p50 " + r(s.P50).String() + " p90 " + r(s.P90).String() + " p99 " + r(s.P99).String() + " max " + r(s.Max).String()
}
