package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// IncrementalAlterConfigs: v0-1
//
// Behavior:
//   - Topic resources: SET and DELETE of topic configs, applied to every
//     partition at once (retention, segment and flush settings take effect
//     live). APPEND and SUBTRACT (list configs) are INVALID_REQUEST; an
//     unknown key or bad value INVALID_CONFIG; ValidateOnly changes nothing.
//   - Broker resources: INVALID_REQUEST (nothing is alterable yet).
//   - The internal __consumer_offsets (internal.go) has no configs to
//     alter: INVALID_TOPIC_EXCEPTION.
//
// Version notes:
//   - v1: flexible

func init() { register(44, 0, 1, serveIncrementalAlterConfigs) }

func serveIncrementalAlterConfigs(s *Server, _ context.Context, cn *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.IncrementalAlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewIncrementalAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		if code := cn.configsAllowed(kmsg.ACLOperationAlterConfigs, rr.ResourceType, rr.ResourceName); code != 0 {
			sr.ErrorCode = code
			resp.Resources = append(resp.Resources, sr)
			continue
		}
		if rr.ResourceType != kmsg.ConfigResourceTypeTopic {
			sr.ErrorCode, sr.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr("only topic configs can be altered")
			resp.Resources = append(resp.Resources, sr)
			continue
		}
		set, remove := map[string]string{}, []string(nil)
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
			default:
				sr.ErrorCode, sr.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr("APPEND and SUBTRACT apply to list configs; ferry has none")
			}
		}
		if sr.ErrorCode == 0 {
			var err error
			if s.virtualOffsetsTopic(rr.ResourceName) {
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
