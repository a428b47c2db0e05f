package natclass

import "fmt"

// row is a line of the hole-punching table in ../shared/nat-testing.md: a
// host's NAT as far as UDP hole punching is concerned.
type row int

const (
	rowOpen row = iota // no NAT or EIM, with no filtering or EIF
	rowADF             // EIM (or no NAT) with address-dependent filtering
	rowAPDF            // EIM (or no NAT) with address-and-port-dependent filtering
	rowSym             // ADM or APDM mapping
)

// punch is the hole-punching table: punch[local][peer], both sides sending.
// EIM+APDF on both sides is only probably direct: Linux masquerade, for
// one, can lose the client's port when the peer's check arrives first.
var punch = [4][4]Route{
	rowOpen: {RouteDirect, RouteDirect, RouteDirect, RouteDirect},
	rowADF:  {RouteDirect, RouteDirect, RouteDirect, RouteDirect},
	rowAPDF: {RouteDirect, RouteDirect, RouteProbablyDirect, RouteRelay},
	rowSym:  {RouteDirect, RouteDirect, RouteRelay, RouteRelay},
}

// peers lists the peer kinds of a verdict with their row in the table.
var peers = []struct {
	name string
	row  row
}{
	{PeerOpen, rowOpen},
	{PeerFullCone, rowOpen},
	{PeerRestrictedCone, rowADF},
	{PeerPortRestrictedCone, rowAPDF},
	{PeerSymmetric, rowSym},
}

// possibleRows returns the rows consistent with what is known.
func possibleRows(mapping, filtering Behavior, varies Tri) []row {
	var mapRows []row // rows allowed by mapping alone
	switch {
	case mapping == BehaviorAddressDependent || mapping == BehaviorAddressAndPortDependent || varies == TriYes:
		return []row{rowSym}
	case mapping == BehaviorNone || mapping == BehaviorEndpointIndependent:
		mapRows = []row{rowOpen, rowADF, rowAPDF}
	default:
		mapRows = []row{rowOpen, rowADF, rowAPDF, rowSym}
	}
	var out []row
	for _, r := range mapRows {
		switch {
		case r == rowSym:
			out = append(out, r)
		case filtering == BehaviorUnknown,
			r == rowOpen && (filtering == BehaviorNone || filtering == BehaviorEndpointIndependent),
			r == rowADF && filtering == BehaviorAddressDependent,
			r == rowAPDF && filtering == BehaviorAddressAndPortDependent:
			out = append(out, r)
		}
	}
	return out
}

// combine merges the outcomes of all possible rows: one answer if they agree,
// probably-direct if all are some kind of direct, else unknown.
func combine(paths []Route) Route {
	if len(paths) == 0 {
		return RouteUnknown
	}
	allDirect := true
	for _, p := range paths {
		if p != RouteDirect && p != RouteProbablyDirect {
			allDirect = false
		}
	}
	for _, p := range paths[1:] {
		if p != paths[0] {
			if allDirect {
				return RouteProbablyDirect
			}
			return RouteUnknown
		}
	}
	return paths[0]
}

