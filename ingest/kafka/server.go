package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// Options configure a Server.
type Options struct {
	// Log is the storage engine requests are served from.
	Log *flog.Log
	// Advertised is the host:port given to clients in Metadata and
	// FindCoordinator; empty means the listener's own address, with a
	// wildcard host (":9092", "0.0.0.0", "::") replaced by the machine's
	// hostname, as Kafka advertises a listener without a host.
	Advertised string
	// MaxRequestBytes caps one request's size; larger frames close the
	// connection before anything is allocated. 0 means 100 MiB.
	MaxRequestBytes int32
	// AutoCreateTopics lets Metadata and Produce create unknown topics
	// with DefaultPartitions partitions (0 means 1).
	AutoCreateTopics  bool
	DefaultPartitions int32
	// ProducerIDs allocates idempotent producer ids; nil disables
	// InitProducerId.
	ProducerIDs *ProducerIDs
	// Groups coordinates consumer groups; nil leaves the group APIs
	// unadvertised and unserved.
	Groups *Groups
	// Registerer receives the server's metrics; nil keeps them private.
	Registerer prometheus.Registerer
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// NodeID is this broker's id in Metadata.
	NodeID int32
	// Cluster is the view of the brokers this node serves among and of who
	// leads what (cluster.go); nil means this node alone.
	Cluster Cluster
	// Topics applies topic changes; nil means Log directly (a node
	// alone). A cluster's applies them through its controller.
	Topics TopicAdmin
	// ClusterID is reported in Metadata.
	ClusterID string
	// Replication is this node's replica manager (replication.go); nil
	// means no partition is replicated: every offset up to the end is
	// readable, acks=all waits for the leader's durability only.
	Replication Replication

	// SASLMechanisms, when set (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), make
	// every connection authenticate before any request but ApiVersions,
	// SaslHandshake and SaslAuthenticate (sasl.go); Credentials checks the
	// secrets and must then be set.
	SASLMechanisms []string
	Credentials    Credentials
	// ACLs, with SASL on, authorise every request touching a topic, a group
	// or the cluster (acl.go) and serve the ACL APIs; nil with SASL on lets
	// every authenticated principal do everything. Without SASL there is no
	// principal, and ACLs are not checked. The ACL APIs are served either
	// way: without both they answer SECURITY_DISABLED.
	ACLs ACLs
	// SuperUsers are principals ("User:NAME", or NAME) that ACLs do not
	// restrict.
	SuperUsers []string
	// AuthFailureDelay is how long a failed authentication waits before it
	// is answered (Kafka's connection.failed.authentication.delay.ms);
	// 0 means 100 ms, negative none.
	AuthFailureDelay time.Duration

	// Deadlines on a connection's reads (conn.go), each closure counted in
	// ferry_kafka_connection_timeouts_total by reason. IdleTimeout closes a
	// connection that starts no request for that long (Kafka's
	// connections.max.idle.ms); 0 means 10 minutes, negative none.
	// RequestTimeout is how long the rest of a request may take once its
	// first byte arrived (a client trickling a frame is cut off); 0 means
	// 30 s, negative none. AuthTimeout, with SASL on, closes a connection not
	// authenticated that long after it was accepted; 0 means 10 s, negative
	// none.
	IdleTimeout    time.Duration
	RequestTimeout time.Duration
	AuthTimeout    time.Duration
	// ProduceQuota caps each principal's produce rate, in record bytes per
	// second (quota.go); 0 means no quota. ProduceQuotaBurst is what a
	// principal may send at once above it; 0 means one second's worth.
	ProduceQuota      int64
	ProduceQuotaBurst int64
}

// Defaults of the connection deadlines in Options.
const (
	DefaultIdleTimeout    = 10 * time.Minute
	DefaultRequestTimeout = 30 * time.Second
	DefaultAuthTimeout    = 10 * time.Second
)

