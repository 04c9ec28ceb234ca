package scenario

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"ferry/testbed/fleet"
)

// Options configure a run.
type Options struct {
	// Ferry is the ferry binary to run.
	Ferry string
	// Dir is the work directory: data directories and full logs of the
	// nodes (<node>.log), kept after the run.
	Dir  string
	Size Size
	// Climate is where the devices' readings come from.
	Climate *fleet.Climate
	// Log receives the progress lines (every Progress, 1 s by default),
	// the schedule's events as they fire, and the nodes' warnings and
	// errors.
	Log      io.Writer
	Progress time.Duration
}

// Report is what a run did and found.
type Report struct {
	Scenario string
	Size     Size
	// Duration is the fleet's publishing time, Settle how long the center
	// then took to hold everything, Elapsed the whole run.
	Duration, Settle, Elapsed time.Duration
	Gateways                  []GatewayReport
	Events                    []Event
	// Latency is from the payload's timestamp to a consumer at the center
	// reading the copy (all gateways), EdgeLatency to a consumer at the
	// gateways.
	Latency, EdgeLatency fleet.LatencySummary
	// CenterRefusals: the edge connections the center refused and closed
	// (from its log): "gw1: chunk: chunk orders-0 at 716: zstd: CRC check
	// failed". Nothing of a refused chunk is stored, and the edge resends
	// it, so they cost time, not records; on a healthy link there should
	// be none.
	CenterRefusals []string
	// Problems: every way the run failed; none when it passed.
	Problems []string
}

// GatewayReport is one gateway's part.
type GatewayReport struct {
	ID      string
	Devices fleet.MQTTSummary
	Kafka   *fleet.ProducerSummary
	// Telemetry checks the center's {id}.telemetry against the devices'
	// ledger, KafkaCheck {id}.{topic} against the producer's.
	Telemetry  fleet.Verdict
	KafkaCheck *fleet.Verdict
	// Starts counts the edge's starts (1 without restarts),
	// MirrorReconnects the times its mirror lost the center and
	// reconnected (from its log).
	Starts, MirrorReconnects int
}

// Event is one action of the schedule, as it happened.
type Event struct {
	At   time.Duration // from the fleet's start
	What string
	Note string // what was seen when it fired
	Err  string
}

func (e Event) String() string {
	s := fmt.Sprintf("%6.1fs %s", e.At.Seconds(), e.What)
	if e.Note != "" {
		s += " (" + e.Note + ")"
	}
	if e.Err != "" {
		s += ": FAILED: " + e.Err
	}
	return s
}

// OK reports whether the run passed.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// String is the report as text, a few lines per gateway.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "scenario %s (%s): %s of load, settled in %s, %s in all\n", r.Scenario, r.Size,
		r.Duration.Round(time.Millisecond), r.Settle.Round(time.Millisecond), r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(&b, "  latency device → center: %s; device → edge: %s\n", r.Latency, r.EdgeLatency)
	for _, g := range r.Gateways {
		fmt.Fprintf(&b, "  %s (%d starts, %d mirror reconnections): %s\n", g.ID, g.Starts, g.MirrorReconnects, g.Devices)
		fmt.Fprintf(&b, "    %s.telemetry at the center: %s\n", g.ID, g.Telemetry)
		if g.Kafka != nil && g.KafkaCheck != nil {
			fmt.Fprintf(&b, "    kafka: %s; at the center: %s\n", g.Kafka, g.KafkaCheck)
		}
	}
	for _, e := range r.Events {
		fmt.Fprintf(&b, "  event %s\n", e)
	}
	for _, c := range r.CenterRefusals {
		fmt.Fprintf(&b, "  the center refused %s\n", c)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "  PROBLEM: %s\n", p)
	}
	return b.String()
}

// runner holds a run's nodes and fleets.
type runner struct {
	sc   *Scenario
	opts Options
	dur  time.Duration
	logw *lineWriter

	center *proc
	gws    []*gateway
	byID   map[string]*gateway
	start  time.Time

	evMu   sync.Mutex
	events []Event
}

// gateway is one edge, its link, its fleet and producer.
type gateway struct {
	spec     Gateway
	proc     *proc
	link     *link
	devices  []fleet.Device
	mqtt     *fleet.MQTTFleet
	producer *fleet.Producer
	consumer *fleet.Consumer // at the edge
}

func (g *gateway) topics(k *Kafka) []string {
	t := []string{"telemetry"}
	if k != nil {
		t = append(t, k.Topic)
	}
	return t
}

