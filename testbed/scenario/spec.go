package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Size is how big a scenario runs: Reduced in `make test`, Full from
// `make bench` (FERRY_SCENARIO_SIZE=full).
type Size string

const (
	Reduced Size = "reduced"
	Full    Size = "full"
)

// ParseSize reads a size name; "" is Reduced.
func ParseSize(s string) (Size, error) {
	switch Size(s) {
	case "", Reduced:
		return Reduced, nil
	case Full:
		return Full, nil
	}
	return "", fmt.Errorf("scenario: size %q: want reduced or full", s)
}

// Scenario is a scenario file. See testbed/README.md for the format.
type Scenario struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// Duration is how long the fleet publishes; fault times are relative
	// to its start. Settle is how long the center may then take to hold
	// everything the edges hold, once every fault is healed (2 min in
	// reduced size and 10 min in full when left out).
	Duration Sized[Duration] `yaml:"duration"`
	Settle   Sized[Duration] `yaml:"settle"`
	Center   Center          `yaml:"center"`
	Gateways []Gateway       `yaml:"gateways"`
	// Devices is each gateway's device fleet, Kafka its Kafka producer
	// (none when left out).
	Devices Devices `yaml:"devices"`
	Kafka   *Kafka  `yaml:"kafka"`
	Faults  []Fault `yaml:"faults"`
	Expect  Expect  `yaml:"expect"`
}

// Center is the `ferry full` node.
type Center struct {
	// Flags are added to its command line.
	Flags []string `yaml:"flags"`
}

// Gateway is one `ferry edge`, mirroring to the center through its own
// link (a toxiproxy proxy), with --auth registry and its fleet's devices
// registered.
type Gateway struct {
	ID         string   `yaml:"id"`
	Partitions int      `yaml:"partitions"` // --default-partitions; 1 when left out
	Flags      []string `yaml:"flags"`
}

// Devices is a gateway's MQTT device fleet.
type Devices struct {
	Count Sized[int]     `yaml:"count"`
	Rate  Sized[float64] `yaml:"rate"` // readings per second per device
	QoS   int            `yaml:"qos"`
	// Bursts: the probability that a reading starts a burst, and how many
	// readings a burst sends back to back (10 when left out).
	Bursts struct {
		Probability float64 `yaml:"probability"`
		Length      int     `yaml:"length"`
	} `yaml:"bursts"`
	// AlarmProbability: the probability that a reading starts an alarm.
	AlarmProbability float64 `yaml:"alarm_probability"`
	// ConnectSpread: devices make their first connection at random within
	// this time of the start (the edge checks each password with bcrypt,
	// some 50 ms of CPU, so a thousand devices at once queue for seconds).
	ConnectSpread Sized[Duration] `yaml:"connect_spread"`
}

// Kafka is a gateway's Kafka producer.
type Kafka struct {
	Topic string         `yaml:"topic"`
	Rate  Sized[float64] `yaml:"rate"` // records per second
	Keys  int            `yaml:"keys"`
	Size  int            `yaml:"size"` // bytes per value, about
}

// Expect holds what a scenario asserts beyond the check every scenario
// makes (every acknowledged record at the center exactly once, in order
// per key; every device connected).
type Expect struct {
	// MaxFailed bounds the publishes and records whose outcome is unknown
	// (no acknowledgement); no bound when left out.
	MaxFailed *int64 `yaml:"max_failed"`
}

