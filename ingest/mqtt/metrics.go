package mqtt

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Publish results, the values of the result label of
// ferry_mqtt_publishes_total.
const (
	resultStored        = "stored"         // appended to the log
	resultDuplicate     = "duplicate"      // a retransmission of a stored publish: acknowledged, not stored again
	resultUnmatched     = "unmatched"      // no rule and no default topic: dropped
	resultNotAuthorized = "not_authorized" // refused by the ACL
	resultRateLimited   = "rate_limited"   // over the device's publish rate
	resultRejected      = "rejected"       // shutting down or over the inflight limit
	resultError         = "error"          // the log refused the append
)

type metrics struct {
	connections  prometheus.GaugeFunc
	connects     *prometheus.CounterVec            // by result
	disconnects  *prometheus.CounterVec            // by reason
	publishes    *prometheus.CounterVec            // by qos and result
	byResult     map[string]*[3]prometheus.Counter // publishes' children, looked up once (publish is on every message's path)
	bytesIn      prometheus.Counter
	ackWait      prometheus.Histogram
	presenceErrs prometheus.Counter
	bridgeUp     *prometheus.GaugeVec // by bridge
}

func newMetrics(reg prometheus.Registerer, connected func() float64) (*metrics, error) {
	m := &metrics{
		connections: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ferry_mqtt_connections", Help: "Connected MQTT clients."}, connected),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_mqtt_connects_total",
			Help: "MQTT CONNECT attempts, by result (accepted, bad_credentials, not_authorized, bad_client_id, server_busy)."}, []string{"result"}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_mqtt_disconnects_total",
			Help: "MQTT connections ended, by reason (normal, or the protocol error or limit that closed them)."}, []string{"reason"}),
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_mqtt_publishes_total",
			Help: "MQTT publishes received, by QoS and result (stored, duplicate, unmatched, not_authorized, rate_limited, rejected, error)."}, []string{"qos", "result"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_mqtt_stored_bytes_total", Help: "Payload bytes of MQTT publishes stored in the log."}),
		ackWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ferry_mqtt_ack_wait_seconds",
			Help:    "Time from a QoS 1/2 publish's append to its acknowledgement (the wait for durability).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		bridgeUp:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ferry_mqtt_bridge_up", Help: "1 while an MQTT bridge-in is connected to its broker, by bridge."}, []string{"bridge"}),
		presenceErrs: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_mqtt_presence_event_errors_total", Help: "Presence events that could not be appended to the presence topic."}),
	}
	m.byResult = map[string]*[3]prometheus.Counter{}
	for _, r := range []string{resultStored, resultDuplicate, resultUnmatched, resultNotAuthorized, resultRateLimited, resultRejected, resultError} {
		var cs [3]prometheus.Counter
		for q := range cs {
			cs[q] = m.publishes.WithLabelValues(qosLabel[q], r)
		}
		m.byResult[r] = &cs
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.connections, m.connects, m.disconnects, m.publishes, m.bytesIn, m.ackWait, m.presenceErrs, m.bridgeUp} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

var qosLabel = [3]string{"0", "1", "2"}

func (m *metrics) publish(qos byte, result string) {
	m.byResult[result][min(qos, 2)].Inc()
}
