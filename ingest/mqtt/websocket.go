package mqtt

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// MQTT over WebSocket (MQTT 5 §6): each connection is an HTTP request
// upgraded to a WebSocket, whose binary messages carry the MQTT byte
// stream (a message may hold part of a packet or several). The upgraded
// connection goes through the same listener as a TCP one (server.go,
// preconnect.go): CONNECT timeout, CONNECT size check, then mochi. The
// socket is the caller's, so the node's connection caps apply to it.
//
// As mochi's own WebSocket listener does: the subprotocol "mqtt" is
// chosen when the client offers it (not required), any path and any
// Origin are accepted (browsers on other sites are MQTT clients like any
// other; they authenticate in CONNECT), and a text message ends the
// connection.

// errTextMessage is a WebSocket message that is not binary ([MQTT-6.0.0-1]).
var errTextMessage = errors.New("websocket message is not binary")

// wsHeaderBytes caps an upgrade request's header: a browser's is well
// under it.
const wsHeaderBytes = 16 << 10

// ServeWebsocket serves MQTT over WebSocket on ln (TLS when ln is a TLS
// listener) until Close. It returns nil after Close.
func (s *Server) ServeWebsocket(ln net.Listener) error {
	return s.serve(newWSListener(ln, s.opts.ConnectTimeout, s.logger), "ws")
}

// wsListener is a net.Listener whose connections are the WebSockets
// upgraded by an HTTP server on the socket it wraps.
type wsListener struct {
	ln        net.Listener
	srv       *http.Server
	upgrader  websocket.Upgrader
	conns     chan net.Conn
	done      chan struct{} // closed by Close
	closeOnce sync.Once
	served    chan struct{} // closed when the HTTP server has stopped
	serveErr  error         // why it stopped, read after served
}

// newWSListener starts an HTTP server on ln. headerTimeout bounds the
// upgrade request (its header, and writing the answer); after the
// upgrade the connection has no deadline until the listener sets the
// CONNECT one, then mochi its keepalive's.
func newWSListener(ln net.Listener, headerTimeout time.Duration, logger *slog.Logger) *wsListener {
	w := &wsListener{ln: ln, conns: make(chan net.Conn), done: make(chan struct{}), served: make(chan struct{})}
	w.upgrader = websocket.Upgrader{
		HandshakeTimeout: headerTimeout,
		Subprotocols:     []string{"mqtt"},
		CheckOrigin:      func(*http.Request) bool { return true },
	}
	w.srv = &http.Server{
		Handler:           http.HandlerFunc(w.upgrade),
		ReadHeaderTimeout: headerTimeout,
		MaxHeaderBytes:    wsHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	// A request that is not an upgrade is answered (400) and its
	// connection closed: no idle HTTP connection waits for a next one.
	w.srv.SetKeepAlivesEnabled(false)
	go func() {
		w.serveErr = w.srv.Serve(ln)
		close(w.served)
	}()
	return w
}

// upgrade turns a request into a WebSocket connection and hands it to
// Accept. A failed upgrade has been answered by the upgrader.
func (w *wsListener) upgrade(rw http.ResponseWriter, r *http.Request) {
	ws, err := w.upgrader.Upgrade(rw, r, nil)
	if err != nil {
		return
	}
	c := &wsConn{Conn: ws.NetConn(), ws: ws}
	select {
	case w.conns <- c:
	case <-w.done:
		c.Close()
	}
}

func (w *wsListener) Accept() (net.Conn, error) {
	select {
	case c := <-w.conns:
		return c, nil
	case <-w.done:
		return nil, net.ErrClosed
	case <-w.served:
		select {
		case <-w.done:
			return nil, net.ErrClosed
		default:
			return nil, w.serveErr
		}
	}
}

// Close stops the HTTP server and its socket; connections already
// upgraded are the listener's to close.
func (w *wsListener) Close() error {
	w.closeOnce.Do(func() { close(w.done) })
	return w.srv.Close()
}

func (w *wsListener) Addr() net.Addr { return w.ln.Addr() }

// wsConn is a WebSocket connection as a byte stream. Addresses come from
// the upgraded connection. gorilla keeps the write deadline in a field it
// reads on every frame, unsynchronised, and mochi sets deadlines from its
// read goroutine while others write, so the deadline is kept here and
// given to gorilla by the writer.
type wsConn struct {
	net.Conn
	ws  *websocket.Conn
	r   io.Reader                 // the message being read; nil between messages (the reading goroutine only)
	wmu sync.Mutex                // one writer at a time, as gorilla requires
	wdl atomic.Pointer[time.Time] // the write deadline; nil: none
}

// Read reads what has come of the current message, moving on to the next
// one at its end; it never waits for more than one read of the network.
func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, errTextMessage
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n == 0 {
				continue // an empty message, or the end of one already read
			}
			err = nil
		}
		return n, err
	}
}

// Write sends p as one binary message.
func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var dl time.Time
	if t := c.wdl.Load(); t != nil {
		dl = *t
	}
	c.ws.SetWriteDeadline(dl)
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close closes the connection without a close frame, as a TCP
// connection's end is what MQTT knows.
func (c *wsConn) Close() error { return c.ws.Close() }

func (c *wsConn) SetDeadline(t time.Time) error {
	c.SetWriteDeadline(t)
	return c.ws.SetReadDeadline(t)
}

func (c *wsConn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }

// SetWriteDeadline applies to the next writes and, on the connection, to
// one in progress.
func (c *wsConn) SetWriteDeadline(t time.Time) error {
	c.wdl.Store(&t)
	return c.Conn.SetWriteDeadline(t)
}
