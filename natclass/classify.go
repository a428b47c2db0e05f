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
func (c *classifier) allProbes() []Probe {
	var ps []Probe
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

type sample struct {
	local, dest, mapped netip.AddrPort
}

// samplesOf returns the mapping samples among ps: plain requests (no
// CHANGE-REQUEST) that were answered with a mapped address.
func samplesOf(ps []Probe) []sample {
	var ss []sample
	for _, p := range ps {
		if p.Replied() && p.Mapped.IsValid() && !p.ChangeIP && !p.ChangePort && p.ResponsePort == 0 {
			ss = append(ss, sample{p.Local, p.Dest, p.Mapped})
		}
	}
	return ss
}

// mappingProbes returns the transactions of the shared mapping socket:
// Test I to every server, and Tests II, III and P:a.
func mappingProbes(obs Observations) []Probe {
	var ps []Probe
	for _, s := range obs.Servers {
		ps = append(ps, s.Binding)
	}
	for _, t := range obs.RFC5780 {
		ps = append(ps, t.MappingII, t.MappingIII, t.MappingPa)
	}
	return ps
}

// mappingOutcome is what one socket's samples say about mapping behaviour.
type mappingOutcome struct {
	behavior  Behavior
	varies    Tri
	behindNAT Tri
	// contradiction: no single behaviour explains the samples; the
	// mapping changed during the test, or the NAT has several exits.
	contradiction bool
	reason        string
}

// MappingContradicts reports whether the answered plain requests of the
// mapping socket (Test I to every server, Tests II, III and P:a) contradict
// each other: no mapping behaviour (none, endpoint-independent,
// address-dependent, address-and-port-dependent) explains them. The engine
// then takes a second sample on a fresh socket (Observations.Resample).
func MappingContradicts(obs Observations) bool {
	return mappingFrom(samplesOf(mappingProbes(obs))).contradiction
}

// mappingFrom classifies mapping behaviour from the samples of one socket
// (RFC 5780 section 4.3 generalised: samples to two IP addresses tell
// endpoint-independent from dependent mapping, samples to two ports of one
// address tell address- from address-and-port-dependent). A behaviour is
// concluded only when it alone fits every pair of samples.
func mappingFrom(ss []sample) mappingOutcome {
	var o mappingOutcome
	if len(ss) == 0 {
		o.reason = "no server returned a mapped address to the mapping socket"
		return o
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
		o.behindNAT, o.behavior, o.varies = No, BehaviorNone, No
		o.reason = fmt.Sprintf("the public address %s is this host's own address: there is no NAT", ss[0].mapped)
		return o
	case same > 0 && nat > 0:
		o.contradiction = true
		o.reason = "some servers saw this host's own address and others a translated one: the observations contradict each other, so mapping behaviour is unknown"
		return o
	case nat > 0:
		o.behindNAT = Yes
	}

	// Which behaviours fit every pair, and an example pair for each kind
	// of evidence.
	eim, adm, apdm := true, true, true
	var crossIPDiff, crossIPSame, portDiff, portSame, sameDest *[2]sample
	for i := range ss {
		for j := i + 1; j < len(ss); j++ {
			a, b := ss[i], ss[j]
			pair := &[2]sample{a, b}
			differ := a.mapped != b.mapped
			if differ {
				eim = false
			}
			switch {
			case a.dest == b.dest:
				if differ && sameDest == nil {
					sameDest = pair
				}
				if differ {
					adm, apdm = false, false
				}
			case a.dest.Addr() != b.dest.Addr():
				if differ {
					crossIPDiff = cmpOr(crossIPDiff, pair)
				} else {
					crossIPSame = cmpOr(crossIPSame, pair)
					adm, apdm = false, false
				}
			default: // one IP, two ports
				if differ {
					portDiff = cmpOr(portDiff, pair)
					adm = false
				} else {
					portSame = cmpOr(portSame, pair)
					apdm = false
				}
			}
		}
	}
	switch {
	case !eim && !adm && !apdm:
		o.contradiction = true
		switch {
		case sameDest != nil:
			o.reason = fmt.Sprintf("one socket got %s and then %s from the same server %s: its mapping changed during the test, so mapping behaviour is unknown",
				sameDest[0].mapped, sameDest[1].mapped, sameDest[0].dest)
		case crossIPSame != nil && crossIPDiff != nil:
			o.reason = fmt.Sprintf("one socket got %s from both %s and %s, but %s from %s: the observations contradict each other (the mapping changed during the test, or the NAT has several public addresses), so mapping behaviour is unknown",
				crossIPSame[0].mapped, crossIPSame[0].dest, crossIPSame[1].dest, crossIPDiff[1].mapped, crossIPDiff[1].dest)
		case crossIPSame != nil && portDiff != nil:
			o.reason = fmt.Sprintf("one socket got %s from both %s and %s, but %s from %s, the same IP as %s on another port: the observations contradict each other (the mapping changed during the test), so mapping behaviour is unknown",
				crossIPSame[0].mapped, crossIPSame[0].dest, crossIPSame[1].dest, portDiff[1].mapped, portDiff[1].dest, portDiff[0].dest)
		default:
			o.reason = "the mapped addresses of one socket fit no single mapping behaviour (the mapping changed during the test), so mapping behaviour is unknown"
		}
	case eim && crossIPSame != nil:
		o.behavior, o.varies = BehaviorEndpointIndependent, No
		o.reason = fmt.Sprintf("one socket got the same public address %s from %s and from %s: mapping is endpoint-independent",
			crossIPSame[0].mapped, crossIPSame[0].dest, crossIPSame[1].dest)
	case adm && !apdm && crossIPDiff != nil:
		o.behavior, o.varies = BehaviorAddressDependent, Yes
		o.reason = fmt.Sprintf("one socket got %s from %s but %s from %s; two ports of %s gave the same address: mapping is address-dependent",
			crossIPDiff[0].mapped, crossIPDiff[0].dest, crossIPDiff[1].mapped, crossIPDiff[1].dest, portSame[0].dest.Addr())
	case apdm && portDiff != nil:
		o.behavior, o.varies = BehaviorAddressAndPortDependent, Yes
		o.reason = fmt.Sprintf("one socket got %s from %s but %s from %s, the same IP on another port: mapping is address-and-port-dependent",
			portDiff[0].mapped, portDiff[0].dest, portDiff[1].mapped, portDiff[1].dest)
	case apdm && crossIPDiff != nil:
		o.varies = Yes
		o.reason = fmt.Sprintf("one socket got %s from %s but %s from %s: the mapping varies by destination (symmetric NAT); no two ports of one server were compared, so address-dependent and address-and-port-dependent cannot be told apart",
			crossIPDiff[0].mapped, crossIPDiff[0].dest, crossIPDiff[1].mapped, crossIPDiff[1].dest)
	default:
		o.reason = "only one server IP address answered the mapping socket, so mapping behaviour cannot be told; add a server on another address or one that supports RFC 5780"
	}
	return o
}

// cmpOr returns a if it is set, else b.
func cmpOr(a, b *[2]sample) *[2]sample {
	if a != nil {
		return a
	}
	return b
}

// mapping classifies mapping behaviour from the samples of the shared mapping
// socket. When they contradict each other and the engine took a second
// sample on a fresh socket, that sample decides; when it contradicts itself
// too, the mapping changed during the test and is unknown.
func (c *classifier) mapping() {
	first := mappingFrom(samplesOf(mappingProbes(c.obs)))
	o := first
	if first.contradiction {
		c.reason("%s", first.reason)
		switch second := mappingFrom(samplesOf(c.obs.Resample)); {
		case len(c.obs.Resample) == 0:
			c.r.BehindNAT = first.behindNAT
			c.r.MappingChanged = true
			return
		case second.contradiction:
			c.r.BehindNAT = first.behindNAT
			c.r.MappingChanged = true
			c.reason("a second, fresh socket's samples contradicted each other too: %s", second.reason)
			return
		default:
			o = second
			c.reason("a second, fresh socket was sampled to settle it: %s", second.reason)
		}
	} else {
		c.reason("%s", o.reason)
	}
	c.r.BehindNAT = o.behindNAT
	c.r.Mapping = o.behavior
	c.r.MappingVariesByDestination = o.varies
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
		switch {
		case x.k == replyWrong:
			c.reason("%s answered a CHANGE-REQUEST from %s instead of %s: it does not honour CHANGE-REQUEST, so filtering is unknown", name, x.p.From, x.want)
			return out
		case x.k == replyRejected && x.p.ResponsePort != 0:
			c.reason("%s rejected a request with RESPONSE-PORT (error %d): it does not support RFC 5780 section 7.5, which a control needs behind a mapping that varies by destination, so filtering is unknown", name, x.p.ErrorCode)
			return out
		case x.k == replyRejected:
			c.reason("%s rejected CHANGE-REQUEST (error %d): it does not support it, so filtering is unknown", name, x.p.ErrorCode)
			return out
		}
	}
	// Silence is a result only when loss cannot explain it: every send
	// unanswered by chance must be less likely than MaxFalseNegative at the
	// loss measured in this run.
	silent := func(p Probe) bool {
		return judge(p, netip.AddrPort{}) == replyNone && c.loss.FalseNegative(p.Sent) < MaxFalseNegative
	}
	lossy := func(ps ...Probe) bool {
		for _, p := range ps {
			if judge(p, netip.AddrPort{}) == replyNone && !silent(p) {
				c.reason("no reply came from %s to a fresh socket after %d sends, but with the UDP loss measured in this run (%s; up to %.0f%% assumed) that happens by chance more often than 1 in %.0f: filtering is unknown",
					changeSource(p, p.Dest, a), p.Sent, c.loss, 100*c.loss.Bound, 1/MaxFalseNegative)
				return true
			}
		}
		return false
	}
	// Silence means filtering only where a control proved that the server
	// does send from the address in question, to this NAT.
	via := func(ps ...Probe) string {
		var parts []string
		for _, p := range ps {
			if p.ResponsePort != 0 {
				parts = append(parts, fmt.Sprintf("%d for the mapping that talked to %s", p.ResponsePort, changeSource(p, p.Dest, a)))
			}
		}
		if len(parts) == 0 {
			return ""
		}
		return " (the mapping varies by destination, so the controls asked for RESPONSE-PORT " + strings.Join(parts, " and ") + ")"
	}
	switch {
	case ii == replyRight:
		out.behavior = BehaviorEndpointIndependent
		c.reason("a socket that never talked to %s received its reply (change IP and port): filtering is endpoint-independent", wantII)
	case ii == replyNone && iii == replyRight && ctl == replyRight:
		if lossy(t.FilteringII) {
			return out
		}
		out.behavior = BehaviorAddressDependent
		c.reason("a fresh socket received a reply from %s (same IP, other port) but none from %s after %d sends, though %s does answer from there once a socket has sent to it%s: filtering is address-dependent (UDP loss in this run: %s)",
			wantIII, wantII, t.FilteringII.Sent, name, via(t.Control), c.loss)
	case ii == replyNone && iii == replyNone && ctl == replyRight && ctlPort == replyRight:
		if lossy(t.FilteringII, t.FilteringIII) {
			return out
		}
		out.behavior = BehaviorAddressAndPortDependent
		c.reason("a fresh socket received no reply from %s or %s after %d and %d sends, though %s does answer from both once a socket has sent to them%s: filtering is address-and-port-dependent (UDP loss in this run: %s)",
			wantII, wantIII, t.FilteringII.Sent, t.FilteringIII.Sent, name, via(t.Control, t.ControlPort), c.loss)
	case ii == replyNone && iii == replyRight:
		c.reason("no reply came from %s, and it could not be confirmed from behind this NAT that %s answers from there%s: filtering is unknown", wantII, name, notRunWhy(t.Control))
	case ii == replyNone && iii == replyNone:
		c.reason("no reply came from %s or %s, and it could not be confirmed from behind this NAT that %s answers from both%s: filtering is unknown", wantII, wantIII, name, notRunWhy(t.Control, t.ControlPort))
	default:
		c.reason("the filtering tests against %s did not complete: filtering is unknown", name)
	}
	return out
}

