package edge

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ConnLimits caps the connections one listener holds open: Max in all,
// PerIP from one source address (0: no cap). A connection past a cap is
// closed as soon as it is accepted, before TLS or any protocol byte, so a
// flood costs the node a file descriptor for an instant and nothing more.
type ConnLimits struct {
	Max   int
	PerIP int
}

// connMetrics count every listener's connections.
type connMetrics struct {
	open       *prometheus.GaugeVec   // by listener
	refused    *prometheus.CounterVec // by listener and reason (max, per_ip)
	accepted   *prometheus.CounterVec // by listener
	acceptErrs *prometheus.CounterVec // by listener
}

func newConnMetrics() *connMetrics {
	return &connMetrics{
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ferry_listener_connections",
			Help: "Connections a listener holds open (kafka, mqtt, mqtt-tls, mqtt-ws, admin, mirror)."}, []string{"listener"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_listener_refused_connections_total",
			Help: "Connections closed on accept because a cap was reached: max (--max-connections) or per_ip (--max-connections-per-ip)."}, []string{"listener", "reason"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_listener_accepted_connections_total",
			Help: "Connections a listener accepted (refused ones not counted)."}, []string{"listener"}),
		acceptErrs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_listener_accept_errors_total",
			Help: "Accepts that failed while the listener was open (out of file descriptors, say), each retried after a backoff."}, []string{"listener"}),
	}
}

// limitListener enforces ConnLimits on a listener.
type limitListener struct {
	net.Listener
	name       string
	limits     ConnLimits
	logger     *slog.Logger
	open       prometheus.Gauge
	okC        prometheus.Counter
	maxC       prometheus.Counter
	ipC        prometheus.Counter
	acceptErrs prometheus.Counter

	mu    sync.Mutex
	total int
	byIP  map[string]int // open connections by source address

	lastWarn atomic.Int64 // unix ns of the last refusal logged at warn
}

// limit wraps ln with limits (a listener without caps still counts its
// connections).
func limit(ln net.Listener, name string, limits ConnLimits, m *connMetrics, logger *slog.Logger) *limitListener {
	return &limitListener{Listener: ln, name: name, limits: limits, logger: logger, byIP: map[string]int{},
		open: m.open.WithLabelValues(name), okC: m.accepted.WithLabelValues(name),
		maxC: m.refused.WithLabelValues(name, "max"), ipC: m.refused.WithLabelValues(name, "per_ip"),
		acceptErrs: m.acceptErrs.WithLabelValues(name)}
}

// Accept returns the next connection within the caps; connections past
// them are closed here and never returned. An accept that fails while the
// listener is open (EMFILE, ENFILE, ENOBUFS, a connection aborted before it
// was accepted) is retried after a backoff of 5 ms doubling to 1 s, as
// net/http does: the front ends stop serving when Accept returns an error,
// so only a closed listener's error is returned.
func (l *limitListener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.acceptErrs.Inc()
			l.warn("accept failed; retrying", "err", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		ip := sourceIP(c.RemoteAddr())
		l.mu.Lock()
		reason := ""
		switch {
		case l.limits.Max > 0 && l.total >= l.limits.Max:
			reason = "max"
		case l.limits.PerIP > 0 && l.byIP[ip] >= l.limits.PerIP:
			reason = "per_ip"
		default:
			l.total++
			l.byIP[ip]++
		}
		l.mu.Unlock()
		if reason == "" {
			l.open.Inc()
			l.okC.Inc()
			return &limitConn{Conn: c, l: l, ip: ip}, nil
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // a reset: nothing lingers for a flood
		}
		c.Close()
		if reason == "max" {
			l.maxC.Inc()
		} else {
			l.ipC.Inc()
		}
		l.warn("connections refused: a cap is reached (ferry_listener_refused_connections_total counts them all)",
			"reason", reason, "source", ip, "max", l.limits.Max, "per_ip", l.limits.PerIP)
	}
}

// warn logs at most one warning every 10 s: a flood must not flood the log
// (the metrics count every event).
func (l *limitListener) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	if last := l.lastWarn.Load(); now-last > int64(10*time.Second) && l.lastWarn.CompareAndSwap(last, now) {
		l.logger.Warn(msg, append([]any{"listener", l.name}, args...)...)
	}
}

func (l *limitListener) release(ip string) {
	l.mu.Lock()
	l.total--
	if l.byIP[ip]--; l.byIP[ip] <= 0 {
		delete(l.byIP, ip)
	}
	l.mu.Unlock()
	l.open.Dec()
}

// limitConn gives its place back once, when closed.
type limitConn struct {
	net.Conn
	l    *limitListener
	ip   string
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}

// errNotSocket is SyscallConn's answer for a connection that is no socket.
var errNotSocket = errors.New("connection is not a socket")

// SyscallConn is the socket's, so that what reads through the limit can
// still wait on the socket itself (the MQTT front end's reader holds no
// buffer while it waits: ingest/mqtt/reader.go).
func (c *limitConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errNotSocket
}

// sourceIP is the address part of a remote address.
func sourceIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
