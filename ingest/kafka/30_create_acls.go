package kafka

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// CreateAcls: v0-3
//
// Behavior:
//   - Served always. Without an authorizer (SASL and Options.ACLs both
//     needed) every creation is answered SECURITY_DISABLED, as Kafka does
//     without authorizer.class.name, so admin tools say why instead of
//     finding the API missing.
//   - Stores each creation on its own (Options.ACLs), answering each with
//     its result: INVALID_REQUEST for a binding ferry cannot keep (resource
//     types other than TOPIC, GROUP and CLUSTER; patterns other than LITERAL
//     and PREFIXED; principals not User:NAME; ANY or UNKNOWN values), with
//     the reason. Storing a binding twice keeps one.
//   - Needs ALTER on the cluster, else CLUSTER_AUTHORIZATION_FAILED for
//     every creation.
//
// Version notes:
//   - v1: pattern types (v0 creations are LITERAL); v2: flexible; v3: USER
//     resources (refused)

func init() { register(30, 0, 3, serveCreateACLs) }

func serveCreateACLs(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.CreateACLsRequest)
	resp := req.ResponseKind().(*kmsg.CreateACLsResponse)
	mayAlter := c.canCluster(kmsg.ACLOperationAlter)
	for _, cr := range req.Creations {
		r := kmsg.NewCreateACLsResponseResult()
		pattern := cr.ResourcePatternType
		if req.Version == 0 {
			pattern = kmsg.ACLResourcePatternTypeLiteral
		}
		a := ACL{Principal: cr.Principal, Host: cr.Host, ResourceType: cr.ResourceType.String(), ResourceName: cr.ResourceName,
			PatternType: pattern.String(), Operation: cr.Operation.String(), Permission: cr.PermissionType.String()}
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
		switch err := s.opts.ACLs.AddACLs([]ACL{a}); {
		case errors.Is(err, ErrInvalidACL):
			r.ErrorCode, r.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr(err.Error())
		case err != nil:
			r.ErrorCode, r.ErrorMessage = kerr.UnknownServerError.Code, kmsg.StringPtr(err.Error())
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}
