package edge

import (
	"io"
	"net/http"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The node's own metrics: what the log, the mirror sender and the device
// registry know, read at scrape time (nothing runs between scrapes), the
// log's fsync latency, and the admin listener's traffic. The front ends
// and the mirror register their own (ferry_kafka_*, ferry_mqtt_*,
// ferry_mirror_*). Every metric is listed in docs/monitoring.md's Metrics table.

// nodeMetrics are the metrics the node feeds as things happen.
type nodeMetrics struct {
	fsync         prometheus.Histogram
	adminRequests *prometheus.CounterVec // by route and code
	adminIn       *prometheus.CounterVec // by route
	adminOut      *prometheus.CounterVec // by route
	conns         *connMetrics           // every listener's connections
}

func newNodeMetrics() *nodeMetrics {
	return &nodeMetrics{
		conns: newConnMetrics(),
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ferry_log_fsync_duration_seconds",
			Help:    "Time of each group commit's fsyncs (one observation per partition flush that had data to make durable).",
			Buckets: fsyncBuckets}),
		adminRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_admin_requests_total",
			Help: "Admin listener requests, by route (the pattern that served it; unmatched: none did, or refused before routing) and status code."},
			[]string{"route", "code"}),
		adminIn: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_admin_received_bytes_total",
			Help: "Bytes of request bodies the admin listener read, by route."}, []string{"route"}),
		adminOut: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_admin_sent_bytes_total",
			Help: "Bytes of response bodies the admin listener wrote, by route."}, []string{"route"}),
	}
}

// fsyncBuckets run from 100 µs (a fast SSD) to 30 s: an SD card or a
// worn eMMC under write-back pressure takes seconds per fsync, and a
// p99 alert on a histogram that ended at 3.3 s could not see it.
var fsyncBuckets = append(prometheus.ExponentialBuckets(0.0001, 2, 19), 30)

// buildLabels are ferry_build_info's labels: version and mode as
// GET /api/status reports them.
func buildLabels(opts Options) prometheus.Labels {
	version, mode := opts.Version, opts.Mode
	if version == "" {
		version = "dev"
	}
	if mode == "" {
		mode = "edge"
	}
	return prometheus.Labels{"version": version, "goversion": runtime.Version(), "mode": mode}
}

// observeFsync is the log's Options.OnSync.
func (m *nodeMetrics) observeFsync(d time.Duration) { m.fsync.Observe(d.Seconds()) }

// registerMetrics registers the node's metrics once its parts are open.
// The collector reads n's parts at scrape time; start sets them before the
// admin listener serves, and nothing changes them after.
func (n *Node) registerMetrics() {
	l := n.log
	n.registry.MustRegister(
		n.metrics.fsync, n.metrics.adminRequests, n.metrics.adminIn, n.metrics.adminOut,
		n.metrics.conns.open, n.metrics.conns.refused, n.metrics.conns.accepted, n.metrics.conns.acceptErrs,
		nodeCollector{n},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ferry_log_disk_bytes", Help: "Bytes of the log's segments on disk."},
			func() float64 { return float64(l.Size()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ferry_log_disk_budget_bytes", Help: "The log's data-disk budget (--max-disk-bytes; 0: none)."},
			func() float64 { max, _ := l.DiskBudget(); return float64(max) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ferry_log_appends_blocked",
			Help: "1 while appends are refused because the disk budget is reached and everything left is unshipped (block policy)."},
			func() float64 {
				if _, blocked := l.DiskBudget(); blocked {
					return 1
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ferry_build_info",
			Help:        "1, with the node's version, Go version and mode (edge or full) as labels: what runs where.",
			ConstLabels: buildLabels(n.opts)},
			func() float64 { return 1 }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ferry_under_replicated_partitions",
			Help: "Partitions this node leads with fewer in-sync replicas than replicas (ferry_cluster_under_replicated_partitions); always 0 on a node alone, every partition's one replica and leader."},
			func() float64 {
				if n.cluster == nil {
					return 0
				}
				return float64(n.cluster.UnderReplicated())
			}),
	)
	if n.kafka != nil {
		k := n.kafka
		n.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ferry_kafka_fetched_records_total",
			Help: "Records Kafka fetches returned (records out): per partition, from the offset asked for to the end of the last batch sent."},
			func() float64 { return float64(k.RecordsServed()) }))
	}
}

