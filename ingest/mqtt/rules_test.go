package mqtt

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseRule(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rule
		err  string
	}{
		{in: "factory/+site/+device/telemetry -> telemetry key={device} partitions=4",
			want: Rule{Filter: "factory/+site/+device/telemetry", Topic: "telemetry", Key: "{device}", Partitions: 4}},
		{in: "  a/#  ->  raw  ", want: Rule{Filter: "a/#", Topic: "raw"}},
		{in: "a/b telemetry", err: "want FILTER -> TOPIC"},
		{in: "a/b ->", err: "no topic"},
		{in: "a -> t partitions=0", err: "not a positive number"},
		{in: "a -> t color=red", err: "unknown option"},
	} {
		got, err := ParseRule(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseRule(%q) error %v, want one containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseRule(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if back, err := ParseRule(got.String()); err != nil || back != got {
			t.Errorf("String() %q does not parse back: %+v %v", got.String(), back, err)
		}
	}
}

// Bad rules are refused at start with an error naming the rule and why.
func TestCompileRuleErrors(t *testing.T) {
	for _, tc := range []struct {
		rule Rule
		err  string
	}{
		{Rule{Filter: "a/#rest/b", Topic: "t"}, "'#' must be the last level"},
		{Rule{Filter: "a/b+/c", Topic: "t"}, "wildcards take a whole level"},
		{Rule{Filter: "+x/+x", Topic: "t"}, `capture name "x" used twice`},
		{Rule{Filter: "a/+dev", Topic: "t", Key: "{device_id}"}, "{device_id} names no level"},
		{Rule{Filter: "a/+dev", Topic: "t", Key: "{dev"}, "'{' without '}'"},
		{Rule{Filter: "a/+dev", Topic: "t", Key: "dev}"}, "'}' without '{'"},
		{Rule{Filter: "a", Topic: "bad topic"}, "invalid topic name"},
		{Rule{Filter: "a", Topic: "$devices"}, "invalid topic name"},
		{Rule{Filter: "", Topic: "t"}, "empty filter"},
	} {
		_, err := compileRule(tc.rule)
		if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), tc.rule.Filter) {
			t.Errorf("compileRule(%+v) error %v, want one naming the rule and containing %q", tc.rule, err, tc.err)
		}
	}
	if _, err := New(Options{Log: nil}); err == nil {
		t.Error("New without a log accepted")
	}
}

func TestRouting(t *testing.T) {
	r, err := newRouter([]Rule{
		{Filter: "factory/+site/+device/telemetry", Topic: "telemetry", Key: "{site}:{device}"},
		{Filter: "factory/+site/+device/#rest", Topic: "other", Key: "{device}/{rest}"},
		{Filter: "$SYS/#", Topic: "sys", Key: "{topic}"},
	}, "mqtt", "", 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ topic, rule, key string }{
		{"factory/lyon/dev1/telemetry", "telemetry", "lyon:dev1"},
		{"factory/lyon/dev1/status/battery", "other", "dev1/status/battery"},
		{"factory/lyon/dev1", "other", "dev1/"},           // '#' matches the parent level too
		{"factory/lyon//telemetry", "telemetry", "lyon:"}, // an empty level is a level
		{"factory/lyon/dev1/telemetry/x", "other", "dev1/telemetry/x"},
		{"home/kitchen", "mqtt", "cid"},                     // the default rule, keyed by client id
		{"$SYS/broker/uptime", "sys", "$SYS/broker/uptime"}, // named explicitly
		{"$share-like/x", "", ""},                           // '$' topics never reach the default rule
	} {
		vals := make([]string, r.maxCaptures)
		c := r.route(tc.topic, vals)
		got, key := "", ""
		if c != nil {
			got = c.Topic
			key = string(c.renderKey(nil, vals, "cid", "user", "dev", tc.topic))
		}
		if got != tc.rule || key != tc.key {
			t.Errorf("%s: routed to %q key %q, want %q key %q", tc.topic, got, key, tc.rule, tc.key)
		}
	}
}

func ExampleParseRule() {
	r, _ := ParseRule("factory/+site/+device/telemetry -> telemetry key={device} partitions=4")
	fmt.Println(r.Topic, r.Key, r.Partitions)
	// Output: telemetry {device} 4
}
