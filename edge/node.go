package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"ferry/devices"
	"ferry/edge/certs"
	"ferry/edge/cluster"
	"ferry/edge/replica"
	"ferry/edge/statuspage"
	"ferry/ingest/kafka"
	"ferry/ingest/mqtt"
	flog "ferry/log"
	"ferry/mirror"
)

// Options configure a Node.
type Options struct {
	// DataDir holds everything the node keeps: the log in DataDir/log.
	DataDir string
	// AdminAddr is the admin HTTP listener's address ("127.0.0.1:8080" by
	// default in the binary; tests use "127.0.0.1:0"). Beyond loopback it
	// needs AdminToken (or admin mutual TLS), or AdminInsecureOpen: Start
	// refuses otherwise (exposure.go).
	AdminAddr string
	// AdminInsecureOpen serves the admin API beyond loopback with no token,
	// logged loudly at start; never with AuthRegistry or KafkaSASL, whose
	// authentication an open admin API would defeat.
	AdminInsecureOpen bool
	// KafkaAddr is the Kafka protocol listener's address (":9092" in the
	// binary); empty disables it.
	KafkaAddr string
	// KafkaAdvertised is the host:port given to Kafka clients in Metadata;
	// empty means the listener's address (the hostname for a wildcard
	// host: see kafka.Options.Advertised).
	KafkaAdvertised string
	// KafkaTLS, when set, serves the Kafka listener over TLS only;
	// AdminTLS the admin listener (HTTPS).
	KafkaTLS *tls.Config
	AdminTLS *tls.Config
	// TLSCerts are the listeners' certificates loaded from files, whose
	// Config is one of the *tls.Config above: ReloadTLS (SIGHUP) reads
	// each again.
	TLSCerts []*certs.Server
	// KafkaSASL, when set (kafka.SASLPlain, SASLSCRAMSHA256,
	// SASLSCRAMSHA512), makes Kafka clients authenticate as a user of the
	// device registry ('ferry users add') and applies its Kafka ACLs
	// ('ferry acls'), denying what no ACL allows; KafkaSuperUsers bypass the
	// ACLs. Empty: the Kafka listener is open, as before.
	KafkaSASL       []string
	KafkaSuperUsers []string
	// KafkaIdleTimeout closes a Kafka connection that starts no request
	// for that long (0: kafka.DefaultIdleTimeout, negative: never);
	// KafkaProduceQuota caps each principal's produce rate, in record bytes
	// per second (0: no quota). See kafka.Options.
	KafkaIdleTimeout  time.Duration
	KafkaProduceQuota int64
	// KafkaGroupInitialRebalanceDelay is how long a new consumer group's
	// first rebalance waits for more members (Kafka's
	// group.initial.rebalance.delay.ms; 0: kafka.DefaultInitialRebalanceDelay,
	// negative: none). See kafka.GroupsOptions.
	KafkaGroupInitialRebalanceDelay time.Duration
	// AutoCreateTopics lets Kafka clients create topics by using them,
	// with DefaultPartitions partitions (0 means 1).
	AutoCreateTopics  bool
	DefaultPartitions int32
	// TopicDefaults override the log's built-in topic config defaults.
	TopicDefaults map[string]string
	// MaxPartitionsPerTopic and MaxPartitions cap the partitions of one
	// topic and of the node (0: no cap); every create and grow is also
	// checked against the open-file limit (log.Options).
	MaxPartitionsPerTopic, MaxPartitions int32
	// MQTTAddr is the MQTT listener's address (":1883" in the binary);
	// empty disables MQTT. MQTTTLSAddr serves MQTT over TLS (":8883")
	// with MQTTTLS, which must then be set.
	MQTTAddr    string
	MQTTTLSAddr string
	MQTTTLS     *tls.Config
	// MQTTWSAddr serves MQTT over WebSocket; empty disables it.
	MQTTWSAddr string
	// MQTT configures the MQTT front end: ingest rules, default topic,
	// limits. Log, SessionDB, Registerer and Logger are filled in by the
	// node.
	MQTT mqtt.Options
	// AuthMode is AuthNone (default) or AuthRegistry.
	AuthMode string
	// MaxDiskBytes is the data-disk budget of the log (0: none); past it,
	// segments already mirrored go first, then DiskPolicy decides:
	// log.BudgetBlock (default) refuses appends while what is left is not
	// yet mirrored; log.BudgetDropOldest deletes unmirrored segments,
	// lowest mirror priority class first, and the center is told the gap.
	MaxDiskBytes int64
	DiskPolicy   flog.BudgetPolicy
	// Mode names the node in its logs: "edge" (default) or "full".
	Mode string
	// MirrorAddr is the mirror receiver's listen address (a full node's
	// ":9393"); empty disables it. MirrorReceiver configures it (Log,
	// Registerer and Logger are filled in); MirrorTLS secures it.
	MirrorAddr     string
	MirrorReceiver mirror.ReceiverOptions
	MirrorTLS      *tls.Config
	// MirrorTo ships this node's log to a center when its Center is set,
	// or to a Kafka cluster when its Kafka is
	// (Log, StatePath, Registerer and Logger are filled in).
	MirrorTo mirror.SenderOptions
	// AdminToken, when set, is the bearer token every /api/ route of the
	// admin listener requires (/healthz, /readyz, /metrics and the status
	// page stay open).
	AdminToken string
	// Version is what GET /api/status reports ("dev" when empty).
	Version string
	// StatusInterval is how often the status page's sampler records the
	// node's figures (GET /api/history keeps the last hour); 0 means 5 s.
	StatusInterval time.Duration
	// AdminReadTimeout bounds how long an admin client may take to send a
	// request's headers and then its body (slow-client protection); 0
	// means 10 s. Idle keep-alive connections are closed after 2 minutes,
	// and a response must be written within a minute.
	AdminReadTimeout time.Duration
	// ShutdownTimeout bounds how long in-flight admin requests may take
	// to finish on shutdown; 0 means 5 s.
	ShutdownTimeout time.Duration
	// ConnLimits caps the connections of each listener (Kafka, MQTT,
	// admin, mirror): in all and per source address; zero means no cap.
	ConnLimits ConnLimits
	// Cluster, for a full node, makes it one of a cluster's voters and
	// brokers (clusternode.go); nil: a node alone.
	Cluster *ClusterOptions
	// Now is the node's wall clock, for what is a time of day rather than
	// a duration: the timestamps the node stamps (LogAppendTime, MQTT
	// ingest and presence, committed offsets, mirror gaps), segment roll
	// and time-based retention, the mirror's schedule and ages, the last
	// seen of devices. nil means time.Now. Timeouts, sessions, raft, the
	// controller's liveness and replica lag stay on Go's monotonic clock
	// whatever it says. It is a test seam: --debug-wall-clock-offset sets
	// it to a clock running ahead or behind (testbed's clock skew).
	Now func() time.Time
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger

	loopback func(addr string) bool // tests: which addresses count as loopback (exposure.go)
}

