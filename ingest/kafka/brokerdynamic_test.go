package kafka

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestDynamicBrokerConfigs, with kadm: the node's topic defaults
// (log.retention.ms, ...) and group.initial.rebalance.delay.ms change live
// on the BROKER resource, this broker's value winning over the cluster
// default's, which wins over the flags; they apply at once to topics
// without their own value (and to new ones); DescribeConfigs says where
// each value comes from; a read-only key refuses the whole resource with
// INVALID_REQUEST, "Cannot update these configs dynamically", as Kafka.
func TestDynamicBrokerConfigs(t *testing.T) {
	b := startBroker(t, nil)
	ctx := ctxT(t)
	adm := kadm.NewClient(b.client(t))
	if _, err := b.log.CreateTopic("plain", 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.log.CreateTopic("own", 1, map[string]string{"retention.ms": "1000"}); err != nil {
		t.Fatal(err)
	}
	retention := func(topic string) time.Duration {
		t.Helper()
		c, err := b.log.TopicConfig(topic)
		if err != nil {
			t.Fatal(err)
		}
		return c.RetentionAge
	}
	alter := func(state bool, cfgs []kadm.AlterConfig, brokers ...int32) error {
		t.Helper()
		var resp kadm.AlterConfigsResponses
		var err error
		if state {
			resp, err = adm.AlterBrokerConfigsState(ctx, cfgs, brokers...)
		} else {
			resp, err = adm.AlterBrokerConfigs(ctx, cfgs, brokers...)
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(resp) != 1 {
			t.Fatalf("responses %+v", resp)
		}
		if resp[0].Err != nil {
			return errors.Join(resp[0].Err, errors.New(resp[0].ErrMessage))
		}
		return nil
	}
	describe := func(name string) kadm.Config {
		t.Helper()
		rc, err := adm.DescribeBrokerConfigs(ctx, 0)
		if err != nil || len(rc) != 1 || rc[0].Err != nil {
			t.Fatalf("describe: %+v %v", rc, err)
		}
		for _, c := range rc[0].Configs {
			if c.Key == name {
				return c
			}
		}
		t.Fatalf("%s not described", name)
		return kadm.Config{}
	}
	set := func(name, v string) kadm.AlterConfig {
		return kadm.AlterConfig{Op: kadm.SetConfig, Name: name, Value: &v}
	}

	// The cluster default, then this broker's value over it.
	if err := alter(false, []kadm.AlterConfig{set("log.retention.ms", "120000")}); err != nil {
		t.Fatal(err)
	}
	if got := retention("plain"); got != 2*time.Minute {
		t.Fatalf("plain's retention after the cluster default: %v", got)
	}
	if c := describe("log.retention.ms"); c.MaybeValue() != "120000" || c.Source != kmsg.ConfigSourceDynamicDefaultBrokerConfig {
		t.Fatalf("after the cluster default: %+v", c)
	}
	if err := alter(false, []kadm.AlterConfig{set("log.retention.ms", "60000"), set("group.initial.rebalance.delay.ms", "0")}, 0); err != nil {
		t.Fatal(err)
	}
	if got := retention("plain"); got != time.Minute {
		t.Fatalf("plain's retention after this broker's: %v", got)
	}
	if got := retention("own"); got != time.Second {
		t.Fatalf("a topic's own retention changed to %v", got)
	}
	if _, err := b.log.CreateTopic("later", 1, nil); err != nil {
		t.Fatal(err)
	}
	if got := retention("later"); got != time.Minute {
		t.Fatalf("a new topic's retention: %v", got)
	}
	if b.srv.initialRebalanceDelay() != 0 {
		t.Fatalf("the initial rebalance delay is still %v", b.srv.initialRebalanceDelay())
	}
	c := describe("log.retention.ms")
	var syn []string
	for _, s := range c.Synonyms {
		syn = append(syn, s.Source.String()+"="+*s.Value)
	}
	if c.MaybeValue() != "60000" || c.Source != kmsg.ConfigSourceDynamicBrokerConfig ||
		strings.Join(syn, " ") != "DYNAMIC_BROKER_CONFIG=60000 DYNAMIC_DEFAULT_BROKER_CONFIG=120000 DEFAULT_CONFIG=604800000" {
		t.Fatalf("described %s from %v, synonyms %v", c.MaybeValue(), c.Source, syn)
	}

	// A topic without its own value says where the broker's comes from.
	tc, err := adm.DescribeTopicConfigs(ctx, "plain")
	if err != nil || len(tc) != 1 {
		t.Fatalf("describe plain: %+v %v", tc, err)
	}
	for _, c := range tc[0].Configs {
		if c.Key != "retention.ms" {
			continue
		}
		syn = syn[:0]
		for _, s := range c.Synonyms {
			syn = append(syn, s.Source.String()+"="+*s.Value)
		}
		if c.MaybeValue() != "60000" || c.Source != kmsg.ConfigSourceDynamicBrokerConfig ||
			strings.Join(syn, " ") != "DYNAMIC_BROKER_CONFIG=60000 DYNAMIC_DEFAULT_BROKER_CONFIG=120000 DEFAULT_CONFIG=604800000" {
			t.Fatalf("plain's retention.ms: %s from %v, synonyms %v", c.MaybeValue(), c.Source, syn)
		}
	}

	// A read-only key refuses the whole resource.
	err = alter(false, []kadm.AlterConfig{set("log.retention.ms", "1"), set("num.partitions", "9")}, 0)
	if !errors.Is(err, kerr.InvalidRequest) || !strings.Contains(err.Error(), "Cannot update these configs dynamically: Set(num.partitions)") {
		t.Fatalf("read-only key: %v", err)
	}
	if err := alter(true, []kadm.AlterConfig{set("broker.id", "3")}, 0); !errors.Is(err, kerr.InvalidRequest) {
		t.Fatalf("legacy AlterConfigs of a read-only key: %v", err)
	}
	if err := alter(false, []kadm.AlterConfig{set("log.retention.ms", "soon")}, 0); !errors.Is(err, kerr.InvalidRequest) {
		t.Fatalf("a bad value: %v", err)
	}
	if got := retention("plain"); got != time.Minute {
		t.Fatalf("a refused change moved retention to %v", got)
	}

	// Deleting this broker's value falls back to the cluster default; the
	// legacy AlterConfigs replaces a resource's whole dynamic set.
	if err := alter(false, []kadm.AlterConfig{{Op: kadm.DeleteConfig, Name: "log.retention.ms"}}, 0); err != nil {
		t.Fatal(err)
	}
	if got := retention("plain"); got != 2*time.Minute {
		t.Fatalf("after deleting this broker's value: %v", got)
	}
	if err := alter(true, []kadm.AlterConfig{set("log.retention.bytes", "1048576")}); err != nil {
		t.Fatal(err)
	}
	if got := retention("plain"); got != 7*24*time.Hour {
		t.Fatalf("after replacing the cluster default's set: %v, want the built-in 7 days", got)
	}
	// Read-only flags as Kafka's DescribeConfigs says them.
	req := kmsg.NewPtrDescribeConfigsRequest()
	rr := kmsg.NewDescribeConfigsRequestResource()
	rr.ResourceType, rr.ResourceName, rr.ConfigNames = kmsg.ConfigResourceTypeBroker, "0", []string{"num.partitions", "log.retention.bytes"}
	req.Resources = append(req.Resources, rr)
	resp, err := req.RequestWith(ctx, b.client(t))
	if err != nil || len(resp.Resources) != 1 || len(resp.Resources[0].Configs) != 2 {
		t.Fatalf("describe: %+v %v", resp, err)
	}
	for _, c := range resp.Resources[0].Configs {
		if c.ReadOnly != (c.Name == "num.partitions") {
			t.Fatalf("%s read-only: %v", c.Name, c.ReadOnly)
		}
	}
}
