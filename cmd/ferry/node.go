package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"ferry/configs"
	"ferry/edge"
	"ferry/edge/certs"
	"ferry/ingest/kafka"
	flog "ferry/log"
)

// nodeFlags are the flags every node command has.
type nodeFlags struct {
	dataDir, adminAddr, adminToken, kafkaAddr, advertised, level, format   *string
	adminInsecureOpen                                                      *bool
	kafkaCert, kafkaKey, kafkaClientCA, adminCert, adminKey, adminClientCA *string
	maxConns, maxConnsPerIP                                                *int
	maxPartsPerTopic, maxParts                                             *int32
	kafkaSASL                                                              *string
	kafkaSuperUsers                                                        *[]string
	kafkaIdleTimeout, kafkaGroupDelay                                      *time.Duration
	kafkaProduceQuota                                                      *int64
	maxInflated                                                            *int64
	wallClockOffset                                                        *time.Duration
	config                                                                 *configFile
	tlsCerts                                                               []*certs.Server // every listener's, for SIGHUP
}

func addNodeFlags(fs *pflag.FlagSet) *nodeFlags {
	cf := &configFile{}
	fs.Var(cf, "config", "YAML config file: keys are these flags' names (see configs/edge.yaml, configs/full.yaml); flags override it, FERRY_* variables override both")
	return &nodeFlags{
		config:  cf,
		dataDir: fs.String("data-dir", "./data", "directory for the log and all node state"),
		adminAddr: fs.String("admin-addr", "127.0.0.1:8080", "admin HTTP listen address (/healthz, /readyz, /metrics, the status page, the /api/ admin API); "+
			"beyond loopback it needs --admin-token (or --admin-tls-client-ca, or --admin-insecure-open)"),
		adminToken: fs.String("admin-token", "", "bearer token the admin API (/api/...) requires; empty: the API is open to whoever reaches --admin-addr. /healthz, /readyz, /metrics and the status page stay open"),
		adminInsecureOpen: fs.Bool("admin-insecure-open", false, "serve the admin API beyond loopback with no --admin-token (logged loudly; refused with --auth registry or --kafka-sasl): "+
			"anyone who reaches it can add devices, change passwords and delete topics"),
		kafkaAddr:     fs.String("kafka-addr", ":9092", "Kafka protocol listen address; empty disables it"),
		advertised:    fs.String("kafka-advertised", "", "host:port Kafka clients are told to connect to (default: the listen address, with the machine's hostname for a wildcard host)"),
		kafkaCert:     fs.String("kafka-tls-cert", "", "PEM certificate (chain): the Kafka listener serves TLS only (clients: security.protocol=ssl); reloaded on SIGHUP"),
		kafkaKey:      fs.String("kafka-tls-key", "", "PEM private key for --kafka-tls-cert"),
		kafkaClientCA: fs.String("kafka-tls-client-ca", "", "PEM CA bundle: Kafka clients must show a certificate signed by it (mutual TLS)"),
		kafkaSASL: fs.String("kafka-sasl", "", "SASL mechanisms Kafka clients must authenticate with, e.g. plain,scram-sha-256,scram-sha-512 (users: 'ferry users add'); "+
			"when set, Kafka ACLs apply ('ferry acls') and what no ACL allows is denied; empty: no authentication"),
		kafkaSuperUsers:  fs.StringSlice("kafka-super-users", nil, "Kafka users whom ACLs do not restrict (comma-separated names, or User:NAME), e.g. to bootstrap ACLs; needs --kafka-sasl"),
		kafkaIdleTimeout: fs.Duration("kafka-idle-timeout", kafka.DefaultIdleTimeout, "close a Kafka connection that sends no request for this long, as Kafka's connections.max.idle.ms (0: never)"),
		kafkaGroupDelay: fs.Duration("kafka-group-initial-rebalance-delay", kafka.DefaultInitialRebalanceDelay,
			"how long the first rebalance of a new (empty) consumer group waits for more members, as Kafka's group.initial.rebalance.delay.ms (0: none)"),
		kafkaProduceQuota: sizeFlag(fs, "kafka-produce-quota", int64(0), "produce quota per Kafka principal (SASL user, else client id), in record bytes per second (1MiB): "+
			"past it, answers carry a throttle time and the connection is muted for it (0: none)"),
		adminCert:     fs.String("admin-tls-cert", "", "PEM certificate (chain): the admin listener serves HTTPS only; reloaded on SIGHUP"),
		adminKey:      fs.String("admin-tls-key", "", "PEM private key for --admin-tls-cert"),
		adminClientCA: fs.String("admin-tls-client-ca", "", "PEM CA bundle: admin clients must show a certificate signed by it (mutual TLS)"),
		maxInflated: sizeFlag(fs, "max-inflated-bytes", int64(0), "most bytes a compressed record batch may inflate to, past which it is refused (Kafka RECORD_LIST_TOO_LARGE): "+
			"the default of the topic config max.inflated.bytes, and the cap on a mirrored chunk's size at the center (0: 8 times a topic's max.message.bytes; chunks 64 MiB)"),
		maxConns:         fs.Int("max-connections", 0, "connections each listener (Kafka, MQTT, admin, mirror) holds open at most; past it a new connection is closed on accept (0: no cap)"),
		maxConnsPerIP:    fs.Int("max-connections-per-ip", 0, "connections each listener holds open from one source address at most (0: no cap; devices behind one NAT share an address)"),
		maxPartsPerTopic: fs.Int32("max-partitions-per-topic", 1000, "partitions one topic may have (create, grow, auto-create; Kafka answers INVALID_PARTITIONS past it; 0: no cap)"),
		maxParts: fs.Int32("max-partitions", 4000, "partitions this node may hold, all topics together (Kafka answers POLICY_VIOLATION past it; 0: no cap); "+
			"each holds 3 files open, and creates are also refused past three quarters of the open-file limit"),
		level:           fs.String("log-level", "info", "log level: debug, info, warn, error"),
		format:          fs.String("log-format", "text", "log format: text or json"),
		wallClockOffset: wallClockOffsetFlag(fs),
	}
}

