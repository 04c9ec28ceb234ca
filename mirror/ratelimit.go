package mirror

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Window is a time of day during which the link runs at Rate bytes/s (0:
// uncapped). From and To are minutes after midnight, local time; a window
// whose To is before its From runs over midnight.
type Window struct {
	From, To int
	Rate     int
}

// Schedule is a list of windows; the first that holds the current time
// gives the rate, else the sender's RateLimit applies.
type Schedule []Window

// ParseSchedule reads "HH:MM-HH:MM=RATE[,...]", e.g.
// "08:00-20:00=8192,20:00-08:00=0" (8 KiB/s by day, uncapped at night).
func ParseSchedule(s string) (Schedule, error) {
	var out Schedule
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		span, r, ok := strings.Cut(part, "=")
		from, to, ok2 := strings.Cut(span, "-")
		if !ok || !ok2 {
			return nil, fmt.Errorf("rate schedule %q: want HH:MM-HH:MM=BYTES_PER_SECOND", part)
		}
		f, err := parseClock(from)
		if err != nil {
			return nil, fmt.Errorf("rate schedule %q: %w", part, err)
		}
		t, err := parseClock(to)
		if err != nil {
			return nil, fmt.Errorf("rate schedule %q: %w", part, err)
		}
		n, err := strconv.Atoi(r)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("rate schedule %q: rate %q is not a byte count", part, r)
		}
		out = append(out, Window{From: f, To: t, Rate: n})
	}
	return out, nil
}

func parseClock(s string) (int, error) {
	t, err := time.Parse("15:04", strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// rateAt returns the rate in force at t; def when no window holds it.
func (sc Schedule) rateAt(t time.Time, def int) int {
	m := t.Hour()*60 + t.Minute()
	for _, w := range sc {
		in := m >= w.From && m < w.To
		if w.To <= w.From {
			in = m >= w.From || m < w.To
		}
		if in {
			return w.Rate
		}
	}
	return def
}

// linkLimiter is the link's token bucket: every chunk frame waits for its
// bytes. Rate 0 is uncapped.
type linkLimiter struct {
	base  int
	sched Schedule
	now   func() time.Time

	mu  sync.Mutex
	cur int
	lim *rate.Limiter
}

func newLinkLimiter(base int, sched Schedule, now func() time.Time) *linkLimiter {
	return &linkLimiter{base: base, sched: sched, now: now}
}

// rate returns the rate in force now, adjusting the bucket to it.
func (l *linkLimiter) rate() (int, *rate.Limiter) {
	r := l.sched.rateAt(l.now(), l.base)
	l.mu.Lock()
	defer l.mu.Unlock()
	if r != l.cur || l.lim == nil {
		l.cur = r
		// A tenth of a second of traffic: a full bucket lets little more
		// than the rate through.
		burst := max(r/10, 4096)
		if l.lim == nil {
			l.lim = rate.NewLimiter(rate.Limit(r), burst)
		} else {
			l.lim.SetLimit(rate.Limit(r))
			l.lim.SetBurst(burst)
		}
	}
	return r, l.lim
}

// wait blocks until n bytes may go on the link.
func (l *linkLimiter) wait(ctx context.Context, n int) error {
	r, lim := l.rate()
	if r <= 0 {
		return nil
	}
	for n > 0 {
		take := min(n, lim.Burst())
		if err := lim.WaitN(ctx, take); err != nil {
			return err
		}
		n -= take
	}
	return nil
}
