package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Heartbeat: v0-4
//
// Behavior:
//   - Keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to
//     rejoin; UNKNOWN_MEMBER_ID / ILLEGAL_GENERATION for stale members;
//     FENCED_INSTANCE_ID for a static member's replaced member id (v3+).
//
// Version notes:
//   - v3: InstanceID; v4: flexible

func init() { registerGroupAPI(12, 0, 4, serveHeartbeat) }

func serveHeartbeat(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.HeartbeatRequest)
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	if !c.canGroup(kmsg.ACLOperationRead, req.Group) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp, nil
	}
	if code := s.coordinatorCode(req.Group); code != 0 {
		resp.ErrorCode = code
		return resp, nil
	}
	resp.ErrorCode = s.opts.Groups.heartbeat(req)
	return resp, nil
}