// Node is a running broker. Start it with Start, stop it with Close (or
// run it with Run until a context ends).
type Node struct {
	opts   Options
	logger *slog.Logger

	log      *flog.Log
	registry *prometheus.Registry
	metrics  *nodeMetrics
	ids      *kafka.ProducerIDs
	groups   *kafka.Groups
	kafka    *kafka.Server
	kafkaLn  net.Listener
	mqtt     *mqtt.Server
	devices  *devices.Registry
	receiver *mirror.Receiver
	mirrorLn net.Listener
	sender   *mirror.Sender
	stopSend context.CancelFunc
	mqttLns  []net.Listener
	mqttWSLn net.Listener
	adminLn  net.Listener
	// bound holds the listeners bound before any state was opened, until
	// start takes each (bind.go).
	bound    map[string]net.Listener
	admin    *http.Server
	status   *statuspage.Sampler // the status page's history (status.go)
	stopStat func()              // stops the sampler and waits for it
	ready    atomic.Bool
	started  time.Time

	cluster     *cluster.Node            // nil: a node alone
	clusterTr   *cluster.Transport       // the cluster listener
	replicas    *replica.Manager         // the cluster's replica manager (nil alone)
	stopCluster context.CancelFunc       // ends the applier and the import
	clusterCtx  context.Context          // what stopCluster ends
	security    *cluster.SecurityApplier // the registry follows the cluster's users and ACLs (clustersecurity.go)
	// offsetsImport: kafka-groups.db had offsets to import into the
	// cluster's offsets topic at start (clustergroups.go).
	offsetsImport bool

	wg       sync.WaitGroup // the node's goroutines
	closeErr error
	once     sync.Once
}

