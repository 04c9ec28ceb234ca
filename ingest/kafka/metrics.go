package kafka

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

type metrics struct {
	connections prometheus.Gauge
	requests    *prometheus.CounterVec // by api
	malformed   *prometheus.CounterVec // by reason
	bytesIn     *prometheus.CounterVec // by api
	bytesOut    *prometheus.CounterVec // by api
	partErrors  *prometheus.CounterVec // by api and Kafka error name
	produce     *prometheus.HistogramVec
	// duration is every request's time from its frame read to its
	// response written, by api; its children are made on an API's first
	// request (apiMetrics.observe), so APIs nobody calls add no series.
	duration *prometheus.HistogramVec
	auths    *prometheus.CounterVec // by mechanism and result
	// unauthenticated counts connections closed for a request other than
	// ApiVersions and SASL before authentication.
	unauthenticated prometheus.Counter
	// denied counts requests (or parts of one: a topic, a group) refused by
	// ACLs, by resource type.
	denied *prometheus.CounterVec
	// timeouts counts connections closed by a read deadline, by reason
	// (conn.go); throttled and throttleSeconds the produce requests over
	// quota and the throttle time they were given (quota.go).
	timeouts        *prometheus.CounterVec
	throttled       prometheus.Counter
	throttleSeconds prometheus.Counter

	// byKey holds each served API key's children, looked up once: every
	// request counts in them. Keys no handler serves share unknown.
	byKey   []*apiMetrics
	unknown *apiMetrics
	// produceByAcks is the produce histogram's children: acks 0, 1, all.
	produceByAcks [3]prometheus.Observer
	// authByMech is the authentication counter's children: [ok, failed]
	// per mechanism ("unsupported": a handshake naming none enabled).
	authByMech map[string][2]prometheus.Counter
	// deniedByType is the denial counter's children per resource type.
	deniedByType map[string]prometheus.Counter
	// timeoutByReason is the timeout counter's children.
	timeoutByReason map[string]prometheus.Counter
}

// apiMetrics are one API's request and byte counters and its latency
// histogram's child, made on first use.
type apiMetrics struct {
	requests, bytesIn, bytesOut prometheus.Counter
	name                        string
	durations                   *prometheus.HistogramVec // nil: not observed (unknown)
	once                        sync.Once
	duration                    prometheus.Observer
}

// observe records a request's latency under its API.
func (a *apiMetrics) observe(d time.Duration) {
	if a.durations == nil {
		return
	}
	a.once.Do(func() { a.duration = a.durations.WithLabelValues(a.name) })
	a.duration.Observe(d.Seconds())
}

