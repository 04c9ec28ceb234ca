package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// rpcMagic opens a connection that carries a Request to the controller
// instead of raft: raft's own connections open with its RPC type (0–4).
const rpcMagic byte = 'F'

// replicaMagic opens a connection that is a replica stream (the data
// path's follower fetches), handed whole to the HandleReplica handler.
const replicaMagic byte = 'R'

// maxRPCBytes bounds a Request or Response frame.
const maxRPCBytes = 1 << 20

// rpcTimeout bounds one request's exchange once its connection is open.
const rpcTimeout = 15 * time.Second

// Transport is the cluster listener: raft's connections, the nodes'
// requests to the controller and the replica streams share one port, told
// apart by their first byte (raft's RPC type 0–4, 'F', 'R'). With TLS
// configs both ways every connection is mutual TLS: what authenticates a
// peer, on every kind, is possession of a certificate signed by the
// cluster's CA (ferry certs); the broker id a peer then claims is not
// proven by TLS unless the certificates name it.
type Transport struct {
	ln        net.Listener
	serverTLS *tls.Config // nil: plaintext (loopback only)
	clientTLS *tls.Config
	log       *slog.Logger

	raftConns chan net.Conn
	handler   func(context.Context, Request) Response
	replica   func(net.Conn)
	streams   map[net.Conn]struct{} // replica streams being served

	rmu      sync.Mutex
	raftIn   map[*raftIn]bool // inbound raft connections: busy or not (QuiesceRaft)
	raftIdle *sync.Cond       // on rmu: a connection went idle or away

	mu     sync.Mutex
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup // the accept loop and each connection being sorted or served

	raft *raft.NetworkTransport
	// advertised is the address raft tells its peers (Advertise); nil:
	// the listener's.
	advertised atomic.Pointer[advertisedAddr]
}

// advertisedAddr is a host:port the cluster's peers reach this node at.
type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }

// Advertise sets the address raft gives its peers for this node (the
// leader's address every follower forwards to): its voter address, where
// peers reach it, when that is not the address it listens on (a proxy,
// NAT, a wildcard bind). Call it before the raft node opens.
func (t *Transport) Advertise(addr string) {
	a := advertisedAddr(addr)
	t.advertised.Store(&a)
}

// Listen opens the cluster listener on addr. Without TLS it refuses any
// address but loopback: raft and the controller change the cluster's
// state, and nothing that does listens beyond loopback unauthenticated.
func Listen(addr string, serverTLS, clientTLS *tls.Config, logger *slog.Logger) (*Transport, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if (serverTLS == nil) != (clientTLS == nil) {
		return nil, fmt.Errorf("cluster: TLS must be set both ways or not at all")
	}
	if serverTLS == nil && !isLoopback(addr) {
		return nil, fmt.Errorf("cluster: %s is not a loopback address: the cluster listener needs TLS (--cluster-tls-cert, --cluster-tls-key, --cluster-tls-ca)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	t := &Transport{ln: ln, serverTLS: serverTLS, clientTLS: clientTLS, log: logger, raftConns: make(chan net.Conn), done: make(chan struct{})}
	t.raft = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  streamLayer{t},
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  hclog.New(&hclog.LoggerOptions{Name: "raft-net", Output: slogWriter{logger}, Level: hclog.Warn}),
	})
	t.wg.Add(1)
	go t.acceptLoop()
	return t, nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Raft is the raft transport over this listener.
func (t *Transport) Raft() raft.Transport { return t.raft }

// Addr is the listener's address.
func (t *Transport) Addr() net.Addr { return t.ln.Addr() }

// Handle sets who answers requests (the node's Serve); until then they are
// answered not_controller.
func (t *Transport) Handle(h func(context.Context, Request) Response) {
	t.mu.Lock()
	t.handler = h
	t.mu.Unlock()
}

// HandleReplica sets who serves replica streams (the data path's leader
// side): h gets each connection, mutual TLS done and the kind byte read,
// and owns it until it returns (the transport closes it then, and closes
// it under h at Close). Until set, replica streams are closed at once.
func (t *Transport) HandleReplica(h func(net.Conn)) {
	t.mu.Lock()
	t.replica = h
	t.mu.Unlock()
}

// DialReplica opens a replica stream to the cluster listener at addr,
// with the same mutual TLS as raft. The caller owns the connection.
func (t *Transport) DialReplica(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	if t.clientTLS != nil {
		tc := tls.Client(c, clientConfigFor(t.clientTLS, addr))
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		c = tc
	}
	if _, err := c.Write([]byte{replicaMagic}); err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// serveReplica hands a replica stream to the handler, and keeps it where
// Close finds it.
func (t *Transport) serveReplica(c net.Conn) {
	defer c.Close()
	t.mu.Lock()
	h := t.replica
	if t.closed || h == nil {
		t.mu.Unlock()
		return
	}
	if t.streams == nil {
		t.streams = map[net.Conn]struct{}{}
	}
	t.streams[c] = struct{}{}
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.streams, c)
		t.mu.Unlock()
	}()
	h(c)
}

