package mirror

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestLinkErrorsAreVisible: a center that is not there and a center that
// refuses the edge's token each show in the sender's status (reason,
// message, when the next attempt is due) and in
// ferry_mirror_link_errors_total, while the sender keeps retrying.
func TestLinkErrorsAreVisible(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c := startCenter(t, nil, "")

	for _, tc := range []struct {
		name, center, token, reason, says string
	}{
		{"no center", closedAddr, "s3cret", reasonDial, "refused"},
		{"wrong token", c.addr, "nope", reasonRefused, "wrong token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			reg := prometheus.NewRegistry()
			s, err := NewSender(SenderOptions{Log: openLog(t, filepath.Join(dir, "log")), StatePath: filepath.Join(dir, "mirror.db"),
				Center: tc.center, EdgeID: "gw1", Token: tc.token, Logger: quiet, Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); s.Run(ctx) }()
			defer func() { cancel(); <-done }()

			// Two failures: the sender retried after the first.
			waitFor(t, "two failed connections", func() bool { return s.Status().Failures >= 2 })
			st := s.Status()
			if st.LinkUp || st.LastError == nil {
				t.Fatalf("status %+v: want the link down with its last error", st)
			}
			e := st.LastError
			if e.Reason != tc.reason || !strings.Contains(e.Message, tc.says) {
				t.Errorf("last error %+v, want reason %q and a message saying %q", e, tc.reason, tc.says)
			}
			if !e.RetryAt.After(e.At) {
				t.Errorf("next attempt at %v, not after the failure at %v", e.RetryAt, e.At)
			}
			if got := testutil.ToFloat64(s.metrics.linkErrs.WithLabelValues(tc.reason)); got < 2 {
				t.Errorf("ferry_mirror_link_errors_total{reason=%q} = %v, want at least 2", tc.reason, got)
			}
			if n, err := testutil.GatherAndCount(reg, "ferry_mirror_link_errors_total"); err != nil || n != len(linkErrorReasons) {
				t.Errorf("%d series of ferry_mirror_link_errors_total (%v), want one per reason (%d)", n, err, len(linkErrorReasons))
			}
		})
	}
}

// TestClassifyLinkErrors names the reason of each kind of failure a
// session can end with.
func TestClassifyLinkErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errTopicsChanged, ""},
		{fmt.Errorf("reading acks: %w", os.ErrDeadlineExceeded), reasonAckTimeout},
		{fmt.Errorf("reading welcome: %w", asLink(reasonLink, os.ErrDeadlineExceeded)), reasonLink},
		{&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, reasonTLS},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")}, reasonTLS},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, reasonDial},
		{&net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, reasonLink},
		{asLink(reasonCenter, errors.New("center: disk full")), reasonCenter},
		{asLink(reasonProtocol, asLink(reasonCenter, errors.New("x"))), reasonCenter}, // the first reason given stays
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("classify(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
