package kafka

import (
	"sync"
	"time"
)

// logEvery is how often one kind of repeated failure is logged: a consumer
// stalled at a damaged batch fetches again every few hundred milliseconds,
// a client refused by an ACL retries as often, and a line each time buries
// everything else.
const logEvery = time.Minute

// maxRateKeys bounds the keys a rateLog tracks (a client may name any
// number of topics); past it, new keys share one entry.
const maxRateKeys = 1024

// rateLog rate-limits a log line per key: the first occurrence is logged
// at once, later ones at most once per logEvery, with the count of those
// not logged.
type rateLog[K comparable] struct {
	mu       sync.Mutex
	last     map[K]*rateState
	overflow rateState
}

type rateState struct {
	at         time.Time
	suppressed int64
}

// allow reports whether to log an occurrence of k now, and how many were
// not logged since the last line for it.
func (r *rateLog[K]) allow(k K, now time.Time) (bool, int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[K]*rateState{}
	}
	st := r.last[k]
	if st == nil {
		if len(r.last) >= maxRateKeys {
			st = &r.overflow
		} else {
			r.last[k] = &rateState{at: now}
			return true, 0
		}
	}
	if !st.at.IsZero() && now.Sub(st.at) < logEvery {
		st.suppressed++
		return false, 0
	}
	n := st.suppressed
	st.at, st.suppressed = now, 0
	return true, n
}

// fetchWarnKey is a failing fetch: a partition and the error answered.
type fetchWarnKey struct {
	topic     string
	partition int32
	code      int16
}

// deniedKey is an ACL refusal: who, what, on which resource.
type deniedKey struct {
	principal, operation, resourceType, resource string
}
