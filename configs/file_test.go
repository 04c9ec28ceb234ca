package configs

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// testFlags is a command's flag set with one flag of each kind the node
// commands use.
type testFlags struct {
	fs                 *pflag.FlagSet
	dataDir, level     *string
	autoCreate         *bool
	parts              *int32
	recvMax            *uint16
	maxDisk            *int64
	timeout            *time.Duration
	rules, tokens      *[]string
	topics             *[]string
	configPath, advert *string
	kafkaAddr          *string
}

func newTestFlags() *testFlags {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	return &testFlags{
		fs:         fs,
		configPath: fs.String("config", "", "config file"),
		dataDir:    fs.String("data-dir", "./data", ""),
		kafkaAddr:  fs.String("kafka-addr", ":9092", ""),
		advert:     fs.String("kafka-advertised", "", ""),
		level:      fs.String("log-level", "info", ""),
		autoCreate: fs.Bool("auto-create-topics", true, ""),
		parts:      fs.Int32("default-partitions", 1, ""),
		recvMax:    fs.Uint16("mqtt-receive-maximum", 1024, ""),
		maxDisk:    fs.Int64("max-disk-bytes", 0, ""),
		timeout:    fs.Duration("mqtt-connect-timeout", 10*time.Second, ""),
		rules:      fs.StringArray("mqtt-rule", []string{"a/+x -> a"}, ""),
		tokens:     fs.StringArray("mirror-token", nil, ""),
		topics:     fs.StringSlice("mirror-topics", nil, ""),
	}
}

// levelCheck stands for a command's own checks: log-level must be known.
func levelCheck(key, v string) error {
	if key == "log-level" && v != "debug" && v != "info" && v != "warn" && v != "error" {
		return fmt.Errorf("want debug, info, warn or error")
	}
	if key == "mqtt-rule" && !strings.Contains(v, "->") {
		return fmt.Errorf("want FILTER -> TOPIC")
	}
	return nil
}

func apply(t *testing.T, text string) (*testFlags, error) {
	t.Helper()
	tf := newTestFlags()
	f, err := Parse("node.yaml", []byte(text))
	if err != nil {
		return tf, err
	}
	return tf, f.Apply(tf.fs, "edge", levelCheck)
}

