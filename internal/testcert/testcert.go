// Package testcert makes throwaway X.509 certificates for tests and the
// lab: a self-signed CA, server certificates it signs, and a self-signed
// server certificate that is its own CA. Keys are ECDSA P-256;
// certificates are valid from an hour ago for a day.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"time"
)

// Cert is a certificate and its private key.
type Cert struct {
	DER  []byte
	Leaf *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewCA returns a self-signed certificate authority named name. With
// hosts (IP literals or DNS names) it is also a server certificate for
// them, which a server can present as it is.
func NewCA(name string, hosts ...string) (*Cert, error) {
	tmpl := template(1, name, hosts)
	tmpl.KeyUsage |= x509.KeyUsageCertSign
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = true
	return create(tmpl, nil)
}

// Issue returns a server certificate named name for hosts (IP literals or
// DNS names), signed by ca.
func (ca *Cert) Issue(name string, hosts ...string) (*Cert, error) {
	return create(template(2, name, hosts), ca)
}

// SelfSigned returns a server TLS configuration with a fresh self-signed
// certificate for 127.0.0.1, ::1 and "localhost", and a pool that trusts
// it.
func SelfSigned(name string) (*tls.Config, *x509.CertPool, error) {
	c, err := NewCA(name, "127.0.0.1", "::1", "localhost")
	if err != nil {
		return nil, nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{c.TLS()}}, c.Pool(), nil
}

// TLS returns c as a tls.Certificate.
func (c *Cert) TLS() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.DER}, PrivateKey: c.Key, Leaf: c.Leaf}
}

// Pool returns a pool that trusts c.
func (c *Cert) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(c.Leaf)
	return pool
}

// CertPEM returns the certificate PEM-encoded.
func (c *Cert) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER})
}

// KeyPEM returns the private key PEM-encoded ("EC PRIVATE KEY", SEC 1).
func (c *Cert) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(c.Key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// template is a certificate named name, for server authentication of
// hosts if there are any.
func template(serial int64, name string, hosts []string) *x509.Certificate {
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	if len(hosts) > 0 {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	return tmpl
}

// create makes a key and a certificate from tmpl signed by parent, or
// self-signed if parent is nil.
func create(tmpl *x509.Certificate, parent *Cert) (*Cert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.Leaf, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Cert{DER: der, Leaf: leaf, Key: key}, nil
}
