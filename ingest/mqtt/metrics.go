package mqtt

import (
	"sync/atomic"

	"github.com/mochi-mqtt/server/v2/system"
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
	resultMalformed     = "malformed"      // a bridged message whose topic is not a valid MQTT topic name
)

// Why a publish was dropped with its publisher never told: the keys of
// Server.Dropped.
const (
	dropUnmatched     = iota // no rule and no default topic (any QoS; QoS 1/2 acknowledged)
	dropNotAuthorized        // refused by the ACL: QoS 0, or QoS 1/2 under MQTT 3.1.1 (acknowledged positively)
	dropRateLimited          // QoS 0 over the device's rate
	dropNotStored            // QoS 0 the log refused (disk budget, I/O) or that came while shutting down
	nDropReasons
)

var dropReasons = [nDropReasons]string{"unmatched", "not_authorized", "rate_limited", "not_stored"}

type metrics struct {
	connections      prometheus.GaugeFunc
	connects         *prometheus.CounterVec            // by result
	disconnects      *prometheus.CounterVec            // by reason
	publishes        *prometheus.CounterVec            // by qos and result
	byResult         map[string]*[3]prometheus.Counter // publishes' children, looked up once (publish is on every message's path)
	bytesIn          prometheus.Counter
	ackWait          prometheus.Histogram
	presenceErrs     prometheus.Counter
	pending          prometheus.Gauge              // connections whose CONNECT is being read
	preconnectV      *prometheus.CounterVec        // connections ended before CONNECT reached the hook, by reason
	preconnect       map[string]prometheus.Counter // its children
	subDenied        prometheus.Counter            // subscribe ACL refusals, at SUBSCRIBE and at delivery
	queuedDropped    *prometheus.CounterVec        // queued QoS 1/2 messages dropped unsent, by reason
	expired          prometheus.Counter            // its child: their MQTT 5 message expiry passed
	tooLarge         prometheus.Counter            // its child: over the client's Maximum Packet Size
	sessionStoreErrs prometheus.Counter            // failed writes to the session store
	bridgeUp         *prometheus.GaugeVec          // by bridge
	received         prometheus.CounterFunc        // bytes from clients (the broker's count)
	sent             prometheus.CounterFunc        // bytes to clients (the broker's count and ackBytes)
	delivered        prometheus.CounterFunc
	ackBytes         atomic.Int64 // bytes of the acknowledgements ferry writes itself (the broker counts the rest)
	dropped          [nDropReasons]atomic.Int64
}

