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
//     A group that does not exist is described as Empty with no members,
//     as Kafka does.
//
// Version notes:
//   - v3: authorized operations (not computed); v4: InstanceID; v5: flexible

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
		state, ptype, proto, members := s.opts.Groups.describe(name)
		g := kmsg.NewDescribeGroupsResponseGroup()
		g.Group, g.State, g.ProtocolType, g.Protocol, g.Members = name, string(state), ptype, proto, members
		resp.Groups = append(resp.Groups, g)
	}
	return resp, nil
}
