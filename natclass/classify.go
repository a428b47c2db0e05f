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
	r := Result{Family: obs.Family}
	c := classifier{obs: obs, r: &r}
	c.udp()
	if !r.UDP {
		c.paths()
		r.Verdict = Decide(r)
		if c.summary != "" && r.TCP != Yes {
			r.Verdict.Summary = c.summary
		}
		if len(obs.Servers) == 0 {
			// Only TCP or TLS servers were given: UDP, which ICE tries
			// first, was never tested, so no way out can be named.
			r.Verdict.WayOut = WayOut{Via: WayUnknown, Cost: "UDP was not tested: give a UDP STUN server (HOST[:PORT] or stun:HOST) too"}
			r.Verdict.Summary = "UDP not tested: no UDP STUN server was given"
			if ports := preferPorts(r.TLSPortsOpen, 443); len(ports) > 0 {
				r.Verdict.Summary += fmt.Sprintf("; TLS to port %d gets out", ports[0])
			} else if ports := preferPorts(r.TCPPortsOpen, 3478, 443); len(ports) > 0 {
				r.Verdict.Summary += fmt.Sprintf("; TCP to port %d gets out", ports[0])
			}
		}
		return r
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
	summary string // short cause when nothing was measured
}

func (c *classifier) reason(format string, args ...any) {
	c.r.Reasons = append(c.r.Reasons, fmt.Sprintf(format, args...))
}

// allProbes returns every transaction with a server, in a stable order.
func (c *classifier) allProbes() []Probe {
	var ps []Probe
	for _, s := range c.obs.Servers {
		ps = append(ps, s.Binding)
	}
	for _, t := range c.obs.RFC5780 {
		ps = append(ps, t.MappingII, t.MappingIII, t.FilteringI, t.FilteringII, t.FilteringIII, t.Control, t.MappingPa, t.ControlPort)
	}
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
		c.reason("none of %d server addresses answered a UDP Binding request despite retransmissions: UDP is blocked on this network", len(addrs))
	}
}

type sample struct {
	local, dest, mapped netip.AddrPort
}

func (c *classifier) mappingSamples() []sample {
	var ss []sample
	add := func(p Probe) {
		if p.Replied() && p.Mapped.IsValid() && !p.ChangeIP && !p.ChangePort {
			ss = append(ss, sample{p.Local, p.Dest, p.Mapped})
		}
	}
	for _, s := range c.obs.Servers {
		add(s.Binding)
	}
	for _, t := range c.obs.RFC5780 {
		add(t.MappingII)
		add(t.MappingIII)
		add(t.MappingPa)
	}
	return ss
}

// mapping classifies mapping behaviour from the samples of the shared mapping
// socket (RFC 5780 section 4.3 generalised: Test I/II compare two destination
// IP addresses, Test II/III two ports of one address).
func (c *classifier) mapping() {
	ss := c.mappingSamples()
	if len(ss) == 0 {
		c.reason("no server returned a mapped address to the mapping socket")
		return
	}
	nat, same := 0, 0
	for _, s := range ss {
		if s.local.Addr().IsUnspecified() {
			continue
		}
		if s.mapped == s.local {
			same++
		} else {
			nat++
		}
	}
	switch {
	case same > 0 && nat == 0:
		c.r.BehindNAT = No
		c.r.Mapping = BehaviorNone
		c.r.MappingVariesByDestination = No
		c.reason("the public address %s is this host's own address: there is no NAT", ss[0].mapped)
		return
	case same > 0 && nat > 0:
		c.reason("some servers saw this host's own address and others a translated one: mapping cannot be told")
		return
	case nat > 0:
		c.r.BehindNAT = Yes
	}

	var crossIPDiff, crossIPSame, portDiff, portSame *[2]sample
	for i := range ss {
		for j := i + 1; j < len(ss); j++ {
			a, b := ss[i], ss[j]
			if a.dest == b.dest {
				continue
			}
			pair := &[2]sample{a, b}
			sameIP := a.dest.Addr() == b.dest.Addr()
			switch {
			case !sameIP && a.mapped != b.mapped && crossIPDiff == nil:
				crossIPDiff = pair
			case !sameIP && a.mapped == b.mapped && crossIPSame == nil:
				crossIPSame = pair
			case sameIP && a.mapped != b.mapped && portDiff == nil:
				portDiff = pair
			case sameIP && a.mapped == b.mapped && portSame == nil:
				portSame = pair
			}
		}
	}
	switch {
	case crossIPDiff != nil && crossIPSame != nil:
		// Some destinations on other IPs share a mapping and others do not
		// (several exit routes or address pools): no single behaviour fits.
		c.r.MappingVariesByDestination = Yes
		c.reason("one socket got %s from both %s and %s, but %s from %s: the observations contradict each other (several exit routes or public addresses?), so mapping behaviour is unknown; it does vary by destination",
			crossIPSame[0].mapped, crossIPSame[0].dest, crossIPSame[1].dest, crossIPDiff[1].mapped, crossIPDiff[1].dest)
	case portDiff != nil:
		c.r.Mapping = BehaviorAddressAndPortDependent
		c.r.MappingVariesByDestination = Yes
		c.reason("one socket got %s from %s but %s from %s, the same IP on another port: mapping is address-and-port-dependent",
			portDiff[0].mapped, portDiff[0].dest, portDiff[1].mapped, portDiff[1].dest)
	case crossIPDiff != nil && portSame != nil:
		c.r.Mapping = BehaviorAddressDependent
		c.r.MappingVariesByDestination = Yes
		c.reason("one socket got %s from %s but %s from %s; two ports of %s gave the same address: mapping is address-dependent",
			crossIPDiff[0].mapped, crossIPDiff[0].dest, crossIPDiff[1].mapped, crossIPDiff[1].dest, portSame[0].dest.Addr())
	case crossIPDiff != nil:
		c.r.MappingVariesByDestination = Yes
		c.reason("one socket got %s from %s but %s from %s: the mapping varies by destination (symmetric NAT); no two ports of one server were compared, so address-dependent and address-and-port-dependent cannot be told apart",
			crossIPDiff[0].mapped, crossIPDiff[0].dest, crossIPDiff[1].mapped, crossIPDiff[1].dest)
	case crossIPSame != nil:
		c.r.Mapping = BehaviorEndpointIndependent
		c.r.MappingVariesByDestination = No
		c.reason("one socket got the same public address %s from %s and from %s: mapping is endpoint-independent",
			crossIPSame[0].mapped, crossIPSame[0].dest, crossIPSame[1].dest)
	default:
		c.reason("only one server IP address answered the mapping socket, so mapping behaviour cannot be told; add a server on another address or one that supports RFC 5780")
	}
}

