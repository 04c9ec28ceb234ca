package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// FindCoordinator: v0-4 (with the consumer-group APIs)
//
// Behavior:
//   - The Cluster view names the coordinator: alone, this node coordinates
//     every group; a coordinator that is not available is
//     COORDINATOR_NOT_AVAILABLE. Transaction coordinators (key type 1) are
//     not served: COORDINATOR_NOT_AVAILABLE.
//
// Version notes:
//   - v1: KeyType, ErrorMessage; v3: flexible; v4: batched CoordinatorKeys

func init() { registerGroupAPI(10, 0, 4, serveFindCoordinator) }

func serveFindCoordinator(s *Server, _ context.Context, cn *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.FindCoordinatorRequest)
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	answer := func(key string) (int32, string, int32, int16) {
		if req.CoordinatorType != 0 {
			return -1, "", -1, kerr.CoordinatorNotAvailable.Code
		}
		if !cn.canGroup(kmsg.ACLOperationDescribe, key) {
			return -1, "", -1, kerr.GroupAuthorizationFailed.Code
		}
		b, ok := s.cluster.Coordinator(key)
		if !ok {
			return -1, "", -1, kerr.CoordinatorNotAvailable.Code
		}
		return b.ID, b.Host, b.Port, 0
	}
	if req.Version >= 4 {
		for _, key := range req.CoordinatorKeys {
			c := kmsg.NewFindCoordinatorResponseCoordinator()
			c.Key = key
			c.NodeID, c.Host, c.Port, c.ErrorCode = answer(key)
			resp.Coordinators = append(resp.Coordinators, c)
		}
		return resp, nil
	}
	resp.NodeID, resp.Host, resp.Port, resp.ErrorCode = answer(req.CoordinatorKey)
	return resp, nil
}
