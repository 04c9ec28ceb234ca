package kafka

import (
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// brokerConfig is one of the node's settings as DescribeConfigs shows it on
// the BROKER resource, under Kafka's name for it.
type brokerConfig struct {
	name, value, doc string
}

// brokerConfigs are the node's settings that Kafka clients and tools look
// for on a broker, with the values this server runs with. They come from
// the node's flags; most are read-only over the wire (a flag is changed by
// restarting the node, or SIGHUP for certificates), the few of
// brokerdynamic.go change live with AlterConfigs.
func (s *Server) brokerConfigs() []brokerConfig {
	host, port := s.advertisedHostPort()
	ms := func(d int64) string { return strconv.FormatInt(d, 10) }
	delay := s.initialRebalanceDelay().Milliseconds()
	out := []brokerConfig{
		{"broker.id", strconv.Itoa(int(s.opts.NodeID)), "this node's id"},
		{"node.id", strconv.Itoa(int(s.opts.NodeID)), "this node's id"},
		{"advertised.listeners", "PLAINTEXT://" + host + ":" + strconv.Itoa(int(port)), "where clients are told to connect (--kafka-advertised)"},
		{"auto.create.topics.enable", strconv.FormatBool(s.opts.AutoCreateTopics), "topics are created by using them (--auto-create-topics)"},
		{"num.partitions", strconv.Itoa(int(s.opts.DefaultPartitions)), "partitions of an auto-created topic (--default-partitions)"},
		{"default.replication.factor", "1", "one node: every partition has one replica"},
		{"min.insync.replicas", "1", "one node: acks=all waits for this node"},
		{"offsets.topic.replication.factor", "1", "committed offsets live in this node's bbolt file, not a topic"},
		{"transaction.state.log.replication.factor", "1", "transactions are not supported"},
		{"group.initial.rebalance.delay.ms", ms(delay), "how long a new group's first rebalance waits (--kafka-group-initial-rebalance-delay)"},
		{"connections.max.idle.ms", ms(s.opts.IdleTimeout.Milliseconds()), "a connection sending no request is closed after this long (--kafka-idle-timeout)"},
		{"socket.request.max.bytes", strconv.Itoa(int(s.opts.MaxRequestBytes)), "the largest request accepted"},
		{"sasl.enabled.mechanisms", strings.Join(s.opts.SASLMechanisms, ","), "SASL mechanisms clients authenticate with (--kafka-sasl)"},
	}
	defaults := s.log.TopicDefaults()
	for name, k := range dynamicTopicDefaults {
		v, ok := defaults[k]
		if !ok {
			v, _, _ = flog.ConfigDefault(k)
		}
		out = append(out, brokerConfig{name, v, "the node's default for topics' " + k + " (--topic-defaults), for topics that do not set it"})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// describeBroker answers DescribeConfigs for the BROKER resource: every
// setting of brokerConfigs (or those named), read-only from the node's
// static config, except the dynamic ones (brokerdynamic.go).
func (s *Server) describeBroker(req *kmsg.DescribeConfigsRequest, names []string, sr *kmsg.DescribeConfigsResponseResource) {
	for _, bc := range s.brokerConfigs() {
		if names != nil && !slices.Contains(names, bc.name) {
			continue
		}
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name, c.Value, c.ReadOnly, c.Source = bc.name, kmsg.StringPtr(bc.value), true, kmsg.ConfigSourceStaticBrokerConfig
		c.ConfigType = configType(bc.value)
		if req.IncludeDocumentation {
			c.Documentation = kmsg.StringPtr(bc.doc)
		}
		if req.IncludeSynonyms {
			syn := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
			syn.Name, syn.Value, syn.Source = bc.name, kmsg.StringPtr(bc.value), kmsg.ConfigSourceStaticBrokerConfig
			c.ConfigSynonyms = append(c.ConfigSynonyms, syn)
		}
		if isDynamicBrokerConfig(bc.name) {
			s.describeDynamic(&c, req.IncludeSynonyms)
		}
		sr.Configs = append(sr.Configs, c)
	}
}
