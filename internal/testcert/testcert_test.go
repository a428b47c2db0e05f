package testcert

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
)

func TestIssueVerifies(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.Issue("server", "turn.example", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"turn.example", "192.0.2.1"} {
		if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: ca.Pool()}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: "other.example", Roots: ca.Pool()}); err == nil {
		t.Error("verifies for a name it was not issued for")
	}
	key, err := c.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(c.CertPEM(), key); err != nil {
		t.Errorf("PEM pair: %v", err)
	}
}

func TestSelfSigned(t *testing.T) {
	cfg, pool, err := SelfSigned("test")
	if err != nil {
		t.Fatal(err)
	}
	leaf := cfg.Certificates[0].Leaf
	for _, name := range []string{"127.0.0.1", "::1", "localhost"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
