package mqtt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mochi-mqtt/server/v2/system"
	"github.com/prometheus/client_golang/prometheus"

	flog "ferry/log"
)

// Authenticator identifies devices and decides what they may do. The edge
// node backs it with the device registry; nil in Options accepts everyone.
type Authenticator interface {
	// Authenticate identifies a connecting client from its user name and
	// password or, under mutual TLS, its certificate's common name, and
	// returns its device id. It returns an error wrapping
	// ErrBadCredentials or ErrNotAuthorized to refuse it.
	Authenticate(username string, password []byte, certCN string) (device string, err error)
	// CanPublish reports whether device may publish to topic.
	CanPublish(device, topic string) bool
	// CanSubscribe reports whether device may subscribe to filter (and
	// receive a publish on a topic, asked with that topic as the filter).
	CanSubscribe(device, filter string) bool
	// Allow reports whether device is within its publish rate; it takes
	// one token when it is.
	Allow(device string) bool
}

// Presence is told when devices come and go and what they send. Calls are
// on the publish path: they must not block on disk.
type Presence interface {
	Connected(device, remoteAddr string, at time.Time)
	Disconnected(device string, at time.Time)
	CountIn(device string, msgs, bytes uint64)
}

var (
	// ErrBadCredentials is what an Authenticator wraps for an unknown
	// device or a wrong password (CONNACK "bad user name or password").
	ErrBadCredentials = errors.New("bad user name or password")
	// ErrNotAuthorized is what an Authenticator wraps for a known device
	// that may not connect, e.g. a disabled one (CONNACK "not authorized").
	ErrNotAuthorized = errors.New("not authorized")
)

// Options configure a Server.
type Options struct {
	// Log is where publishes are appended.
	Log *flog.Log
	// Rules route publishes to log topics; the first match wins.
	Rules []Rule
	// DefaultTopic receives publishes no rule matches, keyed by
	// DefaultKey (empty: the client id); "" drops them (counted in
	// ferry_mqtt_publishes_total{result="unmatched"}).
	DefaultTopic string
	DefaultKey   string
	// DefaultPartitions is the partition count of topics created for rules
	// that do not give one; 0 means 1.
	DefaultPartitions int32
	// SessionDB is the bbolt file holding persistent sessions,
	// subscriptions, retained messages and queued outbound messages
	// across restarts; "" keeps them in memory.
	SessionDB string
	// Auth authenticates devices and checks ACLs; nil accepts every
	// client and allows everything (logged as a warning).
	Auth Authenticator
	// Presence is told of connects, disconnects and traffic; may be nil.
	Presence Presence
	// PresenceTopic, when set, receives a JSON record for every connect
	// and disconnect, keyed by device id.
	PresenceTopic string
	// MaxPacketSize caps one MQTT packet; larger ones close the
	// connection. 0 means 1 MiB.
	MaxPacketSize uint32
	// ReceiveMaximum is the number of QoS 1/2 publishes a client may have
	// unacknowledged (advertised to MQTT 5 clients); 0 means 1024.
	ReceiveMaximum uint16
	// MaxConnections caps connected clients (CONNACK "server busy" past
	// it); 0 means no cap.
	MaxConnections int64
	// ConnectTimeout closes connections that do not send CONNECT in time;
	// 0 means 10 s.
	ConnectTimeout time.Duration
	// Now is the wall clock of the times the front end writes down: each
	// record's ingest timestamp, presence events and the registry's last
	// seen; nil means time.Now. Message and session expiry, keepalives
	// and timeouts stay on the kernel's clock (mochi's own).
	Now func() time.Time
	// Bridges subscribe to other MQTT brokers and ingest what they
	// receive through the same rules.
	Bridges []Bridge
	// Registerer receives the server's metrics; nil keeps them private.
	Registerer prometheus.Registerer
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
}

// dedupeRecovery is how far back before each partition's newest record a
// restart reads publishes whose acknowledgement it may have cut off.
const dedupeRecovery = 30 * time.Second

