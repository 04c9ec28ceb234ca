package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// ListGroups: v0-4
//
// Behavior:
//   - Every group with members or committed offsets, with its protocol type
//     and (v4+) state, filtered by StatesFilter when given.
//
// Version notes:
//   - v3: flexible; v4: states

func init() { registerGroupAPI(16, 0, 4, serveListGroups) }

func serveListGroups(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ListGroupsRequest)
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	clusterWide := c.allowedQuiet(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeCluster, clusterName)
	for _, name := range s.opts.Groups.groupNames() {
		if !clusterWide && !c.allowedQuiet(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeGroup, name) {
			continue
		}
		state, ptype, _, _ := s.opts.Groups.describe(name)
		if len(req.StatesFilter) > 0 {
			keep := false
			for _, f := range req.StatesFilter {
				keep = keep || f == string(state)
			}
			if !keep {
				continue
			}
		}
		g := kmsg.NewListGroupsResponseGroup()
		g.Group, g.ProtocolType, g.GroupState = name, ptype, string(state)
		resp.Groups = append(resp.Groups, g)
	}
	return resp, nil
}
