package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session"
	"github.com/eclipse/paho.golang/paho/session/state"
)

// Device is one device's identity in the registry: its id (MQTT client id
// and user name) and password.
type Device struct {
	ID, Password string
}

// MQTTConfig configures a device fleet.
type MQTTConfig struct {
	// Addr returns the broker's MQTT address; it is asked again on every
	// connection attempt.
	Addr func() string
	// Devices: one MQTT 5 connection each.
	Devices []Device
	// Topic is the publish topic, "{device}" standing for the device id,
	// e.g. "factory/plant1/{device}/telemetry".
	Topic string
	// Rate is the readings per second of each device; QoS 0 or 1.
	Rate float64
	QoS  byte
	// BurstP is the probability that a reading starts a burst of BurstLen
	// readings sent back to back; AlarmP that a reading starts an alarm
	// (5 readings with the temperature climbing and "alarm" set, sent back
	// to back as well).
	BurstP   float64
	BurstLen int
	AlarmP   float64
	// Climate is where readings come from.
	Climate *Climate
	// AckTimeout bounds how long a QoS 1 publish waits for its PUBACK,
	// reconnections included (session state is kept across them, and the
	// publish is retransmitted with DUP); 30 s when 0.
	AckTimeout time.Duration
	// Backoff is the reconnection policy (DefaultBackoff when zero);
	// KeepAlive in seconds (30 when 0); a device's first connection is
	// made at a random time within ConnectSpread of the start.
	Backoff       Backoff
	KeepAlive     uint16
	ConnectSpread time.Duration
	// Seed makes the readings, bursts, alarms and jitter reproducible.
	Seed uint64
	// Ledger records every publish's outcome, keyed by device id (a new
	// one when nil).
	Ledger *Ledger
}

// MQTTFleet is a running device fleet.
type MQTTFleet struct {
	cfg    MQTTConfig
	ledger *Ledger

	online, connects, connectFailures, disconnects atomic.Int64
	bursts, alarms                                 atomic.Int64

	errMu   sync.Mutex
	lastErr map[string]string // kind of error → the latest one
}

// MQTTSummary is what a fleet did.
type MQTTSummary struct {
	Devices int
	Counts
	// Connects counts successful connections, ConnectFailures failed
	// attempts (refused, unreachable, timed out), Disconnects connections
	// lost while the fleet ran; Online is connected devices now.
	Connects, ConnectFailures, Disconnects, Online int64
	// NeverConnected is how many devices never connected.
	NeverConnected int
	Bursts, Alarms int64
	// Errors: the latest error of each kind.
	Errors []string
}

func (s MQTTSummary) String() string {
	return fmt.Sprintf("%d devices: %d sent, %d acked, %d failed; %d connects, %d failed connects, %d disconnects; %d bursts, %d alarms",
		s.Devices, s.Sent, s.Acked, s.Failed, s.Connects, s.ConnectFailures, s.Disconnects, s.Bursts, s.Alarms)
}

// NewMQTT returns a fleet ready to Run.
func NewMQTT(cfg MQTTConfig) *MQTTFleet {
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 30 * time.Second
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = 30
	}
	if cfg.BurstLen <= 0 {
		cfg.BurstLen = 10
	}
	if cfg.Ledger == nil {
		cfg.Ledger = NewLedger()
	}
	return &MQTTFleet{cfg: cfg, ledger: cfg.Ledger, lastErr: map[string]string{}}
}

// Ledger is the fleet's record of outcomes, keyed by device id.
func (f *MQTTFleet) Ledger() *Ledger { return f.ledger }

// Online is the number of devices connected now.
func (f *MQTTFleet) Online() int64 { return f.online.Load() }

// Summary returns the counts so far.
func (f *MQTTFleet) Summary() MQTTSummary {
	s := MQTTSummary{Devices: len(f.cfg.Devices), Counts: f.ledger.Counts(),
		Connects: f.connects.Load(), ConnectFailures: f.connectFailures.Load(), Disconnects: f.disconnects.Load(),
		Online: f.online.Load(), Bursts: f.bursts.Load(), Alarms: f.alarms.Load()}
	f.errMu.Lock()
	for k, e := range f.lastErr {
		s.Errors = append(s.Errors, k+": "+e)
	}
	f.errMu.Unlock()
	return s
}

func (f *MQTTFleet) noteErr(kind string, err error) {
	f.errMu.Lock()
	f.lastErr[kind] = err.Error()
	f.errMu.Unlock()
}