// Decide makes the verdict from a classified result: for each kind of peer,
// direct or relay; the overall answer for direct UDP; and the TURN transports
// to fall back on.
func Decide(r Result) Verdict {
	var v Verdict
	if !r.UDP {
		v.Relay = []string{RelayTURNTCP, RelayTURNTLS}
		path := RouteUnknown
		v.WayOut = wayOut(r, LikelihoodImpossible)
		found := v.WayOut.Via == WayTURNTCP || v.WayOut.Via == WayTURNTLS
		switch {
		case r.Type == TypeUDPBlocked && found:
			path = RouteRelay
			v.DirectUDP = LikelihoodImpossible
			v.Summary = "UDP is blocked here; " + v.WayOut.String() + " gets out"
		case r.Type == TypeUDPBlocked && v.WayOut.Via == WayNone:
			path = RouteRelay
			v.DirectUDP = LikelihoodImpossible
			v.Summary = "Nothing gets out: UDP is blocked and no TCP or TLS connection to any server succeeded"
		case r.Type == TypeUDPBlocked:
			path = RouteRelay
			v.DirectUDP = LikelihoodImpossible
			v.Summary = "UDP is blocked: real-time traffic needs a TURN relay over TCP or TLS (port 443 gets through most firewalls)"
		case found:
			v.Summary = "No UDP reply arrived; " + v.WayOut.String() + " gets out"
		default:
			v.Relay = []string{RelayTURNUDP, RelayTURNTCP, RelayTURNTLS}
			v.Summary = "Nothing could be measured: no STUN server answered"
		}
		for _, p := range peers {
			v.Peers = append(v.Peers, PeerRoute{Peer: p.name, Route: path})
		}
		v.Peers = append(v.Peers, PeerRoute{Peer: PeerUDPBlocked, Route: path})
		if r.NotMeasured != "" && r.TCP != TriYes {
			v.Summary = r.NotMeasured
		}
		if !r.UDPTested {
			// Only TCP or TLS servers were given: UDP, which ICE tries
			// first, was never tested, so no way out can be named.
			v.WayOut = WayOut{Via: WayUnknown, Cost: "UDP was not tested: give a UDP STUN server (HOST[:PORT] or stun:HOST) too"}
			v.Summary = "UDP not tested: no UDP STUN server was given"
			if ports := preferPorts(r.TLSPortsOpen, 443); len(ports) > 0 {
				v.Summary += fmt.Sprintf("; TLS to port %d gets out", ports[0])
			} else if ports := preferPorts(r.TCPPortsOpen, 3478, 443); len(ports) > 0 {
				v.Summary += fmt.Sprintf("; TCP to port %d gets out", ports[0])
			}
		}
		return v
	}

	v.Relay = []string{RelayTURNUDP, RelayTURNTCP, RelayTURNTLS}
	rows := possibleRows(r.Mapping, r.Filtering, r.MappingVariesByDestination)
	for _, p := range peers {
		var paths []Route
		for _, lr := range rows {
			paths = append(paths, punch[lr][p.row])
		}
		v.Peers = append(v.Peers, PeerRoute{Peer: p.name, Route: combine(paths)})
	}
	// A peer whose UDP is blocked can only be reached through its relay.
	v.Peers = append(v.Peers, PeerRoute{Peer: PeerUDPBlocked, Route: RouteRelay})

	symOnly := len(rows) == 1 && rows[0] == rowSym
	eimOnly := !symOnly
	for _, lr := range rows {
		if lr == rowSym {
			eimOnly = false
		}
	}
	switch {
	case eimOnly:
		v.DirectUDP = LikelihoodLikely
	case symOnly:
		v.DirectUDP = LikelihoodUnlikely
	default:
		v.DirectUDP = LikelihoodPossible
	}
	v.WayOut = wayOut(r, v.DirectUDP)
	v.Summary = summary(r, v)
	return v
}

func summary(r Result, v Verdict) string {
	name := r.Type.String()
	switch r.Type {
	case TypeOpenInternet:
		return "Direct UDP likely: this host has a public address, and a port that has sent takes UDP from any address"
	case TypeFirewall:
		return fmt.Sprintf("Direct UDP likely: no NAT, but a firewall filters inbound UDP (%s)", r.Filtering)
	case TypeFullCone, TypeRestrictedCone:
		return fmt.Sprintf("Direct UDP likely: %s NAT; direct with every kind of peer", name)
	case TypePortRestrictedCone:
		return "Direct UDP likely: port-restricted cone NAT; peers behind symmetric NATs need a TURN relay"
	case TypeSymmetric:
		return "Direct UDP unlikely: symmetric NAT; peers behind port-restricted or symmetric NATs (most home routers) need a TURN relay"
	}
	switch {
	case r.MappingChanged:
		return fmt.Sprintf("Direct UDP %s: UDP gets out, but the NAT's mapping changed during the test and a fresh socket did not settle it, so its behaviour could not be told; run natcheck again", v.DirectUDP)
	case r.Mapping == BehaviorNone:
		return "Direct UDP likely: this host has a public address; whether a firewall filters inbound UDP could not be told"
	case v.DirectUDP == LikelihoodLikely:
		return "Direct UDP likely: the NAT keeps one public address for all destinations; whether peers behind symmetric NATs need a relay depends on filtering, which could not be told"
	case v.DirectUDP == LikelihoodPossible:
		return "Direct UDP possible: UDP gets out, but the NAT's mapping could not be told; use servers on two addresses or one with RFC 5780"
	}
	return "UDP gets out; the NAT's behaviour could not be told"
}
