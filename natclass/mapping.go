package natclass

import (
	"fmt"
	"net/netip"
)

type sample struct {
	local, dest, mapped netip.AddrPort
}

// samplesOf returns the mapping samples among ps: plain requests (no
// CHANGE-REQUEST) that were answered with a mapped address.
func samplesOf(ps []Transaction) []sample {
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
func mappingProbes(obs Observations) []Transaction {
	var ps []Transaction
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
		o.behindNAT, o.behavior, o.varies = TriNo, BehaviorNone, TriNo
		o.reason = fmt.Sprintf("the public address %s is this host's own address: there is no NAT", ss[0].mapped)
		return o
	case same > 0 && nat > 0:
		o.contradiction = true
		o.reason = "some servers saw this host's own address and others a translated one: the observations contradict each other, so mapping behaviour is unknown"
		return o
	case nat > 0:
		o.behindNAT = TriYes
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
		o.behavior, o.varies = BehaviorEndpointIndependent, TriNo
		o.reason = fmt.Sprintf("one socket got the same public address %s from %s and from %s: mapping is endpoint-independent",
			crossIPSame[0].mapped, crossIPSame[0].dest, crossIPSame[1].dest)
	case adm && !apdm && crossIPDiff != nil:
		o.behavior, o.varies = BehaviorAddressDependent, TriYes
		o.reason = fmt.Sprintf("one socket got %s from %s but %s from %s; two ports of %s gave the same address: mapping is address-dependent",
			crossIPDiff[0].mapped, crossIPDiff[0].dest, crossIPDiff[1].mapped, crossIPDiff[1].dest, portSame[0].dest.Addr())
	case apdm && portDiff != nil:
		o.behavior, o.varies = BehaviorAddressAndPortDependent, TriYes
		o.reason = fmt.Sprintf("one socket got %s from %s but %s from %s, the same IP on another port: mapping is address-and-port-dependent",
			portDiff[0].mapped, portDiff[0].dest, portDiff[1].mapped, portDiff[1].dest)
	case apdm && crossIPDiff != nil:
		o.varies = TriYes
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
