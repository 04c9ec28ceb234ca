package devices

import (
	"math"

	"golang.org/x/time/rate"
)

// Allow reports whether device id may publish one more message now under its
// RateLimit and Burst (a token bucket, created on first use). Devices without
// a rate limit are always allowed; unknown and disabled devices never are.
// Changing a device's rate or burst starts a fresh bucket.
func (r *Registry) Allow(id string) bool {
	e := r.lookup(id)
	if e == nil || !e.dev.Enabled {
		return false
	}
	if e.dev.RateLimit <= 0 {
		return true
	}
	l := e.limiter.Load()
	if l == nil {
		burst := e.dev.Burst
		if burst < 1 {
			burst = max(1, int(math.Ceil(e.dev.RateLimit)))
		}
		l = rate.NewLimiter(rate.Limit(e.dev.RateLimit), burst)
		if !e.limiter.CompareAndSwap(nil, l) {
			l = e.limiter.Load()
		}
	}
	return l.AllowN(r.opts.Now(), 1)
}