// Fault is one event of the schedule.
type Fault struct {
	// At is when, from the fleet's start: a duration ("12s") or a share of
	// the scenario's duration ("40%").
	At At `yaml:"at"`
	// Do is the action:
	//   link-down, link-up       stop or start the gateway's link
	//   bandwidth                cap the link (edge → center) at Rate
	//   latency                  add Latency ± Jitter each way
	//   reset-peer               reset the link's connections (TCP RST) until the edge sees the link down
	//   clear                    remove the link's toxics
	//   kill                     SIGKILL the gateway or the center
	//   stop                     SIGTERM it and wait for it to exit
	//   start                    start it again (same ports, same data)
	Do string `yaml:"do"`
	// Target is a gateway id, or "center" (kill, stop, start).
	Target string `yaml:"target"`
	// For undoes the action after this long (a duration or a share of the
	// scenario's duration, as At): the link comes back, the toxic goes,
	// the process starts again.
	For At `yaml:"for"`
	// When delays the action until a condition holds (at most 60 s):
	// "backfilling": the gateway's link is up and its mirror still has
	// records older than 2 s to ship.
	When    string   `yaml:"when"`
	Rate    ByteRate `yaml:"rate"`
	Latency Duration `yaml:"latency"`
	Jitter  Duration `yaml:"jitter"`
}

// Sized is a value that may differ by size: a plain value, or
// {reduced: A, full: B}.
type Sized[T any] struct {
	Reduced, Full T
	Set           bool
}

// Get returns the value for size.
func (s Sized[T]) Get(size Size) T {
	if size == Full {
		return s.Full
	}
	return s.Reduced
}

func (s *Sized[T]) UnmarshalYAML(n *yaml.Node) error {
	s.Set = true
	if n.Kind != yaml.MappingNode {
		if err := n.Decode(&s.Reduced); err != nil {
			return err
		}
		return n.Decode(&s.Full)
	}
	var got []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var err error
		switch k.Value {
		case "reduced":
			err = v.Decode(&s.Reduced)
		case "full":
			err = v.Decode(&s.Full)
		default:
			return fmt.Errorf("line %d: %q: a sized value has keys reduced and full", k.Line, k.Value)
		}
		if err != nil {
			return err
		}
		if slices.Contains(got, k.Value) {
			return fmt.Errorf("line %d: %s given twice", k.Line, k.Value)
		}
		got = append(got, k.Value)
	}
	if len(got) != 2 {
		return fmt.Errorf("line %d: a sized value needs both reduced and full", n.Line)
	}
	return nil
}

// Duration is a time.Duration written as "1m30s".
type Duration time.Duration

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: %q: want a duration such as 30s or 2m", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// At is a point of the schedule: a duration or a percentage of the
// scenario's duration.
type At struct {
	Abs     time.Duration
	Percent float64
	IsShare bool
}

func (a *At) UnmarshalYAML(n *yaml.Node) error {
	if p, ok := strings.CutSuffix(n.Value, "%"); ok {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || f < 0 || f > 100 {
			return fmt.Errorf("line %d: %q: want a percentage from 0%% to 100%%", n.Line, n.Value)
		}
		*a = At{Percent: f, IsShare: true}
		return nil
	}
	var d Duration
	if err := d.UnmarshalYAML(n); err != nil {
		return err
	}
	*a = At{Abs: time.Duration(d)}
	return nil
}

func (a At) isZero() bool { return a.Abs == 0 && a.Percent == 0 }

// Of resolves the point for a run of the given duration.
func (a At) Of(d time.Duration) time.Duration {
	if a.IsShare {
		return time.Duration(float64(d) * a.Percent / 100)
	}
	return a.Abs
}

// ByteRate is bytes per second, written "64KiB", "1MB" or "5000".
type ByteRate int64

func (r *ByteRate) UnmarshalYAML(n *yaml.Node) error {
	s := strings.TrimSuffix(strings.TrimSpace(n.Value), "/s")
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"KB", 1000}, {"MB", 1000 * 1000}, {"B", 1}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(v), u.m
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		return fmt.Errorf("line %d: %q: want bytes per second such as 64KiB or 1MB", n.Line, n.Value)
	}
	*r = ByteRate(v * mult)
	return nil
}

