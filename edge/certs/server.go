package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync/atomic"
)

// ServerFiles name a listener's PEM files.
type ServerFiles struct {
	// Name says which listener in errors and logs ("kafka", "admin", ...).
	Name string
	// Cert is the certificate chain served, Key its private key.
	Cert, Key string
	// ClientCA, when set, is the CA bundle client certificates are
	// verified with; ClientAuth says whether they are required (the zero
	// value means tls.RequireAndVerifyClientCert when ClientCA is set).
	ClientCA   string
	ClientAuth tls.ClientAuthType
}

// Server is a listener's TLS configuration, read from its files by
// NewServer and again by each Reload.
type Server struct {
	files ServerFiles
	cur   atomic.Pointer[tls.Config]
}

// NewServer loads files. Without Cert and Key it returns nil and no error
// (the listener is plain TCP), unless ClientCA is set, which needs them.
func NewServer(files ServerFiles) (*Server, error) {
	if files.Cert == "" && files.Key == "" {
		if files.ClientCA != "" {
			return nil, fmt.Errorf("%s TLS: a client CA needs the listener's certificate and key too", files.Name)
		}
		return nil, nil
	}
	if files.ClientCA != "" && files.ClientAuth == tls.NoClientCert {
		files.ClientAuth = tls.RequireAndVerifyClientCert
	}
	s := &Server{files: files}
	conf, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(conf)
	return s, nil
}

// Name is the listener's name from ServerFiles.
func (s *Server) Name() string { return s.files.Name }

// MutualTLS reports whether the listener asks for client certificates.
func (s *Server) MutualTLS() bool { return s.files.ClientCA != "" }

// Config is the tls.Config to serve with: every handshake takes the
// configuration loaded last.
func (s *Server) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.cur.Load(), nil
		},
	}
}

// Reload reads the files again; new connections get what they hold. On an
// error the configuration loaded before stays in use.
func (s *Server) Reload() error {
	conf, err := s.load()
	if err != nil {
		return err
	}
	s.cur.Store(conf)
	return nil
}

// Leaf is the certificate served now.
func (s *Server) Leaf() *x509.Certificate { return s.cur.Load().Certificates[0].Leaf }

func (s *Server) load() (*tls.Config, error) {
	f := s.files
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("%s TLS: loading certificate: %w", f.Name, err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if f.ClientCA != "" {
		if conf.ClientCAs, err = LoadPool(f.ClientCA); err != nil {
			return nil, fmt.Errorf("%s TLS: client CA: %w", f.Name, err)
		}
		conf.ClientAuth = f.ClientAuth
		// A resumed session skips the client certificate's verification:
		// after a reload of the CA every client shows its certificate again.
		conf.SessionTicketsDisabled = true
	}
	return conf, nil
}

// LoadPool reads a PEM CA bundle.
func LoadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificates", file)
	}
	return pool, nil
}