// filterOutcome is what one RFC 5780 server says about filtering.
type filterOutcome struct {
	server   string
	behavior Behavior // unknown when this server could not tell
}

// filtering classifies filtering behaviour (RFC 5780 section 4.4), checking
// that each reply came from where CHANGE-REQUEST asked it to come from.
func (c *classifier) filtering() {
	if len(c.obs.RFC5780) == 0 {
		c.reason("no server supports RFC 5780 (none sent OTHER-ADDRESS): filtering behaviour cannot be learned from plain servers")
		return
	}
	var definite []filterOutcome
	for _, t := range c.obs.RFC5780 {
		if t.Server < 0 || t.Server >= len(c.obs.Servers) {
			continue
		}
		o := c.filterOne(t)
		if o.behavior != BehaviorUnknown {
			definite = append(definite, o)
		}
	}
	if len(definite) == 0 {
		if t := c.obs.RFC5780[0]; t.Server >= 0 && t.Server < len(c.obs.Servers) {
			c.r.RFC5780Server = c.obs.Servers[t.Server].Name // tested, without a definite answer
		}
		return
	}
	for _, o := range definite[1:] {
		if o.behavior != definite[0].behavior {
			c.reason("RFC 5780 servers disagree on filtering (%s says %s, %s says %s)", definite[0].server, definite[0].behavior, o.server, o.behavior)
			return
		}
	}
	c.r.Filtering = definite[0].behavior
	c.r.RFC5780Server = definite[0].server
	if c.r.Mapping == BehaviorNone && c.r.Filtering == BehaviorEndpointIndependent {
		c.r.Filtering = BehaviorNone
	}
}

type replyKind int

const (
	replyUnknown  replyKind = iota // not run, cut short, or error response
	replyNone                      // no reply within the window
	replyRight                     // reply from the address CHANGE-REQUEST asked for
	replyWrong                     // reply from another address: CHANGE-REQUEST ignored
	replyRejected                  // error response: CHANGE-REQUEST unsupported
)

func judge(p Probe, want netip.AddrPort) replyKind {
	switch p.Status {
	case StatusNoReply:
		return replyNone
	case StatusErrorReply:
		return replyRejected
	case StatusReply:
		if p.From == want || (!p.From.IsValid() && p.ResponseOrigin == want) {
			return replyRight
		}
		return replyWrong
	}
	return replyUnknown
}