// newMetrics makes the server's metrics and registers them with reg (none
// if nil), with, when there is a group coordinator, its consumer groups'
// offsets and lag.
func newMetrics(reg prometheus.Registerer, groups *Groups, l *flog.Log) (*metrics, error) {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_kafka_connections", Help: "Open Kafka protocol connections."}),
		requests:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_kafka_requests_total", Help: "Kafka requests served, by API."}, []string{"api"}),
		malformed:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_kafka_malformed_requests_total", Help: "Connections closed for a malformed frame or request, by reason."}, []string{"reason"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_kafka_received_bytes_total",
			Help: "Bytes of Kafka requests received (with their size prefix), by API (unknown: a frame whose API key no handler serves)."}, []string{"api"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_kafka_sent_bytes_total",
			Help: "Bytes of Kafka responses sent (with their size prefix), by API."}, []string{"api"}),
		partErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_kafka_partition_errors_total",
			Help: "Produce and fetch partitions answered with an error, by API and Kafka error."}, []string{"api", "error"}),
		produce: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ferry_kafka_produce_duration_seconds",
			Help:    "Time from a Produce request being read to its response being sent (acks=0: to its records being appended), by acks (0, 1, all).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, []string{"acks"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ferry_kafka_request_duration_seconds",
			Help: "Time from a Kafka request's frame being read to its response being written (a produce waiting for durability: to its answer; acks=0: to its records being appended), by API.",
			// 100 µs to 26 s: a fetch's max wait and a produce's fsync on an SD card.
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 19)}, []string{"api"}),
		auths: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_kafka_sasl_authentications_total",
			Help: "SASL authentications on the Kafka listener, by mechanism (unsupported: a handshake naming no enabled mechanism) and result (ok, failed)."}, []string{"mechanism", "result"}),
		unauthenticated: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_kafka_unauthenticated_requests_total",
			Help: "Kafka connections closed for a request other than ApiVersions, SaslHandshake and SaslAuthenticate before SASL authentication."}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_kafka_authorization_denied_total",
			Help: "Kafka operations refused by ACLs (one per topic, group or cluster operation refused), by resource type."}, []string{"resource_type"}),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_kafka_connection_timeouts_total",
			Help: "Kafka connections closed by a deadline, by reason: idle (no request started within the idle timeout), request (a request not read whole within the request timeout), authentication (SASL not completed within the authentication timeout)."}, []string{"reason"}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_kafka_throttled_requests_total",
			Help: "Kafka Produce requests over their principal's produce quota, answered with a throttle time and their connection muted for it."}),
		throttleSeconds: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_kafka_throttle_seconds_total",
			Help: "Throttle time given to Kafka Produce requests over quota, in seconds."}),
		authByMech: map[string][2]prometheus.Counter{}, deniedByType: map[string]prometheus.Counter{}, timeoutByReason: map[string]prometheus.Counter{},
	}
	maxKey := int16(0)
	for k := range handlers {
		maxKey = max(maxKey, k)
	}
	child := func(api string) *apiMetrics {
		return &apiMetrics{requests: m.requests.WithLabelValues(api), bytesIn: m.bytesIn.WithLabelValues(api),
			bytesOut: m.bytesOut.WithLabelValues(api), name: api, durations: m.duration}
	}
	m.byKey = make([]*apiMetrics, maxKey+1)
	for k := range handlers {
		m.byKey[k] = child(kmsg.NameForKey(k))
	}
	m.unknown = child("unknown")
	m.unknown.durations = nil // never answered: the connection is closed
	for i, acks := range []string{"0", "1", "all"} {
		m.produceByAcks[i] = m.produce.WithLabelValues(acks)
	}
	for _, mech := range []string{SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512, "unsupported"} {
		m.authByMech[mech] = [2]prometheus.Counter{m.auths.WithLabelValues(mech, "ok"), m.auths.WithLabelValues(mech, "failed")}
	}
	for _, rt := range []string{"TOPIC", "GROUP", "CLUSTER"} {
		m.deniedByType[rt] = m.denied.WithLabelValues(rt)
	}
	for _, r := range []string{timeoutIdle, timeoutRequest, timeoutAuth} {
		m.timeoutByReason[r] = m.timeouts.WithLabelValues(r)
	}
	if reg != nil {
		cs := []prometheus.Collector{m.connections, m.requests, m.malformed, m.bytesIn, m.bytesOut, m.partErrors, m.produce, m.duration, m.auths, m.unauthenticated, m.denied,
			m.timeouts, m.throttled, m.throttleSeconds}
		if groups != nil {
			cs = append(cs, newLagCollector(groups, l))
		}
		for _, c := range cs {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// api returns an API key's counters.
func (m *metrics) api(key int16) *apiMetrics {
	if key >= 0 && int(key) < len(m.byKey) && m.byKey[key] != nil {
		return m.byKey[key]
	}
	return m.unknown
}

// produceLatency returns the produce histogram's child for an acks value
// (anything but 0 and -1 is answered as acks=1 is).
func (m *metrics) produceLatency(acks int16) prometheus.Observer {
	switch acks {
	case 0:
		return m.produceByAcks[0]
	case -1:
		return m.produceByAcks[2]
	}
	return m.produceByAcks[1]
}

// partitionError counts one partition answered with a Kafka error code.
func (m *metrics) partitionError(api string, code int16) {
	name := "UNKNOWN"
	if e := kerr.ErrorForCode(code); e != nil {
		if ke, ok := e.(*kerr.Error); ok {
			name = ke.Message
		}
	}
	m.partErrors.WithLabelValues(api, name).Inc()
}

// timeout returns the timeout counter's child for a reason.
func (m *metrics) timeout(reason string) prometheus.Counter { return m.timeoutByReason[reason] }

// authResult counts one authentication.
func (m *metrics) authResult(mechanism string, ok bool) {
	c := m.authByMech[mechanism]
	if ok {
		c[0].Inc()
	} else {
		c[1].Inc()
	}
}