// newMetrics makes the front end's metrics; info returns the broker's
// counters (nil before the broker exists).
func newMetrics(reg prometheus.Registerer, info func() *system.Info) (*metrics, error) {
	stat := func(field func(*system.Info) *int64) func() float64 {
		return func() float64 {
			if i := info(); i != nil {
				return float64(atomic.LoadInt64(field(i)))
			}
			return 0
		}
	}
	m := &metrics{
		connections: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ferry_mqtt_connections", Help: "Connected MQTT clients (devices), over every MQTT listener."},
			stat(func(i *system.Info) *int64 { return &i.ClientsConnected })),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_mqtt_connects_total",
			Help: "MQTT CONNECT attempts, by result (accepted, bad_credentials, bad_username, not_authorized, bad_client_id, server_busy)."}, []string{"result"}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_mqtt_disconnects_total",
			Help: "MQTT connections ended, by reason (normal, or the protocol error or limit that closed them)."}, []string{"reason"}),
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_mqtt_publishes_total",
			Help: "MQTT publishes received, by QoS and result (stored, duplicate, unmatched, not_authorized, rate_limited, rejected, error, malformed)."}, []string{"qos", "result"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_mqtt_stored_bytes_total", Help: "Payload bytes of MQTT publishes stored in the log."}),
		ackWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ferry_mqtt_ack_wait_seconds",
			Help:    "Time from a QoS 1/2 publish's append to its acknowledgement (the wait for durability).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		bridgeUp:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ferry_mqtt_bridge_up", Help: "1 while an MQTT bridge-in is connected to its broker, by bridge."}, []string{"bridge"}),
		presenceErrs: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_mqtt_presence_event_errors_total", Help: "Presence events that could not be appended to the presence topic."}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_mqtt_pending_connections",
			Help: "MQTT connections accepted whose CONNECT packet has not arrived in full yet."}),
		preconnectV: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_mqtt_preconnect_closed_total",
			Help: "MQTT connections closed before their CONNECT was accepted or refused, by reason (timeout, packet_too_large, malformed, protocol_error, closed)."}, []string{"reason"}),
		subDenied: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_mqtt_subscribe_denied_total",
			Help: "Subscribe ACL refusals: SUBSCRIBE filters refused, and messages withheld from a subscriber whose ACL no longer allows their topic."}),
		queuedDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_mqtt_queued_dropped_total",
			Help: "Queued QoS 1/2 messages for subscribers dropped unsent, by reason (expired: their MQTT 5 message expiry passed; packet_too_large: over the client's Maximum Packet Size)."}, []string{"reason"}),
		sessionStoreErrs: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_mqtt_session_store_errors_total",
			Help: "Failed writes to the MQTT session store (sessions, subscriptions, queued and retained messages)."}),
	}
	m.expired = m.queuedDropped.WithLabelValues("expired")
	m.tooLarge = m.queuedDropped.WithLabelValues("packet_too_large")
	m.preconnect = map[string]prometheus.Counter{}
	for _, r := range preReasons {
		m.preconnect[r] = m.preconnectV.WithLabelValues(r)
	}
	m.received = prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ferry_mqtt_received_bytes_total", Help: "Bytes received from MQTT clients, over every MQTT listener."},
		stat(func(i *system.Info) *int64 { return &i.BytesReceived }))
	brokerSent := stat(func(i *system.Info) *int64 { return &i.BytesSent })
	m.sent = prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ferry_mqtt_sent_bytes_total", Help: "Bytes sent to MQTT clients, over every MQTT listener."},
		func() float64 { return brokerSent() + float64(m.ackBytes.Load()) })
	m.delivered = prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ferry_mqtt_delivered_messages_total",
		Help: "PUBLISH packets sent to subscribers (live and retained, resends included)."},
		stat(func(i *system.Info) *int64 { return &i.MessagesSent }))
	m.byResult = map[string]*[3]prometheus.Counter{}
	for _, r := range []string{resultStored, resultDuplicate, resultUnmatched, resultNotAuthorized, resultRateLimited, resultRejected, resultError, resultMalformed} {
		var cs [3]prometheus.Counter
		for q := range cs {
			cs[q] = m.publishes.WithLabelValues(qosLabel[q], r)
		}
		m.byResult[r] = &cs
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.connections, m.connects, m.disconnects, m.publishes, m.bytesIn, m.ackWait, m.presenceErrs, m.bridgeUp,
			m.received, m.sent, m.delivered, m.pending, m.preconnectV, m.subDenied, m.queuedDropped, m.sessionStoreErrs} {
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

// drop counts a publish dropped without its publisher being told.
func (m *metrics) drop(reason int) { m.dropped[reason].Add(1) }

// Dropped returns, by reason, how many publishes were dropped since the
// server started without their publisher being told (the publisher saw
// success or, for QoS 0, nothing): "unmatched" (no ingest rule and no
// default topic), "not_authorized" (refused by the ACL: QoS 0, or QoS 1/2
// under MQTT 3.1.1, which has no way to say so), "rate_limited" (QoS 0 over
// the device's rate) and "not_stored" (QoS 0 the log refused, for example
// at the disk budget, or that arrived while shutting down). Refusals the
// publisher is told of (MQTT 5 reason codes) are not drops.
func (s *Server) Dropped() map[string]int64 {
	out := make(map[string]int64, nDropReasons)
	for i, r := range dropReasons {
		out[r] = s.metrics.dropped[i].Load()
	}
	return out
}