// Run runs a scenario: it starts the center and the gateways, runs the
// fleets for the scenario's duration while the schedule's faults happen,
// heals what is still broken, waits for the center to hold everything the
// gateways hold, and checks it. A setup failure is an error; everything
// else is in the report's Problems. Every process and goroutine it
// started has ended when it returns.
func Run(ctx context.Context, sc *Scenario, opts Options) (*Report, error) {
	if opts.Progress <= 0 {
		opts.Progress = time.Second
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.Climate == nil {
		return nil, errors.New("scenario: Options.Climate is required")
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	r := &runner{sc: sc, opts: opts, dur: time.Duration(sc.Duration.Get(opts.Size)), logw: &lineWriter{w: opts.Log},
		byID: map[string]*gateway{}}
	began := time.Now()
	defer r.stopAll()
	if err := r.setUp(); err != nil {
		return nil, err
	}
	rep := &Report{Scenario: sc.Name, Size: opts.Size, Duration: r.dur, Gateways: make([]GatewayReport, len(r.gws))}
	// A consumer at the center reads the copies from the start, as they
	// come, for the latency of every record, until the center holds them
	// all.
	ckafka, _, _, _ := r.center.addrs()
	centerCons, err := fleet.StartConsumer(ckafka, r.centerTopics()...)
	if err != nil {
		return nil, err
	}
	defer centerCons.Close()
	r.load(ctx, rep, centerCons)
	settleStart := time.Now()
	r.heal()
	total := r.settle(ctx, rep)
	rep.Settle = time.Since(settleStart)
	for deadline := time.Now().Add(30 * time.Second); centerCons.Records() < total && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond) // polling, with a deadline
	}
	rep.Latency = centerCons.Latency()
	r.check(ctx, rep)
	r.mirrorTrouble(rep)
	rep.Events = r.events
	for _, e := range r.events {
		if e.Err != "" {
			rep.Problems = append(rep.Problems, "event "+e.String())
		}
	}
	rep.Elapsed = time.Since(began)
	return rep, nil
}

