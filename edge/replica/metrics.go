package replica

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the replica manager's counters (ferry_replica_*). Under- and
// offline-partition gauges are the node's to publish from
// Manager.Partitions and the metadata.
type metrics struct {
	isrChanges  *prometheus.CounterVec // by change (shrink, expand) and result (committed, refused)
	truncations prometheus.Counter
	fetchErrors *prometheus.CounterVec // by Kafka error name, or "connection"
	fetched     prometheus.Counter     // bytes appended by followers
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		isrChanges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_replica_isr_changes_total",
			Help: "In-sync set changes this node proposed as leader (AlterPartition), by change (shrink, expand) and result (committed, refused)."},
			[]string{"change", "result"}),
		truncations: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_replica_truncations_total",
			Help: "Follower logs cut back where they diverged from their leader's (DivergingEpoch), or started over at its log start."}),
		fetchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_replica_fetch_errors_total",
			Help: "Failed follower fetches: by the partition's Kafka error, or connection (the fetch connection failed)."},
			[]string{"error"}),
		fetched: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_replica_fetched_bytes_total",
			Help: "Bytes of record batches followers appended from their leaders."}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	// A manager made again on the same registry (a restart in one
	// process) counts on in the collectors already there.
	if m.isrChanges, err = register(reg, m.isrChanges); err != nil {
		return nil, err
	}
	if m.truncations, err = register(reg, m.truncations); err != nil {
		return nil, err
	}
	if m.fetchErrors, err = register(reg, m.fetchErrors); err != nil {
		return nil, err
	}
	if m.fetched, err = register(reg, m.fetched); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered in
// its place.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}