// LogDir returns where the node keeps its log, under dataDir.
func LogDir(dataDir string) string { return filepath.Join(dataDir, "log") }

// Start opens the log and starts the listeners. On error everything that
// was started is stopped again.
func Start(opts Options) (*Node, error) {
	if opts.DataDir == "" {
		return nil, errors.New("edge: DataDir is empty")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 5 * time.Second
	}
	if opts.AdminReadTimeout == 0 {
		opts.AdminReadTimeout = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	n := &Node{opts: opts, logger: opts.Logger, registry: prometheus.NewRegistry(), started: time.Now()}
	n.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := n.checkAdminExposure(); err != nil {
		return nil, err
	}
	if err := n.start(); err != nil {
		n.stop()
		return nil, err
	}
	n.ready.Store(true)
	args := []any{"data_dir", opts.DataDir, "admin_addr", n.AdminAddr(), "topics", len(n.log.Topics())}
	if n.kafkaLn != nil {
		args = append(args, "kafka_addr", n.KafkaAddr())
	}
	if len(n.mqttLns) > 0 {
		args = append(args, "mqtt_addrs", n.MQTTAddrs())
	}
	if n.mqttWSLn != nil {
		args = append(args, "mqtt_ws_addr", n.MQTTWSAddr())
	}
	if n.mirrorLn != nil {
		args = append(args, "mirror_addr", n.MirrorAddr())
	}
	if n.sender != nil {
		args = append(args, "mirror_to", n.sender.Target(), "edge_id", n.sender.EdgeID())
	}
	mode := opts.Mode
	if mode == "" {
		mode = "edge"
	}
	n.logger.Info("ferry "+mode+" ready", args...)
	return n, nil
}

// start opens everything in order; stop undoes whatever start did.
func (n *Node) start() error {
	opts := n.opts
	var err error
	n.metrics = newNodeMetrics()
	if err := n.bindListeners(); err != nil {
		return err
	}
	if err := CheckDataFormat(opts.DataDir, true); err != nil {
		return err
	}
	n.log, err = flog.Open(flog.Options{Dir: LogDir(opts.DataDir), Logger: opts.Logger, TopicDefaults: opts.TopicDefaults,
		MaxDiskBytes: opts.MaxDiskBytes, BudgetPolicy: opts.DiskPolicy,
		MaxPartitionsPerTopic: opts.MaxPartitionsPerTopic, MaxPartitions: opts.MaxPartitions, OnSync: n.metrics.observeFsync,
		CleanShutdownMarker: true, Replicated: opts.Cluster != nil, Now: opts.Now})
	if err != nil {
		return fmt.Errorf("opening log: %w", stateFileError(filepath.Join(LogDir(opts.DataDir), "topics.db"), err))
	}
	if err := n.startCluster(); err != nil {
		return err
	}
	if opts.KafkaAddr != "" {
		if n.ids, err = kafka.OpenProducerIDs(filepath.Join(opts.DataDir, "kafka-producer-ids.db")); err != nil {
			return stateFileError(filepath.Join(opts.DataDir, "kafka-producer-ids.db"), err)
		}
		if n.groups, err = kafka.OpenGroupsOptions(filepath.Join(opts.DataDir, "kafka-groups.db"),
			kafka.GroupsOptions{Logger: opts.Logger, InitialRebalanceDelay: opts.KafkaGroupInitialRebalanceDelay, Now: opts.Now}); err != nil {
			return stateFileError(filepath.Join(opts.DataDir, "kafka-groups.db"), err)
		}
		ko := kafka.Options{
			Log: n.log, Advertised: opts.KafkaAdvertised, AutoCreateTopics: opts.AutoCreateTopics,
			DefaultPartitions: opts.DefaultPartitions, ProducerIDs: n.ids, Groups: n.groups, Registerer: n.registry, Logger: opts.Logger,
			IdleTimeout: opts.KafkaIdleTimeout, ProduceQuota: opts.KafkaProduceQuota,
		}
		if n.cluster != nil {
			ko.NodeID = opts.Cluster.NodeID
			ko.Cluster = kafkaClusterView{n.cluster}
			ko.Topics = n.clusterTopics()
			ko.Replication = KafkaReplication(n.replicas)
			if err := n.startClusterGroups(kafkaClusterView{n.cluster}); err != nil {
				return err
			}
			if err := n.clusterProducerIDs(); err != nil {
				return err
			}
		}
		if len(opts.KafkaSASL) > 0 {
			if err := n.openDevices(); err != nil {
				return err
			}
			auth := kafkaAuth{n.devices, n.securityStore()}
			ko.SASLMechanisms, ko.Credentials, ko.ACLs, ko.SuperUsers = opts.KafkaSASL, auth, auth, opts.KafkaSuperUsers
		} else if len(opts.KafkaSuperUsers) > 0 {
			return errors.New("kafka super users without SASL: there is no principal to check")
		}
		n.kafka, err = kafka.NewServer(ko)
		if err != nil {
			return err
		}
		n.startReplicas()
		if n.kafkaLn, err = n.listen("kafka", opts.KafkaAddr, opts.kafkaCloseWith()); err != nil {
			return fmt.Errorf("kafka listener: %w", err)
		}
		ln := n.kafkaLn
		if opts.KafkaTLS != nil {
			ln = tls.NewListener(ln, opts.KafkaTLS)
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := n.kafka.Serve(ln); err != nil {
				n.logger.Error("kafka listener stopped", "err", err)
			}
		}()
	}
	if err := n.startMQTT(); err != nil {
		return err
	}
	if err := n.startMirror(); err != nil {
		return err
	}
	n.log.ArmBudget() // the shipper (the mirror's sender), if any, is in place
	n.startStatus()
	n.registerMetrics()
	if n.adminLn, err = n.listen("admin", opts.AdminAddr, opts.adminCloseWith()); err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	n.admin = &http.Server{Handler: n.instrumentAdmin(n.adminHandler()),
		// Slow clients: headers, then the whole request, within the read
		// timeout each; idle keep-alives and stuck writes do not hold a
		// connection forever.
		ReadHeaderTimeout: opts.AdminReadTimeout, ReadTimeout: 2 * opts.AdminReadTimeout,
		WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn)}
	adminLn := n.adminLn
	if opts.AdminTLS != nil {
		adminLn = tls.NewListener(adminLn, opts.AdminTLS)
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.admin.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.logger.Error("admin listener stopped", "err", err)
		}
	}()
	return nil
}

