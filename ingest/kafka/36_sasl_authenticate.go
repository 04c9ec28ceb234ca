package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// SaslAuthenticate: v0-2 (advertised only when SASL is on)
//
// Behavior:
//   - Carries one message of the exchange SaslHandshake began (sasl.go):
//     PLAIN takes one, SCRAM two (client-first, then client-final, answered
//     with server-first and server-final). When the exchange succeeds the
//     connection's principal is User:NAME and every API is open to it.
//   - A failure is answered SASL_AUTHENTICATION_FAILED with a message that
//     does not say which part was wrong, after Options.AuthFailureDelay, and
//     the connection is closed; counted by mechanism and result.
//   - Without a handshake first, or after authentication: ILLEGAL_SASL_STATE,
//     and the connection is closed.
//
// Version notes:
//   - v1: SessionLifetimeMillis (always 0: no re-authentication)
//   - v2: flexible

func init() {
	register(36, 0, 2, serveSASLAuthenticate)
	needs[36] = func(s *Server) bool { return s.sasl != nil }
}

func serveSASLAuthenticate(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.SASLAuthenticateRequest)
	resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	x := c.exchange
	if x == nil || c.principal != "" {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		msg := "SaslAuthenticate without a SaslHandshake first, or after authentication"
		resp.ErrorMessage = &msg
		c.closeAfter = true
		return resp, nil
	}
	answer, user, err := s.sasl.step(x, req.SASLAuthBytes)
	if err != nil {
		c.exchange = nil
		s.metrics.authResult(x.mechanism, false)
		c.logger.Info("SASL authentication failed", "mechanism", x.mechanism, "err", err)
		s.authFailureDelay()
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		msg := "Authentication failed: invalid credentials with SASL mechanism " + x.mechanism
		resp.ErrorMessage = &msg
		c.closeAfter = true
		return resp, nil
	}
	resp.SASLAuthBytes = answer
	if user != "" {
		c.exchange = nil
		c.principal = "User:" + user
		c.super = s.superUsers[c.principal]
		s.metrics.authResult(x.mechanism, true)
		c.logger.Debug("SASL authenticated", "mechanism", x.mechanism, "principal", c.principal)
	}
	return resp, nil
}
