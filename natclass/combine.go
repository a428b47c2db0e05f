package natclass

import "strings"

// Address families as Result.Family names them.
const (
	FamilyIPv4 = "ipv4"
	FamilyIPv6 = "ipv6"
)

// Overall is the answer over every address family of one run: which
// family's result leads (the report's nat and reasons), the verdict over
// both families, whether UDP got out in any, and whether anything was
// measured at all.
type Overall struct {
	// Lead is the index of the leading family's Result; -1 when no family
	// was tested.
	Lead int
	// UDP is true when a UDP reply arrived in any family.
	UDP bool
	// Measured is false when no server answered at all, over UDP, TCP or
	// TLS, in any family.
	Measured bool
	// Verdict is the verdict over every family tested (CombineVerdicts):
	// the leading family's verdict when only one family was tested or the
	// families agree, or, with no family tested, the verdict of nothing
	// measured.
	Verdict Verdict
	// NAT64 is what the run found out about NAT64, from the first family
	// that carries it; nil when nothing was looked for.
	NAT64 *NAT64
}

// Combine picks the leading family and the run's overall facts from each
// family's Result (a skipped family has Skipped set). A family that
// measured something over UDP beats one that did not, then one that
// measured anything (UDP blocked, a TCP answer) beats one that measured
// nothing; between equals, IPv4 leads. The verdict is CombineVerdicts over the families tested, with the
// NAT64 sentence added to its summary when NAT64 was detected.
func Combine(results []Result) Overall {
	o := Overall{Lead: -1}
	other := -1
	for i, r := range results {
		if o.NAT64 == nil && r.NAT64 != nil {
			o.NAT64 = r.NAT64
		}
		if r.Skipped != "" {
			continue
		}
		o.UDP = o.UDP || r.UDP
		o.Measured = o.Measured || r.UDP || r.TCP == TriYes // a TCP or TLS answer counts
		if o.Lead < 0 {
			o.Lead = i
			continue
		}
		lead := results[o.Lead]
		if (!lead.UDP && r.UDP) || (lead.UDP == r.UDP && !measuredAny(lead) && measuredAny(r)) ||
			(lead.UDP == r.UDP && measuredAny(lead) == measuredAny(r) && r.Family == FamilyIPv4 && lead.Family != FamilyIPv4) {
			other, o.Lead = o.Lead, i
		} else if other < 0 {
			other = i
		}
	}
	switch {
	case o.Lead < 0:
		o.Verdict = Decide(Result{UDPTested: true})
	case other < 0 || !measuredAny(results[other]):
		// One family tested, or the other measured nothing (no route, no
		// server answered, UDP not called blocked): its verdict says
		// nothing to combine, and it must not read as a blocked family.
		o.Verdict = results[o.Lead].Verdict
	default:
		o.Verdict = CombineVerdicts(results[o.Lead], results[other])
	}
	if s := o.NAT64.Summary(); s != "" {
		o.Verdict.Summary = joinSentences(o.Verdict.Summary, s)
	}
	return o
}

// measuredAny reports whether a family measured something: a UDP reply, a
// TCP or TLS answer, or UDP found blocked.
func measuredAny(r Result) bool {
	return r.UDP || r.TCP == TriYes || r.Type == TypeUDPBlocked
}

// CombineVerdicts is the verdict over two families, lead (the family that
// leads, as Combine picks it) and other: for each kind of peer, the best
// path over either family, and the family that gives it; direct UDP, the
// relays and the way out of the family with the best answer. When the
// families agree (same paths, same direct UDP, same way out) it is lead's
// verdict unchanged, without families named.
//
// A path over IPv6 holds only for a peer that has IPv6 too: a peer of a
// kind is reached over IPv6 if it has IPv6, and over IPv4 otherwise. The
// summary says so ("to peers that have IPv6") rather than assume every
// peer is dual-stack. Between equal paths the leading family is named
// (IPv4 when both got UDP out), since it needs no such assumption.
func CombineVerdicts(lead, other Result) Verdict {
	a, b := lead.Verdict, other.Verdict
	if agree(a, b) {
		return a
	}
	better := 0 // peer kinds other reaches better than lead, minus the reverse
	var peers []PeerRoute
	for _, pa := range a.Peers {
		p := pa
		p.Family = lead.Family
		for _, pb := range b.Peers {
			if pb.Peer != pa.Peer {
				continue
			}
			switch {
			case routeRank(pb.Route) < routeRank(pa.Route):
				p.Route, p.Family = pb.Route, other.Family
				better++
			case routeRank(pb.Route) > routeRank(pa.Route):
				better--
			}
		}
		peers = append(peers, p)
	}
	best, worst := lead, other
	if c := compare(b, a); c < 0 || c == 0 && better > 0 {
		best, worst = other, lead
	}
	v := best.Verdict
	v.Peers = peers
	v.WayOut.Family = best.Family
	ipv6Used := best.Family == FamilyIPv6
	for _, p := range peers {
		ipv6Used = ipv6Used || p.Family == FamilyIPv6
	}
	label := func(r Result) string {
		if r.Family == FamilyIPv6 && ipv6Used {
			return "Over IPv6 (to peers that have IPv6)"
		}
		return "Over " + familyName(r.Family)
	}
	v.Summary = label(best) + ": " + strings.TrimSuffix(best.Verdict.Summary, ".") + ". " +
		label(worst) + ": " + strings.TrimSuffix(worst.Verdict.Summary, ".")
	return v
}

// agree reports whether two families' verdicts give the same answer.
func agree(a, b Verdict) bool {
	if a.DirectUDP != b.DirectUDP || a.WayOut.Via != b.WayOut.Via || a.WayOut.Port != b.WayOut.Port || len(a.Peers) != len(b.Peers) {
		return false
	}
	for i := range a.Peers {
		if a.Peers[i].Peer != b.Peers[i].Peer || a.Peers[i].Route != b.Peers[i].Route {
			return false
		}
	}
	return true
}

// compare orders two verdicts by direct UDP, then by the way out: negative
// when a is better.
func compare(a, b Verdict) int {
	if d := likelihoodRank(a.DirectUDP) - likelihoodRank(b.DirectUDP); d != 0 {
		return d
	}
	return wayRank(a.WayOut.Via) - wayRank(b.WayOut.Via)
}

// routeRank orders paths best first; a known relay beats a path that could
// not be told.
func routeRank(r Route) int {
	switch r {
	case RouteDirect:
		return 0
	case RouteProbablyDirect:
		return 1
	case RouteRelay:
		return 2
	}
	return 3
}

// likelihoodRank orders the answers for direct UDP best first; a known
// answer beats unknown.
func likelihoodRank(l Likelihood) int {
	switch l {
	case LikelihoodLikely:
		return 0
	case LikelihoodPossible:
		return 1
	case LikelihoodUnlikely:
		return 2
	case LikelihoodImpossible:
		return 3
	}
	return 4
}

// wayRank orders ways out in ICE's order; unknown after every way found,
// none last.
func wayRank(via string) int {
	switch via {
	case WayDirectUDP:
		return 0
	case WayTURNUDP:
		return 1
	case WayTURNTCP:
		return 2
	case WayTURNTLS:
		return 3
	case WayUnknown:
		return 4
	case WayNone:
		return 5
	}
	return 6
}

func familyName(f string) string {
	switch f {
	case FamilyIPv4:
		return "IPv4"
	case FamilyIPv6:
		return "IPv6"
	}
	return f
}

// joinSentences appends sentence s to summary.
func joinSentences(summary, s string) string {
	if summary == "" {
		return s
	}
	return strings.TrimSuffix(summary, ".") + ". " + s
}