// Server is the MQTT broker and ingest front end. Make it with New, give
// it listeners with Serve, stop it with Close.
type Server struct {
	opts    Options
	log     *flog.Log
	logger  *slog.Logger
	metrics *metrics
	router  *router
	dedupe  *dedupe
	broker  *mqtt.Server
	inline  *mqtt.Client // re-injects stored QoS 1/2 publishes for delivery
	sess    *sessions    // queued and in-flight outbound messages, and the session store
	hook    *hook
	mochi   mochiInternals // the broker's hook list and delayed wills (connection.go)
	sw      sweeper        // offline sessions, for the expiry sweep (sweep.go)
	swept   chan struct{}  // closed when sweepLoop has returned
	churn   churnTracker   // connects and disconnects, for releasing memory once they settle (quiet.go)
	writers sync.WaitGroup // delivery writers (writer.go)

	conns       sync.Map // *mqtt.Client → *conn
	closing     atomic.Bool
	pubMu       sync.RWMutex    // held shared by publishes in flight, exclusively by Close
	acks        sync.WaitGroup  // acknowledgement drains
	drains      atomic.Int64    // drain goroutines started (tests)
	groups      sync.Map        // *flog.Partition → *group: group commit of publishes (group.go)
	groupsWg    sync.WaitGroup  // the groups' committers
	groupCtx    context.Context // ends once Close no longer waits for commits
	groupCancel context.CancelFunc
	bridges     []*bridge
	done        chan struct{}
	quit        chan struct{} // closed when Close begins: committers and the sweep leave
	once        sync.Once
	lnMu        sync.Mutex
	lnSeq       int
	lnIDs       []string // every listener added to the broker
	bufPool     sync.Pool
	fastPublish bool // QoS 1/2 publishes skip mochi's hook chain (publish.go)

	// establishHook, if set (by tests), is called at named points of a
	// connection's establishment (establish).
	establishHook atomic.Pointer[func(point string, cl *mqtt.Client)]

	topics map[string]int32 // the topics the rules, the default rule and presence write to, and their partitions
}

