package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// LeaveGroup: v0-4
//
// Behavior:
//   - Removes the member(s); the rest rebalance. UNKNOWN_MEMBER_ID for a
//     member not in the group (per member from v3).
//   - v3+: a static member (static.go) is removed by its instance id with
//     an empty member id, or by member id; a member id that is not the
//     instance id's current one is FENCED_INSTANCE_ID.
//
// Version notes:
//   - v3: batched Members; v4: flexible

func init() { registerGroupAPI(13, 0, 4, serveLeaveGroup) }

func serveLeaveGroup(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.LeaveGroupRequest)
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	if !c.canGroup(kmsg.ACLOperationRead, req.Group) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp, nil
	}
	if code := s.coordinatorCode(req.Group); code != 0 {
		resp.ErrorCode = code
		return resp, nil
	}
	if req.Version < 3 {
		resp.ErrorCode = s.opts.Groups.leave(req.Group, req.MemberID, nil)
		return resp, nil
	}
	for _, m := range req.Members {
		rm := kmsg.NewLeaveGroupResponseMember()
		rm.MemberID, rm.InstanceID = m.MemberID, m.InstanceID
		rm.ErrorCode = s.opts.Groups.leave(req.Group, m.MemberID, m.InstanceID)
		resp.Members = append(resp.Members, rm)
	}
	return resp, nil
}
