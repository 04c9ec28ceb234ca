package kafka

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// AlterUserScramCredentials: v0 (served when Options.Credentials is a
// SCRAMUsers: the node's users, the same as 'ferry users')
//
// Behavior:
//   - Upsertions store a user's credential for a mechanism from the salt,
//     iterations and salted password a client derived (StoredKey and
//     ServerKey are computed here, RFC 5802), creating the user if there
//     is none; deletions remove one. Each user is answered once, and its
//     changes are applied only if all of them are valid: an empty name or
//     iterations outside 4096..16384 is UNACCEPTABLE_CREDENTIAL, an unknown
//     mechanism UNSUPPORTED_SASL_MECHANISM, a user and mechanism named
//     twice DUPLICATE_RESOURCE, deleting a credential that does not exist
//     RESOURCE_NOT_FOUND, as Kafka answers.
//   - With ACLs: ALTER on the cluster, else CLUSTER_AUTHORIZATION_FAILED
//     for every user.
//
// Version notes:
//   - v0: flexible

func init() {
	register(51, 0, 0, serveAlterUserSCRAM)
	needs[51] = func(s *Server) bool { _, ok := s.opts.Credentials.(SCRAMUsers); return ok }
}

// Kafka's bounds on a SCRAM credential's iterations.
const (
	minSCRAMIterations = 4096
	maxSCRAMIterations = 16384
)

// scramChange is one upsertion (cred set) or deletion of a user's
// credential.
type scramChange struct {
	mechanism string
	cred      *SCRAMCredential
}

func serveAlterUserSCRAM(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.AlterUserSCRAMCredentialsRequest)
	resp := req.ResponseKind().(*kmsg.AlterUserSCRAMCredentialsResponse)
	var order []string
	changes := map[string][]scramChange{}
	type problem struct {
		code int16
		msg  string
	}
	failed := map[string]problem{} // user → the first problem found
	fail := func(user string, e *kerr.Error, msg string) {
		if _, ok := failed[user]; !ok {
			failed[user] = problem{e.Code, msg}
		}
	}
	add := func(user string, mech int8, cred *SCRAMCredential) {
		if _, ok := changes[user]; !ok {
			order = append(order, user)
			changes[user] = nil
		}
		name, ok := scramMechanisms[mech]
		switch {
		case user == "":
			fail(user, kerr.UnacceptableCredential, "the user name is empty")
		case !ok:
			fail(user, kerr.UnsupportedSaslMechanism, fmt.Sprintf("unknown SCRAM mechanism %d", mech))
		case slices.ContainsFunc(changes[user], func(ch scramChange) bool { return ch.mechanism == name }):
			fail(user, kerr.DuplicateResource, "a user and mechanism named more than once")
		}
		changes[user] = append(changes[user], scramChange{mechanism: name, cred: cred})
	}
	for _, d := range req.Deletions {
		if name, ok := scramMechanisms[d.Mechanism]; ok {
			if _, err := s.opts.Credentials.SCRAM(name, d.Name); err != nil {
				fail(d.Name, kerr.ResourceNotFound, fmt.Sprintf("%q has no %s credential to delete", d.Name, name))
			}
		}
		add(d.Name, d.Mechanism, nil)
	}
	for _, u := range req.Upsertions {
		if u.Iterations < minSCRAMIterations || u.Iterations > maxSCRAMIterations {
			fail(u.Name, kerr.UnacceptableCredential, fmt.Sprintf("iterations must be %d to %d", minSCRAMIterations, maxSCRAMIterations))
		}
		if len(u.Salt) == 0 || len(u.SaltedPassword) == 0 {
			fail(u.Name, kerr.UnacceptableCredential, "a salt and a salted password are needed")
		}
		var cred *SCRAMCredential
		if name, ok := scramMechanisms[u.Mechanism]; ok {
			cred = scramCredentialFrom(name, u.Salt, u.SaltedPassword, int(u.Iterations))
		}
		add(u.Name, u.Mechanism, cred)
	}
	mayAlter := c.canCluster(kmsg.ACLOperationAlter)
	users := s.opts.Credentials.(SCRAMUsers)
	for _, user := range order {
		r := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
		r.User = user
		switch f, bad := failed[user]; {
		case !mayAlter:
			r.ErrorCode, r.ErrorMessage = kerr.ClusterAuthorizationFailed.Code, kmsg.StringPtr("ALTER on the cluster is not allowed")
		case bad:
			r.ErrorCode, r.ErrorMessage = f.code, kmsg.StringPtr(f.msg)
		default:
			for _, ch := range changes[user] {
				var err error
				if ch.cred != nil {
					err = users.SetSCRAM(ch.mechanism, user, *ch.cred)
				} else {
					err = users.DeleteSCRAM(ch.mechanism, user)
				}
				switch {
				case errors.Is(err, ErrBadCredentials):
					r.ErrorCode, r.ErrorMessage = kerr.ResourceNotFound.Code, kmsg.StringPtr(err.Error())
				case err != nil:
					r.ErrorCode, r.ErrorMessage = kerr.UnacceptableCredential.Code, kmsg.StringPtr(err.Error())
				}
				if err != nil {
					break
				}
			}
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

// scramCredentialFrom is the credential a server keeps for a salted
// password (RFC 5802): StoredKey = H(HMAC(salted, "Client Key")),
// ServerKey = HMAC(salted, "Server Key").
func scramCredentialFrom(mechanism string, salt, salted []byte, iterations int) *SCRAMCredential {
	h := scramHashFor(mechanism)
	mac := hmac.New(h, salted)
	mac.Write([]byte("Client Key"))
	clientKey := mac.Sum(nil)
	stored := h()
	stored.Write(clientKey)
	mac = hmac.New(h, salted)
	mac.Write([]byte("Server Key"))
	return &SCRAMCredential{Salt: append([]byte(nil), salt...), Iterations: iterations, StoredKey: stored.Sum(nil), ServerKey: mac.Sum(nil)}
}