// Run connects every device and publishes until ctx is done; then each
// device finishes the publish it has in flight (up to AckTimeout, through
// reconnections), disconnects, and Run returns the summary. Every publish
// begun has its outcome in the ledger by then.
func (f *MQTTFleet) Run(ctx context.Context) MQTTSummary {
	if f.cfg.Rate <= 0 || f.cfg.Climate == nil || f.cfg.Addr == nil {
		panic("fleet: MQTTConfig needs Addr, Rate and Climate")
	}
	var wg sync.WaitGroup
	var never atomic.Int64
	for i, d := range f.cfg.Devices {
		rnd := rand.New(rand.NewPCG(f.cfg.Seed, uint64(i)))
		dev := &device{f: f, Device: d, n: i, rnd: rnd, sess: state.NewInMemory(), changed: make(chan struct{}),
			topic: strings.ReplaceAll(f.cfg.Topic, "{device}", d.ID), sensor: f.cfg.Climate.sensor(i, f.cfg.AlarmP, rnd)}
		dev.sess.SetErrorLogger(discardLogger{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !dev.run(ctx.Done()) {
				never.Add(1)
			}
		}()
	}
	wg.Wait()
	s := f.Summary()
	s.NeverConnected = int(never.Load())
	return s
}

type discardLogger struct{}

func (discardLogger) Println(...any)        {}
func (discardLogger) Printf(string, ...any) {}

// device is one simulated device: a connection loop and a publish loop
// sharing the client and the MQTT session state.
type device struct {
	Device
	f      *MQTTFleet
	n      int
	rnd    *rand.Rand // publish loop only
	topic  string
	sensor *sensor
	sess   *state.State

	mu      sync.Mutex
	cli     *paho.Client
	changed chan struct{} // closed and replaced whenever cli changes

	sessMu sync.Mutex // serialises CONNACKs with additions to the session
	gen    uint64     // the connection whose CONNACK the session took last
}

// run runs the device until stop, then until its last publish has its
// outcome; it reports whether the device ever connected.
func (d *device) run(stop <-chan struct{}) bool {
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		d.publishLoop(stop)
	}()
	return d.connLoop(stop, pubDone)
}

func (d *device) setClient(c *paho.Client) {
	d.mu.Lock()
	d.cli = c
	close(d.changed)
	d.changed = make(chan struct{})
	d.mu.Unlock()
}

// connLoop keeps the device connected until pubDone: dial, CONNECT with
// its credentials (a clean start the first time, the session resumed
// after), wait for the connection to drop, back off with jitter, again.
func (d *device) connLoop(stop, pubDone <-chan struct{}) (connected bool) {
	f := d.f
	if f.cfg.ConnectSpread > 0 {
		if !sleep(time.Duration(rand.Int64N(int64(f.cfg.ConnectSpread))), stop) {
			<-pubDone
			return false
		}
	}
	rnd := rand.New(rand.NewPCG(f.cfg.Seed^0x9e3779b97f4a7c15, uint64(d.n)))
	failures := 0
	var gen uint64
	for {
		select {
		case <-pubDone:
			return connected
		default:
		}
		gen++
		cli, err := d.connect(!connected, gen)
		if err != nil {
			f.connectFailures.Add(1)
			f.noteErr("connect", err)
			failures++
			if !sleep(f.cfg.Backoff.Delay(failures, rnd), pubDone) {
				return connected
			}
			continue
		}
		connected, failures = true, 0
		f.connects.Add(1)
		f.online.Add(1)
		d.setClient(cli)
		select {
		case <-cli.Done():
			f.online.Add(-1)
			f.disconnects.Add(1)
			d.setClient(nil)
			// A real device does not reconnect in a tight loop either.
			if !sleep(f.cfg.Backoff.Delay(1, rnd), pubDone) {
				return connected
			}
		case <-pubDone:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = cli.Disconnect(&paho.Disconnect{ReasonCode: 0})
			select {
			case <-cli.Done():
			case <-ctx.Done():
			}
			cancel()
			f.online.Add(-1)
			d.setClient(nil)
			return connected
		}
	}
}

func (d *device) connect(clean bool, gen uint64) (*paho.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", d.f.cfg.Addr())
	if err != nil {
		return nil, err
	}
	cli := paho.NewClient(paho.ClientConfig{
		Conn:          conn,
		Session:       &sessionView{State: d.sess, d: d, gen: gen},
		PacketTimeout: d.f.cfg.AckTimeout,
		OnClientError: func(error) {},
	})
	expiry := uint32(3600)
	ca, err := cli.Connect(ctx, &paho.Connect{
		ClientID: d.ID, Username: d.ID, UsernameFlag: true, Password: []byte(d.Password), PasswordFlag: true,
		KeepAlive: d.f.cfg.KeepAlive, CleanStart: clean,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry},
	})
	if err != nil {
		conn.Close()
		if ca != nil && ca.ReasonCode != 0 {
			return nil, fmt.Errorf("%s: CONNACK %#x %s", d.ID, ca.ReasonCode, ca.Properties.ReasonString)
		}
		return nil, fmt.Errorf("%s: %w", d.ID, err)
	}
	return cli, nil
}

