package kafka

import (
	"context"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// DescribeConfigs: v0-4
//
// Behavior:
//   - Topic resources: every ferry topic config (or those named), with
//     Kafka's that ferry keeps without acting on them (log/kafkaconfigs.go),
//     each with its value, whether it is a default (source DEFAULT_CONFIG)
//     or set on the topic (DYNAMIC_TOPIC_CONFIG) or by the node's topic
//     defaults (--topic-defaults: STATIC_BROKER_CONFIG), its type, and its
//     documentation (v3+). With IncludeSynonyms (v1+), every value that
//     could apply, in precedence order: the topic's, the node's default
//     (split, once altered live on the broker resource, into this broker's
//     DYNAMIC_BROKER_CONFIG, the cluster's DYNAMIC_DEFAULT_BROKER_CONFIG and
//     the flags' STATIC_BROKER_CONFIG: brokerdynamic.go), the built-in
//     default.
//     None is read-only or sensitive. UNKNOWN_TOPIC_OR_PARTITION for an
//     unknown topic. The internal __consumer_offsets (internal.go) is
//     described with no configs: it is not a log topic.
//   - Broker resources (this node's id, or "" for the cluster's default):
//     the node's settings Kafka tools look for, under Kafka's names
//     (brokerconfigs.go), read-only (STATIC_BROKER_CONFIG: flags change at a
//     restart) except the dynamic ones (brokerdynamic.go: DYNAMIC_BROKER_CONFIG
//     or DYNAMIC_DEFAULT_BROKER_CONFIG once altered, with the values below
//     as synonyms); another broker's id is INVALID_REQUEST. Other resource
//     types are INVALID_REQUEST.
//
// Version notes:
//   - v1: Source, synonyms; v3: ConfigType, Documentation; v4: flexible

func init() { register(32, 0, 4, serveDescribeConfigs) }

// configType is the type DescribeConfigs reports for a value: ferry's keys
// and Kafka's that it keeps are integers, booleans, a ratio or words.
func configType(v string) kmsg.ConfigType {
	if _, err := strconv.ParseInt(v, 10, 64); err == nil {
		return kmsg.ConfigTypeLong
	}
	if v == "true" || v == "false" {
		return kmsg.ConfigTypeBoolean
	}
	if _, err := strconv.ParseFloat(v, 64); err == nil {
		return kmsg.ConfigTypeDouble
	}
	return kmsg.ConfigTypeString
}

// configSynonyms lists the values that could apply to a topic config, in
// precedence order: the topic's own (value, when explicit), the node's
// topic default, the built-in default.
func configSynonyms(key string, explicit bool, value string, nodeDefaults map[string]string) []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym {
	var out []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym
	add := func(v string, src kmsg.ConfigSource) {
		syn := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
		syn.Name, syn.Value, syn.Source = key, kmsg.StringPtr(v), src
		out = append(out, syn)
	}
	if explicit {
		add(value, kmsg.ConfigSourceDynamicTopicConfig)
	}
	if v, ok := nodeDefaults[key]; ok {
		add(v, kmsg.ConfigSourceStaticBrokerConfig)
	}
	def, _, _ := flog.ConfigDefault(key)
	add(def, kmsg.ConfigSourceDefaultConfig)
	return out
}

func serveDescribeConfigs(s *Server, _ context.Context, cn *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeConfigsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewDescribeConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		if code := cn.configsAllowed(kmsg.ACLOperationDescribeConfigs, rr.ResourceType, rr.ResourceName); code != 0 {
			sr.ErrorCode = code
			resp.Resources = append(resp.Resources, sr)
			continue
		}
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeBroker:
			if rr.ResourceName != "" && rr.ResourceName != strconv.Itoa(int(s.opts.NodeID)) {
				sr.ErrorCode, sr.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr("this is broker "+strconv.Itoa(int(s.opts.NodeID)))
				break
			}
			s.describeBroker(req, rr.ConfigNames, &sr)
		case kmsg.ConfigResourceTypeTopic:
			if s.virtualOffsetsTopic(rr.ResourceName) {
				break // exists, with no log and so no topic configs
			}
			vals, explicit, err := s.log.EffectiveConfigs(rr.ResourceName)
			if err != nil {
				sr.ErrorCode, sr.ErrorMessage = errorCode(err), errorMessage(err)
				break
			}
			nodeDefaults := s.log.TopicDefaults()
			names := rr.ConfigNames
			if names == nil {
				names = flog.ConfigKeys()
			}
			for _, k := range names {
				v, ok := vals[k]
				if !ok {
					continue
				}
				c := kmsg.NewDescribeConfigsResponseResourceConfig()
				c.Name, c.Value, c.IsDefault = k, kmsg.StringPtr(v), !explicit[k]
				c.ConfigSynonyms = s.withDynamicDefaults(k, configSynonyms(k, explicit[k], v, nodeDefaults))
				c.Source = c.ConfigSynonyms[0].Source
				if !req.IncludeSynonyms {
					c.ConfigSynonyms = nil
				}
				c.ConfigType = configType(v)
				if _, doc, ok := flog.ConfigDefault(k); ok && req.IncludeDocumentation {
					c.Documentation = kmsg.StringPtr(doc)
				}
				sr.Configs = append(sr.Configs, c)
			}
		default:
			sr.ErrorCode = kerr.InvalidRequest.Code
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return resp, nil
}
