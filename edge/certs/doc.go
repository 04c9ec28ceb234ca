// Package certs is ferry's TLS certificates: the certificate, key and client
// CA a listener serves, loaded from PEM files and reloadable while the
// listener runs (Server), and a small certificate authority that makes a CA
// and node, device and edge certificates for trying TLS out (CA, `ferry
// certs`).
//
// A Server hands its listener a tls.Config whose GetConfigForClient reads
// the configuration of the moment from an atomic pointer, so Reload changes
// what new connections get without touching open ones; a Reload that fails
// keeps the previous files' configuration.
//
// It lives under edge because only the node and the binary use it. It must
// never import another ferry package, open a listener or read a file other
// than the ones it is given: the node decides which listener serves what.
package certs
