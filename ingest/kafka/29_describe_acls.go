package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeAcls: v0-3
//
// Behavior:
//   - Served always. Without an authorizer (SASL and Options.ACLs both
//     needed) it answers SECURITY_DISABLED, as Kafka does without
//     authorizer.class.name, so admin tools say why instead of finding the
//     API missing.
//   - Lists the bindings the filter selects (acl.go, Options.ACLs), grouped
//     by resource. Needs DESCRIBE on the cluster, else
//     CLUSTER_AUTHORIZATION_FAILED.
//   - Resource types, pattern types, operations and permissions outside
//     what ferry keeps (TRANSACTIONAL_ID, DELEGATION_TOKEN, USER) match
//     nothing.
//
// Version notes:
//   - v1: pattern types (v0 filters are LITERAL); v2: flexible; v3: USER
//     resources (none kept)

func init() { register(29, 0, 3, serveDescribeACLs) }

// errSecurityDisabled is the message of SECURITY_DISABLED answers.
const errSecurityDisabled = "no authorizer is configured on the broker (ACLs need --kafka-sasl)"

func serveDescribeACLs(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeACLsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeACLsResponse)
	if !s.authorizing() {
		resp.ErrorCode, resp.ErrorMessage = kerr.SecurityDisabled.Code, kmsg.StringPtr(errSecurityDisabled)
		return resp, nil
	}
	if !c.canCluster(kmsg.ACLOperationDescribe) {
		resp.ErrorCode, resp.ErrorMessage = kerr.ClusterAuthorizationFailed.Code, kmsg.StringPtr("DESCRIBE on the cluster is not allowed")
		return resp, nil
	}
	pattern := req.ResourcePatternType
	if req.Version == 0 {
		pattern = kmsg.ACLResourcePatternTypeLiteral
	}
	f := aclFilter(req.ResourceType, req.ResourceName, pattern, req.Principal, req.Host, req.Operation, req.PermissionType)
	acls, err := s.opts.ACLs.ACLs(f)
	if err != nil {
		resp.ErrorCode, resp.ErrorMessage = kerr.UnknownServerError.Code, kmsg.StringPtr(err.Error())
		return resp, nil
	}
	type key struct{ rtype, name, pattern string }
	at := map[key]int{}
	for _, a := range acls {
		k := key{a.ResourceType, a.ResourceName, a.PatternType}
		i, ok := at[k]
		if !ok {
			r := kmsg.NewDescribeACLsResponseResource()
			r.ResourceType, _ = kmsg.ParseACLResourceType(a.ResourceType)
			r.ResourcePatternType, _ = kmsg.ParseACLResourcePatternType(a.PatternType)
			r.ResourceName = a.ResourceName
			i = len(resp.Resources)
			at[k] = i
			resp.Resources = append(resp.Resources, r)
		}
		d := kmsg.NewDescribeACLsResponseResourceACL()
		d.Principal, d.Host = a.Principal, a.Host
		d.Operation, _ = kmsg.ParseACLOperation(a.Operation)
		d.PermissionType, _ = kmsg.ParseACLPermissionType(a.Permission)
		resp.Resources[i].ACLs = append(resp.Resources[i].ACLs, d)
	}
	return resp, nil
}

// aclFilter turns a request's filter into an ACLFilter. A value ferry
// keeps none of (a TRANSACTIONAL_ID resource, say) is passed as is, and so
// matches nothing.
func aclFilter(rt kmsg.ACLResourceType, name *string, pt kmsg.ACLResourcePatternType, principal, host *string,
	op kmsg.ACLOperation, perm kmsg.ACLPermissionType) ACLFilter {
	f := ACLFilter{ResourceType: rt.String(), ResourceName: name, PatternType: pt.String(), Operation: op.String(), Permission: perm.String()}
	if principal != nil {
		f.Principal = *principal
	}
	if host != nil {
		f.Host = *host
	}
	return f
}