// startMQTT starts the MQTT front end and its listeners, when configured.
func (n *Node) startMQTT() error {
	opts := n.opts
	if opts.MQTTAddr == "" && opts.MQTTTLSAddr == "" && opts.MQTTWSAddr == "" {
		return nil
	}
	mo := opts.MQTT
	mo.Log, mo.Registerer, mo.Logger = n.log, n.registry, opts.Logger
	if mo.Now == nil {
		mo.Now = opts.Now
	}
	if err := n.openDevices(); err != nil {
		return err
	}
	mo.Presence = n.devices
	switch opts.AuthMode {
	case "", AuthNone:
	case AuthRegistry:
		mo.Auth = registryAuth{n.devices}
	default:
		return fmt.Errorf("auth mode %q: want %q or %q", opts.AuthMode, AuthNone, AuthRegistry)
	}
	if mo.SessionDB == "" {
		mo.SessionDB = filepath.Join(opts.DataDir, "mqtt-sessions.db")
	}
	var err error
	if n.mqtt, err = mqtt.New(mo); err != nil {
		return stateFileError(mo.SessionDB, err)
	}
	if opts.MQTTAddr != "" {
		ln, err := n.listen("mqtt", opts.MQTTAddr, opts.mqttCloseWith(nil))
		if err != nil {
			return fmt.Errorf("mqtt listener: %w", err)
		}
		n.mqttLns = append(n.mqttLns, ln)
	}
	if opts.MQTTTLSAddr != "" {
		if opts.MQTTTLS == nil {
			return errors.New("mqtt TLS listener: no certificate configured")
		}
		ln, err := n.listen("mqtt-tls", opts.MQTTTLSAddr, opts.mqttCloseWith(opts.MQTTTLS))
		if err != nil {
			return fmt.Errorf("mqtt TLS listener: %w", err)
		}
		n.mqttLns = append(n.mqttLns, tls.NewListener(ln, opts.MQTTTLS))
	}
	for _, ln := range n.mqttLns {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := n.mqtt.Serve(ln); err != nil {
				n.logger.Error("mqtt listener stopped", "err", err)
			}
		}()
	}
	if opts.MQTTWSAddr != "" {
		ln, err := n.listen("mqtt-ws", opts.MQTTWSAddr, opts.mqttCloseWith(nil))
		if err != nil {
			return fmt.Errorf("mqtt websocket listener: %w", err)
		}
		n.mqttWSLn = ln
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := n.mqtt.ServeWebsocket(ln); err != nil {
				n.logger.Error("mqtt websocket listener stopped", "err", err)
			}
		}()
	}
	return nil
}

