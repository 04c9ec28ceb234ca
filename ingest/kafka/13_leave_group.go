package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// LeaveGroup: v0-4
//
// Behavior:
//   - Removes the member(s); the rest rebalance. UNKNOWN_MEMBER_ID for a
//     member not in the group (per member from v3).
//
// Version notes:
//   - v3: batched Members; v4: flexible

func init() { registerGroupAPI(13, 0, 4, serveLeaveGroup) }

func serveLeaveGroup(s *Server, _ context.Context, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.LeaveGroupRequest)
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	if req.Version < 3 {
		resp.ErrorCode = s.opts.Groups.leave(req.Group, req.MemberID)
		return resp, nil
	}
	for _, m := range req.Members {
		rm := kmsg.NewLeaveGroupResponseMember()
		rm.MemberID, rm.InstanceID = m.MemberID, m.InstanceID
		rm.ErrorCode = s.opts.Groups.leave(req.Group, m.MemberID)
		resp.Members = append(resp.Members, rm)
	}
	return resp, nil
}
