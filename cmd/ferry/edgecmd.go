package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/spf13/pflag"

	"ferry/edge"
	"ferry/ingest/mqtt"
	flog "ferry/log"
	"ferry/mirror"
)

func edgeCommand() *command {
	return &command{
		name:    "edge",
		summary: "run an edge broker node until SIGTERM or SIGINT",
		example: "ferry edge --data-dir ./data --admin-addr 127.0.0.1:8080 --kafka-addr :9092\n  curl http://localhost:8080/readyz\n  kcat -b localhost:9092 -L",
		flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
			node := addNodeFlags(fs)
			autoCreate := fs.Bool("auto-create-topics", true, "let Kafka clients create topics by producing to or asking for them")
			defaultParts := fs.Int32("default-partitions", 1, "partitions of auto-created topics")
			mqttAddr := fs.String("mqtt-addr", ":1883", "MQTT listen address; empty disables MQTT")
			mqttTLSAddr := fs.String("mqtt-tls-addr", ":8883", "MQTT over TLS listen address, served when --mqtt-tls-cert is set")
			mqttWS := fs.String("mqtt-ws-addr", "", "MQTT over WebSocket listen address (e.g. :8083); empty disables it")
			mqttCert := fs.String("mqtt-tls-cert", "", "PEM certificate (chain) for MQTT over TLS; reloaded on SIGHUP")
			mqttKey := fs.String("mqtt-tls-key", "", "PEM private key for --mqtt-tls-cert")
			mqttClientCA := fs.String("mqtt-tls-client-ca", "", "PEM CA bundle: require client certificates signed by it (mutual TLS)")
			rules := fs.StringArray("mqtt-rule", []string{defaultMQTTRule}, "ingest rule 'FILTER -> TOPIC [key=TEMPLATE] [partitions=N]'; repeat for more, first match wins")
			bridges := fs.StringArray("mqtt-bridge", nil, "bridge-in from another MQTT broker: 'name=N url=mqtt://host:port filter=F [filter=F...] [username=U password=P client_id=C]'; repeat for more")
			defaultTopic := fs.String("mqtt-default-topic", "mqtt", "log topic for publishes no rule matches (keyed by client id); empty drops them")
			maxPacket := sizeFlag(fs, "mqtt-max-packet-size", uint32(1<<20), "largest MQTT packet accepted, bytes (units: 256KiB)")
			recvMax := fs.Uint16("mqtt-receive-maximum", 1024, "QoS 1/2 publishes a client may have unacknowledged")
			maxConns := fs.Int64("mqtt-max-connections", 0, "connected MQTT clients at most (0: no cap)")
			connectTimeout := fs.Duration("mqtt-connect-timeout", 10*time.Second, "close connections that send no CONNECT within this time")
			authMode := fs.String("auth", "none", "MQTT authentication: none (anyone may connect; warned) or registry (devices added with 'ferry devices add')")
			presenceTopic := fs.String("presence-topic", "__devices", "log topic receiving device connect/disconnect events; empty disables them")
			maxDisk := sizeFlag(fs, "max-disk-bytes", int64(0), "data-disk budget of the log, bytes or with a unit: 8GiB (0: none): past it the oldest mirrored segments go, then --max-disk-policy applies")
			diskPolicy := fs.String("max-disk-policy", "block", "at the disk budget with everything left unshipped: block (producers get back-pressure: Kafka THROTTLING_QUOTA_EXCEEDED, MQTT 5 PUBACK quota exceeded; nothing is lost) or drop-oldest (the oldest unshipped segments go, lowest --mirror-priority class first; counted, logged, and the center is told the gap)")
			mirrorTo := fs.String("mirror-to", "", "host:port of the center's mirror receiver (ferry full); empty: no mirroring")
			mirrorEdge := fs.String("mirror-edge-id", "", "this edge's id at the center (default: the hostname at the first start, kept in the data directory)")
			mirrorToken := fs.String("mirror-token", "", "this edge's token at the center")
			mirrorTopics := fs.StringSlice("mirror-topics", nil, "topics to mirror, as glob patterns (default: all but __*)")
			mirrorChunk := sizeFlag(fs, "mirror-chunk-bytes", 1<<20, "chunk size to aim for, before compression (bytes, or 1MiB) (a larger record batch is one chunk); smaller loses less to a reset on a bad link")
			mirrorAckTimeout := fs.Duration("mirror-ack-timeout", 2*time.Minute, "reconnect when chunks in flight get no acknowledgement for this long")
			mirrorMinRate := sizeFlag(fs, "mirror-min-rate", 8<<10, "slowest link rate (bytes/s; 8KiB) the mirror must work over: in-flight chunks get this long to be acknowledged")
			mirrorRate := sizeFlag(fs, "mirror-rate", 0, "cap on the link to the center, bytes/s (0: uncapped; 64KiB)")
			mirrorSchedule := fs.String("mirror-rate-schedule", "", "rates by time of day, e.g. '08:00-20:00=8192,20:00-08:00=0' (0: uncapped); outside its windows --mirror-rate applies")
			mirrorPriority := fs.String("mirror-priority", "", "priority classes on the link, e.g. 'alarms*=0,telemetry=2' (0 goes first; other topics are class 1)")
			mirrorShare := fs.String("mirror-class-share", "", "classes' guaranteed shares of the link's bytes, e.g. '2=20%,1=30%' (at most 100% in all): a class with chunks waiting goes before more urgent ones until it has had its share; empty: strict priority")
			mirrorCatchUp := fs.String("mirror-catchup", "oldest-first", "order of a backlog after an outage: oldest-first, or live-tail-first (the newest records first, the backlog behind them; the center stages the tail in __tail.{edge}.{topic} and merges it in order)")
			mirrorCA := fs.String("mirror-tls-ca", "", "PEM CA bundle: connect to the center over TLS and verify its certificate with it")
			mirrorCert := fs.String("mirror-tls-cert", "", "PEM client certificate (chain) this edge shows the center over TLS; its common name must be the edge id")
			mirrorKey := fs.String("mirror-tls-key", "", "PEM private key for --mirror-tls-cert")
			mirrorLevel := fs.String("mirror-zstd-level", "default", "zstd level of shipped chunks: fastest, default, better or best")
			mirrorKafka := fs.StringSlice("mirror-kafka", nil, "bootstrap brokers (host:port) of an existing Kafka cluster to mirror into instead of a center: each record into {edge}.{topic}, partition p into p, with a ferry.offset header; resumes from the cluster's tail")
			mirrorKafkaSASL := fs.String("mirror-kafka-sasl", "none", "SASL mechanism at the Kafka target: none, plain, scram-sha-256 or scram-sha-512")
			mirrorKafkaUser := fs.String("mirror-kafka-user", "", "SASL user at the Kafka target")
			mirrorKafkaPass := fs.String("mirror-kafka-password", "", "SASL password at the Kafka target")
			mirrorKafkaTLS := fs.Bool("mirror-kafka-tls", false, "connect to the Kafka target over TLS (verified with --mirror-tls-ca, else the system's roots; --mirror-tls-cert/key for a client certificate)")
			mirrorKafkaTemplate := fs.String("mirror-kafka-topic-template", "{edge}.{topic}", "name of an edge topic's copy at the Kafka target")
			mirrorKafkaRF := fs.Int("mirror-kafka-replication-factor", 0, "replication factor of the topics created at the Kafka target (0: the cluster's default)")
			mirrorKafkaISR := fs.Int("mirror-kafka-min-insync-replicas", 0, "min.insync.replicas of the topics created at the Kafka target (0: the cluster's default)")
			mirrorKafkaTxn := fs.Bool("mirror-kafka-transactional", false, "write to the Kafka target in transactions (transactional id ferry-mirror.{edge}): fences any other sender of this edge; consumers read with read_committed")
			return func(args []string, out io.Writer) error {
				if err := exactArgs(args); err != nil {
					return err
				}
				logger, err := node.logger()
				if err != nil {
					return err
				}
				mo := mqtt.Options{DefaultTopic: *defaultTopic, MaxPacketSize: *maxPacket, ReceiveMaximum: *recvMax,
					MaxConnections: *maxConns, ConnectTimeout: *connectTimeout, PresenceTopic: *presenceTopic}
				for _, r := range *rules {
					if r == "" {
						continue
					}
					rule, err := mqtt.ParseRule(r)
					if err != nil {
						return usagef("--mqtt-rule: %v", err)
					}
					mo.Rules = append(mo.Rules, rule)
				}
				for _, b := range *bridges {
					bridge, err := mqtt.ParseBridge(b)
					if err != nil {
						return usagef("--mqtt-bridge: %v", err)
					}
					mo.Bridges = append(mo.Bridges, bridge)
				}
				policy, err := flog.ParseBudgetPolicy(*diskPolicy)
				if err != nil {
					return usagef("--max-disk-policy: %v", err)
				}
				ok, zl := zstd.EncoderLevelFromString(*mirrorLevel)
				if !ok {
					return usagef("--mirror-zstd-level %q: want fastest, default, better or best", *mirrorLevel)
				}
				schedule, err := mirror.ParseSchedule(*mirrorSchedule)
				if err != nil {
					return usagef("--mirror-rate-schedule: %v", err)
				}
				classes, err := mirror.ParseClasses(*mirrorPriority)
				if err != nil {
					return usagef("--mirror-priority: %v", err)
				}
				shares, err := mirror.ParseShares(*mirrorShare)
				if err != nil {
					return usagef("--mirror-class-share: %v", err)
				}
				catchUp, err := mirror.ParseCatchUp(*mirrorCatchUp)
				if err != nil {
					return usagef("--mirror-catchup: %v", err)
				}
				var kafka *mirror.KafkaOptions
				if len(*mirrorKafka) > 0 {
					if *mirrorTo != "" {
						return usagef("--mirror-to and --mirror-kafka: choose one target")
					}
					if catchUp == mirror.CatchUpLiveTailFirst {
						return usagef("--mirror-catchup live-tail-first: a Kafka target takes each partition in order only")
					}
					mech, err := mirror.ParseKafkaSASL(*mirrorKafkaSASL, *mirrorKafkaUser, *mirrorKafkaPass)
					if err != nil {
						return usagef("--mirror-kafka-sasl: %v", err)
					}
					kafka = &mirror.KafkaOptions{Brokers: *mirrorKafka, SASL: mech, TopicTemplate: *mirrorKafkaTemplate,
						ReplicationFactor: int16(*mirrorKafkaRF), MinInsyncReplicas: *mirrorKafkaISR, Transactional: *mirrorKafkaTxn}
					if *mirrorKafkaTLS || *mirrorCA != "" || *mirrorCert != "" {
						conf, err := clientTLS(*mirrorCA, *mirrorCert, *mirrorKey, (*mirrorKafka)[0])
						if err != nil {
							return err
						}
						if conf == nil {
							conf = &tls.Config{MinVersion: tls.VersionTLS12}
						}
						conf.ServerName = "" // each broker's host, set by the client
						kafka.TLS = conf
					}
				}
				var mirrorTLS *tls.Config
				if kafka == nil {
					if mirrorTLS, err = clientTLS(*mirrorCA, *mirrorCert, *mirrorKey, *mirrorTo); err != nil {
						return err
					}
				}
				tlsConf, err := node.serverTLS("mqtt", *mqttCert, *mqttKey, *mqttClientCA, 0)
				if err != nil {
					return err
				}
				if tlsConf == nil {
					*mqttTLSAddr = ""
				}
				return node.run(edge.Options{
					Logger: logger, AutoCreateTopics: *autoCreate, DefaultPartitions: *defaultParts, MaxDiskBytes: *maxDisk, DiskPolicy: policy,
					MQTTAddr: *mqttAddr, MQTTTLSAddr: *mqttTLSAddr, MQTTTLS: tlsConf, MQTTWSAddr: *mqttWS, MQTT: mo, AuthMode: *authMode,
					MirrorTo: mirror.SenderOptions{Center: *mirrorTo, EdgeID: *mirrorEdge, Token: *mirrorToken, Topics: *mirrorTopics, Level: zl, ChunkBytes: *mirrorChunk, AckTimeout: *mirrorAckTimeout, MinRate: *mirrorMinRate, TLS: mirrorTLS,
						RateLimit: *mirrorRate, RateSchedule: schedule, Classes: classes, Shares: shares, CatchUp: catchUp, Kafka: kafka},
				})
			}
		},
	}
}

// defaultMQTTRule routes the usual factory telemetry layout to a keyed
// topic, so a fresh broker turns factory/SITE/DEVICE/telemetry into records
// keyed by device.
const defaultMQTTRule = "factory/+site/+device/telemetry -> telemetry key={device}"

// clientTLS is the TLS configuration for dialing addr: the center's
// certificate verified with the CA bundle in caFile (the system's roots
// without one), and a client certificate when certFile is set. Neither:
// no TLS.
func clientTLS(caFile, certFile, keyFile, addr string) (*tls.Config, error) {
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, usagef("--mirror-to %q: want host:port", addr)
	}
	conf := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificates", caFile)
		}
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("loading the mirror's client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}