// openDevices opens the device registry, once: MQTT and Kafka SASL share it.
func (n *Node) openDevices() error {
	if n.devices != nil {
		return nil
	}
	dopts := devices.DefaultOptions()
	dopts.Logger = n.opts.Logger
	var err error
	if n.devices, err = devices.Open(filepath.Join(n.opts.DataDir, devices.FileName), dopts); err != nil {
		return fmt.Errorf("opening device registry: %w", stateFileError(filepath.Join(n.opts.DataDir, devices.FileName), err))
	}
	n.startClusterSecurity()
	return nil
}

// startMirror starts the mirror receiver and sender, when configured.
func (n *Node) startMirror() error {
	opts := n.opts
	if opts.MirrorAddr != "" {
		ro := opts.MirrorReceiver
		ro.Log, ro.Registerer, ro.Logger = mirror.LogTarget{Log: n.log}, n.registry, opts.Logger
		if ro.Now == nil {
			ro.Now = opts.Now
		}
		if n.replicas != nil {
			// A copy is acknowledged to its edge once committed.
			ro.Log = ReplicatedMirrorTarget(n.log, n.replicas)
		}
		if n.cluster != nil {
			ro.Cluster = mirrorCluster{n: n, topics: n.clusterTopics()}
		}
		var err error
		if n.receiver, err = mirror.NewReceiver(ro); err != nil {
			return err
		}
		if n.mirrorLn, err = n.listen("mirror", opts.MirrorAddr, "" /* edges authenticate: a token or a certificate */); err != nil {
			return fmt.Errorf("mirror listener: %w", err)
		}
		ln := n.mirrorLn
		if opts.MirrorTLS != nil {
			ln = tls.NewListener(ln, opts.MirrorTLS)
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := n.receiver.Serve(ln); err != nil {
				n.logger.Error("mirror listener stopped", "err", err)
			}
		}()
	}
	if opts.MirrorTo.Center != "" || opts.MirrorTo.Kafka != nil {
		so := opts.MirrorTo
		so.Log, so.Registerer, so.Logger = n.log, n.registry, opts.Logger
		if so.Now == nil {
			so.Now = opts.Now
		}
		if so.StatePath == "" {
			so.StatePath = filepath.Join(opts.DataDir, "mirror.db")
		}
		var err error
		if n.sender, err = mirror.NewSender(so); err != nil {
			return err
		}
		// The mirror's hooks into the log, all of them: what it pins, how it
		// ranks topics for drop-oldest, what it is told before a drop.
		n.log.SetShipper(n.sender)
		ctx, cancel := context.WithCancel(context.Background())
		n.stopSend = cancel
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.sender.Run(ctx)
		}()
	}
	return nil
}

// MirrorAddr is the bound address of the mirror receiver ("" when off).
func (n *Node) MirrorAddr() string {
	if n.mirrorLn == nil {
		return ""
	}
	return n.mirrorLn.Addr().String()
}

// Sender is the node's mirror sender (nil when it mirrors nothing).
func (n *Node) Sender() *mirror.Sender { return n.sender }

// MQTTAddrs are the bound addresses of the MQTT listeners (plain first).
func (n *Node) MQTTAddrs() []string {
	var out []string
	for _, ln := range n.mqttLns {
		out = append(out, ln.Addr().String())
	}
	return out
}

// MQTTWSAddr is the bound address of the MQTT over WebSocket listener (""
// when disabled).
func (n *Node) MQTTWSAddr() string {
	if n.mqttWSLn == nil {
		return ""
	}
	return n.mqttWSLn.Addr().String()
}