func (c *classifier) filterOne(t RFC5780Tests) filterOutcome {
	srv := c.obs.Servers[t.Server]
	name := srv.Name
	out := filterOutcome{server: name}
	p, a := srv.Address, srv.Binding.Other
	switch {
	case !a.IsValid():
		c.reason("%s sent no OTHER-ADDRESS", name)
		return out
	case !UsableOther(p, a):
		c.reason("%s advertises OTHER-ADDRESS %s, which is not usable for behaviour tests: it must differ from %s in both IP and port, in the same family", name, a, p)
		return out
	}
	if !t.FilteringI.Replied() {
		c.reason("the fresh filtering socket got no answer from %s even without CHANGE-REQUEST: its filtering tests cannot be read", name)
		return out
	}
	wantII := a                                       // alternate IP, alternate port
	wantIII := netip.AddrPortFrom(p.Addr(), a.Port()) // primary IP, alternate port
	ii, iii, ctl := judge(t.FilteringII, wantII), judge(t.FilteringIII, wantIII), judge(t.Control, wantII)
	ctlPort := judge(t.ControlPort, wantIII)

	for _, x := range []struct {
		k    replyKind
		p    Probe
		want netip.AddrPort
	}{{ii, t.FilteringII, wantII}, {iii, t.FilteringIII, wantIII}, {ctl, t.Control, wantII}, {ctlPort, t.ControlPort, wantIII}} {
		switch x.k {
		case replyWrong:
			c.reason("%s answered a CHANGE-REQUEST from %s instead of %s: it does not honour CHANGE-REQUEST, so filtering is unknown", name, x.p.From, x.want)
			return out
		case replyRejected:
			c.reason("%s rejected CHANGE-REQUEST (error %d): it does not support it, so filtering is unknown", name, x.p.ErrorCode)
			return out
		}
	}
	// Silence means filtering only where a control proved that the server
	// does send from the address in question.
	switch {
	case ii == replyRight:
		out.behavior = BehaviorEndpointIndependent
		c.reason("a socket that never talked to %s received its reply (change IP and port): filtering is endpoint-independent", wantII)
	case ii == replyNone && iii == replyRight && ctl == replyRight:
		out.behavior = BehaviorAddressDependent
		c.reason("a fresh socket received a reply from %s (same IP, other port) but none from %s, though %s does answer from there once a socket has sent to it: filtering is address-dependent", wantIII, wantII, name)
	case ii == replyNone && iii == replyNone && ctl == replyRight && ctlPort == replyRight:
		out.behavior = BehaviorAddressAndPortDependent
		c.reason("a fresh socket received no reply from %s or %s, though %s does answer from both once a socket has sent to them: filtering is address-and-port-dependent", wantII, wantIII, name)
	case ii == replyNone && iii == replyRight:
		c.reason("no reply came from %s, and it could not be confirmed from behind this NAT that %s answers from there: filtering is unknown", wantII, name)
	case ii == replyNone && iii == replyNone:
		c.reason("no reply came from %s or %s, and it could not be confirmed from behind this NAT that %s answers from both: filtering is unknown", wantII, wantIII, name)
	default:
		c.reason("the filtering tests against %s did not complete: filtering is unknown", name)
	}
	return out
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
		r.PortPreservation = No
	case preserved > 0:
		r.PortPreservation = Yes
	}
	switch {
	case cgnat > 0:
		r.CGNAT = Yes
		c.reason("a public server saw a private or shared (100.64.0.0/10) address: there is another NAT beyond this one (carrier-grade NAT)")
	case r.BehindNAT == No:
		// No NAT at all, so none beyond it. Behind a NAT, a public server
		// sees the outermost NAT's address, which says nothing about NATs
		// in between: unknown.
		r.CGNAT = No
	}
	switch {
	case algYes > 0:
		r.ALG = Yes
		c.reason("MAPPED-ADDRESS differed from XOR-MAPPED-ADDRESS: something on the path rewrites addresses inside packets (an ALG), which can break STUN and ICE")
	case algNo > 0:
		r.ALG = No
	}
	if h := c.obs.Hairpin; h != nil && r.BehindNAT == Yes {
		switch h.Status {
		case StatusReply:
			r.Hairpin = Yes
			c.reason("a packet sent to our own public address %s came back: the NAT hairpins", h.Dest)
		case StatusNoReply:
			r.Hairpin = No
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
		if varies == Yes {
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

// Change-request support of a server, as ChangeRequestSupport reports it.
const (
	ChangeRequestHonoured    = "honoured"
	ChangeRequestIgnored     = "ignored"
	ChangeRequestRejected    = "rejected"
	ChangeRequestUnconfirmed = "unconfirmed"
)

// ChangeRequestSupport says how server i treated CHANGE-REQUEST in the RFC
// 5780 tests: honoured (a reply came from the address asked for), ignored
// (a reply came from elsewhere), rejected (an error reply), unconfirmed, or
// "" when no CHANGE-REQUEST was sent to it.
func ChangeRequestSupport(obs Observations, i int) string {
	if i < 0 || i >= len(obs.Servers) {
		return ""
	}
	srv := obs.Servers[i]
	p, a := srv.Address, srv.Binding.Other
	for _, t := range obs.RFC5780 {
		if t.Server != i {
			continue
		}
		kinds := []replyKind{
			judge(t.FilteringII, a),
			judge(t.FilteringIII, netip.AddrPortFrom(p.Addr(), a.Port())),
			judge(t.Control, a),
			judge(t.ControlPort, netip.AddrPortFrom(p.Addr(), a.Port())),
		}
		switch {
		case slices.Contains(kinds, replyWrong):
			return ChangeRequestIgnored
		case slices.Contains(kinds, replyRejected):
			return ChangeRequestRejected
		case slices.Contains(kinds, replyRight):
			return ChangeRequestHonoured
		}
		return ChangeRequestUnconfirmed
	}
	return ""
}