var (
	partLabels          = []string{"topic", "partition"}
	descPartitionBytes  = prometheus.NewDesc("ferry_log_partition_bytes", "Bytes of a partition's segment files.", partLabels, nil)
	descStartOffset     = prometheus.NewDesc("ferry_log_start_offset", "A partition's first offset still held (Kafka's log start offset).", partLabels, nil)
	descEndOffset       = prometheus.NewDesc("ferry_log_end_offset", "A partition's end offset: the offset its next record will get, so the records appended to it ever (its rate is records in per second).", partLabels, nil)
	descDropped         = prometheus.NewDesc("ferry_records_dropped_total", "Records dropped by a policy, or publishes dropped without the publisher being told, by reason (disk_budget, mqtt_unmatched, mqtt_not_authorized, mqtt_rate_limited, mqtt_not_stored). Should stay 0.", []string{"reason"}, nil)
	descBacklogBytes    = prometheus.NewDesc("ferry_mirror_backlog_bytes", "Bytes of a partition the center has not acknowledged (whole segments from the one holding the first unshipped record: an upper bound).", partLabels, nil)
	descOldestUnshipped = prometheus.NewDesc("ferry_mirror_oldest_unshipped_age_seconds", "Age of a partition's oldest record the center has not acknowledged (0: none).", partLabels, nil)
	descCompression     = prometheus.NewDesc("ferry_mirror_compression_ratio", "Chunk bytes before compression over bytes sent on the link, since the node started (absent until a chunk is sent).", nil, nil)
	descDevices         = prometheus.NewDesc("ferry_devices_registered", "Devices in the device registry (ferry devices add).", nil, nil)
	descDevicesOnline   = prometheus.NewDesc("ferry_devices_online", "Registered devices with at least one MQTT connection open.", nil, nil)
)

// nodeCollector reads, at each scrape, the log's partitions, the records
// dropped by any policy, the mirror's backlog and the device registry.
type nodeCollector struct{ n *Node }

func (c nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPartitionBytes, descStartOffset, descEndOffset, descDropped,
		descBacklogBytes, descOldestUnshipped, descCompression, descDevices, descDevicesOnline} {
		ch <- d
	}
}

func (c nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, t := range n.log.Topics() {
		for id := int32(0); id < t.Partitions; id++ {
			p, err := n.log.Partition(t.Name, id)
			if err != nil {
				continue // deleted meanwhile
			}
			ps := strconv.Itoa(int(id))
			gauge(descPartitionBytes, float64(p.Size()), t.Name, ps)
			gauge(descStartOffset, float64(p.StartOffset()), t.Name, ps)
			gauge(descEndOffset, float64(p.EndOffset()), t.Name, ps)
		}
	}

	dropped := func(reason string, v int64) {
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(v), reason)
	}
	dropped("disk_budget", n.log.DroppedRecords())
	if n.mqtt != nil {
		for reason, v := range n.mqtt.Dropped() {
			dropped("mqtt_"+reason, v)
		}
	}

	if n.sender != nil {
		st := n.sender.Status()
		for _, p := range st.Partitions {
			ps := strconv.Itoa(int(p.Partition))
			gauge(descBacklogBytes, float64(p.BacklogBytes), p.Topic, ps)
			gauge(descOldestUnshipped, p.OldestUnshippedAge, p.Topic, ps)
		}
		if st.WireBytes > 0 {
			gauge(descCompression, st.RawBytes/st.WireBytes)
		}
	}

	if n.devices != nil {
		if all, err := n.devices.PresenceAll(); err == nil {
			online := 0
			for _, p := range all {
				if p.Online {
					online++
				}
			}
			gauge(descDevices, float64(len(all)))
			gauge(descDevicesOnline, float64(online))
		}
	}
}

// instrumentAdmin counts the admin listener's requests by route and status
// code, and the bytes they read and wrote.
func (n *Node) instrumentAdmin(next http.Handler) http.Handler {
	m := n.metrics
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w, code: http.StatusOK}
		var body *countingBody
		if r.Body != nil && r.Body != http.NoBody {
			body = &countingBody{ReadCloser: r.Body}
			r.Body = body
		}
		next.ServeHTTP(cw, r)
		route := r.Pattern // set by the mux that served the request
		if route == "" {
			route = "unmatched"
		}
		m.adminRequests.WithLabelValues(route, strconv.Itoa(cw.code)).Inc()
		m.adminOut.WithLabelValues(route).Add(float64(cw.n))
		if body != nil {
			m.adminIn.WithLabelValues(route).Add(float64(body.n))
		}
	})
}

// countingWriter records a response's status code and body bytes.
type countingWriter struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
	n           int64
}

func (w *countingWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.code, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// Flush lets handlers that stream flush through the wrapper.
func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingBody counts the bytes a handler reads of a request body.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}
