package kafka

import (
	"context"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeUserScramCredentials: v0 (served when Options.Credentials is a
// SCRAMUsers: the node's users, the same as 'ferry users')
//
// Behavior:
//   - For each user named, or every user with a SCRAM credential when none
//     is named, its mechanisms and iteration counts (never a salt or key).
//     A user named without a SCRAM credential is RESOURCE_NOT_FOUND, one
//     named twice DUPLICATE_RESOURCE, as Kafka answers.
//   - With ACLs: DESCRIBE on the cluster, else CLUSTER_AUTHORIZATION_FAILED.
//
// Version notes:
//   - v0: flexible

func init() {
	register(50, 0, 0, serveDescribeUserSCRAM)
	needs[50] = func(s *Server) bool { _, ok := s.opts.Credentials.(SCRAMUsers); return ok }
}

// scramMechanisms are the SCRAM mechanisms by their code in the SCRAM
// credential APIs.
var scramMechanisms = map[int8]string{1: SASLSCRAMSHA256, 2: SASLSCRAMSHA512}

func serveDescribeUserSCRAM(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeUserSCRAMCredentialsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeUserSCRAMCredentialsResponse)
	if !c.canCluster(kmsg.ACLOperationDescribe) {
		resp.ErrorCode, resp.ErrorMessage = kerr.ClusterAuthorizationFailed.Code, kmsg.StringPtr("DESCRIBE on the cluster is not allowed")
		return resp, nil
	}
	users := s.opts.Credentials.(SCRAMUsers)
	var names []string
	all := len(req.Users) == 0
	if all {
		var err error
		if names, err = users.Users(); err != nil {
			resp.ErrorCode, resp.ErrorMessage = kerr.UnknownServerError.Code, kmsg.StringPtr(err.Error())
			return resp, nil
		}
		sort.Strings(names)
	} else {
		for _, u := range req.Users {
			names = append(names, u.Name)
		}
	}
	count := map[string]int{}
	for _, n := range names {
		count[n]++
	}
	done := map[string]bool{}
	for _, name := range names {
		if done[name] {
			continue
		}
		done[name] = true
		r := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
		r.User = name
		if count[name] > 1 {
			r.ErrorCode, r.ErrorMessage = kerr.DuplicateResource.Code, kmsg.StringPtr("user named more than once")
			resp.Results = append(resp.Results, r)
			continue
		}
		for _, code := range []int8{1, 2} {
			cred, err := s.opts.Credentials.SCRAM(scramMechanisms[code], name)
			if err != nil {
				continue
			}
			ci := kmsg.NewDescribeUserSCRAMCredentialsResponseResultCredentialInfo()
			ci.Mechanism, ci.Iterations = code, int32(cred.Iterations)
			r.CredentialInfos = append(r.CredentialInfos, ci)
		}
		if len(r.CredentialInfos) == 0 {
			if all {
				continue // a PLAIN-only user
			}
			r.ErrorCode, r.ErrorMessage = kerr.ResourceNotFound.Code, kmsg.StringPtr("no SCRAM credential for this user")
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}
