package turncheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/netip"
	"time"
)

// Options configure TURN checks. The zero value is usable: system roots for
// TLS, 5 s per step, 5 packets through the relay, no end-to-end check.
type Options struct {
	// RootCAs verifies TLS certificates; nil means the system's roots.
	RootCAs *x509.CertPool
	// Insecure skips certificate verification (the check reports what
	// verification would have said, as a warning).
	Insecure bool
	// StepTimeout bounds each step: DNS, TCP connect, TLS handshake,
	// Allocate, CreatePermission, and the wait for data. Zero means 5 s.
	StepTimeout time.Duration
	// Packets is the number of packets sent through the relay; zero means
	// 5, at most 100.
	Packets int
	// Interval between packets; zero means 20 ms.
	Interval time.Duration
	// EndToEnd also connects two relay-only ICE agents through the server.
	EndToEnd bool
	// Family picks the server's address when its name has both an IPv4
	// and an IPv6 one: 4 or 6; 0 prefers IPv4. With 4 or 6, a name without
	// an address of that family fails the resolve step.
	Family int
	// RelayFamily is the family of the relayed address to ask for: 6 sends
	// REQUESTED-ADDRESS-FAMILY IPv6 (RFC 6156 section 4.1.1); 4 sends none,
	// which means IPv4 by RFC 6156 (pion/turn's client never sends the
	// attribute for IPv4, and servers built on pion/turn then allocate in
	// the family of the transport); 0 asks for the family of the
	// transport to the server. A relayed address of another family than
	// asked is a warning.
	RelayFamily int
	// NAT64 is the NAT64 prefix (RFC 6052) of a host with no IPv4 route
	// (probe.FindNAT64), or the zero Prefix. When set, a server name's
	// IPv6 address is preferred, and a server with IPv4 addresses only is
	// reached at its IPv4 address synthesized into the prefix; such an
	// allocation asks for an IPv4 relayed address whatever RelayFamily
	// says (the server sees an IPv4 client), and the relay checks reach
	// that IPv4 relayed address through the prefix too.
	NAT64 netip.Prefix
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Trace, if set, is called for every STUN/TURN message of every check,
	// from several goroutines at once.
	Trace func(Event)
	// Resolver looks up the server's name; nil means net.DefaultResolver.
	Resolver interface {
		LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
	}
	// Allow, when set, is asked before the check sends to or connects to
	// an address directly, not through the relay: the server's, and the
	// relayed address the server names, to which the local peer socket
	// sends its first packet. An error skips the send (for the server:
	// fails the connect step) and says why. The end-to-end ICE check
	// does not ask it.
	Allow func(netip.AddrPort) error
	// Soak, when set with a positive Duration, keeps each allocation
	// alive after the quick check and streams packets through it
	// (natcheck turn --duration).
	Soak *SoakOptions
}

func (o Options) resolver() interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
} {
	if o.Resolver != nil {
		return o.Resolver
	}
	return net.DefaultResolver
}

func (o Options) stepTimeout() time.Duration {
	if o.StepTimeout > 0 {
		return o.StepTimeout
	}
	return 5 * time.Second
}

func (o Options) packets() int {
	switch {
	case o.Packets <= 0:
		return 5
	case o.Packets > 100:
		return 100
	}
	return o.Packets
}

func (o Options) interval() time.Duration {
	if o.Interval > 0 {
		return o.Interval
	}
	return 20 * time.Millisecond
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// tlsConfig is the client TLS configuration for a server name. Go's
// defaults negotiate TLS 1.2, which coturn 4.6 needs.
func (o Options) tlsConfig(serverName string) *tls.Config {
	return &tls.Config{
		ServerName:         serverName,
		RootCAs:            o.RootCAs,
		InsecureSkipVerify: o.Insecure, //nolint:gosec // the user asked, and is warned
		MinVersion:         tls.VersionTLS12,
	}
}

// viaNAT64 reports whether server is an address in the NAT64 prefix: an
// IPv4 server reached through NAT64 (synthesized here or by DNS64).
func (o Options) viaNAT64(server netip.AddrPort) bool {
	return o.NAT64.IsValid() && o.NAT64.Contains(server.Addr())
}

// relayFamily is the family of the relayed address to ask server for:
// IPv4 through NAT64, since an IPv4 server sees an IPv4 client and pion
// would infer IPv6 from the transport; else RelayFamily.
func (o Options) relayFamily(server netip.AddrPort) int {
	if o.viaNAT64(server) {
		return 4
	}
	return o.RelayFamily
}
