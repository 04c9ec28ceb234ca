package testbed

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestExampleConfigsMirror runs the pair the example configs describe, as
// the README tells a newcomer to: `ferry full --config configs/full.yaml`
// and `ferry edge --config configs/edge.yaml`, with only the data
// directories and listen addresses moved (to temporary directories and
// free 127.0.0.1 ports), and records produced at the edge appear at the
// center. Edge id, token, topic template and everything else come from the
// files. On the way it checks the precedence: the flags move the data
// directories and ports off the files' values, and for the mirror the
// flags name addresses nothing can use while FERRY_MIRROR_ADDR and
// FERRY_MIRROR_TO, which override flags, name the working ones.
func TestExampleConfigsMirror(t *testing.T) {
	edgeDir, centerDir := t.TempDir(), t.TempDir()
	// The files require mutual TLS with the certificates `make run-full`
	// makes in certs/, which they name relative to themselves (../certs):
	// they are copied to work/configs, beside the work/certs `ferry certs`
	// makes, and the nodes run elsewhere (relative paths in a config file
	// are the file's, not the working directory's).
	work := t.TempDir()
	if err := os.Mkdir(filepath.Join(work, "configs"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"full.yaml", "edge.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "configs", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(work, "configs", name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fullYAML, edgeYAML := filepath.Join(work, "configs", "full.yaml"), filepath.Join(work, "configs", "edge.yaml")
	for _, args := range [][]string{{"init"}, {"node", "--host", "localhost,127.0.0.1"}, {"edge", "gw1"}} {
		cmd := exec.Command(ferryBinary(t), append([]string{"certs"}, args...)...)
		cmd.Dir = work // certs/ in work
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ferry certs %v: %v\n%s", args, err, out)
		}
	}
	// 192.0.2.0/24 is TEST-NET-1: no interface here has it, so listening
	// there fails and dialing it never connects.
	const unusable = "192.0.2.1:9393"

	t.Setenv("FERRY_MIRROR_ADDR", "127.0.0.1:0")
	center := startFerryBin(t, ferryBinary(t), t.TempDir(), "full", []string{"--data-dir", centerDir, "--mirror-addr", unusable, "--config", fullYAML})
	if center.mirrorAddr == "" || center.mirrorAddr == unusable {
		t.Fatalf("the center's mirror receiver is on %q", center.mirrorAddr)
	}
	// Set after the center started: only the edge has it. (FERRY_MIRROR_ADDR
	// names no flag of ferry edge, which ignores it.)
	t.Setenv("FERRY_MIRROR_TO", center.mirrorAddr)
	edge := startFerryBin(t, ferryBinary(t), t.TempDir(), "edge", []string{"--data-dir", edgeDir, "--mqtt-addr", "127.0.0.1:0", "--config", edgeYAML, "--mirror-to", unusable})

	const n = 200
	produceKafka(t, edge.kafkaAddr, "telemetry", n, 100, "config")
	// The files' edge id (gw1) and template ({edge}.{topic}) name the copy.
	if got := waitMirrored(t, edge, center, "telemetry"); got != n {
		t.Fatalf("the center has %d records of gw1.telemetry, want %d", got, n)
	}

	// --data-dir beat the files' ./data and ./center.
	for _, p := range []string{filepath.Join(edgeDir, "mirror.db"), filepath.Join(centerDir, "log", "gw1.telemetry-0")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("the nodes' data is not in the directories the flags gave: %v", err)
		}
	}
}
