package kafka

import (
	"context"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// IncrementalAlterConfigs: v0-1
//
// Behavior:
//   - Topic resources: SET and DELETE of topic configs, applied to every
//     partition at once (retention, segment and flush settings take effect
//     live). APPEND and SUBTRACT add items to and remove them from a list
//     config (cleanup.policy, the throttled-replicas lists: see
//     log.ConfigIsList), starting from its effective value, as Kafka does;
//     on any other key they are INVALID_CONFIG. An unknown key or bad value
//     (the list that results included) is INVALID_CONFIG with the reason;
//     ValidateOnly changes nothing.
//   - Broker resources (this node's id, or "" for the cluster's default):
//     SET and DELETE of the dynamic broker configs (brokerdynamic.go),
//     applied live; a read-only one is INVALID_REQUEST, "Cannot update
//     these configs dynamically", for the whole resource; APPEND and
//     SUBTRACT INVALID_CONFIG (none is a list).
//   - The internal __consumer_offsets (internal.go) has no configs to
//     alter: INVALID_TOPIC_EXCEPTION.
//
// Version notes:
//   - v1: flexible

func init() { register(44, 0, 1, serveIncrementalAlterConfigs) }

// alterList appends the comma-separated items of v to list (those not in it
// already), or subtracts them from it.
func alterList(list string, v *string, appending bool) string {
	var items []string
	for _, it := range strings.Split(list, ",") {
		if it = strings.TrimSpace(it); it != "" {
			items = append(items, it)
		}
	}
	if v != nil {
		for _, it := range strings.Split(*v, ",") {
			it = strings.TrimSpace(it)
			switch {
			case it == "":
			case appending && !slices.Contains(items, it):
				items = append(items, it)
			case !appending:
				items = slices.DeleteFunc(items, func(x string) bool { return x == it })
			}
		}
	}
	return strings.Join(items, ",")
}

func serveIncrementalAlterConfigs(s *Server, _ context.Context, cn *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.IncrementalAlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewIncrementalAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		if code, msg := cn.alterRefused(rr.ResourceType, rr.ResourceName); code != 0 {
			sr.ErrorCode, sr.ErrorMessage = code, msg
			resp.Resources = append(resp.Resources, sr)
			continue
		}
		set, remove := map[string]string{}, []string(nil)
		var current map[string]string // effective values, for APPEND and SUBTRACT
		for _, c := range rr.Configs {
			switch c.Op {
			case kmsg.IncrementalAlterConfigOpSet:
				if c.Value == nil {
					sr.ErrorCode = kerr.InvalidRequest.Code
				} else {
					set[c.Name] = *c.Value
				}
			case kmsg.IncrementalAlterConfigOpDelete:
				remove = append(remove, c.Name)
			case kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract:
				if !flog.ConfigIsList(c.Name) {
					sr.ErrorCode, sr.ErrorMessage = kerr.InvalidConfig.Code, kmsg.StringPtr(c.Name+" is not a list config: APPEND and SUBTRACT do not apply")
					break
				}
				if current == nil && rr.ResourceType == kmsg.ConfigResourceTypeTopic {
					current, _, _ = s.log.EffectiveConfigs(rr.ResourceName) // nil for an unknown topic: refused below
				}
				v, ok := set[c.Name]
				if !ok {
					v = current[c.Name]
				}
				set[c.Name] = alterList(v, c.Value, c.Op == kmsg.IncrementalAlterConfigOpAppend)
			default:
				sr.ErrorCode, sr.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr("unknown operation")
			}
		}
		if sr.ErrorCode == 0 && rr.ResourceType == kmsg.ConfigResourceTypeBroker {
			sr.ErrorCode, sr.ErrorMessage = s.alterBroker(rr.ResourceName, set, remove, false, req.ValidateOnly)
		} else if sr.ErrorCode == 0 {
			var err error
			if s.frozenOffsetsTopic(rr.ResourceName) {
				err = errOffsetsTopic
			} else if req.ValidateOnly {
				if _, err = s.log.Topic(rr.ResourceName); err == nil {
					err = flog.ValidateConfigs(set)
				}
			} else {
				err = s.topics.AlterConfigs(rr.ResourceName, set, remove)
			}
			sr.ErrorCode, sr.ErrorMessage = errorCode(err), errorMessage(err)
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return resp, nil
}