// Load reads and checks a scenario file.
func Load(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Parse decodes a scenario strictly (unknown keys are errors) and checks
// it.
func Parse(b []byte) (*Scenario, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var s Scenario
	if err := dec.Decode(&s); err != nil {
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document")
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return &s, nil
}

var gatewayID = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{0,31}$`)

// check validates the scenario, every problem listed.
func (s *Scenario) check() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if s.Name == "" {
		bad("name: missing")
	}
	if !s.Duration.Set || s.Duration.Reduced <= 0 || s.Duration.Full <= 0 {
		bad("duration: missing or not positive")
	}
	if len(s.Gateways) == 0 {
		bad("gateways: at least one")
	}
	ids := map[string]bool{}
	for i, g := range s.Gateways {
		switch {
		case !gatewayID.MatchString(g.ID):
			bad("gateways[%d]: id %q: want letters, digits, _ and -, at most 32", i, g.ID)
		case g.ID == "center" || ids[g.ID]:
			bad("gateways[%d]: id %q taken", i, g.ID)
		}
		ids[g.ID] = true
		if g.Partitions < 0 {
			bad("gateways[%d]: partitions %d", i, g.Partitions)
		}
	}
	d := s.Devices
	if d.Count.Reduced < 0 || d.Count.Full < 0 {
		bad("devices.count: negative")
	}
	if (d.Count.Reduced > 0 || d.Count.Full > 0) && (d.Rate.Reduced <= 0 || d.Rate.Full <= 0) {
		bad("devices.rate: missing or not positive")
	}
	if d.QoS != 0 && d.QoS != 1 {
		bad("devices.qos: %d: want 0 or 1", d.QoS)
	}
	if d.Bursts.Probability < 0 || d.Bursts.Probability > 1 || d.AlarmProbability < 0 || d.AlarmProbability > 1 {
		bad("devices: probabilities must be within 0..1")
	}
	if d.Bursts.Length < 0 {
		bad("devices.bursts.length: negative")
	}
	if k := s.Kafka; k != nil {
		if k.Topic == "" || strings.HasPrefix(k.Topic, "__") || k.Topic == "telemetry" {
			bad("kafka.topic: %q: want a topic of its own", k.Topic)
		}
		if k.Rate.Reduced <= 0 || k.Rate.Full <= 0 {
			bad("kafka.rate: missing or not positive")
		}
		if k.Keys < 0 || k.Size < 0 {
			bad("kafka: keys and size must not be negative")
		}
	}
	for i, f := range s.Faults {
		errs = append(errs, f.check(i, ids)...)
	}
	return errors.Join(errs...)
}

// faultFields says, for each action, which optional fields it takes.
var faultFields = map[string]struct {
	process, link     bool // targets
	rate, latency, fo bool // takes Rate, Latency (and Jitter), For
}{
	"link-down":  {link: true, fo: true},
	"link-up":    {link: true},
	"bandwidth":  {link: true, rate: true, fo: true},
	"latency":    {link: true, latency: true, fo: true},
	"reset-peer": {link: true},
	"clear":      {link: true},
	"kill":       {process: true, fo: true},
	"stop":       {process: true, fo: true},
	"start":      {process: true},
}

func (f Fault) check(i int, gateways map[string]bool) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("faults[%d] (%s): %s", i, f.Do, fmt.Sprintf(format, args...)))
	}
	spec, ok := faultFields[f.Do]
	if !ok {
		names := make([]string, 0, len(faultFields))
		for n := range faultFields {
			names = append(names, n)
		}
		slices.Sort(names)
		bad("unknown action; want one of %s", strings.Join(names, ", "))
		return errs
	}
	switch {
	case f.Target == "center" && !spec.process:
		bad("the center has no link of its own: target a gateway")
	case f.Target != "center" && !gateways[f.Target]:
		bad("target %q: no such gateway", f.Target)
	}
	if (f.Rate > 0) != spec.rate {
		bad("rate: required by bandwidth, and only there")
	}
	if (f.Latency > 0) != spec.latency || (f.Jitter > 0 && !spec.latency) {
		bad("latency (and jitter): required by latency, and only there")
	}
	if !f.For.isZero() && !spec.fo {
		bad("for: not undoable")
	}
	if f.When != "" && (f.When != "backfilling" || f.Target == "center") {
		bad("when: %q: the only condition is backfilling, of a gateway", f.When)
	}
	return errs
}
