package kafka

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"
	"time"
)

// SASL on the Kafka listener (17_sasl_handshake.go, 36_sasl_authenticate.go).
//
// With Options.SASLMechanisms set, a connection is unauthenticated until a
// SaslHandshake (v1) names an enabled mechanism and SaslAuthenticate
// exchanges succeed. Until then:
//
//   - only ApiVersions, SaslHandshake and SaslAuthenticate are served; any
//     other request closes the connection (as Kafka's broker does) and counts
//     in ferry_kafka_unauthenticated_requests_total;
//   - a request frame larger than preAuthMaxRequestBytes closes the
//     connection before a byte of it is read (Kafka caps unauthenticated
//     requests since CVE-2022-34917), so nothing a stranger declares is
//     allocated; the connection holds its read buffer and, for SCRAM, the
//     conversation's few hundred bytes;
//   - a failed authentication is answered SASL_AUTHENTICATION_FAILED with a
//     message, after Options.AuthFailureDelay (the connection's own
//     goroutine waits; no lock is held), and the connection is closed.
//
// PLAIN (RFC 4616) checks the password with Credentials.CheckPlain. SCRAM-
// SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) are served by scram.go from
// the stored salt, iterations, StoredKey and ServerKey; proofs are compared
// in constant time. An unknown user is
// given a made-up salt (an HMAC of the name under a key drawn at start) and
// fails at the proof like a wrong password, so the exchange does not tell
// who exists. An authorization id other than the user name is refused.
// Re-authentication (KIP-368) is not offered: SessionLifetimeMillis is 0.

// SASL mechanism names.
const (
	SASLPlain       = "PLAIN"
	SASLSCRAMSHA256 = "SCRAM-SHA-256"
	SASLSCRAMSHA512 = "SCRAM-SHA-512"
)

// preAuthMaxRequestBytes caps a request frame before authentication.
const preAuthMaxRequestBytes = 64 << 10

// ErrBadCredentials is what Credentials return for an unknown user or a
// wrong password (wrapped or as is).
var ErrBadCredentials = errors.New("bad credentials")

// Credentials check Kafka users' secrets. The node wires the device
// registry's users; this package never imports it.
type Credentials interface {
	// CheckPlain returns nil if password is user's.
	CheckPlain(user, password string) error
	// SCRAM returns user's stored credential for a SCRAM mechanism, or an
	// error if it has none.
	SCRAM(mechanism, user string) (SCRAMCredential, error)
	// SCRAMDecoy is what the exchange shows for a user with no credential
	// for mechanism: a salt that is the same at every attempt (also
	// across restarts) and the iteration count real users have, so an
	// unknown user cannot be told from a wrong password; no proof may
	// match it.
	SCRAMDecoy(mechanism, user string) SCRAMCredential
}

// SCRAMUsers lists Kafka users and changes their SCRAM credentials, for
// DescribeUserScramCredentials and AlterUserScramCredentials (50, 51),
// which are served only when Options.Credentials implements it (the node's
// does: the device registry's users, the same as 'ferry users').
type SCRAMUsers interface {
	// Users lists every user name.
	Users() ([]string, error)
	// SetSCRAM stores user's credential for a SCRAM mechanism, creating
	// the user if there is none.
	SetSCRAM(mechanism, user string, c SCRAMCredential) error
	// DeleteSCRAM removes user's credential for a SCRAM mechanism, or
	// returns an error wrapping ErrBadCredentials if it has none.
	DeleteSCRAM(mechanism, user string) error
}

// SCRAMCredential is a user's stored SCRAM credential for one mechanism.
type SCRAMCredential struct {
	Salt       []byte
	Iterations int
	StoredKey  []byte
	ServerKey  []byte
}

// ParseSASLMechanisms reads a comma-separated list of mechanisms, in any
// case ("plain,scram-sha-256"), into their SASL names; "" is none.
func ParseSASLMechanisms(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		m := strings.ToUpper(strings.TrimSpace(f))
		switch m {
		case "":
			continue
		case SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512:
			if !slices.Contains(out, m) {
				out = append(out, m)
			}
		default:
			return nil, fmt.Errorf("SASL mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", f)
		}
	}
	return out, nil
}

