// Package edge is the broker node: it assembles the storage engine (log)
// with the protocol front ends, the device registry, the mirror and the
// admin HTTP listener for a mode (edge or full), starts them in order and
// stops them in reverse order. The admin listener's routes and views are
// package edge/adminapi's, which reaches the node only through
// adminapi.Backend (admin.go).
//
// It owns every goroutine and listener it starts. It must never implement
// a protocol or touch segment files itself: those live in ingest/*, mirror
// and log.
//
// Nothing that can change state listens beyond loopback without
// authentication: Start refuses an admin listener there without a token or
// mutual TLS (unless AdminInsecureOpen, never with device or Kafka
// authentication on), and every listener open to the network without
// authentication is warned about once, naming the flag that closes it
// (exposure.go).
package edge