// orDefault is d, def for 0, and 0 (none) for a negative d.
func orDefault(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// Server serves the Kafka protocol. Start it with Serve; Close stops it.
type Server struct {
	opts    Options
	log     *flog.Log
	logger  *slog.Logger
	metrics *metrics

	ctx    context.Context // cancelled by Close: wakes long polls
	cancel context.CancelFunc

	recordsServed atomic.Int64          // records fetches returned (RecordsServed)
	fetchWarn     rateLog[fetchWarnKey] // the "fetch failed" line (ratelog.go)
	deniedLog     rateLog[deniedKey]    // the "refused by an ACL" line

	cluster Cluster    // Options.Cluster, or soloCluster
	topics  TopicAdmin // Options.Topics, or Log

	pipeline   pipelineLimits  // of each connection's answer queue (pipeline.go)
	sasl       *saslServer     // nil: no SASL
	quotas     *produceQuotas  // nil: no produce quota
	superUsers map[string]bool // principals ACLs do not restrict
	dyn        brokerDynamic   // broker configs altered live (brokerdynamic.go)

	mu     sync.Mutex
	ln     net.Listener
	adv    string // what clients are told to connect to, settled by Serve
	conns  map[*conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// NewServer makes a server; it does not listen until Serve.
func NewServer(opts Options) (*Server, error) {
	if opts.Log == nil {
		return nil, errors.New("kafka: Options.Log is nil")
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = 100 << 20
	}
	if opts.DefaultPartitions <= 0 {
		opts.DefaultPartitions = 1
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ClusterID == "" {
		opts.ClusterID = "ferry"
	}
	if opts.AuthFailureDelay == 0 {
		opts.AuthFailureDelay = 100 * time.Millisecond
	}
	opts.IdleTimeout = orDefault(opts.IdleTimeout, DefaultIdleTimeout)
	opts.RequestTimeout = orDefault(opts.RequestTimeout, DefaultRequestTimeout)
	opts.AuthTimeout = orDefault(opts.AuthTimeout, DefaultAuthTimeout)
	if opts.ProduceQuota < 0 || opts.ProduceQuotaBurst < 0 {
		return nil, errors.New("kafka: a negative produce quota")
	}
	ss, err := newSASLServer(opts.SASLMechanisms, opts.Credentials)
	if err != nil {
		return nil, err
	}
	supers := map[string]bool{}
	for _, u := range opts.SuperUsers {
		if !strings.HasPrefix(u, "User:") {
			u = "User:" + u
		}
		supers[u] = true
	}
	m, err := newMetrics(opts.Registerer, opts.Groups, opts.Log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &Server{
		opts: opts, log: opts.Log, logger: opts.Logger.With("component", "kafka"), metrics: m,
		ctx: ctx, cancel: cancel, conns: map[*conn]struct{}{}, sasl: ss, superUsers: supers,
		quotas:   newProduceQuotas(opts.ProduceQuota, opts.ProduceQuotaBurst),
		pipeline: pipelineLimits{answers: maxPipelined, bytes: maxPipelinedBytes},
		cluster:  opts.Cluster, topics: opts.Topics,
	}
	if srv.cluster == nil {
		srv.cluster = soloCluster{srv}
	}
	if srv.topics == nil {
		srv.topics = opts.Log
	}
	return srv, nil
}

// Serve accepts connections on ln until Close. It returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.ln = ln
	s.wg.Add(1) // Serve itself, so Close waits for the accept loop
	s.mu.Unlock()
	defer s.wg.Done()
	adv, wildcard := advertisedAddr(s.opts.Advertised, ln.Addr())
	s.mu.Lock()
	s.adv = adv
	s.mu.Unlock()
	s.logger.Info("kafka listener started", "addr", ln.Addr().String(), "advertised", adv)
	if host, _, _ := net.SplitHostPort(adv); wildcard && loopbackName(host) {
		s.logger.Warn("the Kafka listener is bound to every address but advertises a loopback name: "+
			"clients on other machines will connect to themselves; set --kafka-advertised to a name or address they can reach",
			"advertised", adv)
	}
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("kafka listener: %w", err)
		}
		c := newConn(s, nc)
		if !s.track(c) {
			nc.Close()
			return nil
		}
		go func() {
			defer s.untrack(c)
			c.serve()
		}()
	}
}

// track registers a connection about to be served, so Close closes it and
// waits for it; false if the server is closed.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.metrics.connections.Inc()
	return true
}

// untrack is a tracked connection's end.
func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.metrics.connections.Dec()
	s.wg.Done()
}