// wallClockOffsetFlag declares --debug-wall-clock-offset, hidden from
// --help: a test seam (testbed's clock-skew scenario), since a Go binary
// reads the clock through the vDSO, which faketime cannot move, and time
// namespaces do not offset CLOCK_REALTIME.
func wallClockOffsetFlag(fs *pflag.FlagSet) *time.Duration {
	d := fs.Duration("debug-wall-clock-offset", 0, "FOR TESTS ONLY: run the node's wall clock this far ahead (negative: behind) of the machine's, "+
		"for the timestamps it stamps, segment roll and time-based retention; durations, timeouts and raft are unaffected (0: the machine's clock)")
	fs.MarkHidden("debug-wall-clock-offset")
	return d
}

func (f *nodeFlags) logger() (*slog.Logger, error) { return newLogger(os.Stderr, *f.level, *f.format) }

// serverTLS loads the certificate of the listener named (its flags are
// --NAME-tls-*) and keeps it for SIGHUP; nil without one. With clientCA,
// client certificates signed by it are verified as auth says (0: required).
func (f *nodeFlags) serverTLS(name, certFile, keyFile, clientCA string, auth tls.ClientAuthType) (*tls.Config, error) {
	if certFile == "" && keyFile == "" && clientCA != "" {
		return nil, usagef("--%s-tls-client-ca needs --%s-tls-cert and --%s-tls-key too", name, name, name)
	}
	if (certFile == "") != (keyFile == "") {
		return nil, usagef("--%s-tls-cert and --%s-tls-key go together", name, name)
	}
	s, err := certs.NewServer(certs.ServerFiles{Name: name, Cert: certFile, Key: keyFile, ClientCA: clientCA, ClientAuth: auth})
	if s == nil || err != nil {
		return nil, err
	}
	f.tlsCerts = append(f.tlsCerts, s)
	return s.Config(), nil
}

