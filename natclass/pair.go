package natclass

import (
	"fmt"
	"slices"
	"strings"
)

// PairSide is what the pair prediction needs to know of one peer: its own
// diagnosis, as natcheck pair exchanges it through the rendezvous.
type PairSide struct {
	// UDP is true when a UDP STUN reply arrived.
	UDP           bool
	Mapping       Behavior
	Filtering     Behavior
	MappingVaries Tri
	// TCP: a TCP connection to some server got out; TCPPortsOpen are the
	// server ports that answered over TCP or TLS.
	TCP          Tri
	TCPPortsOpen []int
	// ICETCPPort is the port of a passive ICE-TCP candidate this side
	// offers at a public address (natcheck serve as the peer); 0 for none.
	ICETCPPort int
	// ReachesPeerICETCP: a TCP connection from this side to the peer's
	// ICE-TCP port (the other side's ICETCPPort) was tried before the
	// prediction and connected (yes) or did not (no); unknown when not
	// tried.
	ReachesPeerICETCP Tri
}

// Pair predictions.
const (
	PredictDirect  = "direct"
	PredictRelay   = "relay"
	PredictUnknown = "unknown"
)

// PairPrediction is the path natcheck pair expects between two peers
// before it connects them.
type PairPrediction struct {
	// Predicted is PredictDirect, PredictRelay or PredictUnknown.
	Predicted string
	// Certain is false when the outcome may depend on timing or on what
	// the diagnoses could not tell: the prediction is then the likelier
	// path, not a promise.
	Certain bool
	// Rule says which rule gave the prediction, with both sides' behaviour.
	Rule string
	// Family is the address family the prediction is for, when both
	// families were weighed (PredictPairFamilies); empty otherwise.
	Family string
}

// PredictPairFamilies predicts over both address families: v4 are the
// sides' IPv4 diagnoses, v6 their IPv6 ones (nil when either side has no
// IPv6 diagnosis, or no UDP over IPv6). ICE tries both families at once,
// so the better prediction wins: direct for certain, then direct not for
// certain, then unknown, then relay; between equals, IPv4. Its rule
// names both families.
func PredictPairFamilies(local4, remote4 PairSide, local6, remote6 *PairSide) PairPrediction {
	p4 := PredictPair(local4, remote4)
	if local6 == nil || remote6 == nil || !local6.UDP || !remote6.UDP {
		return p4
	}
	p6 := PredictPair(*local6, *remote6)
	rank := func(p PairPrediction) int {
		switch {
		case p.Predicted == PredictDirect && p.Certain:
			return 3
		case p.Predicted == PredictDirect:
			return 2
		case p.Predicted == PredictUnknown:
			return 1
		}
		return 0
	}
	if rank(p6) > rank(p4) {
		p6.Family, p6.Rule = "ipv6", "over IPv6, "+p6.Rule+"; over IPv4 "+p4.Predicted
		return p6
	}
	p4.Family, p4.Rule = "ipv4", "over IPv4, "+p4.Rule+"; over IPv6 "+p6.Predicted
	return p4
}

// PredictPair predicts the path ICE will find between two peers from their
// diagnoses: direct (UDP hole punching, or ICE-TCP to a public peer) or a
// TURN relay. It reads the same hole-punching table as the verdict's peer
// rows, for both sides at once, so PredictPair(a, b) and PredictPair(b, a)
// agree.
func PredictPair(local, remote PairSide) PairPrediction {
	if !local.UDP || !remote.UDP {
		return predictWithoutUDP(local, remote)
	}
	lrows := possibleRows(local.Mapping, local.Filtering, local.MappingVaries)
	rrows := possibleRows(remote.Mapping, remote.Filtering, remote.MappingVaries)
	var paths []Route
	for _, l := range lrows {
		for _, r := range rrows {
			paths = append(paths, punch[l][r])
		}
	}
	sides := fmt.Sprintf("here %s, at the peer %s", describeRows(lrows), describeRows(rrows))
	switch combine(paths) {
	case RouteDirect:
		return PairPrediction{Predicted: PredictDirect, Certain: true, Rule: sides + ": " + whyDirect(lrows, rrows)}
	case RouteRelay:
		return PairPrediction{Predicted: PredictRelay, Certain: true, Rule: sides + ": " + whyRelay(lrows, rrows)}
	case RouteProbablyDirect:
		why := "both sides let in only the address and port they sent to, so each side's checks open the way for the other's"
		if len(lrows) > 1 || len(rrows) > 1 {
			why = "every behaviour the diagnoses allow punches through"
		}
		if local.Mapping == BehaviorNone && remote.Mapping == BehaviorNone {
			// Without a NAT on either side no port can change: a check
			// that arrives first is dropped, and the next one passes
			// once the other side has sent (simultaneous open).
			return PairPrediction{Predicted: PredictDirect, Certain: true, Rule: sides + ": " + why + "; neither side has a NAT, so no router can give a port away"}
		}
		return PairPrediction{Predicted: PredictDirect, Certain: false, Rule: sides + ": " + why +
			"; not certain: a router that accepts unsolicited packets itself (Linux masquerade with an input policy of accept, as on Docker hosts) keeps the other side's early check as its own connection and gives this mapping another port, and then only a relay connects"}
	default:
		return PairPrediction{Predicted: PredictUnknown, Certain: false, Rule: sides + ": some behaviours the diagnoses allow punch through and others need a relay"}
	}
}

