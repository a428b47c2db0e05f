// Package stuntest starts RFC 5780 STUN servers on loopback for tests.
package stuntest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"testing"

	"github.com/natcheck/natcheck/internal/testcert"
	"github.com/natcheck/natcheck/stunserver"
)

// Default loopback addresses. On Linux all of 127.0.0.0/8 is local, so
// 127.0.0.2 is a second address without any setup.
var (
	DefaultPrimary   = netip.MustParseAddrPort("127.0.0.1:0")
	DefaultAlternate = netip.MustParseAddrPort("127.0.0.2:0")
)

// Start starts an RFC 5780 server with cfg and closes it when the test
// ends. A zero cfg.Primary means 127.0.0.1 and a zero cfg.Alternate
// 127.0.0.2, both on free ports. It fails the test if the server cannot
// start. For STUN over TCP set cfg.TCP (the server's TCPAddrs are then its
// UDP addresses); for TLS set cfg.TLSConfig, for example from TLSConfig,
// and cfg.TLSAddrs (such as 127.0.0.1:0), and read the ports from TLSAddrs.
func Start(tb testing.TB, cfg stunserver.Config) *stunserver.Server {
	tb.Helper()
	if !cfg.Alternate.IsValid() {
		cfg.Alternate = DefaultAlternate
	}
	return StartSingle(tb, cfg)
}

// StartSingle is like Start but leaves a zero cfg.Alternate alone, so that
// the server runs in single-address mode: no OTHER-ADDRESS, and 420 for a
// CHANGE-REQUEST.
func StartSingle(tb testing.TB, cfg stunserver.Config) *stunserver.Server {
	tb.Helper()
	if !cfg.Primary.IsValid() {
		cfg.Primary = DefaultPrimary
	}
	s, err := stunserver.Start(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("start STUN server: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close STUN server: %v", err)
		}
	})
	return s
}

// TLSConfig returns a server TLS configuration with a fresh self-signed
// certificate valid for 127.0.0.1, ::1 and "localhost", and a pool that
// trusts it, for Config.TLSConfig and a client's RootCAs.
func TLSConfig(tb testing.TB) (*tls.Config, *x509.CertPool) {
	tb.Helper()
	cfg, pool, err := testcert.SelfSigned("stuntest")
	if err != nil {
		tb.Fatalf("tls certificate: %v", err)
	}
	return cfg, pool
}