// run starts a node with these flags filled into opts and runs it until
// SIGTERM or SIGINT; SIGHUP reloads the listeners' certificates.
func (f *nodeFlags) run(opts edge.Options) error {
	opts.DataDir, opts.AdminAddr, opts.KafkaAddr, opts.KafkaAdvertised = *f.dataDir, *f.adminAddr, *f.kafkaAddr, *f.advertised
	opts.AdminToken, opts.AdminInsecureOpen, opts.Version = *f.adminToken, *f.adminInsecureOpen, version
	if off := *f.wallClockOffset; off != 0 {
		opts.Now = func() time.Time { return time.Now().Add(off) }
	}
	if *f.maxConns < 0 || *f.maxConnsPerIP < 0 {
		return usagef("--max-connections and --max-connections-per-ip: want 0 (no cap) or more")
	}
	opts.ConnLimits = edge.ConnLimits{Max: *f.maxConns, PerIP: *f.maxConnsPerIP}
	if *f.maxPartsPerTopic < 0 || *f.maxParts < 0 {
		return usagef("--max-partitions-per-topic and --max-partitions: want 0 (no cap) or more")
	}
	opts.MaxPartitionsPerTopic, opts.MaxPartitions = *f.maxPartsPerTopic, *f.maxParts
	var err error
	if opts.KafkaTLS, err = f.serverTLS("kafka", *f.kafkaCert, *f.kafkaKey, *f.kafkaClientCA, 0); err != nil {
		return err
	}
	if opts.AdminTLS, err = f.serverTLS("admin", *f.adminCert, *f.adminKey, *f.adminClientCA, 0); err != nil {
		return err
	}
	opts.TLSCerts = f.tlsCerts
	if opts.KafkaSASL, err = kafka.ParseSASLMechanisms(*f.kafkaSASL); err != nil {
		return usagef("--kafka-sasl: %v", err)
	}
	opts.KafkaSuperUsers = *f.kafkaSuperUsers
	if len(opts.KafkaSuperUsers) > 0 && len(opts.KafkaSASL) == 0 {
		return usagef("--kafka-super-users needs --kafka-sasl")
	}
	if *f.kafkaIdleTimeout < 0 || *f.kafkaProduceQuota < 0 || *f.kafkaGroupDelay < 0 {
		return usagef("--kafka-idle-timeout, --kafka-produce-quota and --kafka-group-initial-rebalance-delay: want 0 (none) or more")
	}
	opts.KafkaGroupInitialRebalanceDelay = *f.kafkaGroupDelay
	if opts.KafkaGroupInitialRebalanceDelay == 0 {
		opts.KafkaGroupInitialRebalanceDelay = -1 // the flag's 0 is none
	}
	opts.KafkaIdleTimeout, opts.KafkaProduceQuota = *f.kafkaIdleTimeout, *f.kafkaProduceQuota
	if opts.KafkaIdleTimeout == 0 {
		opts.KafkaIdleTimeout = -1 // the flag's 0 is never
	}
	if m := *f.maxInflated; m != 0 {
		v := strconv.FormatInt(m, 10)
		if err := flog.ValidateConfigs(map[string]string{flog.ConfigMaxInflatedBytes: v}); err != nil {
			return usagef("--max-inflated-bytes: %v", err)
		}
		opts.TopicDefaults = maps.Clone(opts.TopicDefaults)
		if opts.TopicDefaults == nil {
			opts.TopicDefaults = map[string]string{}
		}
		opts.TopicDefaults[flog.ConfigMaxInflatedBytes] = v
		opts.MirrorReceiver.MaxChunkBytes = m
	}
	f.config.log(opts.Logger)
	if off := *f.wallClockOffset; off != 0 && opts.Logger != nil {
		opts.Logger.Warn("the node's wall clock is offset from the machine's (--debug-wall-clock-offset, for tests only)", "offset", off)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	n, err := edge.Start(opts)
	if err != nil {
		return err
	}
	go func() {
		for {
			select {
			case <-hup:
				n.ReloadTLS() // logs what it did; a failure keeps the old certificate
			case <-ctx.Done():
				return
			}
		}
	}()
	return n.Run(ctx)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format %q: want text or json", format)
}

// configFile is the value of --config. It marks a node command's flag set:
// the dispatcher builds those flags through configure, which fills in
// what the file and the environment set.
type configFile struct {
	path string
	file *configs.File        // the file applied; nil without one
	env  []configs.EnvSetting // the FERRY_* variables applied
}

func (c *configFile) String() string     { return c.path }
func (c *configFile) Set(s string) error { c.path = s; return nil }
func (c *configFile) Type() string       { return "file" }

// log says where the node's settings came from besides the command line.
func (c *configFile) log(logger *slog.Logger) {
	if logger == nil || c.file == nil && len(c.env) == 0 {
		return
	}
	vars := make([]string, len(c.env))
	for i, e := range c.env {
		vars[i] = e.Var
	}
	var file string
	var keys int
	if c.file != nil {
		file, keys = c.file.Path, len(c.file.Settings)
	}
	logger.Info("config", "file", file, "file_keys", keys, "env", vars)
}

// nodeConfig is the --config value of a node command's flag set; nil for
// other commands (`topics create --config` is another flag).
func nodeConfig(fs *pflag.FlagSet) *configFile {
	if f := fs.Lookup("config"); f != nil {
		if cf, ok := f.Value.(*configFile); ok {
			return cf
		}
	}
	return nil
}

// configure builds a node command's flags in precedence order: defaults,
// the config file (--config, or FERRY_CONFIG), the command line, the
// FERRY_* variables of environ. newFlags declares the command's flags on a
// fresh set; args parsed once already. A problem with the file or a
// variable is a usage error (exit 2) naming its line or variable.
func configure(mode string, newFlags func() (*pflag.FlagSet, action), args, environ []string, path string) (*pflag.FlagSet, action, error) {
	if v, ok := lookupEnv(environ, configs.EnvName("config")); ok {
		path = v
	}
	fs, act := newFlags()
	markNodePaths(fs)
	check := nodeCheck(mode)
	var file *configs.File
	if path != "" {
		var err error
		if file, err = configs.Load(path); err != nil {
			return nil, nil, configError(err)
		}
		if err := file.Apply(fs, mode, check); err != nil {
			return nil, nil, configError(err)
		}
	}
	if err := fs.Parse(args); err != nil {
		return nil, nil, usagef("%v", err)
	}
	env, err := configs.ApplyEnv(fs, environ, check)
	if err != nil {
		return nil, nil, configError(err)
	}
	cf := nodeConfig(fs)
	cf.path, cf.file, cf.env = path, file, env
	return fs, act, nil
}

func configError(err error) error {
	var errs configs.Errors
	if errors.As(err, &errs) {
		return usageError{err.Error()}
	}
	return usagef("--config: %v", err)
}

func lookupEnv(environ []string, name string) (string, bool) {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v, true
		}
	}
	return "", false
}
