package kafka

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
)

type metrics struct {
	connections prometheus.Gauge
	requests    *prometheus.CounterVec // by api
	malformed   *prometheus.CounterVec // by reason
	bytesIn     prometheus.Counter
	bytesOut    prometheus.Counter
	partErrors  *prometheus.CounterVec // by api and Kafka error name
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_kafka_connections", Help: "Open Kafka protocol connections."}),
		requests:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_kafka_requests_total", Help: "Kafka requests served, by API."}, []string{"api"}),
		malformed:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_kafka_malformed_requests_total", Help: "Connections closed for a malformed frame or request, by reason."}, []string{"reason"}),
		bytesIn:     prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_kafka_received_bytes_total", Help: "Bytes of Kafka requests received."}),
		bytesOut:    prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_kafka_sent_bytes_total", Help: "Bytes of Kafka responses sent."}),
		partErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_kafka_partition_errors_total",
			Help: "Produce and fetch partitions answered with an error, by API and Kafka error."}, []string{"api", "error"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.connections, m.requests, m.malformed, m.bytesIn, m.bytesOut, m.partErrors} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
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
