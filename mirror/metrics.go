package mirror

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

type receiverMetrics struct {
	edges     prometheus.Gauge
	rejected  *prometheus.CounterVec // by reason
	chunks    prometheus.Counter
	acks      prometheus.Counter
	wireBytes prometheus.Counter
	rawBytes  prometheus.Counter
	trimmed   prometheus.Counter
	// The metrics by edge are fleet.go's, read from its state at scrape
	// time so that an edge forgotten leaves no series behind.
}

func newReceiverMetrics(reg prometheus.Registerer) (*receiverMetrics, error) {
	m := &receiverMetrics{
		edges: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_mirror_receiver_edges", Help: "Edges connected to the mirror receiver."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_mirror_receiver_rejected_total",
			Help: "Edge connections ended by the receiver, by reason: tls, auth, malformed, protocol, chunk (the edge's fault), center (the center failed storing)."}, []string{"reason"}),
		chunks:    prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_mirror_receiver_chunks_total", Help: "Chunks received and stored."}),
		acks:      prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_mirror_receiver_acks_total", Help: "Chunks acknowledged once durable."}),
		wireBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_mirror_receiver_wire_bytes_total", Help: "Chunk bytes as received (compressed)."}),
		rawBytes:  prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_mirror_receiver_raw_bytes_total", Help: "Chunk bytes uncompressed."}),
		trimmed: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_mirror_receiver_trimmed_bytes_total",
			Help: "Bytes of resent chunks the center already had, not stored again."}),
	}
	return m, register(reg, m.edges, m.rejected, m.chunks, m.acks, m.wireBytes, m.rawBytes, m.trimmed)
}

// linkState is what the sender knows of its link; Status and the
// metrics below both read it.
type linkState struct {
	up        atomic.Bool
	lastAckNs atomic.Int64 // when the center last acknowledged, Unix ns; 0: never
	wireBytes atomic.Int64 // chunk bytes sent, compressed
	rawBytes  atomic.Int64 // the same before compression
	errs      errorState
}

type senderMetrics struct {
	linkUp    prometheus.GaugeFunc
	chunks    prometheus.Counter
	acked     prometheus.Counter
	wireBytes prometheus.CounterFunc
	rawBytes  prometheus.CounterFunc
	reconnect prometheus.Counter
	linkErrs  *prometheus.CounterVec // sessions ended by a failure, by reason
	readErrs  prometheus.Counter     // partitions stopped by a local read failure
	backlog   *prometheus.GaugeVec   // records not yet acknowledged, by topic and partition
	lastAck   prometheus.GaugeFunc
	dropped   *prometheus.CounterVec // records dropped unshipped by the disk budget, by topic
	deleted   *prometheus.CounterVec // records deleted unshipped by DeleteRecords, by topic
	gaps      prometheus.Counter
}

func newSenderMetrics(reg prometheus.Registerer, st *linkState, kafka bool) (*senderMetrics, error) {
	m := &senderMetrics{
		linkUp: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ferry_mirror_link_up", Help: "1 while the mirror is connected to the center."},
			func() float64 {
				if st.up.Load() {
					return 1
				}
				return 0
			}),
		chunks: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_mirror_chunks_sent_total", Help: "Chunks sent to the center."}),
		acked:  prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_mirror_chunks_acked_total", Help: "Chunks the center acknowledged as durable."}),
		wireBytes: prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ferry_mirror_wire_bytes_total", Help: "Chunk bytes sent on the link (compressed)."},
			func() float64 { return float64(st.wireBytes.Load()) }),
		rawBytes: prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ferry_mirror_raw_bytes_total", Help: "Chunk bytes before compression."},
			func() float64 { return float64(st.rawBytes.Load()) }),
		reconnect: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_mirror_connects_total", Help: "Connections made to the center (the first and every reconnection)."}),
		backlog: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ferry_mirror_backlog_records",
			Help: "Records of a partition the center has not acknowledged."}, []string{"topic", "partition"}),
		lastAck: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ferry_mirror_last_ack_timestamp_seconds", Help: "When the center last acknowledged a chunk."},
			func() float64 { return float64(st.lastAckNs.Load()) / 1e9 }),
	}
	m.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_mirror_dropped_records_total",
		Help: "Records the disk budget's drop-oldest policy deleted before the center had them (lost; should stay 0)."}, []string{"topic"})
	m.deleted = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_mirror_deleted_records_total",
		Help: "Records a DeleteRecords request deleted before the center had them (told to the center as a gap)."}, []string{"topic"})
	m.gaps = prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_mirror_gaps_sent_total", Help: "Gaps (offset ranges the edge no longer has) told to the center, or to a Kafka target as a ferry.gap header."})
	m.linkErrs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_mirror_link_errors_total",
		Help: "Connections to the center that failed or ended in an error (each is retried after a backoff), by reason: dial, tls, refused, ack_timeout, center, protocol, link."}, []string{"reason"})
	m.readErrs = prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_mirror_read_errors_total",
		Help: "Times a partition stopped shipping because the edge could not read its own log there (a corrupt segment, a partition disabled after a failed fsync); the others ship on, and the next session retries it."})
	for _, r := range linkErrorReasons {
		m.linkErrs.WithLabelValues(r)
	}
	return m, register(reg, m.linkUp, m.chunks, m.acked, m.wireBytes, m.rawBytes, m.reconnect, m.linkErrs, m.readErrs, m.backlog, m.lastAck, m.dropped, m.deleted, m.gaps)
}

func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
