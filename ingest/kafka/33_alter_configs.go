package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// AlterConfigs: v0-2
//
// Behavior:
//   - The older, whole-set form of IncrementalAlterConfigs: a topic's config
//     overrides become exactly those named, every other key returning to its
//     default (log.ReplaceConfigs), applied to every partition at once. An
//     unknown key or a bad value is INVALID_CONFIG with the reason, a null
//     value INVALID_REQUEST; ValidateOnly changes nothing.
//   - Broker resources (this node's id, or "" for the cluster's default):
//     the dynamic broker configs (brokerdynamic.go) of the resource become
//     exactly those named; a read-only one is INVALID_REQUEST, "Cannot
//     update these configs dynamically", for the whole resource.
//   - The internal __consumer_offsets (internal.go) has no configs to
//     alter: INVALID_TOPIC_EXCEPTION.
//   - With ACLs: ALTER_CONFIGS on the topic, or on the cluster for a broker.
//
// Version notes:
//   - v1: ThrottleMillis semantics; v2: flexible

func init() { register(33, 0, 2, serveAlterConfigs) }

func serveAlterConfigs(s *Server, _ context.Context, cn *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.AlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		if code, msg := cn.alterRefused(rr.ResourceType, rr.ResourceName); code != 0 {
			sr.ErrorCode, sr.ErrorMessage = code, msg
			resp.Resources = append(resp.Resources, sr)
			continue
		}
		set := map[string]string{}
		for _, c := range rr.Configs {
			if c.Value == nil {
				sr.ErrorCode, sr.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr("null value for "+c.Name)
				break
			}
			set[c.Name] = *c.Value
		}
		if sr.ErrorCode == 0 && rr.ResourceType == kmsg.ConfigResourceTypeBroker {
			sr.ErrorCode, sr.ErrorMessage = s.alterBroker(rr.ResourceName, set, nil, true, req.ValidateOnly)
		} else if sr.ErrorCode == 0 {
			var err error
			switch {
			case s.frozenOffsetsTopic(rr.ResourceName):
				err = errOffsetsTopic
			case req.ValidateOnly:
				if _, err = s.log.Topic(rr.ResourceName); err == nil {
					err = flog.ValidateConfigs(set)
				}
			default:
				err = s.log.ReplaceConfigs(rr.ResourceName, set)
			}
			sr.ErrorCode, sr.ErrorMessage = errorCode(err), errorMessage(err)
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return resp, nil
}

// alterRefused is why a config change of a resource is refused before it
// is looked at (AlterConfigs, IncrementalAlterConfigs): the principal may
// not alter it, or it is neither a topic nor a broker; 0 when neither.
func (cn *conn) alterRefused(rt kmsg.ConfigResourceType, name string) (int16, *string) {
	if code := cn.configsAllowed(kmsg.ACLOperationAlterConfigs, rt, name); code != 0 {
		return code, nil
	}
	if rt != kmsg.ConfigResourceTypeTopic && rt != kmsg.ConfigResourceTypeBroker {
		return kerr.InvalidRequest.Code, kmsg.StringPtr("only topic and broker configs can be altered")
	}
	return 0, nil
}