// Close stops the listener, raft's transport and every connection being
// served.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.done)
	for c := range t.streams {
		c.Close()
	}
	t.mu.Unlock()
	err := t.raft.Close() // closes the stream layer, hence the listener
	t.ln.Close()
	t.wg.Wait()
	return err
}

func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := t.ln.Accept()
		if err != nil {
			select {
			case <-t.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: wait and retry, as net/http does.
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		t.wg.Add(1)
		go t.sort(c)
	}
}

// sort finishes the TLS handshake, reads the first byte and hands the
// connection to raft or to the replica handler, or serves its request.
func (t *Transport) sort(c net.Conn) {
	defer t.wg.Done()
	if t.serverTLS != nil {
		c = tls.Server(c, t.serverTLS)
	}
	c.SetReadDeadline(time.Now().Add(rpcTimeout))
	br := bufio.NewReader(c)
	first, err := br.Peek(1)
	if err != nil {
		c.Close()
		return
	}
	if first[0] == replicaMagic {
		br.ReadByte()
		c.SetReadDeadline(time.Time{})
		t.serveReplica(&peekedConn{Conn: c, r: br})
		return
	}
	if first[0] != rpcMagic {
		c.SetReadDeadline(time.Time{})
		select {
		case t.raftConns <- t.trackRaft(&peekedConn{Conn: c, r: br}):
		case <-t.done:
			c.Close()
		}
		return
	}
	br.ReadByte()
	defer c.Close()
	c.SetDeadline(time.Now().Add(rpcTimeout))
	var req Request
	if err := readFrame(br, &req); err != nil {
		t.log.Debug("cluster: bad request", "remote", c.RemoteAddr(), "err", err)
		return
	}
	t.mu.Lock()
	h := t.handler
	t.mu.Unlock()
	resp := responseFor(0, 0, ErrNoController)
	if h != nil {
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		resp = h(ctx, req)
		cancel()
	}
	writeFrame(c, resp)
}

// Call sends one request to the node at addr and reads its answer: the
// cluster's Caller over the network.
func (t *Transport) Call(ctx context.Context, addr string, req Request) (Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		// Nothing was sent: the controller this node knows is down or
		// out of reach (an election is coming), so the caller may retry
		// as it does while no controller is known.
		return Response{}, fmt.Errorf("%w: controller at %s unreachable: %v", ErrNoController, addr, err)
	}
	defer c.Close()
	if t.clientTLS != nil {
		c = tls.Client(c, clientConfigFor(t.clientTLS, addr))
	}
	deadline := time.Now().Add(rpcTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.SetDeadline(deadline)
	bw := bufio.NewWriter(c)
	bw.WriteByte(rpcMagic)
	if err := writeFrame(bw, req); err != nil {
		return Response{}, err
	}
	if err := bw.Flush(); err != nil {
		return Response{}, err
	}
	var resp Response
	if err := readFrame(bufio.NewReader(c), &resp); err != nil {
		return Response{}, err
	}
	return resp, nil
}