// Every example file parses and says which command it is for in its name.
func TestExamplesParse(t *testing.T) {
	paths, err := filepath.Glob("*.yaml")
	if err != nil || len(paths) < 2 {
		t.Fatalf("example files: %v %v", paths, err)
	}
	for _, p := range paths {
		f, err := Load(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if want := strings.TrimSuffix(p, ".yaml"); f.Mode != want {
			t.Errorf("%s: mode %q, want %q", p, f.Mode, want)
		}
		if len(f.Settings) < 5 {
			t.Errorf("%s: only %d settings", p, len(f.Settings))
		}
	}
}

func TestValuesApplied(t *testing.T) {
	tf, err := apply(t, `# a node
mode: edge
data-dir: /var/lib/ferry
kafka-advertised:
log-level: debug
auto-create-topics: false
default-partitions: 4
mqtt-receive-maximum: 0x10
max-disk-bytes: 1073741824
mqtt-connect-timeout: 2m
mqtt-rule:
  - "factory/+site/+device/telemetry -> telemetry key={device}"
  - 'alarms/# -> alarms'
mirror-token: []
mirror-topics: [ "telemetry,x", &t alarms*, *t ]
`)
	if err != nil {
		t.Fatal(err)
	}
	if *tf.dataDir != "/var/lib/ferry" || *tf.advert != "" || *tf.level != "debug" || *tf.autoCreate || *tf.parts != 4 ||
		*tf.recvMax != 16 || *tf.maxDisk != 1<<30 || *tf.timeout != 2*time.Minute {
		t.Errorf("scalars: %q %q %q %v %d %d %d %v", *tf.dataDir, *tf.advert, *tf.level, *tf.autoCreate, *tf.parts, *tf.recvMax, *tf.maxDisk, *tf.timeout)
	}
	if want := []string{"factory/+site/+device/telemetry -> telemetry key={device}", "alarms/# -> alarms"}; !reflect.DeepEqual(*tf.rules, want) {
		t.Errorf("mqtt-rule: %q, want %q (the list replaces the default)", *tf.rules, want)
	}
	if len(*tf.tokens) != 0 {
		t.Errorf("mirror-token: %q", *tf.tokens)
	}
	// A list item is one value, commas and all: the file says what a list is.
	if want := []string{"telemetry,x", "alarms*", "alarms*"}; !reflect.DeepEqual(*tf.topics, want) {
		t.Errorf("mirror-topics: %q, want %q", *tf.topics, want)
	}
	if !tf.fs.Changed("data-dir") || tf.fs.Changed("config") {
		t.Error("Changed should say which flags the file set")
	}
}

// Unknown keys, wrong YAML types and bad values are each an error naming
// the file, the line and the key.
func TestErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       string // the whole first error, or a prefix of it ending in "..."
	}{
		{"unknown key", "mode: edge\nkafka-adr: :9092\n", `node.yaml:2: kafka-adr: unknown key: ferry edge has no flag --kafka-adr (did you mean kafka-addr?)`},
		{"unknown key far from any", "mode: edge\n\nbrokers: [a]\n", `node.yaml:3: brokers: unknown key: ferry edge has no flag --brokers`},
		{"nested section", "mode: edge\nmirror:\n  to: x:1\n", `node.yaml:2: mirror: unknown key: ferry edge has no flag --mirror`},
		{"config names no config", "mode: edge\nconfig: other.yaml\n", `node.yaml:2: config: --config cannot be set in a config file`},
		{"wrong type: string for a number", "mode: edge\ndefault-partitions: four\n", `node.yaml:2: default-partitions: want a whole number, got the string "four"`},
		{"wrong type: quoted number", "mode: edge\ndefault-partitions: \"4\"\n", `node.yaml:2: default-partitions: want a whole number, got the string "4"`},
		{"wrong type: string for a boolean", "mode: edge\nauto-create-topics: yes\n", `node.yaml:2: auto-create-topics: want true or false, got the string "yes"`},
		{"wrong type: list for one value", "mode: edge\ndata-dir:\n  - a\n  - b\n", `node.yaml:3: data-dir: want one value, got a list`},
		{"wrong type: mapping for one value", "mode: edge\ndata-dir: {a: b}\n", `node.yaml:2: data-dir: want one value, got a mapping`},
		{"wrong type: one value for a list", "mode: edge\nmqtt-rule: a/# -> a\n", `node.yaml:2: mqtt-rule: want a list ([a, b], or one ` + "`- item`" + ` per line), got the string "a/# -> a"`},
		{"wrong type: list in a list", "mode: edge\nmqtt-rule:\n  - a/# -> a\n  - [b]\n", `node.yaml:4: mqtt-rule: want each item of the list to be one value, got a list`},
		{"wrong type: no duration", "mode: edge\nmqtt-connect-timeout:\n", `node.yaml:2: mqtt-connect-timeout: want a duration, got nothing`},
		{"bad value: out of range", "mode: edge\n\ndefault-partitions: 99999999999\n", `node.yaml:3: default-partitions: bad value "99999999999": out of range for int32`},
		{"bad value: too large", "mode: edge\nmqtt-receive-maximum: 65536\n", `node.yaml:2: mqtt-receive-maximum: bad value "65536": out of range for uint16`},
		{"bad value: negative unsigned", "mode: edge\nmqtt-receive-maximum: -1\n", `node.yaml:2: mqtt-receive-maximum: bad value "-1": must be a non-negative integer`},
		{"bad value: duration", "mode: edge\nmqtt-connect-timeout: 10 parsecs\n", `node.yaml:2: mqtt-connect-timeout: bad value "10 parsecs": must be a duration like "30s" or "5m"`},
		{"bad value: duration without unit", "mode: edge\nmqtt-connect-timeout: 10\n", `node.yaml:2: mqtt-connect-timeout: bad value "10": must be a duration like "30s" or "5m"`},
		{"bad value: the command's check", "mode: edge\nlog-level: loud\n", `node.yaml:2: log-level: bad value "loud": want debug, info, warn or error`},
		{"bad value: one item of a list", "mode: edge\nmqtt-rule:\n  - a/# -> a\n  - nonsense\n", `node.yaml:4: mqtt-rule: bad value "nonsense": want FILTER -> TOPIC`},
		{"key given twice", "mode: edge\ndata-dir: a\nlog-level: info\ndata-dir: b\n", `node.yaml:4: data-dir: given twice (first at line 2)`},
		{"no mode", "data-dir: a\n", `node.yaml: mode: missing: say which command the file is for, ` + "`mode: edge` or `mode: full`"},
		{"mode of the other command", "data-dir: a\nmode: full\n", `node.yaml:2: mode: the file is for ferry full, not ferry edge`},
		{"mode not a string", "mode: [edge]\n", `node.yaml:1: mode: want edge or full, got a list`},
		{"YAML syntax", "mode: edge\n data-dir: a\nlog-level: info\n", `node.yaml:2: YAML: mapping values are not allowed in this context`},
		{"YAML tab indentation", "mode: edge\nmqtt-rule:\n\t- a\n", `node.yaml:3: YAML: found character that cannot start any token`},
		{"two documents", "mode: edge\n---\nmode: full\n", `node.yaml:2: a second YAML document: a config file is one`},
		{"not a mapping", "- mode: edge\n", `node.yaml:1: want a mapping of keys to values at the top level, got a list`},
		{"a key that is not a name", "mode: edge\n4: x\n", `node.yaml:2: a key must be a flag name, got the number 4`},
		{"empty", "# nothing yet\n", "node.yaml: empty: want at least `mode: edge` or `mode: full`"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := apply(t, tc.text)
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("got %v, want Errors", err)
			}
			if got := errs[0].Error(); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// A file with several problems reports all of them, in file order, and
// still applies its good keys.
func TestEveryProblemReported(t *testing.T) {
	tf, err := apply(t, "mode: edge\nkafka-adr: x\ndata-dir: ok\ndefault-partitions: x\nlog-level: loud\n")
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 3 {
		t.Fatalf("got %v, want 3 errors", err)
	}
	for i, line := range []int{2, 4, 5} {
		if errs[i].Line != line || errs[i].Source != "node.yaml" {
			t.Errorf("error %d: %+v, want line %d", i, errs[i], line)
		}
	}
	if *tf.dataDir != "ok" {
		t.Errorf("data-dir: %q", *tf.dataDir)
	}
	if !strings.Contains(err.Error(), "\n") {
		t.Errorf("the errors should print one per line: %q", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "nope.yaml")); err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("got %v", err)
	}
}
