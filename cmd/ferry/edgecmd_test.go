package main

import (
	"strings"
	"testing"
)

// A bad --mirror-class-share stops ferry edge before it starts, with a
// usage error naming the flag and the value. (Were it not checked, the
// node would start and stop at once on its Kafka address: exit 1.)
func TestEdgeRefusesBadClassShare(t *testing.T) {
	for _, tc := range []struct{ value, want string }{
		{"2=20%,1=90%", `--mirror-class-share: class shares "2=20%,1=90%": the shares add up to 110%`},
		{"12=5%", `--mirror-class-share: class share "12=5%": class 12: want a class from 0 to 9`},
		{"2=half", `--mirror-class-share: class share "2=half": "half" is not a whole percent`},
	} {
		code, _, errOut := ferry(t, "edge", "--data-dir", t.TempDir(), "--kafka-addr", "127.0.0.1:bad", "--mirror-class-share", tc.value)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("--mirror-class-share %s: exit %d, want 2; %q does not contain %q", tc.value, code, errOut, tc.want)
		}
	}
}

// --mirror-kafka is refused with --mirror-to, with live-tail-first, and
// with a SASL mechanism franz-go does not offer: usage errors before the
// node starts.
func TestEdgeRefusesBadMirrorKafka(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--mirror-to", "127.0.0.1:9393"}, "--mirror-to and --mirror-kafka: choose one target"},
		{[]string{"--mirror-catchup", "live-tail-first"}, "--mirror-catchup live-tail-first: a Kafka target takes each partition in order only"},
		{[]string{"--mirror-kafka-sasl", "gssapi"}, `--mirror-kafka-sasl: SASL mechanism "gssapi": want none, plain, scram-sha-256 or scram-sha-512`},
	} {
		args := append([]string{"edge", "--data-dir", t.TempDir(), "--kafka-addr", "127.0.0.1:bad", "--mirror-kafka", "127.0.0.1:9092"}, tc.args...)
		code, _, errOut := ferry(t, args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, want 2; %q does not contain %q", tc.args, code, errOut, tc.want)
		}
	}
}