// clientConfigFor names the server for certificate verification.
func clientConfigFor(base *tls.Config, addr string) *tls.Config {
	c := base.Clone()
	if c.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			c.ServerName = host
		}
	}
	return c
}

func writeFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > maxRPCBytes {
		return fmt.Errorf("cluster: frame of %d bytes", len(b))
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func readFrame(r io.Reader, v any) error {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxRPCBytes {
		return fmt.Errorf("cluster: frame of %d bytes (at most %d)", size, maxRPCBytes)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// peekedConn is a connection whose first byte was read ahead into r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// raftIn is an inbound raft connection, tracked so that QuiesceRaft can
// close it and wait for the request it carries: raft's transport answers
// heartbeats on the connection's goroutine, outside raft's main loop, and
// writes the term to the store there, even after raft has shut down.
// busy runs from a read that brought bytes to the next write (the answer)
// or the close.
type raftIn struct {
	*peekedConn
	t *Transport
}

func (t *Transport) trackRaft(c *peekedConn) net.Conn {
	rc := &raftIn{peekedConn: c, t: t}
	t.rmu.Lock()
	if t.raftIn == nil {
		t.raftIn = map[*raftIn]bool{}
		t.raftIdle = sync.NewCond(&t.rmu)
	}
	t.raftIn[rc] = false
	t.rmu.Unlock()
	return rc
}

func (c *raftIn) setBusy(busy bool) {
	c.t.rmu.Lock()
	if _, ok := c.t.raftIn[c]; ok {
		c.t.raftIn[c] = busy
	}
	if !busy {
		c.t.raftIdle.Broadcast()
	}
	c.t.rmu.Unlock()
}

func (c *raftIn) Read(p []byte) (int, error) {
	n, err := c.peekedConn.Read(p)
	if n > 0 {
		c.setBusy(true)
	}
	return n, err
}

func (c *raftIn) Write(p []byte) (int, error) {
	c.setBusy(false)
	return c.peekedConn.Write(p)
}

func (c *raftIn) Close() error {
	c.t.rmu.Lock()
	delete(c.t.raftIn, c)
	c.t.raftIdle.Broadcast()
	c.t.rmu.Unlock()
	return c.peekedConn.Close()
}

// QuiesceRaft closes every inbound raft connection and waits, at most
// timeout, until none is still handling a request: after it, raft's
// transport touches the raft store no more (call it after raft's
// Shutdown, before the store closes).
func (t *Transport) QuiesceRaft(timeout time.Duration) {
	t.rmu.Lock()
	if t.raftIn == nil {
		t.rmu.Unlock()
		return
	}
	for c := range t.raftIn {
		c.peekedConn.Close() // its handler returns at its next read or write
	}
	timer := time.AfterFunc(timeout, func() {
		t.rmu.Lock()
		t.raftIn = map[*raftIn]bool{} // give up waiting
		t.raftIdle.Broadcast()
		t.rmu.Unlock()
	})
	defer timer.Stop()
	for {
		busy := false
		for _, b := range t.raftIn {
			busy = busy || b
		}
		if !busy {
			break
		}
		t.raftIdle.Wait()
	}
	t.rmu.Unlock()
}

// streamLayer is raft's view of the listener: the connections sorted as
// raft's, and dials (TLS when configured).
type streamLayer struct{ t *Transport }

func (s streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.t.raftConns:
		return c, nil
	case <-s.t.done:
		return nil, net.ErrClosed
	}
}

func (s streamLayer) Close() error {
	s.t.mu.Lock()
	if !s.t.closed {
		s.t.closed = true
		close(s.t.done)
	}
	s.t.mu.Unlock()
	return s.t.ln.Close()
}

func (s streamLayer) Addr() net.Addr {
	if a := s.t.advertised.Load(); a != nil {
		return *a
	}
	return s.t.ln.Addr()
}

func (s streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.Dial("tcp", string(addr))
	if err != nil {
		return nil, err
	}
	if s.t.clientTLS == nil {
		return c, nil
	}
	tc := tls.Client(c, clientConfigFor(s.t.clientTLS, string(addr)))
	tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}
