package kafka

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// Broker configs that AlterConfigs and IncrementalAlterConfigs change live
// on the BROKER resource (Kafka's dynamic broker configs, KIP-226), for the
// few of the node's settings that ferry can truly apply without a
// restart: the node's defaults for topics that do not set their own
// (log.retention.ms, log.retention.bytes, log.segment.bytes, log.roll.ms:
// applied at once to every such topic and to those created later, as in
// Kafka) and group.initial.rebalance.delay.ms (for groups whose first
// member joins afterwards). As in Kafka, a value set on this broker's
// resource ("<id>", DYNAMIC_BROKER_CONFIG) wins over one set on the
// cluster's default resource ("", DYNAMIC_DEFAULT_BROKER_CONFIG), which
// wins over the node's flags (STATIC_BROKER_CONFIG); deleting a value
// returns to the next. Unlike Kafka, dynamic values are held in memory
// only: at a restart the node's flags apply again. Every other broker
// config is read-only: naming one refuses the whole resource with
// INVALID_REQUEST, "Cannot update these configs dynamically", as Kafka
// does.

// dynamicTopicDefaults maps the dynamic broker configs that are topic
// defaults to the topic config each sets.
var dynamicTopicDefaults = map[string]string{
	"log.retention.ms":    flog.ConfigRetentionMs,
	"log.retention.bytes": flog.ConfigRetentionBytes,
	"log.segment.bytes":   flog.ConfigSegmentBytes,
	"log.roll.ms":         flog.ConfigSegmentMs,
}

const configRebalanceDelay = "group.initial.rebalance.delay.ms"

// isDynamicBrokerConfig says whether a broker config changes live.
func isDynamicBrokerConfig(name string) bool {
	_, ok := dynamicTopicDefaults[name]
	return ok || name == configRebalanceDelay
}

// brokerDynamic holds the dynamic broker configs set over the wire: on
// this broker's resource and on the cluster's default one.
type brokerDynamic struct {
	mu             sync.Mutex
	static         map[string]string // the flags' values, taken before the first change
	perBroker      map[string]string
	clusterDefault map[string]string
}

// dynamicSource says where a dynamic broker config's value comes from:
// its value and source on this broker, and the synonyms under it.
func (s *Server) dynamicSource(name string) (perBroker, clusterDefault *string) {
	d := &s.dyn
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, ok := d.perBroker[name]; ok {
		perBroker = &v
	}
	if v, ok := d.clusterDefault[name]; ok {
		clusterDefault = &v
	}
	return perBroker, clusterDefault
}

// staticDynamic is the flags' value of each dynamic broker config (d.mu
// held): what applies when neither resource sets it.
func (s *Server) staticDynamic() map[string]string {
	d := &s.dyn
	if d.static == nil {
		defaults := s.log.TopicDefaults()
		d.static = map[string]string{configRebalanceDelay: strconv.FormatInt(s.initialRebalanceDelay().Milliseconds(), 10)}
		for name, key := range dynamicTopicDefaults {
			if v, ok := defaults[key]; ok {
				d.static[name] = v
			}
		}
	}
	return d.static
}

// brokerStaticValue is the flags' value of a broker config, for synonyms:
// ok is false for a dynamic topic default the flags leave at ferry's
// built-in default.
func (s *Server) brokerStaticValue(name string) (string, bool) {
	s.dyn.mu.Lock()
	defer s.dyn.mu.Unlock()
	v, ok := s.staticDynamic()[name]
	return v, ok
}

func (s *Server) initialRebalanceDelay() time.Duration {
	if s.opts.Groups == nil {
		return 0
	}
	g := s.opts.Groups
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.initialDelay
}

// checkDynamicValue says why value cannot be name's ("" if it can).
func checkDynamicValue(name, value string) string {
	if key, ok := dynamicTopicDefaults[name]; ok {
		if err := flog.ValidateConfigs(map[string]string{key: value}); err != nil {
			return name + ": " + err.Error()
		}
		return ""
	}
	if n, err := strconv.ParseInt(value, 10, 64); err != nil || n < 0 || n > math.MaxInt32 {
		return fmt.Sprintf("%s=%q: want milliseconds in [0, %d]", name, value, math.MaxInt32)
	}
	return ""
}

