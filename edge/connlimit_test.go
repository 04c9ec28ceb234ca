package edge

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestListenerCaps: with --max-connections 3 and --max-connections-per-ip
// 2, a third connection from 127.0.0.1 is closed on accept while one from
// 127.0.0.2 is served; a fourth in all is closed too; once one closes, a
// new one is served again. Every refusal is counted by reason.
func TestListenerCaps(t *testing.T) {
	n, err := Start(Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
		ConnLimits: ConnLimits{Max: 3, PerIP: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	addr := n.AdminAddr()
	dial := func(from string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if errors.Is(err, syscall.ECONNRESET) {
			return nil // refused so fast that the handshake saw the reset
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// served asks for /healthz on c: true if it is answered, false if the
	// node closed the connection.
	served := func(c net.Conn) bool {
		t.Helper()
		if c == nil {
			return false
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return false
		}
		buf := make([]byte, 12)
		_, err := io.ReadFull(c, buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("neither answered nor closed within 5 s")
			}
			return false
		}
		return string(buf) == "HTTP/1.1 200"
	}
	a1, a2 := dial("127.0.0.1"), dial("127.0.0.1")
	if !served(a1) || !served(a2) {
		t.Fatal("the first two connections from 127.0.0.1 were not served")
	}
	if served(dial("127.0.0.1")) {
		t.Fatal("a third connection from 127.0.0.1 was served past --max-connections-per-ip 2")
	}
	b1 := dial("127.0.0.2")
	if !served(b1) {
		t.Fatal("a connection from 127.0.0.2 was refused: the per-address cap is per address")
	}
	if served(dial("127.0.0.3")) {
		t.Fatal("a fourth connection was served past --max-connections 3")
	}
	a1.Close()
	var again bool
	for deadline := time.Now().Add(5 * time.Second); !again && time.Now().Before(deadline); {
		again = served(dial("127.0.0.1"))
	}
	if !again {
		t.Fatal("no connection served after one of the three closed")
	}
	m := n.metrics.conns
	if got := testutil.ToFloat64(m.refused.WithLabelValues("admin", "per_ip")); got != 1 {
		t.Errorf("refused{admin,per_ip} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.refused.WithLabelValues("admin", "max")); got < 1 {
		t.Errorf("refused{admin,max} = %v, want at least 1", got)
	}
	if got := testutil.ToFloat64(m.open.WithLabelValues("admin")); got != 3 {
		t.Errorf("open connections %v, want 3", got)
	}
}

// TestAdminSlowClient: an admin client that sends half its headers and
// then nothing is closed once AdminReadTimeout passes, so it holds no
// connection (and no place under the caps) for long.
func TestAdminSlowClient(t *testing.T) {
	n, err := Start(Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
		AdminReadTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	c, err := net.Dial("tcp", n.AdminAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /api/status HTTP/1.1\r\nHost: x\r\nX-Slow")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	began := time.Now()
	_, err = io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the node kept a client with unfinished headers for 10 s")
	}
	t.Logf("closed after %v", time.Since(began).Round(time.Millisecond))
}

// emfileOnce fails its first Accept as a process out of file descriptors
// does.
type emfileOnce struct {
	net.Listener
	failed bool
}

func (l *emfileOnce) Accept() (net.Conn, error) {
	if !l.failed {
		l.failed = true
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestAcceptSurvivesEMFILE: an accept that fails for want of file
// descriptors does not stop the listener (the front ends stop serving on
// any error Accept returns): it is counted and retried, and the next
// connection is served; a closed listener's error is returned.
func TestAcceptSurvivesEMFILE(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := newConnMetrics()
	l := limit(&emfileOnce{Listener: ln}, "kafka", ConnLimits{}, m, slog.New(slog.DiscardHandler))
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			defer c.Close()
			io.ReadAll(c)
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept after an EMFILE: %v", err)
	}
	c.Close()
	if got := testutil.ToFloat64(m.acceptErrs.WithLabelValues("kafka")); got != 1 {
		t.Errorf("accept errors counted: %v, want 1", got)
	}
	l.Close()
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept on a closed listener: %v, want net.ErrClosed", err)
	}
}

// TestMQTTWebSocketListenerCaps: the MQTT over WebSocket listener is the
// node's own, under the same caps as the others (it once was mochi's,
// which opened its own socket and had none): with --max-connections 2 and
// --max-connections-per-ip 1, a second WebSocket from 127.0.0.1 and a
// third in all are closed before their upgrade, counted under
// listener="mqtt-ws", and a closed WebSocket gives its place back.
func TestMQTTWebSocketListenerCaps(t *testing.T) {
	n, err := Start(Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", MQTTWSAddr: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler), ConnLimits: ConnLimits{Max: 2, PerIP: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	dial := func(from string) (*websocket.Conn, error) {
		t.Helper()
		nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		d := websocket.Dialer{NetDialContext: nd.DialContext, Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}
		ws, _, err := d.Dial("ws://"+n.MQTTWSAddr()+"/mqtt", nil)
		if err == nil {
			t.Cleanup(func() { ws.Close() })
		}
		return ws, err
	}
	a1, err := dial("127.0.0.1")
	if err != nil {
		t.Fatalf("first WebSocket refused: %v", err)
	}
	if _, err := dial("127.0.0.1"); err == nil {
		t.Fatal("a second WebSocket from 127.0.0.1 was upgraded past --max-connections-per-ip 1")
	}
	if _, err := dial("127.0.0.2"); err != nil {
		t.Fatalf("a WebSocket from 127.0.0.2 was refused: %v", err)
	}
	if _, err := dial("127.0.0.3"); err == nil {
		t.Fatal("a third WebSocket was upgraded past --max-connections 2")
	}
	m := n.metrics.conns
	if got := testutil.ToFloat64(m.refused.WithLabelValues("mqtt-ws", "per_ip")); got != 1 {
		t.Errorf("refused{mqtt-ws,per_ip} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.refused.WithLabelValues("mqtt-ws", "max")); got != 1 {
		t.Errorf("refused{mqtt-ws,max} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.open.WithLabelValues("mqtt-ws")); got != 2 {
		t.Errorf("open{mqtt-ws} = %v, want 2", got)
	}
	a1.Close()
	var again error = errors.New("not tried")
	for deadline := time.Now().Add(5 * time.Second); again != nil && time.Now().Before(deadline); {
		_, again = dial("127.0.0.1")
	}
	if again != nil {
		t.Fatalf("no WebSocket upgraded after one of the two closed: %v", again)
	}
	if got := testutil.ToFloat64(m.accepted.WithLabelValues("mqtt-ws")); got != 3 {
		t.Errorf("accepted{mqtt-ws} = %v, want 3", got)
	}
}

// A connection accepted under the caps still offers its socket
// (syscall.Conn), which the MQTT front end's reader waits on so that an
// idle connection holds no read buffer; one that is no socket says so.
func TestLimitConnOffersItsSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := limit(ln, "test", ConnLimits{}, newConnMetrics(), slog.New(slog.DiscardHandler))
	defer l.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	s, ok := sc.(syscall.Conn)
	if !ok {
		t.Fatalf("%T offers no SyscallConn", sc)
	}
	raw, err := s.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	var got [1]byte
	var n int
	if err := raw.Read(func(fd uintptr) bool {
		n, err = syscall.Read(int(fd), got[:])
		return err != syscall.EAGAIN
	}); err != nil || n != 1 || got[0] != 'x' {
		t.Fatalf("read through the socket: %d %q %v", n, got[:max(n, 0)], err)
	}
	p1, _ := net.Pipe()
	defer p1.Close()
	if _, err := (&limitConn{Conn: p1}).SyscallConn(); err == nil {
		t.Fatal("a pipe offered a socket")
	}
}
