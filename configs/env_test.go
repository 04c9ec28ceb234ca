package configs

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestEnvName(t *testing.T) {
	for flag, want := range map[string]string{"kafka-addr": "FERRY_KAFKA_ADDR", "mirror-tls-ca": "FERRY_MIRROR_TLS_CA", "config": "FERRY_CONFIG"} {
		if got := EnvName(flag); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", flag, got, want)
		}
	}
}

// defaults < file < command line < environment, for one value and for
// lists, in the order the node commands apply them.
func TestPrecedence(t *testing.T) {
	tf := newTestFlags()
	f, err := Parse("node.yaml", []byte(`mode: edge
data-dir: /file
log-level: warn
default-partitions: 3
mqtt-connect-timeout: 1m
mqtt-rule: ["file/# -> file"]
mirror-token: [file]
mirror-topics: [file]
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(tf.fs, "edge", levelCheck); err != nil {
		t.Fatal(err)
	}
	if err := tf.fs.Parse([]string{"--data-dir", "/flag", "--log-level", "error", "--mqtt-rule", "flag/# -> flag", "--mirror-topics", "f1,f2", "--mirror-token", "flag"}); err != nil {
		t.Fatal(err)
	}
	applied, err := ApplyEnv(tf.fs, []string{
		"PATH=/bin", "FERRY_DATA_DIR=/env", "FERRY_DATA_DIR=/second", "FERRY_DEFAULT_PARTITIONS=5",
		"FERRY_MQTT_RULE=env/# -> env\n\nenv2/# -> env2\n", "FERRY_MIRROR_TOKEN=", "FERRY_NOT_A_FLAG=1",
	}, levelCheck)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"data-dir: env over flag over file (first FERRY_DATA_DIR wins, as in getenv)", *tf.dataDir, "/env"},
		{"log-level: flag over file", *tf.level, "error"},
		{"default-partitions: env over file", *tf.parts, int32(5)},
		{"mqtt-connect-timeout: file over default", *tf.timeout, time.Minute},
		{"max-disk-bytes: default", *tf.maxDisk, int64(0)},
		{"mqtt-rule: env lines over flag list over file list", *tf.rules, []string{"env/# -> env", "env2/# -> env2"}},
		{"mirror-token: an empty variable empties the list", *tf.tokens, []string{}},
		{"mirror-topics: the flag's list replaces the file's (CSV as on the command line)", *tf.topics, []string{"f1", "f2"}},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.name, c.got, c.want)
		}
	}
	var vars []string
	for _, a := range applied {
		vars = append(vars, a.Var)
	}
	if want := []string{"FERRY_DATA_DIR", "FERRY_DEFAULT_PARTITIONS", "FERRY_MIRROR_TOKEN", "FERRY_MQTT_RULE"}; !reflect.DeepEqual(vars, want) {
		t.Errorf("applied %q, want %q (the flag set's order)", vars, want)
	}
	if got := UnknownEnv(tf.fs, []string{"FERRY_NOT_A_FLAG=1", "FERRY_DATA_DIR=x", "HOME=/root", "FERRY_MIRROR_ADDR=:1"}); !reflect.DeepEqual(got, []string{"FERRY_MIRROR_ADDR", "FERRY_NOT_A_FLAG"}) {
		t.Errorf("UnknownEnv: %q", got)
	}
}

// A refused variable is an error naming it, and so is each refused line
// of a list variable.
func TestEnvBadValues(t *testing.T) {
	tf := newTestFlags()
	_, err := ApplyEnv(tf.fs, []string{"FERRY_DEFAULT_PARTITIONS=many", "FERRY_LOG_LEVEL=loud", "FERRY_MQTT_RULE=a/# -> a\nnonsense", "FERRY_AUTO_CREATE_TOPICS=maybe"}, levelCheck)
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("got %v", err)
	}
	want := []string{
		`FERRY_AUTO_CREATE_TOPICS: auto-create-topics: bad value "maybe": must be true or false`,
		`FERRY_DEFAULT_PARTITIONS: default-partitions: bad value "many": must be an integer`,
		`FERRY_LOG_LEVEL: log-level: bad value "loud": want debug, info, warn or error`,
		`FERRY_MQTT_RULE: mqtt-rule: bad value "nonsense": want FILTER -> TOPIC`,
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), err)
	}
	for i := range want {
		if errs[i].Error() != want[i] {
			t.Errorf("got  %s\nwant %s", errs[i], want[i])
		}
	}
}