// changeSource is where a change request to p asks the reply to come
// from, given the server's alternate address a.
func changeSource(p Probe, primary, a netip.AddrPort) netip.AddrPort {
	switch {
	case p.ChangeIP && p.ChangePort:
		return a
	case p.ChangePort:
		return netip.AddrPortFrom(primary.Addr(), a.Port())
	case p.ChangeIP:
		return netip.AddrPortFrom(a.Addr(), primary.Port())
	}
	return primary
}

// notRunWhy explains controls that were never sent.
func notRunWhy(ps ...Probe) string {
	for _, p := range ps {
		if p.Status == StatusNotRun && p.Error != "" {
			return " (" + p.Error + ")"
		}
	}
	return ""
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
		var kinds []replyKind
		for _, x := range []struct {
			p    Probe
			want netip.AddrPort
		}{{t.FilteringII, a}, {t.FilteringIII, netip.AddrPortFrom(p.Addr(), a.Port())}, {t.Control, a}, {t.ControlPort, netip.AddrPortFrom(p.Addr(), a.Port())}} {
			k := judge(x.p, x.want)
			if k == replyRejected && x.p.ResponsePort != 0 {
				continue // RESPONSE-PORT was rejected: that says nothing of CHANGE-REQUEST
			}
			kinds = append(kinds, k)
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
