package natclass

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Classify turns the observations of one address family into a diagnosis.
// It never guesses: whatever the observations do not settle is Unknown, with a
// reason saying why.
func Classify(obs Observations) Result {
	r := Result{Family: obs.Family, UDPTested: len(obs.Servers) > 0, HairpinTested: obs.Hairpin != nil}
	for i, s := range obs.Servers {
		var sr ServerResult
		if s.Binding.Replied() {
			sr.RFC5780 = TriOf(UsableOther(s.Address, s.Binding.Other))
			sr.ChangeRequest = ChangeRequestSupport(obs, i)
		}
		r.Servers = append(r.Servers, sr)
	}
	c := classifier{obs: obs, r: &r}
	c.nat64()
	c.udp()
	if !r.UDP {
		c.paths()
		r.NotMeasured = c.summary
		r.Verdict = Decide(r)
		return r
	}
	c.loss = MeasureLoss(obs)
	if c.loss.Sends > 0 {
		r.UDPLoss = &c.loss
	}
	c.mapping()
	c.filtering()
	r.Type = TypeOf(r.Mapping, r.Filtering, r.MappingVariesByDestination)
	c.extras()
	c.paths()
	r.Verdict = Decide(r)
	return r
}

type classifier struct {
	obs     Observations
	r       *Result
	loss    Loss   // measured in this run
	summary string // short cause when nothing was measured
}

func (c *classifier) reason(format string, args ...any) {
	c.r.Reasons = append(c.r.Reasons, fmt.Sprintf(format, args...))
}

// allProbes returns every transaction with a server, in a stable order.
func (c *classifier) allProbes() []Transaction {
	var ps []Transaction
	for _, s := range c.obs.Servers {
		ps = append(ps, s.Binding)
	}
	for _, t := range c.obs.RFC5780 {
		ps = append(ps, t.probes()...)
	}
	ps = append(ps, c.obs.Resample...)
	return append(ps, c.obs.Extra...)
}

// udp decides whether UDP gets out, and if not, whether that is known.
func (c *classifier) udp() {
	for _, p := range c.allProbes() {
		if p.Status == StatusReply || p.Status == StatusErrorReply {
			c.r.UDP = true
			return
		}
	}
	addrs := map[netip.Addr]bool{}
	var failed []string
	cutShort := false
	var sendErr string
	for _, s := range c.obs.Servers {
		if !s.Address.IsValid() {
			failed = append(failed, s.Name)
			continue
		}
		addrs[s.Address.Addr()] = true
		if s.Binding.Error != "" {
			sendErr = s.Binding.Error
		} else if s.Binding.Status == StatusNotRun {
			cutShort = true
		}
	}
	defer func() {
		if c.summary != "" && c.r.Type != TypeUDPBlocked {
			c.summary = "Nothing could be measured: " + c.summary
		}
	}()
	switch {
	case len(c.obs.Servers) == 0:
		c.summary = "no STUN server configured"
		c.reason("no UDP STUN server was given for %s, so UDP was not tested", c.obs.Family)
	case sendErr != "" && !cutShort:
		c.summary = "requests could not be sent"
		c.reason("requests could not be sent (%s): this host has no working %s route", sendErr, c.obs.Family)
	case len(addrs) == 0:
		c.summary = "DNS failed for every server"
		c.reason("no server name could be resolved (%s): DNS is failing or the names are wrong, so nothing was measured", strings.Join(failed, ", "))
	case cutShort:
		c.summary = "the run ended before any server answered"
		c.reason("the run ended before any server could answer: raise --timeout")
	case len(addrs) == 1:
		c.summary = "the only server did not answer"
		c.reason("the only server address tried did not answer over UDP: UDP may be blocked, or that server is down; try a second server")
	default:
		c.r.Type = TypeUDPBlocked
		sends := 0
		for _, s := range c.obs.Servers {
			sends += s.Binding.Sent
		}
		c.reason("none of %d server addresses answered any of %d UDP Binding requests (retransmissions included): UDP is blocked on this network", len(addrs), sends)
	}
}

