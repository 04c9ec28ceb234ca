package edge

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
)

// Listeners open beyond loopback. Nothing that can change state listens
// past loopback without authentication: the admin listener refuses to start
// there without a token (or an explicit opt-out, logged loudly), and every
// listener that is open to the network without authentication is warned
// about once at start, naming the flag that closes it (Node.listen).

// loopbackOnly reports whether a listen address (host:port, as given to
// net.Listen) accepts connections from this machine only: a loopback IP or
// "localhost". An empty host, an unspecified address (0.0.0.0, ::) or any
// other name listens beyond loopback.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	if i := strings.IndexByte(host, '%'); i >= 0 {
		host = host[:i] // fe80::1%lo
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopback is the node's classification of a listen address (a test seam:
// Options.loopback lets a test treat 127.0.0.1 as open).
func (o *Options) isLoopback(addr string) bool {
	if o.loopback != nil {
		return o.loopback(addr)
	}
	return loopbackOnly(addr)
}

// mutualTLS reports whether the listener named, serving conf, requires a
// client certificate signed by its CA (an authentication of its own): set
// in conf, or in the certificate files it was loaded from.
func (o *Options) mutualTLS(name string, conf *tls.Config) bool {
	if conf == nil {
		return false
	}
	if conf.ClientAuth == tls.RequireAndVerifyClientCert {
		return true
	}
	for _, c := range o.TLSCerts {
		if c.Name() == name && c.MutualTLS() {
			return true
		}
	}
	return false
}

// checkAdminExposure refuses an admin listener open beyond loopback with
// neither a token nor mutual TLS: the admin API can add devices with any
// ACL, change their passwords, delete topics and set their retention.
// AdminInsecureOpen allows it, except when the node authenticates devices
// or Kafka clients, which an open admin API would defeat.
func (n *Node) checkAdminExposure() error {
	o := &n.opts
	if o.AdminToken != "" || o.mutualTLS("admin", o.AdminTLS) || o.isLoopback(o.AdminAddr) {
		return nil
	}
	if o.AuthMode == AuthRegistry || len(o.KafkaSASL) > 0 {
		return fmt.Errorf("admin listener %q is open beyond loopback with no --admin-token while clients must authenticate "+
			"(--auth registry or --kafka-sasl): anyone reaching it could add a device or change a password; "+
			"set --admin-token (or --admin-tls-client-ca), or bind --admin-addr to 127.0.0.1", o.AdminAddr)
	}
	if !o.AdminInsecureOpen {
		return fmt.Errorf("admin listener %q is open beyond loopback with no --admin-token: "+
			"set --admin-token (or --admin-tls-client-ca), bind --admin-addr to 127.0.0.1, "+
			"or pass --admin-insecure-open to serve it open anyway", o.AdminAddr)
	}
	n.logger.Error("--admin-insecure-open: the admin API is open to the network with no token: anyone who reaches it "+
		"can create and delete topics, change retention, and add or change devices", "admin_addr", o.AdminAddr)
	return nil
}

// The flags that close each listener to unauthenticated clients; "" when
// the listener already authenticates.
func (o *Options) kafkaCloseWith() string {
	if len(o.KafkaSASL) > 0 || o.mutualTLS("kafka", o.KafkaTLS) {
		return ""
	}
	return "--kafka-sasl"
}

func (o *Options) mqttCloseWith(conf *tls.Config) string {
	if o.AuthMode == AuthRegistry || o.mutualTLS("mqtt", conf) {
		return ""
	}
	return "--auth registry"
}

func (o *Options) adminCloseWith() string {
	if o.AdminToken != "" || o.mutualTLS("admin", o.AdminTLS) {
		return ""
	}
	return "--admin-token"
}
