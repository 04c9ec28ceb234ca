package edge

import (
	"fmt"
	"net"
)

// bindListeners binds every listener the options ask for before the node
// opens any state (the log, the registry, the cluster): a busy port is
// the first thing reported, not a failure after the log has been opened
// and recovered, and a node that cannot serve creates nothing. listen
// takes them from here; stop closes any not taken.
func (n *Node) bindListeners() error {
	o := n.opts
	for _, l := range []struct{ name, addr, what string }{
		{"kafka", o.KafkaAddr, "kafka listener"},
		{"mqtt", o.MQTTAddr, "mqtt listener"},
		{"mqtt-tls", o.MQTTTLSAddr, "mqtt TLS listener"},
		{"mqtt-ws", o.MQTTWSAddr, "mqtt websocket listener"},
		{"mirror", o.MirrorAddr, "mirror listener"},
		{"admin", o.AdminAddr, "admin listener"},
	} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return fmt.Errorf("%s: %w", l.what, err)
		}
		if n.bound == nil {
			n.bound = map[string]net.Listener{}
		}
		n.bound[l.name] = ln
	}
	return nil
}

// takeBound returns the listener bindListeners bound for name, if any.
func (n *Node) takeBound(name string) (net.Listener, bool) {
	ln, ok := n.bound[name]
	if ok {
		delete(n.bound, name)
	}
	return ln, ok
}

// closeBound closes the listeners bound but never taken (a start that
// failed part-way).
func (n *Node) closeBound() {
	for name, ln := range n.bound {
		ln.Close()
		delete(n.bound, name)
	}
}
