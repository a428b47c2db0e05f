package probe

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5/stdnet"

	"github.com/natcheck/natcheck/natclass"
)

// ipv4Probe is where the IPv4 route check dials when no server has an IPv4
// address: 192.0.0.170 of ipv4only.arpa (RFC 7050). A UDP dial sends
// nothing; it only asks the routing table.
var ipv4Probe = netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 0, 170}), DefaultPort)

// lookForNAT64 is run when both families are probed: if the host has no
// IPv4 route, it asks the resolver for the AAAA records of ipv4only.arpa
// (RFC 7050) and, when they reveal a NAT64 prefix, points the IPv6 run at
// each IPv4-only server given as an IPv4 literal through that prefix (RFC
// 6052), rather than leaving it unreachable. It returns nil when the host
// has an IPv4 route (nothing to look for).
func lookForNAT64(ctx context.Context, cfg Config, res map[Family][]resolved) *natclass.NAT64 {
	if hasIPv4Route(cfg, res[IPv4]) {
		return nil
	}
	r := cfg.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	addrs, _ := r.LookupNetIP(ctx, "ip6", natclass.IPv4OnlyName) // no answer: no DNS64
	if prefixes := natclass.NAT64Prefixes(addrs); len(prefixes) > 0 {
		return synthesize(prefixes, natclass.NAT64SourceDNS64, res)
	}
	// No DNS64: the well-known prefix only if a server answers through it.
	// A guess that no server confirms would make the IPv6 run read the
	// silence as UDP blocked.
	if wellKnownAnswers(ctx, cfg, res[IPv6]) {
		return synthesize([]netip.Prefix{natclass.NAT64WellKnownPrefix}, natclass.NAT64SourceWellKnown, res)
	}
	return &natclass.NAT64{}
}

// FindNAT64 looks for the NAT64 prefix through which this host reaches
// cfg.Servers (for example TURN servers, which natcheck turn checks on its
// own), with what lookForNAT64 does: nothing unless a server is an IPv4
// literal or a name with IPv4 addresses only (no AAAA, not even from
// DNS64) and the host has no IPv4 route; then the DNS64 answer for
// ipv4only.arpa (RFC 7050), else the well-known prefix if a UDP server
// given as an IPv4 literal answers a Binding request through it. It
// returns nil when no server needs NAT64 or the host has an IPv4 route,
// and a NAT64 that is not Detected when none was found. Synthesized lists
// the servers given as IPv4 literals, in the prefix.
func FindNAT64(ctx context.Context, cfg Config) *natclass.NAT64 {
	// Cheap checks first: no server with a chance of IPv4 (IPv6
	// literals only), or a route to the first IPv4 literal (else to
	// ipv4only.arpa's address), need no DNS.
	var literals []resolved
	maybe := false
	for _, t := range cfg.Servers {
		a, err := netip.ParseAddr(t.Host)
		switch {
		case err != nil:
			maybe = true // a name: resolved below
		case a.Unmap().Is4():
			maybe = true
			literals = append(literals, resolved{target: t, addr: a.Unmap()})
		}
	}
	if !maybe || hasIPv4Route(cfg, literals) {
		return nil
	}
	res := resolveAll(ctx, cfg, []Family{IPv4, IPv6})
	need := false
	for i := range cfg.Servers {
		need = need || (res[IPv4][i].addr.IsValid() && !res[IPv6][i].addr.IsValid())
	}
	if !need {
		return nil
	}
	return lookForNAT64(ctx, cfg, res)
}

// wellKnownAnswers sends a Binding request to the first UDP server given
// as an IPv4 literal, at its address in the well-known NAT64 prefix, twice
// at most, and reports whether a response came back (about 0.6 s at most,
// spent only on a host with no IPv4 route and no DNS64).
func wellKnownAnswers(ctx context.Context, cfg Config, res []resolved) bool {
	var dest netip.AddrPort
	for _, rr := range res {
		a, err := netip.ParseAddr(rr.target.Host)
		if err != nil || !a.Unmap().Is4() || !rr.target.UDP() {
			continue
		}
		s, err := natclass.SynthesizeNAT64(natclass.NAT64WellKnownPrefix, a)
		if err != nil {
			continue
		}
		dest = netip.AddrPortFrom(s, rr.target.Port)
		break
	}
	if !dest.IsValid() {
		return false
	}
	n := cfg.Net
	if n == nil {
		var err error
		if n, err = stdnet.NewNet(); err != nil {
			return false
		}
	}
	c, err := n.ListenPacket("udp6", "[::]:0")
	if err != nil {
		return false
	}
	defer c.Close()
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return false
	}
	buf := make([]byte, 1500)
	for try := 0; try < 2 && ctx.Err() == nil; try++ {
		if _, err := c.WriteTo(req.Raw, net.UDPAddrFromAddrPort(dest)); err != nil {
			return false
		}
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			nr, from, err := c.ReadFrom(buf)
			if err != nil {
				break // this try's deadline: send again
			}
			ua, ok := from.(*net.UDPAddr)
			if !ok || ua.AddrPort().Addr().Unmap() != dest.Addr() {
				continue
			}
			var m stun.Message
			m.Raw = append(m.Raw[:0], buf[:nr]...)
			if m.Decode() == nil && m.TransactionID == req.TransactionID && m.Type == stun.BindingSuccess {
				return true
			}
		}
	}
	return false
}

// synthesize records the NAT64 prefix found (none: not detected) and gives
// the IPv6 run the synthesized address of every server given as an IPv4
// literal.
func synthesize(prefixes []netip.Prefix, source string, res map[Family][]resolved) *natclass.NAT64 {
	n := &natclass.NAT64{}
	if len(prefixes) == 0 {
		return n
	}
	n.Detected, n.Prefix, n.Source = true, prefixes[0], source
	for i, rr := range res[IPv6] {
		a, err := netip.ParseAddr(rr.target.Host)
		if err != nil || !a.Unmap().Is4() || rr.addr.IsValid() {
			continue
		}
		s, err := natclass.SynthesizeNAT64(n.Prefix, a)
		if err != nil {
			continue
		}
		res[IPv6][i] = resolved{target: rr.target, addr: s}
		n.Synthesized = append(n.Synthesized, s)
	}
	return n
}

// hasIPv4Route reports whether the host can send to an IPv4 server (the
// first resolved one, else ipv4Probe).
func hasIPv4Route(cfg Config, res []resolved) bool {
	n := cfg.Net
	if n == nil {
		var err error
		if n, err = stdnet.NewNet(); err != nil {
			return true // cannot tell: do not look for NAT64
		}
	}
	dest := ipv4Probe
	for _, r := range res {
		if r.addr.IsValid() {
			dest = netip.AddrPortFrom(r.addr, r.target.Port)
			break
		}
	}
	c, err := n.Dial("udp4", dest.String())
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}
