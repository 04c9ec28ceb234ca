package scenario

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const minimal = `
name: t
duration: {reduced: 10s, full: 5m}
gateways: [{id: gw1, partitions: 2}]
devices: {count: {reduced: 3, full: 300}, rate: 2, qos: 1}
kafka: {topic: orders, rate: 50, keys: 4, size: 200}
faults:
  - {at: 25%, do: bandwidth, target: gw1, rate: 64KiB, for: 10%}
  - {at: 3s, do: latency, target: gw1, latency: 200ms, jitter: 50ms}
  - {at: 50%, do: kill, target: center, for: 2s}
  - {at: 60%, do: kill, target: gw1, when: backfilling, for: 2s}
`

func TestParse(t *testing.T) {
	s, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Duration(s.Duration.Get(Full)); d != 5*time.Minute {
		t.Errorf("full duration %v", d)
	}
	if n := s.Devices.Count.Get(Reduced); n != 3 {
		t.Errorf("reduced count %d", n)
	}
	if r := s.Devices.Rate.Get(Full); r != 2 {
		t.Errorf("a plain value is both sizes: rate %v", r)
	}
	f := s.Faults[0]
	if f.At.Of(20*time.Second) != 5*time.Second || f.For.Of(20*time.Second) != 2*time.Second || f.Rate != 64<<10 {
		t.Errorf("fault 0: %+v", f)
	}
	if s.Faults[1].At.Of(time.Hour) != 3*time.Second {
		t.Errorf("fault 1: %+v", s.Faults[1])
	}
}

// TestParseRefuses: the decoding is strict, and a scenario that could
// not run as written is refused with every problem named.
func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ name, edit, want string }{
		{"unknown key", "gateways: [{id: gw1, partitons: 2}]", "partitons"},
		{"sized value with a stray key", "duration: {reduced: 10s, large: 5m}", "reduced and full"},
		{"sized value half given", "duration: {reduced: 10s}", "both"},
		{"bad duration", "duration: ten", "duration"},
		{"bad share", "faults: [{at: 120%, do: link-down, target: gw1}]", "percentage"},
		{"unknown action", "faults: [{at: 1s, do: flood, target: gw1}]", "unknown action"},
		{"unknown gateway", "faults: [{at: 1s, do: link-down, target: gw9}]", "no such gateway"},
		{"center has no link", "faults: [{at: 1s, do: link-down, target: center}]", "no link"},
		{"bandwidth without rate", "faults: [{at: 1s, do: bandwidth, target: gw1}]", "rate"},
		{"rate elsewhere", "faults: [{at: 1s, do: kill, target: gw1, rate: 1KiB}]", "rate"},
		{"undo a start", "faults: [{at: 1s, do: start, target: gw1, for: 2s}]", "not undoable"},
		{"unknown condition", "faults: [{at: 1s, do: kill, target: gw1, when: sunset}]", "backfilling"},
		{"qos 2", "devices: {count: 3, rate: 2, qos: 2}", "qos"},
		{"kafka on telemetry", "kafka: {topic: telemetry, rate: 5}", "topic"},
		{"duplicate gateway", "gateways: [{id: gw1}, {id: gw1}]", "taken"},
		{"bad gateway id", "gateways: [{id: 'gw 1'}]", "id"},
	} {
		lines := strings.Split(minimal, "\n")
		key := strings.SplitN(tc.edit, ":", 2)[0]
		for i, l := range lines {
			if strings.HasPrefix(l, key+":") {
				lines[i] = tc.edit
				if key == "faults" { // drop the list's items
					for j := i + 1; j < len(lines) && strings.HasPrefix(lines[j], "  "); j++ {
						lines[j] = ""
					}
				}
			}
		}
		_, err := Parse([]byte(strings.Join(lines, "\n")))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.want)
		}
	}
}

// TestScenarioFiles: every file in testbed/scenarios parses.
func TestScenarioFiles(t *testing.T) {
	files, _ := filepath.Glob("../scenarios/*.yaml")
	if len(files) < 4 {
		t.Fatalf("%d scenario files", len(files))
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Error(err)
		}
	}
}
