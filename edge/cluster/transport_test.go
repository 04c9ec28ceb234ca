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

// TestReplicaStreamOverTLS: a replica stream between two cluster
// listeners over mutual TLS reaches the handler with the kind byte read,
// beside the request path on the same port; a peer without a cluster
// certificate gets no stream; Close ends a stream being served.
func TestReplicaStreamOverTLS(t *testing.T) {
	ca, err := certs.NewCA("cluster test CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	listen := func(name string) *Transport {
		s, c := peerTLS(t, ca, name)
		tr, err := Listen("127.0.0.1:0", s, c, logger)
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	leader, follower := listen("leader"), listen("follower")
	defer follower.Close()
	served := make(chan string, 4)
	leader.HandleReplica(func(c net.Conn) {
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil {
			served <- "read: " + err.Error()
			return
		}
		served <- string(buf)
		c.Write([]byte("batch"))
		io.Copy(io.Discard, c) // until the peer or Close ends it
		served <- "ended"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := follower.DialReplica(ctx, leader.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("fetch")); err != nil {
		t.Fatal(err)
	}
	if got := <-served; got != "fetch" {
		t.Fatalf("handler read %q", got)
	}
	reply := make([]byte, 5)
	if _, err := io.ReadFull(c, reply); err != nil || string(reply) != "batch" {
		t.Fatalf("reply %q %v", reply, err)
	}
	// The request path still answers on the same port.
	if resp, err := follower.Call(ctx, leader.Addr().String(), Request{Heartbeat: &Heartbeat{Broker: 1}}); err != nil || resp.Code != codeNotController {
		t.Fatalf("request beside a replica stream: %+v %v", resp, err)
	}
	// No cluster certificate, no stream.
	_, bare := peerTLS(t, ca, "x")
	bare.Certificates = nil
	stranger := &Transport{clientTLS: bare}
	if sc, err := stranger.DialReplica(ctx, leader.Addr().String()); err == nil {
		sc.Write([]byte("fetch"))
		sc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, _ := sc.Read(reply); n > 0 {
			t.Fatal("a peer without a certificate was served a replica stream")
		}
		sc.Close()
	}
	// Close ends the stream being served, and returns.
	if err := leader.Close(); err != nil {
		t.Fatal(err)
	}
	if got := <-served; got != "ended" {
		t.Fatalf("after Close: %q", got)
	}
	select {
	case got := <-served:
		t.Fatalf("the stranger reached the handler: %q", got)
	default:
	}
}

// Raft tells its peers the address Advertise set (the voter address peers
// reach, a proxy say), not the one the listener bound: followers forward
// to the leader at the address raft gives them, so a bound address would
// go around the proxy.
func TestTransportAdvertisesTheVoterAddress(t *testing.T) {
	tr, err := Listen("127.0.0.1:0", nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if got, bound := string(tr.Raft().LocalAddr()), tr.Addr().String(); got != bound {
		t.Fatalf("without Advertise raft says %s, the listener is %s", got, bound)
	}
	tr.Advertise("127.0.0.1:1") // a proxy's address
	if got := string(tr.Raft().LocalAddr()); got != "127.0.0.1:1" {
		t.Fatalf("raft advertises %s, want the voter address 127.0.0.1:1", got)
	}
}
