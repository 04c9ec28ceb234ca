package mqtt

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	flog "ferry/log"
)

// Bridge subscribes to another MQTT broker (a Mosquitto already on the
// gateway, say) and ingests what it receives through the same rules as
// local publishes.
type Bridge struct {
	// Name identifies the bridge in logs, metrics and the records'
	// mqtt.client_id header ("bridge:NAME").
	Name string
	// URL of the broker: mqtt://host:port or tls://host:port.
	URL string
	// ClientID upstream; empty means "ferry-bridge-NAME". The session is
	// persistent, so what the broker queues while the bridge is away is
	// delivered when it is back.
	ClientID string
	Username string
	Password string
	// Filters are subscribed to at QoS 1.
	Filters []string
	// TLS configures tls:// URLs; nil means the system roots.
	TLS *tls.Config
}

// ParseBridge reads a bridge written as space-separated key=value pairs:
// name=, url=, filter= (repeatable), client_id=, username=, password=.
func ParseBridge(s string) (Bridge, error) {
	var b Bridge
	for _, f := range strings.Fields(s) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return Bridge{}, fmt.Errorf("bridge %q: %q is not key=value", s, f)
		}
		switch k {
		case "name":
			b.Name = v
		case "url":
			b.URL = v
		case "filter":
			b.Filters = append(b.Filters, v)
		case "client_id":
			b.ClientID = v
		case "username":
			b.Username = v
		case "password":
			b.Password = v
		default:
			return Bridge{}, fmt.Errorf("bridge %q: unknown key %q (want name, url, filter, client_id, username, password)", s, k)
		}
	}
	return b, b.validate()
}

func (b Bridge) validate() error {
	if b.Name == "" || b.URL == "" || len(b.Filters) == 0 {
		return fmt.Errorf("bridge %q: name, url and at least one filter are required", b.Name)
	}
	u, err := url.Parse(b.URL)
	if err != nil {
		return fmt.Errorf("bridge %q: url: %w", b.Name, err)
	}
	if u.Scheme != "mqtt" && u.Scheme != "tcp" && u.Scheme != "tls" && u.Scheme != "mqtts" {
		return fmt.Errorf("bridge %q: url scheme %q: want mqtt:// or tls://", b.Name, u.Scheme)
	}
	return nil
}

// bridge is one running Bridge: an autopaho connection (reconnecting with
// jittered exponential backoff) whose QoS 1 messages are acknowledged
// upstream, in order, only once their records are durable.
type bridge struct {
	s      *Server
	cfg    Bridge
	client string // the dedupe session and mqtt.client_id header
	cm     *autopaho.ConnectionManager
	acks   chan bridgeAck
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	// scratch builds records; onPublish runs on paho's one receive goroutine.
	scratch recordScratch
}

type bridgeAck struct {
	c      *paho.Client
	pb     *paho.Publish
	part   *flog.Partition
	offset int64
}

func (s *Server) startBridge(cfg Bridge) (*bridge, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.URL)
	if u.Scheme == "tcp" {
		u.Scheme = "mqtt"
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "ferry-bridge-" + cfg.Name
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &bridge{s: s, cfg: cfg, client: "bridge:" + cfg.Name, acks: make(chan bridgeAck, 1024), ctx: ctx, cancel: cancel, done: make(chan struct{})}
	logger := s.logger.With("bridge", cfg.Name, "url", cfg.URL)
	cc := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		TlsCfg:                        cfg.TLS,
		KeepAlive:                     30,
		CleanStartOnInitialConnection: false,
		SessionExpiryInterval:         7 * 24 * 3600,
		ReconnectBackoff:              autopaho.NewExponentialBackoff(200*time.Millisecond, time.Minute, time.Second, 2),
		ConnectUsername:               cfg.Username,
		ConnectPassword:               []byte(cfg.Password),
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			subs := make([]paho.SubscribeOptions, len(cfg.Filters))
			for i, f := range cfg.Filters {
				subs[i] = paho.SubscribeOptions{Topic: f, QoS: 1}
			}
			go func() {
				sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				if _, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: subs}); err != nil {
					logger.Warn("mqtt bridge: subscribing failed", "err", err)
				}
			}()
			s.metrics.bridgeUp.WithLabelValues(cfg.Name).Set(1)
			logger.Info("mqtt bridge connected")
		},
		OnConnectionDown: func() bool {
			s.metrics.bridgeUp.WithLabelValues(cfg.Name).Set(0)
			logger.Warn("mqtt bridge disconnected; reconnecting")
			return true
		},
		OnConnectError: func(err error) { logger.Warn("mqtt bridge: connecting failed", "err", err) },
		ClientConfig: paho.ClientConfig{
			ClientID:                   cfg.ClientID,
			EnableManualAcknowledgment: true,
			OnPublishReceived:          []func(paho.PublishReceived) (bool, error){b.onPublish},
		},
	}
	s.metrics.bridgeUp.WithLabelValues(cfg.Name).Set(0)
	cm, err := autopaho.NewConnection(ctx, cc)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("bridge %q: %w", cfg.Name, err)
	}
	b.cm = cm
	go b.ackLoop()
	return b, nil
}

