package turncheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/natcheck/natcheck/natclass"
)

// tlsInfo is natclass.TLSInfo plus the handshake time.
type tlsInfo struct {
	natclass.TLSInfo
	handshake time.Duration
}

// handshake runs the TLS handshake with verification as configured, and
// describes the certificate even when verification fails.
func handshake(ctx context.Context, conn net.Conn, host string, o Options) (*tls.Conn, *tlsInfo, error) {
	cfg := o.tlsConfig(host)
	info := &tlsInfo{}
	info.ServerName = host
	var verifyErr error
	var seen []*x509.Certificate
	// Verify ourselves, so the certificate can be described on failure and
	// --insecure can report what verification would have said.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		seen = cs.PeerCertificates
		if len(seen) == 0 {
			verifyErr = errors.New("the server sent no certificate")
		} else {
			opts := x509.VerifyOptions{Roots: o.RootCAs, DNSName: host, Intermediates: x509.NewCertPool(), CurrentTime: o.now()}
			for _, ic := range seen[1:] {
				opts.Intermediates.AddCert(ic)
			}
			_, verifyErr = seen[0].Verify(opts)
		}
		if verifyErr != nil && !o.Insecure {
			return verifyErr
		}
		return nil
	}
	tc := tls.Client(conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, o.stepTimeout())
	defer cancel()
	t0 := time.Now()
	err := tc.HandshakeContext(hctx)
	info.handshake = time.Since(t0)
	if len(seen) > 0 {
		leaf := seen[0]
		info.Subject = leaf.Subject.CommonName
		info.Issuer = leaf.Issuer.CommonName
		info.DNSNames = leaf.DNSNames
		info.NotAfter = leaf.NotAfter.UTC()
	}
	if verifyErr != nil {
		info.VerifyError = verifyErr.Error()
	}
	if err != nil {
		if len(seen) == 0 {
			return nil, nil, err
		}
		return nil, info, err
	}
	info.Version = tls.VersionName(tc.ConnectionState().Version)
	info.Verified = verifyErr == nil
	return tc, info, nil
}

func days(d time.Duration) string {
	switch n := int(d.Hours() / 24); n {
	case 0:
		return "less than a day"
	case 1:
		return "1 day"
	default:
		return fmt.Sprintf("%d days", n)
	}
}