// New validates the rules, creates the topics they name, opens the
// session store and starts the broker without listeners.
func New(opts Options) (*Server, error) {
	if opts.Log == nil {
		return nil, errors.New("mqtt: Options.Log is nil")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.DefaultPartitions <= 0 {
		opts.DefaultPartitions = 1
	}
	if opts.MaxPacketSize == 0 {
		opts.MaxPacketSize = 1 << 20
	}
	if opts.ReceiveMaximum == 0 {
		opts.ReceiveMaximum = 1024
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r, err := newRouter(opts.Rules, opts.DefaultTopic, opts.DefaultKey, opts.DefaultPartitions)
	if err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	s := &Server{opts: opts, log: opts.Log, logger: opts.Logger, router: r,
		dedupe: newDedupe(int(opts.ReceiveMaximum)), done: make(chan struct{}), quit: make(chan struct{}),
		sw: sweeper{offline: map[*mqtt.Client]struct{}{}}, swept: make(chan struct{})}
	s.groupCtx, s.groupCancel = context.WithCancel(context.Background())
	s.churn.quiet.Store(int64(releaseQuiet))
	s.churn.min.Store(releaseChurn)
	m, err := newMetrics(opts.Registerer, func() *system.Info {
		if s.broker == nil {
			return nil
		}
		return s.broker.Info
	})
	if err != nil {
		return nil, err
	}
	s.metrics = m
	if err := s.ensureTopics(); err != nil {
		return nil, err
	}
	if n, err := s.recoverDedupe(dedupeRecovery); err != nil {
		return nil, fmt.Errorf("mqtt: reading back recent publishes: %w", err)
	} else if n > 0 {
		s.logger.Info("mqtt: recent QoS 1/2 publishes read back, so retransmissions after the restart are not stored twice", "publishes", n)
	}

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = opts.MaxPacketSize
	caps.ReceiveMaximum = opts.ReceiveMaximum
	if opts.MaxConnections > 0 {
		caps.MaximumClients = opts.MaxConnections
	}
	// Each client gets a buffered outbound queue of this many packets;
	// mochi's default (8192) costs 64 KiB per idle device.
	caps.MaximumClientWritesPending = 256
	// A queued message lives as long as its session unless it carries an
	// MQTT 5 expiry (mochi's default drops every one after a day).
	caps.MaximumMessageExpiryInterval = 0
	s.broker = mqtt.New(&mqtt.Options{
		Capabilities:             caps,
		Logger:                   opts.Logger.With("component", "mqtt"),
		ClientNetWriteBufferSize: 2048,
		ClientNetReadBufferSize:  1024,
		SysTopicResendInterval:   10,
	})
	if err := stopMochiSweeps(s.broker); err != nil {
		return nil, err
	}
	if s.mochi, err = reachMochi(s.broker); err != nil {
		return nil, err
	}
	s.inline = s.broker.NewClient(nil, "local", "ferry-ingest", true)
	s.hook = &hook{s: s}
	if err := s.broker.AddHook(s.hook, nil); err != nil {
		return nil, err
	}
	if err := s.broker.AddHook(&sweepHook{sw: &s.sw}, nil); err != nil {
		return nil, err
	}
	if outboundOffset == 0 {
		return nil, errNoOutbound
	}
	if err := s.broker.AddHook(&writeHook{s: s}, nil); err != nil {
		return nil, err
	}
	sess, err := openSessions(s, opts.SessionDB)
	if err != nil {
		return nil, fmt.Errorf("mqtt: opening session store %s: %w", opts.SessionDB, err)
	}
	s.sess = sess
	if err := s.broker.AddHook(sess, nil); err != nil {
		sess.Stop()
		return nil, err
	}
	s.fastPublish = receiveQuotaOffset != 0 && onlyHooks(s.mochi.hooks, mqtt.OnPublish, s.hook)
	if !onlyHooks(s.mochi.hooks, mqtt.OnPacketRead, s.hook, s.sess) {
		// handlePacket calls ferry's two read hooks itself (packetRead).
		sess.Stop()
		return nil, errors.New("mqtt: a hook other than ferry's reads packets")
	}
	if err := s.broker.Serve(); err != nil {
		s.broker.Close()
		return nil, fmt.Errorf("mqtt: starting broker: %w", err)
	}
	if err := sess.restore(); err != nil {
		s.broker.Close()
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	// mochi restores its subscription count from a $SYS snapshot taken
	// every few seconds, not from the subscriptions it restored; deliver
	// relies on the count, so it is recounted from the sessions.
	var subs int64
	for _, cl := range s.broker.Clients.GetAll() {
		subs += int64(cl.State.Subscriptions.Len())
	}
	atomic.StoreInt64(&s.broker.Info.Subscriptions, subs)
	go s.sweepLoop()
	for _, bc := range opts.Bridges {
		b, err := s.startBridge(bc)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("mqtt: %w", err)
		}
		s.bridges = append(s.bridges, b)
	}
	return s, nil
}

// ensureTopics creates the topics the rules name that do not exist yet.
func (s *Server) ensureTopics() error {
	s.topics = map[string]int32{}
	for _, c := range s.router.rules {
		if _, ok := s.topics[c.Topic]; !ok || c.Partitions > s.topics[c.Topic] {
			s.topics[c.Topic] = c.Partitions
		}
	}
	if s.router.def != nil {
		s.topics[s.router.def.Topic] = max(s.topics[s.router.def.Topic], 0)
	}
	if s.opts.PresenceTopic != "" {
		s.topics[s.opts.PresenceTopic] = max(s.topics[s.opts.PresenceTopic], 0)
	}
	for name, n := range s.topics {
		if n == 0 {
			n = s.opts.DefaultPartitions
			s.topics[name] = n
		}
		have, err := s.log.PartitionCount(name)
		if err == nil {
			if have != n && n != s.opts.DefaultPartitions {
				s.logger.Warn("mqtt: rule topic exists with another partition count; keeping it", "topic", name, "partitions", have, "rule_partitions", n)
			}
			continue
		}
		if !errors.Is(err, flog.ErrUnknownTopic) {
			return err
		}
		if _, err := s.createTopic(name); err != nil {
			return err
		}
		s.logger.Info("mqtt: created topic for the ingest rules", "topic", name, "partitions", n)
	}
	return nil
}

// createTopic creates a topic the rules write to with their partition
// count; one that exists already (another publish made it) is no error.
func (s *Server) createTopic(name string) (created bool, err error) {
	if _, err := s.log.CreateTopic(name, s.topics[name], nil); err != nil {
		if errors.Is(err, flog.ErrTopicExists) {
			return false, nil
		}
		return false, fmt.Errorf("mqtt: creating topic %q for the ingest rules: %w", name, err)
	}
	return true, nil
}

// Serve accepts MQTT connections on ln until Close. It returns nil after
// Close.
func (s *Server) Serve(ln net.Listener) error {
	return s.serve(ln, ln.Addr().Network())
}

// serve adds a listener accepting from ln to the broker and waits until
// it stops; proto names it to mochi (tcp, ws).
func (s *Server) serve(ln net.Listener, proto string) error {
	s.lnMu.Lock()
	s.lnSeq++
	id := fmt.Sprintf("%s-%d", proto, s.lnSeq)
	s.lnMu.Unlock()
	l := &listener{id: id, proto: proto, ln: ln, s: s, done: make(chan struct{})}
	if s.closing.Load() {
		ln.Close()
		return nil
	}
	if err := s.broker.AddListener(l); err != nil {
		return err
	}
	s.lnMu.Lock()
	s.lnIDs = append(s.lnIDs, id)
	s.lnMu.Unlock()
	s.broker.Listeners.Serve(id, s.broker.EstablishConnection)
	<-l.done
	return nil
}

// Close stops the broker: publishes in progress finish and new ones are
// refused, acknowledgements waiting for durability are sent, then the
// listeners and every connection are closed and the session store is
// written and closed. The log stays open (its owner closes it).
func (s *Server) Close() error {
	s.once.Do(func() {
		s.closing.Store(true)
		close(s.quit)
		<-s.swept
		for _, b := range s.bridges {
			b.stop()
		}
		s.pubMu.Lock() // wait for publishes being handled
		s.pubMu.Unlock()
		waitTimeout(&s.groupsWg, 10*time.Second) // the last commits, whose ackers send or hand over their acknowledgements
		waitTimeout(&s.acks, 10*time.Second)
		s.drainClients()
		s.broker.Close()
		s.broker.Listeners.ClientsWg.Wait()
		s.writers.Wait()                         // the connections are closed: their writers end
		waitTimeout(&s.groupsWg, 10*time.Second) // committers of wills sent as clients left
		s.groupCancel()
		close(s.done)
	})
	return nil
}

// drainClients stops the listeners accepting and disconnects every client
// itself, waiting for their connections to end, before mochi's Close runs:
// mochi v2.7.9's Clients.GetByListener, which Close calls, read-locks the
// client map twice, and deadlocks if a client connects or leaves in
// between (mochi-mqtt/server#488). With no client left and none admitted
// (OnConnect refuses while closing), nothing writes the map any more.
func (s *Server) drainClients() {
	s.lnMu.Lock()
	ids := append([]string(nil), s.lnIDs...)
	s.lnMu.Unlock()
	for _, id := range ids {
		if l, ok := s.broker.Listeners.Get(id); ok {
			l.Close(func(string) {}) // stop accepting; the clients go below
		}
	}
	for _, cl := range s.broker.Clients.GetAll() {
		if !cl.Net.Inline && !cl.Closed() {
			s.broker.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
	if !waitTimeout(&s.broker.Listeners.ClientsWg, 10*time.Second) {
		s.logger.Warn("mqtt: connections still open 10 s after shutdown began")
	}
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

// listener adapts a net.Listener to mochi's listener interface (TCP, TLS,
// and WebSocket through wsListener). Each connection is served here rather
// than by mochi's EstablishConnection: its CONNECT read (preconnect.go)
// within the CONNECT timeout, its client established and its packets read
// by ferry (connection.go, reader.go) and handled by mochi; after CONNECT
// the keepalive sets the deadline.
type listener struct {
	id        string
	proto     string
	ln        net.Listener
	s         *Server
	log       *slog.Logger
	closed    atomic.Bool
	pending   sync.Map // net.Conn → struct{}: connections whose CONNECT is being read, closed by Close
	done      chan struct{}
	closeOnce sync.Once
}

func (l *listener) Init(log *slog.Logger) error { l.log = log; return nil }
func (l *listener) ID() string                  { return l.id }
func (l *listener) Address() string             { return l.ln.Addr().String() }
func (l *listener) Protocol() string            { return l.proto }

func (l *listener) Serve(establish listeners.EstablishFn) {
	defer l.closeOnce.Do(func() { close(l.done) })
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.closed.Load() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			l.log.Error("mqtt listener stopped", "err", err)
			return
		}
		backoff = 0
		go l.handle(c, establish)
	}
}

// handle serves one connection: its CONNECT read and the client
// established (open), then its packets read (readLoop, on this goroutine,
// which has done nothing deep: connection.go), then its end.
func (l *listener) handle(c net.Conn, _ listeners.EstablishFn) {
	pc, cl := l.open(c)
	if cl == nil {
		return
	}
	err := l.s.readLoop(cl, pc)
	l.s.end(cl, err)
	if err != nil {
		l.log.Debug("mqtt connection ended", "remote", cl.Net.Remote, "err", err)
	}
}

// open reads the connection's CONNECT and establishes its client; nil if
// the connection ended (counted and logged here).
func (l *listener) open(c net.Conn) (*preConn, *mqtt.Client) {
	s := l.s
	c.SetDeadline(time.Now().Add(s.opts.ConnectTimeout))
	s.metrics.pending.Inc()
	l.pending.Store(c, struct{}{})
	if l.closed.Load() {
		c.Close() // Close may have missed it
	}
	pc, err := readConnect(c, s.opts.MaxPacketSize)
	l.pending.Delete(c)
	s.metrics.pending.Dec()
	if err != nil {
		c.Close()
		s.preconnectEnded(c.RemoteAddr().String(), err)
		return nil, nil
	}
	cl, err := s.start(l.id, pc)
	switch {
	case err == nil:
		return pc, cl
	case !pc.connected.Load():
		s.preconnectEnded(c.RemoteAddr().String(), err)
	default:
		l.log.Debug("mqtt connection ended", "remote", c.RemoteAddr().String(), "err", err)
	}
	return nil, nil
}

func (l *listener) Close(closeClients listeners.CloseFn) {
	l.closed.Store(true)
	l.ln.Close()
	l.pending.Range(func(c, _ any) bool { c.(net.Conn).Close(); return true })
	closeClients(l.id)
}
