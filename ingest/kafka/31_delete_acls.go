package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DeleteAcls: v0-3
//
// Behavior:
//   - Served always. Without an authorizer (SASL and Options.ACLs both
//     needed) every filter is answered SECURITY_DISABLED, as Kafka does
//     without authorizer.class.name, so admin tools say why instead of
//     finding the API missing.
//   - Deletes, filter by filter, the bindings each selects (as DescribeAcls
//     selects them) and returns them as the filter's matching ACLs.
//   - Needs ALTER on the cluster, else CLUSTER_AUTHORIZATION_FAILED for
//     every filter.
//
// Version notes:
//   - v1: pattern types (v0 filters are LITERAL); v2: flexible; v3: USER
//     resources (none kept)

func init() { register(31, 0, 3, serveDeleteACLs) }

func serveDeleteACLs(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteACLsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteACLsResponse)
	mayAlter := c.canCluster(kmsg.ACLOperationAlter)
	for _, rf := range req.Filters {
		r := kmsg.NewDeleteACLsResponseResult()
		if !s.authorizing() {
			r.ErrorCode, r.ErrorMessage = kerr.SecurityDisabled.Code, kmsg.StringPtr(errSecurityDisabled)
			resp.Results = append(resp.Results, r)
			continue
		}
		if !mayAlter {
			r.ErrorCode, r.ErrorMessage = kerr.ClusterAuthorizationFailed.Code, kmsg.StringPtr("ALTER on the cluster is not allowed")
			resp.Results = append(resp.Results, r)
			continue
		}
		pattern := rf.ResourcePatternType
		if req.Version == 0 {
			pattern = kmsg.ACLResourcePatternTypeLiteral
		}
		deleted, err := s.opts.ACLs.DeleteACLs(aclFilter(rf.ResourceType, rf.ResourceName, pattern, rf.Principal, rf.Host, rf.Operation, rf.PermissionType))
		if err != nil {
			r.ErrorCode, r.ErrorMessage = kerr.UnknownServerError.Code, kmsg.StringPtr(err.Error())
		}
		for _, a := range deleted {
			m := kmsg.NewDeleteACLsResponseResultMatchingACL()
			m.ResourceType, _ = kmsg.ParseACLResourceType(a.ResourceType)
			m.ResourcePatternType, _ = kmsg.ParseACLResourcePatternType(a.PatternType)
			m.ResourceName, m.Principal, m.Host = a.ResourceName, a.Principal, a.Host
			m.Operation, _ = kmsg.ParseACLOperation(a.Operation)
			m.PermissionType, _ = kmsg.ParseACLPermissionType(a.Permission)
			r.MatchingACLs = append(r.MatchingACLs, m)
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}
