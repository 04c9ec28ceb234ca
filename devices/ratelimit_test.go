package devices

import (
	"testing"
	"time"
)

func TestAllow(t *testing.T) {
	r, _, clock := openTest(t)
	r.Add(Device{ID: "limited", Enabled: true, RateLimit: 2, Burst: 3}, "")
	r.Add(Device{ID: "noburst", Enabled: true, RateLimit: 2.5}, "")
	r.Add(Device{ID: "free", Enabled: true}, "")
	r.Add(Device{ID: "off", Enabled: false}, "")

	allowed := func(id string, n int) int {
		k := 0
		for i := 0; i < n; i++ {
			if r.Allow(id) {
				k++
			}
		}
		return k
	}
	if got := allowed("limited", 10); got != 3 {
		t.Fatalf("burst: %d of 10 allowed, want 3", got)
	}
	clock.Add(500 * time.Millisecond) // one token at 2/s
	if got := allowed("limited", 10); got != 1 {
		t.Fatalf("after 500 ms: %d allowed, want 1", got)
	}
	clock.Add(10 * time.Second) // refills to the burst, not beyond
	if got := allowed("limited", 10); got != 3 {
		t.Fatalf("after 10 s: %d allowed, want 3", got)
	}
	if got := allowed("noburst", 10); got != 3 {
		t.Fatalf("burst 0 at 2.5/s: %d allowed, want 3 (the rate rounded up)", got)
	}
	if got := allowed("free", 1000); got != 1000 {
		t.Fatalf("unlimited: %d of 1000", got)
	}
	if r.Allow("off") || r.Allow("nobody") {
		t.Fatal("a disabled or unknown device is allowed")
	}
	// A change that keeps the rate keeps the bucket (still empty).
	r.SetACL("limited", []string{"a"}, nil)
	if r.Allow("limited") {
		t.Fatal("SetACL refilled the bucket")
	}
}