// KafkaAddr is the bound address of the Kafka listener ("" when disabled).
func (n *Node) KafkaAddr() string {
	if n.kafkaLn == nil {
		return ""
	}
	return n.kafkaLn.Addr().String()
}

// AdminAddr is the bound address of the admin listener.
func (n *Node) AdminAddr() string { return n.adminLn.Addr().String() }

// Log is the node's storage engine.
func (n *Node) Log() *flog.Log { return n.log }

// ReloadTLS reads every listener's certificate, key and client CA files
// again (Options.TLSCerts): connections made from then on get them, open
// ones keep theirs. A listener whose files do not load keeps what it had;
// the error names it, and the others are reloaded all the same.
func (n *Node) ReloadTLS() error {
	var errs []error
	for _, c := range n.opts.TLSCerts {
		if err := c.Reload(); err != nil {
			n.logger.Error("TLS reload failed: the listener keeps its certificate", "listener", c.Name(), "err", err)
			errs = append(errs, err)
			continue
		}
		leaf := c.Leaf()
		n.logger.Info("TLS certificate reloaded", "listener", c.Name(), "subject", leaf.Subject.CommonName,
			"serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter)
	}
	return errors.Join(errs...)
}

// Run waits until ctx ends, then shuts the node down.
func (n *Node) Run(ctx context.Context) error {
	<-ctx.Done()
	return n.Close()
}

// Close shuts down in order: stop accepting (readiness off, listeners
// closed, in-flight requests drained), then flush, fsync and close the log.
func (n *Node) Close() error {
	n.once.Do(func() {
		n.ready.Store(false)
		n.logger.Info("shutting down")
		n.closeErr = n.stop()
		if n.closeErr == nil {
			n.logger.Info("shutdown complete: log flushed, fsynced and closed")
		}
	})
	return n.closeErr
}

// stop closes in reverse order of start: protocol listeners first (stop
// accepting, drop connections, wake long polls), then the admin listener,
// then the log (flush, fsync, close).
func (n *Node) stop() error {
	n.closeBound()
	n.stopStatus()
	n.shutDownLeaderships()
	if n.kafka != nil {
		n.kafka.Close()
	}
	if n.mqtt != nil {
		n.mqtt.Close()
	}
	if n.stopSend != nil {
		n.stopSend() // Run saves the checkpoints and returns; wg waits for it
	}
	if n.receiver != nil {
		n.receiver.Close()
	} else if n.mirrorLn != nil {
		n.mirrorLn.Close()
	}
	for _, ln := range n.mqttLns {
		ln.Close() // those Serve never took
	}
	if n.mqttWSLn != nil {
		n.mqttWSLn.Close()
	}
	if n.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), n.opts.ShutdownTimeout)
		defer cancel()
		if err := n.admin.Shutdown(ctx); err != nil {
			n.logger.Warn("admin listener did not drain in time", "err", err)
			n.admin.Close()
		}
	} else if n.adminLn != nil {
		n.adminLn.Close()
	}
	n.closeReplicas()
	if n.stopCluster != nil {
		n.stopCluster()
	}
	n.wg.Wait()
	if err := n.closeCluster(); err != nil {
		n.logger.Error("leaving the cluster", "err", err)
	}
	if n.groups != nil {
		n.groups.Close()
	}
	if n.devices != nil {
		if err := n.devices.Close(); err != nil {
			n.logger.Error("closing device registry", "err", err)
		}
	}
	if n.ids != nil {
		n.ids.Close()
	}
	if n.log != nil {
		if err := n.log.Close(); err != nil {
			return fmt.Errorf("closing log: %w", err)
		}
	}
	return nil
}

// listen opens one of the node's listeners on addr, under the node's
// connection caps. closeWith names the flag that makes the listener
// authenticate its clients ("" when it does): a listener open beyond
// loopback without authentication is warned about, once, here.
func (n *Node) listen(name, addr, closeWith string) (net.Listener, error) {
	ln, ok := n.takeBound(name) // bound before any state was opened (bind.go)
	if !ok {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, err
		}
	}
	if closeWith != "" && !n.opts.isLoopback(addr) {
		n.logger.Warn("listener open to the network without authentication: anyone who reaches it may use it",
			"listener", name, "addr", ln.Addr().String(), "close_with", closeWith)
	}
	return limit(ln, name, n.opts.ConnLimits, n.metrics.conns, n.logger), nil
}