// sessionView is the device's session state as one connection sees it.
// The state outlives connections (so a publish in flight when a
// connection drops is retransmitted on the next, with DUP, and its
// PUBACK reaches the publish still waiting); but a publish must never
// enter the session through a connection that is no longer the current
// one: it would not be written until yet another reconnection, after
// publishes made later. So a connection adds to the session only while
// the session's latest CONNACK is its own.
type sessionView struct {
	*state.State
	d   *device
	gen uint64
}

func (v *sessionView) ConAckReceived(w io.Writer, cp *packets.Connect, ca *packets.Connack) error {
	v.d.sessMu.Lock()
	defer v.d.sessMu.Unlock()
	v.d.gen = v.gen
	return v.State.ConAckReceived(w, cp, ca)
}

func (v *sessionView) AddToSession(ctx context.Context, p session.Packet, resp chan<- packets.ControlPacket) error {
	v.d.sessMu.Lock()
	defer v.d.sessMu.Unlock()
	if v.d.gen != v.gen {
		return session.ErrNoConnection
	}
	return v.State.AddToSession(ctx, p, resp)
}

// current returns the connected client, waiting for one; nil once stop
// is closed.
func (d *device) current(stop <-chan struct{}) *paho.Client {
	for {
		d.mu.Lock()
		cli, changed := d.cli, d.changed
		d.mu.Unlock()
		if cli != nil {
			select {
			case <-cli.Done():
			default:
				return cli
			}
		}
		select {
		case <-changed:
		case <-stop:
			return nil
		}
	}
}

// publishLoop publishes a reading every 1/Rate s (devices start at random
// phases; a device that fell behind does not catch up in a storm), with
// bursts and alarms sent back to back, until stop.
func (d *device) publishLoop(stop <-chan struct{}) {
	f := d.f
	interval := time.Duration(float64(time.Second) / f.cfg.Rate)
	next := time.Now().Add(time.Duration(d.rnd.Int64N(int64(interval) + 1)))
	var seq int64
	quick := 0 // readings still to send back to back
	for {
		if quick == 0 {
			if !sleep(time.Until(next), stop) {
				return
			}
			next = next.Add(interval)
			if now := time.Now(); next.Before(now) {
				next = now.Add(interval)
			}
		} else {
			quick--
		}
		r, alarm := d.sensor.next()
		switch {
		case alarm != "" && d.sensor.alarmReading == 1:
			f.alarms.Add(1)
			quick = max(quick, d.sensor.alarmLeft)
		case quick == 0 && f.cfg.BurstP > 0 && d.rnd.Float64() < f.cfg.BurstP:
			f.bursts.Add(1)
			quick = f.cfg.BurstLen - 1
		}
		if !d.publish(stop, seq, r, alarm) {
			return
		}
		seq++
	}
}

// publish publishes one reading as seq, waiting for a connection if there
// is none; it returns false, the reading unsent, once stop is closed while
// waiting.
func (d *device) publish(stop <-chan struct{}, seq int64, r Reading, alarm string) bool {
	f := d.f
	for {
		cli := d.current(stop)
		if cli == nil {
			return false
		}
		payload := appendPayload(nil, d.ID, seq, time.Now().UnixMicro(), r, d.sensor.battery, alarm)
		f.ledger.begin()
		ctx, cancel := context.WithTimeout(context.Background(), f.cfg.AckTimeout)
		_, err := cli.Publish(ctx, &paho.Publish{Topic: d.topic, QoS: f.cfg.QoS, Payload: payload})
		cancel()
		switch {
		case err == nil && f.cfg.QoS == 0:
			f.ledger.end(d.ID, seq, Sent)
		case err == nil:
			f.ledger.end(d.ID, seq, Acked)
		case errors.Is(err, session.ErrNoConnection):
			// Not sent: the connection went before the publish entered the
			// session. Send it again on the next.
			f.ledger.abandon()
			select {
			case <-cli.Done():
			case <-stop:
				return false
			}
			continue
		default:
			f.ledger.end(d.ID, seq, Failed)
			f.noteErr("publish", err)
		}
		return true
	}
}
