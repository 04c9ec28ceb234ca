package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DeleteGroups: v0-2
//
// Behavior:
//   - Deletes a group with no members and its committed offsets;
//     NON_EMPTY_GROUP while it has members; GROUP_ID_NOT_FOUND for a group
//     that does not exist.
//
// Version notes:
//   - v2: flexible

func init() { registerGroupAPI(42, 0, 2, serveDeleteGroups) }

func serveDeleteGroups(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	for _, name := range req.Groups {
		g := kmsg.NewDeleteGroupsResponseGroup()
		if !c.canGroup(kmsg.ACLOperationDelete, name) {
			g.Group, g.ErrorCode = name, kerr.GroupAuthorizationFailed.Code
		} else if code := s.coordinatorCode(name); code != 0 {
			g.Group, g.ErrorCode = name, code
		} else {
			g.Group, g.ErrorCode = name, s.opts.Groups.deleteGroup(name)
		}
		resp.Groups = append(resp.Groups, g)
	}
	return resp, nil
}
