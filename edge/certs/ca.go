package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// CA is a certificate authority: its certificate and ECDSA P-256 key.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// Kind is what a certificate is for.
type Kind int

const (
	// ServerCert is a listener's certificate: its Hosts are its DNS names
	// and IP addresses.
	ServerCert Kind = iota
	// ClientCert authenticates a device or an edge by its CommonName.
	ClientCert
	// PeerCert is a cluster node's: it serves the cluster listener for its
	// Hosts and authenticates the node when it dials its peers.
	PeerCert
)

// Request describes a certificate for CA.Issue.
type Request struct {
	CommonName string
	Hosts      []string // DNS names and IP addresses (servers)
	Kind       Kind
	// NotBefore and NotAfter bound its validity; zero values mean from an
	// hour ago (clock skew) for DefaultValidity.
	NotBefore, NotAfter time.Time
}

// DefaultValidity is how long issued certificates last: about 2 years
// (825 days, the most clients accept for a server certificate).
const DefaultValidity = 825 * 24 * time.Hour

// CAValidity is how long a CA made by NewCA lasts: 10 years.
const CAValidity = 10 * 365 * 24 * time.Hour

// NewCA makes a self-signed CA named cn, valid for validity (0:
// CAValidity).
func NewCA(cn string, validity time.Duration) (*CA, error) {
	if validity == 0 {
		validity = CAValidity
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"ferry"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          keyID(&key.PublicKey),
	}
	if tmpl.SerialNumber, err = serial(); err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Issue makes a key and a certificate signed by the CA, both PEM.
func (ca *CA) Issue(req Request) (certPEM, keyPEM []byte, err error) {
	if req.CommonName == "" {
		return nil, nil, errors.New("certs: a certificate needs a common name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:        pkix.Name{CommonName: req.CommonName, Organization: []string{"ferry"}},
		NotBefore:      req.NotBefore,
		NotAfter:       req.NotAfter,
		KeyUsage:       x509.KeyUsageDigitalSignature,
		SubjectKeyId:   keyID(&key.PublicKey),
		AuthorityKeyId: ca.Cert.SubjectKeyId,
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = now.Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = now.Add(DefaultValidity)
	}
	switch req.Kind {
	case ServerCert, PeerCert:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		if req.Kind == PeerCert {
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
		}
		for _, h := range req.Hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else if h != "" {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	case ClientCert:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	if tmpl.SerialNumber, err = serial(); err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", keyDER), nil
}

// CertPEM is the CA's certificate, PEM: the bundle peers verify with.
func (ca *CA) CertPEM() []byte { return pemBlock("CERTIFICATE", ca.Cert.Raw) }

// KeyPEM is the CA's private key, PEM.
func (ca *CA) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, err
	}
	return pemBlock("PRIVATE KEY", der), nil
}

// CA files in a directory, as `ferry certs init` writes them.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
)

// Save writes the CA's certificate and key into dir (made if missing),
// refusing to replace a CA there.
func (ca *CA) Save(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); err == nil {
		return fmt.Errorf("%s: a CA is there already", filepath.Join(dir, CAKeyFile))
	}
	key, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	return WritePair(dir, "ca", ca.CertPEM(), key)
}

// LoadCA reads the CA Save wrote into dir.
func LoadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, fmt.Errorf("%s: no PEM CA certificate and key", dir)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, err
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !cert.IsCA {
		return nil, fmt.Errorf("%s: not a ferry CA (ECDSA key, CA certificate)", dir)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// WritePair writes NAME.pem (0644) and NAME-key.pem (0600) into dir, made
// (0700) if missing.
func WritePair(dir, name string, certPEM, keyPEM []byte) error {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return fmt.Errorf("certs: %q cannot name a file", name)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, name+"-key.pem"), keyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, name+".pem"), certPEM, 0o644)
}

// writeFile replaces path with data through a temporary file and a rename,
// so a listener reloading meanwhile reads the old file or the new one.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func keyID(pub *ecdsa.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	sum := sha1.Sum(der)
	return sum[:]
}