// setUp starts the center, registers each gateway's devices, and starts
// the links and the gateways.
func (r *runner) setUp() error {
	var tokens []string
	for _, g := range r.sc.Gateways {
		tokens = append(tokens, "--mirror-token", g.ID+"="+token(g.ID))
	}
	r.center = &proc{name: "center", mode: "full", bin: r.opts.Ferry, dataDir: filepath.Join(r.opts.Dir, "center"),
		args: append(tokens, r.sc.Center.Flags...), logw: r.logw}
	if err := r.center.start(); err != nil {
		return err
	}
	_, _, _, mirrorAddr := r.center.addrs()
	n := r.sc.Devices.Count.Get(r.opts.Size)
	errs := make([]error, len(r.sc.Gateways))
	var wg sync.WaitGroup
	for i, spec := range r.sc.Gateways {
		g := &gateway{spec: spec}
		r.gws = append(r.gws, g)
		r.byID[spec.ID] = g
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.startGateway(g, n, mirrorAddr)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// token is a gateway's mirror token.
func token(id string) string { return "tok-" + id }

func (r *runner) startGateway(g *gateway, devices int, mirrorAddr string) error {
	dir := filepath.Join(r.opts.Dir, g.spec.ID)
	for i := range devices {
		pw := make([]byte, 12)
		rand.Read(pw)
		d := fleet.Device{ID: fmt.Sprintf("%s-d%04d", g.spec.ID, i), Password: hex.EncodeToString(pw)}
		cmd := exec.Command(r.opts.Ferry, "devices", "add", d.ID, "--password-stdin", "--publish", "factory/+/{device}/#", "--data-dir", dir, "--create-data-dir")
		cmd.Stdin = strings.NewReader(d.Password + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: ferry devices add %s: %v: %s", g.spec.ID, d.ID, err, out)
		}
		g.devices = append(g.devices, d)
	}
	l, err := newLink(g.spec.ID, mirrorAddr)
	if err != nil {
		return err
	}
	g.link = l
	parts := max(g.spec.Partitions, 1)
	args := []string{"--auth", "registry", "--mirror-to", l.addr(), "--mirror-edge-id", g.spec.ID, "--mirror-token", token(g.spec.ID),
		"--default-partitions", strconv.Itoa(parts)}
	g.proc = &proc{name: g.spec.ID, mode: "edge", bin: r.opts.Ferry, dataDir: dir, args: append(args, g.spec.Flags...), logw: r.logw}
	return g.proc.start()
}

// stopAll kills every node and closes every link.
func (r *runner) stopAll() {
	for _, g := range r.gws {
		if g.proc != nil {
			g.proc.kill()
		}
		if g.link != nil {
			g.link.close()
		}
	}
	if r.center != nil {
		r.center.kill()
	}
}

// load runs the fleets and producers for the scenario's duration, the
// schedule beside them, with progress lines; it returns once every
// publish has its outcome and every scheduled action has happened.
func (r *runner) load(ctx context.Context, rep *Report, centerCons *fleet.Consumer) {
	sc, size := r.sc, r.opts.Size
	r.start = time.Now()
	loadCtx, cancel := context.WithTimeout(ctx, r.dur)
	defer cancel()

	var wg sync.WaitGroup
	results := rep.Gateways
	var err error
	for i, g := range r.gws {
		results[i].ID = g.spec.ID
		ekafka, _, _, _ := g.proc.addrs()
		if g.consumer, err = fleet.StartConsumer(ekafka, g.topics(sc.Kafka)...); err != nil {
			rep.Problems = append(rep.Problems, g.spec.ID+": edge consumer: "+err.Error())
			return
		}
		d := sc.Devices
		g.mqtt = fleet.NewMQTT(fleet.MQTTConfig{
			Addr:          func() string { _, _, m, _ := g.proc.addrs(); return m },
			Devices:       g.devices,
			Topic:         "factory/" + g.spec.ID + "/{device}/telemetry",
			Rate:          d.Rate.Get(size),
			QoS:           byte(d.QoS),
			BurstP:        d.Bursts.Probability,
			BurstLen:      d.Bursts.Length,
			AlarmP:        d.AlarmProbability,
			Climate:       r.opts.Climate,
			ConnectSpread: time.Duration(d.ConnectSpread.Get(size)),
			Seed:          uint64(i + 1),
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i].Devices = g.mqtt.Run(loadCtx)
		}()
		if k := sc.Kafka; k != nil {
			g.producer, err = fleet.NewProducer(fleet.ProducerConfig{Addr: ekafka, Topic: k.Topic, Keys: max(k.Keys, 1),
				KeyPrefix: g.spec.ID + "-", Rate: k.Rate.Get(size), Size: k.Size, Seed: uint64(i + 1)})
			if err != nil {
				rep.Problems = append(rep.Problems, g.spec.ID+": producer: "+err.Error())
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := g.producer.Run(loadCtx)
				results[i].Kafka = &s
			}()
		}
	}
	schedDone := make(chan struct{})
	go func() {
		defer close(schedDone)
		r.runSchedule(ctx)
	}()
	progressDone := make(chan struct{})
	stopProgress := make(chan struct{})
	go func() {
		defer close(progressDone)
		r.progress(stopProgress, centerCons)
	}()
	wg.Wait()
	<-schedDone
	close(stopProgress)
	<-progressDone
	var edgeHist fleet.LatencySummary
	for i, g := range r.gws {
		results[i].Starts = g.proc.starts
		// The edge consumers read what the edges hold by now.
		g.consumer.Close()
		if l := g.consumer.Latency(); l.Count > edgeHist.Count {
			edgeHist = l // the gateway with the most records stands for them
		}
	}
	rep.EdgeLatency = edgeHist
}

// centerTopics are the copies of the gateways' topics at the center.
func (r *runner) centerTopics() []string {
	var out []string
	for _, g := range r.gws {
		for _, t := range g.topics(r.sc.Kafka) {
			out = append(out, g.spec.ID+"."+t)
		}
	}
	return out
}

// heal undoes whatever the schedule left broken: links come up without
// toxics, stopped nodes start.
func (r *runner) heal() {
	for _, g := range r.gws {
		if err := g.link.heal(); err != nil {
			r.event("heal "+g.spec.ID+" link", "", err)
		}
	}
	for _, p := range r.procs() {
		if !p.running() {
			err := p.start()
			r.event("heal: start "+p.name, "it was down at the end of the schedule", err)
		}
	}
}

func (r *runner) procs() []*proc {
	ps := []*proc{r.center}
	for _, g := range r.gws {
		ps = append(ps, g.proc)
	}
	return ps
}

// settle waits until, for every gateway, the center's copy of each of its
// topics ends where the gateway's log does; it returns how many offsets
// the copies of the fleets' topics hold then.
func (r *runner) settle(ctx context.Context, rep *Report) int64 {
	limit := 2 * time.Minute
	if r.opts.Size == Full {
		limit = 10 * time.Minute
	}
	if r.sc.Settle.Set {
		limit = time.Duration(r.sc.Settle.Get(r.opts.Size))
	}
	deadline := time.Now().Add(limit)
	ckafka, _, _, _ := r.center.addrs()
	lastLog := time.Now()
	for {
		behind, err := r.behind(ctx, ckafka)
		if err == nil && len(behind) == 0 {
			ends, err := fleet.EndOffsets(ctx, ckafka, r.centerTopics()...)
			if err != nil {
				return 0
			}
			var n int64
			for _, e := range ends {
				for _, o := range e {
					n += o
				}
			}
			return n
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("the center did not catch up within %s: %v (%v)", limit, behind, err))
			return 0
		}
		if time.Since(lastLog) >= 5*time.Second {
			fmt.Fprintf(r.logw, "settling: %v %v\n", behind, errOrNil(err))
			lastLog = time.Now()
		}
		time.Sleep(100 * time.Millisecond) // polling, with a deadline
	}
}

func errOrNil(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// behind lists the gateway topics whose copy at the center does not end
// where the gateway's log does.
func (r *runner) behind(ctx context.Context, centerKafka string) ([]string, error) {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var out []string
	for _, g := range r.gws {
		ekafka, _, _, _ := g.proc.addrs()
		topics, err := fleet.Topics(qctx, ekafka)
		if err != nil {
			return nil, err
		}
		edge, err := fleet.EndOffsets(qctx, ekafka, topics...)
		if err != nil {
			return nil, err
		}
		copies := make([]string, len(topics))
		for i, t := range topics {
			copies[i] = g.spec.ID + "." + t
		}
		center, err := fleet.EndOffsets(qctx, centerKafka, copies...)
		if err != nil {
			return nil, err
		}
		for _, t := range topics {
			e, c := edge[t], center[g.spec.ID+"."+t]
			if !sameEnds(e, c) {
				out = append(out, fmt.Sprintf("%s.%s %v of %v", g.spec.ID, t, c, e))
			}
		}
	}
	return out, nil
}

// sameEnds reports whether a copy's end offsets are the edge's; a copy
// the center has not created yet ends at 0.
func sameEnds(edge, copy []int64) bool {
	if len(copy) > len(edge) {
		return false
	}
	for p, e := range edge {
		var c int64
		if p < len(copy) {
			c = copy[p]
		}
		if c != e {
			return false
		}
	}
	return true
}

// check reads each gateway's copies at the center and checks them against
// the ledgers, and against the gateway's own log; then the expectations.
func (r *runner) check(ctx context.Context, rep *Report) {
	ckafka, _, _, _ := r.center.addrs()
	var failed int64
	for i, g := range r.gws {
		gr := &rep.Gateways[i]
		ekafka, _, _, _ := g.proc.addrs()
		for _, t := range g.topics(r.sc.Kafka) {
			copyName := g.spec.ID + "." + t
			rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			atCenter, err := fleet.ReadAll(rctx, ckafka, copyName)
			var atEdge []fleet.Record
			if err == nil {
				atEdge, err = fleet.ReadAll(rctx, ekafka, t)
			}
			cancel()
			if err != nil {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s: reading: %v", copyName, err))
				continue
			}
			if p := compareCopies(atEdge, atCenter); p != "" {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s differs from %s's %s: %s", copyName, g.spec.ID, t, p))
			}
			var v fleet.Verdict
			if t == "telemetry" {
				v = fleet.Check(g.mqtt.Ledger(), atCenter)
				gr.Telemetry = v
			} else if g.producer != nil {
				v = fleet.Check(g.producer.Ledger(), atCenter)
				gr.KafkaCheck = &v
			}
			for _, p := range v.Problems() {
				rep.Problems = append(rep.Problems, copyName+": "+p)
			}
		}
		failed += gr.Devices.Failed
		if gr.Kafka != nil {
			failed += gr.Kafka.Failed
		}
		if gr.Devices.NeverConnected > 0 {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: %d devices never connected: %v", g.spec.ID, gr.Devices.NeverConnected, gr.Devices.Errors))
		}
		if gr.Devices.Acked == 0 && gr.Devices.Devices > 0 && r.sc.Devices.QoS == 1 {
			rep.Problems = append(rep.Problems, g.spec.ID+": no publish was acknowledged")
		}
	}
	if m := r.sc.Expect.MaxFailed; m != nil && failed > *m {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%d publishes and records failed (unknown outcome), at most %d expected", failed, *m))
	}
}

// compareCopies checks the center's copy holds the edge's records at the
// same offsets; it describes the first differences ("" when identical).
func compareCopies(edge, center []fleet.Record) string {
	type at struct {
		p int32
		o int64
	}
	byAt := make(map[at]fleet.Record, len(center))
	for _, c := range center {
		byAt[at{c.Partition, c.Offset}] = c
	}
	var diffs []string
	n := 0
	for _, e := range edge {
		c, ok := byAt[at{e.Partition, e.Offset}]
		if ok && string(c.Key) == string(e.Key) && string(c.Value) == string(e.Value) {
			continue
		}
		n++
		if len(diffs) < 5 {
			diffs = append(diffs, fmt.Sprintf("p%d@%d", e.Partition, e.Offset))
		}
	}
	if n == 0 && len(edge) == len(center) {
		return ""
	}
	return fmt.Sprintf("%d records at the edge, %d at the center, %d of the edge's not the same at the center (%v)", len(edge), len(center), n, diffs)
}

// lineWriter serialises writes of whole lines from many goroutines.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