func scramHashFor(mechanism string) func() hash.Hash {
	switch mechanism {
	case SASLSCRAMSHA256:
		return sha256.New
	case SASLSCRAMSHA512:
		return sha512.New
	}
	return nil
}

// saslServer is the server's SASL setup: the mechanisms enabled and the
// credentials.
type saslServer struct {
	mechanisms []string
	creds      Credentials
}

func newSASLServer(mechanisms []string, creds Credentials) (*saslServer, error) {
	if len(mechanisms) == 0 {
		return nil, nil
	}
	if creds == nil {
		return nil, errors.New("kafka: SASL mechanisms without Options.Credentials")
	}
	ss := &saslServer{mechanisms: mechanisms, creds: creds}
	for _, m := range mechanisms {
		if m != SASLPlain && scramHashFor(m) == nil {
			return nil, fmt.Errorf("kafka: unknown SASL mechanism %q", m)
		}
	}
	return ss, nil
}

// scramLookup returns user's credential, or for an unknown user the
// Credentials' decoy, which no proof matches.
func (ss *saslServer) scramLookup(mech string, user string) (c SCRAMCredential, known bool) {
	if c, err := ss.creds.SCRAM(mech, user); err == nil {
		return c, true
	}
	return ss.creds.SCRAMDecoy(mech, user), false
}

// saslExchange is a connection's SASL state between SaslHandshake and the
// end of authentication.
type saslExchange struct {
	mechanism string
	scram     *scramConversation // nil for PLAIN
}

// start begins an exchange for mechanism; nil if it is not enabled.
func (ss *saslServer) start(mechanism string) *saslExchange {
	if !slices.Contains(ss.mechanisms, mechanism) {
		return nil
	}
	x := &saslExchange{mechanism: mechanism}
	if h := scramHashFor(mechanism); h != nil {
		x.scram = &scramConversation{newHash: h, lookup: func(user string) (SCRAMCredential, bool) { return ss.scramLookup(mechanism, user) }}
	}
	return x
}

// errAuthFailed is what a failed exchange tells the client, whatever the
// cause.
var errAuthFailed = errors.New("invalid credentials")

// step feeds the client's message to the exchange. It returns the answer,
// and the authenticated user name once the exchange is done; a non-nil
// error ends the exchange as failed.
func (ss *saslServer) step(x *saslExchange, msg []byte) (answer []byte, user string, err error) {
	if x.scram == nil {
		user, err := ss.plain(msg)
		return nil, user, err
	}
	out, done, err := x.scram.next(string(msg))
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", errAuthFailed, err)
	}
	if !done {
		return []byte(out), "", nil
	}
	if z := x.scram.authz; z != "" && z != x.scram.user {
		return nil, "", fmt.Errorf("%w: authorization id %q is not the user name", errAuthFailed, z)
	}
	return []byte(out), x.scram.user, nil
}

// plain checks a PLAIN message: [authzid] NUL authcid NUL passwd.
func (ss *saslServer) plain(msg []byte) (string, error) {
	// At most four parts: a message of NULs alone does not make a slice
	// header per byte.
	parts := bytes.SplitN(msg, []byte{0}, 4)
	if len(parts) != 3 || len(parts[1]) == 0 {
		return "", fmt.Errorf("%w: malformed PLAIN message", errAuthFailed)
	}
	authz, user, pass := string(parts[0]), string(parts[1]), string(parts[2])
	if authz != "" && authz != user {
		return "", fmt.Errorf("%w: authorization id %q is not the user name", errAuthFailed, authz)
	}
	if err := ss.creds.CheckPlain(user, pass); err != nil {
		return "", errAuthFailed
	}
	return user, nil
}

// authFailureDelay waits before a failed authentication is answered, unless
// the server closes meanwhile. Only the connection's goroutine waits.
func (s *Server) authFailureDelay() {
	if s.opts.AuthFailureDelay <= 0 {
		return
	}
	t := time.NewTimer(s.opts.AuthFailureDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.ctx.Done():
	}
}
