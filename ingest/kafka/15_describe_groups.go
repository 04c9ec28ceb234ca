package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeGroups: v0-5
//
// Behavior:
//   - State, protocol type and name, and members with their client ids,
//     hosts, instance ids (static members, v4+), metadata and assignments.
//     A group with committed offsets but no members is Empty; a group with
//     neither does not exist and is described as Dead, with no error and
//     no members, as Kafka's classic coordinator does (its DeadGroup).
//
// Version notes:
//   - v3: authorized operations on the group, when asked (acl.go's
//     authorizedOps: every operation without an authorizer); v4:
//     InstanceID; v5: flexible

func init() { registerGroupAPI(15, 0, 5, serveDescribeGroups) }

func serveDescribeGroups(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, name := range req.Groups {
		if !c.canGroup(kmsg.ACLOperationDescribe, name) {
			g := kmsg.NewDescribeGroupsResponseGroup()
			g.Group, g.ErrorCode = name, kerr.GroupAuthorizationFailed.Code
			resp.Groups = append(resp.Groups, g)
			continue
		}
		if code := s.coordinatorCode(name); code != 0 {
			g := kmsg.NewDescribeGroupsResponseGroup()
			g.Group, g.ErrorCode = name, code
			resp.Groups = append(resp.Groups, g)
			continue
		}
		state, ptype, proto, members := s.opts.Groups.describe(name)
		g := kmsg.NewDescribeGroupsResponseGroup()
		g.Group, g.State, g.ProtocolType, g.Protocol, g.Members = name, string(state), ptype, proto, members
		if req.IncludeAuthorizedOperations {
			g.AuthorizedOperations = c.authorizedOps(kmsg.ACLResourceTypeGroup, name)
		}
		resp.Groups = append(resp.Groups, g)
	}
	return resp, nil
}
