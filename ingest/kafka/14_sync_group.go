package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// SyncGroup: v0-5
//
// Behavior:
//   - The leader's SyncGroup carries every member's assignment and makes the
//     group Stable; followers wait for it and then get their own. During a
//     rebalance: REBALANCE_IN_PROGRESS; wrong member or generation:
//     UNKNOWN_MEMBER_ID / ILLEGAL_GENERATION; FENCED_INSTANCE_ID for a
//     static member's replaced member id (v3+, static.go). A static member
//     that rejoined without a rebalance gets its assignment back.
//
// Version notes:
//   - v3: InstanceID; v4: flexible; v5: protocol type and name

func init() { registerGroupAPI(14, 0, 5, serveSyncGroup) }

func serveSyncGroup(s *Server, ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	if req := kreq.(*kmsg.SyncGroupRequest); !c.canGroup(kmsg.ACLOperationRead, req.Group) {
		resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp, nil
	}
	if req := kreq.(*kmsg.SyncGroupRequest); s.coordinatorCode(req.Group) != 0 {
		resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
		resp.ErrorCode = s.coordinatorCode(req.Group)
		return resp, nil
	}
	return s.opts.Groups.sync(ctx, kreq.(*kmsg.SyncGroupRequest)), nil
}
