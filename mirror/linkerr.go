package mirror

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
)

// Why a session with the center ended, as counted in
// ferry_mirror_link_errors_total and shown by Status.
const (
	reasonDial       = "dial"        // no connection: refused, unreachable, DNS
	reasonTLS        = "tls"         // the TLS handshake failed (certificates)
	reasonRefused    = "refused"     // the center refused the handshake (token, edge id)
	reasonAckTimeout = "ack_timeout" // chunks in flight went unacknowledged too long
	reasonCenter     = "center"      // the center sent an error frame mid-session
	reasonProtocol   = "protocol"    // the center said something out of turn
	reasonLink       = "link"        // the connection broke (reset, EOF)
)

// linkErrorReasons are every reason, so each counter exists from the start.
var linkErrorReasons = []string{reasonDial, reasonTLS, reasonRefused, reasonAckTimeout, reasonCenter, reasonProtocol, reasonLink}

// linkError is a session's failure with its reason.
type linkError struct {
	reason string
	err    error
}

func (e *linkError) Error() string { return e.err.Error() }
func (e *linkError) Unwrap() error { return e.err }

// asLink marks err with reason unless it already has one.
func asLink(reason string, err error) error {
	var le *linkError
	if err == nil || errors.As(err, &le) {
		return err
	}
	return &linkError{reason: reason, err: err}
}

// classify gives the reason a session ended; "" when it ended for no
// fault (the mirrored topics changed, or the node is stopping).
func classify(err error) string {
	var le *linkError
	switch {
	case err == nil, errors.Is(err, errTopicsChanged):
		return ""
	case errors.As(err, &le):
		return le.reason
	case errors.Is(err, os.ErrDeadlineExceeded):
		return reasonAckTimeout
	}
	var recErr tls.RecordHeaderError
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	if errors.As(err, &recErr) || errors.As(err, &certErr) || errors.As(err, &unknownCA) {
		return reasonTLS
	}
	var op *net.OpError
	if errors.As(err, &op) {
		switch op.Op {
		case "remote error": // a TLS alert from the center: it refused our certificate
			return reasonTLS
		case "dial":
			return reasonDial
		}
	}
	return reasonLink
}

// errorState is the link's failure history: the latest error and how many
// sessions ended in one.
type errorState struct {
	last     atomic.Pointer[LinkError] // never changed once stored: Status hands out copies
	failures atomic.Int64
}

// plaintextHint adds the likeliest cause to a plaintext session the center
// closed before it answered the hello: a center serving TLS closes a
// connection whose first bytes are not a TLS handshake (it logs "first
// record does not look like a TLS handshake"), which the edge sees as an
// EOF or a reset and nothing more.
func plaintextHint(err error, usingTLS bool) error {
	if usingTLS || !(errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)) {
		return err
	}
	return fmt.Errorf("%w (the center closed the connection without answering: it may require TLS, which --mirror-tls-ca turns on)", err)
}
