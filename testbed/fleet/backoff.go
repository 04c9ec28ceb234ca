package fleet

import (
	"math/rand/v2"
	"time"
)

// Backoff is a reconnection policy with jitter, so that a fleet cut off at
// once does not come back at once: after the nth failure in a row (n ≥ 1)
// a client waits a random time between half and all of
// min(Max, Base × 2^(n-1)).
type Backoff struct {
	Base, Max time.Duration
}

// DefaultBackoff starts at 250 ms and stops doubling at 10 s.
var DefaultBackoff = Backoff{Base: 250 * time.Millisecond, Max: 10 * time.Second}

// Delay is the wait after the nth failure in a row.
func (b Backoff) Delay(n int, rnd *rand.Rand) time.Duration {
	if b.Base <= 0 {
		b = DefaultBackoff
	}
	d := b.Base
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	if b.Max > 0 && d > b.Max {
		d = b.Max
	}
	return d/2 + time.Duration(rnd.Int64N(int64(d/2)+1))
}

// sleep waits d, or until stop is closed; it reports whether d elapsed.
func sleep(d time.Duration, stop <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}