// onPublish ingests one message from upstream. It runs on paho's receive
// goroutine, so messages are handled in the order they arrive.
func (b *bridge) onPublish(pr paho.PublishReceived) (bool, error) {
	pb := pr.Packet
	if !validTopicName(pb.Topic) {
		// paho's decoder does not check strings as mochi's does: a topic
		// that is not UTF-8, or holds NUL, is refused here, acknowledged
		// upstream so the link goes on, and never stored.
		b.s.metrics.publish(pb.QoS, resultMalformed)
		b.s.logger.Warn("mqtt bridge: message with a malformed topic dropped", "bridge", b.cfg.Name, "topic", fmt.Sprintf("%q", pb.Topic))
		if pb.QoS > 0 {
			b.queue(bridgeAck{c: pr.Client, pb: pb})
		}
		return true, nil
	}
	info := publishInfo{Topic: pb.Topic, Payload: pb.Payload, QoS: pb.QoS, Retain: pb.Retain, ClientID: b.client, Device: b.client, PacketID: pb.PacketID}
	var props packets.Properties
	if pb.Properties != nil {
		props = pahoProps(pb.Properties)
		info.V5, info.Props = true, propsOf(&props)
	}
	hash := contentHash(pb.Topic, pb.Payload)
	if pb.QoS > 0 && pb.Duplicate() {
		if st, ok := b.s.dedupe.lookup(b.client, pb.PacketID, hash); ok {
			b.s.metrics.publish(pb.QoS, resultDuplicate)
			b.queue(bridgeAck{c: pr.Client, pb: pb, part: st.part, offset: st.offset})
			return true, nil
		}
	}
	var part *flog.Partition
	var res flog.AppendResult
	for attempt := 0; ; attempt++ {
		var err error
		part, res, _, err = b.s.ingest(&info, &b.scratch)
		if err == nil {
			break
		}
		// Not acknowledged upstream, and paho acknowledges in order:
		// retry rather than skip, which holds the link (back-pressure)
		// while the log refuses appends (a full disk, say).
		b.s.logger.Error("mqtt bridge: message not stored; retrying", "bridge", b.cfg.Name, "topic", pb.Topic, "err", err)
		select {
		case <-time.After(min(time.Duration(attempt+1)*100*time.Millisecond, 5*time.Second)):
		case <-b.ctx.Done():
			return true, nil
		}
	}
	b.s.deliver(b.s.inline, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: pb.QoS, Retain: pb.Retain},
		TopicName: pb.Topic, Payload: pb.Payload, PacketID: max(pb.PacketID, 1), Properties: props})
	if pb.QoS > 0 {
		if part != nil {
			b.s.dedupe.remember(b.client, pb.PacketID, hash, part, res.LastOffset)
		}
		b.queue(bridgeAck{c: pr.Client, pb: pb, part: part, offset: res.LastOffset})
	}
	return true, nil
}

func (b *bridge) queue(a bridgeAck) {
	if a.part != nil {
		// Asked now, not when the ack loop reaches it, so fsyncs of
		// different partitions run together.
		a.part.SyncSoon(a.offset)
	}
	select {
	case b.acks <- a:
	case <-b.ctx.Done():
	}
}

// ackLoop acknowledges upstream, in order, each message once durable.
func (b *bridge) ackLoop() {
	defer close(b.done)
	for {
		select {
		case a := <-b.acks:
			if a.part != nil {
				if err := a.part.WaitDurable(b.ctx, a.offset); err != nil {
					if b.ctx.Err() != nil {
						return
					}
					b.s.logger.Error("mqtt bridge: record not durable; not acknowledging", "bridge", b.cfg.Name, "err", err)
					continue
				}
			}
			if err := a.c.Ack(a.pb); err != nil {
				b.s.logger.Debug("mqtt bridge: acknowledgement not sent", "bridge", b.cfg.Name, "err", err)
			}
		case <-b.ctx.Done():
			return
		}
	}
}

// stop disconnects from upstream (unacknowledged messages are redelivered
// to the persistent session next time) and waits for the ack loop.
func (b *bridge) stop() {
	dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	b.cm.Disconnect(dctx)
	cancel()
	b.cancel()
	<-b.done
	<-b.cm.Done()
}

func pahoProps(p *paho.PublishProperties) packets.Properties {
	out := packets.Properties{ContentType: p.ContentType, ResponseTopic: p.ResponseTopic, CorrelationData: p.CorrelationData}
	if p.PayloadFormat != nil {
		out.PayloadFormat, out.PayloadFormatFlag = *p.PayloadFormat, true
	}
	for _, u := range p.User {
		out.User = append(out.User, packets.UserProperty{Key: u.Key, Val: u.Value})
	}
	return out
}
