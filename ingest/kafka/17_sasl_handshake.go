package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// SaslHandshake: v0-1 (advertised only when SASL is on)
//
// Behavior:
//   - Chooses the connection's mechanism among Options.SASLMechanisms and
//     lists them. A mechanism not enabled is answered
//     UNSUPPORTED_SASL_MECHANISM with the list, and the connection closed.
//   - A handshake on a connection already authenticated or mid-exchange is
//     answered ILLEGAL_SASL_STATE and the connection closed
//     (re-authentication, KIP-368, is not offered).
//
// Version notes:
//   - v0, after which the SASL tokens would follow as raw frames, is
//     advertised because librdkafka infers SASL support from it, but a v0
//     handshake is answered UNSUPPORTED_VERSION and closed: clients that
//     also see v1 (every client since Kafka 1.0) use v1 and
//     SaslAuthenticate.

func init() {
	register(17, 0, 1, serveSASLHandshake)
	needs[17] = func(s *Server) bool { return s.sasl != nil }
}

func serveSASLHandshake(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.SASLHandshakeRequest)
	resp := req.ResponseKind().(*kmsg.SASLHandshakeResponse)
	resp.SupportedMechanisms = s.sasl.mechanisms
	if req.Version == 0 {
		resp.ErrorCode = kerr.UnsupportedVersion.Code
		c.closeAfter = true
		return resp, nil
	}
	if c.principal != "" || c.exchange != nil {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		c.closeAfter = true
		s.metrics.authResult("unsupported", false)
		return resp, nil
	}
	if c.exchange = s.sasl.start(req.Mechanism); c.exchange == nil {
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		c.closeAfter = true
		s.metrics.authResult("unsupported", false)
	}
	return resp, nil
}