// extras fills in port preservation, CGNAT, ALG, hairpinning and the public
// addresses.
func (c *classifier) extras() {
	r := c.r
	seen := map[netip.AddrPort]bool{}
	preserved, changed := 0, 0
	cgnat := 0
	algYes, algNo := 0, 0
	mappingSocket := map[netip.AddrPort]bool{}
	for _, s := range c.obs.Servers {
		if s.Binding.Local.IsValid() {
			mappingSocket[s.Binding.Local] = true
		}
	}
	for _, p := range c.allProbes() {
		if !p.Replied() || !p.Mapped.IsValid() {
			continue
		}
		if mappingSocket[p.Local] && !seen[p.Mapped] {
			seen[p.Mapped] = true
			r.PublicAddresses = append(r.PublicAddresses, p.Mapped)
		}
		if p.Mapped.Port() == p.Local.Port() {
			preserved++
		} else {
			changed++
		}
		if isGlobal(p.Dest.Addr()) {
			if isPrivateOrShared(p.Mapped.Addr()) && p.Mapped != p.Local {
				cgnat++
			}
		}
		if p.LegacyMapped.IsValid() {
			if p.LegacyMapped != p.Mapped {
				algYes++
			} else {
				algNo++
			}
		}
	}
	slices.SortFunc(r.PublicAddresses, func(a, b netip.AddrPort) int { return a.Compare(b) })
	switch {
	case changed > 0:
		r.PortPreservation = TriNo
	case preserved > 0:
		r.PortPreservation = TriYes
	}
	switch {
	case cgnat > 0:
		r.CGNAT = TriYes
		c.reason("a public server saw a private or shared (100.64.0.0/10) address: there is another NAT beyond this one (carrier-grade NAT)")
	case r.BehindNAT == TriNo:
		// No NAT at all, so none beyond it. Behind a NAT, a public server
		// sees the outermost NAT's address, which says nothing about NATs
		// in between: unknown.
		r.CGNAT = TriNo
	}
	switch {
	case algYes > 0:
		r.ALG = TriYes
		c.reason("MAPPED-ADDRESS differed from XOR-MAPPED-ADDRESS: something on the path rewrites addresses inside packets (an ALG), which can break STUN and ICE")
	case algNo > 0:
		r.ALG = TriNo
	}
	if h := c.obs.Hairpin; h != nil && r.BehindNAT == TriYes {
		switch h.Status {
		case StatusReply:
			r.Hairpin = TriYes
			c.reason("a packet sent to our own public address %s came back: the NAT hairpins", h.Dest)
		case StatusNoReply:
			r.Hairpin = TriNo
			c.reason("a packet sent to our own public address %s did not come back: the NAT does not hairpin, so two peers behind it need a relay or their local addresses", h.Dest)
		}
	}
}

var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

func isPrivateOrShared(a netip.Addr) bool {
	return a.IsPrivate() || sharedSpace.Contains(a.Unmap())
}

// isGlobal reports whether a server at a is on the public side: not private,
// shared, loopback or link-local.
func isGlobal(a netip.Addr) bool {
	return a.IsValid() && !isPrivateOrShared(a) && !a.IsLoopback() && !a.IsLinkLocalUnicast() && !a.IsUnspecified()
}

// TypeOf names the classic RFC 3489 NAT type for a mapping and filtering
// behaviour.
func TypeOf(mapping, filtering Behavior, varies Tri) Type {
	switch mapping {
	case BehaviorNone:
		switch filtering {
		case BehaviorNone, BehaviorEndpointIndependent:
			return TypeOpenInternet
		case BehaviorAddressDependent, BehaviorAddressAndPortDependent:
			return TypeFirewall
		}
	case BehaviorEndpointIndependent:
		switch filtering {
		case BehaviorNone, BehaviorEndpointIndependent:
			return TypeFullCone
		case BehaviorAddressDependent:
			return TypeRestrictedCone
		case BehaviorAddressAndPortDependent:
			return TypePortRestrictedCone
		}
	case BehaviorAddressDependent, BehaviorAddressAndPortDependent:
		return TypeSymmetric
	case BehaviorUnknown:
		if varies == TriYes {
			return TypeSymmetric
		}
	}
	return TypeUnknown
}

// UsableOther reports whether an OTHER-ADDRESS a advertised by the server at
// p can serve the RFC 5780 behaviour tests: it must differ from p in both IP
// address and port, in the same address family.
func UsableOther(p, a netip.AddrPort) bool {
	return a.IsValid() && p.IsValid() && a.Addr() != p.Addr() && a.Port() != p.Port() && a.Addr().Is4() == p.Addr().Is4()
}

// nat64 copies what the engine found out about NAT64 and explains it.
func (c *classifier) nat64() {
	n := c.obs.NAT64
	c.r.NAT64 = n
	if n == nil || !n.Detected {
		return
	}
	c.reason("this host has no IPv4 route, and the resolver synthesizes IPv6 addresses for IPv4-only names (DNS64: %s answered with NAT64 prefix %s, RFC 7050): IPv4 servers are reached through NAT64", IPv4OnlyName, n.Prefix)
	for _, a := range n.Synthesized {
		if v4, ok := ExtractNAT64(n.Prefix, a); ok {
			c.reason("the IPv4-only server %s was probed through NAT64 as %s", v4, a)
		}
	}
}