// predictWithoutUDP is the prediction when UDP does not get out on a side:
// only ICE-TCP to a public peer is direct.
func predictWithoutUDP(local, remote PairSide) PairPrediction {
	blocked, other := "here", "the peer"
	b, o := local, remote
	if local.UDP {
		blocked, other = "at the peer", "here"
		b, o = remote, local
	}
	why := "UDP does not get out " + blocked
	if !local.UDP && !remote.UDP {
		why = "UDP gets out on neither side"
	}
	// The side without UDP can still reach a passive ICE-TCP candidate of a
	// public peer, if its TCP gets out to that port.
	if o.ICETCPPort != 0 {
		switch {
		case b.ReachesPeerICETCP == TriYes:
			return PairPrediction{Predicted: PredictDirect, Certain: true, Rule: fmt.Sprintf("%s, but a TCP connection to port %d, where %s offers ICE-TCP, got through", why, o.ICETCPPort, other)}
		case b.ReachesPeerICETCP == TriNo:
			return PairPrediction{Predicted: PredictRelay, Certain: true, Rule: fmt.Sprintf("%s, and a TCP connection to port %d, where %s offers ICE-TCP, did not get through: only a TURN relay the blocked side reaches can help", why, o.ICETCPPort, other)}
		case b.TCP == TriNo:
			return PairPrediction{Predicted: PredictRelay, Certain: true, Rule: why + ", and TCP does not get out either: only a TURN relay the blocked side reaches can help"}
		case b.TCP == TriYes && slices.Contains(b.TCPPortsOpen, o.ICETCPPort):
			return PairPrediction{Predicted: PredictDirect, Certain: true, Rule: fmt.Sprintf("%s, but TCP to port %d gets out and %s offers ICE-TCP there", why, o.ICETCPPort, other)}
		case b.TCP == TriYes:
			return PairPrediction{Predicted: PredictUnknown, Certain: false, Rule: fmt.Sprintf("%s; TCP gets out, but port %d, where %s offers ICE-TCP, was not tested", why, o.ICETCPPort, other)}
		default:
			return PairPrediction{Predicted: PredictUnknown, Certain: false, Rule: why + ", and whether TCP gets out is unknown"}
		}
	}
	return PairPrediction{Predicted: PredictRelay, Certain: true, Rule: why + ": ICE between two peers needs UDP, or TCP to a public peer, so only a TURN relay (over TCP or TLS for the blocked side) connects"}
}

var rowNames = [...]string{
	rowOpen: "no filtering (open or full cone)",
	rowADF:  "filtering by address (restricted cone)",
	rowAPDF: "filtering by address and port (port-restricted cone, or a stateful firewall)",
	rowSym:  "a mapping per destination (symmetric)",
}

func describeRows(rows []row) string {
	if len(rows) == 1 {
		return rowNames[rows[0]]
	}
	names := make([]string, len(rows))
	for i, r := range rows {
		names[i] = rowNames[r]
	}
	return "one of " + strings.Join(names, ", ")
}

func whyDirect(l, r []row) string {
	has := func(rows []row, want ...row) bool {
		for _, x := range rows {
			if !slices.Contains(want, x) {
				return false
			}
		}
		return true
	}
	switch {
	case has(l, rowOpen) || has(r, rowOpen):
		return "one side lets in packets from any address once it has sent (or has no NAT), so the other side's checks get in from whatever port its NAT gives them"
	default:
		return "a side filtering by address lets in the other's checks from any port of an address it sent to, and then answers the port they came from"
	}
}

func whyRelay(l, r []row) string {
	if slices.Equal(l, []row{rowSym}) && slices.Equal(r, []row{rowSym}) {
		return "both NATs map each destination to its own port, so neither side's STUN address is the one it uses towards the other"
	}
	return "the symmetric side sends from a port no STUN server saw, and the port-restricted side lets in only the port it sent to"
}