// alterBroker changes the dynamic broker configs of resource name (this
// broker's id, or "" for the cluster's default): set values, remove
// others, or (replace, the legacy AlterConfigs) make set the resource's
// whole dynamic set. It answers the error code and message for the
// resource (0: done, or valid when validateOnly).
func (s *Server) alterBroker(name string, set map[string]string, remove []string, replace, validateOnly bool) (int16, *string) {
	self := strconv.Itoa(int(s.opts.NodeID))
	if name != "" && name != self {
		return kerr.InvalidRequest.Code, kmsg.StringPtr("this is broker " + self)
	}
	known := map[string]bool{}
	for _, bc := range s.brokerConfigs() {
		known[bc.name] = true
	}
	var readOnly, unknown []string
	for _, k := range slices.Concat(slices.Collect(maps.Keys(set)), remove) {
		switch {
		case isDynamicBrokerConfig(k):
		case known[k]:
			readOnly = append(readOnly, k)
		default:
			unknown = append(unknown, k)
		}
	}
	if len(readOnly) > 0 {
		slices.Sort(readOnly)
		return kerr.InvalidRequest.Code, kmsg.StringPtr("Cannot update these configs dynamically: Set(" + strings.Join(readOnly, ", ") + "): ferry applies them at a restart (node flags)")
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return kerr.InvalidRequest.Code, kmsg.StringPtr("Unknown broker configs: Set(" + strings.Join(unknown, ", ") + ")")
	}
	for k, v := range set {
		if why := checkDynamicValue(k, v); why != "" {
			return kerr.InvalidRequest.Code, kmsg.StringPtr("Invalid config value for resource BROKER " + strconv.Quote(name) + ": " + why)
		}
	}
	if validateOnly {
		return 0, nil
	}
	d := &s.dyn
	d.mu.Lock()
	defer d.mu.Unlock()
	static := s.staticDynamic()
	layer := &d.perBroker
	if name == "" {
		layer = &d.clusterDefault
	}
	next := maps.Clone(*layer)
	if replace || next == nil {
		next = map[string]string{}
	}
	for _, k := range remove {
		delete(next, k)
	}
	maps.Copy(next, set)
	per, def := d.perBroker, d.clusterDefault
	if name == "" {
		def = next
	} else {
		per = next
	}
	effective := func(k string) (string, bool) {
		if v, ok := per[k]; ok {
			return v, true
		}
		if v, ok := def[k]; ok {
			return v, true
		}
		v, ok := static[k]
		return v, ok
	}
	tset, tremove := map[string]string{}, []string(nil)
	for name, key := range dynamicTopicDefaults {
		if v, ok := effective(name); ok {
			tset[key] = v
		} else {
			tremove = append(tremove, key)
		}
	}
	if err := s.log.SetTopicDefaults(tset, tremove); err != nil {
		return kerr.InvalidRequest.Code, kmsg.StringPtr(err.Error())
	}
	if v, ok := effective(configRebalanceDelay); ok && s.opts.Groups != nil {
		ms, _ := strconv.ParseInt(v, 10, 64)
		g := s.opts.Groups
		g.mu.Lock()
		g.initialDelay = time.Duration(ms) * time.Millisecond
		g.mu.Unlock()
	}
	*layer = next
	s.logger.Info("dynamic broker configs altered", "resource", name, "set", set, "removed", remove, "replace", replace)
	return 0, nil
}

// describeDynamic fills in c for a dynamic broker config: writable, its
// source, and the synonyms below it when asked.
func (s *Server) describeDynamic(c *kmsg.DescribeConfigsResponseResourceConfig, withSynonyms bool) {
	c.ReadOnly = false
	per, def := s.dynamicSource(c.Name)
	static, hasStatic := s.brokerStaticValue(c.Name)
	switch {
	case per != nil:
		c.Source = kmsg.ConfigSourceDynamicBrokerConfig
	case def != nil:
		c.Source = kmsg.ConfigSourceDynamicDefaultBrokerConfig
	case !hasStatic:
		c.Source = kmsg.ConfigSourceDefaultConfig
	}
	if !withSynonyms {
		return
	}
	c.ConfigSynonyms = c.ConfigSynonyms[:0]
	add := func(v string, src kmsg.ConfigSource) {
		syn := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
		syn.Name, syn.Value, syn.Source = c.Name, kmsg.StringPtr(v), src
		c.ConfigSynonyms = append(c.ConfigSynonyms, syn)
	}
	if per != nil {
		add(*per, kmsg.ConfigSourceDynamicBrokerConfig)
	}
	if def != nil {
		add(*def, kmsg.ConfigSourceDynamicDefaultBrokerConfig)
	}
	if hasStatic {
		add(static, kmsg.ConfigSourceStaticBrokerConfig)
	}
	if key, ok := dynamicTopicDefaults[c.Name]; ok {
		if v, _, ok := flog.ConfigDefault(key); ok {
			add(v, kmsg.ConfigSourceDefaultConfig)
		}
	}
}

// withDynamicDefaults rewrites a topic config's synonyms (configSynonyms)
// when the node's default for it was altered live: the node default's
// entry (the value now in force) becomes this broker's dynamic value, the
// cluster default's and the flags', each with its source, as Kafka lists a
// topic config's broker-level synonyms.
func (s *Server) withDynamicDefaults(key string, syns []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym) []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym {
	var name string
	for n, k := range dynamicTopicDefaults {
		if k == key {
			name = n
		}
	}
	if name == "" {
		return syns
	}
	per, def := s.dynamicSource(name)
	if per == nil && def == nil {
		return syns
	}
	static, hasStatic := s.brokerStaticValue(name)
	out := make([]kmsg.DescribeConfigsResponseResourceConfigConfigSynonym, 0, len(syns)+2)
	add := func(v string, src kmsg.ConfigSource) {
		syn := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
		syn.Name, syn.Value, syn.Source = key, kmsg.StringPtr(v), src
		out = append(out, syn)
	}
	for _, syn := range syns {
		switch syn.Source {
		case kmsg.ConfigSourceStaticBrokerConfig:
			continue // the node's default: the layers below say it
		case kmsg.ConfigSourceDefaultConfig:
			if per != nil {
				add(*per, kmsg.ConfigSourceDynamicBrokerConfig)
			}
			if def != nil {
				add(*def, kmsg.ConfigSourceDynamicDefaultBrokerConfig)
			}
			if hasStatic {
				add(static, kmsg.ConfigSourceStaticBrokerConfig)
			}
		}
		out = append(out, syn)
	}
	return out
}
