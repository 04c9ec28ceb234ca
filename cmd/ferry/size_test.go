package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{
		"0": 0, "1048576": 1 << 20, "64MiB": 64 << 20, "64mib": 64 << 20, "64MB": 64e6, "512k": 512e3,
		"1.5GiB": 3 << 29, "1.5GB": 15e8, "8 GiB": 8 << 30, "2Ti": 2 << 40, "100B": 100,
	} {
		if got, err := parseSize(in, 1<<62); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"":         "want a size",
		"-1":       "want a size",
		"64XB":     `unknown unit "XB"`,
		"1.5B":     "not a whole number",
		"5GiB":     "more than 4294967295 bytes",
		"99999TiB": "more than",
	} {
		if _, err := parseSize(in, 1<<32-1); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseSize(%q): %v, want %q", in, err, want)
		}
	}
}

// TestSizeFlagsTakeUnits: the node's byte-count flags take 64MiB on the
// command line, in a config file and in FERRY_* variables (they took only
// a number of bytes), and refuse a size out of their type's range.
func TestSizeFlagsTakeUnits(t *testing.T) {
	t.Setenv("FERRY_CONFIG", "")
	file := filepath.Join(t.TempDir(), "edge.yaml")
	if err := os.WriteFile(file, []byte("mode: edge\nmax-disk-bytes: 8GiB\nmirror-chunk-bytes: 1048576\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	newFlags := func() (*pflag.FlagSet, action) { return nodeFlagSet(t, "edge") }
	fs, _, err := configure("edge", newFlags, []string{"--mqtt-max-packet-size", "256KiB"}, []string{"FERRY_MIRROR_RATE=64kB"}, file)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"max-disk-bytes": "8589934592", "mirror-chunk-bytes": "1048576", "mqtt-max-packet-size": "262144", "mirror-rate": "64000", "kafka-produce-quota": "0"} {
		if got := fs.Lookup(key).Value.String(); got != want {
			t.Errorf("%s = %s, want %s", key, got, want)
		}
	}
	if _, _, err := configure("edge", newFlags, []string{"--mqtt-max-packet-size", "5GiB"}, nil, ""); err == nil || !strings.Contains(err.Error(), "more than 4294967295 bytes") {
		t.Errorf("--mqtt-max-packet-size 5GiB: %v", err)
	}
	if code, out, _ := ferry(t, "config", "check", writeFile(t, "mode: edge\nmax-disk-bytes: lots\n")); code != 1 || !strings.Contains(out, ":2: max-disk-bytes:") {
		t.Errorf("config check of a bad size: %d %q", code, out)
	}
}