// Addr is the listener's address (nil before Serve).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Close stops accepting, wakes and closes every connection, and waits for
// every goroutine of the server to end.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return err
}

// hostname is os.Hostname; tests replace it.
var hostname = os.Hostname

// advertisedAddr is the host:port clients are told to connect to for a
// listener at addr: the configured address, else the listener's; a
// wildcard host (empty, 0.0.0.0, ::) becomes the machine's hostname, as
// Kafka's default advertised listener does ("localhost" if it has none).
// wildcard reports that the listener itself is bound to every address.
func advertisedAddr(configured string, addr net.Addr) (adv string, wildcard bool) {
	listen := addr.String()
	if h, _, err := net.SplitHostPort(listen); err == nil {
		wildcard = isWildcard(h)
	}
	adv = configured
	if adv == "" {
		adv = listen
	}
	host, port, err := net.SplitHostPort(adv)
	if err != nil || !isWildcard(host) {
		return adv, wildcard
	}
	host, err = hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port), wildcard
}

func isWildcard(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// loopbackName reports whether host names only this machine: localhost, a
// loopback address, or a name that resolves to loopback addresses only.
func loopbackName(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil || len(addrs) == 0 {
		return false // unknown here; other machines may resolve it
	}
	for _, a := range addrs {
		if !a.IP.IsLoopback() {
			return false
		}
	}
	return true
}

// advertised returns the host and port clients should connect to.
func (s *Server) advertised() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.adv != "" {
		return s.adv
	}
	if s.opts.Advertised != "" {
		return s.opts.Advertised
	}
	return "127.0.0.1:9092"
}

func (s *Server) advertisedHostPort() (string, int32) {
	host, port, err := net.SplitHostPort(s.advertised())
	if err != nil {
		return s.advertised(), 9092
	}
	p, _ := strconv.Atoi(port)
	return host, int32(p)
}

// handler serves one API key.
type handler struct {
	min, max int16
	serve    func(s *Server, ctx context.Context, c *conn, req kmsg.Request) (kmsg.Response, error)
}

// handlers is filled by each API file's init: the single source of what
// ApiVersions advertises.
var handlers = map[int16]handler{}

func register(key, min, max int16, fn func(*Server, context.Context, *conn, kmsg.Request) (kmsg.Response, error)) {
	handlers[key] = handler{min: min, max: max, serve: fn}
}

// needs holds, for API keys that depend on an optional part of the server
// (the group coordinator, the producer-id allocator), whether this server
// has it; such keys are neither advertised nor served without it.
var needs = map[int16]func(*Server) bool{}

func registerGroupAPI(key, min, max int16, fn func(*Server, context.Context, *conn, kmsg.Request) (kmsg.Response, error)) {
	register(key, min, max, fn)
	needs[key] = func(s *Server) bool { return s.opts.Groups != nil }
}

// serves reports whether this server handles an API key.
func (s *Server) serves(key int16) bool {
	if _, ok := handlers[key]; !ok {
		return false
	}
	need, ok := needs[key]
	return !ok || need(s)
}

// supportedKeys lists the API keys this server handles, in order.
func (s *Server) supportedKeys() []int16 {
	keys := make([]int16, 0, len(handlers))
	for k := range handlers {
		if s.serves(k) {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}
