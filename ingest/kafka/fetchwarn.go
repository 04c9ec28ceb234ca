package kafka

import (
	"sync"
	"time"
)

// fetchWarnEvery is how often a partition's failing fetches are logged: a
// consumer stalled at a damaged batch fetches again every few hundred
// milliseconds, and a line each time buries everything else.
const fetchWarnEvery = time.Minute

// fetchWarnings rate-limits the "fetch failed" line per partition and
// error: the first failure is logged at once, later ones at most once per
// fetchWarnEvery with the count of those not logged. The map holds one
// entry per partition and error seen failing, bounded by the partitions.
type fetchWarnings struct {
	mu   sync.Mutex
	last map[fetchWarnKey]*fetchWarnState
}

type fetchWarnKey struct {
	topic     string
	partition int32
	code      int16
}

type fetchWarnState struct {
	at         time.Time
	suppressed int64
}

// allow reports whether to log a failure now, and how many were not
// logged since the last line.
func (w *fetchWarnings) allow(topic string, partition int32, code int16, now time.Time) (bool, int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == nil {
		w.last = map[fetchWarnKey]*fetchWarnState{}
	}
	k := fetchWarnKey{topic, partition, code}
	st := w.last[k]
	if st == nil {
		w.last[k] = &fetchWarnState{at: now}
		return true, 0
	}
	if now.Sub(st.at) < fetchWarnEvery {
		st.suppressed++
		return false, 0
	}
	n := st.suppressed
	st.at, st.suppressed = now, 0
	return true, n
}
