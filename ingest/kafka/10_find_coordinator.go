package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// FindCoordinator: v0-4 (with the consumer-group APIs)
//
// Behavior:
//   - This node coordinates every group. Transaction coordinators (key
//     type 1) are not served: COORDINATOR_NOT_AVAILABLE.
//
// Version notes:
//   - v1: KeyType, ErrorMessage; v3: flexible; v4: batched CoordinatorKeys

func init() { registerGroupAPI(10, 0, 4, serveFindCoordinator) }

func serveFindCoordinator(s *Server, _ context.Context, cn *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.FindCoordinatorRequest)
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	host, port := s.advertisedHostPort()
	code := int16(0)
	if req.CoordinatorType != 0 {
		code = kerr.CoordinatorNotAvailable.Code
	}
	if req.Version >= 4 {
		for _, key := range req.CoordinatorKeys {
			c := kmsg.NewFindCoordinatorResponseCoordinator()
			c.Key, c.NodeID, c.Host, c.Port, c.ErrorCode = key, s.opts.NodeID, host, port, code
			if code == 0 && !cn.canGroup(kmsg.ACLOperationDescribe, key) {
				c.NodeID, c.Host, c.Port, c.ErrorCode = -1, "", -1, kerr.GroupAuthorizationFailed.Code
			}
			resp.Coordinators = append(resp.Coordinators, c)
		}
		return resp, nil
	}
	resp.NodeID, resp.Host, resp.Port, resp.ErrorCode = s.opts.NodeID, host, port, code
	if code == 0 && !cn.canGroup(kmsg.ACLOperationDescribe, req.CoordinatorKey) {
		resp.NodeID, resp.Host, resp.Port, resp.ErrorCode = -1, "", -1, kerr.GroupAuthorizationFailed.Code
	}
	return resp, nil
}
