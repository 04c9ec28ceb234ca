package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"ferry/edge/certs"
)

// peerTLS makes mutual-TLS configs for a cluster node from ca.
func peerTLS(t *testing.T, ca *certs.CA, name string) (server, client *tls.Config) {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(certs.Request{CommonName: name, Hosts: []string{"127.0.0.1", "localhost"}, Kind: certs.PeerCert})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	server = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	client = &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12}
	return server, client
}

func TestClusterOverTLS(t *testing.T) {
	ca, err := certs.NewCA("cluster test CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	var trs []*Transport
	var voters []Voter
	for i := 1; i <= 3; i++ {
		s, c := peerTLS(t, ca, "node")
		tr, err := Listen("127.0.0.1:0", s, c, logger)
		if err != nil {
			t.Fatal(err)
		}
		trs = append(trs, tr)
		voters = append(voters, Voter{ID: int32(i), Addr: tr.Addr().String()})
	}
	var nodes []*Node
	for i, tr := range trs {
		n, err := Open(Config{
			NodeID: int32(i + 1), Addr: voters[i].Addr, Voters: voters, Dir: t.TempDir(),
			Transport: tr.Raft(), Caller: tr, Endpoints: staticEndpoints(map[string]string{"kafka": "127.0.0.1:9092"}),
			HeartbeatInterval: 50 * time.Millisecond, SessionTimeout: time.Second, Raft: fastRaft, Logger: logger,
		})
		if err != nil {
			t.Fatal(err)
		}
		tr.Handle(n.Serve)
		nodes = append(nodes, n)
	}
	t.Cleanup(func() {
		for i, n := range nodes {
			n.Close()
			trs[i].Close()
		}
	})
	waitFor(t, "three unfenced brokers", func() bool {
		for _, n := range nodes {
			if len(n.Image().BrokerIDs(true)) != 3 {
				return false
			}
		}
		return true
	})
	// A proposal from whichever node is not the controller travels the
	// request path over TLS.
	for _, n := range nodes {
		if n.IsController() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := n.Propose(ctx, Record{Op: OpCreateTopic, Topic: "over-tls", Count: 3})
		cancel()
		if err != nil || res.Err != nil {
			t.Fatalf("propose through node %d: %v %v", n.ID(), err, res.Err)
		}
		break
	}

	// A stranger without a client certificate gets nothing.
	_, client := peerTLS(t, ca, "x")
	client.Certificates = nil
	stranger := &Transport{clientTLS: client}
	if _, err := stranger.Call(context.Background(), voters[0].Addr, Request{Heartbeat: &Heartbeat{Broker: 9}}); err == nil {
		t.Fatal("a request without a client certificate was answered")
	}
	// Nor does a certificate from another CA.
	other, _ := certs.NewCA("other", 0)
	_, client2 := peerTLS(t, other, "y")
	client2.RootCAs = client.RootCAs
	stranger2 := &Transport{clientTLS: client2}
	if _, err := stranger2.Call(context.Background(), voters[0].Addr, Request{Heartbeat: &Heartbeat{Broker: 9}}); err == nil {
		t.Fatal("a request with a certificate of another CA was answered")
	}
	for _, n := range nodes {
		if b := n.Image().Brokers[9]; b != nil {
			t.Fatal("a stranger registered a broker")
		}
	}
}

func TestClusterListenerNeedsTLSBeyondLoopback(t *testing.T) {
	_, err := Listen("0.0.0.0:0", nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Fatalf("plaintext on every interface: %v", err)
	}
	tr, err := Listen("127.0.0.1:0", nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	// An oversized request frame is refused without being read.
	c, err := net.Dial("tcp", tr.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{rpcMagic, 0x7f, 0xff, 0xff, 0xff})
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf [1]byte
	if _, err := c.Read(buf[:]); !errors.Is(err, io.EOF) {
		t.Fatalf("oversized frame: read %v, want the connection closed", err)
	}
}
